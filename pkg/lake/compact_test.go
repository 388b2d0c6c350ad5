package lake

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bulkpipe/bulkpipe/pkg/store/duckdb"
)

// exportAt is one folder's contribution: patients (id → gender) and deleted patient ids, at
// an export time.
type exportAt struct {
	at      string
	genders map[string]string
	deleted []string
}

// stagingExport opens a database holding one exportAt as etl-load's staging tables would.
func stagingExport(t *testing.T, e exportAt) *duckdb.DB {
	t.Helper()
	db, err := duckdb.Open(t.Context(), filepath.Join(t.TempDir(), "staging.duckdb"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	conn, ctx := db.Conn(), t.Context()
	// etl-load's schema has etl__deleted; resource tables are made as a folder needs them.
	if _, err := conn.ExecContext(ctx, `CREATE TABLE patient (id VARCHAR, resource JSON, export_group VARCHAR, export_time TIMESTAMPTZ, source_file VARCHAR)`); err != nil {
		t.Fatal(err)
	}
	for id, g := range e.genders {
		// Spaces kept as written: compaction copies the text, it never re-serializes it.
		res := fmt.Sprintf(`{"resourceType": "Patient", "id": "%s", "gender": "%s"}`, id, g)
		if _, err := conn.ExecContext(ctx, `INSERT INTO patient VALUES ($1, $2, 'g', $3::TIMESTAMPTZ, 'Patient.000.ndjson')`, id, res, e.at); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range e.deleted {
		if _, err := conn.ExecContext(ctx, `INSERT INTO etl__deleted VALUES ('patient', $1, 'g', $2::TIMESTAMPTZ, 'deleted/Bundle.000.ndjson')`, id, e.at); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

// viewRows reads every row of the patient and etl__deleted views, as text.
func viewRows(t *testing.T, l *Lake) []string {
	t.Helper()
	return queryViews(t, l, `
		SELECT 'patient ' || id || ' ' || resource::VARCHAR || ' ' || export_time::VARCHAR FROM patient
		UNION ALL SELECT 'deleted ' || id || ' ' || export_time::VARCHAR FROM etl__deleted ORDER BY 1`)
}

func appendAll(t *testing.T, l *Lake, exports ...exportAt) {
	t.Helper()
	for i, e := range exports {
		if _, err := l.Append(t.Context(), Folder{DB: stagingExport(t, e), Source: fmt.Sprint("folder", i)}); err != nil {
			t.Fatal(err)
		}
	}
}

func compactDB(t *testing.T) *duckdb.DB {
	t.Helper()
	db, err := duckdb.Open(t.Context(), filepath.Join(t.TempDir(), "compact.duckdb"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// tableLoads lists the loads that hold files of a table.
func tableLoads(t *testing.T, l *Lake, table string) []string {
	t.Helper()
	keys, err := l.objs.list(t.Context(), table+"/")
	if err != nil {
		t.Fatal(err)
	}
	var loads []string
	for _, k := range keys {
		if _, load, ok := splitKey(k); ok && !slices.Contains(loads, load) {
			loads = append(loads, load)
		}
	}
	return loads
}

// TestCompactKeepsTheRows: a compacted lake reads exactly as before, holds one load's files, and
// keeps every rule for what comes after — an older export loaded later neither overrides newer
// rows nor brings deleted ids back, a newer one wins — as an uncompacted lake given the same
// loads does. A killed load older than the grace is removed; a recent one (a writer at work) is
// left alone.
func TestCompactKeepsTheRows(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { testCompactKeepsTheRows(t, b.open(t), b.open(t)) })
	}
}

func testCompactKeepsTheRows(t *testing.T, l, plain *Lake) {
	before := []exportAt{
		{at: "2024-01-01 00:00:00+00", genders: map[string]string{"a": "female", "b": "male", "c": "other"}},
		{at: "2024-02-01 00:00:00+00", genders: map[string]string{"b": "female", "d": "male"}, deleted: []string{"c"}},
		{at: "2024-02-01 00:00:00+00", genders: map[string]string{"d": "unknown"}}, // same time, later commit wins
	}
	after := []exportAt{
		{at: "2023-12-01 00:00:00+00", genders: map[string]string{"b": "old", "c": "resurrected?"}}, // older
		{at: "2024-03-01 00:00:00+00", genders: map[string]string{"a": "male"}},
	}
	appendAll(t, l, before...)
	appendAll(t, plain, before...)
	want := viewRows(t, l)

	now := time.Now()
	killedLong := newLoadID(now.Add(-48 * time.Hour))
	killedNow := newLoadID(now)
	for _, load := range []string{killedLong, killedNow} {
		if _, err := l.writeTable(t.Context(), stagingExport(t, exportAt{at: "2025-01-01 00:00:00+00", genders: map[string]string{"z": "x"}}).Conn(),
			"patient", load, t.TempDir()); err != nil {
			t.Fatal(err)
		}
	}

	res, err := l.Compact(t.Context(), Compact{DB: compactDB(t)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Commit == nil || res.Commit.Seq != 4 || res.Replaced != 3 || res.Abandoned != 1 {
		t.Fatalf("compaction = %+v (commit %+v), want commit 4 replacing 3 loads and the killed one", res, res.Commit)
	}
	if got := viewRows(t, l); !cmp.Equal(got, want) {
		t.Errorf("the compacted lake reads differently (-before +after):\n%s", cmp.Diff(want, got))
	}
	if got := tableLoads(t, l, "patient"); !slices.Equal(got, []string{killedNow, res.Commit.Load}) && !slices.Equal(got, []string{res.Commit.Load, killedNow}) {
		t.Errorf("patient's loads after compaction = %q, want the compaction's and the recent killed one's", got)
	}
	var text string
	glob := readable(t, l).objs.url(partitionKey("patient", res.Commit.Load) + "*.parquet")
	if err := sqlDB(t).QueryRowContext(t.Context(), `SELECT resource FROM read_parquet(`+quote(glob)+`) WHERE id = 'a'`).Scan(&text); err != nil ||
		text != `{"resourceType": "Patient", "id": "a", "gender": "female"}` {
		t.Errorf("the compacted file holds a as %q (%v), want the text as loaded, byte for byte", text, err)
	}
	// Only what the view returns is written: no superseded copy (b's, d's first), no deleted id (c).
	var ids string
	if err := sqlDB(t).QueryRowContext(t.Context(), `SELECT string_agg(id, ',' ORDER BY id) FROM read_parquet(`+quote(glob)+`)`).Scan(&ids); err != nil || ids != "a,b,d" {
		t.Errorf("the compacted file holds ids %q (%v), want a,b,d", ids, err)
	}
	if got := tableLoads(t, l, "etl__deleted"); !slices.Equal(got, []string{res.Commit.Load}) {
		t.Errorf("etl__deleted's loads after compaction = %q, want the compaction's", got)
	}

	appendAll(t, l, after...)
	appendAll(t, plain, after...)
	if got, want := viewRows(t, l), viewRows(t, plain); !cmp.Equal(got, want) {
		t.Errorf("loads after a compaction read differently than without it (-plain +compacted):\n%s", cmp.Diff(want, got))
	}

	// Compacting a compacted lake with nothing new: nothing to do.
	if _, err := l.Compact(t.Context(), Compact{DB: compactDB(t)}); err != nil {
		t.Fatal(err)
	}
	res, err = l.Compact(t.Context(), Compact{DB: compactDB(t)})
	if err != nil || res.Commit != nil || res.Files != 0 {
		t.Errorf("compacting again = %+v, %v: want nothing done", res, err)
	}
}

// TestCompactConflict: a load committed after the state a compaction read ends the compaction
// without a commit, and its files are removed.
func TestCompactConflict(t *testing.T) {
	l := backends[0].open(t)
	appendAll(t, l, exportAt{at: "2024-01-01 00:00:00+00", genders: map[string]string{"a": "female"}},
		exportAt{at: "2024-02-01 00:00:00+00", genders: map[string]string{"b": "male"}})
	commits, err := l.Commits(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	keys, err := l.objs.list(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, l, exportAt{at: "2024-02-01 00:00:00+00", genders: map[string]string{"b": "female"}})
	p := planCompaction(commits, keys, time.Now().Add(-DefaultGrace))
	_, err = l.writeCompacted(t.Context(), compactDB(t), commits, p, time.Now)
	var conflict *ConflictError
	if !errors.As(err, &conflict) || conflict.Seq != 3 {
		t.Fatalf("compaction over a stale state: %v, want a *ConflictError at 3", err)
	}
	if got := tableLoads(t, l, "patient"); len(got) != 3 {
		t.Errorf("patient's loads = %q, want the three committed ones only", got)
	}
}

func sqlDB(t *testing.T) *sql.DB {
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestCompactKeepsFileOrder: a compacted table holds its rows in the order the lake's files held
// them (beside their patient's other resources, where they compress best), also when DuckDB
// reads the files' row groups on several threads.
func TestCompactKeepsFileOrder(t *testing.T) {
	l := backends[0].open(t)
	const patients = 100_000
	for i, every := range []int{1, 3} { // the second export changes every third patient
		db := stagingExport(t, exportAt{})
		_, err := db.Conn().ExecContext(t.Context(), `INSERT INTO patient SELECT printf('p%06d', i),
			printf('{"resourceType": "Patient", "id": "p%06d", "birthDate": "19%02d-01-01"}', i, (i + $1) % 100),
			'g', $2::TIMESTAMPTZ, 'Patient.000.ndjson' FROM range(0, $3, $4) AS r(i)`,
			i, fmt.Sprintf("2024-0%d-01 00:00:00+00", i+1), patients, every)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Append(t.Context(), Folder{DB: db, Source: fmt.Sprint("folder", i)}); err != nil {
			t.Fatal(err)
		}
	}
	files := l.objs.url(keyOf("patient", "load=*", "*.parquet"))
	stored := columnText(t, sqlDB(t), `SELECT resource FROM read_parquet(`+quote(files)+`, filename = true, file_row_number = true) ORDER BY filename, file_row_number`)

	res, err := l.Compact(t.Context(), Compact{DB: compactDB(t)})
	if err != nil {
		t.Fatal(err)
	}
	compacted := columnText(t, sqlDB(t), `SELECT resource FROM read_parquet(`+quote(l.objs.url(partitionKey("patient", res.Commit.Load)+"*.parquet"))+
		`, filename = true, file_row_number = true) ORDER BY filename, file_row_number`)
	if len(compacted) != patients {
		t.Fatalf("the compacted patient table holds %d rows, want %d", len(compacted), patients)
	}
	// Rows come in runs that keep the files' order: a run ends where DuckDB's threads took turns,
	// at most once per vector of 2,048 rows (the view's window scatters every row).
	at := make(map[string]int, len(stored))
	for i, text := range stored {
		at[text] = i
	}
	runs := 1
	for i := 1; i < len(compacted); i++ {
		if at[compacted[i]] < at[compacted[i-1]] {
			runs++
		}
	}
	if most := patients / 2048; runs > most {
		t.Errorf("the compacted rows are in %d runs of the files' order, want at most %d", runs, most)
	}
}

// columnText returns the one text column query selects in db, in the query's order.
func columnText(t *testing.T, db *sql.DB, query string) []string {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
