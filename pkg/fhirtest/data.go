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
	"strconv"
	"strings"
	"sync"
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
	// live is set on a --data folder: it is read again at a kickoff when it changed, so tests
	// can add, update and delete resources between exports.
	live *liveDir
	// tombstones are the deletions of a --data folder (its deleted.ndjson).
	tombstones []tombstone
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
	if cur, _ := ds.current(); cur != ds {
		return cur.binary(id)
	}
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
	if cur, _ := ds.current(); cur != ds {
		return cur.patientIDs()
	}
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
	if cur, err := ds.current(); err != nil {
		return err
	} else if cur != ds {
		return cur.each(types, stop, fn)
	}
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

// fromDir serves a folder of NDJSON files as a live server would: the folder as it is now, and
// again as it is at each later kickoff when it changed (refresh).
func fromDir(dir string) (*dataset, error) {
	stamp, err := stampOf(dir)
	if err != nil {
		return nil, err
	}
	ds, err := readDir(dir)
	if err != nil {
		return nil, err
	}
	ds.live = &liveDir{dir: dir, stamp: stamp, snap: ds}
	return ds, nil
}

// readDir reads a folder of NDJSON files, naming the resource type as bulk-data-client
// (1.Patient.ndjson), Cumulus (Patient.000.ndjson), SMART Fetch (Patient.001.ndjson.gz) and plain
// exports (Patient.ndjson) do. Binary, Medication and Group lines are also readable by id. A
// resource with a tombstone in deleted.ndjson at or after its meta.lastUpdated is gone.
func readDir(dir string) (*dataset, error) {
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
	if err := ds.readTombstones(filepath.Join(dir, TombstoneFile)); err != nil {
		return nil, err
	}
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

// liveDir is a --data folder as the server last read it.
type liveDir struct {
	dir   string
	mu    sync.Mutex
	stamp string   // stampOf the folder when snap was read
	snap  *dataset // the folder's data set (the server's own at start)
	n     int      // reads so far, for build keys
	err   error    // why the last read failed; exports fail with it until the folder is fixed
}

// refresh reads a --data folder again when it changed since the last read, and returns what
// tells the build cache apart the exports of different versions of the data ("" for other data
// sets, which never change). The server calls it at each kickoff, after taking the export's
// transactionTime, so the folder is read after that instant: a change is in this export or has a
// meta.lastUpdated (or tombstone) after its transactionTime, and so is in an export _since then,
// never in neither.
func (ds *dataset) refresh() string {
	l := ds.live
	if l == nil {
		return ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	stamp, err := stampOf(l.dir)
	if err == nil && stamp == l.stamp && l.err == nil {
		return "\x00data " + strconv.Itoa(l.n)
	}
	var snap *dataset
	if err == nil {
		snap, err = readDir(l.dir)
	}
	l.n++
	if l.err = err; err == nil {
		snap.remember(l.snap)
		l.stamp, l.snap = stamp, snap
	}
	return "\x00data " + strconv.Itoa(l.n)
}

// current is the data set exports read: the latest read of a --data folder, else ds itself. The
// server's other routes (Group checks, Medication reads, metadata) keep the folder as read at start.
func (ds *dataset) current() (*dataset, error) {
	l := ds.live
	if l == nil {
		return ds, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.snap, l.err
}

// exportTypes are the resource types an export may hold, in output order: with a --data
// folder, also those whose every resource was deleted, so that exports _since report it.
func (ds *dataset) exportTypes() []string {
	cur, _ := ds.current()
	types := cur.types
	for _, t := range cur.tombstones {
		if !slices.Contains(types, t.typ) {
			types = append(slices.Clip(types), t.typ)
		}
	}
	return types
}

// members returns the Patient ids of a Group, as exports see it.
func (ds *dataset) members(group string) []string {
	cur, _ := ds.current()
	return cur.groups[group]
}

// stampOf sums up the files of a --data folder that readDir reads (name, size, modification
// time), so that a kickoff reads the folder again only when one of them changed.
func stampOf(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("read data folder: %w", err)
	}
	var b strings.Builder
	for _, e := range entries {
		if e.IsDir() || (typeFromName(e.Name()) == "" && e.Name() != TombstoneFile) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return "", fmt.Errorf("read data folder: %w", err)
		}
		fmt.Fprintf(&b, "%s\x00%d\x00%d\n", e.Name(), fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String(), nil
}

// TombstoneFile is the file of a --data folder that lists deleted resources, one JSON object a
// line: {"type":"Observation","id":"o-1","deleted":"2026-12-05T07:31:00Z"}. A resource whose
// meta.lastUpdated is not after its tombstone's time is gone from every export, and an export
// with _since at or before that time lists it in its deleted item (Bulk Data IG v2: a Bundle of
// DELETE entries).
const TombstoneFile = "deleted.ndjson"

// tombstone is one deletion of a --data folder.
type tombstone struct {
	typ, id string
	at      int64  // when it was deleted, Unix nanoseconds
	patient string // compartment of the deleted resource, when known
	known   bool   // the server saw the resource (in the folder now or at an earlier read)
}

// parseTombstone reads one line of deleted.ndjson.
func parseTombstone(line []byte) (tombstone, error) {
	if !gjson.ValidBytes(line) || !gjson.ParseBytes(line).IsObject() {
		return tombstone{}, errors.New("not a JSON object")
	}
	f := gjson.GetManyBytes(line, "type", "id", "deleted")
	if !isResourceType(f[0].Str) {
		return tombstone{}, fmt.Errorf("type %q is not a FHIR resource type", f[0].Str)
	}
	if f[1].Str == "" || strings.ContainsAny(f[1].Str, "/?# ") {
		return tombstone{}, fmt.Errorf("id %q is not a resource id", f[1].Str)
	}
	at, err := parseInstant(f[2].Str)
	if err != nil {
		return tombstone{}, fmt.Errorf("deleted: %w", err)
	}
	return tombstone{typ: f[0].Str, id: f[1].Str, at: at.UnixNano()}, nil
}

// readTombstones reads the folder's deleted.ndjson, when it has one, and drops the resources it
// deleted (those not changed again after their deletion).
func (ds *dataset) readTombstones(path string) error {
	lines, err := readNDJSON(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	latest := map[string]int{} // Type/id → index of its latest tombstone
	for n, line := range lines {
		t, err := parseTombstone(line)
		if err != nil {
			return fmt.Errorf("%s: line %d: %w", path, n+1, err)
		}
		key := t.typ + "/" + t.id
		if i, ok := latest[key]; !ok || ds.tombstones[i].at < t.at {
			if !ok {
				latest[key] = len(ds.tombstones)
				ds.tombstones = append(ds.tombstones, t)
			} else {
				ds.tombstones[i] = t
			}
		}
	}
	for typ, rs := range ds.res {
		ds.res[typ] = slices.DeleteFunc(rs, func(r resource) bool {
			i, ok := latest[typ+"/"+r.id]
			if !ok {
				return false
			}
			t := &ds.tombstones[i]
			t.patient, t.known = r.patient, true
			// A resource written again after its deletion is back (and its tombstone is not
			// reported: the export's own line would be deleted by it).
			if r.hasUpd && r.updated > t.at {
				t.at = -1
				return false
			}
			return true
		})
	}
	ds.tombstones = slices.DeleteFunc(ds.tombstones, func(t tombstone) bool { return t.at < 0 })
	return nil
}

// remember takes from the previous read of the folder the compartments of deleted resources
// whose lines are gone now, as a server remembers what it deleted. One pass over prev.
func (ds *dataset) remember(prev *dataset) {
	unknown := map[string]*tombstone{} // Type/id → a tombstone whose compartment is not known
	for i := range ds.tombstones {
		if t := &ds.tombstones[i]; !t.known {
			unknown[t.typ+"/"+t.id] = t
		}
	}
	if len(unknown) == 0 {
		return
	}
	for typ, rs := range prev.res {
		for _, r := range rs {
			if t := unknown[typ+"/"+r.id]; t != nil {
				t.patient, t.known = r.patient, true
			}
		}
	}
	for _, p := range prev.tombstones {
		if t := unknown[p.typ+"/"+p.id]; t != nil && !t.known && p.known {
			t.patient, t.known = p.patient, true
		}
	}
}

// deletedSince lists, as Type/id, the resources of types deleted at or after since (and not
// after until, when set) that the export's scope may hold: a deletion whose resource the server
// never saw has no known compartment, so every export with _since reports it.
func (ds *dataset) deletedSince(types []string, since, until int64, scope map[string]bool) []string {
	cur, err := ds.current()
	if err != nil {
		return nil
	}
	var keys []string
	for _, t := range cur.tombstones {
		switch {
		case t.at < since, until != 0 && t.at > until, !slices.Contains(types, t.typ):
		case scope != nil && t.known && !scope[t.patient]:
		default:
			keys = append(keys, t.typ+"/"+t.id)
		}
	}
	slices.Sort(keys)
	return keys
}
