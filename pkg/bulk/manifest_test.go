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

func TestTotals(t *testing.T) {
	var tot Totals
	pages := []Page{
		{Number: 1, TransactionTime: "2024-01-01T00:00:00Z", Expires: "Mon, 01 Jan 2024 02:00:00 GMT",
			Raw: []byte(`{"output":[{"type":"P","url":"a"},{"type":"P","url":"b"}],"error":[{"url":"e"}]}`)},
		{Number: 2, TransactionTime: "2024-01-01T00:00:09Z", Expires: "soon",
			Raw: []byte(`{"output":[],"deleted":[{"url":"d"}],"outcome":[{"url":"o"}]}`)},
		{Number: 3, Expires: "Mon, 01 Jan 2024 01:00:00 GMT", Raw: []byte(`{"output":[{"type":"P","url":"c"}]}`)},
	}
	for _, p := range pages {
		tot.Add(p)
	}
	want := Totals{Output: 3, Deleted: 1, Error: 2, Pages: 3, TransactionTime: "2024-01-01T00:00:00Z",
		Expires: "Mon, 01 Jan 2024 01:00:00 GMT"}
	if tot != want {
		t.Errorf("Totals after 3 pages = %+v, want %+v", tot, want)
	}
}
