package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
)

// hostile is what a malicious or broken server could put in its text: retitle the terminal
// window, ring the bell, clear the screen.
const hostile = "\x1b]0;pwned\x07\x1b[2J"

// TestPollHostileServerText: terminal control sequences in X-Progress, a reason phrase and an
// OperationOutcome reach stderr escaped.
func TestPollHostileServerText(t *testing.T) {
	diag, _ := json.Marshal(hostile)
	outcome := `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":` + string(diag) + `}]}`
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.Header().Set("X-Progress", "50% "+hostile+"\u202edone")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusAccepted)
			return
		}
		conn, bw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		fmt.Fprintf(bw, "HTTP/1.1 400 Bad\x1b[2JRequest\r\nContent-Type: application/fhir+json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
			len(outcome), outcome)
		bw.Flush()
	}))
	defer srv.Close()
	code, stdout, stderr := runPoll(t, clockDeps(fhirtest.NewClock()), "", srv.URL+"/fhir/status/1")
	if code != 1 || stdout != "" {
		t.Errorf("exit %d, stdout %q, want 1 and nothing", code, stdout)
	}
	if strings.ContainsAny(stderr, "\x1b\x07\u202e") {
		t.Errorf("stderr has control characters: %q", stderr)
	}
	for _, want := range []string{`50% \x1b]0;pwned\a\x1b[2J\u202edone`, `400 Bad\x1b[2JRequest: \x1b]0;pwned\a\x1b[2J`} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr = %q, want it to contain %q", stderr, want)
		}
	}
}
