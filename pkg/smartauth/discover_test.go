package smartauth

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDiscover(t *testing.T) {
	var doc string
	var status int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/fhir/.well-known/smart-configuration" || r.Header.Get("Accept") != "application/json" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, doc)
	}))
	defer srv.Close()

	tests := []struct {
		name    string
		base    string
		status  int
		doc     string
		want    *Discovery
		errWant string
	}{
		{"v1 scopes", srv.URL + "/fhir", 200,
			`{"token_endpoint":"https://ehr.example/token","scopes_supported":["system/*.read","openid"]}`,
			&Discovery{TokenEndpoint: "https://ehr.example/token", ScopesSupported: []string{"system/*.read", "openid"}}, ""},
		{"trailing slash on base", srv.URL + "/fhir/", 200, `{"token_endpoint":"https://ehr.example/token"}`,
			&Discovery{TokenEndpoint: "https://ehr.example/token"}, ""},
		{"v1 and v2 scopes, no capability → v1", srv.URL + "/fhir", 200,
			`{"token_endpoint":"https://ehr.example/token","scopes_supported":["system/*.rs","system/*.read"]}`,
			&Discovery{TokenEndpoint: "https://ehr.example/token", ScopesSupported: []string{"system/*.rs", "system/*.read"}}, ""},
		{"only v2 scopes", srv.URL + "/fhir", 200,
			`{"token_endpoint":"https://ehr.example/token","scopes_supported":["system/*.cruds","system/Patient.rs?category=x","launch/patient","openid"]}`,
			&Discovery{TokenEndpoint: "https://ehr.example/token", V2: true,
				ScopesSupported: []string{"system/*.cruds", "system/Patient.rs?category=x", "launch/patient", "openid"}}, ""},
		{"v2 by capability", srv.URL + "/fhir", 200,
			`{"token_endpoint":"https://ehr.example/token","capabilities":["client-confidential-asymmetric","permission-v2"]}`,
			&Discovery{TokenEndpoint: "https://ehr.example/token", V2: true}, ""},
		{"both capabilities → v2", srv.URL + "/fhir", 200,
			`{"token_endpoint":"https://ehr.example/token","capabilities":["permission-v1","permission-v2"]}`,
			&Discovery{TokenEndpoint: "https://ehr.example/token", V2: true}, ""},
		{"permission-v2 wins over v1 scopes", srv.URL + "/fhir", 200,
			`{"token_endpoint":"https://ehr.example/token","scopes_supported":["system/*.read"],"capabilities":["permission-v2"]}`,
			&Discovery{TokenEndpoint: "https://ehr.example/token", V2: true, ScopesSupported: []string{"system/*.read"}}, ""},
		{"only v2 scopes listed, permission-v1 → v2 (v1 would be refused)", srv.URL + "/fhir", 200,
			`{"token_endpoint":"https://ehr.example/token","scopes_supported":["system/*.rs"],"capabilities":["permission-v1"]}`,
			&Discovery{TokenEndpoint: "https://ehr.example/token", V2: true, ScopesSupported: []string{"system/*.rs"}}, ""},
		{"no capabilities, no scopes → v1", srv.URL + "/fhir", 200,
			`{"token_endpoint":"https://ehr.example/token","capabilities":["client-confidential-asymmetric"]}`,
			&Discovery{TokenEndpoint: "https://ehr.example/token"}, ""},
		{"relative token endpoint", srv.URL + "/fhir", 200, `{"token_endpoint":"../auth/token"}`,
			&Discovery{TokenEndpoint: srv.URL + "/fhir/auth/token"}, ""},
		{"no token endpoint", srv.URL + "/fhir", 200, `{"scopes_supported":[]}`, nil, "no token_endpoint"},
		{"not an http URL", srv.URL + "/fhir", 200, `{"token_endpoint":"ftp://x/token"}`, nil, "not an http(s) URL"},
		{"not JSON", srv.URL + "/fhir", 200, `<html>`, nil, "parse JSON"},
		{"404", srv.URL + "/fhir", 404, `{}`, nil, "/fhir/.well-known/smart-configuration: 404 Not Found"},
		{"wrong base", srv.URL + "/other", 200, `{}`, nil, "404 Not Found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, status = tt.doc, tt.status
			got, err := Discover(t.Context(), srv.Client(), tt.base)
			if tt.errWant != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errWant) || !strings.Contains(err.Error(), "smart-configuration") {
					t.Errorf("Discover(%q) = %+v, %v; want an error naming the URL and containing %q", tt.base, got, err, tt.errWant)
				}
				return
			}
			if err != nil {
				t.Fatalf("Discover(%q) = %v", tt.base, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Discover(%q) (-want +got):\n%s", tt.base, diff)
			}
		})
	}
}

