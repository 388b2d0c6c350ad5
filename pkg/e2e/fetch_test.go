package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
)

// fetchServer is an in-process test server, so a test can add faults and count requests while
// the real binaries talk to it.
func fetchServer(t *testing.T, opts fhirtest.Options) *fhirtest.Server {
	t.Helper()
	needBinaries(t, "bulk-kickoff", "bulk-poll", "bulk-fetch")
	srv, err := fhirtest.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func addFaults(t *testing.T, srv *fhirtest.Server, specs ...string) {
	t.Helper()
	for _, s := range specs {
		f, err := fhirtest.ParseFault(s)
		if err != nil {
			t.Fatal(err)
		}
		srv.AddFault(f)
	}
}

// pollManifest runs bulk-kickoff and bulk-poll and returns the manifest lines.
func pollManifest(t *testing.T, url string, env []string, kickoffArgs ...string) string {
	t.Helper()
	status := mustRun(t, env, "", "bulk-kickoff", append([]string{url}, kickoffArgs...)...).Stdout
	return mustRun(t, env, status, "bulk-poll").Stdout
}

// dataOf maps each data file of an export folder (decoded) and its state entry to a digest:
// what two exports of the same data must agree on byte for byte, whatever their links and times.
func dataOf(t *testing.T, dir string) map[string]string {
	t.Helper()
	files, err := exportdir.Discover(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(b)
		out[f.Rel] = hex.EncodeToString(s[:])
	}
	st, err := exportdir.ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range st.Files {
		out["state:"+f.Name] = fmt.Sprintf("%s %d %d %d", f.SHA256, f.Size, f.Lines, f.Ordinal)
	}
	return out
}

// snapshotDir maps every file of a folder to its digest, the log and the lock aside.
func snapshotDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "log.ndjson" || rel == filepath.Join(".bulkpipe", "lock") {
			return nil
		}
		b, _ := os.ReadFile(p)
		s := sha256.Sum256(b)
		out[filepath.ToSlash(rel)] = hex.EncodeToString(s[:])
		return nil
	})
	return out
}

// TestFetchPipelineE2E is the "done when": bulk-kickoff | bulk-poll | bulk-fetch against
// the test server with every fault kind on gives the same bytes as with none.
func TestFetchPipelineE2E(t *testing.T) {
	srv := fetchServer(t, fhirtest.Options{Patients: 30, Seed: 21, FileLines: 500, PageSize: 5})
	work := t.TempDir()
	pipeline := `bulk-kickoff "$URL" --allow-partial-manifests | bulk-poll | bulk-fetch --dir "$DIR" --stall-timeout 1s`
	env := func(dir string) []string { return []string{"URL=" + srv.URL(), "DIR=" + dir} }
	clean := sh(t, work, env("clean"), pipeline)
	if clean.Code != 0 {
		t.Fatalf("fault-free pipeline: exit %d\n%s", clean.Code, clean.Stderr)
	}
	addFaults(t, srv, "503:1@kickoff", "503@status", "500@status", "429:epoch-ms@status",
		"500@file*2", "503:0@file", "429:1@file*2", "reset@file*2", "truncate@file*2", "stall:2000@file",
		"slow:50@file*3", "expire-links", "dup-lines:9", "no-final-newline")
	faulty := sh(t, work, env("faulty"), pipeline)
	if faulty.Code != 0 {
		t.Fatalf("pipeline under faults: exit %d\n%s", faulty.Code, faulty.Stderr)
	}
	for _, want := range []string{"retrying", "fetching the manifest again", "parallel downloads"} {
		if !strings.Contains(faulty.Stderr, want) {
			t.Errorf("stderr under faults lacks %q:\n%s", want, faulty.Stderr)
		}
	}
	// dup-lines and no-final-newline change the data of every export from now on: the reference
	// is a second export with those habits and no transport fault left.
	again := sh(t, work, env("again"), `bulk-kickoff "$URL" | bulk-poll | bulk-fetch --dir "$DIR"`)
	if again.Code != 0 {
		t.Fatalf("second pipeline: exit %d\n%s", again.Code, again.Stderr)
	}
	if diff := cmp.Diff(dataOf(t, filepath.Join(work, "again")), dataOf(t, filepath.Join(work, "faulty"))); diff != "" {
		t.Errorf("the export under transport faults differs from the fault-free one (-fault-free +faulty):\n%s", diff)
	}
	for _, dir := range []string{"clean", "faulty"} {
		ex, err := exportdir.ReadLog(filepath.Join(work, dir, "log.ndjson"))
		if err != nil || !ex.HasTime || ex.ExportURL == "" {
			t.Errorf("%s: ReadLog = %+v, %v", dir, ex, err)
		}
		if parts, _ := filepath.Glob(filepath.Join(work, dir, "*.part")); len(parts) > 0 {
			t.Errorf("%s: .part files left: %q", dir, parts)
		}
	}
}

