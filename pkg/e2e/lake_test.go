package e2e

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
)

// TestLakeReadsAsTables: the same sequence of folders loaded by etl-load into a database and
// appended by etl-load --lake to a Parquet lake reads the same through the lake's generated
// DuckDB views, table by table (ids, resources byte for byte, groups, export times), with the
// same completion and deletion bookkeeping and the same complete and incomplete encounters. The
// sequence exercises every rule: a later export wins per id, an incremental export's deletes
// remove rows, an older folder loaded afterwards neither overrides newer rows nor brings deleted
// ones back, another Group's export of the same ids, a reload of the same export, a sliced export
// that leaves encounters incomplete.
func TestLakeReadsAsTables(t *testing.T) {
	needBinaries(t, "bulk-kickoff", "bulk-poll", "bulk-fetch", "etl-load")
	srv := biServer(t, fhirtest.Options{Patients: 6, Seed: 41})
	work := t.TempDir()
	fetch := func(name, url string, args ...string) string {
		dir := filepath.Join(work, name)
		mustRun(t, nil, biManifest(t, url, nil, args...), "bulk-fetch", "-q", "--dir", dir)
		return dir
	}
	full := fetch("full", srv.URL()+"/Group/all")
	// _since between the data's first and last lastUpdated: changed resources, and deletes.
	since := fetch("since", srv.URL()+"/Group/all", "--since", "2023-06-01")
	cohort := fetch("cohort", srv.URL()+"/Group/cohort-a", "--type", "Patient,Encounter,Condition")
	// Another server's encounters, exported without their conditions: incomplete.
	other := biServer(t, fhirtest.Options{Patients: 3, Seed: 42})
	sliced := fetch("sliced", other.URL()+"/Group/cohort-b", "--type", "Encounter,Observation",
		"--type-filter", "Observation?category=laboratory")
	if b, _ := os.ReadFile(filepath.Join(since, "deleted", "Bundle.000.ndjson")); len(b) == 0 {
		t.Fatalf("the _since export has no deletes to test with")
	}
	logPath, err := exportdir.FindLog(since)
	if err != nil {
		t.Fatal(err)
	}
	exp, err := exportdir.ReadLog(logPath)
	if err != nil || !exp.HasTime {
		t.Fatalf("the _since export's log: %+v, %v", exp, err)
	}
	loads := [][]string{
		{full},
		{since},
		{full, "--export-timestamp", "2020-01-01T00:00:00Z"}, // older, loaded later
		// Of the same time as the deletes: the deleted ids stay deleted.
		{full, "--export-timestamp", exp.TransactionTime.Format(time.RFC3339Nano)},
		{cohort},
		{since}, // a reload
		{sliced},
	}
	db := filepath.Join(work, "tables.duckdb")
	lake := filepath.Join(work, "lake")
	for _, args := range loads {
		mustRun(t, nil, "", "etl-load", append([]string{"-q", "--db", db}, args...)...)
		mustRun(t, nil, "", "etl-load", append([]string{"-q", "--lake", lake}, args...)...)
	}
	ddl := mustRun(t, nil, "", "etl-load", "--lake", lake, "--print-ddl", "duckdb").Stdout

	want := lakeSnapshot(t, db, "")
	got := lakeSnapshot(t, ":memory:", ddl)
	if len(want) < 10 || len(want["table deleted"]) == 0 || len(want["incomplete_encounter"]) == 0 {
		t.Fatalf("the sequence does not exercise the rules: %d relations, %d deletes, %d incomplete encounters",
			len(want), len(want["table deleted"]), len(want["incomplete_encounter"]))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lake views differ from the tables (-tables +lake):\n%s", diff)
	}

	// The views printed for Trino and Athena, run by DuckDB over the same files: what they share
	// with every engine is standard SQL, and DuckDB has Trino's functions but array_join.
	for _, engine := range []string{"trino", "athena"} {
		out := mustRun(t, nil, "", "etl-load", "--lake", lake, "--print-ddl", engine, "--lake-url", "s3://bucket/lake").Stdout
		got := lakeSnapshot(t, ":memory:", emulateDistributed(t, lake, out))
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s views differ from the tables (-tables +lake):\n%s", engine, diff)
		}
	}
}

