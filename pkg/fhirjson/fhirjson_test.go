package fhirjson

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/tidwall/gjson"
)

func TestFields(t *testing.T) {
	tests := []struct {
		res                string
		typ, id, key, last string
		hasLast            bool
	}{
		{`{"resourceType":"Patient","id":"p1","meta":{"lastUpdated":"2024-01-02T03:04:05Z"}}`, "Patient", "p1", "Patient/p1", "2024-01-02T03:04:05Z", true},
		{`{"id":"o1","resourceType":"Observation"}`, "Observation", "o1", "Observation/o1", "", false},
		{`{"resourceType":"Patient"}`, "Patient", "", "", "", false},
		{`{"id":"x"}`, "", "x", "", "", false},
		{`{"resourceType":7,"id":true,"meta":{"lastUpdated":5}}`, "", "", "", "", false},
		{`{"contained":[{"resourceType":"Medication","id":"m"}],"resourceType":"MedicationRequest","id":"r"}`, "MedicationRequest", "r", "MedicationRequest/r", "", false},
		{`not json`, "", "", "", "", false},
		{``, "", "", "", "", false},
	}
	for _, tt := range tests {
		res := []byte(tt.res)
		if got := ResourceType(res); got != tt.typ {
			t.Errorf("ResourceType(%s) = %q, want %q", tt.res, got, tt.typ)
		}
		if got := ID(res); got != tt.id {
			t.Errorf("ID(%s) = %q, want %q", tt.res, got, tt.id)
		}
		if got := Key(res); got != tt.key {
			t.Errorf("Key(%s) = %q, want %q", tt.res, got, tt.key)
		}
		if got, ok := LastUpdated(res); got != tt.last || ok != tt.hasLast {
			t.Errorf("LastUpdated(%s) = %q, %v, want %q, %v", tt.res, got, ok, tt.last, tt.hasLast)
		}
	}
}

func TestAttachments(t *testing.T) {
	// want lists each attachment with Obj, the object text whose offset in res gives Start and End.
	type want struct {
		Attachment
		Obj string
	}
	tests := []struct {
		res  string
		want []want
	}{
		{
			`{"resourceType":"DocumentReference","content":[{"attachment":{"url":"Binary/1","contentType":"text/plain"}},{"format":{}},{"attachment":{"data":"aGk=","contentType":"text/html"}}]}`,
			[]want{
				{Attachment{Path: "content.0.attachment", URL: "Binary/1", ContentType: "text/plain"}, `{"url":"Binary/1","contentType":"text/plain"}`},
				{Attachment{Path: "content.2.attachment", ContentType: "text/html", HasData: true}, `{"data":"aGk=","contentType":"text/html"}`},
			},
		},
		{
			`{"resourceType":"DiagnosticReport","presentedForm":[ {"url":"https://x/y"} , 5, {"data":null}]}`,
			[]want{
				{Attachment{Path: "presentedForm.0", URL: "https://x/y"}, `{"url":"https://x/y"}`},
				{Attachment{Path: "presentedForm.2"}, `{"data":null}`},
			},
		},
		{
			"{\"resourceType\":\"DocumentReference\",\n \"content\": [\n {\"attachment\" :\t{ \"url\" : \"\\\"}\" } } ] }",
			[]want{{Attachment{Path: "content.0.attachment", URL: `"}`}, `{ "url" : "\"}" }`}},
		},
		// Only the attachments of §5: other resource types and shapes give none.
		{`{"resourceType":"Patient","photo":[{"url":"x"}]}`, nil},
		{`{"resourceType":"DocumentReference","content":{"attachment":{"url":"x"}}}`, nil},
		{`{"resourceType":"DocumentReference","content":[{"attachment":"x"}]}`, nil},
		{`{"resourceType":"DiagnosticReport","presentedForm":{"url":"x"}}`, nil},
	}
	for _, tt := range tests {
		res := []byte(tt.res)
		var wants []Attachment
		for _, w := range tt.want {
			a := w.Attachment
			a.Start = strings.Index(tt.res, w.Obj)
			a.End = a.Start + len(w.Obj)
			wants = append(wants, a)
		}
		got := Attachments(res)
		if diff := cmp.Diff(wants, got); diff != "" {
			t.Errorf("Attachments(%s) mismatch (-want +got):\n%s", tt.res, diff)
		}
		for _, a := range got {
			if raw := gjson.GetBytes(res, a.Path).Raw; raw != string(res[a.Start:a.End]) {
				t.Errorf("Attachments(%s): res[%d:%d] = %s, want %s at %s", tt.res, a.Start, a.End, res[a.Start:a.End], raw, a.Path)
			}
		}
	}
}

