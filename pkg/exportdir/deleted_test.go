package exportdir

import (
	"testing"

	"github.com/bulkpipe/bulkpipe/pkg/fhirjson"
	"github.com/google/go-cmp/cmp"
)

func TestDeletions(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Deletion
	}{
		{
			"transaction of deletes",
			`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/1"}},{"request":{"method":"DELETE","url":"Observation/a-b.c"}}]}`,
			[]Deletion{{"Patient", "1"}, {"Observation", "a-b.c"}},
		},
		{
			"non-DELETE entries skipped",
			`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"PUT","url":"Patient/1"}},{"request":{"method":"delete","url":"Patient/2"}},{"fullUrl":"x"},{"request":{"method":"DELETE","url":"Patient/3"}}]}`,
			[]Deletion{{"Patient", "3"}},
		},
		{
			"only Type/id urls",
			`{"resourceType":"Bundle","type":"transaction","entry":[
				{"request":{"method":"DELETE","url":"https://x/fhir/Patient/1"}},
				{"request":{"method":"DELETE","url":"Patient"}},
				{"request":{"method":"DELETE","url":"Patient/"}},
				{"request":{"method":"DELETE","url":"/Patient/1"}},
				{"request":{"method":"DELETE","url":"Patient?identifier=x"}},
				{"request":{"method":"DELETE","url":"Patient/1/_history/2"}},
				{"request":{"method":"DELETE","url":"Patient/1?x"}},
				{"request":{"method":"DELETE","url":"patient/1"}},
				{"request":{"method":"DELETE","url":5}},
				{"request":{"method":"DELETE","url":"Encounter/e1"}}]}`,
			[]Deletion{{"Encounter", "e1"}},
		},
		{"batch ignored", `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"DELETE","url":"Patient/1"}}]}`, nil},
		{"collection ignored", `{"resourceType":"Bundle","type":"collection","entry":[{"request":{"method":"DELETE","url":"Patient/1"}}]}`, nil},
		{"no type", `{"resourceType":"Bundle","entry":[{"request":{"method":"DELETE","url":"Patient/1"}}]}`, nil},
		{"not a Bundle", `{"resourceType":"Parameters","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/1"}}]}`, nil},
		{"entry not an array", `{"resourceType":"Bundle","type":"transaction","entry":{"request":{"method":"DELETE","url":"Patient/1"}}}`, nil},
		{"garbage", `not json`, nil},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, Deletions([]byte(tt.in))); diff != "" {
			t.Errorf("%s: Deletions mismatch (-want +got):\n%s", tt.name, diff)
		}
	}
}

func FuzzDeletions(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/1"}}]}`))
	f.Add([]byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/1/x"}},{"request":null}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, d := range Deletions(b) {
			if !isTypeName(d.ResourceType) || !fhirjson.ServerID(d.ID) {
				t.Fatalf("Deletions(%q) = %+v: not a Type/id", b, d)
			}
		}
	})
}
