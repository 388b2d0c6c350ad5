package attachment

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
)

// lyingServer answers every request with the head it is given (a Content-Length it does not
// keep, say) and body, then closes the connection: what net/http's server would never send.
func lyingServer(t *testing.T, head, body string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		buf.WriteString("HTTP/1.1 200 OK\r\n" + head + "Connection: close\r\n\r\n" + body)
		buf.Flush()
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestAnnouncedSizeNeverAllocated: a Content-Length is a claim, not a buffer size (issue 11.8: a
// terabyte announced with --max-size 0 crashed the tool with "out of memory"). Beyond the limit
// the attachment is skipped at once; below it, a body that stops short costs what was sent.
func TestAnnouncedSizeNeverAllocated(t *testing.T) {
	tests := []struct {
		name    string
		max     int64
		length  int64
		result  Result
		wantErr error
	}{
		{"a terabyte, no limit given", 0, 1 << 40, Skipped, ErrTooLarge},
		{"a terabyte, a limit", 64 << 20, 1 << 40, Skipped, ErrTooLarge},
		{"half the ceiling, 5 bytes sent", 0, HardMaxSize / 2, Failed, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		srv := lyingServer(t, "Content-Type: text/plain\r\nContent-Length: "+strconv.FormatInt(tt.length, 10)+"\r\n", "hello")
		in, ds := newInliner(t, newClient(t, srv.URL, nil), func(o *Options) { o.MaxSize = tt.max })
		input := docRef("big", `{"contentType":"text/plain","url":"Binary/big"}`)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		got, _ := inline(t, in, input)
		runtime.ReadMemStats(&after)
		if got != input+"\n" {
			t.Errorf("%s: line = %s, want it unchanged", tt.name, got)
		}
		if len(*ds) != 1 || (*ds)[0].Result != tt.result || !errors.Is((*ds)[0].Err, tt.wantErr) {
			t.Errorf("%s: downloads = %+v, want one %v with %v", tt.name, *ds, tt.result, tt.wantErr)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 32<<20 {
			t.Errorf("%s: allocated %d MiB for 5 bytes sent, want under 32 MiB", tt.name, n>>20)
		}
	}
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestContentEncoding: an answer the server compressed unasked is inlined as its content, with
// the content's size and hash (issue 11.9), and a gzip bomb stops at the size limit.
func TestContentEncoding(t *testing.T) {
	var deflated bytes.Buffer
	zw := zlib.NewWriter(&deflated)
	zw.Write([]byte("hello world"))
	zw.Close()
	bomb := bytes.Repeat(gzipped(t, make([]byte, 1<<20)), 64) // 64 MiB of zeros in 64 gzip members
	binary := `{"resourceType":"Binary","contentType":"text/plain","data":"aGVsbG8gd29ybGQ="}`
	answers := map[string]struct {
		ct, enc string
		body    []byte
	}{
		"/Binary/gzip":        {"text/plain", "gzip", gzipped(t, []byte("hello world"))},
		"/Binary/x-gzip":      {"text/plain; charset=utf-8", "x-gzip", gzipped(t, []byte("hello world"))},
		"/Binary/deflate":     {"text/plain", "deflate", deflated.Bytes()},
		"/Binary/json":        {"application/fhir+json", "gzip", gzipped(t, []byte(binary))},
		"/Binary/identity":    {"text/plain", "identity", []byte("hello world")},
		"/Binary/br":          {"text/plain", "br", []byte("\x0b\x05\x80hello world\x03")},
		"/Binary/bomb":        {"text/plain", "gzip", bomb},
		"/Binary/not-gzip":    {"text/plain", "gzip", []byte("hello world")},
		"/Binary/gzip-gzip":   {"text/plain", "gzip, gzip", gzipped(t, gzipped(t, []byte("hello world")))},
		"/Binary/cut-in-half": {"text/plain", "gzip", gzipped(t, []byte("hello world"))[:15]},
	}
	var mu sync.Mutex
	calls := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := answers[r.URL.Path]
		mu.Lock()
		calls[r.URL.Path]++
		mu.Unlock()
		w.Header().Set("Content-Type", a.ct)
		w.Header().Set("Content-Encoding", a.enc)
		w.Write(a.body)
	}))
	t.Cleanup(srv.Close)
	tests := []struct {
		path   string
		result Result
		calls  int
	}{
		{"/Binary/gzip", Inlined, 1},
		{"/Binary/x-gzip", Inlined, 1},
		{"/Binary/deflate", Inlined, 1},
		{"/Binary/json", Inlined, 1},
		{"/Binary/identity", Inlined, 1},
		{"/Binary/br", Failed, 1}, // not decodable: no retry would change that
		{"/Binary/gzip-gzip", Failed, 1},
		{"/Binary/bomb", Skipped, 1},
		{"/Binary/not-gzip", Failed, 3},
		{"/Binary/cut-in-half", Failed, 3},
	}
	for _, tt := range tests {
		in, ds := newInliner(t, newClient(t, srv.URL, nil), func(o *Options) { o.MaxSize = 1 << 20 })
		input := docRef("1", `{"contentType":"text/plain","url":"`+srv.URL+tt.path+`"}`)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		got, _ := inline(t, in, input)
		runtime.ReadMemStats(&after)
		if len(*ds) != 1 || (*ds)[0].Result != tt.result {
			t.Errorf("%s: downloads = %+v, want %v", tt.path, *ds, tt.result)
			continue
		}
		mu.Lock()
		n := calls[tt.path]
		mu.Unlock()
		if n != tt.calls {
			t.Errorf("%s: %d requests, want %d", tt.path, n, tt.calls)
		}
		want := input + "\n"
		if tt.result == Inlined {
			want = docRef("1", `{"contentType":"text/plain; charset=utf-8","url":"`+srv.URL+tt.path+`","data":"aGVsbG8gd29ybGQ=","size":11,"hash":"Kq5sNclPz7QV2+lfQIuc6R7oRu0="}`) + "\n"
		}
		if got != want {
			t.Errorf("%s: line =\n%s\nwant\n%s", tt.path, got, want)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 32<<20 {
			t.Errorf("%s: allocated %d MiB with a 1 MiB limit, want under 32 MiB", tt.path, n>>20)
		}
	}
}

// guardRecorder is a fakeFetcher that records Request.Guard.
type guardRecorder struct {
	fakeFetcher
	mu     sync.Mutex
	guards []bool
}

func (g *guardRecorder) Load(ctx context.Context, req *fhirclient.Request, consume func(*http.Response) error) error {
	g.mu.Lock()
	g.guards = append(g.guards, req.Guard)
	g.mu.Unlock()
	return g.fakeFetcher.Load(ctx, req, consume)
}

// TestLinkLocalRefused: an attachment url at a cloud metadata address, directly or by a
// redirect, fails without being fetched or retried (issue 11.14); AllowLinkLocal lifts the guard.
func TestLinkLocalRefused(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Patients: 1, Override: map[string][]byte{
		"/Binary/redirect": rawResponse("302 Found", http.Header{"Location": {"http://169.254.169.254/latest/meta-data/iam/security-credentials/"}}, ""),
	}})
	for _, u := range []string{"http://169.254.169.254/latest/meta-data/iam/security-credentials/", "http://metadata.google.internal/computeMetadata/v1/", "Binary/redirect"} {
		in, ds := newInliner(t, newClient(t, srv.URL(), nil), nil)
		input := docRef("1", `{"contentType":"text/plain","url":"`+u+`"}`)
		got, _ := inline(t, in, input)
		if got != input+"\n" {
			t.Errorf("%s: line = %s, want it unchanged", u, got)
		}
		if len(*ds) != 1 || (*ds)[0].Result != Failed {
			t.Fatalf("%s: downloads = %+v, want one failed", u, *ds)
		}
		if _, ok := errors.AsType[*fhirclient.ForbiddenAddressError]((*ds)[0].Err); !ok {
			t.Errorf("%s: error = %v, want a ForbiddenAddressError", u, (*ds)[0].Err)
		}
	}
	for _, allow := range []bool{false, true} {
		g := &guardRecorder{}
		in, _ := newInliner(t, g, func(o *Options) { o.AllowLinkLocal = allow })
		inline(t, in, docRef("1", `{"contentType":"text/plain","url":"Binary/1"}`))
		if len(g.guards) != 1 || g.guards[0] != !allow {
			t.Errorf("AllowLinkLocal %v: Request.Guard = %v, want %v", allow, g.guards, !allow)
		}
	}
}

// FuzzReadBody: whatever the body and its Content-Encoding, readBody never returns more than the
// limit, and an encoded body it accepts decodes to what the standard library decodes.
func FuzzReadBody(f *testing.F) {
	var deflated bytes.Buffer
	zw := zlib.NewWriter(&deflated)
	zw.Write([]byte("hello world"))
	zw.Close()
	var gz bytes.Buffer
	gw := gzip.NewWriter(&gz)
	gw.Write(make([]byte, 8<<10))
	gw.Close()
	f.Add(gz.Bytes(), "gzip", true)
	f.Add(deflated.Bytes(), "deflate", false)
	f.Add([]byte("hello world"), "", true)
	f.Add([]byte("hello world"), "identity", false)
	f.Add([]byte("\x1f\x8b\x08\x00"), "x-gzip", true)
	f.Add([]byte("x"), "br, gzip", false)
	const limit = 4 << 10
	in, err := New(Options{Policy: Policy{MaxSize: limit}, Fetcher: &fakeFetcher{}, StallTimeout: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, enc string, withLength bool) {
		resp := &http.Response{Header: http.Header{"Content-Type": {"text/plain"}}, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: -1}
		if enc != "" {
			resp.Header.Set("Content-Encoding", enc)
		}
		if withLength {
			resp.ContentLength = int64(len(body))
		}
		got, err := in.readBody(resp)
		if err != nil {
			return
		}
		if len(got) > limit {
			t.Fatalf("readBody gave %d bytes, over the %d limit", len(got), limit)
		}
		var want []byte
		switch e, _ := contentEncoding(resp.Header); e {
		case "gzip":
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatalf("readBody accepted gzip that gzip.NewReader refuses: %v", err)
			}
			want, err = io.ReadAll(zr)
			if err != nil {
				t.Fatalf("readBody accepted gzip that does not decode: %v", err)
			}
		case "deflate":
			zr, err := zlib.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatalf("readBody accepted deflate that zlib.NewReader refuses: %v", err)
			}
			want, _ = io.ReadAll(zr)
		default:
			want = body
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("readBody = %q, want %q", got, want)
		}
	})
}

// TestAttemptsBoundedOverRequestAndBody: the client's attempts bound the requests for one
// attachment whatever mix of failures the server sends. 503s and bodies cut short alternate
// here; a retry loop for the body wrapped around one for the request would multiply the two.
func TestAttemptsBoundedOverRequestAndBody(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%2 == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", "11")
		io.WriteString(w, "hello")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}))
	t.Cleanup(srv.Close)
	in, ds := newInliner(t, newClient(t, srv.URL+"/fhir", nil), nil)
	input := docRef("f", `{"contentType":"text/plain","url":"Binary/x"}`) + "\n"
	got, st := inline(t, in, input)
	if got != input || st.Failed != 1 || n.Load() != 3 {
		t.Errorf("inline with 503 and cut bodies alternating = %s (%+v) after %d requests, want the line unchanged, 1 failed, 3 requests (MaxAttempts)",
			got, st, n.Load())
	}
	if len(*ds) != 1 {
		t.Fatalf("downloads = %+v, want 1", *ds)
	}
	if se, ok := errors.AsType[*fhirclient.StatusError]((*ds)[0].Err); !ok || se.StatusCode != 503 {
		t.Errorf("download error = %v, want the last failure, the third request's 503", (*ds)[0].Err)
	}
}
