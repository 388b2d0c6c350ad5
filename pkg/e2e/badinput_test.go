package e2e

// The bad-input catalogue of issue 8, run against the real binaries: inputs real servers and
// clients produce that every tool must accept (with the result each must give), and inputs each
// must reject with a one-line error, exit 1, and nothing already on disk damaged. docs/bad-input.md
// lists every case with the test that proves it.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tidwall/gjson"

	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirjson"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest/synth"
)

// biExportTime is the --export-timestamp of hand-made folders without a log.
const biExportTime = "2024-05-01T00:00:00Z"

// biNoLog are the etl-load flags for a hand-made folder without a log (a system-level export).
var biNoLog = []string{"--export-group", "", "--export-timestamp", biExportTime}

// biServer is an in-process bulk-testserver, so a test can read the requests it saw (and
// with them, who got a token) while the real binaries talk to it.
func biServer(t *testing.T, opts fhirtest.Options) *fhirtest.Server {
	t.Helper()
	needBinaries(t)
	srv, err := fhirtest.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// biManifest runs bulk-kickoff | bulk-poll against url and returns the manifest lines.
func biManifest(t *testing.T, url string, env []string, kickoffArgs ...string) string {
	t.Helper()
	status := mustRun(t, env, "", "bulk-kickoff", append([]string{"-q", url}, kickoffArgs...)...).Stdout
	return mustRun(t, env, status, "bulk-poll", "-q").Stdout
}

// biWrite writes data at path, creating its folder.
func biWrite(t *testing.T, path string, data string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// biPatient is a compact Patient line, as the tools must read and write it back.
func biPatient(id, lastUpdated string, extra string) string {
	return `{"resourceType":"Patient","id":"` + id + `","meta":{"lastUpdated":"` + lastUpdated + `"}` + extra + `}`
}

// biEditManifest rewrites each manifest line with edit (a decoded JSON object).
func biEditManifest(t *testing.T, manifest string, edit func(m map[string]any)) string {
	t.Helper()
	var out strings.Builder
	for line := range strings.Lines(manifest) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("manifest line %.100q: %v", line, err)
		}
		edit(m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out.Write(append(b, '\n'))
	}
	return out.String()
}

// biItems returns the objects of one array of a decoded manifest.
func biItems(m map[string]any, array string) []map[string]any {
	var out []map[string]any
	l, _ := m[array].([]any)
	for _, it := range l {
		if o, ok := it.(map[string]any); ok {
			out = append(out, o)
		}
	}
	return out
}

// biRejected checks the contract of a rejected input (issue 8): exit 1, and a last stderr line
// that is the tool's one-line error holding every want (the file and line, or URL and status).
// Every stderr line must carry the tool's prefix, so a dumped usage text or a panic fails too.
func biRejected(t *testing.T, r result, tool string, wants ...string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.Stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	if r.Code != 1 {
		t.Errorf("%s: exit %d, want 1\nstderr:\n%s", tool, r.Code, r.Stderr)
		return
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, tool+": ") {
			t.Errorf("%s: stderr line %q lacks the %q prefix of a one-line error", tool, l, tool+": ")
		}
	}
	for _, w := range wants {
		if !strings.Contains(last, w) {
			t.Errorf("%s: error %q does not name %q", tool, last, w)
		}
	}
}

