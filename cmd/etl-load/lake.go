package main

import (
	"context"
	"errors"
	"fmt"
	"os"
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

// lakeConfig sets o up for --lake, and reports whether the command only prints the DDL.
func lakeConfig(c *cli.Context, cfg *config) (printOnly bool, err error) {
	root, engine := c.String("lake"), c.String("print-ddl")
	if root == "" {
		return false, nil
	}
	l, err := lake.Open(c.Context, root, lake.Options{Scratch: cfg.tempDir, Attempts: c.Int("retries") + 1})
	if err != nil {
		var unsupported *lake.UnsupportedError
		if errors.As(err, &unsupported) {
			return false, tool.UsageErrorf("--lake %v", err)
		}
		return false, fmt.Errorf("--lake %s: %w", root, err)
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
