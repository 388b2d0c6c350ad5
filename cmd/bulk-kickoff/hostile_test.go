package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
	"github.com/bulkpipe/bulkpipe/pkg/tool"
)

// TestKickoffHostileServerText: terminal control sequences in a reason phrase and in an
// OperationOutcome reach stderr escaped.
func TestKickoffHostileServerText(t *testing.T) {
	outcome := fhirtest.HostileOutcome("invalid")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/metadata") {
			http.NotFound(w, r)
			return
		}
		if err := fhirtest.WriteRaw(w, "400 Bad\x1b[2JRequest", "application/fhir+json", outcome); err != nil {
			t.Error(err)
		}
	}))
	defer srv.Close()
	code, stdout, stderr := runKickoff(t, tool.Deps{}, "", srv.URL+"/fhir/Group/g", "--type", "Patient")
	if code != 1 || stdout != "" {
		t.Errorf("exit %d, stdout %q, want 1 and nothing", code, stdout)
	}
	if strings.ContainsAny(stderr, "\x1b\x07") {
		t.Errorf("stderr has control characters: %q", stderr)
	}
	if want := `400 Bad\x1b[2JRequest: \x1b]0;pwned\a\x1b[2J`; !strings.Contains(stderr, want) {
		t.Errorf("stderr = %q, want it to contain %q", stderr, want)
	}
}

// TestKickoffWrongPort: a server that never answers (a wrong port) fails at once, in one line,
// instead of minutes of retries of /metadata and then of $export.
func TestKickoffWrongPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	clk := fhirtest.NewClock()
	code, stdout, stderr := runKickoff(t, clockDeps(clk), "", "http://"+addr+"/fhir/Group/all", "--type", "Patient")
	want := "bulk-kickoff: cannot connect to " + addr + ": connection refused — is the URL right?\n"
	if code != 1 || stdout != "" || stderr != want {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 and stderr %q", code, stdout, stderr, want)
	}
	if n := len(clk.Slept()); n != 0 {
		t.Errorf("%d waits before failing, want none", n)
	}
}
