// Command etl-load loads export folders into a DuckDB database (and on request snapshots it as
// Parquet or in Cumulus ETL's output layout), with Cumulus-style completion tracking
// (DESIGN.md §7).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/lake"
	"github.com/bulkpipe/bulkpipe/pkg/load"
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
   etl-load --lake lake/ export/            append to a Parquet lake (--print-ddl: its views)
   etl-load --lake s3://bucket/lake export/ the same on S3, with the AWS SDK's credentials
   etl-load --lake s3://bucket/lake --compact
                                            one load per table; superseded files removed
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
			tool.QuietFlag(),
			&cli.BoolFlag{Name: "summary", Usage: "after loading, print each table's row count and the complete and incomplete encounters on stdout (TAB-separated)"},
		}, lakeFlags(), tool.ServerFlags()),
		Action: run,
	}
}

// config is the validated command line: the load's options, and what the closing line says.
type config struct {
	db, format, out string
	memoryLimit     int64
	tempDir         string
	lake            *lake.Lake // --lake
	ddl             string     // --print-ddl
	status          *tool.Status
	opts            load.Options
}

func run(c *cli.Context) error {
	if err := lakeUsage(c); err != nil {
		return err
	}
	cfg, err := parseConfig(c)
	if err != nil {
		return err
	}
	printOnly, err := lakeConfig(c, cfg)
	if err != nil {
		return err
	}
	o := &cfg.opts
	if c.String("fhir-url") != "" {
		o.FHIR = func() (*fhirclient.Client, error) {
			return tool.NewClientWith(c, tool.ClientConfig{Types: []string{"Medication", "DocumentReference", "DiagnosticReport"},
				Linked: []string{"Binary"}, Status: cfg.status})
		}
	}
	o.Open = func(ctx context.Context) (*duckdb.DB, error) {
		return duckdb.OpenWith(ctx, cfg.db, duckdb.Options{MemoryLimit: cfg.memoryLimit, TempDir: cfg.tempDir})
	}
	if c.Bool("summary") {
		o.Summary = func(counts []duckdb.Count) {
			for _, n := range counts {
				fmt.Fprintf(c.App.Writer, "%s\t%d\n", n.Name, n.Rows)
			}
		}
	}
	// What the load says of the data is shown with --quiet too: it explains missing completion rows.
	o.Warn = func(msg string) { cfg.status.Print("%s", msg) }
	p := &progress{status: cfg.status}
	o.Start, o.Progress, o.Done = p.start, p.update, p.done
	start := time.Now()
	var res *load.Result
	if cfg.lake != nil {
		res, err = lakeRun(c, cfg, printOnly)
	} else {
		res, err = load.Run(c.Context, o)
	}
	if _, ok := errors.AsType[*load.OptionsError](err); ok {
		return tool.UsageErrorf("%v", err)
	}
	if text, ok := duckdb.OutOfMemory(err); ok {
		limit := cfg.memoryLimit
		if limit == 0 {
			limit = duckdb.DefaultMemoryLimit()
		}
		return fmt.Errorf("%s: rerun with a larger --memory-limit than %s", text, tool.FormatBytes(limit))
	}
	if err != nil || printOnly || cfg.lake != nil && res.Folders == 0 {
		return err // a compaction alone said what it did
	}
	into := cfg.db
	if cfg.lake != nil {
		into = "the lake " + cfg.lake.Location()
	} else if cfg.format != "duckdb" {
		into = fmt.Sprintf("%s, a %s snapshot in %s", cfg.db, cfg.format, cfg.out)
	}
	if took := time.Since(start).Round(time.Millisecond); res.Folders > 0 {
		cfg.status.Summary("loaded %d resources from %s into %s in %v", res.Rows, plural(res.Folders, "folder"), into, took)
	} else {
		cfg.status.Summary("wrote a %s snapshot of %s in %s in %v", cfg.format, cfg.db, cfg.out, took)
	}
	if res.MedicationsFailed > 0 || res.AttachmentsFailed > 0 {
		return fmt.Errorf("%d medications and %d attachments could not be downloaded (reported above); everything else is loaded, and a rerun tries them again", res.MedicationsFailed, res.AttachmentsFailed)
	}
	return nil
}

