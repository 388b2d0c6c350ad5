package fhirclient

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestLoad: one backoff and one attempt count over request and read. A body cut short is retried
// like a 503, and MaxAttempts bounds the requests whatever the mix of failures.
func TestLoad(t *testing.T) {
	const whole = "0123456789abcdef"
	errTooBig := errors.New("too big")
	tests := []struct {
		name      string
		answers   []string // per request: "503", "cut", "ok", "404"; the last repeats
		consume   func([]byte, error) error
		requests  int32
		sleeps    []time.Duration
		wantBody  bool
		wantCheck func(error) bool
	}{
		{"cut, then whole", []string{"cut", "ok"}, nil, 2, []time.Duration{500 * time.Millisecond}, true, nil},
		{"503 and cut alternate", []string{"503", "cut"}, nil, 3, []time.Duration{500 * time.Millisecond, time.Second}, false,
			func(err error) bool {
				g, ok := errors.AsType[*GiveUpError](err)
				return ok && g.Attempts() == 3 && errors.Is(err, io.ErrUnexpectedEOF)
			}},
		{"permanent consumer error", []string{"ok"}, func(b []byte, err error) error { return Permanent(errTooBig) }, 1, nil, false,
			func(err error) bool { return err == errTooBig }},
		{"404", []string{"404"}, nil, 1, nil, false, func(err error) bool {
			se, ok := errors.AsType[*StatusError](err)
			return ok && se.StatusCode == 404
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				i := int(n.Add(1)) - 1
				switch tt.answers[min(i, len(tt.answers)-1)] {
				case "503":
					w.WriteHeader(http.StatusServiceUnavailable)
				case "404":
					w.WriteHeader(http.StatusNotFound)
				case "cut":
					w.Header().Set("Content-Length", strconv.Itoa(len(whole)))
					io.WriteString(w, whole[:5])
					w.(http.Flusher).Flush() // the headers and part of the body are out
					panic(http.ErrAbortHandler)
				default:
					io.WriteString(w, whole)
				}
			}))
			t.Cleanup(srv.Close)
			c, clk := newTestClient(t, srv.URL+"/fhir", Options{MaxAttempts: 3})
			var got []byte
			err := c.Load(t.Context(), &Request{URL: "x", Route: RouteFile}, func(resp *http.Response) error {
				b, err := io.ReadAll(resp.Body)
				if tt.consume != nil {
					return tt.consume(b, err)
				}
				got = b
				return err
			})
			if n.Load() != tt.requests {
				t.Errorf("Load sent %d requests, want %d", n.Load(), tt.requests)
			}
			if diff := cmp.Diff(tt.sleeps, clk.Sleeps()); diff != "" {
				t.Errorf("sleeps (-want +got):\n%s", diff)
			}
			switch {
			case tt.wantBody && (err != nil || string(got) != whole):
				t.Errorf("Load = %q, %v; want %q", got, err, whole)
			case !tt.wantBody && (err == nil || !tt.wantCheck(err)):
				t.Errorf("Load = %v (%T), not the error wanted", err, err)
			}
		})
	}
}
