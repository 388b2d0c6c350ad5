package fetch

import (
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
)

// hostileCap is where a hostile test server gives up on its own, far above what a download that
// stops in time receives: reaching it means the client did not stop.
const hostileCap = 64 << 20

// hostileServer streams line until the client hangs up or hostileCap decoded bytes are out,
// gzipped on the wire (Content-Encoding: gzip) when gz is set: a gzip bomb when line is
// repetitive, an endless body either way. It counts every request it answers.
func hostileServer(t *testing.T, line string, gz bool, requests *atomic.Int64) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		var out io.Writer = w
		if gz {
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			defer zw.Close()
			out = zw
		}
		block := []byte(strings.Repeat(line, 64<<10/len(line)))
		for sent := 0; sent < hostileCap; sent += len(block) {
			if _, err := out.Write(block); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestFetchHostileBodies: a body that holds more than the manifest's count promised (an endless
// body, a gzip bomb) is stopped at the first line too many, its .part deleted; a flood of blank
// lines, which no count bounds, is stopped too. What reaches the disk stays bounded.
func TestFetchHostileBodies(t *testing.T) {
	const patient = `{"resourceType":"Patient","id":"p"}` + "\n"
	tests := []struct {
		name, line string
		gz         bool
		err        string
	}{
		{"endless body", patient, false, "more than 3 resources (the manifest's count)"},
		{"gzip bomb of resources", patient, true, "more than 3 resources (the manifest's count)"},
		{"gzip bomb of blank lines", "\n", true, "bytes of blank lines"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var requests atomic.Int64
			srv := hostileServer(t, tt.line, tt.gz, &requests)
			c := newClient(t, srv.URL, fhirclient.Options{})
			it := items(srv.URL, "Patient", "/f/p")
			it[0]["count"] = 3
			dir := t.TempDir()
			var written atomic.Int64
			_, _, err := fetchInto(t, dir, c, manifestLine(t, "", map[string]any{"output": it}), func(o *Options) {
				o.On.Progress = func(_ string, n, _ int64) { written.Add(n) }
			})
			if !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), ".part is deleted") {
				t.Fatalf("err = %v, want %q and the .part deleted", err, tt.err)
			}
			t.Logf("%s: %d bytes reached the .part before the download stopped", tt.name, written.Load())
			// One chunk past the bound at most: the bound is checked as each chunk is written.
			if limit := int64(maxBlank + 2*chunk); written.Load() > limit {
				t.Errorf("%d bytes written to the .part, want at most %d", written.Load(), limit)
			}
			for _, p := range []string{filepath.Join(dir, "Patient.000.ndjson.part"), filepath.Join(dir, "Patient.000.ndjson"), sidecarPath(dir, "Patient.000.ndjson")} {
				if _, err := os.Stat(p); err == nil {
					t.Errorf("%s left behind", p)
				}
			}
			if n := requests.Load(); n != 1 {
				t.Errorf("%d requests, want 1 (a file that fails verification is not retried)", n)
			}
		})
	}
}

// TestFetchEndlessRetries: attempts are bounded whatever the server does. A server that cuts
// every answer short and sends no ETag or Last-Modified cannot be resumed, so each attempt starts
// the file over: reaching the same point again is not progress. A server that answers 416 to every
// request makes each attempt start over too. Both give up after the client's attempts.
func TestFetchEndlessRetries(t *testing.T) {
	body := strings.Repeat(`{"resourceType":"Patient","id":"x"}`+"\n", 5000)
	const forgive = 50 // after this many requests the server relents, so a client that loops ends
	tests := []struct {
		name   string
		answer func(w http.ResponseWriter)
	}{
		{"cut without validators", func(w http.ResponseWriter) {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			io.WriteString(w, body[:len(body)/2])
			panic(http.ErrAbortHandler)
		}},
		{"416 to everything", func(w http.ResponseWriter) {
			w.Header().Set("Content-Range", "bytes */1")
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var requests atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if requests.Add(1) > forgive {
					io.WriteString(w, body)
					return
				}
				tt.answer(w)
			}))
			t.Cleanup(srv.Close)
			c := newClient(t, srv.URL, fhirclient.Options{MaxAttempts: 3})
			_, _, err := fetchInto(t, t.TempDir(), c, manifestLine(t, "", map[string]any{"output": items(srv.URL, "Patient", "/f/p")}), nil)
			if err == nil || !strings.Contains(err.Error(), "giving up after 3 attempts") {
				t.Errorf("err = %v, want giving up after 3 attempts", err)
			}
			if n := requests.Load(); n != 3 {
				t.Errorf("%d requests, want 3 (--retries bounds the attempts whatever the server does)", n)
			}
		})
	}
}

// TestFetchTransientByType: whether a failed request is worth repeating is decided by the
// error's type, never its text. A URL that happens to hold words of certificate or DNS errors
// is retried after a reset like any other; a refused redirect is not retried at all.
func TestFetchTransientByType(t *testing.T) {
	tests := []struct {
		name, path string
		requests   int64
		ok         bool
	}{
		{"reset on a URL naming a certificate", "/f/x509:certificate-no such host.ndjson", 2, true},
		{"redirect to ftp", "/f/ftp", 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var requests atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := requests.Add(1)
				switch {
				case r.URL.Path == "/f/ftp" && n < 10:
					http.Redirect(w, r, "ftp://files.example/p.ndjson", http.StatusFound)
				case n == 1:
					panic(http.ErrAbortHandler) // reset before any header
				default:
					io.WriteString(w, patients)
				}
			}))
			t.Cleanup(srv.Close)
			c := newClient(t, srv.URL, fhirclient.Options{MaxAttempts: 3})
			_, _, err := fetchInto(t, t.TempDir(), c, manifestLine(t, "", map[string]any{"output": items(srv.URL, "Patient", tt.path)}), nil)
			if (err == nil) != tt.ok || requests.Load() != tt.requests {
				t.Errorf("fetch %s = %v after %d requests, want ok=%v after %d", tt.path, err, requests.Load(), tt.ok, tt.requests)
			}
		})
	}
}
