package bulk

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
)

func outcomeBody(text string) string {
	return `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing","diagnostics":"` + text + `"}]}`
}

// TestKickoffRefused: a refusal because of the client's earlier exports ends the kickoff at the
// first answer, typed, even as a 429 within a long Wait; other 429s are still retried.
func TestKickoffRefused(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		body     string
		wantKind string // "" = not a refusal
		wantSent int32
	}{
		{"epic window 429", 429, outcomeBody(fhirtest.EpicTooRecently), RefusedWindow, 1},
		{"epic window 400", 400, outcomeBody(fhirtest.EpicTooRecently), RefusedWindow, 1},
		{"epic window details.text", 403, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing","details":{"text":"Request not allowed: The Client requested this Group too recently."}}]}`, RefusedWindow, 1},
		{"epic in progress", 429, outcomeBody(fhirtest.EpicInProgress), RefusedBusy, 1},
		{"one in progress", 429, outcomeBody("Only one bulk export request may be in progress at a time."), RefusedBusy, 1},
		{"plain 429 retried", 429, outcomeBody("slow down"), "", 3},
		{"400 in progress is no refusal", 400, outcomeBody("a parameter is in progress"), "", 1},
		{"500 too recently is no refusal", 500, outcomeBody("too recently"), "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sent atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				sent.Add(1)
				w.Header().Set("Content-Type", "application/fhir+json")
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			c := newClient(t, srv.URL)
			// A refusal is not retried within an hour's Wait; the others run on the attempt
			// count (a busy 429 with a Wait would be retried for the whole hour).
			wait := time.Duration(0)
			if tt.wantKind != "" {
				wait = time.Hour
			}
			_, err := Kickoff(t.Context(), c, KickoffRequest{URL: srv.URL + "/Group/g", Wait: wait})
			r, isRefusal := errors.AsType[*RefusedError](err)
			switch {
			case err == nil:
				t.Fatal("Kickoff = nil error")
			case tt.wantKind == "" && isRefusal:
				t.Errorf("Kickoff = refusal %q, want another error: %v", r.Kind, err)
			case tt.wantKind != "" && (!isRefusal || r.Kind != tt.wantKind):
				t.Errorf("Kickoff = %v (%T), want a %s refusal", err, err, tt.wantKind)
			}
			if n := sent.Load(); n != tt.wantSent {
				t.Errorf("Kickoff sent %d requests, want %d", n, tt.wantSent)
			}
			if _, ok := errors.AsType[*fhirclient.StatusError](err); !ok {
				t.Errorf("Kickoff = %v, want the server's answer inside", err)
			}
		})
	}
}

// TestKickoffRefusedByEpicProfile: the test server's Epic profile gives the refusals this
// package recognises.
func TestKickoffRefusedByEpicProfile(t *testing.T) {
	srv := fhirtest.Start(t, fhirtest.Options{Patients: 1, Vendor: fhirtest.VendorEpic, RequestWindow: time.Hour})
	c := newClient(t, srv.URL())
	req := KickoffRequest{URL: srv.URL() + "/Group/all", Wait: time.Hour}
	if _, err := Kickoff(t.Context(), c, req); err != nil {
		t.Fatal(err)
	}
	_, err := Kickoff(t.Context(), c, req)
	if r, ok := errors.AsType[*RefusedError](err); !ok || r.Kind != RefusedWindow {
		t.Errorf("second Kickoff = %v, want a window refusal", err)
	}
}

func FuzzRefusal(f *testing.F) {
	for _, s := range []string{fhirtest.EpicTooRecently, fhirtest.EpicInProgress, "in progress", ""} {
		f.Add(429, s)
	}
	f.Fuzz(func(t *testing.T, status int, text string) {
		o := &fhirclient.OperationOutcome{Issues: []fhirclient.Issue{{Severity: "error", Diagnostics: text}}}
		r := refusal(&fhirclient.StatusError{StatusCode: status, Outcome: o})
		if r != nil && (status < 400 || status >= 500 || (r.Kind != RefusedWindow && r.Kind != RefusedBusy)) {
			t.Errorf("refusal(%d, %q) = %q, want none outside 4xx and a known kind", status, text, r.Kind)
		}
	})
}
