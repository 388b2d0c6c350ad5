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

// TestFetchAttemptsSurviveNewLinks: fetching new links after a 404 does not start the attempt
// count again. A file whose every other answer is a 404 and the others bodies cut at the same
// point (no validator: each try starts over) would otherwise go round forever, each 404 (after a
// 2xx made the links worth fetching again) handing the download a fresh set of attempts.
func TestFetchAttemptsSurviveNewLinks(t *testing.T) {
	body := strings.Repeat(`{"resourceType":"Patient","id":"x"}`+"\n", 100)
	const forgive = 60 // after this many file requests the server relents, so a client that loops ends
	var files, polls atomic.Int32
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/status" {
			polls.Add(1)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"transactionTime":"2024-01-01T00:00:00Z","request":"x","requiresAccessToken":false,"output":[{"type":"Patient","url":%q}],"error":[]}`, srv.URL+"/f/p")
			return
		}
		switch n := files.Add(1); {
		case n > forgive:
			io.WriteString(w, body)
		case n%2 == 0:
			http.NotFound(w, r)
		default:
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			io.WriteString(w, body[:len(body)/2])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL, fhirclient.Options{MaxAttempts: 3})
	line := manifestLine(t, srv.URL+"/status", map[string]any{"output": items(srv.URL, "Patient", "/f/p")})
	_, _, err := fetchInto(t, t.TempDir(), c, line, nil)
	if err == nil || !strings.Contains(err.Error(), "giving up after 3 attempts") {
		t.Errorf("err = %v, want giving up after 3 attempts", err)
	}
	// Three cut bodies, each but the last followed by a 404 and new links.
	if files.Load() != 5 || polls.Load() != 2 {
		t.Errorf("%d file requests and %d manifests fetched again, want 5 and 2", files.Load(), polls.Load())
	}
}
