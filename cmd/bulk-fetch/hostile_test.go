package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
	"github.com/bulkpipe/bulkpipe/pkg/tool"
)

// TestFetchHostileServerText: terminal control sequences in the OperationOutcomes of error/
// and in a failed download's reason phrase and body reach stderr escaped.
func TestFetchHostileServerText(t *testing.T) {
	outcome := fhirtest.HostileOutcome("exception")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/files/error.ndjson":
			w.Header().Set("Content-Type", "application/fhir+ndjson")
			fmt.Fprintln(w, outcome)
		case "/files/patient.ndjson":
			if err := fhirtest.WriteRaw(w, "403 No\x1b[2JWay", "application/fhir+json", outcome); err != nil {
				t.Error(err)
			}
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	manifest := func(output, errs string) string {
		return fmt.Sprintf(`{"transactionTime":"2024-01-01T00:00:00Z","request":"%s/fhir/$export","requiresAccessToken":false,`+
			`"output":[%s],"error":[%s]}`+"\n", srv.URL, output, errs)
	}
	tests := []struct {
		name, manifest, want string
	}{
		{"error file", manifest("", `{"type":"OperationOutcome","url":"`+srv.URL+`/files/error.ndjson"}`), `error: \x1b]0;pwned\a\x1b[2J`},
		{"failed download", manifest(`{"type":"Patient","url":"`+srv.URL+`/files/patient.ndjson"}`, ""), `403 No\x1b[2JWay: \x1b]0;pwned\a\x1b[2J`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			dir := filepath.Join(t.TempDir(), "out")
			code := tool.Run(t.Context(), newApp(), []string{"bulk-fetch", "--dir", dir, "--fhir-url", srv.URL + "/fhir", "--retries", "1"},
				strings.NewReader(tt.manifest), &out, &errb)
			stderr := errb.String()
			if code != 1 {
				t.Errorf("exit %d, want 1 (stderr %q)", code, stderr)
			}
			if strings.ContainsAny(stderr, "\x1b\x07") {
				t.Errorf("stderr has control characters: %q", stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tt.want)
			}
		})
	}
}

// TestFetchNoTokenHint: a 401 is recognized by its status code, whatever reason phrase the server
// puts after it, and the error says the files need a token when none was given.
func TestFetchNoTokenHint(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := fhirtest.WriteRaw(w, "401 Access Denied", "", ""); err != nil {
			t.Error(err)
		}
	}))
	defer srv.Close()
	manifest := fmt.Sprintf(`{"transactionTime":"2024-01-01T00:00:00Z","request":"%s/fhir/$export","requiresAccessToken":true,`+
		`"output":[{"type":"Patient","url":"%s/files/patient.ndjson"}]}`+"\n", srv.URL, srv.URL)
	var out, errb bytes.Buffer
	dir := filepath.Join(t.TempDir(), "out")
	t.Setenv("BULK_BEARER_TOKEN", "")
	code := tool.Run(t.Context(), newApp(), []string{"bulk-fetch", "--dir", dir, "--fhir-url", srv.URL + "/fhir", "--retries", "1", "--no-delete"},
		strings.NewReader(manifest), &out, &errb)
	if want := "401 Access Denied (links may have expired; without a status URL bulk-fetch cannot fetch new ones: give --status-url); run again to resume " +
		"(the files need a token: give --bearer-token, or --smart-client-id and --smart-key)"; code != 1 || !strings.Contains(errb.String(), want) {
		t.Errorf("bulk-fetch with a 401 and no token = exit %d, stderr %q, want exit 1 and %q", code, errb.String(), want)
	}
}
