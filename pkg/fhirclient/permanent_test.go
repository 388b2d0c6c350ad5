package fhirclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestIsPermanent classifies the errors Do really returns, by type, whatever their text says.
func TestIsPermanent(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/fhir/ftp":
			http.Redirect(w, r, "ftp://files.example/x.ndjson", http.StatusFound)
		case "/fhir/gone":
			w.WriteHeader(http.StatusGone)
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler()) // its certificate is not trusted
	defer tlsSrv.Close()

	do := func(base, ref string) error {
		c, _ := newTestClient(t, base, Options{MaxAttempts: 2})
		_, err := c.Do(t.Context(), &Request{URL: ref, Route: RouteFile})
		if err == nil {
			t.Fatalf("Do(%s) = nil error", ref)
		}
		return err
	}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"410", do(plain.URL+"/fhir", "gone"), true},
		{"503 given up", do(plain.URL+"/fhir", "busy"), false},
		{"untrusted certificate", do(tlsSrv.URL+"/fhir", "certificate"), true},
		{"https to a plain http server", do("https"+strings.TrimPrefix(plain.URL, "http")+"/fhir", "x"), true},
		{"redirect to ftp", do(plain.URL+"/fhir", "ftp"), true},
		{"refused connection", do(closedURL(t), "x"), false},
		{"cancelled", context.Canceled, false},
		{"text that looks permanent", fmt.Errorf("GET https://x/certificate/x509: no such host here: %w", errors.New("reset")), false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		if got := IsPermanent(tt.err); got != tt.want {
			t.Errorf("IsPermanent(%s: %v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

// TestRedirectToOtherScheme: a redirect to a URL Go cannot fetch fails at once, not after every
// retry, since Go's own error for it is untyped.
func TestRedirectToOtherScheme(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		http.Redirect(w, r, "ftp://files.example/x.ndjson", http.StatusFound)
	}))
	defer srv.Close()
	c, _ := newTestClient(t, srv.URL, Options{MaxAttempts: 4})
	_, err := c.Do(t.Context(), &Request{URL: "x", Route: RouteFile})
	if err == nil || n.Load() != 1 || strings.Contains(err.Error(), "giving up") || !strings.Contains(err.Error(), "redirected to a ftp URL") {
		t.Errorf("Do(redirect to ftp) = %v after %d requests, want one request and a refused redirect", err, n.Load())
	}
}

// TestGiveUpErrorLast: callers that retry by themselves report the last failure, typed.
func TestGiveUpErrorLast(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	c, _ := newTestClient(t, srv.URL, Options{MaxAttempts: 2})
	_, err := c.Do(t.Context(), &Request{URL: "x", Route: RouteFile})
	g, ok := errors.AsType[*GiveUpError](err)
	if !ok || g.Attempts() != 2 {
		t.Fatalf("Do(503, 503) = %v, want a *GiveUpError after 2 attempts", err)
	}
	if se, ok := g.Last().(*StatusError); !ok || se.StatusCode != 503 {
		t.Errorf("Last() = %v, want the *StatusError itself", g.Last())
	}
	closed := closedURL(t)
	c, _ = newTestClient(t, closed, Options{MaxAttempts: 1})
	_, err = c.Do(t.Context(), &Request{URL: "x", Route: RouteFile})
	g, ok = errors.AsType[*GiveUpError](err)
	if !ok || !strings.HasPrefix(g.Last().Error(), "GET "+closed+"/x: dial tcp") || strings.Contains(g.Last().Error(), "giving up") {
		t.Errorf("Last() of a refused connection = %v, want GET URL: the dial error", err)
	}
}

// TestRequestMaxAttempts: a request's own attempt limit overrides the client's; 1 hands the first
// failure back, as a *GiveUpError whose Last is that failure.
func TestRequestMaxAttempts(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	c, clk := newTestClient(t, srv.URL, Options{MaxAttempts: 5})
	for _, tt := range []struct{ max, want int32 }{{1, 1}, {2, 2}, {0, 5}} {
		n.Store(0)
		_, err := c.Do(t.Context(), &Request{URL: "x", Route: RouteFile, MaxAttempts: int(tt.max)})
		g, ok := errors.AsType[*GiveUpError](err)
		if !ok || n.Load() != tt.want {
			t.Errorf("Do(MaxAttempts %d) = %v after %d requests, want giving up after %d", tt.max, err, n.Load(), tt.want)
			continue
		}
		if se, ok := g.Last().(*StatusError); !ok || se.StatusCode != 429 {
			t.Errorf("Do(MaxAttempts %d): Last() = %v, want the 429", tt.max, g.Last())
		}
	}
	if got := len(clk.Sleeps()); got != 0+1+4 {
		t.Errorf("%d sleeps, want 5 (none for MaxAttempts 1)", got)
	}
}
