package fhirclient

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
)

// TestFailFastNeverAnswered: with FailFast, a refused connection before any answer is one
// attempt and an *UnreachableError; without it, the usual retries.
func TestFailFastNeverAnswered(t *testing.T) {
	base := closedURL(t)
	addr := strings.TrimSuffix(strings.TrimPrefix(base, "http://"), "/fhir")
	for _, route := range []Route{RouteMetadata, RouteKickoff} {
		c, clk := newTestClient(t, base, Options{MaxAttempts: 8, FailFast: true})
		_, err := c.Do(t.Context(), &Request{URL: "metadata", Route: route})
		ue, ok := errors.AsType[*UnreachableError](err)
		if !ok || !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("%s: Do to a closed port = %v, want an *UnreachableError wrapping ECONNREFUSED", route, err)
		}
		if want := "cannot connect to " + addr + ": connection refused — is the URL right?"; ue.Error() != want {
			t.Errorf("%s: error = %q, want %q", route, ue.Error(), want)
		}
		if n := len(clk.Sleeps()); n != 0 {
			t.Errorf("%s: %d retries, want none", route, n)
		}
	}
	c, clk := newTestClient(t, base, Options{MaxAttempts: 3})
	if _, err := c.Do(t.Context(), &Request{URL: "metadata", Route: RouteMetadata}); err == nil {
		t.Fatal("Do to a closed port succeeded")
	} else if _, ok := errors.AsType[*UnreachableError](err); ok {
		t.Errorf("without FailFast: %v, want the retries' error", err)
	}
	if n := len(clk.Sleeps()); n != 2 {
		t.Errorf("without FailFast: %d retries, want 2", n)
	}
}

// TestFailFastAfterAnswer: once the server has answered, a refused connection is an outage, and
// is retried even with FailFast.
func TestFailFastAfterAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound) // any answer counts
	}))
	c, clk := newTestClient(t, srv.URL+"/fhir", Options{MaxAttempts: 3, FailFast: true})
	if _, err := c.Do(t.Context(), &Request{URL: "metadata", Route: RouteMetadata}); err == nil {
		t.Fatal("Do = nil error, want the 404")
	}
	srv.Close()
	_, err := c.Do(t.Context(), &Request{URL: "metadata", Route: RouteMetadata})
	if _, ok := errors.AsType[*UnreachableError](err); ok || err == nil {
		t.Errorf("Do after the server went away = %v, want the retries' error", err)
	}
	if n := len(clk.Sleeps()); n != 2 {
		t.Errorf("%d retries after the server answered once, want 2", n)
	}
}

func TestUnreachableDNS(t *testing.T) {
	err := &UnreachableError{Addr: "nope.invalid:443", Err: &net.DNSError{Err: "no such host", Name: "nope.invalid", IsNotFound: true}}
	if want := "cannot connect to nope.invalid:443: no such host — is the URL right?"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}
