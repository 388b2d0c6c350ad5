package fhirtest

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseFlags(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "public.jwks"), []byte(`{"keys":[]}`), 0o644)
	os.WriteFile(filepath.Join(dir, "client-id.txt"), []byte("from-file\n"), 0o644)
	got, err := ParseFlags(nil, "")
	want := Options{Addr: DefaultAddr, BasePath: "/fhir", Patients: DefaultPatients, Auth: "none", TokenTTL: 5 * time.Minute,
		Polls: 2, RetryAfter: time.Second, Profile: "v3", FileLines: DefaultFileLines, EpicParams: ParamsSupported, RateBlock: 5 * time.Minute}
	if d := cmp.Diff(want, got, cmpopts.IgnoreFields(Options{}, "Now")); err != nil || d != "" {
		t.Errorf("ParseFlags(nil) = %v (-want +got):\n%s", err, d)
	}
	got, err = ParseFlags(strings.Fields(`--addr 127.0.0.1:8080 --base-path /r4 --patients 3 --seed -9 --data in
		--auth smart --client-id client-id.txt --public-key public.jwks --public-key /dev/null --token-ttl 1500ms
		--requires-token --strict-scopes --files-origin --files-reject-auth=true --gzip --page-size 2 --polls 0 --retry-after 0
		--profile v4 --file-lines 7 --fault 500@status*2 --fault b64-size`), dir)
	want = Options{Addr: "127.0.0.1:8080", BasePath: "/r4", Patients: 3, Seed: -9, DataDir: filepath.Join(dir, "in"),
		Auth: "smart", ClientID: "from-file", PublicKeys: [][]byte{[]byte(`{"keys":[]}`), {}}, TokenTTL: 1500 * time.Millisecond,
		RequiresToken: true, StrictScopes: true, FilesOrigin: true, FilesRejectAuth: true, Gzip: true, PageSize: 2, Profile: "v4", FileLines: 7,
		Faults: []Fault{{Kind: "500", Route: "status", Count: 2}, {Kind: "b64-size"}}, EpicParams: ParamsSupported, RateBlock: 5 * time.Minute}
	if d := cmp.Diff(want, got, cmpopts.IgnoreFields(Options{}, "Now"), cmpopts.EquateEmpty()); err != nil || d != "" {
		t.Errorf("ParseFlags(every flag) = %v (-want +got):\n%s", err, d)
	}
	for _, tt := range []struct{ args, want string }{
		{"--bogus", "flag provided but not defined: -bogus"},
		{"--patients many", "--patients many: want a whole number >= 0"},
		{"--token-ttl 5", "--token-ttl 5: want a duration"},
		{"--token-ttl 0s", "--token-ttl 0s: must be more than 0"},
		{"--retry-after soon", "--retry-after soon: want a duration"},
		{"--profile v5", "--profile v5: want v2, v3 or v4"},
		{"--auth basic", "--auth basic: want none or smart"},
		{"--fault bogus", `--fault: bad fault spec "bogus": unknown kind "bogus"`},
		{"--auth smart --public-key x.pem", "--public-key: open"},
		{"--auth smart --client-id c", "--auth smart needs --public-key"},
		{"--client-id c", "--client-id and --public-key need --auth smart"},
		{"--files-reject-auth", "--files-reject-auth needs --files-origin"},
		{"--strict-scopes", "--strict-scopes needs --auth smart"},
		{"extra", `unexpected argument "extra"`},
		{"--vendor cerner", "--vendor cerner: want epic, oracle, smart or hapi"},
		{"--epic-params rejected", "--epic-params needs --vendor epic"},
		{"--rate-limit -1", "--rate-limit -1: want a whole number >= 0"},
	} {
		_, err := ParseFlags(strings.Fields(tt.args), dir)
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseFlags(%s) = %v, want one line starting %q", tt.args, err, tt.want)
		}
	}
}

func TestFlagsCoverOptions(t *testing.T) {
	// Every flag has a usage and a default shown when it has one; names are unique.
	seen := map[string]bool{}
	for _, f := range Flags() {
		if seen[f.Name] || f.Usage == "" {
			t.Errorf("flag %q: duplicate or without usage", f.Name)
		}
		seen[f.Name] = true
	}
}

func FuzzKickoffParams(f *testing.F) {
	for _, s := range []string{
		"_type=Patient,Observation&_since=2024-01-01",
		"_typeFilter=Observation%3Fcategory%3Dlaboratory%252Cvital-signs",
		"_typeFilter=Observation%3Fcategory%3Amissing%3Dtrue&_elements=Observation.code,id",
		"_typeFilter=Observation%3F_lastUpdated%3Dge2024-01-01%26status%3Dfinal&_until=2025",
	} {
		f.Add(s, false)
	}
	f.Add(`{"resourceType":"Parameters","parameter":[{"name":"patient","valueReference":{"reference":"Patient/p1"}}]}`, true)
	s, err := NewServer(Options{Data: tinyData()})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	f.Fuzz(func(t *testing.T, in string, post bool) {
		var r *http.Request
		if post {
			r = httptest.NewRequest("POST", "/fhir/Patient/$export", strings.NewReader(in))
		} else {
			r = httptest.NewRequest("GET", "/fhir/$export", nil)
			r.URL.RawQuery = in
		}
		req, err := s.parseKickoff(r, levelPatient, "", false)
		if err != nil {
			if _, ok := err.(badRequest); !ok {
				t.Errorf("parseKickoff(%q): %v is not a badRequest", in, err)
			}
			return
		}
		for _, filters := range req.Filters {
			for _, and := range filters {
				for _, c := range and {
					if c.Name == "_lastUpdated" && len(c.instants) != len(c.Values) {
						t.Errorf("parseKickoff(%q): _lastUpdated values not all parsed", in)
					}
				}
			}
		}
		req.matches("Observation", &s.data.res["Observation"][0])
	})
}
