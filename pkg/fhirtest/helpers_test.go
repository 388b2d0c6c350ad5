package fhirtest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest/synth"
)

// tinyData is a hand-made data set whose every resource a test can name.
func tinyData() *synth.Dataset {
	obs := func(id, patient, category, updated string) []byte {
		cat := ""
		if category != "" {
			cat = `,"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"` + category + `"}]}]`
		}
		subj := ""
		if patient != "" {
			subj = `,"subject":{"reference":"Patient/` + patient + `"}`
		}
		return []byte(`{"resourceType":"Observation","id":"` + id + `","meta":{"lastUpdated":"` + updated + `"},"status":"final"` + cat + `,"code":{"text":"x"}` + subj + `}`)
	}
	return &synth.Dataset{
		Types: []string{"Patient", "Observation", "DocumentReference", "MedicationRequest"},
		Resources: map[string][][]byte{
			"Patient": {
				[]byte(`{"resourceType":"Patient","id":"p1","meta":{"lastUpdated":"2024-01-01T00:00:00Z"},"gender":"female"}`),
				[]byte(`{"resourceType":"Patient","id":"p2","meta":{"lastUpdated":"2024-02-01T00:00:00Z"},"gender":"male"}`),
				[]byte(`{"resourceType":"Patient","id":"p3","meta":{"lastUpdated":"2024-03-01T00:00:00+01:00"},"gender":"other"}`),
			},
			"Observation": {
				obs("o1", "p1", "laboratory", "2024-01-10T00:00:00Z"),
				obs("o2", "p2", "vital-signs", "2024-02-10T00:00:00Z"),
				obs("o3", "p3", "", "2024-03-10T00:00:00Z"),
				obs("o4", "p1", "social-history", "2024-04-10T00:00:00Z"),
				obs("o5", "", "laboratory", "2024-05-10T00:00:00Z"), // in no patient compartment
			},
			"DocumentReference": {
				[]byte(`{"resourceType":"DocumentReference","id":"d1","meta":{"lastUpdated":"2024-01-05T00:00:00Z"},"subject":{"reference":"Patient/p1"},"content":[` +
					`{"attachment":{"contentType":"text/plain","data":"aGVsbG8=","size":5}},` +
					`{"attachment":{"contentType":"text/plain; charset=utf-8","url":"Binary/b1","size":11}},` +
					`{"attachment":{"contentType":"application/pdf","url":"{{FILES_BASE}}/Binary/b2","size":9}}]}`),
			},
			"MedicationRequest": {
				[]byte(`{"resourceType":"MedicationRequest","id":"m1","meta":{"lastUpdated":"2024-02-05T00:00:00Z"},"subject":{"reference":"Patient/p2"},"medicationReference":{"reference":"Medication/med1"}}`),
			},
		},
		Binaries: map[string]synth.Binary{
			"b1": {ContentType: "text/plain; charset=utf-8", Data: []byte("hello world")},
			"b2": {ContentType: "application/pdf", Data: []byte("%PDF-1.4\n")},
		},
		Medications: map[string][]byte{"med1": []byte(`{"resourceType":"Medication","id":"med1"}`)},
		Groups:      map[string][]string{"g1": {"p1", "p3"}, "empty": {}},
	}
}

// start runs a server for one test.
func start(t *testing.T, opts Options) *Server {
	t.Helper()
	if opts.Data == nil && opts.DataDir == "" && opts.Patients == 0 {
		opts.Data = tinyData()
	}
	s, err := NewServer(opts)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// do sends one request and returns the response with its body read.
func do(t *testing.T, method, u string, header http.Header, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	maps := header.Clone()
	if maps != nil {
		req.Header = maps
	}
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, u, err)
	}
	return resp, b
}

func kickoffHeader() http.Header {
	return http.Header{"Accept": {"application/fhir+json"}, "Prefer": {"respond-async"}}
}

// kickoff starts an export with GET (query) and returns the status URL; it fails unless 202.
func kickoff(t *testing.T, s *Server, path string, q url.Values, h http.Header) string {
	t.Helper()
	if h == nil {
		h = kickoffHeader()
	}
	u := s.URL() + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	resp, body := do(t, "GET", u, h, nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("GET %s = %s %s, want 202", u, resp.Status, body)
	}
	return resp.Header.Get("Content-Location")
}

// parameters builds a FHIR Parameters body.
func parameters(kv ...string) []byte {
	var ps []map[string]any
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == "patient" {
			ps = append(ps, map[string]any{"name": kv[i], "valueReference": map[string]string{"reference": kv[i+1]}})
			continue
		}
		ps = append(ps, map[string]any{"name": kv[i], "valueString": kv[i+1]})
	}
	b, _ := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": ps})
	return b
}

// manifestT is a manifest as a test reads it.
type manifestT struct {
	TransactionTime     string  `json:"transactionTime"`
	Request             *string `json:"request"`
	RequiresAccessToken bool    `json:"requiresAccessToken"`
	Output              []itemT `json:"output"`
	Deleted             []itemT `json:"deleted"`
	Error               []itemT `json:"error"`
	Outcome             []itemT `json:"outcome"`
	Link                []struct {
		Relation, URL string
	} `json:"link"`
}

type itemT struct {
	Type  string `json:"type"`
	URL   string `json:"url"`
	Count int    `json:"count"`
}

// poll GETs the status URL until the manifest comes (at most 20 times).
func poll(t *testing.T, statusURL string, h http.Header) (*manifestT, *http.Response) {
	t.Helper()
	for range 20 {
		resp, body := do(t, "GET", statusURL, h, nil)
		switch resp.StatusCode {
		case http.StatusAccepted:
			continue
		case http.StatusOK:
			var m manifestT
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatalf("manifest %s: %v", body, err)
			}
			return &m, resp
		default:
			t.Fatalf("GET %s = %s %s", statusURL, resp.Status, body)
		}
	}
	t.Fatalf("GET %s: still 202 after 20 polls", statusURL)
	return nil, nil
}

// export kicks off, polls, downloads every output file and returns type → resource keys
// ("Observation/o1") in file order.
func export(t *testing.T, s *Server, path string, q url.Values) (map[string][]string, *manifestT) {
	t.Helper()
	m, _ := poll(t, kickoff(t, s, path, q, nil), nil)
	return outputIDs(t, m, nil), m
}

func outputIDs(t *testing.T, m *manifestT, h http.Header) map[string][]string {
	t.Helper()
	got := map[string][]string{}
	for _, it := range m.Output {
		for _, line := range fileLines(t, it.URL, h) {
			got[it.Type] = append(got[it.Type], gjson.GetBytes(line, "resourceType").Str+"/"+gjson.GetBytes(line, "id").Str)
		}
	}
	return got
}

// fileLines downloads a file and splits it into lines.
func fileLines(t *testing.T, u string, h http.Header) [][]byte {
	t.Helper()
	resp, body := do(t, "GET", u, h, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %s %s", u, resp.Status, body)
	}
	return bytes.Split(bytes.TrimSuffix(body, []byte("\n")), []byte("\n"))
}

// ids returns the sorted ids of keys of one type.
func ids(keys []string) []string {
	var out []string
	for _, k := range keys {
		_, id, _ := strings.Cut(k, "/")
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// fakeClock is a settable clock for token and Retry-After tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
