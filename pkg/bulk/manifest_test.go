package bulk

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckManifest(t *testing.T) {
	tests := []struct {
		body, want string // want: "" for a manifest, else a part of the error
	}{
		{`{"transactionTime":"2024-01-01T00:00:00Z","request":"x","requiresAccessToken":true,"output":[],"error":[]}`, ""},
		{`{"transactionTime":"2024-01-01T00:00:00Z","output":[{"type":"Patient","url":"u"}],"outcome":[]}`, ""},
		{`{"resourceType":"Group","id":"cohort-b"}`, "a FHIR Group resource"},
		{`{"resourceType":"CapabilityStatement","transactionTime":"x","output":[]}`, "a FHIR CapabilityStatement resource"},
		{`{"resourceType":"OperationOutcome","issue":[]}`, "a FHIR OperationOutcome resource"},
		{`{"output":[]}`, "no transactionTime"},
		{`{"transactionTime":"2024-01-01T00:00:00Z"}`, "no output array"},
		{`{"transactionTime":1,"output":{}}`, "no transactionTime and no output array"},
		{`{}`, "no transactionTime and no output array"},
		{`[]`, "not a JSON object"},
		{`{"transactionTime":`, "not a JSON object"},
	}
	for _, tt := range tests {
		err := CheckManifest([]byte(tt.body))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("CheckManifest(%s) = %v, want nil", tt.body, err)
		case tt.want != "" && (!errors.Is(err, ErrNotManifest) || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("CheckManifest(%s) = %v, want ErrNotManifest with %q", tt.body, err, tt.want)
		}
	}
}

func FuzzCheckManifest(f *testing.F) {
	f.Add([]byte(`{"transactionTime":"2024-01-01T00:00:00Z","output":[]}`))
	f.Add([]byte(`{"resourceType":"Group"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := CheckManifest(b); err != nil && !errors.Is(err, ErrNotManifest) {
			t.Errorf("CheckManifest(%q) = %v, not ErrNotManifest", b, err)
		}
	})
}
