package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
)

// TestPollHostileServerText: terminal control sequences in X-Progress, a reason phrase and an
// OperationOutcome reach stderr escaped.
func TestPollHostileServerText(t *testing.T) {
	outcome := fhirtest.HostileOutcome("invalid")
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.Header().Set("X-Progress", "50% "+fhirtest.HostileText+"\u202edone")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusAccepted)
			return
		}
		if err := fhirtest.WriteRaw(w, "400 Bad\x1b[2JRequest", "application/fhir+json", outcome); err != nil {
			t.Error(err)
		}
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
