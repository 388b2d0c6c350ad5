package fhirtest

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tidwall/gjson"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest/synth"
)

func TestKickoffLevels(t *testing.T) {
	s := start(t, Options{})
	all := map[string][]string{
		"Patient":           {"p1", "p2", "p3"},
		"Observation":       {"o1", "o2", "o3", "o4", "o5"},
		"DocumentReference": {"d1"},
		"MedicationRequest": {"m1"},
	}
	patients := map[string][]string{
		"Patient":           {"p1", "p2", "p3"},
		"Observation":       {"o1", "o2", "o3", "o4"},
		"DocumentReference": {"d1"},
		"MedicationRequest": {"m1"},
	}
	group := map[string][]string{
		"Patient":           {"p1", "p3"},
		"Observation":       {"o1", "o3", "o4"},
		"DocumentReference": {"d1"},
	}
	tests := []struct {
		path string
		post []byte // nil: GET
		want map[string][]string
	}{
		{"/$export", nil, all},
		{"/$export", parameters(), all},
		{"/Patient/$export", nil, patients},
		{"/Patient/$export", parameters(), patients},
		{"/Group/g1/$export", nil, group},
		{"/Group/g1/$export", parameters("_outputFormat", "application/fhir+ndjson"), group},
		{"/Group/empty/$export", nil, map[string][]string{}},
		{"/Patient/$export", parameters("patient", "Patient/p2"), map[string][]string{
			"Patient": {"p2"}, "Observation": {"o2"}, "MedicationRequest": {"m1"}}},
		{"/Group/g1/$export", parameters("patient", "Patient/p2", "patient", "Patient/p3"), map[string][]string{
			"Patient": {"p3"}, "Observation": {"o3"}}},
	}
	for _, tt := range tests {
		method := "GET"
		if tt.post != nil {
			method = "POST"
		}
		h := kickoffHeader()
		h.Set("Content-Type", "application/fhir+json")
		resp, body := do(t, method, s.URL()+tt.path, h, tt.post)
		if resp.StatusCode != http.StatusAccepted {
			t.Errorf("%s %s = %s %s, want 202", method, tt.path, resp.Status, body)
			continue
		}
		loc := resp.Header.Get("Content-Location")
		if !strings.HasPrefix(loc, s.URL()+"/status/") {
			t.Errorf("%s %s: Content-Location = %q, want %s/status/…", method, tt.path, loc, s.URL())
		}
		m, _ := poll(t, loc, nil)
		got := map[string][]string{}
		for typ, keys := range outputIDs(t, m, nil) {
			got[typ] = ids(keys)
		}
		if d := cmp.Diff(tt.want, got); d != "" {
			t.Errorf("%s %s %s: exported ids (-want +got):\n%s", method, tt.path, tt.post, d)
		}
	}
}

