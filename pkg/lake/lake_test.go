package lake

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/duckdb/duckdb-go/v2" // database/sql driver "duckdb", for the reader

	"github.com/bulkpipe/bulkpipe/pkg/lake/s3test"
	"github.com/bulkpipe/bulkpipe/pkg/store/duckdb"
)

// staging opens a database with etl-load's schema and one patient row per id.
func staging(t *testing.T, ids ...string) *duckdb.DB {
	t.Helper()
	db, err := duckdb.Open(t.Context(), filepath.Join(t.TempDir(), "staging.duckdb"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := t.Context()
	if _, err := db.Conn().ExecContext(ctx, `CREATE TABLE patient (id VARCHAR, resource JSON, export_group VARCHAR, export_time TIMESTAMPTZ, source_file VARCHAR)`); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, err := db.Conn().ExecContext(ctx, `INSERT INTO patient VALUES ($1, $2, 'g', TIMESTAMPTZ '2024-05-01 00:00:00+00', 'Patient.000.ndjson')`,
			id, `{"resourceType":"Patient","id":"`+id+`"}`); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

// backend is a kind of storage a lake can be in, for tests that run over each.
type backend struct {
	name string
	open func(t *testing.T) *Lake
}

// backends are a local folder and a real S3-compatible server (a new bucket per test).
var backends = []backend{
	{"folder", func(t *testing.T) *Lake {
		l, err := Open(t.Context(), filepath.Join(t.TempDir(), "lake"), Options{})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}},
	{"s3", func(t *testing.T) *Lake {
		srv := s3test.Start(t)
		srv.Setenv(t)
		bucket := srv.Bucket(t, "lake")
		l, err := Open(t.Context(), "s3://"+bucket+"/site/lake", Options{Scratch: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		mirrors[l] = func(dir string) { srv.Mirror(t, bucket, "site/lake/", dir) }
		return l
	}},
}

// mirrors copies an S3 lake to a folder, for a reader without S3 (DuckDB without httpfs).
var mirrors = map[*Lake]func(dir string){}

// readable is l, or a local copy of it that DuckDB can read.
func readable(t *testing.T, l *Lake) *Lake {
	t.Helper()
	mirror, ok := mirrors[l]
	if !ok {
		return l
	}
	dir := t.TempDir()
	mirror(dir)
	local, err := Open(t.Context(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return local
}

// viewIDs runs the lake's DuckDB views in a new in-memory database and returns the ids of a view.
func viewIDs(t *testing.T, l *Lake, view string) []string {
	t.Helper()
	return queryViews(t, l, `SELECT id FROM "`+view+`" ORDER BY id`)
}

// queryViews runs the lake's DuckDB views in a new in-memory database, then a query of one text
// column, and returns its values.
func queryViews(t *testing.T, l *Lake, query string) []string {
	t.Helper()
	stmts, err := readable(t, l).DuckDB(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// A reader of its own, as an analyst's: DuckDB alone, not etl-load's schema.
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(t.Context(), strings.Join(stmts, ";\n")); err != nil {
		t.Fatalf("the lake's DDL: %v", err)
	}
	return columnText(t, db, query)
}

// TestColumnsMatchSchema: the lake's columns of each bookkeeping table and of a resource table
// are those of etl-load's DuckDB schema, names and types in order.
func TestColumnsMatchSchema(t *testing.T) {
	db := staging(t)
	for _, table := range []string{"patient", "etl__completion", "etl__completion_encounters", "etl__deleted"} {
		rows, err := db.Conn().QueryContext(t.Context(), `SELECT column_name, data_type FROM information_schema.columns
			WHERE table_name = $1 ORDER BY ordinal_position`, table)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for rows.Next() {
			var name, typ string
			if err := rows.Scan(&name, &typ); err != nil {
				t.Fatal(err)
			}
			got = append(got, name+" "+strings.ReplaceAll(typ, "TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"))
		}
		rows.Close()
		var want []string
		for _, c := range schemaOf(table) {
			want = append(want, c.name+" "+c.duck)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: the database has %q, the lake %q", table, got, want)
		}
	}
}

// TestUncommittedLoadIsInvisible: files of a load without its commit record are not read, and
// the commit makes them visible.
func TestUncommittedLoadIsInvisible(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { testUncommittedLoadIsInvisible(t, b.open(t)) })
	}
}

func testUncommittedLoadIsInvisible(t *testing.T, l *Lake) {
	if _, err := l.Append(t.Context(), Folder{DB: staging(t, "a", "b"), Source: "one"}); err != nil {
		t.Fatal(err)
	}
	// A load killed before its commit: its files are there, its record is not.
	if _, err := l.writeTable(t.Context(), staging(t, "c").Conn(), "patient", newLoadID(time.Now()), t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if got := viewIDs(t, l, "patient"); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("patient = %q, want the committed load's a, b only", got)
	}
	if _, err := l.Append(t.Context(), Folder{DB: staging(t, "c"), Source: "two"}); err != nil {
		t.Fatal(err)
	}
	if got := viewIDs(t, l, "patient"); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("patient after the rerun = %q, want a, b, c", got)
	}
}

// TestConcurrentCommitsTakeDistinctNumbers: writers that commit at once each get their own
// sequence number, and no record is overwritten.
func TestConcurrentCommitsTakeDistinctNumbers(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { testConcurrentCommits(t, b.open(t)) })
	}
}

func testConcurrentCommits(t *testing.T, l *Lake) {
	const n = 6
	dbs := make([]*duckdb.DB, n)
	for i := range dbs {
		dbs[i] = staging(t, string(rune('a'+i)))
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = l.Append(context.Background(), Folder{DB: dbs[i], Source: string(rune('a' + i))})
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	commits, err := l.Commits(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	loads := map[string]bool{}
	for _, c := range commits {
		seqs = append(seqs, c.Seq)
		loads[c.Load] = true
	}
	if !slices.Equal(seqs, []int64{1, 2, 3, 4, 5, 6}) || len(loads) != n {
		t.Errorf("commits = %v over %d loads, want 1…%d, one per load", seqs, len(loads), n)
	}
	if got := viewIDs(t, l, "patient"); len(got) != n {
		t.Errorf("patient = %q, want every writer's row", got)
	}
	if tmp, _ := filepath.Glob(filepath.Join(l.Location(), CommitsDir, ".tmp-*")); len(tmp) > 0 {
		t.Errorf("temporary commit records left: %q", tmp)
	}
}

// TestOpenRefusesURLs: a lake location with a scheme other than s3 is refused rather than made
// a folder named after it.
func TestOpenRefusesURLs(t *testing.T) {
	for _, loc := range []string{"gs://b/p", "https://x/y", "S3x://b"} {
		_, err := Open(t.Context(), loc, Options{})
		if _, ok := err.(*UnsupportedError); !ok {
			t.Errorf("Open(%q) = %v, want an *UnsupportedError", loc, err)
		}
	}
	dir := filepath.Join(t.TempDir(), "a://b")
	if _, err := Open(t.Context(), dir, Options{}); err != nil {
		t.Errorf("Open(%q), a local path holding ://: %v", dir, err)
	}
	if _, err := os.Stat(filepath.Join(dir, CommitsDir)); err != nil {
		t.Errorf("no commits folder in %s: %v", dir, err)
	}
}

// TestDistributedDDL: the Athena and Trino DDL registers every table's files at the lake's URL
// with its load partition, syncs the partitions, and defines a view per table; each statement's
// quotes and parentheses balance. (pkg/e2e runs the views themselves over a real lake.)
func TestDistributedDDL(t *testing.T) {
	l, err := Open(t.Context(), filepath.Join(t.TempDir(), "lake"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(t.Context(), Folder{DB: staging(t, "a"), Source: "one"}); err != nil {
		t.Fatal(err)
	}
	d := Distributed{Location: "s3://bucket/site lake/", Schema: "cumulus"}
	athena, err := l.Athena(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	trino, err := l.Trino(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	for engine, stmts := range map[string][]string{"athena": athena, "trino": trino} {
		all := strings.Join(stmts, ";\n")
		for _, want := range []string{
			"s3://bucket/site lake/patient/'", "s3://bucket/site lake/etl__commits/'", "s3://bucket/site lake/etl__deleted/'",
			`CREATE OR REPLACE VIEW "patient" AS`, `CREATE OR REPLACE VIEW "etl__completion" AS`,
			"CREATE OR REPLACE VIEW complete_encounter AS", "CREATE OR REPLACE VIEW incomplete_encounter AS",
		} {
			if !strings.Contains(all, want) {
				t.Errorf("%s DDL lacks %q", engine, want)
			}
		}
		for _, st := range stmts {
			if strings.Count(st, "(") != strings.Count(st, ")") || strings.Count(st, "'")%2 != 0 || strings.Count(st, `"`)%2 != 0 || strings.Count(st, "`")%2 != 0 {
				t.Errorf("%s: unbalanced statement:\n%s", engine, st)
			}
			if strings.Contains(st, ";") || strings.Contains(st, "QUALIFY") {
				t.Errorf("%s: a statement holds ';' or DuckDB's QUALIFY:\n%s", engine, st)
			}
		}
	}
	if !slices.Contains(athena, "MSCK REPAIR TABLE `files__patient`") {
		t.Errorf("athena DDL does not load patient's partitions")
	}
	if !slices.Contains(trino, "CALL system.sync_partition_metadata('cumulus', 'files__patient', 'FULL')") {
		t.Errorf("trino DDL does not sync patient's partitions")
	}
	if _, err := l.Athena(t.Context(), Distributed{}); err == nil {
		t.Errorf("Athena without a location: no error")
	}
}
