package fetch

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
)

// TestFetchSilentKeptAliveConnection: a server that goes silent on a connection after answering
// a file in full (the stall fault with more bytes than any file has, on every file request) must
// not hold up the requests after it. File connections are not reused, so no later file and not
// the final DELETE waits on one: nothing is retried, and the export is deleted.
func TestFetchSilentKeptAliveConnection(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Patients: 10, Seed: 1, FileLines: 100})
	var mu sync.Mutex
	var retries []string
	c := newClient(t, srv.URL(), fhirclient.Options{OnRetry: func(e fhirclient.RetryEvent) {
		mu.Lock()
		retries = append(retries, e.Method+" "+e.Reason)
		mu.Unlock()
	}})
	manifest := export(t, srv, c, bulk.KickoffRequest{})
	f, err := fhirtest.ParseFault("stall:100000000@file%1")
	if err != nil {
		t.Fatal(err)
	}
	srv.AddFault(f)
	res, rec, err := fetchInto(t, t.TempDir(), c, manifest, func(o *Options) { o.StallTimeout = 200 * time.Millisecond })
	if err != nil {
		t.Fatal(err)
	}
	if !res.Deleted || rec.retries > 0 || len(retries) > 0 {
		t.Errorf("deleted %v, %d file retries, client retries %q; want the export deleted and nothing retried", res.Deleted, rec.retries, retries)
	}
}

// TestFetchDeleteBoundedByStallTimeout: the final DELETE waits for an answer no longer than
// --stall-timeout, then tries again on a new connection, as downloads do.
func TestFetchDeleteBoundedByStallTimeout(t *testing.T) {
	var deletes atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodDelete && deletes.Add(1) == 1:
			<-r.Context().Done() // silent until the client gives up
		case r.Method == http.MethodDelete:
			w.WriteHeader(http.StatusAccepted)
		default:
			w.Write([]byte(patients))
		}
	}))
	t.Cleanup(srv.Close)
	var mu sync.Mutex
	var reasons []string
	c := newClient(t, srv.URL, fhirclient.Options{OnRetry: func(e fhirclient.RetryEvent) {
		mu.Lock()
		reasons = append(reasons, e.Method+" "+e.Reason)
		mu.Unlock()
	}})
	line := manifestLine(t, srv.URL+"/status/1", map[string]any{"output": items(srv.URL, "Patient", "/f/p")})
	res, _, err := fetchInto(t, t.TempDir(), c, line, func(o *Options) { o.StallTimeout = 200 * time.Millisecond })
	if err != nil {
		t.Fatal(err)
	}
	if !res.Deleted || deletes.Load() != 2 || len(reasons) != 1 || !strings.Contains(reasons[0], "DELETE no response within 200ms") {
		t.Errorf("deleted %v after %d DELETEs, retries %q; want deleted on the second, after no response within 200ms", res.Deleted, deletes.Load(), reasons)
	}
}

// TestFetchSlowBodyReachesDisk: bytes of a body that arrives slowly are written to the .part
// before the buffer fills, so a kill -9 during a slow download loses little. The server sends the
// first 1000 bytes, then waits until the client reports them written.
func TestFetchSlowBodyReachesDisk(t *testing.T) {
	body := strings.Repeat(`{"resourceType":"Patient","id":"x"}`+"\n", 20000) // several chunks
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write([]byte(body[:1000]))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(10 * time.Second): // only a client that holds the bytes gets here
		case <-r.Context().Done():
		}
		w.Write([]byte(body[1000:]))
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL, fhirclient.Options{})
	dir := t.TempDir()
	var first int64
	var onDisk int64 = -1
	var once sync.Once
	_, _, err := fetchInto(t, dir, c, manifestLine(t, "", map[string]any{"output": items(srv.URL, "Patient", "/f/p")}), func(o *Options) {
		o.flushEvery = time.Nanosecond
		o.On.Progress = func(_ string, n, _ int64) {
			once.Do(func() {
				first = n
				if st, err := os.Stat(filepath.Join(dir, "Patient.000.ndjson.part")); err == nil {
					onDisk = st.Size()
				}
				close(release)
			})
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if first <= 0 || first > 1000 || onDisk != first {
		t.Errorf("first write of %d bytes, %d on disk then; want the bytes received so far (at most 1000), on disk", first, onDisk)
	}
}