func TestKickoffParams(t *testing.T) {
	s := start(t, Options{})
	tests := []struct {
		name string
		q    url.Values
		want map[string][]string // type → ids; types absent from want must not be exported
	}{
		{"_type", url.Values{"_type": {"Patient,MedicationRequest"}},
			map[string][]string{"Patient": {"p1", "p2", "p3"}, "MedicationRequest": {"m1"}}},
		{"_type repeated", url.Values{"_type": {"Patient", "MedicationRequest"}},
			map[string][]string{"Patient": {"p1", "p2", "p3"}, "MedicationRequest": {"m1"}}},
		{"_type known but absent", url.Values{"_type": {"Practitioner"}}, map[string][]string{}},
		{"_since", url.Values{"_type": {"Patient,Observation"}, "_since": {"2024-02-10T00:00:00Z"}},
			map[string][]string{"Patient": {"p3"}, "Observation": {"o2", "o3", "o4", "o5"}}},
		{"_since with offset compares instants", url.Values{"_type": {"Patient"}, "_since": {"2024-02-29T23:30:00Z"}},
			map[string][]string{}}, // p3 is 2024-03-01T00:00+01:00 = 2024-02-29T23:00Z
		{"_until", url.Values{"_type": {"Observation"}, "_until": {"2024-02-10T00:00:00Z"}},
			map[string][]string{"Observation": {"o1", "o2"}}},
		{"_typeFilter one value", url.Values{"_typeFilter": {"Observation?category=laboratory"}},
			map[string][]string{"Patient": {"p1", "p2", "p3"}, "Observation": {"o1", "o5"},
				"DocumentReference": {"d1"}, "MedicationRequest": {"m1"}}},
		{"_typeFilter OR escaped comma", url.Values{"_type": {"Observation"}, "_typeFilter": {"Observation?category=laboratory%2Cvital-signs"}},
			map[string][]string{"Observation": {"o1", "o2", "o5"}}},
		{"_typeFilter with system", url.Values{"_type": {"Observation"}, "_typeFilter": {"Observation?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"}},
			map[string][]string{"Observation": {"o2"}}},
		{"_typeFilter two filters OR", url.Values{"_type": {"Observation"}, "_typeFilter": {"Observation?category=vital-signs,Observation?category=social-history"}},
			map[string][]string{"Observation": {"o2", "o4"}}},
		{"_typeFilter missing", url.Values{"_type": {"Observation"}, "_typeFilter": {"Observation?category:missing=true"}},
			map[string][]string{"Observation": {"o3"}}},
		{"_typeFilter missing=false", url.Values{"_type": {"Observation"}, "_typeFilter": {"Observation?category:missing=false"}},
			map[string][]string{"Observation": {"o1", "o2", "o4", "o5"}}},
		{"_typeFilter AND", url.Values{"_type": {"Observation"}, "_typeFilter": {"Observation?category=laboratory&_lastUpdated=lt2024-03-01T00:00:00Z"}},
			map[string][]string{"Observation": {"o1"}}},
		{"_outputFormat ndjson", url.Values{"_type": {"Patient"}, "_outputFormat": {"ndjson"}},
			map[string][]string{"Patient": {"p1", "p2", "p3"}}},
		{"_outputFormat application/ndjson", url.Values{"_type": {"Patient"}, "_outputFormat": {"application/ndjson"}},
			map[string][]string{"Patient": {"p1", "p2", "p3"}}},
		{"includeAssociatedData", url.Values{"_type": {"Patient"}, "includeAssociatedData": {"LatestProvenanceResources"}},
			map[string][]string{"Patient": {"p1", "p2", "p3"}}},
	}
	for _, tt := range tests {
		got, _ := export(t, s, "/$export", tt.q)
		gotIDs := map[string][]string{}
		for typ, keys := range got {
			gotIDs[typ] = ids(keys)
		}
		if d := cmp.Diff(tt.want, gotIDs); d != "" {
			t.Errorf("%s: $export?%s (-want +got):\n%s", tt.name, tt.q.Encode(), d)
		}
	}
}

func TestKickoffErrors(t *testing.T) {
	s := start(t, Options{})
	get := func(q string, h http.Header) (int, string) {
		resp, body := do(t, "GET", s.URL()+"/$export?"+q, h, nil)
		return resp.StatusCode, gjson.GetBytes(body, "issue.0.diagnostics").Str
	}
	lenient := kickoffHeader()
	lenient.Add("Prefer", "handling=lenient")
	tests := []struct {
		q      string
		h      http.Header
		status int
		diag   string
	}{
		{"_type=Patient", http.Header{"Prefer": {"respond-async"}}, 400, "Accept: application/fhir+json"},
		{"_type=Patient", http.Header{"Accept": {"application/fhir+json"}}, 400, "Prefer: respond-async"},
		{"_type=Patient", http.Header{"Accept": {"application/json, application/fhir+json;q=0.9"}, "Prefer": {"respond-async, handling=lenient"}}, 202, ""},
		{"_type=Patient,Nonsense", nil, 400, `"Nonsense" is not a FHIR R4 resource type`},
		{"_type=patient", nil, 400, `"patient" is not a FHIR R4 resource type`},
		{"_outputFormat=text/csv", nil, 400, "_outputFormat"},
		{"_since=yesterday", nil, 400, "_since"},
		{"_since=2024-02-01&_until=2024-01-01", nil, 400, "_until is before _since"},
		{"_typeFilter=Observation%3Fcode%3Abelow%3Dx", nil, 400, "code:below is not supported"},
		{"_typeFilter=Observation%3Fcategory%3Dlaboratory,vital-signs", nil, 400, `"vital-signs"`}, // unescaped comma splits filters
		{"_typeFilter=Observation%3Fvalue-quantity%3D5", lenient, 202, ""},
		{"_typeFilter=Observation%3F_lastUpdated%3D2024", nil, 400, "gt, ge, lt or le"},
		{"patient=Patient/p1", nil, 400, "only in a POST"},
		{"_count=5", nil, 400, "_count is not supported"},
		{"_count=5", lenient, 202, ""},
		{"allowPartialManifests=yes", nil, 400, "true or false"},
		{"_elements=Nope.id", nil, 400, `"Nope"`},
	}
	for _, tt := range tests {
		h := tt.h
		if h == nil {
			h = kickoffHeader()
		}
		status, diag := get(tt.q, h)
		if status != tt.status || !strings.Contains(diag, tt.diag) {
			t.Errorf("GET $export?%s = %d %q, want %d containing %q", tt.q, status, diag, tt.status, tt.diag)
		}
	}
	resp, body := do(t, "GET", s.URL()+"/Group/nope/$export", kickoffHeader(), nil)
	if resp.StatusCode != http.StatusNotFound || gjson.GetBytes(body, "resourceType").Str != "OperationOutcome" {
		t.Errorf("GET Group/nope/$export = %s %s, want 404 OperationOutcome", resp.Status, body)
	}
	resp, body = do(t, "POST", s.URL()+"/$export", kickoffHeader(), []byte(`{"resourceType":"Patient"}`))
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("POST $export with a Patient body = %s %s, want 400", resp.Status, body)
	}
	resp, body = do(t, "POST", s.URL()+"/$export", kickoffHeader(), parameters("patient", "Patient/p1"))
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("POST system $export with patient = %s %s, want 400", resp.Status, body)
	}
}

