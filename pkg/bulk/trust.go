package bulk

import (
	"github.com/tidwall/gjson"
)

// SynthesizedMember marks a kickoff event that bulk-fetch wrote from an export context and a
// manifest rather than from a kickoff it sent: its exportUrl may be the manifest's request,
// which the server wrote, so it is information (the Group), never a FHIR base to trust.
const SynthesizedMember = "_synthesized"

// KickoffBase is the FHIR base a kickoff event's detail vouches for (DESIGN.md §2, token
// safety): the base of its exportUrl when a client wrote the event as it sent the kickoff
// (bulk-kickoff, bulk-data-client), and for an event bulk-fetch synthesized, only the fhirBase
// it recorded in its ContextMember, which came from the user or from such a kickoff. It returns
// "" when the event vouches for none.
func KickoffBase(detail []byte) string {
	d := gjson.ParseBytes(detail)
	if d.Get(SynthesizedMember).Exists() {
		return d.Get(ContextMember + ".fhirBase").String()
	}
	b, err := BaseURL(d.Get("exportUrl").String())
	if err != nil {
		return ""
	}
	return b
}
