// Command etl-load loads export folders into a DuckDB database (and on request snapshots it as
// Parquet or in Cumulus ETL's output layout), with Cumulus-style completion tracking
// (DESIGN.md §7).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/ndjson"
	"github.com/bulkpipe/bulkpipe/pkg/resourcetype"
	"github.com/bulkpipe/bulkpipe/pkg/store"
	"github.com/bulkpipe/bulkpipe/pkg/store/duckdb"
	"github.com/bulkpipe/bulkpipe/pkg/tool"
	"github.com/urfave/cli/v2"
)

func main() { os.Exit(tool.Main(newApp())) }

func newApp() *cli.App {
	return &cli.App{
		Name:      "etl-load",
		Usage:     "load Bulk Data export folders into DuckDB, with Cumulus completion tracking",
		ArgsUsage: "DIR...",
		Description: `Each export folder (ours, SMART bulk-data-client's, Cumulus/SMART Fetch's) is loaded in
one transaction: one table per resource type, the later export winning per id, deletes from
deleted/, and the folder's completion rows. The Group and time come from the folder's log,
or from --export-group and --export-timestamp.

Examples:
   etl-load export/                         load into ./bulkpipe.duckdb
   etl-load --db site.duckdb enc/ cond/     load two folders, in that order
   etl-load --export-group g1 --export-timestamp 2024-05-01T00:00:00Z old-export/
   etl-load --allow-incomplete export/      an unfinished download: its rows, no completion rows
   etl-load --replace-invalid-utf8 export/  load Latin-1 bytes and lone surrogates as U+FFFD
   etl-load --db site.duckdb --format parquet --dir snapshot/
   etl-load --memory-limit 512MiB --temp-dir /scratch export/
                                            a small machine: spill to a roomy disk
   etl-load --format ndjson --dir cumulus-out/ export/
   etl-load --fhir-url https://ehr.example/fhir --bearer-token tok.txt export/
                                            also download missing Medications, inline notes`,
		HideHelpCommand: true,
		Flags: tool.Flags([]cli.Flag{
			&cli.PathFlag{Name: "db", Value: "bulkpipe.duckdb", EnvVars: []string{"BULK_DB"}, Usage: "DuckDB database `FILE` (created if missing)"},
			&cli.StringFlag{Name: "format", Value: "duckdb", Usage: "`FORMAT`: duckdb, or also write a snapshot of every table: parquet or ndjson (Cumulus ETL layout)"},
			&cli.PathFlag{Name: "dir", Aliases: []string{"d", "out"}, Usage: "`DIR` for the parquet or ndjson snapshot"},
			&cli.StringFlag{Name: "export-group", Usage: "Group `NAME` of the export (overrides the log; \"\" for a system-level export)"},
			&cli.StringFlag{Name: "export-timestamp", Usage: "`TIME` of the export: a date, or an RFC 3339 time with a zone (overrides the log's transactionTime)"},
			&cli.StringSliceFlag{Name: "exclude-resources", Usage: "resource `TYPES` not to load (comma-separated or repeated); recorded in excluded_resources"},
			&cli.BoolFlag{Name: "allow-incomplete", Usage: "load a folder whose download did not finish, without completion rows"},
			&cli.StringSliceFlag{Name: "assume-complete", Usage: "resource `TYPES` to mark complete although the export was sliced (patient or a non-date _typeFilter), or has none of them because the server holds none"},
			&cli.BoolFlag{Name: "allow-unknown-types", Usage: "load resource types that are neither FHIR R4/R5 types nor named by the folder's manifest (each becomes a table)"},
			&cli.BoolFlag{Name: "replace-invalid-utf8", Usage: "load text that is not Unicode (invalid UTF-8, a lone \\ud800 escape) as U+FFFD, with a warning, instead of refusing the folder"},
			tool.MaxLineFlag(),
			&cli.StringFlag{Name: "memory-limit", EnvVars: []string{"BULK_MEMORY_LIMIT"}, Usage: "keep the database's memory within `SIZE` (such as 512MiB), spilling the rest to disk (default: the smaller of 2GiB and a quarter of RAM)"},
			&cli.PathFlag{Name: "temp-dir", Usage: "spill to a folder in `DIR` (default: beside the database); it is removed afterwards"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress and no summary on stderr (warnings still shown)"},
			&cli.BoolFlag{Name: "summary", Usage: "after loading, print each table's row count and the complete and incomplete encounters on stdout (TAB-separated)"},
		}, tool.ServerFlags()),
		Action: run,
	}
}

// config is the validated command line.
type config struct {
	db, format, out string
	group           *string
	timestamp       *time.Time
	exclude, assume []string
	maxLine         int
	memoryLimit     int64
	tempDir         string
	allowIncomplete bool
	replaceText     bool
	allowUnknown    bool
	status          *tool.Status
	stderr          io.Writer
	dirs            []string
	sources         []store.Source
	now             func() time.Time
}

func run(c *cli.Context) error {
	cfg, err := parseConfig(c)
	if err != nil {
		return err
	}
	// Every folder is checked before anything is loaded, so a usage error in the third folder
	// does not leave the first two loaded.
	for _, dir := range cfg.dirs {
		src, err := readFolder(cfg, dir)
		if err != nil {
			return err
		}
		cfg.sources = append(cfg.sources, src)
	}
	ctx := c.Context
	srv, err := newServer(c, cfg)
	if err != nil {
		return err
	}
	db, err := duckdb.OpenWith(ctx, cfg.db, duckdb.Options{MemoryLimit: cfg.memoryLimit, TempDir: cfg.tempDir})
	if err != nil {
		return err
	}
	defer db.Close()
	start := time.Now()
	var medsFailed int
	var rows int64
	for _, src := range cfg.sources {
		st, err := loadFolder(ctx, cfg, db, src, srv)
		if err != nil {
			return err
		}
		medsFailed += st.MedicationsFailed
		rows += st.Rows
	}
	switch cfg.format {
	case "parquet":
		err = db.ExportParquet(ctx, cfg.out)
	case "ndjson":
		err = db.ExportNDJSON(ctx, cfg.out)
	}
	if err != nil {
		return fmt.Errorf("write %s snapshot to %s: %w", cfg.format, cfg.out, err)
	}
	if c.Bool("summary") {
		counts, err := db.Summary(ctx)
		if err != nil {
			return err
		}
		for _, n := range counts {
			fmt.Fprintf(c.App.Writer, "%s\t%d\n", n.Name, n.Rows)
		}
	}
	// After a load, the groups loaded; with --summary, every group.
	var groups []string
	for _, src := range cfg.sources {
		groups = append(groups, src.Export.Group)
	}
	if c.Bool("summary") || len(groups) > 0 {
		if err := explainIncomplete(ctx, db, cfg.stderr, c.Bool("summary"), groups); err != nil {
			return err
		}
	}
	if err := db.Close(); err != nil {
		return err
	}
	into := cfg.db
	if cfg.format != "duckdb" {
		into = fmt.Sprintf("%s, a %s snapshot in %s", cfg.db, cfg.format, cfg.out)
	}
	if took := time.Since(start).Round(time.Millisecond); len(cfg.sources) > 0 {
		cfg.status.Summary("loaded %d resources from %s into %s in %v", rows, plural(len(cfg.sources), "folder"), into, took)
	} else {
		cfg.status.Summary("wrote a %s snapshot of %s in %s in %v", cfg.format, cfg.db, cfg.out, took)
	}
	if srv != nil {
		if n := srv.failedAttachments(); medsFailed > 0 || n > 0 {
			return fmt.Errorf("%d medications and %d attachments could not be downloaded (reported above); everything else is loaded, and a rerun tries them again", medsFailed, n)
		}
	}
	return nil
}

func parseConfig(c *cli.Context) (*config, error) {
	cfg := &config{
		db:              c.Path("db"),
		format:          c.String("format"),
		exclude:         splitList(c.StringSlice("exclude-resources")),
		assume:          splitList(c.StringSlice("assume-complete")),
		allowIncomplete: c.Bool("allow-incomplete"),
		replaceText:     c.Bool("replace-invalid-utf8"),
		allowUnknown:    c.Bool("allow-unknown-types"),
		status:          tool.NewStatus(c),
		stderr:          c.App.ErrWriter,
		dirs:            c.Args().Slice(),
		now:             time.Now,
	}
	var err error
	cfg.out = c.Path("dir")
	switch cfg.format {
	case "duckdb":
		if cfg.out != "" {
			return nil, tool.UsageErrorf("--dir needs --format parquet or ndjson")
		}
		if len(cfg.dirs) == 0 {
			return nil, tool.UsageErrorf("no export folder given (usage: etl-load DIR...)")
		}
	case "parquet", "ndjson":
		if cfg.out == "" {
			return nil, tool.UsageErrorf("--format %s needs --dir DIR", cfg.format)
		}
	default:
		return nil, tool.UsageErrorf("--format %q: want duckdb, parquet or ndjson", cfg.format)
	}
	if cfg.db == "" {
		return nil, tool.UsageErrorf("--db must name a file")
	}
	if cfg.maxLine, err = tool.MaxLine(c); err != nil {
		return nil, err
	}
	if v := c.String("memory-limit"); v != "" {
		if cfg.memoryLimit, err = tool.ParseSize(v); err != nil {
			return nil, tool.UsageErrorf("--memory-limit: %v", err)
		}
		if cfg.memoryLimit < duckdb.MinMemoryLimit {
			return nil, tool.UsageErrorf("--memory-limit %s: want at least %s", v, tool.FormatBytes(duckdb.MinMemoryLimit))
		}
	}
	cfg.tempDir = c.Path("temp-dir")
	for _, t := range append(append([]string{}, cfg.exclude...), cfg.assume...) {
		if !store.ValidResourceType(t) {
			return nil, tool.UsageErrorf("%q is not a resource type", t)
		}
		// A misspelt type would otherwise exclude or vouch for nothing, silently. Table names
		// (specimen) are accepted as in Cumulus.
		if s := resourcetype.Suggest(t); !cfg.allowUnknown && !resourcetype.Known(t) && !strings.EqualFold(s, t) {
			hint := ""
			if s != "" {
				hint = fmt.Sprintf(" (did you mean %s?)", s)
			}
			return nil, tool.UsageErrorf("%q is not a FHIR R4 or R5 resource type%s", t, hint)
		}
	}
	if c.IsSet("export-group") {
		g := c.String("export-group")
		cfg.group = &g
	}
	if c.IsSet("export-timestamp") {
		ts, err := store.ParseTime(c.String("export-timestamp"))
		if err != nil {
			return nil, tool.UsageErrorf("--export-timestamp: %v", err)
		}
		cfg.timestamp = &ts
	}
	return cfg, nil
}

// splitList splits comma-separated values of a repeatable flag (a list is meant here: DESIGN.md §1).
func splitList(vs []string) []string {
	var out []string
	for _, v := range vs {
		for s := range strings.SplitSeq(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// readFolder discovers a folder's files and its export metadata (DESIGN.md §4): the log's Group
// and transactionTime, each overridden by its flag; missing either is a usage error naming both.
func readFolder(cfg *config, dir string) (store.Source, error) {
	files, err := exportdir.Discover(dir)
	if err != nil {
		return store.Source{}, err
	}
	if part := partFile(dir); part != "" {
		// Completion rows would claim whole tables for a folder that lacks some of its files.
		return store.Source{}, fmt.Errorf("%s: %s is an unfinished download: finish it with bulk-fetch (or remove it) before loading", dir, part)
	}
	src := store.Source{Dir: dir, ExtraTypes: manifestTypes(dir)}
	var exp *exportdir.Export
	logPath, err := exportdir.FindLog(dir)
	switch {
	case errors.Is(err, exportdir.ErrNoLog):
	case err != nil:
		return src, err
	default:
		exp, err = exportdir.ReadLog(logPath)
		if errors.Is(err, exportdir.ErrNoKickoff) {
			exp, err = nil, nil
		}
		if err != nil {
			return src, err
		}
	}
	data := slices.ContainsFunc(files, func(f exportdir.File) bool { return f.ItemType != exportdir.ItemError })
	if !data && (exp == nil || !exportCompleted(exp)) {
		// Not an export folder (or the wrong one): loading it would do nothing, or write
		// completion rows for requested types that no download ever looked for. Only a finished
		// download that returned no file proves the Group has none.
		return src, fmt.Errorf("no NDJSON files in %s", dir)
	}
	var haveGroup, haveTime bool
	if exp != nil {
		src.Export = store.Export{Group: exp.Group, URL: exp.ExportURL, RequestParameters: exp.RequestParameters}
		haveGroup = true
		unfinished, err := downloadUnfinished(dir, exp)
		if err != nil {
			return src, err
		}
		if unfinished && !cfg.allowIncomplete {
			// The exportId is a status URL a server chose: redacted like every URL printed.
			return src, fmt.Errorf("%s: the download did not finish (%s has no export_complete for %q): run bulk-fetch again to finish it, or load the rows without completion rows with --allow-incomplete",
				dir, logPath, fhirclient.Redact(exp.ExportID))
		}
		src.Export.Unfinished = unfinished
		if exp.HasTime {
			src.Export.Time, haveTime = store.Micro(exp.TransactionTime), true
		}
	}
	if cfg.group != nil {
		src.Export.Group, haveGroup = *cfg.group, true
	}
	if cfg.timestamp != nil {
		src.Export.Time, haveTime = *cfg.timestamp, true
	}
	if !haveGroup || !haveTime {
		what := "no export log"
		if exp != nil {
			what = "the export log has no transactionTime (export not finished?)"
		}
		return src, tool.UsageErrorf("%s: %s: give the export's Group and time with --export-group and --export-timestamp", dir, what)
	}
	for _, f := range files {
		if f.ItemType == exportdir.ItemError {
			continue // error/ holds OperationOutcomes, not data (DESIGN.md §7)
		}
		path := f.Path
		src.Files = append(src.Files, store.File{
			Path:         path,
			Deleted:      f.ItemType == exportdir.ItemDeleted,
			ResourceType: f.ResourceType,
			Open:         func() (io.ReadCloser, error) { return exportdir.OpenFile(path) },
		})
	}
	return src, nil
}

// manifestTypes returns the output types the folder's manifest.json names: a server's own types
// are loaded besides FHIR's. A folder without a readable manifest names none.
func manifestTypes(dir string) []string {
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil
	}
	m, err := exportdir.ParseManifest(b)
	if err != nil {
		return nil
	}
	var types []string
	for _, it := range m.Output {
		if !slices.Contains(types, it.Type) {
			types = append(types, it.Type)
		}
	}
	return types
}

// downloadUnfinished reports whether the folder records a download of its export that never
// ended. Every downloader whose folders etl-load reads (bulk-fetch, SMART bulk-data-client,
// Cumulus ETL) logs export_complete once every file is on disk, and logs download events (or,
// bulk-fetch, writes .bulkpipe/state.json) as files arrive. So a log with a file's
// download_request or a state with verified files, and no export_complete for the export, is an
// unfinished download: bulk-fetch writes kickoff and status_complete before the first file, so
// those prove nothing. A log with neither (written by hand, or by a tool that logs only the
// kickoff) cannot tell and is trusted, as is a folder without a log, whose Group and time the
// user gives.
func downloadUnfinished(dir string, exp *exportdir.Export) (bool, error) {
	if exportCompleted(exp) {
		return false, nil
	}
	if slices.ContainsFunc(exp.Events, fileRequest) {
		return true, nil
	}
	st, err := exportdir.ReadState(dir)
	if err != nil {
		return false, err
	}
	return st.ExportID != "" || len(st.Files) > 0, nil
}

// fileRequest reports whether e is the download_request of an export file. Attachment downloads
// (ndjson-inline --log appends them to the folder's log) are not: they come after the export.
func fileRequest(e exportdir.Event) bool {
	if e.EventID != "download_request" {
		return false
	}
	var d struct {
		ItemType string `json:"itemType"`
	}
	json.Unmarshal(e.EventDetail, &d)
	return d.ItemType != "attachment"
}

// exportCompleted reports whether the log says every file of its export is on disk.
func exportCompleted(exp *exportdir.Export) bool {
	return slices.ContainsFunc(exp.Events, func(e exportdir.Event) bool { return e.EventID == "export_complete" })
}

// partFile returns a download in progress (bulk-fetch's NAME.part) in dir or its deleted/.
func partFile(dir string) string {
	for _, sub := range []string{"", "deleted"} {
		entries, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".part") && !e.IsDir() {
				return filepath.Join(dir, sub, e.Name())
			}
		}
	}
	return ""
}

func deletions(line []byte) []store.Deletion {
	var out []store.Deletion
	for _, d := range exportdir.Deletions(line) {
		out = append(out, store.Deletion{ResourceType: d.ResourceType, ID: d.ID})
	}
	return out
}

func loadFolder(ctx context.Context, cfg *config, db *duckdb.DB, src store.Source, srv *server) (store.Stats, error) {
	// What the load says of the data is shown with --quiet too: it explains missing completion rows.
	warn := func(s string) { cfg.status.Print("%s", s) }
	p := newProgress(cfg, src.Dir)
	opts := store.Options{
		Exclude:            cfg.exclude,
		AssumeComplete:     cfg.assume,
		Deletions:          deletions,
		MaxLine:            cfg.maxLine,
		ReplaceInvalidText: cfg.replaceText,
		ExtraTypes:         src.ExtraTypes,
		AllowUnknownTypes:  cfg.allowUnknown,
		Now:                cfg.now,
		Version:            tool.Version(),
		Warn:               warn,
		Progress:           p.update,
	}
	if srv != nil {
		opts.Medications = srv
		for i, f := range src.Files {
			src.Files[i] = srv.inline(ctx, f)
		}
	}
	st, err := store.Load(ctx, db, src, opts)
	p.done(st, err)
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
		warn(fmt.Sprintf("%s: %s: rows loaded without completion rows (--allow-incomplete)", src.Dir, store.ReasonUnfinished))
		return st, nil
	}
	for _, s := range st.Skipped {
		warn(fmt.Sprintf("%s: %s loaded without a completion row: %s (--assume-complete %s if it holds the whole Group)",
			src.Dir, s.Table, s.Reason, s.Table))
	}
	return st, nil
}

