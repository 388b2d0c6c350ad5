package bulk

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/tidwall/gjson"
)

func TestParseManifest(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Manifest
	}{
		{
			"v2 with error and deleted",
			`{"transactionTime":"2024-01-01T00:00:00Z","request":"https://x/fhir/Group/g/$export","requiresAccessToken":true,
			  "output":[{"type":"Patient","url":"https://x/files/1","count":3},{"type":"Observation","url":"https://x/files/2"}],
			  "deleted":[{"type":"Bundle","url":"https://x/files/d1"}],
			  "error":[{"type":"OperationOutcome","url":"https://x/files/e1","count":1}],
			  "extension":{"x":1}}`,
			Manifest{
				TransactionTime: "2024-01-01T00:00:00Z", Request: "https://x/fhir/Group/g/$export", RequiresAccessToken: true,
				Output:  []Item{{Type: "Patient", URL: "https://x/files/1", Count: 3, HasCount: true}, {Type: "Observation", URL: "https://x/files/2"}},
				Deleted: []Item{{Type: "Bundle", URL: "https://x/files/d1"}},
				Error:   []Item{{Type: "OperationOutcome", URL: "https://x/files/e1", Count: 1, HasCount: true}},
			},
		},
		{
			"v4 with outcome and no request",
			`{"transactionTime":"2024-01-01T00:00:00.123+02:00","requiresAccessToken":false,"output":[],"outcome":[{"type":"OperationOutcome","url":"o1"}]}`,
			Manifest{TransactionTime: "2024-01-01T00:00:00.123+02:00", Output: []Item{}, Error: []Item{{Type: "OperationOutcome", URL: "o1"}}},
		},
		{
			"error and outcome both kept",
			`{"output":[],"error":[{"type":"OperationOutcome","url":"e"}],"outcome":[{"url":"o"}]}`,
			Manifest{Output: []Item{}, Error: []Item{{Type: "OperationOutcome", URL: "e"}, {Type: "OperationOutcome", URL: "o"}}},
		},
		{
			"partial with link next",
			`{"transactionTime":"2024-01-01T00:00:00Z","output":[{"type":"Patient","url":"p"}],"link":[{"relation":"self","url":"s"},{"relation":"next","url":"https://x/status/1?page=2"}]}`,
			Manifest{TransactionTime: "2024-01-01T00:00:00Z", Output: []Item{{Type: "Patient", URL: "p"}}, Next: "https://x/status/1?page=2"},
		},
		{
			"lenient: no output, string boolean, odd counts, continuesInFile",
			`{"requiresAccessToken":"true","deleted":[{"url":"d"}],"output":null,"x":[],
			  "error":[{"url":"e","count":"7","continuesInFile":"e2"},{"url":"f","count":-1,"extension":{"continuesInFile":"f2"}},{"url":"g","count":1.5}]}`,
			Manifest{RequiresAccessToken: true, Deleted: []Item{{Type: "Bundle", URL: "d"}},
				Error: []Item{{Type: "OperationOutcome", URL: "e", Count: 7, HasCount: true, ContinuesInFile: "e2"},
					{Type: "OperationOutcome", URL: "f", ContinuesInFile: "f2"}, {Type: "OperationOutcome", URL: "g"}}},
		},
		{"empty object", `{}`, Manifest{}},
	}
	for _, tt := range tests {
		got, err := ParseManifest([]byte(tt.in))
		if err != nil {
			t.Errorf("%s: ParseManifest = %v", tt.name, err)
			continue
		}
		if string(got.Raw) != tt.in {
			t.Errorf("%s: Raw = %q, want the input", tt.name, got.Raw)
		}
		if diff := cmp.Diff(&tt.want, got, cmpopts.IgnoreFields(Manifest{}, "Raw"), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: ParseManifest mismatch (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestParseManifestRawIsACopy(t *testing.T) {
	b := []byte(`{"output":[]}`)
	m, err := ParseManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	b[2] = 'X'
	if string(m.Raw) != `{"output":[]}` {
		t.Errorf("Raw = %s after the input changed, want a copy", m.Raw)
	}
}

func TestParseManifestErrors(t *testing.T) {
	tests := map[string]string{
		``:                         "manifest: empty",
		`[]`:                       "manifest: not a JSON object",
		`null`:                     "manifest: not a JSON object",
		`"x"`:                      "manifest: not a JSON object",
		`{"output":[}`:             "manifest: invalid character",
		`{"output":{}}`:            "manifest: output is not an array of objects",
		`{"output":[1]}`:           "manifest: output is not an array of objects",
		`{"output":[null]}`:        "manifest: output[0]: not an object",
		`{"output":[{"url":"u"}]}`: "manifest: output[0]: no type",
		`{"output":[{"type":"P","url":"u"},{"type":"P"}]}`: "manifest: output[1]: no url",
		`{"deleted":[{"type":"Bundle","url":""}]}`:         "manifest: deleted[0]: no url",
		`{"outcome":[{"url":5}]}`:                          "manifest: outcome[0]: url is not a string",
		`{"transactionTime":5}`:                            "manifest: transactionTime is not a string",
		`{"requiresAccessToken":"yes"}`:                    "manifest: requiresAccessToken is not a boolean",
		`{"link":{"relation":"next"}}`:                     "manifest: link is not an array of objects",
		`{"link":[{"relation":"next","url":1}]}`:           "manifest: link[0]: url is not a string",
	}
	for in, want := range tests {
		if _, err := ParseManifest([]byte(in)); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("ParseManifest(%s) error = %v, want %q", in, err, want)
		}
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"transactionTime":"2024-01-01T00:00:00Z","requiresAccessToken":true,"output":[{"type":"Patient","url":"u","count":1}],"link":[{"relation":"next","url":"n"}]}`))
	f.Add([]byte(`{"outcome":[{"url":"o","extension":{"continuesInFile":"p"}}],"deleted":null}`))
	f.Add([]byte(`{"output":[{"type":"P","url":"u","count":1e300}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "manifest: ") {
				t.Fatalf("ParseManifest error %q lacks the manifest: prefix", err)
			}
			return
		}
		for _, items := range [][]Item{m.Output, m.Deleted, m.Error} {
			for _, it := range items {
				if it.URL == "" || it.Type == "" || it.Count < 0 || (!it.HasCount && it.Count != 0) {
					t.Fatalf("ParseManifest(%q): bad item %+v", b, it)
				}
			}
		}
		if string(m.Raw) != string(b) {
			t.Fatalf("ParseManifest(%q): Raw = %q", b, m.Raw)
		}
	})
}

