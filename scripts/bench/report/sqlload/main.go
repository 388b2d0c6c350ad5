// Command sqlload is etl-load's physical limit in `make bench` (issue 7): DuckDB SQL doing the
// same load of an export folder, with no Go between the file and the database. For each resource
// type of the folder, in one transaction: read_ndjson_objects of its files into a staging table,
// the same dedupe (last duplicate wins, QUALIFY row_number()) and the same upsert into the same
// table layout as pkg/store/duckdb, then the completion rows. It is the whole-folder form of
// BenchmarkSQLBaseline in pkg/store/duckdb/bench_test.go.
//
//	sqlload [-v] [-memory-limit SIZE] -db FILE DIR
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	duckdb "github.com/duckdb/duckdb-go/v2"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "sqlload:", err)
		os.Exit(1)
	}
}

// maxLine matches etl-load's default --max-line (read_ndjson_objects' own default is 16 MB).
const maxLine = 256 << 20

func run() error {
	dbPath := flag.String("db", "", "DuckDB file to create")
	verbose := flag.Bool("v", false, "print each statement's time on stderr")
	memLimit := flag.String("memory-limit", "", "DuckDB memory_limit (such as 2GiB), as etl-load --memory-limit; default DuckDB's own")
	flag.Parse()
	if *dbPath == "" || flag.NArg() != 1 {
		return errors.New("usage: sqlload -db FILE DIR")
	}
	exp, err := readExport(flag.Arg(0))
	if err != nil {
		return err
	}
	c, err := duckdb.NewConnector(*dbPath, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	db := sql.OpenDB(c)
	defer db.Close()
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	l := &loader{ctx: ctx, conn: conn, verbose: *verbose}
	if *memLimit != "" {
		// The same limit as etl-load's, spilling beside the database as it does.
		if err := l.exec(`SET memory_limit = '` + strings.ReplaceAll(*memLimit, "'", "") + `'`); err != nil {
			return err
		}
		if err := l.exec(`SET temp_directory = '` + strings.ReplaceAll(*dbPath+".tmp", "'", "''") + `'`); err != nil {
			return err
		}
	}
	if err := l.schema(); err != nil {
		return err
	}
	for _, rt := range exp.types {
		if err := l.loadType(exp, rt); err != nil {
			return err
		}
	}
	return l.exec(`COMMIT`)
}

// export is what the load reads of a folder: its output files by type, its Group and time.
type export struct {
	types  []string
	byType map[string][]string
	group  string
	time   time.Time
}

func readExport(dir string) (*export, error) {
	files, err := exportdir.Discover(dir)
	if err != nil {
		return nil, err
	}
	exp := &export{byType: map[string][]string{}, time: time.Now()}
	for _, f := range files {
		if f.ItemType != exportdir.ItemOutput {
			continue // the benchmark's export has no deletes; error/ is never loaded
		}
		if _, ok := exp.byType[f.ResourceType]; !ok {
			exp.types = append(exp.types, f.ResourceType)
		}
		exp.byType[f.ResourceType] = append(exp.byType[f.ResourceType], f.Path)
	}
	if log, err := exportdir.FindLog(dir); err == nil {
		if e, err := exportdir.ReadLog(log); err == nil {
			exp.group = e.Group
			if e.HasTime {
				exp.time = e.TransactionTime
			}
		}
	}
	return exp, nil
}

// loader runs the statements on one connection, timing each with -v.
type loader struct {
	ctx     context.Context
	conn    *sql.Conn
	verbose bool
}

func (l *loader) exec(q string, args ...any) error {
	start := time.Now()
	if _, err := l.conn.ExecContext(l.ctx, q, args...); err != nil {
		return fmt.Errorf("%.60s: %w", strings.Join(strings.Fields(q), " "), err)
	}
	if l.verbose {
		fmt.Fprintf(os.Stderr, "%6.2f s  %.70s\n", time.Since(start).Seconds(), strings.Join(strings.Fields(q), " "))
	}
	return nil
}

// schema creates the bookkeeping tables of pkg/store/duckdb, so the anti-join and completion rows
// cost what they cost there, and opens the one transaction.
func (l *loader) schema() error {
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS etl__completion (table_name VARCHAR NOT NULL, group_name VARCHAR NOT NULL,
			export_time TIMESTAMPTZ NOT NULL, export_url VARCHAR, etl_version VARCHAR, etl_time TIMESTAMPTZ,
			excluded_resources VARCHAR)`,
		`CREATE TABLE IF NOT EXISTS etl__completion_encounters (encounter_id VARCHAR NOT NULL,
			group_name VARCHAR NOT NULL, export_time TIMESTAMPTZ NOT NULL, excluded_resources VARCHAR,
			PRIMARY KEY (encounter_id, group_name))`,
		`CREATE TABLE IF NOT EXISTS etl__deleted (table_name VARCHAR NOT NULL, id VARCHAR NOT NULL,
			export_group VARCHAR NOT NULL, export_time TIMESTAMPTZ NOT NULL, source_file VARCHAR,
			PRIMARY KEY (table_name, id, export_group, export_time))`,
		`BEGIN TRANSACTION`,
	} {
		if err := l.exec(q); err != nil {
			return err
		}
	}
	return nil
}

// loadType stages one type's files, upserts the last copy of each id and writes its completion rows.
func (l *loader) loadType(exp *export, rt string) error {
	table := `"` + strings.ToLower(rt) + `"`
	list := make([]string, len(exp.byType[rt]))
	for i, p := range exp.byType[rt] {
		list[i] = "'" + strings.ReplaceAll(p, "'", "''") + "'"
	}
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS ` + table + ` (id VARCHAR PRIMARY KEY, resource JSON,
			export_group VARCHAR, export_time TIMESTAMPTZ, source_file VARCHAR)`,
		`CREATE TEMP TABLE stage AS
		SELECT row_number() OVER () AS seq, json->>'id' AS id, json AS resource, filename AS source_file
		FROM read_ndjson_objects([` + strings.Join(list, ", ") + `], filename = true, maximum_object_size = ` + fmt.Sprint(maxLine) + `)`,
	} {
		if err := l.exec(q); err != nil {
			return err
		}
	}
	q := `INSERT INTO ` + table + ` (id, resource, export_group, export_time, source_file)
	SELECT s.id, s.resource, $1, $2, s.source_file
	FROM (SELECT id, resource, source_file FROM stage
		QUALIFY row_number() OVER (PARTITION BY id ORDER BY seq DESC) = 1) AS s
	WHERE NOT EXISTS (SELECT 1 FROM etl__deleted AS d
		WHERE d.table_name = $3 AND d.id = s.id AND d.export_time >= $2)
	ON CONFLICT (id) DO UPDATE SET resource = excluded.resource, export_group = excluded.export_group,
		export_time = excluded.export_time, source_file = excluded.source_file
	WHERE excluded.export_time > ` + table + `.export_time
		OR (excluded.export_time = ` + table + `.export_time
			AND (excluded.resource::VARCHAR <> ` + table + `.resource::VARCHAR
				OR excluded.export_group <> ` + table + `.export_group))`
	if err := l.exec(q, exp.group, exp.time, strings.ToLower(rt)); err != nil {
		return err
	}
	if err := l.exec(`INSERT INTO etl__completion SELECT $1, $2, $3, NULL, 'bench', now(), NULL`,
		strings.ToLower(rt), exp.group, exp.time); err != nil {
		return err
	}
	if rt == "Encounter" {
		if err := l.exec(`INSERT INTO etl__completion_encounters SELECT DISTINCT id, $1, $2, NULL FROM stage
			ON CONFLICT DO NOTHING`, exp.group, exp.time); err != nil {
			return err
		}
	}
	return l.exec(`DROP TABLE stage`)
}