// explainIncomplete says why encounters are incomplete, per group: the linked tables never
// exported for it (after a full export from a server that does not export some of the ten types,
// every encounter is incomplete, and "complete_encounter 0" alone explains nothing), and those
// exported only before the encounters were. Only the groups given are explained, unless all.
func explainIncomplete(ctx context.Context, db *duckdb.DB, w io.Writer, all bool, groups []string) error {
	gaps, err := db.Gaps(ctx)
	if err != nil {
		return err
	}
	for len(gaps) > 0 {
		group := gaps[0].Group
		if !all && !slices.Contains(groups, group) {
			gaps = gaps[1:]
			continue
		}
		var never, stale []string
		var nNever, nStale int64
		for len(gaps) > 0 && gaps[0].Group == group {
			g := gaps[0]
			gaps = gaps[1:]
			if g.Exported {
				stale, nStale = append(stale, g.Table), max(nStale, g.Encounters)
			} else {
				never, nNever = append(never, g.Table), max(nNever, g.Encounters)
			}
		}
		switch {
		case len(never) == len(store.LinkedTables):
			fmt.Fprintf(w, "etl-load: group %q: %s incomplete: none of the ten linked tables (%s) was exported for the group yet; export them and load that folder\n",
				group, encounters(nNever), strings.Join(never, ", "))
		case len(never) > 0:
			types := make([]string, len(never))
			for i, t := range never {
				types[i] = t
				if s := resourcetype.Suggest(t); strings.EqualFold(s, t) {
					types[i] = s
				}
			}
			fmt.Fprintf(w, "etl-load: group %q: %s incomplete: %s never exported for the group (an encounter is complete once all ten linked tables are); export %s and load that folder too, or, if the server holds none, load the export folder again with --assume-complete %s\n",
				group, encounters(nNever), andList(never, "was", "were"), verb(never, "it", "them"), strings.Join(types, ","))
		}
		if len(stale) > 0 {
			fmt.Fprintf(w, "etl-load: group %q: %s waiting for a newer export of %s: %s exported only before those encounters were\n",
				group, encounters(nStale), strings.Join(stale, ", "), verb(stale, "it was", "they were"))
		}
	}
	return nil
}