// TestFetchCrashE2E kills bulk-fetch with SIGKILL at each failpoint, then reruns it: the folder
// equals a clean run's, no .part is left, and no file verified before the crash is requested again.
func TestFetchCrashE2E(t *testing.T) {
	srv := fetchServer(t, fhirtest.Options{Patients: 60, Seed: 22, FileLines: 2000})
	work := t.TempDir()
	manifest := filepath.Join(work, "manifest.ndjson")
	os.WriteFile(manifest, []byte(pollManifest(t, srv.URL(), nil)), 0o644)
	base := filepath.Join(work, "base")
	mustRun(t, nil, "", "bulk-fetch", "--dir", base, "--no-delete", manifest)
	want := snapshotDir(t, base)
	urls := fileURLs(t, manifest)
	for _, point := range []string{"fetch.after-part-write:3", "fetch.after-part-write:40", "fetch.before-rename:2",
		"fetch.after-rename:1", "fetch.after-rename:5", "fetch.after-state:3"} {
		t.Run(point, func(t *testing.T) {
			dir := filepath.Join(work, strings.NewReplacer(":", "-", ".", "-").Replace(point))
			r := run(t, []string{"BULKPIPE_CRASH=" + point}, "", "bulk-fetch", "--dir", dir, "--no-delete", "--parallel", "3", manifest)
			if r.Code != -1 {
				t.Fatalf("exit %d, want killed at %s\n%s", r.Code, point, r.Stderr)
			}
			// What the killed run had finished: renamed files (verified before any rename).
			done := map[string]bool{}
			files, _ := exportdir.Discover(dir)
			for _, f := range files {
				done[f.Rel] = true
			}
			n := len(srv.Requests())
			mustRun(t, nil, "", "bulk-fetch", "--dir", dir, "--no-delete", manifest)
			if diff := cmp.Diff(want, snapshotDir(t, dir)); diff != "" {
				t.Errorf("folder after crash and rerun differs from a clean run (-clean +rerun):\n%s", diff)
			}
			if parts, _ := filepath.Glob(filepath.Join(dir, "*.part")); len(parts) > 0 {
				t.Errorf(".part files left: %q", parts)
			}
			for _, r := range srv.Requests()[n:] {
				if r.Route != fhirtest.RouteFile {
					continue
				}
				for rel := range done {
					if urls[rel] == r.URL {
						t.Errorf("rerun downloaded %s again, verified before the crash", rel)
					}
				}
			}
			if point == "fetch.after-part-write:40" && len(done) == len(urls) {
				t.Errorf("the crash came after every file was done: the failpoint is too late to test a resume")
			}
		})
	}
}

// fileURLs maps each file's name in the folder to its URL, by the numbering rule of DESIGN.md §3.
func fileURLs(t *testing.T, manifest string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	n := map[string]int{}
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		m, err := bulk.ParseManifest(line)
		if err != nil {
			t.Fatal(err)
		}
		for _, arr := range []struct {
			t     exportdir.ItemType
			items []bulk.Item
		}{{exportdir.ItemOutput, m.Output}, {exportdir.ItemDeleted, m.Deleted}, {exportdir.ItemError, m.Error}} {
			for _, it := range arr.items {
				typ := it.Type
				switch arr.t {
				case exportdir.ItemDeleted:
					typ = "Bundle"
				case exportdir.ItemError:
					typ = "OperationOutcome"
				}
				key := string(arr.t) + "/" + typ
				out[exportdir.Rel(arr.t, typ, n[key])] = it.URL
				n[key]++
			}
		}
	}
	return out
}

// TestFetchLockE2E: a second bulk-fetch on a folder in use exits 1 naming the first's PID.
func TestFetchLockE2E(t *testing.T) {
	srv := fetchServer(t, fhirtest.Options{Patients: 3, Seed: 23})
	work := t.TempDir()
	manifest := pollManifest(t, srv.URL(), nil)
	dir := filepath.Join(work, "out")
	first := holdFolder(t, dir, manifest)
	pid := first.PID
	second := run(t, nil, manifest, "bulk-fetch", "--dir", dir, "--no-delete")
	if second.Code != 1 || !strings.Contains(second.Stderr, "in use by PID "+pid) {
		t.Errorf("second run: exit %d, stderr %q; want 1 naming PID %s", second.Code, second.Stderr, pid)
	}
	if err := first.finish(); err != nil {
		t.Fatalf("first run: %v\n%s", err, first.Stderr.String())
	}
}

