package fhirclient

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"no base", Options{}, "no FHIR base URL"},
		{"ftp", Options{FHIRBase: "ftp://x/fhir"}, "want an absolute http or https URL"},
		{"relative", Options{FHIRBase: "/fhir"}, "want an absolute http or https URL"},
		{"no host", Options{FHIRBase: "http:///fhir"}, "want an absolute http or https URL"},
		{"no scheme", Options{FHIRBase: "127.0.0.1:8080/fhir"}, `FHIR base URL "127.0.0.1:8080/fhir": want an absolute http or https URL (did you mean https://127.0.0.1:8080/fhir?)`},
		{"password", Options{FHIRBase: "https://u:hunter2@x/fhir"}, "credentials in the URL"},
		{"query", Options{FHIRBase: "https://x/fhir?a=b"}, "no query or fragment"},
		{"fragment", Options{FHIRBase: "https://x/fhir#f"}, "no query or fragment"},
		{"bad url", Options{FHIRBase: "http://x:port/"}, "FHIR base URL"},
		{"bad origin", Options{FHIRBase: "https://x/fhir", TrustedOrigins: []string{"files.example.org"}}, "trusting origin files.example.org"},
		{"bad header name", Options{FHIRBase: "https://x/fhir", Header: http.Header{"X Bad": {"v"}}}, `header "X Bad": invalid name`},
		{"bad header value", Options{FHIRBase: "https://x/fhir", Header: http.Header{"X-Key": {"a\r\nInjected: yes"}}}, `header "X-Key": invalid value`},
	}
	for _, tt := range tests {
		_, err := New(tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: New = %v, want an error containing %q", tt.name, err, tt.wantErr)
			continue
		}
		for _, secret := range []string{"hunter2", "Injected"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s: New = %q, which quotes a secret", tt.name, err)
			}
		}
	}
}

func TestResolve(t *testing.T) {
	tests := []struct{ base, ref, want string }{
		{"https://x.org/api/fhir", "Binary/1", "https://x.org/api/fhir/Binary/1"},
		{"https://x.org/api/fhir/", "Binary/1", "https://x.org/api/fhir/Binary/1"},
		{"https://x.org/api/fhir", "metadata", "https://x.org/api/fhir/metadata"},
		{"https://x.org/api/fhir", "$export?_type=Patient,Observation", "https://x.org/api/fhir/$export?_type=Patient,Observation"},
		{"https://x.org/api/fhir", "Group/g1/$export", "https://x.org/api/fhir/Group/g1/$export"},
		{"https://x.org", "metadata", "https://x.org/metadata"},
		{"https://x.org/a%2Fb", "Binary/1", "https://x.org/a%2Fb/Binary/1"},
		{"https://x.org/api/fhir", "https://files.example.org/f.ndjson?sig=1", "https://files.example.org/f.ndjson?sig=1"},
		{"https://x.org/api/fhir", "HTTP://Other.org:8080/x", "http://Other.org:8080/x"},
		{"https://x.org/api/fhir", "/root/x", "https://x.org/root/x"},
		{"https://x.org/api/fhir", "//cdn.example.org/x", "https://cdn.example.org/x"},
	}
	for _, tt := range tests {
		c, _ := newTestClient(t, tt.base, Options{})
		got, err := c.Resolve(tt.ref)
		if err != nil {
			t.Errorf("Resolve(%q) against %s = %v", tt.ref, tt.base, err)
			continue
		}
		if got.String() != tt.want {
			t.Errorf("Resolve(%q) against %s = %s, want %s", tt.ref, tt.base, got, tt.want)
		}
	}
	c, _ := newTestClient(t, "https://x.org/api/fhir/", Options{})
	for _, bad := range []string{"", "urn:uuid:1234", "mailto:a@b", "http://x:bad/", "ftp://x/y"} {
		if u, err := c.Resolve(bad); err == nil {
			t.Errorf("Resolve(%q) = %s, want an error", bad, u)
		}
	}
	if got := c.Base().String(); got != "https://x.org/api/fhir" {
		t.Errorf("Base() = %s, want https://x.org/api/fhir", got)
	}
	c.Base().Path = "/changed"
	if got := c.Base().Path; got != "/api/fhir" {
		t.Errorf("Base() after changing a copy = %s, want /api/fhir", got)
	}
}

func TestDoRejectsBadURL(t *testing.T) {
	c, _ := newTestClient(t, "http://x.org/fhir", Options{})
	_, err := c.Do(t.Context(), &Request{Method: "DELETE", URL: "urn:uuid:1", Route: RouteStatus})
	if err == nil || !strings.HasPrefix(err.Error(), "DELETE resolving urn:uuid:1") {
		t.Errorf("Do(urn:uuid:1) = %v, want DELETE resolving urn:uuid:1: …", err)
	}
}

