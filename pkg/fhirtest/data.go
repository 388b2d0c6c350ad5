package fhirtest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest/synth"
)

// dataset is what the server exports: the user's NDJSON (--data) or a given synth data set,
// indexed once at start so that a kickoff filters without parsing JSON again; or the generated
// data set, never held whole: each export generates it again as it writes its files, so that
// an export of any size takes bounded memory.
type dataset struct {
	types       []string
	res         map[string][]resource // nil with stream
	stream      *synth.Stream
	bins        *binStore // with stream
	binaries    map[string]synth.Binary
	medications map[string][]byte
	groups      map[string][]string // Group id → member Patient ids
	groupRes    map[string][]byte   // Group id → resource, when the data brought its own
}

// resource is one line of the data set with the fields every filter needs, parsed once.
type resource struct {
	raw     []byte
	id      string
	patient string // id of the Patient whose compartment holds it; "" when none
	updated int64  // meta.lastUpdated as Unix nanoseconds
	hasUpd  bool
}

// fromSynth indexes a generated data set.
func fromSynth(d *synth.Dataset) (*dataset, error) {
	ds := &dataset{res: map[string][]resource{}, binaries: d.Binaries, medications: d.Medications,
		groups: d.Groups, groupRes: map[string][]byte{}}
	for _, t := range d.Types {
		if err := ds.add(t, d.Resources[t]); err != nil {
			return nil, err
		}
	}
	return ds, nil
}

// fromStream serves a data set generated as each export reads it; its Binaries are kept in a
// file in dir once an export has generated them all.
func fromStream(st *synth.Stream, dir string) *dataset {
	return &dataset{types: st.Types(), stream: st, medications: st.Medications(), groups: st.Groups(),
		groupRes: map[string][]byte{}, bins: &binStore{path: filepath.Join(dir, "binaries")}}
}

// binary returns the content of Binary/id.
func (ds *dataset) binary(id string) (synth.Binary, bool) {
	if ds.stream != nil {
		if b, found, complete := ds.bins.get(id); complete {
			return b, found
		}
		return ds.stream.Binary(id)
	}
	b, ok := ds.binaries[id]
	return b, ok
}

// patientIDs returns the id of every Patient.
func (ds *dataset) patientIDs() []string {
	if ds.stream != nil {
		return ds.groups[synth.GroupAll]
	}
	ids := make([]string, len(ds.res["Patient"]))
	for i, r := range ds.res["Patient"] {
		ids[i] = r.id
	}
	return ids
}

// errClosed ends a build that the server's Close interrupted.
var errClosed = errors.New("server closed")