func TestDiscoverTransportError(t *testing.T) {
	boom := errors.New("connection refused")
	d := doerFunc(func(*http.Request) (*http.Response, error) { return nil, boom })
	if _, err := Discover(context.Background(), d, "https://ehr.example/fhir"); !errors.Is(err, boom) ||
		!strings.Contains(err.Error(), "GET https://ehr.example/fhir/.well-known/smart-configuration") {
		t.Errorf("Discover = %v, want the transport error and the URL", err)
	}
}

func TestScopeVersion(t *testing.T) {
	tests := []struct {
		scope string
		want  int
	}{
		{"system/*.read", 1}, {"patient/Observation.write", 1}, {"user/*.*", 1},
		{"system/*.rs", 2}, {"system/Patient.r", 2}, {"system/*.cruds", 2}, {"patient/Observation.rs?category=laboratory", 2},
		{"system/*.src", 0}, {"system/*.", 0}, {"openid", 0}, {"launch/patient", 0}, {"fhirUser", 0}, {"", 0},
	}
	for _, tt := range tests {
		if got := scopeVersion(tt.scope); got != tt.want {
			t.Errorf("scopeVersion(%q) = %d, want %d", tt.scope, got, tt.want)
		}
	}
}

func TestScopes(t *testing.T) {
	tests := []struct {
		types, linked []string
		v2            bool
		want          []string
	}{
		{nil, nil, false, []string{"system/*.read"}},
		{nil, nil, true, []string{"system/*.rs"}},
		{[]string{"", " "}, nil, false, []string{"system/*.read"}},
		{[]string{"Patient", "Observation"}, nil, false, []string{"system/Patient.read", "system/Observation.read"}},
		{[]string{"Patient", "Observation"}, nil, true, []string{"system/Patient.rs", "system/Observation.rs"}},
		// Steps that do not fetch attachments or Medications never ask for Binary or Medication:
		// the SMART reference server refuses the token for system/Binary.read.
		{[]string{"Patient", "DocumentReference", "DiagnosticReport"}, nil, false,
			[]string{"system/Patient.read", "system/DocumentReference.read", "system/DiagnosticReport.read"}},
		{[]string{"Patient, MedicationRequest"}, nil, false, []string{"system/Patient.read", "system/MedicationRequest.read"}},
		{[]string{"DocumentReference", "DiagnosticReport"}, []string{"Binary"}, false,
			[]string{"system/DocumentReference.read", "system/DiagnosticReport.read", "system/Binary.read"}},
		{[]string{"MedicationRequest", "Medication"}, []string{"Medication", "Binary"}, true,
			[]string{"system/MedicationRequest.rs", "system/Medication.rs", "system/Binary.rs"}},
		{[]string{"Binary", "DocumentReference", "Patient", "Patient"}, []string{"Binary"}, false,
			[]string{"system/Binary.read", "system/DocumentReference.read", "system/Patient.read"}},
		// Every type already covers the linked ones.
		{nil, []string{"Binary"}, false, []string{"system/*.read"}},
		{[]string{"Patient", "*"}, []string{"Binary"}, false, []string{"system/*.read"}},
	}
	for _, tt := range tests {
		if got := Scopes(tt.types, tt.linked, tt.v2); !cmp.Equal(got, tt.want) {
			t.Errorf("Scopes(%q, %q, %v) = %q, want %q", tt.types, tt.linked, tt.v2, got, tt.want)
		}
	}
}

