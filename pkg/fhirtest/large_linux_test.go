package fhirtest

import (
	"io"
	"net/http"
	"syscall"
	"testing"
)

// TestLargeExportBoundedMemory serves a generated export several times the memory bound and
// reads it streaming: the process's peak RSS must stay under the bound, which it cannot when the
// data set or a file is held in memory. Linux only (ru_maxrss in KiB).
func TestLargeExportBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("generates and serves about 600 MB")
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