func TestElements(t *testing.T) {
	s := start(t, Options{})
	m, _ := poll(t, kickoff(t, s, "/$export", url.Values{"_type": {"Patient,Observation"}, "_elements": {"Observation.status,gender"}}, nil), nil)
	for _, it := range m.Output {
		for _, line := range fileLines(t, it.URL, nil) {
			var keys []string
			gjson.ParseBytes(line).ForEach(func(k, _ gjson.Result) bool { keys = append(keys, k.Str); return true })
			want := map[string][]string{"Patient": {"resourceType", "id", "meta", "gender"},
				"Observation": {"resourceType", "id", "meta", "status"}}[it.Type]
			if !slices.Equal(keys, want) {
				t.Errorf("_elements: %s keys = %v, want %v", it.Type, keys, want)
			}
			if tag := gjson.GetBytes(line, `meta.tag.#(code=="SUBSETTED").system`).Str; tag != "http://terminology.hl7.org/CodeSystem/v3-ObservationValue" {
				t.Errorf("_elements: %s lacks the SUBSETTED tag: %s", it.Type, line)
			}
		}
	}
}

func TestManifest(t *testing.T) {
	for _, profile := range []string{ProfileV2, ProfileV3, ProfileV4} {
		clock := &fakeClock{t: time.Date(2025, 3, 4, 5, 6, 7, 890e6, time.UTC)}
		s := start(t, Options{Polls: 2, RetryAfter: 1500 * time.Millisecond, Profile: profile, Now: clock.now})
		status := kickoff(t, s, "/$export", url.Values{"_since": {"2024-01-06T00:00:00Z"}}, nil)
		for i := 1; i <= 2; i++ {
			resp, _ := do(t, "GET", status, nil, nil)
			if resp.StatusCode != 202 || resp.Header.Get("X-Progress") != "step "+string(rune('0'+i))+" of 2" || resp.Header.Get("Retry-After") != "2" {
				t.Errorf("%s: poll %d = %s X-Progress %q Retry-After %q, want 202 \"step %d of 2\" 2",
					profile, i, resp.Status, resp.Header.Get("X-Progress"), resp.Header.Get("Retry-After"), i)
			}
		}
		clock.add(time.Minute)
		m, resp := poll(t, status, nil)
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: manifest Content-Type = %q, want application/json", profile, ct)
		}
		if exp, want := resp.Header.Get("Expires"), "Tue, 04 Mar 2025 06:07:07 GMT"; exp != want {
			t.Errorf("%s: Expires = %q, want %q", profile, exp, want)
		}
		if m.TransactionTime != "2025-03-04T05:06:07.890Z" {
			t.Errorf("%s: transactionTime = %q, want the kickoff instant 2025-03-04T05:06:07.890Z", profile, m.TransactionTime)
		}
		errs := m.Error
		if profile == ProfileV4 {
			if m.Request != nil || m.Error != nil {
				t.Errorf("v4 manifest has request %v or error %v, want neither", m.Request, m.Error)
			}
			errs = m.Outcome
		} else if m.Request == nil || !strings.HasSuffix(*m.Request, "/$export?_since=2024-01-06T00%3A00%3A00Z") {
			t.Errorf("%s: request = %v, want the kickoff URL", profile, m.Request)
		}
		if len(errs) != 1 || errs[0].Type != "OperationOutcome" || errs[0].Count != 1 {
			t.Fatalf("%s: error items = %+v, want one OperationOutcome file", profile, errs)
		}
		if sev := gjson.GetBytes(fileLines(t, errs[0].URL, nil)[0], "issue.0.severity").Str; sev != "warning" {
			t.Errorf("%s: error file issue severity = %q, want warning", profile, sev)
		}
		if len(m.Deleted) != 1 {
			t.Fatalf("%s: deleted = %+v, want one Bundle file with _since", profile, m.Deleted)
		}
		bundle := fileLines(t, m.Deleted[0].URL, nil)[0]
		var dels []string
		for _, e := range gjson.GetBytes(bundle, "entry").Array() {
			dels = append(dels, e.Get("request.method").Str+" "+e.Get("request.url").Str)
		}
		// Changed before _since and so reported deleted: the first two of each type but Patient.
		if want := []string{"DELETE DocumentReference/d1"}; gjson.GetBytes(bundle, "type").Str != "transaction" || !slices.Equal(dels, want) {
			t.Errorf("%s: deleted Bundle = %s, want a transaction with %v", profile, bundle, want)
		}
		// The manifest of a job is stable: same URLs, same transactionTime.
		m2, _ := poll(t, status, nil)
		if d := cmp.Diff(m, m2); d != "" {
			t.Errorf("%s: second manifest differs (-first +second):\n%s", profile, d)
		}
		for _, it := range m.Output {
			if n := len(fileLines(t, it.URL, nil)); n != it.Count {
				t.Errorf("%s: %s count = %d, file has %d lines", profile, it.Type, it.Count, n)
			}
			if !strings.Contains(it.URL, "/files/") || strings.Contains(it.URL, it.Type) {
				t.Errorf("%s: file URL %s should be opaque", profile, it.URL)
			}
		}
	}
}

