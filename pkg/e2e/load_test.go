package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
)

// TestLoadUnfinishedExport: bulk-fetch given only the first page of a partial manifest exits 1
// ("the manifest is incomplete"), and etl-load then refuses the folder instead of writing
// completion rows for it, although the log holds the kickoff and status_complete that
// bulk-fetch wrote. --allow-incomplete loads the rows without completion rows; once the whole
// manifest is fetched, the folder loads with them.
func TestLoadUnfinishedExport(t *testing.T) {
	needBinaries(t, "bulk-kickoff", "bulk-poll", "bulk-fetch", "etl-load")
	srv := biServer(t, fhirtest.Options{Patients: 8, Seed: 91, PageSize: 2})
	work := t.TempDir()
	pages := biManifest(t, srv.URL(), nil, "--allow-partial-manifests")
	lines := strings.SplitAfter(strings.TrimRight(pages, "\n"), "\n")
	if len(lines) < 2 {
		t.Fatalf("want a manifest of several pages, got %d:\n%s", len(lines), pages)
	}
	first := biWrite(t, filepath.Join(work, "first.ndjson"), lines[0])
	all := biWrite(t, filepath.Join(work, "all.ndjson"), pages)
	dir := filepath.Join(work, "export")
	db := filepath.Join(work, "site.duckdb")

	r := run(t, nil, "", "bulk-fetch", "-q", "--dir", dir, "--no-delete", first)
	biRejected(t, r, "bulk-fetch", "the manifest is incomplete")
	r = run(t, nil, "", "etl-load", "-q", "--db", db, dir)
	biRejected(t, r, "etl-load", dir+": the download did not finish", "--allow-incomplete")

	r = mustRun(t, nil, "", "etl-load", "-q", "--db", db, "--allow-incomplete", dir)
	if !strings.Contains(r.Stderr, "rows loaded without completion rows (--allow-incomplete)") {
		t.Errorf("etl-load --allow-incomplete does not say what it did:\n%s", r.Stderr)
	}
	snap := biDBSnapshot(t, db)
	if got := snap["etl__completion/etl__completion.000.ndjson"]; got != "" {
		t.Errorf("etl__completion after --allow-incomplete = %q, want no row", got)
	}

	mustRun(t, nil, "", "bulk-fetch", "-q", "--dir", dir, "--no-delete", all)
	mustRun(t, nil, "", "etl-load", "-q", "--db", db, dir)
	snap = biDBSnapshot(t, db)
	if got := snap["etl__completion/etl__completion.000.ndjson"]; !strings.Contains(got, `"table_name":"patient"`) {
		t.Errorf("etl__completion after the whole export = %q, want a patient row", got)
	}
}
