package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/bulkpipe/bulkpipe/pkg/lake"
	"github.com/bulkpipe/bulkpipe/pkg/load"
	"github.com/bulkpipe/bulkpipe/pkg/store/duckdb"
	"github.com/bulkpipe/bulkpipe/pkg/tool"
)

// lakeFlags are the flags of the Parquet lake.
func lakeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "lake", Usage: "append each folder to the Parquet lake at `DIR` (a folder, created if missing, or s3://bucket/prefix) instead of a database"},
		&cli.StringFlag{Name: "print-ddl", Usage: "print the SQL that defines the lake's tables as views, for `ENGINE`: duckdb, athena or trino (with --lake)"},
		&cli.StringFlag{Name: "lake-url", Usage: "with --print-ddl athena or trino: the `URL` the engine reads the lake at (default: an s3:// --lake itself)"},
		&cli.BoolFlag{Name: "compact", Usage: "with --lake, after the folders (if any): rewrite each table's current rows into one load, then remove the files it replaces and those of loads killed over a day ago"},
		&cli.StringFlag{Name: "ddl-schema", Value: "default", Usage: "with --print-ddl trino: the `SCHEMA` the tables are created in"},
	}
}

// lakeUsage checks the lake flags against each other and the database's, before anything else.
func lakeUsage(c *cli.Context) error {
	root, engine := c.String("lake"), c.String("print-ddl")
	if root == "" {
		if engine != "" {
			return tool.UsageErrorf("--print-ddl needs --lake DIR")
		}
		if c.Bool("compact") {
			return tool.UsageErrorf("--compact needs --lake DIR")
		}
		return nil
	}
	if c.IsSet("format") || c.IsSet("dir") || c.IsSet("summary") {
		return tool.UsageErrorf("--lake writes the lake only: --format, --dir and --summary are for a database")
	}
	if err := lakeOutsideFolders(root, c.Args().Slice()); err != nil {
		return err
	}
	// --db beside --lake expects the folders in a database too, which they would not reach;
	// BULK_DB is a site's default for its database loads, which a lake run may leave set.
	if _, fromEnv := os.LookupEnv("BULK_DB"); c.IsSet("db") && !fromEnv {
		return tool.UsageErrorf("--lake writes the lake only, no database: load the folders with --db and with --lake in two runs")
	}
	switch engine {
	case "", lake.EngineDuckDB:
		if c.IsSet("lake-url") {
			return tool.UsageErrorf("--lake-url is for --print-ddl athena or trino: DuckDB reads the lake in DIR")
		}
		return nil
	case lake.EngineAthena, lake.EngineTrino:
		if c.String("lake-url") == "" && !strings.HasPrefix(root, "s3://") {
			return tool.UsageErrorf("--print-ddl %s needs --lake-url URL: where %s reads the lake (such as s3://bucket/prefix)", engine, engine)
		}
		return nil
	default:
		return tool.UsageErrorf("--print-ddl %q: want %s", engine, strings.Join(lake.Engines, ", "))
	}
}

// lakeOutsideFolders refuses a local lake that is one of the export folders loaded, or inside
// one: its tables would be written into the export, which every later reader of the folder
// (etl-load, ndjson-merge, ndjson-inline) would then find there.
func lakeOutsideFolders(root string, dirs []string) error {
	if strings.HasPrefix(root, "s3://") {
		return nil
	}
	lakeAbs, err := filepath.Abs(root)
	if err != nil {
		return nil // the lake's own open says what is wrong with the path
	}
	for _, d := range dirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			continue
		}
		if rel, err := filepath.Rel(abs, lakeAbs); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return tool.UsageErrorf("--lake %s is inside the export folder %s: the lake would be written into the export; put it elsewhere", root, d)
		}
	}
	return nil
}