func TestPartialManifests(t *testing.T) {
	for _, profile := range []string{ProfileV3, ProfileV4} {
		s := start(t, Options{PageSize: 1, Profile: profile})
		status := kickoff(t, s, "/$export", url.Values{"allowPartialManifests": {"true"}}, nil)
		var types []string
		pages := 0
		next := status
		sawError := false
		for next != "" {
			m, _ := poll(t, next, nil)
			pages++
			if len(m.Output) > 1 {
				t.Errorf("%s: page %d has %d output items, want <= 1", profile, pages, len(m.Output))
			}
			for _, it := range m.Output {
				types = append(types, it.Type)
			}
			sawError = sawError || len(m.Error)+len(m.Outcome) > 0
			next = ""
			for _, l := range m.Link {
				if l.Relation == "next" {
					next = l.URL
				}
			}
			if pages > 10 {
				t.Fatal("more than 10 pages")
			}
		}
		if want := []string{"Patient", "Observation", "DocumentReference", "MedicationRequest"}; !slices.Equal(types, want) || pages != 4 || !sawError {
			t.Errorf("%s: pages = %d with types %v (error item seen %v), want 4 pages of %v and an error item", profile, pages, types, sawError, want)
		}
	}
	// Without allowPartialManifests, or with v2, the manifest is one page.
	for _, tc := range []struct {
		profile string
		q       url.Values
	}{{ProfileV3, nil}, {ProfileV2, url.Values{"allowPartialManifests": {"true"}}}} {
		s := start(t, Options{PageSize: 1, Profile: tc.profile})
		m, _ := poll(t, kickoff(t, s, "/$export", tc.q, nil), nil)
		if len(m.Output) != 4 || len(m.Link) != 0 {
			t.Errorf("%s %v: %d output items, links %v; want 4 and no link", tc.profile, tc.q, len(m.Output), m.Link)
		}
	}
}

