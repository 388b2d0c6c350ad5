package fhirclient

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestIdleTimeout is the one test of the stall timeout every tool uses (Request.IdleTimeout):
// an attempt whose headers do not come in time is a transport failure, retried per the table;
// a body that goes silent ends its Read with ErrStalled, over HTTP/1 and HTTP/2, instead of a
// wait as long as the transport's own (or, for a body, forever).
func TestIdleTimeout(t *testing.T) {
	var n atomic.Int32
	var silent atomic.Bool
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/fhir/body":
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			<-r.Context().Done() // silent until the client gives up
		case n.Add(1) == 1 || silent.Load():
			<-r.Context().Done()
		default:
			io.WriteString(w, `{"ok":true}`)
		}
	})
	h1 := httptest.NewServer(handler)
	t.Cleanup(h1.Close)
	h2 := httptest.NewUnstartedServer(handler)
	h2.EnableHTTP2 = true
	h2.StartTLS()
	t.Cleanup(h2.Close)

	c, _ := newTestClient(t, h1.URL+"/fhir", Options{})
	resp, err := c.Do(t.Context(), &Request{URL: "status/1", Route: RouteStatus, IdleTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("Do = %v, want the second attempt's answer", err)
	}
	b, err := io.ReadAll(resp.Body) // the body stays readable: the attempt's context lives until Close
	resp.Body.Close()
	if err != nil || string(b) != `{"ok":true}` || n.Load() != 2 {
		t.Errorf("body = %q, %v after %d requests, want the second attempt's answer", b, err, n.Load())
	}

	// Every attempt silent: the give-up error says why.
	silent.Store(true)
	c, _ = newTestClient(t, h1.URL+"/fhir", Options{MaxAttempts: 2})
	_, err = c.Do(t.Context(), &Request{URL: "status/1", Route: RouteStatus, IdleTimeout: 50 * time.Millisecond})
	if !errors.Is(err, ErrNoResponse) {
		t.Errorf("Do with a silent server = %v, want ErrNoResponse", err)
	}

	for name, srv := range map[string]*httptest.Server{"HTTP/1.1": h1, "HTTP/2.0": h2} {
		c, _ := newTestClient(t, srv.URL+"/fhir", Options{HTTPClient: srv.Client()})
		resp, err := c.Do(t.Context(), &Request{URL: "body", Route: RouteFile, IdleTimeout: 100 * time.Millisecond})
		if err != nil {
			t.Fatalf("%s: Do = %v", name, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Proto != name || string(b) != "partial" || !errors.Is(err, ErrStalled) || err.Error() != "no data for 100ms" {
			t.Errorf("%s: reading a body that stalls = %q, %v over %s; want what came, then no data for 100ms (ErrStalled)", name, b, err, resp.Proto)
		}
	}
}
