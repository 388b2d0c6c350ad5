package fetch

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
)

// The child of TestFetchManyFilesFewDescriptors: this test binary run again under a low
// RLIMIT_NOFILE, fetching the manifest in manyChildManifest into manyChildDir.
const (
	manyChildManifest = "FETCH_MANY_CHILD_MANIFEST"
	manyChildDir      = "FETCH_MANY_CHILD_DIR"
	manyChildBase     = "FETCH_MANY_CHILD_BASE"
)

const (
	manyFiles    = 3000 // far more than the descriptor limit below
	manyParallel = 5
	manyNofile   = 64 // a file per manifest entry held open at once would hit this 47 times over
	// manyPerWorker is what one download holds at most: its .part and its connection. A file
	// that arrives in one chunk, as these do, never writes a resume record.
	manyPerWorker = 2
	// manySlack covers the rest of the run: log.ndjson, the lock, the state journal, the
	// committer's handle of the folder, and a state compaction's temporary file and the sync of
	// its folder.
	manySlack = 6
	// manyBytesPerFile bounds what the run writes per file, all bookkeeping included.
	manyBytesPerFile = 4096
)

// fdCount is the number of descriptors the process has open, not counting the one that reads
// them.
func fdCount(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Error(err)
	}
	return len(entries) - 1
}

// wchar is the number of bytes the process has passed to write(2) so far (Linux).
func wchar(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	i := bytes.Index(b, []byte("wchar: "))
	if i < 0 {
		t.Fatalf("/proc/self/io has no wchar:\n%s", b)
	}
	fmt.Sscanf(string(b[i:]), "wchar: %d", &n)
	return n
}

// TestFetchManyFilesChild is the child's body; it does nothing in a normal test run.
func TestFetchManyFilesChild(t *testing.T) {
	path := os.Getenv(manyChildManifest)
	if path == "" {
		t.Skip("only run as the child of TestFetchManyFilesFewDescriptors")
	}
	lim := syscall.Rlimit{Cur: manyNofile, Max: manyNofile}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, os.Getenv(manyChildBase), fhirclient.Options{})
	base := fdCount(t)
	w0 := wchar(t)
	var mu sync.Mutex
	most := base
	sample := func() {
		n := fdCount(t)
		mu.Lock()
		most = max(most, n)
		mu.Unlock()
	}
	res, _, err := fetchInto(t, os.Getenv(manyChildDir), c, manifest, func(o *Options) {
		o.NoDelete = true
		o.Parallel = manyParallel
		o.On.Start = func(FileInfo) { sample() }
		o.On.Done = func(string, error) { sample() }
	})
	if err != nil {
		t.Fatalf("fetch of %d files under RLIMIT_NOFILE %d: %v", manyFiles, manyNofile, err)
	}
	if res.Files != manyFiles {
		t.Errorf("Result.Files = %d, want %d", res.Files, manyFiles)
	}
	fmt.Printf("fds: base %d, most %d, wchar %d\n", base, most, wchar(t)-w0)
}

