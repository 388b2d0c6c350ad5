package main

import (
	"strings"
	"testing"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
	"github.com/bulkpipe/bulkpipe/pkg/tool"
)

// TestSinceRefused: a server that refuses _since gets its answer printed with the choices,
// and no export starts in its place (no second kickoff without _since).
func TestSinceRefused(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Override: map[string][]byte{"/$export": []byte("HTTP/1.1 400 Bad Request\r\n" +
		"Content-Type: application/fhir+json\r\n\r\n" +
		`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-supported","diagnostics":"The _since parameter is not supported"}]}`)}})
	code, stdout, stderr := runKickoff(t, tool.Deps{}, "", srv.URL(), "--since", "2024-01-01", "--type", "Patient")
	if code != 1 || stdout != "" {
		t.Fatalf("bulk-kickoff = %d, stdout %q; want 1 and nothing", code, stdout)
	}
	for _, want := range []string{
		": 400 Bad Request: The _since parameter is not supported (sent _since=2024-01-01T00:00:00Z; the server refused _since, no incremental export is possible with it: either export everything again without --since",
		"--type-filter 'TYPE?_lastUpdated=gt2024-01-01T00:00:00Z' instead of --since",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr = %q, want %q in it", stderr, want)
		}
	}
	kickoffs := 0
	for _, r := range srv.Requests() {
		if strings.HasSuffix(strings.Split(r.URL, "?")[0], "$export") {
			kickoffs++
		}
	}
	if kickoffs != 1 {
		t.Errorf("kickoffs sent = %d, want 1 (no export without _since in its place)", kickoffs)
	}
}