func TestDeleteStatus(t *testing.T) {
	s := start(t, Options{})
	status := kickoff(t, s, "/$export", nil, nil)
	m, _ := poll(t, status, nil)
	if resp, body := do(t, "DELETE", status, nil, nil); resp.StatusCode != http.StatusAccepted {
		t.Errorf("DELETE status = %s %s, want 202", resp.Status, body)
	}
	for _, u := range []string{status, m.Output[0].URL} {
		if resp, body := do(t, "GET", u, nil, nil); resp.StatusCode != http.StatusNotFound || gjson.GetBytes(body, "resourceType").Str != "OperationOutcome" {
			t.Errorf("GET %s after DELETE = %s %s, want 404 OperationOutcome", u, resp.Status, body)
		}
	}
	if resp, _ := do(t, "DELETE", status, nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("second DELETE = %s, want 404", resp.Status)
	}
	if resp, _ := do(t, "GET", s.URL()+"/status/nope", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET unknown status = %s, want 404", resp.Status)
	}
}

func TestRangeIfRange(t *testing.T) {
	s := start(t, Options{})
	m, _ := poll(t, kickoff(t, s, "/$export", url.Values{"_type": {"Observation"}}, nil), nil)
	u := m.Output[0].URL
	resp, full := do(t, "GET", u, nil, nil)
	tag := resp.Header.Get("ETag")
	if tag == "" || strings.HasPrefix(tag, "W/") || resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("GET file: ETag %q Accept-Ranges %q, want a strong ETag and bytes", tag, resp.Header.Get("Accept-Ranges"))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/fhir+ndjson" {
		t.Errorf("file Content-Type = %q, want application/fhir+ndjson", ct)
	}
	tests := []struct {
		h      http.Header
		status int
		body   []byte
	}{
		{http.Header{"Range": {"bytes=10-"}}, 206, full[10:]},
		{http.Header{"Range": {"bytes=10-"}, "If-Range": {tag}}, 206, full[10:]},
		{http.Header{"Range": {"bytes=10-"}, "If-Range": {`"other"`}}, 200, full},
		{http.Header{"If-None-Match": {tag}}, 304, nil},
	}
	for _, tt := range tests {
		resp, body := do(t, "GET", u, tt.h, nil)
		if resp.StatusCode != tt.status || !bytes.Equal(body, tt.body) {
			t.Errorf("GET file with %v = %s (%d bytes), want %d (%d bytes)", tt.h, resp.Status, len(body), tt.status, len(tt.body))
		}
	}
}

func TestGzip(t *testing.T) {
	s := start(t, Options{Gzip: true})
	m, _ := poll(t, kickoff(t, s, "/$export", url.Values{"_type": {"Observation"}}, nil), nil)
	u := m.Output[0].URL
	_, plain := do(t, "GET", u, nil, nil)
	resp, zipped := do(t, "GET", u, http.Header{"Accept-Encoding": {"gzip"}}, nil)
	if resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Vary") != "Accept-Encoding" {
		t.Fatalf("Accept-Encoding gzip: Content-Encoding %q Vary %q, want gzip and Accept-Encoding",
			resp.Header.Get("Content-Encoding"), resp.Header.Get("Vary"))
	}
	zr, err := gzip.NewReader(bytes.NewReader(zipped))
	if err != nil {
		t.Fatal(err)
	}
	unzipped, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(unzipped, plain) {
		t.Errorf("gunzipped body (%v) differs from the identity body", err)
	}
	resp, body := do(t, "GET", u, http.Header{"Accept-Encoding": {"gzip"}, "Range": {"bytes=5-"}}, nil)
	if resp.StatusCode != 206 || resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(body, plain[5:]) {
		t.Errorf("gzip with Range = %s Content-Encoding %q, want 206 identity bytes", resp.Status, resp.Header.Get("Content-Encoding"))
	}
	resp, _ = do(t, "GET", u, http.Header{"Accept-Encoding": {"gzip;q=0"}}, nil)
	if resp.Header.Get("Content-Encoding") != "" {
		t.Errorf("gzip;q=0 got Content-Encoding %q, want identity", resp.Header.Get("Content-Encoding"))
	}
}

