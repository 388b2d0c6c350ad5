package bulk

import (
	"testing"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
)

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

// The kickoffs bulk-fetch and ndjson-merge synthesize (exportdir.Kickoff) carry the members
// KickoffBase reads: a synthesized exportUrl is never a base, the vouched fhirBase is.
func TestKickoffBaseOfSynthesized(t *testing.T) {
	k := exportdir.NewKickoff("https://evil.example/fhir/$export", nil)
	k.Synthesized = "bulk-fetch: from the export context and the manifest"
	ev, err := exportdir.NewEvent("x", exportdir.EventKickoff, k, time.Unix(0, 0))
	if got := KickoffBase(ev.EventDetail); err != nil || got != "" {
		t.Errorf("KickoffBase(%s) = %q, %v, want \"\"", ev.EventDetail, got, err)
	}
	k.Context = &exportdir.KickoffContext{FHIRBase: "https://ehr.example/fhir"}
	ev, err = exportdir.NewEvent("x", exportdir.EventKickoff, k, time.Unix(0, 0))
	if got := KickoffBase(ev.EventDetail); err != nil || got != "https://ehr.example/fhir" {
		t.Errorf("KickoffBase(%s) = %q, %v, want the vouched base", ev.EventDetail, got, err)
	}
}
