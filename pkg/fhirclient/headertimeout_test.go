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

// TestHeaderTimeout: an attempt whose headers do not come within Request.HeaderTimeout is a
// transport failure, retried per the table, instead of a wait as long as the transport's own.
func TestHeaderTimeout(t *testing.T) {
	var n atomic.Int32
	var silent atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 || silent.Load() {
			<-r.Context().Done() // silent until the client gives up
			return
		}
		io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(srv.Close)
	c, _ := newTestClient(t, srv.URL+"/fhir", Options{})
	start := time.Now()
	resp, err := c.Do(t.Context(), &Request{URL: "status/1", Route: RouteStatus, HeaderTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("Do = %v, want the second attempt's answer", err)
	}
	b, err := io.ReadAll(resp.Body) // the body stays readable: the attempt's context lives until Close
	resp.Body.Close()
	if err != nil || string(b) != `{"ok":true}` {
		t.Errorf("body = %q, %v", b, err)
	}
	if n.Load() != 2 {
		t.Errorf("%d requests, want 2", n.Load())
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Do took %v: the header timeout did not cut the silent attempt", d)
	}

	// Every attempt silent: the give-up error says why.
	silent.Store(true)
	c, _ = newTestClient(t, srv.URL+"/fhir", Options{MaxAttempts: 2})
	_, err = c.Do(t.Context(), &Request{URL: "status/1", Route: RouteStatus, HeaderTimeout: 50 * time.Millisecond})
	if !errors.Is(err, ErrNoResponse) {
		t.Errorf("Do with a silent server = %v, want ErrNoResponse", err)
	}
}