// TestManifestReadersAgree: the manifest's readers (ParseManifest, FileCounts, MergePages and
// the poller's next link) go by one rule for the v4 rename and for members given twice; once they
// were an encoding/json parser and gjson paths, and a repeated member or a second next link made
// bulk-poll count and follow one thing and bulk-fetch download another.
func TestManifestReadersAgree(t *testing.T) {
	tests := []struct {
		in                      string
		output, deleted, errors int
		next                    string
	}{
		{`{"output":[],"output":[{"type":"P","url":"u"}]}`, 0, 0, 0, ""},
		{`{"output":[{"type":"P","url":"u"}],"error":[{"url":"e"}],"outcome":[{"url":"o"},{"url":"p"}]}`, 1, 0, 3, ""},
		{`{"deleted":[{"url":"d"}],"outcome":[{"url":"o"}],"outcome":[]}`, 0, 1, 1, ""},
		{`{"link":[{"relation":"next","url":"a"},{"relation":"next","url":"b"}]}`, 0, 0, 0, "a"},
		{`{"output":[{"type":"P","url":"u"}],"deleted":null,"error":null}`, 1, 0, 0, ""},
	}
	for _, tt := range tests {
		m, err := ParseManifest([]byte(tt.in))
		if err != nil {
			t.Errorf("ParseManifest(%s) = %v", tt.in, err)
			continue
		}
		if got := [3]int{len(m.Output), len(m.Deleted), len(m.Error)}; got != [3]int{tt.output, tt.deleted, tt.errors} {
			t.Errorf("ParseManifest(%s) items = %v, want %v", tt.in, got, [3]int{tt.output, tt.deleted, tt.errors})
		}
		if o, d, e := FileCounts([]byte(tt.in)); [3]int{o, d, e} != [3]int{tt.output, tt.deleted, tt.errors} {
			t.Errorf("FileCounts(%s) = %d, %d, %d, want %d, %d, %d", tt.in, o, d, e, tt.output, tt.deleted, tt.errors)
		}
		merged, err := MergePages([][]byte{[]byte(tt.in), []byte(tt.in)})
		if o, d, e := FileCounts(merged); err != nil || [3]int{o, d, e} != [3]int{2 * tt.output, 2 * tt.deleted, 2 * tt.errors} {
			t.Errorf("FileCounts(MergePages(%s twice)) = %d, %d, %d, %v, want twice %d, %d, %d", tt.in, o, d, e, err,
				tt.output, tt.deleted, tt.errors)
		}
		next, _ := nextLink(gjson.Parse(tt.in))
		if m.Next != tt.next || next != tt.next {
			t.Errorf("ParseManifest(%s).Next = %q, poller's next = %q, want %q", tt.in, m.Next, next, tt.next)
		}
	}
}