func TestClientID(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "client-id")
	if err := os.WriteFile(file, []byte("  8f6c-epic-client\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		value, want, errWant string
	}{
		{file, "8f6c-epic-client", ""},
		{"my-client", "my-client", ""},
		{" my-client\n", "my-client", ""},
		{"https://app.example/client", "https://app.example/client", ""},
		{filepath.Join(dir, "missing"), filepath.Join(dir, "missing"), ""},
		{empty, "", "client id file " + empty + " is empty"},
		{"", "", "client id is empty"},
		{" ", "", "client id is empty"},
	}
	for _, tt := range tests {
		got, err := ClientID(tt.value)
		if tt.errWant != "" {
			if err == nil || err.Error() != tt.errWant {
				t.Errorf("ClientID(%q) = %q, %v; want error %q", tt.value, got, err, tt.errWant)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ClientID(%q) = %q, %v; want %q", tt.value, got, err, tt.want)
		}
	}
}

func TestStatic(t *testing.T) {
	tests := []struct {
		name    string
		s       *Static
		want    string
		errWant string
	}{
		{"bearer", Bearer("abc.def"), "Bearer abc.def", ""},
		{"bearer from a file", Bearer(" abc.def\r\n"), "Bearer abc.def", ""},
		{"empty bearer", Bearer("\n"), "", "bearer token is empty"},
		{"bearer with a space", Bearer("abc def"), "", "whitespace or control characters"},
		// RFC 7617 §2's example.
		{"basic", Basic("Aladdin", "open sesame"), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", ""},
		{"basic with a colon in the password", Basic("u", "p:w"), "Basic " + base64.StdEncoding.EncodeToString([]byte("u:p:w")), ""},
		{"basic with a colon in the user", Basic("u:x", "p"), "", "must not contain a colon"},
	}
	for _, tt := range tests {
		got, err := tt.s.Authorization(t.Context())
		if tt.errWant != "" {
			if err == nil || !strings.Contains(err.Error(), tt.errWant) {
				t.Errorf("%s: Authorization = %q, %v; want error containing %q", tt.name, got, err, tt.errWant)
			}
		} else if err != nil || got != tt.want {
			t.Errorf("%s: Authorization = %q, %v; want %q", tt.name, got, err, tt.want)
		}
		if err := tt.s.Reauthorize(t.Context()); !errors.Is(err, ErrStatic) {
			t.Errorf("%s: Reauthorize = %v, want ErrStatic", tt.name, err)
		}
		for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
			if s := fmt.Sprintf(format, tt.s); strings.Contains(s, "abc") || strings.Contains(s, "QWxh") {
				t.Errorf("%s: Sprintf(%q) = %q, shows the secret", tt.name, format, s)
			}
		}
	}
}

func FuzzParseDiscovery(f *testing.F) {
	f.Add([]byte(`{"token_endpoint":"https://ehr.example/token","scopes_supported":["system/*.rs"]}`))
	f.Add([]byte(`{"token_endpoint":"../token","capabilities":["permission-v2"]}`))
	f.Add([]byte(`{"token_endpoint":"%zz"}`))
	f.Add([]byte(`{"token_endpoint":1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := parseDiscovery(body, nil, "https://ehr.example/fhir/.well-known/smart-configuration")
		if err == nil && !strings.HasPrefix(d.TokenEndpoint, "http") {
			t.Errorf("parseDiscovery(%q).TokenEndpoint = %q, want an http(s) URL", body, d.TokenEndpoint)
		}
	})
}

func FuzzParseToken(f *testing.F) {
	f.Add([]byte(`{"access_token":"a","token_type":"bearer","expires_in":3600}`))
	f.Add([]byte(`{"access_token":"a","expires_in":"1e400"}`))
	f.Add([]byte(`{"error":"invalid_client","error_description":"x"}`))
	f.Add([]byte(`{"expires_in":-1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		tr, _ := parseToken(body)
		if d := tr.lifetime(); d <= 0 {
			t.Errorf("parseToken(%q).lifetime() = %v, want > 0", body, d)
		}
		_ = snippet(string(body))
	})
}