func TestMetadata(t *testing.T) {
	const capa = `{"resourceType":"CapabilityStatement","software":{"name":"Epic","version":"2024","releaseDate":"2024-05-01"},"fhirVersion":"4.0.1","publisher":"Epic Systems"}`
	srv, _ := serve(t, respond(capa))
	c, _ := newTestClient(t, srv.URL+"/fhir", Options{})
	got, err := c.Metadata(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := &Capability{SoftwareName: "Epic", SoftwareVersion: "2024", SoftwareReleaseDate: "2024-05-01",
		FHIRVersion: "4.0.1", Publisher: "Epic Systems", Raw: []byte(capa)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Metadata (-want +got):\n%s", diff)
	}
}

func TestMetadataErrors(t *testing.T) {
	tests := []struct {
		name string
		step http.HandlerFunc
		want string
	}{
		{"not json", respond("<CapabilityStatement/>"), "CapabilityStatement is not valid JSON"},
		{"wrong type", respond(`{"resourceType":"Bundle"}`), "expected a CapabilityStatement, got a Bundle"},
		{"no type", respond(`{"software":{"name":"Epic"}}`), "got JSON without a resourceType"},
		{"404", status(404, ""), "GET %s/fhir/metadata: 404 Not Found"},
	}
	for _, tt := range tests {
		srv, _ := serve(t, tt.step)
		c, _ := newTestClient(t, srv.URL+"/fhir", Options{})
		_, err := c.Metadata(t.Context())
		want := strings.Replace(tt.want, "%s", srv.URL, 1)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: Metadata = %v, want an error containing %q", tt.name, err, want)
		}
		if c.epic.Load() {
			t.Errorf("%s: Epic mode on after a failed Metadata", tt.name)
		}
	}
}

func TestDoer(t *testing.T) {
	tokenError := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(400)
		io.WriteString(w, `{"error":"invalid_client"}`)
	}
	srv, rec := serve(t, status(503, ""), tokenError)
	var events []RetryEvent
	c, _ := newTestClient(t, srv.URL+"/fhir", Options{Credentials: &fakeCreds{}, Version: "9",
		Header:  http.Header{"X-Api-Key": {"gateway"}},
		OnRetry: func(e RetryEvent) { events = append(events, e) }})
	form := url.Values{"grant_type": {"client_credentials"}}.Encode()
	req, err := http.NewRequestWithContext(t.Context(), "POST", srv.URL+"/fhir/auth/token", strings.NewReader(form))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.Doer(RouteToken).Do(req)
	if err != nil {
		t.Fatalf("Doer.Do = %v, want the 400 response", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || string(b) != `{"error":"invalid_client"}` {
		t.Errorf("Doer.Do = %d %q, want 400 with its body unread", resp.StatusCode, b)
	}
	reqs := rec.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2 (503 retried)", len(reqs))
	}
	for i, r := range reqs {
		if r.Body != form || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			t.Errorf("request %d = %q (%s), want the form replayed", i, r.Body, r.Header.Get("Content-Type"))
		}
		if got := r.Header.Get("Authorization"); got != "" {
			t.Errorf("request %d carried Authorization %q, want none on token requests", i, got)
		}
		if got := r.Header.Get("X-Api-Key"); got != "gateway" {
			t.Errorf("request %d X-Api-Key = %q, want the --header value (trusted origin)", i, got)
		}
		if got := r.Header.Get("User-Agent"); got != "bulkpipe/9" {
			t.Errorf("request %d User-Agent = %q, want bulkpipe/9", i, got)
		}
	}
	if len(events) != 1 || events[0].Route != RouteToken {
		t.Errorf("OnRetry events = %+v, want one on the token route", events)
	}

	// Give-up hands back the last response, as an http.Client would.
	srv2, rec2 := serve(t, status(503, ""))
	c2, _ := newTestClient(t, srv2.URL+"/fhir", Options{MaxAttempts: 2})
	req2, _ := http.NewRequestWithContext(t.Context(), "GET", srv2.URL+"/x", nil)
	resp2, err := c2.Doer(RouteToken).Do(req2)
	if err != nil || resp2.StatusCode != 503 {
		t.Fatalf("Doer.Do after retries = %v, %v; want the 503", resp2, err)
	}
	resp2.Body.Close()
	if n := len(rec2.Requests()); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}

	// Transport errors come back as errors.
	c3, _ := newTestClient(t, closedURL(t), Options{MaxAttempts: 1})
	req3, _ := http.NewRequestWithContext(t.Context(), "GET", c3.Base().String()+"/x", nil)
	if _, err := c3.Doer(RouteToken).Do(req3); err == nil {
		t.Errorf("Doer.Do to a closed port = nil error")
	}
}