// biDataDigest maps each data file of an export folder (exportdir.Discover) to its SHA-256.
func biDataDigest(t *testing.T, dir string) map[string]string {
	t.Helper()
	files, err := exportdir.Discover(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range files {
		out[f.Rel] = biFileSHA(t, f.Path)
	}
	return out
}

// biFileSHA is the hex SHA-256 of a file, read as a stream (some are 100 MB).
func biFileSHA(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// biReadLog returns the bytes of DIR/log.ndjson ("" when absent).
func biReadLog(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "log.ndjson"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// biUnharmed checks that a rejected run left an export folder as it was: every file but the log
// and the lock byte-identical, and the log only appended to (one append write per event, §4).
func biUnharmed(t *testing.T, dir string, digest map[string]string, log string) {
	t.Helper()
	if diff := cmp.Diff(digest, folderDigest(t, dir)); diff != "" {
		t.Errorf("%s changed (-before +after):\n%s", dir, diff)
	}
	if now := biReadLog(t, dir); !strings.HasPrefix(now, log) {
		t.Errorf("%s/log.ndjson was rewritten, not appended to:\nbefore:\n%s\nafter:\n%s", dir, log, now)
	}
}

// biDBSnapshot returns every table of a DuckDB database as etl-load's Cumulus-layout NDJSON
// snapshot (table/file → content): what "the database did not change" compares.
func biDBSnapshot(t *testing.T, db string) map[string]string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "snapshot")
	mustRun(t, nil, "", "etl-load", "-q", "--db", db, "--format", "ndjson", "--dir", out)
	snap := map[string]string{}
	err := filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(out, p)
		snap[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// biTable returns the rows of one table of a snapshot, one resource a line, sorted.
func biTable(snap map[string]string, table string) []string {
	var out []string
	for rel, content := range snap {
		if strings.HasPrefix(rel, table+"/") {
			out = append(out, strings.Split(strings.TrimRight(content, "\n"), "\n")...)
		}
	}
	slices.Sort(out)
	return slices.DeleteFunc(out, func(s string) bool { return s == "" })
}

// biLoadedDB returns a DuckDB database holding one small, valid export: the "before" that a
// rejected etl-load must leave as it was.
func biLoadedDB(t *testing.T) string {
	t.Helper()
	work := t.TempDir()
	dir := filepath.Join(work, "good")
	biWrite(t, filepath.Join(dir, "Patient.000.ndjson"),
		biPatient("good-1", "2024-01-01T00:00:00Z", "")+"\n"+biPatient("good-2", "2024-01-01T00:00:00Z", "")+"\n")
	db := filepath.Join(work, "site.duckdb")
	mustRun(t, nil, "", "etl-load", append([]string{"-q", "--db", db}, append(biNoLog, dir)...)...)
	return db
}

// TestBadInputDuplicateIDs: the same resource twice in one export is collapsed by etl-load (the
// last occurrence in the folder wins, as man/etl-load.1 says) and by ndjson-merge (the newest
// meta.lastUpdated wins, DESIGN.md §6).
func TestBadInputDuplicateIDs(t *testing.T) {
	needBinaries(t, "etl-load", "ndjson-merge")
	work := t.TempDir()
	dir := filepath.Join(work, "export")
	newer := biPatient("p1", "2024-02-01T00:00:00Z", `,"active":true`)
	older := biPatient("p1", "2024-01-01T00:00:00Z", "")
	p2 := biPatient("p2", "2024-01-01T00:00:00Z", "")
	biWrite(t, filepath.Join(dir, "Patient.000.ndjson"), newer+"\n"+p2+"\n"+older+"\n")
	biWrite(t, filepath.Join(dir, "Patient.001.ndjson"), p2+"\n")

	db := filepath.Join(work, "dup.duckdb")
	mustRun(t, nil, "", "etl-load", append([]string{"-q", "--db", db}, append(biNoLog, dir)...)...)
	if got, want := biTable(biDBSnapshot(t, db), "patient"), []string{older, p2}; !slices.Equal(got, want) {
		t.Errorf("etl-load: patient table = %q, want %q (one row per id, the folder's last copy)", got, want)
	}

	out := filepath.Join(work, "merged")
	mustRun(t, nil, "", "ndjson-merge", "-q", "--export-timestamp", biExportTime, dir, "--dir", out)
	b, err := os.ReadFile(filepath.Join(out, "Patient.000.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), newer+"\n"+p2+"\n"; got != want {
		t.Errorf("ndjson-merge: Patient.000.ndjson = %q, want %q (one line per id, the newest lastUpdated)", got, want)
	}
}

// TestBadInputLogTwoExports: a log that holds two exports (bulk-data-client appends to one log)
// is read by its last kickoff: its Group and its status_complete time, even when the first
// export's completion comes later in the file (DESIGN.md §4, §9).
func TestBadInputLogTwoExports(t *testing.T) {
	needBinaries(t, "etl-load", "ndjson-merge")
	work := t.TempDir()
	dir := filepath.Join(work, "export")
	biWrite(t, filepath.Join(dir, "Patient.000.ndjson"), biPatient("p1", "2024-01-01T00:00:00Z", "")+"\n")
	biWrite(t, filepath.Join(dir, "log.ndjson"), biTwoExportLog("2024-04-01T00:30:00Z"))

	db := filepath.Join(work, "two.duckdb")
	mustRun(t, nil, "", "etl-load", "-q", "--db", db, dir)
	rows := biTable(biDBSnapshot(t, db), "etl__completion")
	if len(rows) != 1 || gjson.Get(rows[0], "group_name").Str != "second" ||
		!biSameInstant(gjson.Get(rows[0], "export_time").Str, "2024-04-01T00:30:00Z") {
		t.Errorf("etl-load: etl__completion = %q, want one row of Group second at 2024-04-01T00:30:00Z (the last kickoff's export)", rows)
	}

	out := filepath.Join(work, "merged")
	mustRun(t, nil, "", "ndjson-merge", "-q", dir, "--dir", out)
	ex, err := exportdir.ReadLog(filepath.Join(out, "log.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	if ex.Group != "second" || !ex.TransactionTime.Equal(time.Date(2024, 4, 1, 0, 30, 0, 0, time.UTC)) {
		t.Errorf("ndjson-merge: merged log has Group %q, time %v; want second, 2024-04-01T00:30:00Z", ex.Group, ex.TransactionTime)
	}
}

// biTwoExportLog is a bulk-data-client log of two Group exports, "first" then "second"; the time
// of the second is secondTime, and the first's completion is logged after the second's.
func biTwoExportLog(secondTime string) string {
	return `{"exportId":"http://ehr.example/fhir/status/a","timestamp":"2024-03-01T00:00:00Z","eventId":"kickoff","eventDetail":{"exportUrl":"http://ehr.example/fhir/Group/first/$export?_type=Patient","requestParameters":{"_type":"Patient"}}}
{"exportId":"http://ehr.example/fhir/status/b","timestamp":"2024-04-01T00:00:00.123456Z","eventId":"kickoff","eventDetail":{"exportUrl":"http://ehr.example/fhir/Group/second/$export?_type=Patient","requestParameters":{"_type":"Patient"}}}
{"exportId":"http://ehr.example/fhir/status/b","timestamp":"2024-04-01T01:00:00Z","eventId":"status_complete","eventDetail":{"transactionTime":"` + secondTime + `"}}
{"exportId":"http://ehr.example/fhir/status/a","timestamp":"2024-04-02T00:00:00Z","eventId":"status_complete","eventDetail":{"transactionTime":"2024-03-01T00:30:00Z"}}
`
}

// biSameInstant compares two RFC 3339 times as instants.
func biSameInstant(a, b string) bool {
	ta, err1 := time.Parse(time.RFC3339Nano, a)
	tb, err2 := time.Parse(time.RFC3339Nano, b)
	return err1 == nil && err2 == nil && ta.Equal(tb)
}

// biLineQuirks are the line habits of real servers and clients (DESIGN.md §3, §9), each as the
// bytes of a file holding two Patients, NAME-1 and NAME-2.
var biLineQuirks = []struct {
	name string
	file func(l1, l2 string) string
}{
	{"crlf", func(l1, l2 string) string { return l1 + "\r\n" + l2 + "\r\n" }},
	{"bom", func(l1, l2 string) string { return "\ufeff" + l1 + "\n" + l2 + "\n" }},
	{"blank", func(l1, l2 string) string { return "\n" + l1 + "\n\n\r\n" + l2 + "\n\n" }},
	{"no-final-newline", func(l1, l2 string) string { return l1 + "\n" + l2 }},
}

// TestBadInputLineQuirks: CRLF, a BOM, blank lines and a missing final newline are read by
// etl-load and ndjson-merge (every resource, unchanged), normalized by ndjson-inline's
// pass-through (man/ndjson-inline.1: one newline per line, blank lines and BOM dropped), and
// verified and kept as served by bulk-fetch (man/bulk-fetch.1).
func TestBadInputLineQuirks(t *testing.T) {
	needBinaries(t, "etl-load", "ndjson-merge", "ndjson-inline", "bulk-fetch")
	work := t.TempDir()
	dir := filepath.Join(work, "export")
	served := map[string][]byte{}
	var output []any
	for i, q := range biLineQuirks {
		l1, l2 := biPatient(q.name+"-1", "2024-01-01T00:00:00Z", ""), biPatient(q.name+"-2", "2024-01-01T00:00:00Z", "")
		data := q.file(l1, l2)
		biWrite(t, filepath.Join(dir, exportdir.FileName("Patient", i)), data)
		served["/quirk/"+q.name+".ndjson"] = []byte(data)
	}

	db := filepath.Join(work, "quirks.duckdb")
	mustRun(t, nil, "", "etl-load", append([]string{"-q", "--db", db}, append(biNoLog, dir)...)...)
	loaded := biTable(biDBSnapshot(t, db), "patient")
	merged := filepath.Join(work, "merged")
	mustRun(t, nil, "", "ndjson-merge", "-q", "--export-timestamp", biExportTime, dir, "--dir", merged)
	b, err := os.ReadFile(filepath.Join(merged, "Patient.000.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	mergedLines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if want := 2 * len(biLineQuirks); len(loaded) != want || len(mergedLines) != want {
		t.Errorf("etl-load loaded %d Patients, ndjson-merge wrote %d; want %d (two a file, nothing more)", len(loaded), len(mergedLines), want)
	}

	srv := biServer(t, fhirtest.Options{Patients: 1, Override: served})
	for _, q := range biLineQuirks {
		output = append(output, map[string]any{"type": "Patient", "url": srv.URL() + "/quirk/" + q.name + ".ndjson", "count": 2})
	}
	manifest, _ := json.Marshal(map[string]any{"transactionTime": biExportTime, "request": srv.URL() + "/$export",
		"requiresAccessToken": false, "output": output, "error": []any{}})
	mpath := biWrite(t, filepath.Join(work, "manifest.ndjson"), string(manifest)+"\n")
	fetched := filepath.Join(work, "fetched")
	fetch := run(t, []string{"BULK_FHIR_URL=" + srv.URL()}, "", "bulk-fetch", "--dir", fetched, "--no-delete", mpath)

	for i, q := range biLineQuirks {
		t.Run(q.name, func(t *testing.T) {
			l1, l2 := biPatient(q.name+"-1", "2024-01-01T00:00:00Z", ""), biPatient(q.name+"-2", "2024-01-01T00:00:00Z", "")
			for _, l := range []string{l1, l2} {
				if !slices.Contains(loaded, l) {
					t.Errorf("etl-load: patient table lacks %s", l)
				}
				if !slices.Contains(mergedLines, l) {
					t.Errorf("ndjson-merge: output lacks %s", l)
				}
			}
			path := filepath.Join(dir, exportdir.FileName("Patient", i))
			r := mustRun(t, []string{"BULK_FHIR_URL=http://127.0.0.1:1/fhir"}, "", "ndjson-inline", "-q", path)
			if want := l1 + "\n" + l2 + "\n"; r.Stdout != want {
				t.Errorf("ndjson-inline %s: stdout %q, want %q", q.name, r.Stdout, want)
			}
			if fetch.Code != 0 {
				t.Fatalf("bulk-fetch: exit %d\n%s", fetch.Code, fetch.Stderr)
			}
			name := exportdir.FileName("Patient", i)
			got, err := os.ReadFile(filepath.Join(fetched, name))
			if err != nil || !bytes.Equal(got, served["/quirk/"+q.name+".ndjson"]) {
				t.Errorf("bulk-fetch: %s = %q, %v; want the bytes as served, %q", name, got, err, served["/quirk/"+q.name+".ndjson"])
			}
			st, err := exportdir.ReadState(fetched)
			if err != nil {
				t.Fatal(err)
			}
			if fs, ok := st.File(name); !ok || fs.Lines != 2 {
				t.Errorf("bulk-fetch: state.json %s = %+v, %v; want 2 lines verified", name, fs, ok)
			}
		})
	}
}

// TestBadInputFetchNoFinalNewline: files whose last line lacks its newline (the server's
// no-final-newline habit) are verified by bulk-fetch and kept as served: the same bytes as a
// fault-free export of the same data, less the last newline.
func TestBadInputFetchNoFinalNewline(t *testing.T) {
	needBinaries(t, "bulk-kickoff", "bulk-poll", "bulk-fetch")
	nl, _ := fhirtest.ParseFault("no-final-newline")
	clean := biServer(t, fhirtest.Options{Patients: 5, Seed: 81})
	faulty := biServer(t, fhirtest.Options{Patients: 5, Seed: 81, Faults: []fhirtest.Fault{nl}})
	work := t.TempDir()
	for _, s := range []struct {
		name string
		srv  *fhirtest.Server
	}{{"clean", clean}, {"faulty", faulty}} {
		m := biWrite(t, filepath.Join(work, s.name+".ndjson"), biManifest(t, s.srv.URL(), nil))
		mustRun(t, nil, "", "bulk-fetch", "-q", "--dir", filepath.Join(work, s.name), "--no-delete", m)
	}
	files, err := exportdir.Discover(filepath.Join(work, "clean"))
	if err != nil || len(files) < 5 {
		t.Fatalf("clean export: %d files, %v", len(files), err)
	}
	// Absolute attachment URLs name each server's own origin.
	origin := func(srv *fhirtest.Server, b []byte) []byte {
		return bytes.ReplaceAll(b, []byte(srv.URL()), []byte("BASE"))
	}
	for _, f := range files {
		want, _ := os.ReadFile(f.Path)
		got, err := os.ReadFile(filepath.Join(work, "faulty", f.Rel))
		if err != nil || !bytes.Equal(origin(faulty, got), bytes.TrimSuffix(origin(clean, want), []byte("\n"))) || bytes.HasSuffix(got, []byte("\n")) {
			t.Errorf("%s: %d bytes (err %v), want the fault-free file less its last newline (%d bytes)", f.Rel, len(got), err, len(want)-1)
		}
	}
}

// TestBadInputHugeLines: a 100 MB line (a huge inlined note) is loaded by etl-load and passed
// through ndjson-inline byte for byte. Peak RSS of each is logged (issue 8: "RSS reported").
func TestBadInputHugeLines(t *testing.T) {
	needBinaries(t, "etl-load", "ndjson-inline")
	work := t.TempDir()
	dir := filepath.Join(work, "export")
	path := filepath.Join(dir, "Patient.000.ndjson")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	want := biWriteHuge(t, path, 100<<20)

	db := filepath.Join(work, "huge.duckdb")
	r, rss := biRunMeasured(t, nil, "etl-load", append([]string{"-q", "--db", db}, append(biNoLog, dir)...)...)
	if r.Code != 0 {
		t.Fatalf("etl-load: exit %d\n%s", r.Code, r.Stderr)
	}
	t.Logf("etl-load, a 100 MiB line: peak RSS %s", rss)
	snap := filepath.Join(work, "snapshot")
	mustRun(t, nil, "", "etl-load", "-q", "--db", db, "--format", "ndjson", "--dir", snap)
	tables, _ := filepath.Glob(filepath.Join(snap, "patient", "*.ndjson"))
	var got []string
	for _, f := range tables {
		got = append(got, biLineDigests(t, f)...)
	}
	slices.Sort(got)
	if w := slices.Sorted(slices.Values(want)); !slices.Equal(got, w) {
		t.Errorf("etl-load: patient rows have digests %q, want %q (the three lines, the huge one intact)", got, w)
	}

	out, err := os.Create(filepath.Join(work, "inlined.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	r, rss = biRunMeasured(t, out, "ndjson-inline", "-q", "--fhir-url", "http://127.0.0.1:1/fhir", path)
	if r.Code != 0 {
		t.Fatalf("ndjson-inline: exit %d\n%s", r.Code, r.Stderr)
	}
	t.Logf("ndjson-inline pass-through, a 100 MiB line: peak RSS %s", rss)
	if a, b := biFileSHA(t, out.Name()), biFileSHA(t, path); a != b {
		t.Errorf("ndjson-inline: output SHA-256 %s, input %s: want the lines passed through byte for byte", a, b)
	}
}

// biWriteHuge writes three Patients, the middle one with a text.div of n bytes, without
// holding it in memory, and returns each line's digest.
func biWriteHuge(t *testing.T, path string, n int) []string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	var digests []string
	line := func(parts ...func(io.Writer)) {
		h := sha256.New()
		mw := io.MultiWriter(w, h)
		for _, p := range parts {
			p(mw)
		}
		w.WriteByte('\n')
		digests = append(digests, hex.EncodeToString(h.Sum(nil)))
	}
	str := func(s string) func(io.Writer) { return func(w io.Writer) { io.WriteString(w, s) } }
	line(str(biPatient("before", "2024-01-01T00:00:00Z", "")))
	line(str(`{"resourceType":"Patient","id":"huge","meta":{"lastUpdated":"2024-01-01T00:00:00Z"},"text":{"status":"generated","div":"<div>`),
		func(w io.Writer) {
			chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096)
			for left := n; left > 0; left -= len(chunk) {
				w.Write(chunk[:min(left, len(chunk))])
			}
		},
		str(`</div>"}}`))
	line(str(biPatient("after", "2024-01-01T00:00:00Z", "")))
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return digests
}

// biLineDigests returns the SHA-256 of each line of a file, streaming (lines may be 100 MB).
func biLineDigests(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	var out []string
	h, n := sha256.New(), 0
	for {
		chunk, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			h.Write(chunk)
			n += len(chunk)
			continue
		}
		chunk = bytes.TrimSuffix(bytes.TrimSuffix(chunk, []byte("\n")), []byte("\r"))
		h.Write(chunk)
		if n += len(chunk); n > 0 {
			out = append(out, hex.EncodeToString(h.Sum(nil)))
		}
		h, n = sha256.New(), 0
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// biRunMeasured runs a tool with stdout to w (nil: discarded) and returns its peak RSS. GNU time
// measures the tool alone; without it the rusage of the direct child is reported, which on
// Linux also counts this test process's resident pages at fork (an upper bound).
func biRunMeasured(t *testing.T, w io.Writer, name string, args ...string) (result, string) {
	t.Helper()
	bin := filepath.Join(binDir, name)
	rssFile := filepath.Join(t.TempDir(), "rss")
	gnuTime := "/usr/bin/time"
	useTime := exec.Command(gnuTime, "-f", "%M", "true").Run() == nil
	cmd := exec.CommandContext(t.Context(), bin, args...)
	if useTime {
		cmd = exec.CommandContext(t.Context(), gnuTime, append([]string{"-o", rssFile, "-f", "%M", bin}, args...)...)
	}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = w, &stderr
	err := cmd.Run()
	r := result{Stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if useTime {
		b, _ := os.ReadFile(rssFile)
		if fields := strings.Fields(string(b)); len(fields) > 0 {
			if kb, err := strconv.ParseInt(fields[len(fields)-1], 10, 64); err == nil {
				return r, fmt.Sprintf("%d MiB (GNU time)", kb>>10)
			}
		}
		return r, fmt.Sprintf("unknown (GNU time wrote %q)", b)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return r, fmt.Sprintf("%d MiB at most (rusage Maxrss, which counts this test process's pages too)", ru.Maxrss>>10)
	}
	return r, "unknown"
}

// TestBadInputFilesOtherOrigin: file URLs on another origin (presigned storage that rejects an
// Authorization header) are fetched without the token, though the manifest says
// requiresAccessToken: the token goes to trusted origins only (DESIGN.md §2).
func TestBadInputFilesOtherOrigin(t *testing.T) {
	needBinaries(t, "bulk-kickoff", "bulk-poll", "bulk-fetch")
	srv := biServer(t, fhirtest.Options{Patients: 5, Seed: 82, RequiresToken: true, FilesOrigin: true, FilesRejectAuth: true})
	env := []string{"BULK_BEARER_TOKEN=files-origin-s3cret", "BULK_FHIR_URL="}
	work := t.TempDir()
	m := biWrite(t, filepath.Join(work, "manifest.ndjson"), biManifest(t, srv.URL(), env))
	if !gjson.Get(biRead(t, m), "requiresAccessToken").Bool() {
		t.Fatalf("the manifest does not say requiresAccessToken: %s", biRead(t, m))
	}
	dir := filepath.Join(work, "export")
	mustRun(t, env, "", "bulk-fetch", "-q", "--dir", dir, "--no-delete", m)
	files := 0
	for _, req := range srv.Requests() {
		switch {
		case req.Origin == "files":
			files++
			if req.Authorization != "" {
				t.Errorf("%s %s: the files origin got Authorization %q", req.Method, req.URL, req.Authorization)
			}
		case req.Route == fhirtest.RouteStatus && req.Authorization != "Bearer files-origin-s3cret":
			t.Errorf("%s %s: Authorization %q, want the token on the FHIR server's own origin", req.Method, req.URL, req.Authorization)
		}
	}
	if n := len(biDataDigest(t, dir)); files < n || n < 5 {
		t.Errorf("%d requests to the files origin for %d files, want one or more each", files, n)
	}
}

// biRead returns a file's content.
func biRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestBadInputRelativeManifestURLs: relative file URLs in a manifest are resolved against the
// status URL (the manifest's own URL), with a warning; the folder equals the one the absolute
// URLs give. "../files/…" resolves right only against the status URL, not the FHIR base.
func TestBadInputRelativeManifestURLs(t *testing.T) {
	needBinaries(t, "bulk-kickoff", "bulk-poll", "bulk-fetch")
	srv := biServer(t, fhirtest.Options{Patients: 5, Seed: 83})
	work := t.TempDir()
	manifest := biManifest(t, srv.URL(), nil)
	abs := biWrite(t, filepath.Join(work, "absolute.ndjson"), manifest)
	rel := biWrite(t, filepath.Join(work, "relative.ndjson"), biEditManifest(t, manifest, func(m map[string]any) {
		for _, arr := range []string{"output", "deleted", "error"} {
			for _, it := range biItems(m, arr) {
				it["url"] = "../" + strings.TrimPrefix(it["url"].(string), srv.URL()+"/")
			}
		}
	}))
	if !strings.Contains(biRead(t, rel), `"url":"../files/`) {
		t.Fatalf("no relative URL in %s", biRead(t, rel))
	}
	mustRun(t, nil, "", "bulk-fetch", "-q", "--dir", filepath.Join(work, "abs"), "--no-delete", abs)
	r := mustRun(t, nil, "", "bulk-fetch", "--dir", filepath.Join(work, "rel"), "--no-delete", rel)
	if !strings.Contains(r.Stderr, "warning: manifest has relative file URLs") || !strings.Contains(r.Stderr, "/status/") {
		t.Errorf("stderr lacks the warning that relative URLs are resolved against the status URL:\n%s", r.Stderr)
	}
	if diff := cmp.Diff(biDataDigest(t, filepath.Join(work, "abs")), biDataDigest(t, filepath.Join(work, "rel"))); diff != "" {
		t.Errorf("relative URLs gave another folder (-absolute +relative):\n%s", diff)
	}
}

// TestBadInputBase64Size: an attachment whose size is the length of its base64 text (a server
// habit, --fault b64-size) gets its size recomputed from the bytes by ndjson-inline.
func TestBadInputBase64Size(t *testing.T) {
	needBinaries(t, "bulk-kickoff", "bulk-poll", "bulk-fetch", "ndjson-inline")
	ds := synth.Generate(synth.Options{Patients: 5, Seed: 84})
	b64, _ := fhirtest.ParseFault("b64-size")
	srv := biServer(t, fhirtest.Options{Data: ds, Faults: []fhirtest.Fault{b64}})
	work := t.TempDir()
	env := []string{"BULK_FHIR_URL="}
	m := biWrite(t, filepath.Join(work, "manifest.ndjson"), biManifest(t, srv.URL(), env, "--type", "DocumentReference,DiagnosticReport"))
	dir := filepath.Join(work, "export")
	mustRun(t, env, "", "bulk-fetch", "-q", "--dir", dir, "--no-delete", m)
	want := selected(t, dir)
	wrong := 0
	eachAttachment(t, dir, func(rel string, l []byte, a fhirjson.Attachment) {
		if !want[rel+" "+fhirjson.Key(l)+" "+a.Path] {
			return
		}
		_, id, _ := strings.Cut(a.URL, "Binary/")
		size := gjson.GetBytes(l[a.Start:a.End], "size")
		if size.Exists() && size.Int() == int64(base64.StdEncoding.EncodedLen(len(ds.Binaries[id].Data))) {
			wrong++
		}
	})
	if wrong == 0 {
		t.Fatalf("no attachment of the export has its base64 length as size: the b64-size fault is not on")
	}
	mustRun(t, env, "", "ndjson-inline", "-q", "--in-place", dir)
	checkInlined(t, dir, ds, want) // size = len(data), hash, data = the Binary
}

// TestBadInputManifestOutcome: a v4-build manifest names its OperationOutcome files in "outcome"
// instead of "error"; bulk-fetch treats them as error files (DESIGN.md §9).
func TestBadInputManifestOutcome(t *testing.T) {
	needBinaries(t, "bulk-kickoff", "bulk-poll", "bulk-fetch")
	srv := biServer(t, fhirtest.Options{Patients: 5, Seed: 85, Profile: fhirtest.ProfileV4})
	work := t.TempDir()
	manifest := biManifest(t, srv.URL(), nil)
	if !gjson.Get(manifest, "outcome.0.url").Exists() || gjson.Get(manifest, "error").Exists() {
		t.Fatalf("the v4 manifest has no outcome array, or still an error array: %s", manifest)
	}
	m := biWrite(t, filepath.Join(work, "manifest.ndjson"), manifest)
	dir := filepath.Join(work, "export")
	r := mustRun(t, nil, "", "bulk-fetch", "--dir", dir, "--no-delete", m)
	oo := filepath.Join(dir, "error", "OperationOutcome.000.ndjson")
	b, err := os.ReadFile(oo)
	if err != nil || gjson.GetBytes(b, "resourceType").Str != "OperationOutcome" {
		t.Fatalf("%s: %.200q, %v; want the outcome file", oo, b, err)
	}
	if diag := gjson.GetBytes(b, "issue.0.diagnostics").Str; diag == "" || !strings.Contains(r.Stderr, diag) {
		t.Errorf("stderr does not print the outcome's issue %q:\n%s", diag, r.Stderr)
	}
	st, _ := exportdir.ReadState(dir)
	if fs, ok := st.File("error/OperationOutcome.000.ndjson"); !ok || fs.ItemType != exportdir.ItemError {
		t.Errorf("state.json: %+v, %v; want the outcome recorded as an error file", fs, ok)
	}
}

// biFetchedExport returns a complete export folder fetched from a new server, with its manifest
// file: the "before" that a rejected bulk-fetch must leave as it was.
func biFetchedExport(t *testing.T, opts fhirtest.Options, kickoffArgs ...string) (srv *fhirtest.Server, dir, manifest string) {
	t.Helper()
	needBinaries(t, "bulk-kickoff", "bulk-poll", "bulk-fetch")
	srv = biServer(t, opts)
	work := t.TempDir()
	manifest = biWrite(t, filepath.Join(work, "manifest.ndjson"), biManifest(t, srv.URL(), nil, kickoffArgs...))
	dir = filepath.Join(work, "export")
	mustRun(t, nil, "", "bulk-fetch", "-q", "--dir", dir, "--no-delete", manifest)
	return srv, dir, manifest
}

// TestBadInputFetchManifest: bulk-fetch refuses a manifest cut short and manifest types that
// would make a path (`../`, absolute), naming the manifest file and line, and leaves the export
// folder it was pointed at as it was; nothing is written outside it.
func TestBadInputFetchManifest(t *testing.T) {
	_, dir, good := biFetchedExport(t, fhirtest.Options{Patients: 5, Seed: 86})
	manifest := biRead(t, good)
	work := t.TempDir()
	escape := filepath.Join(work, "escaped")
	retype := func(typ string) string {
		return biEditManifest(t, manifest, func(m map[string]any) {
			for _, it := range biItems(m, "output") {
				if it["type"] == "Patient" {
					it["type"] = typ
				}
			}
		})
	}
	for _, tc := range []struct {
		name, manifest, want string
	}{
		{"truncated", manifest[:len(manifest)/2], "manifest"},
		{"dotdot-type", retype("../escaped/Patient"), `"../escaped/Patient"`},
		{"absolute-type", retype(filepath.Join(escape, "Patient")), escape},
	} {
		t.Run(tc.name, func(t *testing.T) {
			digest, log := folderDigest(t, dir), biReadLog(t, dir)
			m := biWrite(t, filepath.Join(work, tc.name+".ndjson"), tc.manifest)
			r := run(t, nil, "", "bulk-fetch", "--dir", dir, "--no-delete", m)
			biRejected(t, r, "bulk-fetch", m+":1", tc.want)
			biUnharmed(t, dir, digest, log)
			if _, err := os.Stat(escape); err == nil {
				t.Errorf("%s was created: a manifest type led outside the folder", escape)
			}
		})
	}
}

// TestBadInputWrongResourceType: a file whose lines are not of the manifest's type fails
// verification: the error names the file and line, the .part is never renamed, and state.json
// does not record it.
func TestBadInputWrongResourceType(t *testing.T) {
	srv := biServer(t, fhirtest.Options{Patients: 5, Seed: 87})
	work := t.TempDir()
	manifest := biEditManifest(t, biManifest(t, srv.URL(), nil), func(m map[string]any) {
		var condition string
		for _, it := range biItems(m, "output") {
			if it["type"] == "Condition" {
				condition = it["url"].(string)
			}
		}
		m["output"] = []any{map[string]any{"type": "Patient", "url": condition}}
	})
	m := biWrite(t, filepath.Join(work, "manifest.ndjson"), manifest)
	dir := filepath.Join(work, "export")
	r := run(t, nil, "", "bulk-fetch", "--dir", dir, "--no-delete", m)
	biRejected(t, r, "bulk-fetch", "Patient.000.ndjson.part:1", `resourceType "Condition"`)
	if _, err := os.Stat(filepath.Join(dir, "Patient.000.ndjson")); err == nil {
		t.Errorf("Patient.000.ndjson exists: a file that failed verification was renamed")
	}
	if st, _ := exportdir.ReadState(dir); st != nil {
		if fs, ok := st.File("Patient.000.ndjson"); ok {
			t.Errorf("state.json records the unverified file: %+v", fs)
		}
	}
}

// TestBadInputMaxLine: a line over --max-line is refused by every tool that has the flag,
// naming the file and line, with nothing written or changed.
func TestBadInputMaxLine(t *testing.T) {
	needBinaries(t, "etl-load", "ndjson-inline", "ndjson-merge", "bulk-fetch")
	work := t.TempDir()
	long := `,"text":{"status":"generated","div":"<div>` + strings.Repeat("x", 3000) + `</div>"}`
	lines := biPatient("ok-1", "2024-01-01T00:00:00Z", "") + "\n" + biPatient("ok-2", "2024-01-01T00:00:00Z", "") + "\n" +
		biPatient("long", "2024-01-01T00:00:00Z", long) + "\n"
	dir := filepath.Join(work, "export")
	path := biWrite(t, filepath.Join(dir, "Patient.000.ndjson"), lines)

	t.Run("etl-load", func(t *testing.T) {
		db := biLoadedDB(t)
		before := biDBSnapshot(t, db)
		r := run(t, nil, "", "etl-load", append([]string{"-q", "--db", db, "--max-line", "1000"}, append(biNoLog, dir)...)...)
		biRejected(t, r, "etl-load", path, "line 3")
		if diff := cmp.Diff(before, biDBSnapshot(t, db)); diff != "" {
			t.Errorf("the database changed (-before +after):\n%s", diff)
		}
	})
	t.Run("ndjson-inline", func(t *testing.T) {
		r := run(t, nil, "", "ndjson-inline", "--fhir-url", "http://127.0.0.1:1/fhir", "--max-line", "1000", path)
		biRejected(t, r, "ndjson-inline", path, "line 3")
	})
	t.Run("ndjson-inline-in-place", func(t *testing.T) {
		notes := filepath.Join(t.TempDir(), "notes")
		doc := biWrite(t, filepath.Join(notes, "DocumentReference.000.ndjson"), strings.ReplaceAll(lines, `"Patient"`, `"DocumentReference"`))
		before := folderDigest(t, notes)
		r := run(t, nil, "", "ndjson-inline", "--in-place", "--fhir-url", "http://127.0.0.1:1/fhir", "--max-line", "1000", notes)
		biRejected(t, r, "ndjson-inline", doc, "line 3")
		if diff := cmp.Diff(before, folderDigest(t, notes)); diff != "" {
			t.Errorf("the folder changed (-before +after):\n%s", diff)
		}
	})
	t.Run("ndjson-merge", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "merged")
		r := run(t, nil, "", "ndjson-merge", "-q", "--max-line", "1000", "--export-timestamp", biExportTime, dir, "--dir", out)
		biRejected(t, r, "ndjson-merge", path, "line 3")
		if _, err := os.Stat(out); err == nil {
			t.Errorf("--dir %s exists after a failed merge", out)
		}
	})
	t.Run("bulk-fetch", func(t *testing.T) {
		srv := biServer(t, fhirtest.Options{Patients: 3, Seed: 88})
		m := biWrite(t, filepath.Join(t.TempDir(), "manifest.ndjson"), biManifest(t, srv.URL(), nil, "--type", "Patient"))
		out := filepath.Join(t.TempDir(), "export")
		r := run(t, nil, "", "bulk-fetch", "--dir", out, "--no-delete", "--max-line", "1000", m)
		biRejected(t, r, "bulk-fetch", "Patient.000.ndjson.part:1", "1000 bytes")
		if _, err := os.Stat(filepath.Join(out, "Patient.000.ndjson")); err == nil {
			t.Errorf("Patient.000.ndjson exists: a file with a line over --max-line was renamed")
		}
	})
}

// TestBadInputLogBadTime: a malformed transactionTime in the log that decides the export's time
// is refused by etl-load and ndjson-merge, naming the log and line; nothing is loaded or written.
func TestBadInputLogBadTime(t *testing.T) {
	needBinaries(t, "etl-load", "ndjson-merge")
	work := t.TempDir()
	dir := filepath.Join(work, "export")
	biWrite(t, filepath.Join(dir, "Patient.000.ndjson"), biPatient("p1", "2024-01-01T00:00:00Z", "")+"\n")
	log := biWrite(t, filepath.Join(dir, "log.ndjson"), biTwoExportLog("2024-04-31T25:30:00Z"))

	t.Run("etl-load", func(t *testing.T) {
		db := biLoadedDB(t)
		before := biDBSnapshot(t, db)
		biRejected(t, run(t, nil, "", "etl-load", "-q", "--db", db, dir), "etl-load", log+":3", "2024-04-31T25:30:00Z")
		if diff := cmp.Diff(before, biDBSnapshot(t, db)); diff != "" {
			t.Errorf("the database changed (-before +after):\n%s", diff)
		}
	})
	t.Run("ndjson-merge", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "merged")
		biRejected(t, run(t, nil, "", "ndjson-merge", "-q", dir, "--dir", out), "ndjson-merge", log+":3", "2024-04-31T25:30:00Z")
		if _, err := os.Stat(out); err == nil {
			t.Errorf("--dir %s exists after a failed merge", out)
		}
	})
}

// biNobody runs tools as an unprivileged user when the test runs as root, for whom chmod 000
// denies nothing. It links the binaries into a folder that user can reach; Work is a folder
// it can write in.
type biNobody struct {
	bin, Work string
	cred      *syscall.Credential
}

func biNewNobody(t *testing.T) *biNobody {
	t.Helper()
	root, err := os.MkdirTemp("", "bulkpipe-e2e-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	n := &biNobody{bin: filepath.Join(root, "bin"), Work: filepath.Join(root, "work")}
	for _, d := range []string{root, n.bin, n.Work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		os.Chmod(d, 0o755)
	}
	os.Chmod(n.Work, 0o777)
	entries, _ := os.ReadDir(binDir)
	for _, e := range entries {
		if err := os.Link(filepath.Join(binDir, e.Name()), filepath.Join(n.bin, e.Name())); err != nil {
			t.Skipf("cannot link the binaries where an unprivileged user can run them: %v", err)
		}
	}
	if os.Geteuid() == 0 {
		n.cred = &syscall.Credential{Uid: 65534, Gid: 65534}
	}
	return n
}

// run runs a tool in Work, as nobody when this test is root.
func (n *biNobody) run(t *testing.T, name string, args ...string) result {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), filepath.Join(n.bin, name), args...)
	cmd.Dir = n.Work
	cmd.Env = append(os.Environ(), "HOME="+n.Work, "BULK_FHIR_URL=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: n.cred}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{Stdout: out.String(), Stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.Code = ee.ExitCode()
	} else if err != nil && n.cred != nil {
		// Root, for whom chmod 000 denies nothing, and no way to run as another user here.
		t.Skipf("chmod 000 cannot be tested as root without switching to uid 65534, which failed: %v", err)
	} else if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return r
}

// TestBadInputUnreadableFolder: a folder the user may not read (chmod 000), a path that is a
// file where a folder is expected, and a data file that cannot be opened (a dangling symlink,
// unreadable even for root) are refused naming the path, and nothing is changed.
func TestBadInputUnreadableFolder(t *testing.T) {
	needBinaries(t, "etl-load", "ndjson-merge", "ndjson-inline", "bulk-fetch")
	t.Run("chmod-000", func(t *testing.T) {
		n := biNewNobody(t)
		dir := filepath.Join(n.Work, "locked")
		biWrite(t, filepath.Join(dir, "DocumentReference.000.ndjson"), `{"resourceType":"DocumentReference","id":"d1"}`+"\n")
		manifest := biWrite(t, filepath.Join(n.Work, "manifest.ndjson"),
			`{"transactionTime":"`+biExportTime+`","request":"http://127.0.0.1:1/fhir/$export","requiresAccessToken":false,"output":[{"type":"Patient","url":"http://127.0.0.1:1/fhir/files/x.ndjson"}],"error":[]}`+"\n")
		before := folderDigest(t, dir)
		if err := os.Chmod(dir, 0); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
		for _, tc := range []struct {
			tool string
			args []string
		}{
			{"etl-load", append([]string{"-q", "--db", "site.duckdb"}, append(biNoLog, "locked")...)},
			{"ndjson-merge", []string{"-q", "--export-timestamp", biExportTime, "locked", "--dir", "merged"}},
			{"ndjson-inline", []string{"-q", "--in-place", "--fhir-url", "http://127.0.0.1:1/fhir", "locked"}},
			{"bulk-fetch", []string{"-q", "--dir", "locked", "--no-delete", manifest}},
		} {
			r := n.run(t, tc.tool, tc.args...)
			biRejected(t, r, tc.tool, "locked", "permission denied")
		}
		os.Chmod(dir, 0o755)
		if diff := cmp.Diff(before, folderDigest(t, dir)); diff != "" {
			t.Errorf("the unreadable folder changed (-before +after):\n%s", diff)
		}
	})
	t.Run("file-not-folder", func(t *testing.T) {
		work := t.TempDir()
		file := biWrite(t, filepath.Join(work, "export"), "not a folder\n")
		m := biWrite(t, filepath.Join(work, "manifest.ndjson"),
			`{"transactionTime":"`+biExportTime+`","request":"http://127.0.0.1:1/fhir/$export","output":[],"error":[]}`+"\n")
		biRejected(t, run(t, nil, "", "etl-load", append([]string{"-q", "--db", filepath.Join(work, "db.duckdb")}, append(biNoLog, file)...)...),
			"etl-load", file, "not a directory")
		biRejected(t, run(t, nil, "", "bulk-fetch", "-q", "--dir", file, "--no-delete", m), "bulk-fetch", file, "not a directory")
		if got := biRead(t, file); got != "not a folder\n" {
			t.Errorf("%s now holds %q", file, got)
		}
	})
	t.Run("dangling-symlink", func(t *testing.T) {
		work := t.TempDir()
		dir := filepath.Join(work, "export")
		biWrite(t, filepath.Join(dir, "Condition.000.ndjson"), `{"resourceType":"Condition","id":"c1"}`+"\n")
		for _, name := range []string{"Patient.000.ndjson", "DocumentReference.000.ndjson"} {
			if err := os.Symlink(filepath.Join(work, "gone", name), filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
		db := biLoadedDB(t)
		before := biDBSnapshot(t, db)
		// Both links dangle; the first in name order is the one reported.
		biRejected(t, run(t, nil, "", "etl-load", append([]string{"-q", "--db", db}, append(biNoLog, dir)...)...), "etl-load", "DocumentReference.000.ndjson")
		if diff := cmp.Diff(before, biDBSnapshot(t, db)); diff != "" {
			t.Errorf("the database changed (-before +after):\n%s", diff)
		}
		out := filepath.Join(work, "merged")
		biRejected(t, run(t, nil, "", "ndjson-merge", "-q", "--export-timestamp", biExportTime, dir, "--dir", out), "ndjson-merge", "DocumentReference.000.ndjson")
		biRejected(t, run(t, nil, "", "ndjson-inline", "-q", "--in-place", "--fhir-url", "http://127.0.0.1:1/fhir", dir),
			"ndjson-inline", "DocumentReference.000.ndjson")
	})
}

// biTmpfs mounts a tmpfs of size (mount(8) syntax) at a new folder, or skips the test saying
// why (it needs root and CAP_SYS_ADMIN).
func biTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		t.Skip("a full disk is a small tmpfs, and mounting one needs root")
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("a full disk is a small tmpfs, and mount -t tmpfs failed here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// biRemount changes a tmpfs's size.
func biRemount(t *testing.T, dir, size string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,size="+size, dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s: %v: %s", dir, err, out)
	}
}

// TestBadInputFullDisk: a full disk fails the run with exit 1 naming the file it could not
// write, and damages nothing: bulk-fetch keeps only verified files (and resumes once there is
// room), ndjson-merge leaves nothing at --dir, and etl-load leaves the database as it was.
func TestBadInputFullDisk(t *testing.T) {
	needBinaries(t, "bulk-kickoff", "bulk-poll", "bulk-fetch", "ndjson-merge", "etl-load")
	// A 3 MB export: three times the 1 MiB disk.
	_, ref, manifest := biFetchedExport(t, fhirtest.Options{Patients: 20, Seed: 89})
	want := biDataDigest(t, ref)

	t.Run("bulk-fetch", func(t *testing.T) {
		mnt := biTmpfs(t, "1m")
		dir := filepath.Join(mnt, "export")
		r := run(t, nil, "", "bulk-fetch", "-q", "--dir", dir, "--no-delete", manifest)
		biRejected(t, r, "bulk-fetch", dir, "no space left on device")
		got := biDataDigest(t, dir)
		for rel, sum := range got {
			if want[rel] != sum {
				t.Errorf("%s is on disk but differs from the server's file: a file was renamed before it was complete", rel)
			}
		}
		st, err := exportdir.ReadState(dir)
		if err != nil {
			t.Fatalf("state.json after a full disk: %v", err)
		}
		for _, f := range st.Files {
			if got[f.Name] != f.SHA256 {
				t.Errorf("state.json records %s with SHA-256 %s, but the folder has %q", f.Name, f.SHA256, got[f.Name])
			}
		}
		if len(got) == len(want) {
			t.Fatalf("every file fit in 1 MiB: the disk never filled")
		}
		biRemount(t, mnt, "16m")
		mustRun(t, nil, "", "bulk-fetch", "-q", "--dir", dir, "--no-delete", manifest)
		if diff := cmp.Diff(want, biDataDigest(t, dir)); diff != "" {
			t.Errorf("the rerun with room to spare differs from a clean fetch (-clean +rerun):\n%s", diff)
		}
	})
	t.Run("ndjson-merge", func(t *testing.T) {
		mnt := biTmpfs(t, "1m")
		out := filepath.Join(mnt, "merged")
		r := run(t, nil, "", "ndjson-merge", "-q", ref, "--dir", out)
		biRejected(t, r, "ndjson-merge", mnt, "no space left on device")
		if left, _ := os.ReadDir(mnt); len(left) > 0 {
			t.Errorf("a failed merge left %v on the disk", left)
		}
	})
	t.Run("etl-load", func(t *testing.T) {
		mnt := biTmpfs(t, "8m")
		db := filepath.Join(mnt, "site.duckdb")
		small := filepath.Join(t.TempDir(), "small")
		biWrite(t, filepath.Join(small, "Patient.000.ndjson"), biPatient("small-1", "2024-01-01T00:00:00Z", "")+"\n")
		mustRun(t, nil, "", "etl-load", append([]string{"-q", "--db", db}, append(biNoLog, small)...)...)
		before := biDBSnapshot(t, db)
		biFill(t, mnt, 300<<10)
		r := run(t, nil, "", "etl-load", "-q", "--db", db, ref)
		biRejected(t, r, "etl-load", mnt, "No space left on device")
		if err := os.Remove(filepath.Join(mnt, "filler")); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(before, biDBSnapshot(t, db)); diff != "" {
			t.Errorf("the database changed (-before +after):\n%s", diff)
		}
		mustRun(t, nil, "", "etl-load", "-q", "--db", db, ref)
	})
}

// biFill writes DIR/filler until only about free bytes are left on its file system.
func biFill(t *testing.T, dir string, free int64) {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	n := int64(st.Bavail)*int64(st.Bsize) - free
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.CopyN(f, biZeros{}, n); err != nil {
		t.Fatalf("filling %s: %v", dir, err)
	}
}

type biZeros struct{}

func (biZeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestBadInputFolderInUse: a second bulk-fetch on a folder another one holds exits 1 naming the
// holder's PID, and changes nothing in the folder.
func TestBadInputFolderInUse(t *testing.T) {
	_, dir, manifest := biFetchedExport(t, fhirtest.Options{Patients: 3, Seed: 90})
	first := holdFolder(t, dir, biRead(t, manifest), "-q")
	pid := first.PID
	digest, log := folderDigest(t, dir), biReadLog(t, dir)
	second := run(t, nil, "", "bulk-fetch", "--dir", dir, "--no-delete", manifest)
	biRejected(t, second, "bulk-fetch", dir, "PID "+pid)
	biUnharmed(t, dir, digest, log)
	if err := first.finish(); err != nil {
		t.Errorf("first run: %v\n%s", err, first.Stderr.String())
	}
}

// TestBadInputOtherExport: the manifest of another export into a folder that holds one is
// refused (naming --new-export), the folder unchanged; with --new-export it replaces it.
func TestBadInputOtherExport(t *testing.T) {
	srv, dir, _ := biFetchedExport(t, fhirtest.Options{Patients: 3, Seed: 91})
	other := biWrite(t, filepath.Join(t.TempDir(), "other.ndjson"), biManifest(t, srv.URL(), nil))
	digest, log := folderDigest(t, dir), biReadLog(t, dir)
	r := run(t, nil, "", "bulk-fetch", "--dir", dir, "--no-delete", other)
	biRejected(t, r, "bulk-fetch", dir, "--new-export")
	biUnharmed(t, dir, digest, log)

	mustRun(t, nil, "", "bulk-fetch", "-q", "--dir", dir, "--no-delete", "--new-export", other)
	st, err := exportdir.ReadState(dir)
	if want := gjson.Get(biRead(t, other), "_bulkpipe.statusUrl").Str; err != nil || st.ExportID != want {
		t.Errorf("after --new-export, state.json is of %q (%v), want %q", st.ExportID, err, want)
	}
}
