package fhirtest

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// largeChildEnv marks the process that serves the large export: a test binary built without
// -race (the detector's shadow memory would be most of the peak under make test) whose peak RSS
// counts this test alone, not the tests that ran before it in the same process.
const largeChildEnv = "FHIRTEST_LARGE_EXPORT_CHILD"

// TestLargeExportBoundedMemory serves a generated export several times the memory bound and
// reads it streaming: the process's peak RSS must stay under the bound, which it cannot when the
// data set or a file is held in memory. Linux only (ru_maxrss in KiB).
func TestLargeExportBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("generates and serves about 600 MB")
	}
	if os.Getenv(largeChildEnv) != "1" {
		exe := filepath.Join(t.TempDir(), "fhirtest.test")
		if b, err := exec.Command("go", "test", "-c", "-o", exe, ".").CombinedOutput(); err != nil {
			t.Fatalf("go test -c: %v\n%s", err, b)
		}
		cmd := exec.Command(exe, "-test.run=^TestLargeExportBoundedMemory$", "-test.v")
		cmd.Env = append(os.Environ(), largeChildEnv+"=1")
		b, err := cmd.CombinedOutput()
		t.Logf("%s", b)
		if err != nil {
			t.Fatalf("the serving process: %v", err)
		}
		return
	}
	const bound = 256 << 20
	s := start(t, Options{Patients: 4000, Seed: 1, Polls: 0, RetryAfter: 0})
	m, _ := poll(t, kickoff(t, s, "/$export", nil, nil), nil)
	var total int64
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	for _, it := range m.Output {
		resp, err := (&http.Client{Transport: tr}).Get(it.URL)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || n != resp.ContentLength {
			t.Fatalf("GET %s = %s, %d of %d bytes, %v", it.URL, resp.Status, n, resp.ContentLength, err)
		}
		total += n
	}
	if total < 2*bound {
		t.Fatalf("the export is %d bytes, want at least %d to mean anything", total, 2*bound)
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	if rss := ru.Maxrss << 10; rss > bound {
		t.Errorf("serving a %d-byte export: peak RSS %d bytes, want at most %d", total, rss, bound)
	}
	t.Logf("%d bytes served, peak RSS %d MiB", total, ru.Maxrss>>10)
}