// andList joins tables for a sentence, with the verb that agrees: "specimen was", "a, b were".
func andList(tables []string, one, many string) string {
	return strings.Join(tables, ", ") + " " + verb(tables, one, many)
}

func verb(tables []string, one, many string) string {
	if len(tables) == 1 {
		return one
	}
	return many
}

// encounters counts encounters with the verb that agrees: "1 encounter is", "2 encounters are".
func encounters(n int64) string {
	if n == 1 {
		return "1 encounter is"
	}
	return fmt.Sprintf("%d encounters are", n)
}

// progress draws one line on stderr while a folder loads, on a terminal (tool.Status).
type progress struct {
	cfg   *config
	dir   string
	start time.Time
}

func newProgress(cfg *config, dir string) *progress {
	return &progress{cfg: cfg, dir: dir, start: time.Now()}
}

func (p *progress) line(files int, rows, bytes int64) string {
	return fmt.Sprintf("%s: %s, %d resources, %s, %s", filepath.Clean(p.dir), plural(files, "file"), rows,
		tool.FormatBytes(bytes), tool.FormatRate(bytes, time.Since(p.start)))
}

func (p *progress) update(pr store.Progress) {
	if !p.cfg.status.Terminal() {
		return
	}
	if pr.Merging {
		p.cfg.status.Progress(true, "%s: %s, %d resources read; merging", filepath.Clean(p.dir), plural(pr.Files, "file"), pr.Rows)
		return
	}
	p.cfg.status.Progress(false, "%s", p.line(pr.Files, pr.Rows, pr.Bytes))
}

// done leaves the folder's totals on a terminal; the run's summary says the rest everywhere.
func (p *progress) done(st store.Stats, err error) {
	p.cfg.status.End()
	if err == nil {
		p.cfg.status.Note("%s, %d deletes", p.line(st.Files, st.Rows, st.Bytes), st.Deletes)
	}
}

// plural is "1 folder", "2 folders".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