func TestRequiresToken(t *testing.T) {
	s := start(t, Options{RequiresToken: true})
	m, _ := poll(t, kickoff(t, s, "/$export", url.Values{"_type": {"Patient"}}, nil), nil)
	if !m.RequiresAccessToken {
		t.Error("requiresAccessToken = false, want true")
	}
	if resp, _ := do(t, "GET", m.Output[0].URL, nil, nil); resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("file without Authorization = %s, want 401 with WWW-Authenticate", resp.Status)
	}
	if resp, _ := do(t, "GET", m.Output[0].URL, http.Header{"Authorization": {"Bearer static"}}, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("file with Authorization = %s, want 200", resp.Status)
	}
}

func TestFilesOrigin(t *testing.T) {
	s := start(t, Options{FilesOrigin: true, FilesRejectAuth: true, RequiresToken: false})
	files, _ := url.Parse(s.FilesURL())
	base, _ := url.Parse(s.URL())
	if files == nil || files.Host == base.Host {
		t.Fatalf("FilesURL() = %q, want another origin than %q", s.FilesURL(), s.URL())
	}
	m, _ := poll(t, kickoff(t, s, "/$export", url.Values{"_type": {"DocumentReference"}}, nil), nil)
	u := m.Output[0].URL
	if !strings.HasPrefix(u, s.FilesURL()+"/") {
		t.Errorf("file URL %s is not on the files origin %s", u, s.FilesURL())
	}
	line := fileLines(t, u, nil)[0]
	att := gjson.GetBytes(line, "content.2.attachment.url").Str
	if att != s.FilesURL()+"/Binary/b2" {
		t.Errorf("absolute attachment url = %q, want %s/Binary/b2", att, s.FilesURL())
	}
	if rel := gjson.GetBytes(line, "content.1.attachment.url").Str; rel != "Binary/b1" {
		t.Errorf("relative attachment url = %q, want Binary/b1 kept", rel)
	}
	if resp, body := do(t, "GET", att, http.Header{"Accept": {"application/pdf"}}, nil); resp.StatusCode != 200 || string(body) != "%PDF-1.4\n" {
		t.Errorf("GET %s = %s %q, want the PDF bytes", att, resp.Status, body)
	}
	for _, target := range []string{u, att} {
		resp, body := do(t, "GET", target, http.Header{"Authorization": {"Bearer secret"}}, nil)
		if resp.StatusCode != http.StatusBadRequest || !bytes.Contains(body, []byte("Only one auth mechanism")) {
			t.Errorf("GET %s with Authorization = %s %s, want 400 like presigned storage", target, resp.Status, body)
		}
	}
	recs := s.Requests()
	if last := recs[len(recs)-1]; last.Origin != "files" || last.Authorization != "Bearer secret" || last.Route != RouteBinary {
		t.Errorf("last request record = %+v, want the files origin Binary request with its Authorization", last)
	}
}

func TestReadEndpoints(t *testing.T) {
	s := start(t, Options{})
	tests := []struct {
		path, accept string
		status       int
		ctype        string
		body         string // exact, or a gjson path=value check when it starts with "$"
	}{
		{"/Binary/b1", "text/plain", 200, "text/plain; charset=utf-8", "hello world"},
		{"/Binary/b1", "", 200, "text/plain; charset=utf-8", "hello world"},
		{"/Binary/b1", "*/*", 200, "text/plain; charset=utf-8", "hello world"},
		{"/Binary/b1", "application/fhir+json", 200, "application/fhir+json", "$data=" + base64.StdEncoding.EncodeToString([]byte("hello world"))},
		{"/Binary/b1", "application/json", 200, "application/fhir+json", "$contentType=text/plain; charset=utf-8"},
		{"/Binary/b2", "application/pdf", 200, "application/pdf", "%PDF-1.4\n"},
		{"/Binary/nope", "", 404, "application/fhir+json", "$resourceType=OperationOutcome"},
		{"/Medication/med1", "application/fhir+json", 200, "application/fhir+json", `{"resourceType":"Medication","id":"med1"}`},
		{"/Medication/nope", "", 404, "application/fhir+json", "$resourceType=OperationOutcome"},
		{"/Group/g1", "", 200, "application/fhir+json", "$member.1.entity.reference=Patient/p3"},
		{"/Group/nope", "", 404, "application/fhir+json", "$resourceType=OperationOutcome"},
		{"/nothing/here", "", 404, "application/fhir+json", "$resourceType=OperationOutcome"},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.accept != "" {
			h.Set("Accept", tt.accept)
		}
		resp, body := do(t, "GET", s.URL()+tt.path, h, nil)
		ok := resp.StatusCode == tt.status && resp.Header.Get("Content-Type") == tt.ctype
		if p, ok2 := strings.CutPrefix(tt.body, "$"); ok2 {
			path, val, _ := strings.Cut(p, "=")
			ok = ok && gjson.GetBytes(body, path).Str == val
		} else {
			ok = ok && string(body) == tt.body
		}
		if !ok {
			t.Errorf("GET %s (Accept %q) = %s %q %s, want %d %q %s", tt.path, tt.accept, resp.Status,
				resp.Header.Get("Content-Type"), body, tt.status, tt.ctype, tt.body)
		}
	}
}

