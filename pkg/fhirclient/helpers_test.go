package fhirclient

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// epoch is the fake clock's start: tests compute HTTP-dates and epoch Retry-Afters from it.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// fakeClock records sleeps instead of sleeping, and moves its time forward by each.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{now: epoch} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sleeps = append(f.sleeps, d)
	f.now = f.now.Add(d)
	return nil
}

func (f *fakeClock) Sleeps() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.sleeps...)
}

// newTestClient builds a Client on base with a fake clock and jitter fixed at 0 (so backoff waits
// are exactly 0.5 s, 1 s, 2 s, …). opts fields left zero get those test defaults.
func newTestClient(t *testing.T, base string, opts Options) (*Client, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	opts.FHIRBase = base
	if opts.Now == nil {
		opts.Now = clk.Now
	}
	if opts.Sleep == nil {
		opts.Sleep = clk.Sleep
	}
	if opts.Rand == nil {
		opts.Rand = func() float64 { return 0 }
	}
	c, err := New(opts)
	if err != nil {
		t.Fatalf("New(%q) = %v", base, err)
	}
	return c, clk
}

// recorded is one request as a test server saw it.
type recorded struct {
	Method, Path, Query, Body string
	Header                    http.Header
}

// recorder is a scripted test server: request n is answered by steps[min(n, len-1)].
type recorder struct {
	mu    sync.Mutex
	reqs  []recorded
	steps []http.HandlerFunc
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	n := len(rec.reqs)
	rec.reqs = append(rec.reqs, recorded{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
		Body: string(body), Header: r.Header.Clone()})
	step := rec.steps[min(n, len(rec.steps)-1)]
	rec.mu.Unlock()
	step(w, r)
}

func (rec *recorder) Requests() []recorded {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]recorded(nil), rec.reqs...)
}

// serve starts a scripted server; its URL has the non-empty base path /fhir, where
// relative-URL bugs show.
func serve(t *testing.T, steps ...http.HandlerFunc) (*httptest.Server, *recorder) {
	t.Helper()
	rec := &recorder{steps: steps}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	return srv, rec
}

// status answers with code, an optional Retry-After, and no body.
func status(code int, retryAfter string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.WriteHeader(code)
	}
}

func respond(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body)
	}
}

// reset reads the whole request, then cuts the connection with a TCP RST: the request was
// certainly sent.
func reset(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

// closedURL is an http URL on which nothing listens: dialing it is refused.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr + "/fhir"
}

// fakeCreds counts calls; token generation n is "Bearer tok-n".
type fakeCreds struct {
	mu       sync.Mutex
	gen      int
	calls    int
	reauths  int
	static   bool
	prefix   string
	authErr  error
	reauthEr error
}

func (f *fakeCreds) Authorization(ctx context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.authErr != nil {
		return "", f.authErr
	}
	p := f.prefix
	if p == "" {
		p = "tok"
	}
	return "Bearer " + p + "-" + string(rune('0'+f.gen)), nil
}

func (f *fakeCreds) Reauthorize(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reauths++
	if f.static {
		return ErrCannotReauthorize
	}
	if f.reauthEr != nil {
		return f.reauthEr
	}
	f.gen++
	return nil
}

func (f *fakeCreds) counts() (calls, reauths int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, f.reauths
}
