package fetch

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
)

// TestDownloadSlotFreeWhileWaiting: a try holds a slot of the adaptive limiter only while its
// request is out. Whenever a download waits to retry (after a 429, a 503, a cut body) it holds
// none, and the 429 has halved the parallelism by then.
func TestDownloadSlotFreeWhileWaiting(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) {
		case 1:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		case 2:
			w.WriteHeader(http.StatusServiceUnavailable)
		case 3:
			w.Header().Set("Content-Length", strconv.Itoa(len(patients)))
			w.Header().Set("ETag", `"v1"`)
			io.WriteString(w, patients[:10])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		default:
			http.ServeContent(w, r, "", time.Unix(1e9, 0), strings.NewReader(patients))
		}
	}))
	t.Cleanup(srv.Close)
	var e *engine
	var waits []string
	c, err := fhirclient.New(fhirclient.Options{FHIRBase: srv.URL, MaxAttempts: 3,
		Sleep: func(ctx context.Context, _ time.Duration) error {
			e.lim.mu.Lock()
			waits = append(waits, fmt.Sprintf("active %d of %d", e.lim.active, e.lim.limit))
			e.lim.mu.Unlock()
			return ctx.Err()
		}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	e = &engine{o: Options{Dir: dir, MaxLine: 1 << 20}, c: c, lim: newLimiter(4), now: time.Now}
	f := &file{id: identity{item: exportdir.ItemOutput, rtype: "Patient"}, url: srv.URL + "/p.ndjson"}
	if _, _, err := e.download(t.Context(), f); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "Patient.000.ndjson")); string(got) != patients {
		t.Errorf("Patient.000.ndjson = %q, want %q", got, patients)
	}
	want := "[active 0 of 2 active 0 of 2 active 0 of 2]"
	if fmt.Sprint(waits) != want || e.lim.active != 0 {
		t.Errorf("limiter while waiting: %v, %d active after; want %s, 0", waits, e.lim.active, want)
	}
}

// TestFetchCutBodiesWithProgress: a link that keeps breaking still gets the file when each body
// brings more of it: only failures in a row without progress count against the attempts, so 30
// cut bodies in a row finish a file with attempts for 2.
func TestFetchCutBodiesWithProgress(t *testing.T) {
	body := strings.Repeat(`{"resourceType":"Patient","id":"x"}`+"\n", 30)
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		off := 0
		if v, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes="); ok {
			off, _ = strconv.Atoi(strings.TrimSuffix(v, "-"))
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, len(body)-1, len(body)))
		}
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)-off))
		if off > 0 {
			w.WriteHeader(http.StatusPartialContent)
		}
		const step = 36 // one line
		if len(body)-off <= step {
			io.WriteString(w, body[off:])
			return
		}
		io.WriteString(w, body[off:off+step])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL, fhirclient.Options{MaxAttempts: 2})
	dir := t.TempDir()
	_, rec, err := fetchInto(t, dir, c, manifestLine(t, "", map[string]any{"output": items(srv.URL, "Patient", "/f/p")}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "Patient.000.ndjson")); string(got) != body {
		t.Errorf("Patient.000.ndjson holds %d bytes, want the %d of the file", len(got), len(body))
	}
	if n.Load() != 30 || rec.retries != 29 {
		t.Errorf("%d requests, %d retries reported; want 30 and 29", n.Load(), rec.retries)
	}
}
