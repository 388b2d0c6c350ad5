// Package store loads export folders into an analytics store and keeps Cumulus-style completion
// tracking (DESIGN.md §7). It decides what a folder means — which rows, which deletes, which
// completion rows — and leaves SQL to a Backend: store/duckdb holds the cgo DuckDB backend alone,
// so that this package and its callers' tests stay fast to build.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/fhirjson"
	"github.com/bulkpipe/bulkpipe/pkg/ndjson"
	"github.com/bulkpipe/bulkpipe/pkg/resourcetype"
)

// Backend is a store that loads one folder per transaction.
type Backend interface {
	// Begin starts the transaction of one folder.
	Begin(ctx context.Context) (Batch, error)
}

// Batch is one folder's transaction. Rows are added in folder order; for an id added twice the
// last one wins (exports repeat rows: DESIGN.md §9). Nothing is visible before Commit, and
// Rollback (or a crash) leaves the store as it was.
type Batch interface {
	// Add stages a resource for table. resource is only valid during the call.
	Add(table, id string, resource []byte, sourceFile string) error
	// Delete stages a delete of table/id from a deleted/ Bundle.
	Delete(table, id, sourceFile string) error
	// Existing returns those of ids that table already holds (before this batch).
	Existing(ctx context.Context, table string, ids []string) ([]string, error)
	// Commit merges the staged rows, applies the deletes, writes completion rows (Plan) and
	// commits, all in one transaction.
	Commit(ctx context.Context, p Plan) error
	// Rollback discards the batch; it is a no-op after Commit.
	Rollback() error
}

// Plan is what Commit writes besides the staged rows.
type Plan struct {
	Group      string
	ExportTime time.Time // the rows' export_time: later wins per id, deletes apply to rows not newer
	ExportURL  string
	// Tables are created even when the folder has no row for them: a type requested in _type
	// with no file is an empty table, not a missing one.
	Tables []string
	// Completion lists the tables that get an etl__completion row at CompletionTime.
	Completion     []string
	CompletionTime time.Time
	// Excluded is recorded in etl__completion and etl__completion_encounters (ExcludedString).
	Excluded   string
	ETLVersion string
	ETLTime    time.Time
}

// Source is one export folder, already discovered (pkg/exportdir does that).
type Source struct {
	Dir    string
	Export Export
	Files  []File
	// ExtraTypes are the resource types the folder's manifest names (Options.ExtraTypes).
	ExtraTypes []string
}

// File is one NDJSON file of a folder.
type File struct {
	Path         string // opened, and recorded as source_file
	Deleted      bool   // a deleted/ file of transaction Bundles
	ResourceType string // from the file name; lines are routed by their own resourceType
	Open         func() (io.ReadCloser, error)
}

// Deletion is one DELETE entry of a deleted/ Bundle.
type Deletion struct{ ResourceType, ID string }

// Options tune Load.
type Options struct {
	Exclude        []string                // resource types not loaded (--exclude-resources)
	AssumeComplete []string                // types marked complete despite slicing (--assume-complete)
	Deletions      func([]byte) []Deletion // reads a deleted/ Bundle line; nil ignores deleted/
	MaxLine        int                     // 0 → ndjson.DefaultMaxLine
	Now            func() time.Time        // etl_time; nil → time.Now
	Version        string                  // etl_version
	Warn           func(string)            // diagnostics for stderr; nil drops them
	Progress       func(Progress)          // called as bytes are read; nil is silent
	// ReplaceInvalidText loads a line with invalid UTF-8 or a lone surrogate escape with U+FFFD
	// in its place (counted, and reported through Warn) instead of refusing the folder.
	ReplaceInvalidText bool
	// ExtraTypes are resource types loaded besides FHIR's (resourcetype.Known): those the
	// folder's manifest names, a server's own. Lines of any other type are refused
	// (ErrUnknownType), since every type becomes a table, unless AllowUnknownTypes.
	ExtraTypes        []string
	AllowUnknownTypes bool
	// Medications, when set, downloads the Medications that MedicationRequests reference
	// (medicationReference, not contained) and that neither the folder nor the store has: many
	// EHRs export them only that way (DESIGN.md §7, Cumulus's --fhir-url).
	Medications MedicationSource
}

// MedicationSource fetches a Medication by reference ("Medication/123", or an absolute URL) and
// says where it came from (recorded as source_file).
type MedicationSource interface {
	Medication(ctx context.Context, ref string) (resource []byte, url string, err error)
}

