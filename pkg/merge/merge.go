package merge

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/failpoint"
	"github.com/bulkpipe/bulkpipe/pkg/fhirjson"
	"github.com/bulkpipe/bulkpipe/pkg/ndjson"
)

// Options of one merge. The zero value of each optional field means its default.
type Options struct {
	Sources   []string // export folders, NDJSON files, or "-" for Stdin, in argument order
	Out       string   // the merged export folder, or "-" for NDJSON on Stdout (one resource type)
	Force     bool     // replace a non-empty Out (never a source, or a folder holding or inside one)
	Mem       int64    // bytes of records sorted in memory before a run is spilled to disk
	MaxFile   int64    // start a new Type.NNN.ndjson past this many bytes
	MaxLine   int      // refuse input lines longer than this
	Tmp       string   // where sorted runs go; "" = inside the staging folder (or $TMPDIR for Out "-")
	Group     string   // Group of sources without a log
	Timestamp time.Time
	HasTime   bool // Timestamp is the transactionTime of sources without a log

	Stdin    io.Reader
	Stdout   io.Writer
	Warn     func(msg string) // one diagnostic line (without the tool name); required
	Progress func(p Progress) // called every few thousand records; nil = silent
	Now      func() time.Time // the clock of the log's timestamps; required
	Version  string           // the tool's version, recorded in the log
}

// Progress is what a tool shows on a terminal, and what tests hook to interrupt a merge.
type Progress struct {
	Phase   string // "reading", "merging", "writing"
	Records int64  // records read, or written
	Bytes   int64  // bytes read, or written
	Runs    int    // sorted runs spilled to disk
}

// Result summarizes a merge for the closing line.
type Result struct {
	Read, Written, Deleted, Errors int64
	Types                          []string // resource types written, sorted
	Files                          int      // files in the merged folder
	// FilterMismatches are the slices holding resources their _typeFilter excludes (each also
	// reported through Warn): the merge is still right, since copies collapse.
	FilterMismatches []FilterMismatch
}

// OptionsError is a merge asked for in a way that cannot work (stdin twice, a source without a
// time, several resource types to one stream): the caller's mistake rather than the data's, which
// tools report as a usage error.
type OptionsError struct{ msg string }

func (e *OptionsError) Error() string { return e.msg }

func optionsErrorf(format string, args ...any) error {
	return &OptionsError{msg: fmt.Sprintf(format, args...)}
}

// merger carries one merge from the sources to the output.
type merger struct {
	o       *Options
	srcs    []*source
	rules   *rules
	sort    *sorter
	seq     uint64
	types   []string // resource types seen, sorted
	errs    []exportdir.File
	warned  map[string]bool
	res     Result
	key     []byte
	counter int64
	read    int64 // bytes read
	started time.Time
}

// Run runs a whole merge: sources, sort, output. Nothing appears at o.Out unless it returns nil.
func Run(ctx context.Context, o *Options) (*Result, error) {
	if o.Out == "-" && o.Force {
		return nil, optionsErrorf("--force applies to an output folder, not --dir -")
	}
	if o.Out != "-" {
		if err := checkOutOutsideSources(o.Out, o.Sources); err != nil {
			return nil, &OptionsError{msg: err.Error()}
		}
	}
	srcs, err := openSources(o)
	if err != nil {
		return nil, err
	}
	m := &merger{o: o, srcs: srcs, warned: map[string]bool{}, started: o.Now()}
	times := make([]time.Time, len(srcs))
	for i, s := range srcs {
		times[i] = s.time
	}
	m.rules = newRules(times)

	var out *outDir
	runDir := o.Tmp
	if o.Out != "-" {
		if out, err = createOutDir(o.Out, o.Force); err != nil {
			return nil, err
		}
		defer out.abort() // no-op after commit
		if runDir == "" {
			runDir = out.staging
		}
	} else if runDir == "" {
		runDir = os.TempDir()
	}
	runs, err := os.MkdirTemp(runDir, ".ndjson-merge-runs-")
	if err != nil {
		return nil, fmt.Errorf("create a folder for sorted runs: %w", err)
	}
	defer os.RemoveAll(runs)
	m.sort = newSorter(m.rules, o.Mem, runs)
	defer m.sort.close() // before the runs are removed

	if err := m.readAll(ctx); err != nil {
		return nil, err
	}
	if o.Out == "-" {
		return m.toStdout(ctx)
	}
	return m.toFolder(ctx, out, runs)
}

