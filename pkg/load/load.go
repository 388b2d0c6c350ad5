package load

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/lake"
	"github.com/bulkpipe/bulkpipe/pkg/ndjson"
	"github.com/bulkpipe/bulkpipe/pkg/store"
	"github.com/bulkpipe/bulkpipe/pkg/store/duckdb"
)

// Options of one load. The zero value of each optional field means its default.
type Options struct {
	Dirs []string // export folders, loaded in this order, each in one transaction
	// Open opens the database; it is called once every folder is checked, so that a load that
	// cannot start creates no database file. Required.
	Open func(ctx context.Context) (*duckdb.DB, error)
	// Format "parquet" or "ndjson" also writes a snapshot of every table to Out after the load
	// (Cumulus ETL's output layout for ndjson); "" or "duckdb" writes none.
	Format string
	Out    string

	Group *string    // the Group of every folder, over its log's ("" for a system-level export)
	Time  *time.Time // the export time of every folder, over its log's transactionTime

	Exclude            []string // resource types not loaded, recorded in excluded_resources
	AssumeComplete     []string // types given completion rows although the export was sliced
	MaxLine            int      // refuse lines longer than this; 0 → ndjson.DefaultMaxLine
	AllowIncomplete    bool     // load a folder whose download did not finish, without completion rows
	ReplaceInvalidText bool     // load text that is not Unicode as U+FFFD instead of refusing the folder
	AllowUnknownTypes  bool     // load resource types that neither FHIR nor the manifest names

	// FHIR, when set, connects to the server the folders were exported from: Medications that
	// MedicationRequests reference but no file has are downloaded, and notes not yet inlined
	// are inlined on the way in (the files are not changed). Like Open it is called once every
	// folder is checked, so that a folder's error comes before a client's.
	FHIR func() (*fhirclient.Client, error)

	// Lake, when set, receives each folder as one append-only load instead of a database:
	// OpenStaging opens the database a folder is staged in (at path, removed afterwards), and
	// Committed hears of each load once it is visible. Open, Format and Summary are not used.
	Lake        *lake.Lake
	OpenStaging func(ctx context.Context, path string) (*duckdb.DB, error)
	Committed   func(dir string, c *lake.Commit)
	// Compact, with Lake, compacts the lake after the folders (if any), and Compacted hears
	// what that did.
	Compact   bool
	Compacted func(*lake.Compaction)

	// Summary, when set, receives every table's row count after the load (the snapshot
	// written), and then every group's incomplete encounters are explained, not only the
	// loaded groups'.
	Summary func([]duckdb.Count)

	Now     func() time.Time // etl_time of the completion rows; nil = time.Now
	Version string           // etl_version of the completion rows

	Warn     func(msg string)                            // one diagnostic line (without the tool name); nil drops them
	Start    func(dir string)                            // a folder starts loading
	Progress func(dir string, p store.Progress)          // a folder's load goes on; nil = silent
	Done     func(dir string, st store.Stats, err error) // a folder's load ended (err as store.Load returned it)
}

// Result sums up a load for the closing line.
type Result struct {
	Folders int
	Rows    int64 // resources loaded, over every folder
	// MedicationsFailed and AttachmentsFailed count the downloads from Options.FHIR that failed
	// (each reported through Options.Warn): everything else is loaded, and a rerun tries them
	// again.
	MedicationsFailed int
	AttachmentsFailed int64
}

// OptionsError is a load asked for in a way that cannot work (a folder with neither a log nor
// the Group and time given, an unknown snapshot format): the caller's mistake rather than the
// data's, which tools report as a usage error.
type OptionsError struct{ msg string }

func (e *OptionsError) Error() string { return e.msg }

func optionsErrorf(format string, args ...any) error {
	return &OptionsError{msg: fmt.Sprintf(format, args...)}
}