// TestFetchMemoryE2E: peak RSS stays under 64 MB + 2 × longest line × parallel, whatever the
// export's size (the bound).
func TestFetchMemoryE2E(t *testing.T) {
	// GNU time measures the tool alone: the rusage of a child this test forks directly would
	// include this process's own resident pages (Linux counts the memory shared until exec).
	gnuTime := "/usr/bin/time"
	if out, err := exec.Command(gnuTime, "-f", "%M", "true").CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) == 0 {
		t.Skip("needs GNU time at /usr/bin/time to measure peak RSS")
	}
	srv := fetchServer(t, fhirtest.Options{Patients: 400, Seed: 24, FileLines: 40000, Gzip: true})
	work := t.TempDir()
	manifest := filepath.Join(work, "manifest.ndjson")
	os.WriteFile(manifest, []byte(pollManifest(t, srv.URL(), nil)), 0o644)
	dir := filepath.Join(work, "out")
	const parallel = 5
	rssFile := filepath.Join(work, "rss")
	cmd := exec.Command(gnuTime, "-o", rssFile, "-f", "%M", filepath.Join(binDir, "bulk-fetch"),
		"--dir", dir, "--parallel", strconv.Itoa(parallel), manifest)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bulk-fetch: %v\n%s", err, stderr.String())
	}
	kb, err := os.ReadFile(rssFile)
	if err != nil {
		t.Fatal(err)
	}
	rssKB, err := strconv.ParseInt(strings.TrimSpace(string(kb)), 10, 64)
	if err != nil {
		t.Fatalf("GNU time printed %q", kb)
	}
	rss := rssKB << 10
	var total, longest int64
	files, _ := exportdir.Discover(dir)
	for _, f := range files {
		fh, _ := os.Open(f.Path)
		br := bufio.NewReaderSize(fh, 1<<20)
		for {
			line, err := br.ReadSlice('\n')
			longest = max(longest, int64(len(line)))
			total += int64(len(line))
			if err == bufio.ErrBufferFull {
				t.Fatalf("%s: a line over 1 MiB", f.Path)
			}
			if err != nil {
				break
			}
		}
		fh.Close()
	}
	limit := 64<<20 + 2*longest*parallel
	t.Logf("downloaded %d MiB; peak RSS %d MiB; longest line %d bytes; limit %d MiB", total>>20, rss>>20, longest, limit>>20)
	if total < 40<<20 {
		t.Errorf("the export is only %d MiB: too small to show memory does not grow with it", total>>20)
	}
	if rss > limit {
		t.Errorf("peak RSS %d MiB, want < %d MiB", rss>>20, limit>>20)
	}
}

// TestExportScriptE2E: scripts/bulk-export.sh runs the three steps, checks each one's status,
// says how to resume when one fails, and resumes the same export when run again.
func TestExportScriptE2E(t *testing.T) {
	srv := fetchServer(t, fhirtest.Options{Patients: 5, Seed: 25})
	work := t.TempDir()
	script := filepath.Join(moduleRoot(), "scripts", "bulk-export.sh")
	addFaults(t, srv, "500@status")
	env := []string{"BULK_RETRIES=0"}
	r := sh(t, work, env, "sh '"+script+"' '"+srv.URL()+"/Group/all' out --type Patient,Condition")
	if r.Code != 1 || !strings.Contains(r.Stderr, "bulk-poll failed (exit 1)") || !strings.Contains(r.Stderr, "to resume, run the same command again") {
		t.Fatalf("with a failing status URL: exit %d\n%s", r.Code, r.Stderr)
	}
	if _, err := os.Stat(filepath.Join(work, "out.status")); err != nil {
		t.Fatalf("the status URL was not kept for the resume: %v", err)
	}
	kickoffs := 0
	r = sh(t, work, env, "sh '"+script+"' '"+srv.URL()+"/Group/all' out --type Patient,Condition")
	if r.Code != 0 || !strings.Contains(r.Stderr, "resuming the export") {
		t.Fatalf("rerun: exit %d\n%s", r.Code, r.Stderr)
	}
	for _, req := range srv.Requests() {
		if req.Route == fhirtest.RouteKickoff {
			kickoffs++
		}
	}
	if kickoffs != 1 {
		t.Errorf("%d kickoffs, want 1: the rerun must resume, not start another export", kickoffs)
	}
	ex, err := exportdir.ReadLog(filepath.Join(work, "out", "log.ndjson"))
	if err != nil || ex.Group != "all" || !ex.HasTime || ex.RequestParameters["_type"] != "Patient,Condition" {
		t.Errorf("ReadLog = %+v, %v; want the Group export's kickoff copied from the script's log", ex, err)
	}
	if _, err := os.Stat(filepath.Join(work, "out.status")); err == nil {
		t.Errorf("out.status left after a complete export")
	}

	// The Makefile recipe: one run does it all, a second has nothing to do.
	mk := filepath.Join(moduleRoot(), "scripts", "Makefile")
	r = sh(t, work, nil, "make -s -f '"+mk+"' FHIR_URL='"+srv.URL()+"' DIR=mk")
	if r.Code != 0 {
		t.Fatalf("make: exit %d\n%s", r.Code, r.Stderr)
	}
	r = sh(t, work, nil, "make -f '"+mk+"' FHIR_URL='"+srv.URL()+"' DIR=mk")
	if r.Code != 0 || !strings.Contains(r.Stdout, "Nothing to be done") {
		t.Errorf("second make: exit %d, stdout %q", r.Code, r.Stdout)
	}
}