// readAll feeds every record of every source to the sort, in argument order.
func (m *merger) readAll(ctx context.Context) error {
	for _, src := range m.srcs {
		for _, f := range src.files {
			var err error
			switch f.ItemType {
			case exportdir.ItemOutput:
				err = m.readFile(ctx, src, f, m.addResource)
			case exportdir.ItemDeleted:
				err = m.readFile(ctx, src, f, m.addDeletes)
			case exportdir.ItemError:
				m.errs = append(m.errs, f) // copied as they are once the merge is written
			}
			if err != nil {
				return err
			}
		}
	}
	for _, src := range m.srcs {
		for _, mm := range src.mismatches() {
			m.o.Warn(mm.text(true))
			m.res.FilterMismatches = append(m.res.FilterMismatches, mm)
		}
	}
	m.report("merging", m.counter, m.read)
	return nil
}

// lineFunc handles one valid JSON line of a file; where names it for messages ("FILE:LINE").
type lineFunc func(ctx context.Context, src *source, where func() string, line []byte) error

func (m *merger) readFile(ctx context.Context, src *source, f exportdir.File, fn lineFunc) error {
	name := f.Path
	if src.stdin {
		name = "stdin"
	}
	r, err := m.o.open(f)
	if err != nil {
		return fmt.Errorf("read %s: %w", name, unwrapPathError(err))
	}
	defer r.Close()
	sc := ndjson.NewScanner(r, m.o.MaxLine)
	where := func() string { return fmt.Sprintf("%s:%d", name, sc.Line()) }
	for sc.Scan() {
		line := sc.Bytes()
		if !ndjson.Valid(line) {
			return fmt.Errorf("%s: invalid JSON", where())
		}
		if err := fn(ctx, src, where, line); err != nil {
			return err
		}
		m.read += int64(len(line)) + 1
		if m.counter++; m.counter&0x3ff == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			m.report("reading", m.counter, m.read)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// addResource checks a resource line and adds it to the sort.
func (m *merger) addResource(ctx context.Context, src *source, where func() string, line []byte) error {
	typ := fhirjson.ResourceType(line)
	switch {
	case typ == "":
		return fmt.Errorf("%s: no resourceType (want one FHIR resource per line)", where())
	case !validTypeName(typ):
		return fmt.Errorf("%s: resourceType %q is not a FHIR resource type", where(), typ)
	}
	id := fhirjson.ID(line)
	if id == "" {
		return fmt.Errorf("%s: %s has no id", where(), typ)
	}
	e := entry{kind: kindResource, slice: uint32(src.index), seq: m.seq, body: line}
	m.seq++
	if lu, ok := fhirjson.LastUpdated(line); ok {
		if e.lu, ok = parseInstant(lu); !ok {
			m.warnOnce("lastUpdated", fmt.Sprintf("%s: meta.lastUpdated %q is not an instant: treated as missing (oldest); further such values are not reported", where(), lu))
		}
	}
	if fc := src.checks[typ]; fc != nil {
		fc.see(line, id)
	}
	m.key = makeKey(m.key, typ, id)
	e.key = m.key
	if i, found := slices.BinarySearch(m.types, typ); !found {
		m.types = slices.Insert(m.types, i, typ)
		if m.o.Out == "-" && len(m.types) > 1 {
			return m.severalTypes() // before reading everything, and before writing anything
		}
	}
	m.res.Read++
	return m.sort.add(ctx, &e)
}

// addDeletes adds the DELETE entries of one deleted/ Bundle to the sort.
func (m *merger) addDeletes(ctx context.Context, src *source, where func() string, line []byte) error {
	dels := exportdir.Deletions(line)
	if len(dels) == 0 {
		m.warnOnce("bundle", fmt.Sprintf("%s: not a transaction Bundle of DELETE entries: ignored; further such lines are not reported", where()))
	}
	for _, d := range dels {
		if !validTypeName(d.ResourceType) || d.ID == "" {
			m.warnOnce("delete", fmt.Sprintf("%s: DELETE %s/%s is not a resource type and id: ignored", where(), d.ResourceType, d.ID))
			continue
		}
		m.key = makeKey(m.key, d.ResourceType, d.ID)
		e := entry{kind: kindDelete, slice: uint32(src.index), seq: m.seq, key: m.key}
		m.seq++
		if err := m.sort.add(ctx, &e); err != nil {
			return err
		}
	}
	return nil
}

func (m *merger) warnOnce(what, msg string) {
	if !m.warned[what] {
		m.warned[what] = true
		m.o.Warn(msg)
	}
}

func (m *merger) report(phase string, records, bytes int64) {
	if m.o.Progress != nil {
		m.o.Progress(Progress{Phase: phase, Records: records, Bytes: bytes, Runs: m.sort.runCount()})
	}
}

// toStdout writes the merged resources of the one resource type to stdout, in id order.
func (m *merger) toStdout(ctx context.Context) (*Result, error) {
	if len(m.types) > 1 {
		return nil, m.severalTypes()
	}
	w := m.o.Stdout
	var dels int64
	err := m.sort.each(ctx, func(e *entry) error {
		if e.kind == kindDelete {
			dels++
			return nil
		}
		if _, err := w.Write(e.body); err != nil {
			return err
		}
		if _, err := w.Write(newline); err != nil {
			return err
		}
		m.res.Written++
		if m.res.Written&0xfff == 0 {
			m.report("writing", m.res.Written, 0)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if dels > 0 {
		m.o.Warn(fmt.Sprintf("%d deletions are not written to stdout: use --dir DIR to keep deleted/", dels))
	}
	if len(m.errs) > 0 {
		m.o.Warn(fmt.Sprintf("%d error/ files are not written to stdout: use --dir DIR to keep them", len(m.errs)))
	}
	m.res.Deleted, m.res.Types = dels, m.types
	return &m.res, nil
}

var newline = []byte{'\n'}

func (m *merger) severalTypes() error {
	return optionsErrorf("--dir - writes one resource type, and the sources hold %s: use --dir DIR", strings.Join(m.types, " and "))
}

// toFolder writes the merged export folder into the staging folder and renames it into place.
func (m *merger) toFolder(ctx context.Context, out *outDir, runs string) (*Result, error) {
	out.maxFile = m.o.MaxFile
	err := m.sort.each(ctx, func(e *entry) error {
		typ, id := splitKey(e.key)
		var err error
		if e.kind == kindDelete {
			err = out.deletion(typ, id)
			m.res.Deleted++
		} else {
			err = out.resource(typ, e.body)
			m.res.Written++
		}
		if n := m.res.Written + m.res.Deleted; n&0xfff == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			m.report("writing", n, out.bytes)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := out.endResources(); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(runs); err != nil {
		return nil, fmt.Errorf("remove sorted runs: %w", err)
	}
	for _, f := range m.errs {
		n, err := out.copyErrors(ctx, f, m.o.MaxLine)
		if err != nil {
			return nil, err
		}
		m.res.Errors += n
	}
	if err := out.endErrors(); err != nil {
		return nil, err
	}
	if err := m.writeMetadata(out); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	failpoint.Hit("merge.before-rename") // DESIGN.md §8: a kill here must leave --dir untouched
	if err := out.commit(); err != nil {
		return nil, err
	}
	m.res.Types, m.res.Files = m.types, len(out.files)
	return &m.res, nil
}

// absPath is filepath.Abs, falling back to the path as given.
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
