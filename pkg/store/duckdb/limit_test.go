package duckdb

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/bulkpipe/bulkpipe/pkg/store"
)

// TestLoadUnderSmallLimit loads a folder several times the memory limit: it must spill rather
// than fail, and give the tables of a load without a limit.
func TestLoadUnderSmallLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 128 MiB")
	}
	const limit = 64 << 20
	file := filepath.Join(t.TempDir(), "Observation.000.ndjson")
	size, err := writeBenchFile(file, 128)
	if err != nil {
		t.Fatal(err)
	}
	src := func(when string) store.Source {
		s := folder("g", when, nil)
		s.Files = []store.File{{Path: "Observation.000.ndjson", ResourceType: "Observation",
			Open: func() (io.ReadCloser, error) { return os.Open(file) }}}
		return s
	}
	count := func(d *DB) []string {
		return query(t, d, `SELECT count(*), count(DISTINCT id), sum(hash(id, resource::VARCHAR, source_file)), max(export_time) FROM observation`)
	}
	big := openWith(t, filepath.Join(t.TempDir(), "big.duckdb"), Options{MemoryLimit: 1 << 30})
	mustLoad(t, big, src("2024-02-01T00:00:00Z"))
	want := count(big)

	// Loaded twice, the later export replacing every row: the join of a whole table with a
	// whole folder.
	small := openWith(t, filepath.Join(t.TempDir(), "small.duckdb"), Options{MemoryLimit: limit})
	for _, when := range []string{"2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z"} {
		if _, err := load(t, small, src(when)); err != nil {
			t.Fatalf("Load(%s) of %d MiB under a %d MiB limit: %v", when, size>>20, limit>>20, err)
		}
	}
	if got := count(small); !slices.Equal(got, want) {
		t.Errorf("observation under a %d MiB limit = %v, want %v as without it", limit>>20, got, want)
	}
	if got := query(t, small, `SELECT count(*) FROM observation WHERE export_time < '2024-02-01T00:00:00Z'`); !slices.Equal(got, []string{"0"}) {
		t.Errorf("rows of the older export left = %v, want 0", got)
	}
}

// TestOldTablesWithPrimaryKey: a database written before the merge went set-based has a PRIMARY
// KEY on each resource table's id; a row deleted and inserted again in one transaction must not
// trip it.
func TestOldTablesWithPrimaryKey(t *testing.T) {
	d := openDB(t)
	if err := d.exec(t.Context(), `CREATE TABLE patient (id VARCHAR PRIMARY KEY, resource JSON,
		export_group VARCHAR, export_time TIMESTAMPTZ, source_file VARCHAR)`); err != nil {
		t.Fatal(err)
	}
	mustLoad(t, d, folder("g", "2024-01-01T00:00:00Z", nil, "Patient.000.ndjson", res("Patient", "p1", `"v":1`)+res("Patient", "p2")))
	mustLoad(t, d, folder("g", "2024-02-01T00:00:00Z", nil, "Patient.000.ndjson", res("Patient", "p1", `"v":2`)))
	mustLoad(t, d, folder("g", "2024-02-01T00:00:00Z", nil, "Patient.000.ndjson", res("Patient", "p1", `"v":3`)))
	got := query(t, d, `SELECT id, resource->>'v', export_time FROM patient ORDER BY id`)
	want := []string{"p1|3|2024-02-01T00:00:00Z", "p2|NULL|2024-01-01T00:00:00Z"}
	if !slices.Equal(got, want) {
		t.Errorf("patient = %v, want %v", got, want)
	}
}

// TestCompletionEncountersWithoutKey: etl__completion_encounters keeps the first export time of
// each encounter per group without a PRIMARY KEY (an index that grows with every export, outside
// the memory limit), and a database made when it had one loads the same.
func TestCompletionEncountersWithoutKey(t *testing.T) {
	for _, oldKey := range []bool{false, true} {
		d := openDB(t)
		if oldKey {
			if err := d.exec(t.Context(), `DROP TABLE etl__completion_encounters`); err != nil {
				t.Fatal(err)
			}
			if err := d.exec(t.Context(), `CREATE TABLE etl__completion_encounters (encounter_id VARCHAR NOT NULL,
				group_name VARCHAR NOT NULL, export_time TIMESTAMPTZ NOT NULL, excluded_resources VARCHAR,
				PRIMARY KEY (encounter_id, group_name))`); err != nil {
				t.Fatal(err)
			}
		}
		enc := func(group, when string, ids ...string) store.Source {
			var lines string
			for _, id := range ids {
				lines += res("Encounter", id)
			}
			return folder(group, when, nil, "Encounter.000.ndjson", lines)
		}
		mustLoad(t, d, enc("g", "2024-01-01T00:00:00Z", "e1", "e2", "e1"))
		mustLoad(t, d, enc("g", "2024-02-01T00:00:00Z", "e1", "e3"))
		mustLoad(t, d, enc("h", "2024-02-01T00:00:00Z", "e1"))
		mustLoad(t, d, enc("g", "2024-01-01T00:00:00Z", "e2")) // a reload adds nothing
		got := query(t, d, `SELECT encounter_id, group_name, export_time FROM etl__completion_encounters ORDER BY ALL`)
		want := []string{"e1|g|2024-01-01T00:00:00Z", "e1|h|2024-02-01T00:00:00Z", "e2|g|2024-01-01T00:00:00Z", "e3|g|2024-02-01T00:00:00Z"}
		if !slices.Equal(got, want) {
			t.Errorf("old key %v: etl__completion_encounters = %v, want %v", oldKey, got, want)
		}
		keys := query(t, d, `SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'etl__completion_encounters' AND constraint_type = 'PRIMARY KEY'`)
		if want := map[bool]string{false: "0", true: "1"}[oldKey]; !slices.Equal(keys, []string{want}) {
			t.Errorf("old key %v: primary keys on etl__completion_encounters = %v, want %s", oldKey, keys, want)
		}
	}
}