// Progress reports a load as it runs.
type Progress struct {
	// Merging is set once every file is staged, while the backend merges and commits (for a
	// large folder a good part of the time).
	Merging bool
	File    string
	Files   int   // files finished
	Rows    int64 // resources staged
	Bytes   int64 // bytes of NDJSON read (decompressed)
}

// Stats sums up one folder's load.
type Stats struct {
	Files   int
	Rows    int64
	Deletes int64
	Bytes   int64
	Tables  map[string]int64 // rows staged per table
	// MedicationsFetched and MedicationsFailed count Options.Medications downloads; each failure
	// was reported through Options.Warn.
	MedicationsFetched, MedicationsFailed int
	// TextReplaced counts the U+FFFD replacements of Options.ReplaceInvalidText.
	TextReplaced int64
	Completion

	medRefs map[string]string // Medication id → first reference to it, from MedicationRequests
	medIDs  map[string]bool   // Medication ids the folder has
}

// ErrInvalid marks bad input (a line that is not JSON, a resource without id): the folder is not
// loaded and the store is unchanged. The errors are *LineError.
var ErrInvalid = errors.New("invalid input")

// ErrUnknownType is the cause of a LineError for a resourceType that is neither FHIR's nor in
// Options.ExtraTypes: a file of made-up types would otherwise make a table of each.
var ErrUnknownType = errors.New("unknown resource type")

// LineError is a bad line: "FILE:LINE: what".
type LineError struct {
	Path string
	Line int
	What string // "invalid JSON", "missing id", …
	Err  error  // the cause when there is one, such as an *ndjson.TextError
}

func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, e.What) }

// Unwrap returns the cause, so that callers can tell bad text (*ndjson.TextError) from the rest.
func (e *LineError) Unwrap() error { return e.Err }

// Is makes every LineError match ErrInvalid.
func (e *LineError) Is(target error) bool { return target == ErrInvalid }

// progressEvery is how many bytes pass between progress callbacks.
const progressEvery = 4 << 20