func TestStatusErrorUnwrapNil(t *testing.T) {
	se := &StatusError{Method: "GET", URL: "u", StatusCode: 500, Status: "500 Internal Server Error"}
	if se.Unwrap() != nil {
		t.Errorf("Unwrap() without an outcome = %v, want a nil error (not a typed nil)", se.Unwrap())
	}
	if _, ok := errors.AsType[*OperationOutcome](se); ok {
		t.Errorf("errors.AsType[*OperationOutcome] found an outcome in %v", se)
	}
}

// TestMetadataWithoutCredentials: the CapabilityStatement is public, so Metadata asks for no
// token (a failing token endpoint must not matter to it); only a server that refuses the plain
// request gets a second one with credentials.
func TestMetadataWithoutCredentials(t *testing.T) {
	const capa = `{"resourceType":"CapabilityStatement","fhirVersion":"4.0.1"}`
	srv, rec := serve(t, respond(capa))
	creds := &fakeCreds{authErr: errors.New("token endpoint down")}
	c, _ := newTestClient(t, srv.URL+"/fhir", Options{Credentials: creds})
	if _, err := c.Metadata(t.Context()); err != nil {
		t.Fatalf("Metadata with a failing token endpoint = %v, want the CapabilityStatement", err)
	}
	if calls, _ := creds.counts(); calls != 0 {
		t.Errorf("Metadata asked the credentials %d times, want 0", calls)
	}
	if a := rec.Requests()[0].Header.Get("Authorization"); a != "" {
		t.Errorf("GET metadata sent Authorization %q, want none", a)
	}

	srv, rec = serve(t, status(http.StatusUnauthorized, ""), respond(capa))
	c, _ = newTestClient(t, srv.URL+"/fhir", Options{Credentials: &fakeCreds{static: true}})
	if _, err := c.Metadata(t.Context()); err != nil {
		t.Fatalf("Metadata behind auth = %v, want the CapabilityStatement", err)
	}
	reqs := rec.Requests()
	if len(reqs) != 2 || reqs[0].Header.Get("Authorization") != "" || reqs[1].Header.Get("Authorization") == "" {
		t.Errorf("Metadata behind auth sent %d requests, Authorization %q then %q; want none, then the token",
			len(reqs), reqs[0].Header.Get("Authorization"), reqs[len(reqs)-1].Header.Get("Authorization"))
	}
}

// TestOperationDefinition: a server's own export definition is read from the FHIR base, as the
// CapabilityStatement is (public, credentials only after a 401), and must be one.
func TestOperationDefinition(t *testing.T) {
	const def = `{"resourceType":"OperationDefinition","code":"export"}`
	srv, rec := serve(t, status(http.StatusUnauthorized, ""), respond(def))
	c, _ := newTestClient(t, srv.URL+"/fhir", Options{Credentials: &fakeCreds{static: true}})
	got, err := c.OperationDefinition(t.Context(), "group export")
	if err != nil || string(got) != def {
		t.Fatalf("OperationDefinition = %q, %v; want the definition", got, err)
	}
	reqs := rec.Requests()
	if len(reqs) != 2 || reqs[1].Path != "/fhir/OperationDefinition/group export" ||
		reqs[0].Header.Get("Authorization") != "" || reqs[1].Header.Get("Authorization") == "" ||
		reqs[1].Header.Get("Accept") != "application/fhir+json" {
		t.Errorf("OperationDefinition sent %d requests (last %s, Accept %q); want one without, then one with credentials, to the escaped id",
			len(reqs), reqs[len(reqs)-1].Path, reqs[len(reqs)-1].Header.Get("Accept"))
	}

	for _, tt := range []struct {
		step http.HandlerFunc
		want string
	}{
		{respond(`{"resourceType":"CapabilityStatement"}`), `expected an OperationDefinition, got "CapabilityStatement"`},
		{respond(`<html>`), `expected an OperationDefinition, got ""`},
		{status(404, ""), "/fhir/OperationDefinition/x: 404 Not Found"},
	} {
		srv, _ := serve(t, tt.step)
		c, _ := newTestClient(t, srv.URL+"/fhir", Options{})
		if _, err := c.OperationDefinition(t.Context(), "x"); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("OperationDefinition = %v, want an error containing %q", err, tt.want)
		}
	}
}