// each calls fn with every resource of types, in each type's order; the types may interleave. It
// returns errClosed once stop reports true.
func (ds *dataset) each(types []string, stop func() bool, fn func(typ string, r *resource) error) error {
	if ds.stream != nil {
		return ds.eachGenerated(types, stop, fn)
	}
	for _, typ := range types {
		rs := ds.res[typ]
		for i := range rs {
			if i%4096 == 0 && stop() {
				return errClosed
			}
			if err := fn(typ, &rs[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// eachGenerated is each for a generated data set: patient by patient, all types at once. The
// first pass also fills the Binary store.
func (ds *dataset) eachGenerated(types []string, stop func() bool, fn func(typ string, r *resource) error) (err error) {
	filling := ds.bins.claim()
	if filling {
		defer func() { ds.bins.done(err == nil) }()
	}
	return ds.stream.Each(runtime.GOMAXPROCS(0), func(b *synth.Batch) error {
		if stop() {
			return errClosed
		}
		if filling {
			if err := ds.bins.fill(b); err != nil {
				return err
			}
		}
		for _, typ := range types {
			for _, line := range b.Lines(typ) {
				r, err := index(typ, line)
				if err != nil {
					return err
				}
				if err := fn(typ, &r); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// add indexes the lines of one resource type, in order.
func (ds *dataset) add(typ string, lines [][]byte) error {
	if len(lines) == 0 {
		return nil
	}
	if _, ok := ds.res[typ]; !ok {
		ds.types = append(ds.types, typ)
	}
	rs := ds.res[typ]
	for _, line := range lines {
		r, err := index(typ, line)
		if err != nil {
			return err
		}
		rs = append(rs, r)
	}
	ds.res[typ] = rs
	return nil
}

// index reads the fields of one resource that filtering needs.
func index(typ string, line []byte) (resource, error) {
	res := gjson.GetManyBytes(line, "resourceType", "id", "meta.lastUpdated",
		"subject.reference", "patient.reference", "beneficiary.reference")
	if res[0].Str != typ {
		return resource{}, fmt.Errorf("resourceType %q in a %s file", res[0].Str, typ)
	}
	r := resource{raw: line, id: res[1].Str}
	if typ == "Patient" {
		r.patient = r.id
	} else {
		for _, ref := range res[3:] {
			if id, ok := strings.CutPrefix(ref.Str, "Patient/"); ok {
				r.patient = id
				break
			}
		}
	}
	if res[2].Exists() {
		t, err := parseInstant(res[2].Str)
		if err != nil {
			return resource{}, fmt.Errorf("%s/%s: meta.lastUpdated: %w", typ, r.id, err)
		}
		r.updated, r.hasUpd = t.UnixNano(), true
	}
	return r, nil
}

// fromDir reads a folder of NDJSON files, naming the resource type as bulk-data-client
// (1.Patient.ndjson), Cumulus (Patient.000.ndjson), SMART Fetch (Patient.001.ndjson.gz) and plain
// exports (Patient.ndjson) do. Binary, Medication and Group lines are also readable by id.
func fromDir(dir string) (*dataset, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read data folder: %w", err)
	}
	ds := &dataset{res: map[string][]resource{}, binaries: map[string]synth.Binary{},
		medications: map[string][]byte{}, groups: map[string][]string{}, groupRes: map[string][]byte{}}
	for _, e := range entries {
		typ := typeFromName(e.Name())
		if typ == "" || e.IsDir() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		lines, err := readNDJSON(path)
		if err != nil {
			return nil, err
		}
		if err := ds.add(typ, lines); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	if len(ds.types) == 0 {
		return nil, fmt.Errorf("no NDJSON files (such as Patient.ndjson) in %s", dir)
	}
	slices.Sort(ds.types)
	for _, r := range ds.res["Medication"] {
		ds.medications[r.id] = r.raw
	}
	for _, r := range ds.res["Group"] {
		ds.groupRes[r.id] = r.raw
		var members []string
		gjson.GetBytes(r.raw, "member.#.entity.reference").ForEach(func(_, v gjson.Result) bool {
			if id, ok := strings.CutPrefix(v.Str, "Patient/"); ok {
				members = append(members, id)
			}
			return true
		})
		ds.groups[r.id] = members
	}
	for _, r := range ds.res["Binary"] {
		b, err := decodeB64(gjson.GetBytes(r.raw, "data").Str)
		if err != nil {
			return nil, fmt.Errorf("data of Binary/%s: %w", r.id, err)
		}
		ds.binaries[r.id] = synth.Binary{ContentType: gjson.GetBytes(r.raw, "contentType").Str, Data: b}
	}
	return ds, nil
}

// typeFromName returns the resource type named by an NDJSON file name, or "".
func typeFromName(name string) string {
	base, ok := strings.CutSuffix(strings.TrimSuffix(name, ".gz"), ".ndjson")
	if !ok || strings.HasPrefix(base, "log") {
		return ""
	}
	for part := range strings.SplitSeq(base, ".") {
		if isResourceType(part) {
			return part
		}
	}
	return ""
}

// readNDJSON returns the non-blank lines of a file (gunzipped when it ends in .gz), without
// their line ends; a leading BOM and CRLF are accepted, as DESIGN.md §3 asks of every reader.
func readNDJSON(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		r = zr
	}
	br := bufio.NewReaderSize(r, 1<<20)
	var lines [][]byte
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if n == 1 {
			line = bytes.TrimPrefix(line, []byte("\ufeff"))
		}
		if t := bytes.TrimRight(line, "\r\n \t"); len(t) > 0 {
			if !gjson.ValidBytes(t) {
				return nil, fmt.Errorf("%s:%d: invalid JSON", path, n)
			}
			lines = append(lines, t)
		}
		if err == io.EOF {
			return lines, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
	}
}

// parseInstant reads a FHIR instant, dateTime or date (the lenient side of "strict in what you
// send"): a partial date means its first instant, in UTC.
func parseInstant(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04Z07:00", "2006-01-02", "2006-01", "2006"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a FHIR instant (such as 2024-01-02T03:04:05Z)", s)
}
