package duckdb

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bulkpipe/bulkpipe/pkg/store"
	duckdb "github.com/duckdb/duckdb-go/v2"
)

func TestReadCompletion(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db.duckdb")
	d, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t1 := time.Date(2026, 12, 1, 2, 0, 0, 123456000, time.UTC)
	if _, err := d.Conn().ExecContext(ctx, `INSERT INTO etl__completion VALUES
		('patient', 'cohort', ?, 'http://s/fhir/Group/cohort/$export', 'v', now(), ''),
		('condition', '', ?, NULL, 'v', now(), '')`, t1, t1.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := ReadCompletion(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.CompletionRow{
		{Table: "patient", Group: "cohort", ExportTime: t1, ExportURL: "http://s/fhir/Group/cohort/$export"},
		{Table: "condition", Group: "", ExportTime: t1.Add(time.Hour)},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("ReadCompletion (-want +got):\n%s", d)
	}
	// Read-only: no spill folder or WAL left behind, and the file opens again for writing.
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("after ReadCompletion the folder holds %d entries, want the database alone", len(entries))
	}

	if _, err := ReadCompletion(ctx, filepath.Join(t.TempDir(), "missing.duckdb")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadCompletion(missing) = %v, want ErrNotExist", err)
	}
	other := filepath.Join(t.TempDir(), "other.duckdb")
	c, err := duckdb.NewConnector(other, nil)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	if _, err := db.Exec(`CREATE TABLE x (i INTEGER)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	c.Close()
	if _, err := ReadCompletion(ctx, other); !errors.Is(err, ErrNotStore) {
		t.Errorf("ReadCompletion(a database etl-load never wrote) = %v, want ErrNotStore", err)
	}
}