// lakeConfig sets o up for --lake, and reports whether the command only prints the DDL.
func lakeConfig(c *cli.Context, cfg *config) (printOnly bool, err error) {
	root, engine := c.String("lake"), c.String("print-ddl")
	if root == "" {
		return false, nil
	}
	onlyLake := len(cfg.opts.Dirs) == 0 // compaction or DDL alone: a mistyped path is not a new lake
	if onlyLake && !strings.HasPrefix(root, "s3://") {
		// Checked before the open, which would make the folder a lake.
		if _, err := os.Stat(root); errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("--lake %s: no such folder (a lake begins when a folder is loaded into it)", root)
		}
		if _, err := os.Stat(filepath.Join(root, lake.CommitsDir)); errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("--lake %s: not a lake: it has no %s folder (a lake begins when a folder is loaded into it)", root, lake.CommitsDir)
		}
	}
	l, err := lake.Open(c.Context, root, lake.Options{Scratch: cfg.tempDir, Attempts: c.Int("retries") + 1})
	if err != nil {
		var unsupported *lake.UnsupportedError
		if errors.As(err, &unsupported) {
			return false, tool.UsageErrorf("--lake %v", err)
		}
		return false, fmt.Errorf("--lake %s: %w", root, err)
	}
	if onlyLake {
		commits, err := l.Commits(c.Context)
		if err != nil {
			return false, fmt.Errorf("read the lake %s: %w", l.Location(), err)
		}
		if len(commits) == 0 {
			return false, fmt.Errorf("--lake %s: no load was ever committed there (a lake begins when a folder is loaded into it)", root)
		}
	}
	o := &cfg.opts
	o.Lake = l
	o.OpenStaging = func(ctx context.Context, path string) (*duckdb.DB, error) {
		return duckdb.OpenWith(ctx, path, duckdb.Options{MemoryLimit: cfg.memoryLimit, TempDir: cfg.tempDir})
	}
	o.Committed = func(dir string, cm *lake.Commit) {
		cfg.status.Line("%s: committed as load %d (%s) of %s", dir, cm.Seq, cm.Load, l.Location())
	}
	o.Compact = c.Bool("compact")
	o.Compacted = func(cp *lake.Compaction) {
		if cp.Commit == nil && cp.Files == 0 {
			cfg.status.Line("%s: already compact", l.Location())
			return
		}
		msg := fmt.Sprintf("%s: removed %d files", l.Location(), cp.Files)
		if cp.Commit != nil {
			msg = fmt.Sprintf("%s: compacted %d loads into load %d (%s); removed %d files", l.Location(), cp.Replaced, cp.Commit.Seq, cp.Commit.Load, cp.Files)
		}
		if cp.Abandoned > 0 || cp.Uploads > 0 {
			msg += fmt.Sprintf(", of which those of %d loads killed before their commit, and aborted %d unfinished uploads", cp.Abandoned, cp.Uploads)
		}
		cfg.status.Line("%s", msg)
	}
	cfg.lake = l
	cfg.ddl = engine
	return engine != "" && len(o.Dirs) == 0 && !o.Compact, nil
}

// printDDL prints the lake's DDL for cfg.ddl, one statement a line group, each ended by ";".
func printDDL(c *cli.Context, cfg *config) error {
	var stmts []string
	var err error
	d := lake.Distributed{Location: c.String("lake-url"), Schema: c.String("ddl-schema")}
	if d.Location == "" {
		d.Location = cfg.lake.Location() // an s3:// lake: the engines read it where it is
	}
	switch cfg.ddl {
	case lake.EngineAthena:
		stmts, err = cfg.lake.Athena(c.Context, d)
	case lake.EngineTrino:
		stmts, err = cfg.lake.Trino(c.Context, d)
	default:
		stmts, err = cfg.lake.DuckDB(c.Context)
	}
	if err != nil {
		return fmt.Errorf("read the lake %s: %w", cfg.lake.Location(), err)
	}
	_, err = fmt.Fprintln(c.App.Writer, strings.Join(stmts, ";\n")+";")
	return err
}

// lakeRun is run's path for --lake.
func lakeRun(c *cli.Context, cfg *config, printOnly bool) (*load.Result, error) {
	if printOnly {
		return nil, printDDL(c, cfg)
	}
	res, err := load.Run(c.Context, &cfg.opts)
	if err != nil || cfg.ddl == "" {
		return res, err
	}
	return res, printDDL(c, cfg)
}
