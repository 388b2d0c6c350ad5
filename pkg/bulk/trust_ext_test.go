package bulk_test

import (
	"testing"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
)

// The kickoffs bulk-fetch and ndjson-merge synthesize (exportdir.Kickoff) carry the members
// KickoffBase reads: a synthesized exportUrl is never a base, the vouched fhirBase is.
func TestKickoffBaseOfSynthesized(t *testing.T) {
	k := exportdir.NewKickoff("https://evil.example/fhir/$export", nil)
	k.Synthesized = "bulk-fetch: from the export context and the manifest"
	ev, err := exportdir.NewEvent("x", exportdir.EventKickoff, k, time.Unix(0, 0))
	if got := bulk.KickoffBase(ev.EventDetail); err != nil || got != "" {
		t.Errorf("KickoffBase(%s) = %q, %v, want \"\"", ev.EventDetail, got, err)
	}
	k.Context = &exportdir.KickoffContext{FHIRBase: "https://ehr.example/fhir"}
	ev, err = exportdir.NewEvent("x", exportdir.EventKickoff, k, time.Unix(0, 0))
	if got := bulk.KickoffBase(ev.EventDetail); err != nil || got != "https://ehr.example/fhir" {
		t.Errorf("KickoffBase(%s) = %q, %v, want the vouched base", ev.EventDetail, got, err)
	}
}