func parseConfig(c *cli.Context) (*config, error) {
	cfg := &config{
		db:     c.Path("db"),
		format: c.String("format"),
		out:    c.Path("dir"),
		status: tool.NewStatus(c),
		opts: load.Options{
			Dirs:               c.Args().Slice(),
			Exclude:            splitList(c.StringSlice("exclude-resources")),
			AssumeComplete:     splitList(c.StringSlice("assume-complete")),
			AllowIncomplete:    c.Bool("allow-incomplete"),
			ReplaceInvalidText: c.Bool("replace-invalid-utf8"),
			AllowUnknownTypes:  c.Bool("allow-unknown-types"),
			Now:                time.Now,
			Version:            tool.Version(),
		},
	}
	o := &cfg.opts
	o.Format, o.Out = cfg.format, cfg.out
	switch cfg.format {
	case "duckdb":
		if cfg.out != "" {
			return nil, tool.UsageErrorf("--dir needs --format parquet or ndjson")
		}
		if len(o.Dirs) == 0 && (c.String("lake") == "" || c.String("print-ddl") == "" && !c.Bool("compact")) {
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
	var err error
	if o.MaxLine, err = tool.MaxLine(c); err != nil {
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
	if err := checkTypes(append(append([]string{}, o.Exclude...), o.AssumeComplete...), o.AllowUnknownTypes); err != nil {
		return nil, err
	}
	if c.IsSet("export-group") {
		g := c.String("export-group")
		o.Group = &g
	}
	if c.IsSet("export-timestamp") {
		ts, err := store.ParseTime(c.String("export-timestamp"))
		if err != nil {
			return nil, tool.UsageErrorf("--export-timestamp: %v", err)
		}
		o.Time = &ts
	}
	return cfg, nil
}

// checkTypes refuses a resource type of --exclude-resources or --assume-complete that is not
// one: a misspelt type would otherwise exclude or vouch for nothing, silently. Table names
// (specimen) are accepted as in Cumulus.
func checkTypes(types []string, allowUnknown bool) error {
	for _, t := range types {
		if !store.ValidResourceType(t) {
			return tool.UsageErrorf("%q is not a resource type", t)
		}
		if s := resourcetype.Suggest(t); !allowUnknown && !resourcetype.Known(t) && !strings.EqualFold(s, t) {
			hint := ""
			if s != "" {
				hint = fmt.Sprintf(" (did you mean %s?)", s)
			}
			return tool.UsageErrorf("%q is not a FHIR R4 or R5 resource type%s", t, hint)
		}
	}
	return nil
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

// progress draws one line on stderr while a folder loads, on a terminal (tool.Status).
type progress struct {
	status *tool.Status
	dir    string
	began  time.Time
}

func (p *progress) start(dir string) {
	p.dir, p.began = dir, time.Now()
}

func (p *progress) line(files int, rows, bytes int64) string {
	return fmt.Sprintf("%s: %s, %d resources, %s, %s", filepath.Clean(p.dir), plural(files, "file"), rows,
		tool.FormatBytes(bytes), tool.FormatRate(bytes, time.Since(p.began)))
}

func (p *progress) update(_ string, pr store.Progress) {
	if !p.status.Terminal() {
		return
	}
	if pr.Merging {
		p.status.Progress(true, "%s: %s, %d resources read; merging", filepath.Clean(p.dir), plural(pr.Files, "file"), pr.Rows)
		return
	}
	p.status.Progress(false, "%s", p.line(pr.Files, pr.Rows, pr.Bytes))
}

// done leaves the folder's totals on a terminal; the run's summary says the rest everywhere.
func (p *progress) done(_ string, st store.Stats, err error) {
	p.status.End()
	if err == nil {
		p.status.Note("%s, %d deletes", p.line(st.Files, st.Rows, st.Bytes), st.Deletes)
	}
}

// plural is "1 folder", "2 folders".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
