package bulk

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
)

func TestParseExportURL(t *testing.T) {
	tests := []struct {
		in                      string
		base, level, group, exp string
		query                   string
	}{
		{"https://x/fhir", "https://x/fhir", "system", "", "https://x/fhir/$export", ""},
		{"https://x/fhir/", "https://x/fhir", "system", "", "https://x/fhir/$export", ""},
		{"https://x/fhir/$export?_type=Patient", "https://x/fhir", "system", "", "https://x/fhir/$export", "_type=Patient"},
		{"https://x/fhir/Patient", "https://x/fhir", "patient", "", "https://x/fhir/Patient/$export", ""},
		{"https://x/fhir/Patient/$export", "https://x/fhir", "patient", "", "https://x/fhir/Patient/$export", ""},
		{"https://x/fhir/Group/abc", "https://x/fhir", "group", "abc", "https://x/fhir/Group/abc/$export", ""},
		{"https://x/fhir/Group/abc/$export?_since=2024&_type=A", "https://x/fhir", "group", "abc", "https://x/fhir/Group/abc/$export", "_since=2024&_type=A"},
		{"https://x/fhir/Group/abc/%24export", "https://x/fhir", "group", "abc", "https://x/fhir/Group/abc/$export", ""},
		{"https://x:8443/Group/g1#frag", "https://x:8443", "group", "g1", "https://x:8443/Group/g1/$export", ""},
		{"http://x", "http://x", "system", "", "http://x/$export", ""},
		{"https://x/r4/tenant/Group", "https://x/r4/tenant/Group", "system", "", "https://x/r4/tenant/Group/$export", ""},
		// An escaped slash keeps the Group id one segment, and the escapes survive.
		{"https://x/api/FHIR/R4/Group/a%2Fb/$export?_type=X", "https://x/api/FHIR/R4", "group", "a/b", "https://x/api/FHIR/R4/Group/a%2Fb/$export", "_type=X"},
		{"https://x/my%20fhir/Patient", "https://x/my%20fhir", "patient", "", "https://x/my%20fhir/Patient/$export", ""},
	}
	for _, tt := range tests {
		got, q, err := ParseExportURL(tt.in)
		if err != nil {
			t.Errorf("ParseExportURL(%q): %v", tt.in, err)
			continue
		}
		if got.Base != tt.base || string(got.Level) != tt.level || got.Group != tt.group || got.Export.String() != tt.exp || q != tt.query {
			t.Errorf("ParseExportURL(%q) = %s %s %q %s ?%s, want %s %s %q %s ?%s", tt.in, got.Base, got.Level, got.Group,
				got.Export, q, tt.base, tt.level, tt.group, tt.exp, tt.query)
		}
	}
	for _, bad := range []string{"", "x/fhir", "ftp://x/fhir", "https:///fhir", "://"} {
		if _, _, err := ParseExportURL(bad); err == nil {
			t.Errorf("ParseExportURL(%q) = nil error, want one", bad)
		}
	}
}

func TestBaseURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://x/fhir/Group/g/$export?_type=Patient", "https://x/fhir"},
		{"https://ehr.example/fhir/$export", "https://ehr.example/fhir"},
		{"https://ehr.example/fhir/$export?_type=Patient&_since=2024-01-01", "https://ehr.example/fhir"},
		{"https://ehr.example/fhir/Patient/$export", "https://ehr.example/fhir"},
		{"https://ehr.example/api/FHIR/R4/Group/a%2Fb/$export?_type=X", "https://ehr.example/api/FHIR/R4"},
		{"http://127.0.0.1:8080/Group/1/%24export", "http://127.0.0.1:8080"},
		{"https://ehr.example/$export", "https://ehr.example"},
		// Not the URL of a kickoff: it names no base.
		{"https://ehr.example/fhir/status/1", ""},
		{"https://ehr.example/fhir", ""},
		{"Group/1/$export", ""},
		{"::", ""},
	}
	for _, tt := range tests {
		got, err := BaseURL(tt.in)
		if got != tt.want || (err == nil) != (tt.want != "") {
			t.Errorf("BaseURL(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestPrepareGET(t *testing.T) {
	tests := []struct {
		name string
		req  KickoffRequest
		want string
	}{
		{"bare", KickoffRequest{URL: "https://x/fhir"}, "https://x/fhir/$export"},
		{"types collapsed", KickoffRequest{URL: "https://x/fhir/Group/g", Types: []string{"Patient", "Condition"}},
			"https://x/fhir/Group/g/$export?_type=Patient,Condition"},
		{"url params kept and merged", KickoffRequest{URL: "https://x/fhir/Patient/$export?_type=Patient&_type=Encounter&foo=bar",
			Types: []string{"Condition", "Patient"}},
			"https://x/fhir/Patient/$export?_type=Patient,Encounter,Condition&foo=bar"},
		{"url comma list", KickoffRequest{URL: "https://x/fhir/$export?_type=Patient,Condition", Types: []string{"Condition"}},
			"https://x/fhir/$export?_type=Patient,Condition"},
		{"all flags", KickoffRequest{URL: "https://x/fhir", Types: []string{"Patient"}, Elements: []string{"id", "meta"},
			Since: "2024", Until: "2024-06-01T12:00:00+02:00", OutputFormat: "application/fhir+ndjson",
			TypeFilters:           []string{"Observation?category=laboratory,vital-signs", "Condition?clinical-status=active"},
			IncludeAssociatedData: []string{"LatestProvenanceResources"}, AllowPartialManifests: true,
			Params: [][2]string{{"organizeOutputBy", "Patient"}, {"x-vendor", "a,b c"}}},
			"https://x/fhir/$export?_outputFormat=application%2Ffhir%2Bndjson&_since=2024-01-01T00%3A00%3A00Z" +
				"&_until=2024-06-01T10%3A00%3A00Z&_type=Patient&_elements=id,meta" +
				"&_typeFilter=Observation%3Fcategory%3Dlaboratory%252Cvital-signs,Condition%3Fclinical-status%3Dactive" +
				"&includeAssociatedData=LatestProvenanceResources&allowPartialManifests=true&organizeOutputBy=Patient&x-vendor=a,b+c"},
		{"flag replaces url single value", KickoffRequest{URL: "https://x/fhir/$export?_since=2020-01-01T00:00:00Z", Since: "2021"},
			"https://x/fhir/$export?_since=2021-01-01T00%3A00%3A00Z"},
		{"url since normalized", KickoffRequest{URL: "https://x/fhir/$export?_since=2020"},
			"https://x/fhir/$export?_since=2020-01-01T00%3A00%3A00Z"},
		{"type filter from url kept", KickoffRequest{URL: "https://x/fhir/$export?_typeFilter=Observation%3Fcode%3Da%252Cb",
			TypeFilters: []string{"Condition?code=c,d"}},
			"https://x/fhir/$export?_typeFilter=Observation%3Fcode%3Da%252Cb,Condition%3Fcode%3Dc%252Cd"},
		{"param list value appended", KickoffRequest{URL: "https://x/fhir", Types: []string{"Patient"}, Params: [][2]string{{"_type", "Condition"}}},
			"https://x/fhir/$export?_type=Patient,Condition"},
		{"same single value twice is fine", KickoffRequest{URL: "https://x/fhir", OutputFormat: "ndjson", Params: [][2]string{{"_outputFormat", "ndjson"}}},
			"https://x/fhir/$export?_outputFormat=ndjson"},
	}
	for _, tt := range tests {
		pk, err := tt.req.Prepare()
		if err != nil {
			t.Errorf("%s: Prepare: %v", tt.name, err)
			continue
		}
		if pk.Method != "GET" || pk.URL != tt.want || pk.Body != nil {
			t.Errorf("%s: Prepare = %s %s (body %q), want GET %s", tt.name, pk.Method, pk.URL, pk.Body, tt.want)
		}
		if got := pk.Header.Values("Prefer"); !cmp.Equal(got, []string{"respond-async"}) {
			t.Errorf("%s: Prefer = %q, want [respond-async]", tt.name, got)
		}
		if got := pk.Header.Get("Accept"); got != "application/fhir+json" {
			t.Errorf("%s: Accept = %q", tt.name, got)
		}
	}
}

func TestPreparePOST(t *testing.T) {
	req := KickoffRequest{URL: "https://x/fhir/Group/g/$export?_type=Patient,Condition&_since=2024", Types: []string{"Observation"},
		TypeFilters: []string{"Observation?category=laboratory,vital-signs"}, Patients: []string{"1", "Patient/2", "1"},
		AllowPartialManifests: true, IncludeAssociatedData: []string{"RelevantProvenanceResources"}, Lenient: true,
		Params: [][2]string{{"organizeOutputBy", "Patient"}}}
	pk, err := req.Prepare()
	if err != nil {
		t.Fatal(err)
	}
	if pk.Method != "POST" || pk.URL != "https://x/fhir/Group/g/$export" {
		t.Errorf("Prepare = %s %s, want POST https://x/fhir/Group/g/$export (patient forces POST)", pk.Method, pk.URL)
	}
	if got := pk.Header.Get("Content-Type"); got != "application/fhir+json" {
		t.Errorf("Content-Type = %q", got)
	}
	if got := pk.Header.Values("Prefer"); !cmp.Equal(got, []string{"respond-async", "handling=lenient"}) {
		t.Errorf("Prefer = %q", got)
	}
	var body struct {
		ResourceType string
		Parameter    []map[string]any
	}
	if err := json.Unmarshal(pk.Body, &body); err != nil {
		t.Fatal(err)
	}
	want := []map[string]any{
		{"name": "_type", "valueString": "Patient"},
		{"name": "_type", "valueString": "Condition"},
		{"name": "_type", "valueString": "Observation"},
		{"name": "_since", "valueInstant": "2024-01-01T00:00:00Z"},
		{"name": "_typeFilter", "valueString": "Observation?category=laboratory%2Cvital-signs"},
		{"name": "includeAssociatedData", "valueCode": "RelevantProvenanceResources"},
		{"name": "patient", "valueReference": map[string]any{"reference": "Patient/1"}},
		{"name": "patient", "valueReference": map[string]any{"reference": "Patient/2"}},
		{"name": "allowPartialManifests", "valueBoolean": true},
		{"name": "organizeOutputBy", "valueString": "Patient"},
	}
	if body.ResourceType != "Parameters" || !cmp.Equal(body.Parameter, want) {
		t.Errorf("Parameters body: %s\ndiff (-got +want):\n%s", pk.Body, cmp.Diff(body.Parameter, want))
	}
	wantParams := map[string]any{"_type": "Patient,Condition,Observation", "_since": "2024-01-01T00:00:00Z",
		"_typeFilter": "Observation?category=laboratory%2Cvital-signs", "includeAssociatedData": "RelevantProvenanceResources",
		"_patientCount": 2, "allowPartialManifests": true, "organizeOutputBy": "Patient"}
	if diff := cmp.Diff(pk.Parameters, wantParams); diff != "" {
		t.Errorf("Parameters for the log (-got +want):\n%s", diff)
	}
}

func TestPrepareErrors(t *testing.T) {
	tests := []struct {
		req  KickoffRequest
		want string
	}{
		{KickoffRequest{URL: "fhir"}, "absolute"},
		{KickoffRequest{URL: "https://x/fhir", Since: "yesterday"}, "_since"},
		{KickoffRequest{URL: "https://x/fhir/$export?_until=soon"}, "_until"},
		{KickoffRequest{URL: "https://x/fhir", OutputFormat: "ndjson", Params: [][2]string{{"_outputFormat", "csv"}}}, "given twice"},
		{KickoffRequest{URL: "https://x/fhir", Params: [][2]string{{"allowPartialManifests", "maybe"}}}, "true or false"},
		{KickoffRequest{URL: "https://x/fhir", Params: [][2]string{{"", "x"}}}, "empty name"},
		{KickoffRequest{URL: "https://x/fhir/$export?a=%zz"}, "query"},
	}
	for _, tt := range tests {
		if _, err := tt.req.Prepare(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Prepare(%+v) = %v, want an error containing %q", tt.req, err, tt.want)
		}
	}
}

// newClient is a client for a test server, with every wait skipped.
func newClient(t *testing.T, base string) *fhirclient.Client {
	t.Helper()
	c, err := fhirclient.New(fhirclient.Options{FHIRBase: base, MaxAttempts: 3,
		Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestKickoffResponses(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		status  string // want StatusURL, or "" for an error
		errText []string
	}{
		{"relative Content-Location", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Location", "../../status/1") // against …/fhir/Group/g/$export
			w.WriteHeader(202)
		}, "/fhir/status/1", nil},
		{"absolute Content-Location", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Location", "https://elsewhere/poll/9")
			w.WriteHeader(202)
		}, "https://elsewhere/poll/9", nil},
		{"no Content-Location", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(202) }, "",
			[]string{"GET ", "/fhir/Group/g/$export", "202 Accepted without a Content-Location"}},
		{"200 instead of 202", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-supported","diagnostics":"sync only"}]}`))
		}, "", []string{"200 OK", "expected 202", "sync only"}},
		{"400 with OperationOutcome", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/fhir+json")
			w.WriteHeader(400)
			w.Write([]byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"unknown _type Foo"}]}`))
		}, "", []string{"GET ", "/fhir/Group/g/$export?_type=Foo", "400 Bad Request", "unknown _type Foo"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			c := newClient(t, srv.URL+"/fhir")
			res, err := Kickoff(t.Context(), c, KickoffRequest{URL: srv.URL + "/fhir/Group/g", Types: []string{"Foo"}, AllowUnknownTypes: true})
			if tt.status == "" {
				if err == nil {
					t.Fatalf("Kickoff = %+v, want an error", res)
				}
				for _, s := range tt.errText {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("Kickoff error %q does not contain %q", err, s)
					}
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("Kickoff error %q is not one line", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tt.status
			if strings.HasPrefix(want, "/") {
				want = srv.URL + want
			}
			if res.StatusURL != want {
				t.Errorf("StatusURL = %q, want %q", res.StatusURL, want)
			}
		})
	}
}

// A kickoff is retried after 429 (an export already running) within its Wait budget.
func TestKickoffRetries429(t *testing.T) {
	var count atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := count.Add(1)
		if n <= 3 {
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(429)
			return
		}
		body, _ := io.ReadAll(r.Body)
		if r.Method != "POST" || !strings.Contains(string(body), `"Patient/7"`) {
			t.Errorf("attempt %d: %s with body %s, want the POST replayed", n, r.Method, body)
		}
		w.Header().Set("Content-Location", "/status/x")
		w.WriteHeader(202)
	}))
	defer srv.Close()
	c := newClient(t, srv.URL)
	res, err := Kickoff(t.Context(), c, KickoffRequest{URL: srv.URL, Patients: []string{"7"}, Wait: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if n := count.Load(); n != 4 || res.StatusURL != srv.URL+"/status/x" || res.Method != "POST" {
		t.Errorf("Kickoff after %d requests = %+v, want 4 requests and status/x", n, res)
	}
}

// A kickoff cut after the request was sent is not retried: the export may exist.
func TestKickoffMaybeSent(t *testing.T) {
	var count atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		count.Add(1)
		hj, _ := w.(http.Hijacker)
		conn, _, _ := hj.Hijack()
		conn.Close()
	}))
	defer srv.Close()
	c := newClient(t, srv.URL)
	_, err := Kickoff(t.Context(), c, KickoffRequest{URL: srv.URL})
	if !errors.Is(err, ErrMaybeExported) || !errors.Is(err, fhirclient.ErrMaybeSent) {
		t.Fatalf("Kickoff = %v, want ErrMaybeExported", err)
	}
	if n := count.Load(); !strings.Contains(err.Error(), "an export may already exist on the server") || n != 1 {
		t.Errorf("Kickoff after %d requests: %v", n, err)
	}
}

// TestPrepareUnknownTypes: a misspelt type is refused before the server sees it, with the type
// it most likely means; AllowUnknownTypes lets custom types through.
func TestPrepareUnknownTypes(t *testing.T) {
	tests := []struct {
		req  KickoffRequest
		want string
	}{
		{KickoffRequest{URL: "https://x/fhir", Types: []string{"Patient", "Patinet"}}, `_type "Patinet": not a FHIR resource type; did you mean Patient?`},
		{KickoffRequest{URL: "https://x/fhir", Types: []string{"patient"}}, `_type "patient": not a FHIR resource type; did you mean Patient?`},
		{KickoffRequest{URL: "https://x/fhir?_type=Observation,Zzzzzz"}, `_type "Zzzzzz": not a FHIR resource type`},
		{KickoffRequest{URL: "https://x/fhir", Params: [][2]string{{"_type", "Patient,Conditon"}}}, `_type "Conditon": not a FHIR resource type; did you mean Condition?`},
		{KickoffRequest{URL: "https://x/fhir", TypeFilters: []string{"Observaton?category=laboratory"}},
			`_typeFilter "Observaton": not a FHIR resource type; did you mean Observation?`},
		{KickoffRequest{URL: "https://x/fhir", Types: []string{"Patient", "Encounter"}, TypeFilters: []string{"Encounter?class=IMP,EMER"}}, ""},
		{KickoffRequest{URL: "https://x/fhir", Types: []string{"ResearchStudy", "EncounterHistory"}}, ""}, // R4 and R5
		{KickoffRequest{URL: "https://x/fhir", Types: []string{"MyCustomThing"}, AllowUnknownTypes: true}, ""},
	}
	for _, tt := range tests {
		_, err := tt.req.Prepare()
		got := ""
		if err != nil {
			got = err.Error()
			if _, ok := errors.AsType[*UnknownTypeError](err); !ok {
				t.Errorf("Prepare(%+v) = %T, want *UnknownTypeError", tt.req, err)
			}
		}
		if got != tt.want {
			t.Errorf("Prepare(%q, %q, %q) error = %q, want %q", tt.req.URL, tt.req.Types, tt.req.TypeFilters, got, tt.want)
		}
	}
}

func FuzzSplitExportPath(f *testing.F) {
	for _, s := range []string{"/fhir/Group/a%2Fb/$export", "/fhir/Patient/%24export", "Group/x", "/", "", "/Group//$export", "/fhir/Group/%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p := SplitExportPath(s)
		if !strings.HasPrefix(s, p.Base) || strings.HasSuffix(p.Base, "/") {
			t.Fatalf("SplitExportPath(%q).Base = %q: not a prefix without a trailing slash", s, p.Base)
		}
		// Rebuilding the URL of what was read reads back the same.
		rebuilt := p.Base + "/$export"
		switch p.Level {
		case LevelPatient:
			rebuilt = p.Base + "/Patient/$export"
		case LevelGroup:
			if p.RawGroup == "" || strings.Contains(p.RawGroup, "/") {
				t.Fatalf("SplitExportPath(%q).RawGroup = %q", s, p.RawGroup)
			}
			rebuilt = p.Base + "/Group/" + p.RawGroup + "/$export"
		}
		again := SplitExportPath(rebuilt)
		again.Export = p.Export
		if again != p && p.Base != "" {
			t.Fatalf("SplitExportPath(%q) = %+v; of %q = %+v", s, p, rebuilt, again)
		}
	})
}