func TestMetadataAndDiscovery(t *testing.T) {
	s := start(t, Options{Auth: AuthSMART, ClientID: "c", PublicKeys: [][]byte{testKeys(t).jwks}})
	_, body := do(t, "GET", s.URL()+"/metadata", nil, nil)
	for path, want := range map[string]string{
		"resourceType":     "CapabilityStatement",
		"software.name":    SoftwareName,
		"fhirVersion":      "4.0.1",
		"instantiates.0":   "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data",
		"software.version": "devel",
		"rest.0.security.extension.0.extension.0.valueUri": s.URL() + "/auth/token",
		`rest.0.resource.#(type=="Observation").type`:      "Observation",
	} {
		if got := gjson.GetBytes(body, path).String(); got != want && !(path == "software.version" && got != "") {
			t.Errorf("metadata %s = %q, want %q", path, got, want)
		}
	}
	if gjson.GetBytes(body, "software.releaseDate").Str == "" {
		t.Error("metadata lacks software.releaseDate")
	}
	_, body = do(t, "GET", s.URL()+"/.well-known/smart-configuration", nil, nil)
	if got := gjson.GetBytes(body, "token_endpoint").Str; got != s.URL()+"/auth/token" {
		t.Errorf("token_endpoint = %q, want %s/auth/token", got, s.URL())
	}
	for _, v := range []string{"RS384", "ES384"} {
		if !slices.Contains(strings.Fields(gjson.GetBytes(body, "token_endpoint_auth_signing_alg_values_supported.@join: ").String()), v) &&
			!strings.Contains(gjson.GetBytes(body, "token_endpoint_auth_signing_alg_values_supported").Raw, `"`+v+`"`) {
			t.Errorf("smart-configuration lacks signing alg %s: %s", v, body)
		}
	}
	if !strings.Contains(gjson.GetBytes(body, "token_endpoint_auth_methods_supported").Raw, "private_key_jwt") {
		t.Errorf("smart-configuration lacks private_key_jwt: %s", body)
	}
}

func TestFileSplitAndDeterminism(t *testing.T) {
	data := synth.Generate(synth.Options{Patients: 3, Seed: 7})
	a := start(t, Options{Data: data, FileLines: 50})
	b := start(t, Options{Patients: 3, Seed: 7, FileLines: 50})
	_, ma := export(t, a, "/$export", nil)
	_, mb := export(t, b, "/$export", nil)
	if len(ma.Output) != len(mb.Output) {
		t.Fatalf("two servers, same seed: %d and %d output files", len(ma.Output), len(mb.Output))
	}
	perType := map[string]int{}
	for i := range ma.Output {
		fa := bytes.Join(fileLines(t, ma.Output[i].URL, nil), []byte("\n"))
		fb := bytes.Join(fileLines(t, mb.Output[i].URL, nil), []byte("\n"))
		fa = bytes.ReplaceAll(fa, []byte(a.URL()), []byte("BASE"))
		fb = bytes.ReplaceAll(fb, []byte(b.URL()), []byte("BASE"))
		if !bytes.Equal(fa, fb) {
			t.Errorf("file %d (%s) differs between two servers with the same seed", i, ma.Output[i].Type)
		}
		if ma.Output[i].Count > 50 {
			t.Errorf("%s file has %d lines, want <= 50 (FileLines)", ma.Output[i].Type, ma.Output[i].Count)
		}
		perType[ma.Output[i].Type]++
	}
	if perType["Observation"] < 2 {
		t.Errorf("Observation files = %d, want the type split over several", perType["Observation"])
	}
	if bytes.Contains(bytes.Join(fileLines(t, ma.Output[len(ma.Output)-1].URL, nil), nil), []byte(synth.FilesBasePlaceholder)) {
		t.Error("the files placeholder leaked into an export file")
	}
}