// Run loads every folder of o.Dirs into the database o.Open opens, writes the snapshot o.Format
// asks for, and explains incomplete encounters through o.Warn. Every folder is checked before
// the database is opened. A folder that fails to load is rolled back, and the folders before it
// stay loaded.
func Run(ctx context.Context, o *Options) (*Result, error) {
	switch o.Format {
	case "", "duckdb", "parquet", "ndjson":
	default:
		return nil, optionsErrorf("--format %q: want duckdb, parquet or ndjson", o.Format)
	}
	srcs := make([]store.Source, 0, len(o.Dirs))
	for _, dir := range o.Dirs {
		src, err := readFolder(o, dir)
		if err != nil {
			return nil, err
		}
		srcs = append(srcs, src)
	}
	var rem *remote
	if o.FHIR != nil {
		var err error
		if rem, err = newRemote(o); err != nil {
			return nil, err
		}
	}
	if o.Lake != nil {
		return o.runLake(ctx, srcs, rem)
	}
	db, err := o.Open(ctx)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	res := &Result{Folders: len(srcs)}
	for _, src := range srcs {
		st, err := o.loadFolder(ctx, db, src, rem)
		if err != nil {
			return nil, err
		}
		res.MedicationsFailed += st.MedicationsFailed
		res.Rows += st.Rows
	}
	if err := o.finish(ctx, db, srcs); err != nil {
		return nil, err
	}
	if err := db.Close(); err != nil {
		return nil, err
	}
	if rem != nil {
		res.AttachmentsFailed = rem.failedAttachments()
	}
	return res, nil
}

// loadFolder loads one folder in one transaction, and says what it means for completion: an
// unfinished download gets no completion rows, and each table the export does not vouch for
// (sliced, or by patient) is named with the flag that would.
func (o *Options) loadFolder(ctx context.Context, db *duckdb.DB, src store.Source, rem *remote) (store.Stats, error) {
	if o.Start != nil {
		o.Start(src.Dir)
	}
	opts := store.Options{
		Exclude:            o.Exclude,
		AssumeComplete:     o.AssumeComplete,
		Deletions:          deletions,
		MaxLine:            o.MaxLine,
		ReplaceInvalidText: o.ReplaceInvalidText,
		ExtraTypes:         src.ExtraTypes,
		AllowUnknownTypes:  o.AllowUnknownTypes,
		Now:                o.Now,
		Version:            o.Version,
		Warn:               o.warn,
	}
	if o.Progress != nil {
		opts.Progress = func(p store.Progress) { o.Progress(src.Dir, p) }
	}
	if rem != nil {
		opts.Medications = rem
		for i, f := range src.Files {
			src.Files[i] = rem.inline(ctx, f)
		}
	}
	st, err := store.Load(ctx, db, src, opts)
	if o.Done != nil {
		o.Done(src.Dir, st, err)
	}
	if _, ok := errors.AsType[*ndjson.TextError](err); ok {
		return st, fmt.Errorf("load %s: %w (--replace-invalid-utf8 loads it as U+FFFD)", src.Dir, err)
	}
	if errors.Is(err, store.ErrUnknownType) {
		return st, fmt.Errorf("load %s: %w (not a FHIR R4 or R5 resource type, nor one the manifest names: --allow-unknown-types loads it)", src.Dir, err)
	}
	if err != nil {
		return st, fmt.Errorf("load %s: %w", src.Dir, err)
	}
	if src.Export.Unfinished {
		o.warn(fmt.Sprintf("%s: %s: rows loaded without completion rows (--allow-incomplete)", src.Dir, store.ReasonUnfinished))
		return st, nil
	}
	for _, s := range st.Skipped {
		o.warn(fmt.Sprintf("%s: %s loaded without a completion row: %s (--assume-complete %s if it holds the whole Group)",
			src.Dir, s.Table, s.Reason, s.Table))
	}
	return st, nil
}

// finish writes the snapshot, hands over the row counts, and explains the incomplete
// encounters: of the groups loaded, or with Summary of every group.
func (o *Options) finish(ctx context.Context, db *duckdb.DB, srcs []store.Source) error {
	var err error
	switch o.Format {
	case "parquet":
		err = db.ExportParquet(ctx, o.Out)
	case "ndjson":
		err = db.ExportNDJSON(ctx, o.Out)
	}
	if err != nil {
		return fmt.Errorf("write %s snapshot to %s: %w", o.Format, o.Out, err)
	}
	if o.Summary != nil {
		counts, err := db.Summary(ctx)
		if err != nil {
			return err
		}
		o.Summary(counts)
	}
	if o.Summary == nil && len(srcs) == 0 {
		return nil
	}
	groups := make([]string, len(srcs))
	for i, src := range srcs {
		groups[i] = src.Export.Group
	}
	asked := groups
	if o.Summary != nil {
		asked = nil
	}
	gaps, err := db.Gaps(ctx, asked...)
	if err != nil {
		return err
	}
	for _, line := range explain(gaps, o.Summary != nil, groups) {
		o.warn(line)
	}
	return nil
}

// warn passes msg to Options.Warn, when set.
func (o *Options) warn(msg string) {
	if o.Warn != nil {
		o.Warn(msg)
	}
}
