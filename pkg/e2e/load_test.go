package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
)

// TestBadInputUnfinishedExport: bulk-fetch given only the first page of a partial manifest exits 1
// ("the manifest is incomplete"), and etl-load then refuses the folder instead of writing
// completion rows for it, although the log holds the kickoff and status_complete that
// bulk-fetch wrote. --allow-incomplete loads the rows without completion rows; once the whole
// manifest is fetched, the folder loads with them.
func TestBadInputUnfinishedExport(t *testing.T) {
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

// TestBadInputText: text that is not Unicode — Latin-1 bytes, a lone surrogate escape — is
// refused by etl-load naming the file and line, with the database unchanged (it used to load
// invalid UTF-8 as a NULL resource, and refuse a whole folder over a lone surrogate without
// saying where). --replace-invalid-utf8 loads both as U+FFFD and counts them, and the NDJSON
// snapshot of the result works.
func TestBadInputText(t *testing.T) {
	needBinaries(t, "etl-load")
	db := biLoadedDB(t)
	before := biDBSnapshot(t, db)
	work := t.TempDir()
	for _, tc := range []struct{ name, line, want string }{
		{"latin1", `{"resourceType":"Patient","id":"l1","name":[{"text":"Ren` + "\xe9" + `e"}]}`, "invalid UTF-8 at byte"},
		{"surrogate", `{"resourceType":"Patient","id":"s1","name":[{"text":"a\ud800b"}]}`, `lone surrogate \ud800 at byte`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(work, tc.name)
			path := biWrite(t, filepath.Join(dir, "Patient.000.ndjson"), biPatient("ok", "2024-01-01T00:00:00Z", "")+"\n"+tc.line+"\n")
			r := run(t, nil, "", "etl-load", append([]string{"-q", "--db", db}, append(biNoLog, dir)...)...)
			biRejected(t, r, "etl-load", path+":2: ", tc.want, "--replace-invalid-utf8")
			if diff := cmp.Diff(before, biDBSnapshot(t, db)); diff != "" {
				t.Errorf("the database changed (-before +after):\n%s", diff)
			}
		})
	}
	fixed := filepath.Join(work, "fixed.duckdb")
	r := mustRun(t, nil, "", "etl-load", append([]string{"-q", "--db", fixed, "--replace-invalid-utf8"}, append(biNoLog, filepath.Join(work, "latin1"), filepath.Join(work, "surrogate"))...)...)
	if n := strings.Count(r.Stderr, "replaced with U+FFFD"); n != 2 {
		t.Errorf("etl-load --replace-invalid-utf8: %d warnings, want one per file:\n%s", n, r.Stderr)
	}
	rows := strings.Join(biTable(biDBSnapshot(t, fixed), "patient"), "\n")
	for _, want := range []string{"Ren\ufffde", `a\ufffdb`} {
		if !strings.Contains(rows, want) {
			t.Errorf("patient rows lack %q:\n%s", want, rows)
		}
	}
}

// TestBadInputUnknownTypes: a 340 KB file of 10,000 made-up resource types used to make 10,000
// tables (5 minutes, 6.3 GiB of RAM, a 5.1 GB database). etl-load refuses the first line whose
// type is neither FHIR's nor the manifest's, naming file and line, with the database unchanged.
func TestBadInputUnknownTypes(t *testing.T) {
	needBinaries(t, "etl-load")
	db := biLoadedDB(t)
	before := biDBSnapshot(t, db)
	dir := filepath.Join(t.TempDir(), "types")
	var b strings.Builder
	b.WriteString(`{"resourceType":"Patient","id":"p1"}` + "\n")
	for i := range 10000 {
		fmt.Fprintf(&b, `{"resourceType":"T%05d","id":"x"}`+"\n", i)
	}
	path := biWrite(t, filepath.Join(dir, "Patient.000.ndjson"), b.String())
	r, rss := biRunMeasured(t, nil, "etl-load", append([]string{"-q", "--db", db}, append(biNoLog, dir)...)...)
	t.Logf("etl-load, 10,000 made-up types: peak RSS %s", rss)
	biRejected(t, r, "etl-load", path+`:2: unknown resourceType "T00000"`, "--allow-unknown-types")
	if diff := cmp.Diff(before, biDBSnapshot(t, db)); diff != "" {
		t.Errorf("the database changed (-before +after):\n%s", diff)
	}
}

// TestBadInputNotExportFolder: a folder with no NDJSON data is refused by etl-load (which used to
// ask for --export-group and --export-timestamp, then load nothing and exit 0) and by
// ndjson-inline --in-place; an empty manifest file is named by bulk-fetch, not taken for stdin.
func TestBadInputNotExportFolder(t *testing.T) {
	needBinaries(t, "etl-load", "ndjson-inline", "bulk-fetch")
	work := t.TempDir()
	empty := filepath.Join(work, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(work, "site.duckdb")
	for _, args := range [][]string{{empty}, append(slices.Clone(biNoLog), empty)} {
		biRejected(t, run(t, nil, "", "etl-load", append([]string{"-q", "--db", db}, args...)...), "etl-load", "no NDJSON files in "+empty)
	}
	if _, err := os.Stat(db); err == nil {
		t.Errorf("etl-load created %s for a folder with nothing to load", db)
	}
	biRejected(t, run(t, nil, "", "ndjson-inline", "-q", "--in-place", "--fhir-url", "http://127.0.0.1:1/fhir", empty), "ndjson-inline", "no NDJSON files in "+empty)
	m := biWrite(t, filepath.Join(work, "manifest.ndjson"), "\n")
	r := run(t, nil, "", "bulk-fetch", "-q", "--dir", filepath.Join(work, "out"), m)
	biRejected(t, r, "bulk-fetch", m+" holds no manifest")
	if strings.Contains(r.Stderr, "stdin") {
		t.Errorf("bulk-fetch speaks of stdin for an empty FILE: %s", r.Stderr)
	}
}