func TestDataDir(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("1.Patient.ndjson", "\ufeff{\"resourceType\":\"Patient\",\"id\":\"a\"}\r\n\n{\"resourceType\":\"Patient\",\"id\":\"b\"}")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(`{"resourceType":"Observation","id":"o","subject":{"reference":"Patient/a"}}` + "\n"))
	zw.Close()
	write("Observation.000.ndjson.gz", gz.String())
	write("Group.ndjson", `{"resourceType":"Group","id":"g","member":[{"entity":{"reference":"Patient/b"}}]}`+"\n")
	write("log.ndjson", `{"not":"data"}`)
	write("manifest.json", `{}`)
	s := start(t, Options{DataDir: dir})
	got, _ := export(t, s, "/$export", nil)
	want := map[string][]string{"Patient": {"Patient/a", "Patient/b"}, "Observation": {"Observation/o"}, "Group": {"Group/g"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("--data export (-want +got):\n%s", d)
	}
	got, _ = export(t, s, "/Group/g/$export", url.Values{"_type": {"Patient"}})
	if d := cmp.Diff(map[string][]string{"Patient": {"Patient/b"}}, got); d != "" {
		t.Errorf("--data Group export (-want +got):\n%s", d)
	}
	write("Bad.Observation.ndjson", `{"resourceType":"Patient","id":"x"}`)
	if _, err := NewServer(Options{DataDir: dir}); err == nil || !strings.Contains(err.Error(), "Bad.Observation.ndjson") {
		t.Errorf("NewServer with a Patient in an Observation file: %v, want an error naming the file", err)
	}
}

func TestTypeFromName(t *testing.T) {
	for name, want := range map[string]string{
		"Patient.ndjson": "Patient", "1.Patient.ndjson": "Patient", "Patient.000.ndjson": "Patient",
		"Observation.001.ndjson.gz": "Observation", "log.ndjson": "", "manifest.json": "", "Patient.ndjson.part": "",
		"notes.ndjson": "",
	} {
		if got := typeFromName(name); got != want {
			t.Errorf("typeFromName(%q) = %q, want %q", name, got, want)
		}
	}
}

func FuzzParseInstant(f *testing.F) {
	for _, s := range []string{"2024-01-02T03:04:05Z", "2024-01-02T03:04:05.123+01:00", "2024-01-02", "2024-01", "2024", "2024-01-02T03:04Z", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := parseInstant(s)
		if err != nil {
			return
		}
		// A parsed instant read back in RFC 3339 means the same instant.
		b, err := parseInstant(a.Format(time.RFC3339Nano))
		if err != nil || !a.Equal(b) {
			t.Errorf("parseInstant(%q) = %v; round trip %v, %v", s, a, b, err)
		}
	})
}

// TestWarningMedications: the export's warning speaks of Medications only when the export holds
// MedicationRequests that reference them (issue 12.17); other exports get the plain warning.
func TestWarningMedications(t *testing.T) {
	s := start(t, Options{Patients: 3})
	tests := []struct {
		types string
		want  string
	}{
		{"", "Medication resources referenced by MedicationRequest"},
		{"MedicationRequest", "Medication resources referenced by MedicationRequest"},
		{"Patient,Observation", "bulkpipe test server: synthetic data"},
	}
	for _, tt := range tests {
		q := url.Values{}
		if tt.types != "" {
			q.Set("_type", tt.types)
		}
		m, _ := poll(t, kickoff(t, s, "/$export", q, nil), nil)
		if len(m.Error) != 1 {
			t.Fatalf("_type=%s: error items = %+v, want one", tt.types, m.Error)
		}
		got := gjson.GetBytes(fileLines(t, m.Error[0].URL, nil)[0], "issue.0.diagnostics").Str
		if !strings.HasPrefix(got, tt.want) {
			t.Errorf("_type=%s: warning = %q, want %q…", tt.types, got, tt.want)
		}
	}
}