func TestBundle(t *testing.T) {
	res := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/1"}},{"fullUrl":"x"},{"request":{"method":5}},{"request":"x"}]}`)
	if got := BundleType(res); got != "transaction" {
		t.Errorf("BundleType = %q, want transaction", got)
	}
	want := []EntryRequest{{"DELETE", "Patient/1"}, {"", ""}}
	if diff := cmp.Diff(want, EntryRequests(res)); diff != "" {
		t.Errorf("EntryRequests mismatch (-want +got):\n%s", diff)
	}
	other := []byte(`{"resourceType":"Parameters","type":"transaction","entry":[{"request":{"method":"DELETE"}}]}`)
	if got, reqs := BundleType(other), EntryRequests(other); got != "" || reqs != nil {
		t.Errorf("BundleType, EntryRequests(Parameters) = %q, %v, want none", got, reqs)
	}
}

func BenchmarkResourceType(b *testing.B) {
	res := []byte(`{"resourceType":"Observation","id":"1","status":"final","code":{"text":"x"}}`)
	b.ReportAllocs()
	for b.Loop() {
		if ResourceType(res) != "Observation" {
			b.Fatal("wrong type")
		}
	}
}

func FuzzAttachments(f *testing.F) {
	f.Add([]byte(`{"resourceType":"DocumentReference","content":[{"attachment":{"url":"Binary/1","contentType":"text/plain"}}]}`))
	f.Add([]byte(`{"resourceType":"DiagnosticReport","presentedForm":[{"url":"a"},{"data":"eA=="}]}`))
	f.Add([]byte(`{"resourceType":"DocumentReference","content":[{"attachment":{"url":"a\"}"}},{"attachment":{}}]}`))
	f.Add([]byte(`{"resourceType":"DocumentReference","content":[{"attachment":{"url":`))
	f.Add([]byte(` { "resourceType" : "A\u0042" }`))
	f.Fuzz(func(t *testing.T, res []byte) {
		typ := ResourceType(res)
		if json.Valid(res) {
			if want := str(gjson.GetBytes(res, "resourceType")); typ != want {
				t.Fatalf("ResourceType(%q) = %q, want %q (gjson)", res, typ, want)
			}
		}
		Key(res)
		LastUpdated(res)
		BundleType(res)
		EntryRequests(res)
		for _, a := range Attachments(res) {
			if a.Start <= 0 || a.Start >= a.End || a.End > len(res) {
				t.Fatalf("Attachments(%q): offsets [%d:%d] outside 0..%d", res, a.Start, a.End, len(res))
			}
			obj := gjson.ParseBytes(res[a.Start:a.End])
			if !obj.IsObject() {
				t.Fatalf("Attachments(%q): res[%d:%d] = %q, not an object", res, a.Start, a.End, res[a.Start:a.End])
			}
			if u := str(obj.Get("url")); u != a.URL {
				t.Fatalf("Attachments(%q): slice url = %q, want %q", res, u, a.URL)
			}
			if ct := str(obj.Get("contentType")); ct != a.ContentType {
				t.Fatalf("Attachments(%q): slice contentType = %q, want %q", res, ct, a.ContentType)
			}
			if json.Valid(res) {
				if !json.Valid(res[a.Start:a.End]) {
					t.Fatalf("Attachments(%q): res[%d:%d] is not valid JSON", res, a.Start, a.End)
				}
				if raw := gjson.GetBytes(res, a.Path).Raw; raw != string(res[a.Start:a.End]) {
					t.Fatalf("Attachments(%q): %s = %s, slice = %s", res, a.Path, raw, res[a.Start:a.End])
				}
			}
		}
	})
}

func TestServerID(t *testing.T) {
	long := strings.Repeat("a", MaxIDLength)
	for _, tt := range []struct {
		id   string
		want bool
	}{
		{"123", true},
		{"A-b.9", true},
		{"eWz7" + strings.Repeat("Qx3v9LmP0a", 11), true}, // Epic: over FHIR's 64 characters
		{"pâtiënt-日本-e\u0301", true},
		{"a:b&c", true},
		{long, true},
		{long + "a", false},
		{"", false},
		{"a/b", false},
		{"a?b", false},
		{"a#b", false},
		{"a%2F", false},
		{"a b", false},
		{"a\x00", false},
		{"a\u0085", false}, // NEL: a control character and a line end to some readers
		{"a\u2028", false}, // LINE SEPARATOR
		{"a\xff", false},
	} {
		if got := ServerID(tt.id); got != tt.want {
			t.Errorf("ServerID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

// FuzzServerID: an accepted id is UTF-8 text that stays one path segment, whatever the bytes.
func FuzzServerID(f *testing.F) {
	for _, s := range []string{"123", "a/b", "pâtiënt", "a\x00", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if !ServerID(id) {
			return
		}
		if !utf8.ValidString(id) || strings.ContainsAny(id, "/?#% \t\r\n") || len(id) > MaxIDLength {
			t.Errorf("ServerID(%q) = true", id)
		}
		if u, err := url.Parse("Medication/" + url.PathEscape(id)); err != nil || u.Path != "Medication/"+id {
			t.Errorf("ServerID(%q) = true, but it does not round-trip as a path segment: %v %v", id, u, err)
		}
	})
}