// emulateDistributed turns the DDL printed for Trino or Athena into DuckDB's: each external table
// over a table's files becomes a view over the same Parquet files (the load partition read from
// the path, as those engines do), the commit records a view over their JSON, partition syncing is
// dropped, and the views are kept as printed.
func emulateDistributed(t *testing.T, lake, ddl string) string {
	t.Helper()
	stmts := []string{`CREATE MACRO array_join(l, sep) AS array_to_string(l, sep)`,
		`CREATE VIEW etl__commits AS SELECT seq, "load" FROM read_json('` + lake + `/etl__commits/*.json', format = 'newline_delimited', columns = {seq: 'BIGINT', load: 'VARCHAR'})`}
	views := 0
	for _, st := range strings.Split(strings.TrimSpace(ddl), ";\n") {
		st = strings.TrimSuffix(st, ";")
		switch {
		case strings.HasPrefix(st, "CREATE OR REPLACE VIEW"):
			stmts = append(stmts, st)
			views++
		case strings.Contains(st, `files__`) && strings.HasPrefix(st, "CREATE"):
			table := filesTable.FindStringSubmatch(st)[1]
			glob := filepath.Join(lake, table, "load=*", "*.parquet")
			if files, _ := filepath.Glob(glob); len(files) == 0 {
				stmts = append(stmts, `CREATE VIEW "files__`+table+`" AS SELECT * FROM (SELECT NULL::VARCHAR AS "load") WHERE false`)
				continue
			}
			stmts = append(stmts, `CREATE VIEW "files__`+table+`" AS SELECT * FROM read_parquet('`+glob+`', hive_partitioning = true, hive_types = {'load': VARCHAR})`)
		}
	}
	if views < 10 {
		t.Fatalf("%d views in the DDL:\n%s", views, ddl)
	}
	return strings.Join(stmts, ";\n")
}

// filesTable finds the table an external table's DDL is over.
var filesTable = regexp.MustCompile("files__([a-z0-9_]+)")

// lakeSnapshot reads every resource table and the bookkeeping of a database, after running ddl
// (the lake's views) in it, as sorted lines per relation. source_file is left out: the lake
// names the file of the last load holding a row, the table the first.
func lakeSnapshot(t *testing.T, path, ddl string) map[string][]string {
	t.Helper()
	db, err := sql.Open("duckdb", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if ddl != "" {
		if _, err := db.ExecContext(t.Context(), ddl); err != nil {
			t.Fatalf("the lake's DDL: %v", err)
		}
	}
	lines := func(q string) []string {
		rows, err := db.QueryContext(t.Context(), q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		defer rows.Close()
		cols, _ := rows.Columns()
		var out []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			var parts []string
			for _, v := range vals {
				if tm, ok := v.(time.Time); ok {
					v = tm.UTC().Format(time.RFC3339Nano)
				}
				parts = append(parts, fmt.Sprint(v))
			}
			out = append(out, strings.Join(parts, " | "))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		slices.Sort(out)
		return out
	}
	snap := map[string][]string{}
	for _, tb := range lines(`SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'
		AND table_name NOT LIKE 'etl\_\_%' ESCAPE '\' AND table_name NOT LIKE 'lake\_\_%' ESCAPE '\' AND table_name NOT LIKE 'files\_\_%' ESCAPE '\'
		AND table_name NOT IN ('complete_encounter', 'incomplete_encounter')`) {
		if rows := lines(`SELECT id, resource::VARCHAR, export_group, export_time FROM "` + tb + `"`); len(rows) > 0 {
			snap["table "+tb] = rows
		}
	}
	snap["table deleted"] = lines(`SELECT table_name, id, export_group, export_time FROM etl__deleted`)
	snap["table completion"] = lines(`SELECT table_name, group_name, export_time, export_url, excluded_resources FROM etl__completion`)
	snap["table completion_encounters"] = lines(`SELECT encounter_id, group_name, export_time, excluded_resources FROM etl__completion_encounters`)
	snap["complete_encounter"] = lines(`SELECT id, export_time FROM complete_encounter`)
	snap["incomplete_encounter"] = lines(`SELECT id, export_time FROM incomplete_encounter`)
	snap["encounter_completion"] = lines(`SELECT encounter_id, export_time, is_complete, missing_tables FROM etl__encounter_completion`)
	return snap
}
