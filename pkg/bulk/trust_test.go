package bulk

import "testing"

func TestKickoffBase(t *testing.T) {
	tests := []struct{ detail, want string }{
		{`{"exportUrl":"https://ehr.example/fhir/Group/g/$export?_type=Patient"}`, "https://ehr.example/fhir"},
		{`{"exportUrl":"https://ehr.example/fhir/$export"}`, "https://ehr.example/fhir"},
		// Written by bulk-fetch from a manifest: the exportUrl may be the server's request member.
		{`{"exportUrl":"https://evil.example/fhir/$export","_synthesized":"bulk-fetch"}`, ""},
		{`{"exportUrl":"https://evil.example/fhir/$export","_synthesized":"bulk-fetch","_bulkpipe":{"fhirBase":"https://ehr.example/fhir"}}`, "https://ehr.example/fhir"},
		{`{"exportUrl":"status/1"}`, ""},
		{`{}`, ""},
		{`not json`, ""},
	}
	for _, tt := range tests {
		if got := KickoffBase([]byte(tt.detail)); got != tt.want {
			t.Errorf("KickoffBase(%s) = %q, want %q", tt.detail, got, tt.want)
		}
	}
}