// Load loads one folder into be in one transaction: every output line routed by its
// resourceType, deletes from deleted/, and the folder's completion rows. On any error the
// transaction is rolled back.
func Load(ctx context.Context, be Backend, src Source, opts Options) (st Stats, err error) {
	warn := opts.Warn
	if warn == nil {
		warn = func(string) {}
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	excluded := tableSet(opts.Exclude)
	var present []string
	for _, f := range src.Files {
		if !f.Deleted && !slices.Contains(excluded, TableName(f.ResourceType)) {
			present = append(present, f.ResourceType)
		}
	}
	comp, err := planCompletion(src.Export, present, opts.Exclude, opts.AssumeComplete, opts.knownType)
	if err != nil {
		return st, err
	}
	st.Completion = comp
	st.Tables = map[string]int64{}

	b, err := be.Begin(ctx)
	if err != nil {
		return st, err
	}
	defer func() {
		if err != nil {
			b.Rollback()
		}
	}()
	for _, f := range src.Files {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		if !f.Deleted && slices.Contains(excluded, TableName(f.ResourceType)) {
			continue
		}
		if f.Deleted && opts.Deletions == nil {
			continue
		}
		if err := loadFile(ctx, b, f, excluded, opts, &st, warn); err != nil {
			return st, err
		}
		st.Files++
	}
	if opts.Medications != nil && len(st.medRefs) > 0 {
		if err := fetchMedications(ctx, b, opts, &st, warn); err != nil {
			return st, err
		}
	}
	tables := slices.Clone(comp.Tables)
	for _, s := range comp.Skipped {
		tables = append(tables, s.Table)
	}
	for t := range st.Tables {
		tables = append(tables, t)
	}
	slices.Sort(tables)
	p := Plan{
		Group:          src.Export.Group,
		ExportTime:     Micro(src.Export.Time),
		ExportURL:      src.Export.URL,
		Tables:         slices.Compact(tables),
		Completion:     comp.Tables,
		CompletionTime: comp.Time,
		Excluded:       ExcludedString(comp.Excluded),
		ETLVersion:     opts.Version,
		ETLTime:        Micro(now()),
	}
	if opts.Progress != nil {
		opts.Progress(Progress{Merging: true, Files: st.Files, Rows: st.Rows, Bytes: st.Bytes})
	}
	if err := b.Commit(ctx, p); err != nil {
		return st, err
	}
	return st, nil
}

// loadFile stages one file's lines. Reading, validating and routing run in a goroutine ahead of
// staging (a two-stage pipeline), so that on two cores the JSON validation overlaps the
// Appender's copying into DuckDB instead of adding to it.
func loadFile(ctx context.Context, b Batch, f File, excluded []string, opts Options, st *Stats, warn func(string)) error {
	r, err := f.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chunks := make(chan *chunk, 2)
	free := make(chan *chunk, 3)
	for range cap(free) {
		free <- &chunk{}
	}
	rd := &reader{f: f, excluded: excluded, opts: opts}
	go rd.run(ctx, r, chunks, free)
	var sinceTick int64
	for c := range chunks {
		st.Bytes += c.bytes
		sinceTick += c.bytes
		for _, rec := range c.recs {
			var err error
			if f.Deleted {
				err = b.Delete(rec.table, rec.id, f.Path)
				st.Deletes++
			} else {
				err = b.Add(rec.table, rec.id, c.buf[rec.start:rec.end], f.Path)
				st.Rows++
				st.Tables[rec.table]++
				if opts.Medications != nil {
					st.noteMedication(rec)
				}
			}
			if err != nil {
				cancel()
				for range chunks { // let the reader finish
				}
				return err
			}
		}
		if c.err != nil {
			return c.err
		}
		if opts.Progress != nil && sinceTick >= progressEvery {
			sinceTick = 0
			opts.Progress(Progress{File: f.Path, Files: st.Files, Rows: st.Rows, Bytes: st.Bytes})
		}
		free <- c
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if rd.fixedLines > 0 {
		st.TextReplaced += rd.fixes
		warn(fmt.Sprintf("%s: %d invalid UTF-8 sequences or lone surrogates replaced with U+FFFD on %d lines (first at line %d)",
			f.Path, rd.fixes, rd.fixedLines, rd.firstFixLine))
	}
	if rd.mismatches > 0 {
		warn(fmt.Sprintf("%s: %d resources are not %s (first at line %d: %s); loaded by their resourceType",
			f.Path, rd.mismatches, f.ResourceType, rd.firstLine, rd.firstType))
	}
	if opts.Progress != nil {
		opts.Progress(Progress{File: f.Path, Files: st.Files + 1, Rows: st.Rows, Bytes: st.Bytes})
	}
	return nil
}

// chunkBytes is how much NDJSON one chunk carries from the reader to the stager.
const chunkBytes = 1 << 20

// chunk is a run of validated records, their bytes copied into buf.
type chunk struct {
	buf   []byte
	recs  []record
	bytes int64 // bytes read, line ends included
	err   error // the reader stopped here; recs before it are good
}

type record struct {
	table, id  string
	start, end int
	medRef     string // a MedicationRequest's medicationReference.reference
}

// reader is the first stage of loadFile: it reads, validates and routes the file's lines into
// chunks, taking empty chunks from free and sending full ones to out, until the file ends, a
// line is refused (the chunk's err), or the context is done.
type reader struct {
	f          File
	excluded   []string
	opts       Options
	mismatches int
	firstLine  int
	firstType  string
	// fixes counts the replacements of ReplaceInvalidText, on fixedLines lines.
	fixes                    int64
	fixedLines, firstFixLine int

	ctx  context.Context
	out  chan<- *chunk
	free <-chan *chunk
	c    *chunk // the chunk being filled
}

func (rd *reader) run(ctx context.Context, r io.Reader, out chan<- *chunk, free <-chan *chunk) {
	defer close(out)
	rd.ctx, rd.out, rd.free = ctx, out, free
	sc := ndjson.NewScanner(r, rd.opts.MaxLine)
	if !rd.take() {
		return
	}
	for sc.Scan() {
		line := sc.Bytes()
		rd.c.bytes += int64(len(line)) + 1
		if err := rd.add(sc.Line(), line); err != nil {
			rd.fail(err)
			return
		}
		if len(rd.c.buf) >= chunkBytes || len(rd.c.recs) >= chunkBytes/64 {
			if !rd.send() || !rd.take() {
				return
			}
		}
	}
	if err := sc.Err(); err != nil {
		rd.fail(fmt.Errorf("%s: %w", rd.f.Path, err))
		return
	}
	rd.send()
}

// take starts filling an empty chunk; false when the load was cancelled.
func (rd *reader) take() bool {
	select {
	case rd.c = <-rd.free:
		rd.c.buf, rd.c.recs, rd.c.bytes, rd.c.err = rd.c.buf[:0], rd.c.recs[:0], 0, nil
		return true
	case <-rd.ctx.Done():
		return false
	}
}

// send hands the chunk to the stager; false when the load was cancelled.
func (rd *reader) send() bool {
	select {
	case rd.out <- rd.c:
		rd.c = nil
		return true
	case <-rd.ctx.Done():
		return false
	}
}

// fail sends the chunk with the error that stops the file: the records before it are good.
func (rd *reader) fail(err error) {
	rd.c.err = err
	rd.send()
}

// add validates line n and routes its records into the chunk: a resource, or the deletes of a
// deleted/ Bundle. An error refuses the file.
func (rd *reader) add(n int, line []byte) error {
	line, err := rd.checkText(n, line)
	if err != nil {
		return err
	}
	if rd.f.Deleted {
		rd.addDeletions(line)
		return nil
	}
	return rd.addResource(n, line)
}

// checkText refuses a line that is not JSON, or whose text is not Unicode unless
// ReplaceInvalidText, which returns the line with U+FFFD in place of the bad text. DuckDB
// stores invalid UTF-8 as a NULL resource and refuses a lone surrogate in the whole merge,
// naming neither file nor line: the text is checked here, at the edge.
func (rd *reader) checkText(n int, line []byte) ([]byte, error) {
	if !ndjson.Valid(line) {
		return nil, &LineError{Path: rd.f.Path, Line: n, What: "invalid JSON"}
	}
	err := ndjson.CheckText(line)
	if err == nil {
		return line, nil
	}
	if !rd.opts.ReplaceInvalidText {
		return nil, &LineError{Path: rd.f.Path, Line: n, What: err.Error(), Err: err}
	}
	line, fixes := ndjson.FixText(line)
	if rd.fixedLines == 0 {
		rd.firstFixLine = n
	}
	rd.fixedLines++
	rd.fixes += int64(fixes)
	return line, nil
}

// addDeletions routes the DELETE entries of a deleted/ Bundle line. Entries of types that are
// not loaded, or without an id, delete nothing.
func (rd *reader) addDeletions(line []byte) {
	for _, d := range rd.opts.Deletions(line) {
		t := TableName(d.ResourceType)
		if !rd.opts.knownType(d.ResourceType) || d.ID == "" || slices.Contains(rd.excluded, t) {
			continue
		}
		rd.c.recs = append(rd.c.recs, record{table: t, id: d.ID})
	}
}

// addResource routes the resource of line n to its type's table (unless excluded), its bytes
// copied into the chunk. A resource of another type than its file's name says is loaded by its
// own resourceType, and counted for the warning.
func (rd *reader) addResource(n int, line []byte) error {
	typ, id := typeAndID(line)
	if err := rd.checkResource(n, typ, id); err != nil {
		return err
	}
	if typ != rd.f.ResourceType {
		if rd.mismatches == 0 {
			rd.firstLine, rd.firstType = n, typ
		}
		rd.mismatches++
	}
	t := TableName(typ)
	if slices.Contains(rd.excluded, t) {
		return nil
	}
	c := rd.c
	start := len(c.buf)
	c.buf = append(c.buf, line...)
	rec := record{table: t, id: id, start: start, end: len(c.buf)}
	if rd.opts.Medications != nil && typ == "MedicationRequest" {
		rec.medRef = medicationReference(line)
	}
	c.recs = append(c.recs, rec)
	return nil
}

// checkResource refuses a resource without a loadable resourceType or without an id.
func (rd *reader) checkResource(n int, typ, id string) error {
	switch {
	case typ == "":
		return &LineError{Path: rd.f.Path, Line: n, What: "missing resourceType"}
	case !ValidResourceType(typ):
		return &LineError{Path: rd.f.Path, Line: n, What: fmt.Sprintf("invalid resourceType %.40q", typ)}
	case !rd.opts.knownType(typ):
		what := fmt.Sprintf("unknown resourceType %q", typ)
		if s := resourcetype.Suggest(typ); s != "" {
			what += fmt.Sprintf(" (did you mean %q?)", s)
		}
		return &LineError{Path: rd.f.Path, Line: n, What: what, Err: ErrUnknownType}
	case id == "":
		return &LineError{Path: rd.f.Path, Line: n, What: "missing id"}
	}
	return nil
}

// knownType reports whether resources of type typ may be loaded (Options.ExtraTypes).
func (o *Options) knownType(typ string) bool {
	if o.AllowUnknownTypes {
		return ValidResourceType(typ)
	}
	return resourcetype.Known(typ) || slices.Contains(o.ExtraTypes, typ) && ValidResourceType(typ)
}

// typeAndID reads the two members every line is routed by. Both are usually the first keys of
// a resource, so the lookups stop after a few bytes; the line was validated just before.
func typeAndID(line []byte) (string, string) {
	return fhirjson.ResourceType(line), fhirjson.ID(line)
}