// TestFetchManyFilesFewDescriptors: a manifest of thousands of tiny files downloads completely
// under a descriptor limit far below the file count, and the descriptors open during the run stay
// within a bound set by --parallel alone (STYLE.md §17). The child process holds only the
// client's descriptors: the server runs here.
func TestFetchManyFilesFewDescriptors(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts descriptors in /proc/self/fd")
	}
	var requests sync.Map
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimPrefix(r.URL.Path, "/f/")
		requests.Store(id, true)
		fmt.Fprintf(w, `{"resourceType":"Patient","id":%q}`+"\n", id)
	}))
	t.Cleanup(srv.Close)
	var kv []string
	for i := range manyFiles {
		kv = append(kv, "Patient", "/f/"+strconv.Itoa(i))
	}
	manifest := manifestLine(t, srv.URL+"/status/1", map[string]any{"output": items(srv.URL, kv...)})
	root := t.TempDir()
	path := filepath.Join(root, "manifest.ndjson")
	if err := os.WriteFile(path, manifest, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "export")
	child := exec.Command(os.Args[0], "-test.run=^TestFetchManyFilesChild$", "-test.v")
	child.Env = append(os.Environ(), manyChildManifest+"="+path, manyChildDir+"="+dir, manyChildBase+"="+srv.URL)
	out, err := child.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, tail(out, 2000))
	}
	var base, most int
	var written int64
	i := bytes.Index(out, []byte("fds: "))
	if i < 0 {
		t.Fatalf("child printed no descriptor counts:\n%s", tail(out, 2000))
	}
	if _, err := fmt.Sscanf(string(out[i:]), "fds: base %d, most %d, wchar %d", &base, &most, &written); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d files, --parallel %d, RLIMIT_NOFILE %d: descriptors %d before the run, at most %d during it; %d bytes written, %d per file",
		manyFiles, manyParallel, manyNofile, base, most, written, written/manyFiles)
	// Each file's own bytes are a few dozen; the rest is bookkeeping: a resume record, two
	// log events, a journal line, and its share of the compactions. Rewriting the whole state
	// per file would be about 200 bytes × files per file.
	if per := written / manyFiles; per > manyBytesPerFile {
		t.Errorf("bytes written per file: %d, want ≤ %d (bookkeeping O(1) per file)", per, manyBytesPerFile)
	}
	if bound := base + manyPerWorker*manyParallel + manySlack; most > bound {
		t.Errorf("descriptors open during the run: at most %d, want ≤ %d (%d before + %d per download × --parallel %d + %d)",
			most, bound, base, manyPerWorker, manyParallel, manySlack)
	}
	n := 0
	requests.Range(func(any, any) bool { n++; return true })
	st, err := exportdir.ReadState(dir)
	if err != nil || len(st.Files) != manyFiles || n != manyFiles {
		t.Errorf("after the run: state.json lists %d files (%v), server saw %d files requested; want %d",
			len(st.Files), err, n, manyFiles)
	}
}

// tail is the end of a child's output, for a failure message.
func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// TestFetchRequestsLoggedWhenStarted: while --parallel downloads hang, the other files of the
// manifest have neither a .part nor a download_request event: a file is opened and logged when a
// worker starts it, so the log does not claim requests that were never sent.
func TestFetchRequestsLoggedWhenStarted(t *testing.T) {
	const files, parallel = 40, 3
	arrived := make(chan string, files)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- r.URL.Path
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		fmt.Fprintf(w, `{"resourceType":"Patient","id":%q}`+"\n", strings.TrimPrefix(r.URL.Path, "/f/"))
	}))
	t.Cleanup(srv.Close)
	manifest := tinyPatientManifest(t, srv.URL, files)
	dir := t.TempDir()
	c := newClient(t, srv.URL, fhirclient.Options{})
	done := make(chan error, 1)
	go func() {
		_, _, err := fetchInto(t, dir, c, manifest, func(o *Options) { o.NoDelete, o.Parallel = true, parallel })
		done <- err
	}()
	for range parallel {
		<-arrived
	}
	// Every worker now waits on its response, so nothing else can start.
	log, err := os.ReadFile(filepath.Join(dir, exportdir.LogName))
	if err != nil {
		t.Fatal(err)
	}
	parts, _ := filepath.Glob(filepath.Join(dir, "*.part"))
	if n := bytes.Count(log, []byte(`"eventId":"download_request"`)); n != parallel || len(parts) != parallel {
		t.Errorf("with %d downloads hanging: %d download_request events and %d .part files, want %d of each", parallel, n, len(parts), parallel)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	log, _ = os.ReadFile(filepath.Join(dir, exportdir.LogName))
	if n := bytes.Count(log, []byte(`"eventId":"download_request"`)); n != files {
		t.Errorf("after the run: %d download_request events, want %d", n, files)
	}
}

// tinyPatientManifest is a manifest of files Patient files at URL/f/0, /f/1, …
func tinyPatientManifest(t *testing.T, url string, files int) []byte {
	t.Helper()
	var kv []string
	for i := range files {
		kv = append(kv, "Patient", "/f/"+strconv.Itoa(i))
	}
	return manifestLine(t, url+"/status/1", map[string]any{"output": items(url, kv...)})
}