// FuzzManifestRename checks that every reader of a manifest applies the same rule to v4's
// "outcome" and STU1–3's "error": what ParseManifest finds in a manifest, FileCounts counts, and
// MergePages keeps, page after page, under the same names.
func FuzzManifestRename(f *testing.F) {
	f.Add([]byte(`{"transactionTime":"2024-01-01T00:00:00Z","output":[{"type":"Patient","url":"u","count":1}],"error":[{"url":"e"}]}`))
	f.Add([]byte(`{"outcome":[{"url":"o","extension":{"continuesInFile":"p"}}],"deleted":null,"error":[]}`))
	f.Add([]byte(`{"output":[],"outcome":[{"type":"OperationOutcome","url":"o"}],"outcome":[{"url":"x"},{"url":"y"}]}`))
	f.Add([]byte(`{"deleted":[{"url":"d"}],"link":[{"relation":"next","url":"n"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			return
		}
		want := [3]int{len(m.Output), len(m.Deleted), len(m.Error)}
		if o, d, e := FileCounts(b); [3]int{o, d, e} != want {
			t.Fatalf("FileCounts(%q) = %d, %d, %d; ParseManifest found %v", b, o, d, e, want)
		}
		merged, err := MergePages([][]byte{b, b})
		if err != nil {
			t.Fatalf("MergePages(%q twice) = %v", b, err)
		}
		mm, err := ParseManifest(merged)
		if err != nil {
			t.Fatalf("ParseManifest(MergePages(%q twice) = %q) = %v", b, merged, err)
		}
		twice := func(items []Item) []Item { return append(slices.Clone(items), items...) }
		for _, c := range []struct {
			name      string
			got, want []Item
		}{{"output", mm.Output, twice(m.Output)}, {"deleted", mm.Deleted, twice(m.Deleted)}, {"error", mm.Error, twice(m.Error)}} {
			if diff := cmp.Diff(c.want, c.got, cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("MergePages(%q twice) = %q: %s items differ from the page's, twice (-want +got):\n%s", b, merged, c.name, diff)
			}
		}
	})
}

// TestManifestMarshalJSON pins the manifest a tool writes (ndjson-merge's manifest.json): the
// same bytes as when merge had a manifest type of its own.
func TestManifestMarshalJSON(t *testing.T) {
	const req = "https://x/fhir/Group/g/$export?a=1&b=<2>"
	tests := []struct {
		m    Manifest
		want string
	}{
		{Manifest{TransactionTime: "2024-01-01T00:00:00Z", Request: req,
			Output: []Item{{Type: "Patient", URL: "Patient.000.ndjson", Count: 3, HasCount: true}}}, `{
  "transactionTime": "2024-01-01T00:00:00Z",
  "request": "https://x/fhir/Group/g/$export?a=1\u0026b=\u003c2\u003e",
  "requiresAccessToken": false,
  "output": [
    {
      "type": "Patient",
      "url": "Patient.000.ndjson",
      "count": 3
    }
  ],
  "error": []
}`},
		{Manifest{TransactionTime: "2024-01-01T00:00:00Z", Request: req,
			Deleted: []Item{{Type: "Bundle", URL: "deleted/Bundle.000.ndjson", HasCount: true}},
			Error:   []Item{{Type: "OperationOutcome", URL: "error/OperationOutcome.000.ndjson", Count: 1, HasCount: true}}}, `{
  "transactionTime": "2024-01-01T00:00:00Z",
  "request": "https://x/fhir/Group/g/$export?a=1\u0026b=\u003c2\u003e",
  "requiresAccessToken": false,
  "output": [],
  "deleted": [
    {
      "type": "Bundle",
      "url": "deleted/Bundle.000.ndjson",
      "count": 0
    }
  ],
  "error": [
    {
      "type": "OperationOutcome",
      "url": "error/OperationOutcome.000.ndjson",
      "count": 1
    }
  ]
}`},
	}
	for i, tt := range tests {
		got, err := json.MarshalIndent(&tt.m, "", "  ")
		if err != nil || string(got) != tt.want {
			t.Errorf("MarshalIndent(manifest %d) = %v\n%s\nwant\n%s", i, err, got, tt.want)
		}
		back, err := ParseManifest(got)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(&tt.m, back, cmpopts.IgnoreFields(Manifest{}, "Raw"), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("ParseManifest(MarshalJSON(manifest %d)) differs (-want +got):\n%s", i, diff)
		}
	}
}
