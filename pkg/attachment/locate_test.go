package attachment

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bulkpipe/bulkpipe/pkg/fhirjson"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest/synth"
)

var locateSeeds = []string{
	`{"resourceType":"DocumentReference","content":[{"attachment":{"contentType":"text/plain","url":"Binary/1","data":null}},{"attachment":{"data":"aGk=","url":"a\/b\u00e9"}},{"format":{}},3,{"attachment":[]}]}`,
	`{"id":"x","resourceType":"DiagnosticReport","presentedForm":[{"url":"a"},"s",{},{"data":1,"data":null,"url":"first","url":"second"}]}`,
	`{"resourceType":"D\u006fcumentReference","c\u006fntent":[{"\u0061ttachment":{"contentType":"text/html"}}],"content":[]}`,
	`{"resourceType":"DocumentReference","resourceType":"DiagnosticReport","content":{"attachment":{}}}`,
	`{"resourceType":"Patient","content":[{"attachment":{"url":"x"}}]}`,
	` { "resourceType" : "DiagnosticReport" , "presentedForm" : [ { "url" : "x" } , { } ] } `,
	`[]`, `"x"`, `{"resourceType":1}`,
}

func TestAttachmentsAgreesWithFhirjson(t *testing.T) {
	lines := locateSeeds
	ds := synth.Generate(synth.Options{Patients: 3})
	for _, typ := range DefaultResources {
		for _, l := range ds.Resources[typ] {
			lines = append(lines, string(l))
		}
	}
	for _, l := range lines {
		if diff := cmp.Diff(fhirjson.Attachments([]byte(l)), attachments([]byte(l))); diff != "" {
			t.Errorf("attachments(%.200s) differs from fhirjson.Attachments (-fhirjson +attachments):\n%s", l, diff)
		}
	}
}

// FuzzAttachments: on every valid JSON line the single-pass scan finds what fhirjson finds.
func FuzzAttachments(f *testing.F) {
	for _, s := range locateSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			return
		}
		if diff := cmp.Diff(fhirjson.Attachments(b), attachments(b)); diff != "" {
			t.Fatalf("attachments(%q) differs from fhirjson.Attachments (-fhirjson +attachments):\n%s", b, diff)
		}
	})
}

func BenchmarkAttachments(b *testing.B) {
	line, _ := bigLine(3 << 20)
	for _, bm := range []struct {
		name string
		f    func([]byte) []fhirjson.Attachment
	}{{"attachments", attachments}, {"fhirjson.Attachments", fhirjson.Attachments}} {
		b.Run(bm.name, func(b *testing.B) {
			b.SetBytes(int64(len(line)))
			for b.Loop() {
				bm.f(line)
			}
		})
	}
}
