package fhirclient

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestTrusted(t *testing.T) {
	c, _ := newTestClient(t, "https://FHIR.example.org/api/fhir", Options{
		TrustedOrigins: []string{"https://files.example.org:8443", "http://10.0.0.1", "https://[2001:db8::1]/x"},
	})
	tests := []struct {
		url  string
		want bool
	}{
		{"https://fhir.example.org/anything", true},
		{"https://fhir.example.org:443/x", true},
		{"HTTPS://Fhir.Example.Org./x", true},
		{"http://fhir.example.org/x", false},       // scheme differs
		{"https://fhir.example.org:8443/x", false}, // port differs
		{"https://evil.fhir.example.org/x", false}, // subdomain
		{"https://fhir.example.org.evil/x", false},
		{"https://files.example.org:8443/f", true},
		{"https://files.example.org/f", false},
		{"http://10.0.0.1:80/f", true},
		{"https://[2001:db8::1]:443/f", true},
		{"ftp://fhir.example.org/x", false},
		{"https://fhir.example.org:99999/x", false},
		{"/relative", false},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.url)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Trusted(u); got != tt.want {
			t.Errorf("Trusted(%s) = %v, want %v", tt.url, got, tt.want)
		}
	}
	if c.Trusted(nil) {
		t.Errorf("Trusted(nil) = true, want false")
	}
	if err := c.Trust("https://status.example.org/jobs/1?x=y"); err != nil {
		t.Fatal(err)
	}
	if u, _ := url.Parse("https://status.example.org:443/other"); !c.Trusted(u) {
		t.Errorf("Trusted(status origin) = false after Trust, want true")
	}
	for _, bad := range []string{"files.example.org", "ftp://x", "https://", "http://x:bad", "%zz"} {
		if err := c.Trust(bad); err == nil {
			t.Errorf("Trust(%q) = nil, want an error", bad)
		}
	}
}

// tokenServers starts a trusted FHIR server and an untrusted one on another port of the same host:
// exactly the pair across which net/http keeps Authorization on a redirect.
func tokenServers(t *testing.T) (fhir, other string, fhirRec, otherRec *recorder) {
	t.Helper()
	otherSrv, otherRec := serve(t, respond("{}"))
	fhirSrv, fhirRec := serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/fhir/away":
			http.Redirect(w, r, otherSrv.URL+"/files/1", http.StatusFound)
		case "/fhir/here":
			http.Redirect(w, r, "/fhir/target", http.StatusFound)
		default:
			w.Write([]byte("{}"))
		}
	})
	return fhirSrv.URL, otherSrv.URL, fhirRec, otherRec
}

// TestRedirectPremise pins why the transport sets Authorization per hop: plain net/http forwards
// it to another port of the same host.
func TestRedirectPremise(t *testing.T) {
	fhir, _, _, otherRec := tokenServers(t)
	req, _ := http.NewRequest("GET", fhir+"/fhir/away", nil)
	req.Header.Set("Authorization", "Bearer leaked")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := otherRec.Requests()[0].Header.Get("Authorization"); got != "Bearer leaked" {
		t.Skipf("net/http no longer forwards Authorization across ports (got %q); the transport's rule is now belt and braces", got)
	}
}

func TestTokenNotFollowingRedirectToOtherPort(t *testing.T) {
	fhir, _, fhirRec, otherRec := tokenServers(t)
	creds := &fakeCreds{}
	c, _ := newTestClient(t, fhir+"/fhir", Options{Credentials: creds,
		Header: http.Header{"X-Api-Key": {"header-secret"}, "Authorization": {"Bearer from-header"}}})
	resp, err := c.Do(t.Context(), &Request{URL: "away", Route: RouteFile,
		Header: http.Header{"Cookie": {"session=caller"}, "Accept": {"application/fhir+ndjson"}}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	first := fhirRec.Requests()[0].Header
	if got := first.Get("X-Api-Key"); got != "header-secret" {
		t.Errorf("trusted hop X-Api-Key = %q, want the --header value", got)
	}
	if got := first.Get("Authorization"); got != "Bearer from-header" {
		t.Errorf("trusted hop Authorization = %q, want the --header value (it wins over credentials)", got)
	}
	second := otherRec.Requests()[0].Header
	for _, k := range []string{"Authorization", "X-Api-Key", "Cookie", "Referer"} {
		if v := second.Get(k); v != "" {
			t.Errorf("redirect to another port carried %s: %q", k, v)
		}
	}
	if got := second.Get("Accept"); got != "application/fhir+ndjson" {
		t.Errorf("redirect hop Accept = %q, want the caller's ordinary headers kept", got)
	}
	if got := second.Get("User-Agent"); !strings.HasPrefix(got, "bulkpipe") {
		t.Errorf("redirect hop User-Agent = %q, want bulkpipe", got)
	}
}

func TestTokenFollowsSameOriginRedirect(t *testing.T) {
	fhir, _, fhirRec, _ := tokenServers(t)
	creds := &fakeCreds{}
	c, _ := newTestClient(t, fhir+"/fhir", Options{Credentials: creds, Header: http.Header{"X-Api-Key": {"header-secret"}}})
	resp, err := c.Do(t.Context(), &Request{URL: "here", Route: RouteStatus})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	reqs := fhirRec.Requests()
	if len(reqs) != 2 || reqs[1].Path != "/fhir/target" {
		t.Fatalf("requests = %+v, want /fhir/here then /fhir/target", reqs)
	}
	for i, r := range reqs {
		if got := r.Header.Get("Authorization"); got != "Bearer tok-0" {
			t.Errorf("hop %d Authorization = %q, want Bearer tok-0", i, got)
		}
		if got := r.Header.Get("X-Api-Key"); got != "header-secret" {
			t.Errorf("hop %d X-Api-Key = %q, want header-secret", i, got)
		}
	}
	if calls, _ := creds.counts(); calls != 1 {
		t.Errorf("Authorization called %d times for one attempt, want 1", calls)
	}
}

func TestTokenToTrustedOtherOrigin(t *testing.T) {
	fhir, other, _, otherRec := tokenServers(t)
	c, _ := newTestClient(t, fhir+"/fhir", Options{Credentials: &fakeCreds{}, TrustedOrigins: []string{other}})
	resp, err := c.Do(t.Context(), &Request{URL: "away", Route: RouteFile})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := otherRec.Requests()[0].Header.Get("Authorization"); got != "Bearer tok-0" {
		t.Errorf("redirect to a --token-origin: Authorization = %q, want Bearer tok-0", got)
	}
}

func TestTokenNeverToUntrustedURL(t *testing.T) {
	fhir, other, _, otherRec := tokenServers(t)
	creds := &fakeCreds{}
	c, _ := newTestClient(t, fhir+"/fhir", Options{Credentials: creds, Header: http.Header{"X-Api-Key": {"header-secret"}}})
	resp, err := c.Do(t.Context(), &Request{URL: other + "/files/1", Route: RouteFile})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := otherRec.Requests()[0].Header
	if h.Get("Authorization") != "" || h.Get("X-Api-Key") != "" {
		t.Errorf("untrusted URL got Authorization %q, X-Api-Key %q; want neither", h.Get("Authorization"), h.Get("X-Api-Key"))
	}
	if calls, _ := creds.counts(); calls != 0 {
		t.Errorf("credentials asked %d times for an untrusted URL, want 0 (no needless token requests)", calls)
	}
}

func TestAuthNever(t *testing.T) {
	srv, rec := serve(t, respond("{}"))
	creds := &fakeCreds{}
	c, _ := newTestClient(t, srv.URL+"/fhir", Options{Credentials: creds,
		Header: http.Header{"X-Api-Key": {"header-secret"}, "Authorization": {"Bearer from-header"}}})
	resp, err := c.Do(t.Context(), &Request{URL: "files/1", Route: RouteFile, Auth: AuthNever})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := rec.Requests()[0].Header
	if got := h.Get("Authorization"); got != "" {
		t.Errorf("AuthNever sent Authorization %q", got)
	}
	if got := h.Get("X-Api-Key"); got != "header-secret" {
		t.Errorf("AuthNever to a trusted origin: X-Api-Key = %q, want the --header value", got)
	}
	if calls, _ := creds.counts(); calls != 0 {
		t.Errorf("AuthNever asked the credentials %d times, want 0", calls)
	}
}

func TestUserAgentAndCallerHeaders(t *testing.T) {
	srv, rec := serve(t, respond("{}"))
	c, _ := newTestClient(t, srv.URL+"/fhir", Options{Version: "1.2.3", Credentials: &fakeCreds{}})
	for _, hdr := range []http.Header{nil, {"User-Agent": {"custom"}, "Authorization": {"Bearer caller"}}} {
		resp, err := c.Do(t.Context(), &Request{URL: "x", Route: RouteOther, Header: hdr})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	reqs := rec.Requests()
	if got := reqs[0].Header.Get("User-Agent"); got != "bulkpipe/1.2.3" {
		t.Errorf("User-Agent = %q, want bulkpipe/1.2.3", got)
	}
	if got := reqs[1].Header.Get("User-Agent"); got != "custom" {
		t.Errorf("caller's User-Agent = %q, want custom", got)
	}
	if got := reqs[1].Header.Get("Authorization"); got != "Bearer caller" {
		t.Errorf("caller's Authorization = %q, want it kept on its own origin", got)
	}
}

func TestCredentialsErrorNotRetried(t *testing.T) {
	srv, rec := serve(t, respond("{}"))
	creds := &fakeCreds{authErr: errors.New("token endpoint said invalid_client")}
	c, clk := newTestClient(t, srv.URL+"/fhir", Options{Credentials: creds})
	_, err := c.Do(t.Context(), &Request{URL: "x", Route: RouteStatus})
	if err == nil || !strings.Contains(err.Error(), "getting credentials: token endpoint said invalid_client") {
		t.Errorf("Do with failing credentials = %v, want getting credentials: …", err)
	}
	if n, s := len(rec.Requests()), len(clk.Sleeps()); n != 0 || s != 0 {
		t.Errorf("failing credentials: %d requests, %d sleeps; want 0, 0", n, s)
	}
}

func TestReauthOnce(t *testing.T) {
	unauthorizedUnless := func(token string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != token {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			w.Write([]byte("{}"))
		}
	}
	t.Run("renewed token works", func(t *testing.T) {
		srv, rec := serve(t, unauthorizedUnless("Bearer tok-1"))
		creds := &fakeCreds{}
		c, clk := newTestClient(t, srv.URL+"/fhir", Options{Credentials: creds})
		resp, err := c.Do(t.Context(), &Request{URL: "status/1", Route: RouteStatus})
		if err != nil {
			t.Fatalf("Do = %v, want success after one re-authorization", err)
		}
		resp.Body.Close()
		if _, reauths := creds.counts(); reauths != 1 {
			t.Errorf("Reauthorize called %d times, want 1", reauths)
		}
		if n := len(rec.Requests()); n != 2 {
			t.Errorf("%d requests, want 2", n)
		}
		if s := len(clk.Sleeps()); s != 0 {
			t.Errorf("%d sleeps before the re-authorized retry, want 0", s)
		}
	})
	t.Run("still 401", func(t *testing.T) {
		srv, rec := serve(t, status(401, ""))
		creds := &fakeCreds{}
		c, _ := newTestClient(t, srv.URL+"/fhir", Options{Credentials: creds})
		_, err := c.Do(t.Context(), &Request{URL: "status/1", Route: RouteStatus})
		if se, ok := errors.AsType[*StatusError](err); !ok || se.StatusCode != 401 {
			t.Errorf("Do = %v, want a 401 *StatusError", err)
		}
		if _, reauths := creds.counts(); reauths != 1 {
			t.Errorf("Reauthorize called %d times, want exactly 1", reauths)
		}
		if n := len(rec.Requests()); n != 2 {
			t.Errorf("%d requests, want 2", n)
		}
	})
	t.Run("static credentials", func(t *testing.T) {
		srv, rec := serve(t, status(401, ""))
		creds := &fakeCreds{static: true}
		c, _ := newTestClient(t, srv.URL+"/fhir", Options{Credentials: creds})
		_, err := c.Do(t.Context(), &Request{URL: "status/1", Route: RouteStatus})
		if se, ok := errors.AsType[*StatusError](err); !ok || se.StatusCode != 401 {
			t.Errorf("Do = %v, want a 401 *StatusError", err)
		}
		if n := len(rec.Requests()); n != 1 {
			t.Errorf("%d requests, want 1: static credentials cannot be renewed", n)
		}
	})
	t.Run("static credentials of another package", func(t *testing.T) {
		// smartauth cannot import fhirclient: its ErrStatic says Static() instead.
		srv, rec := serve(t, status(401, ""))
		creds := &fakeCreds{reauthEr: fmt.Errorf("bearer: %w", staticErr{})}
		c, _ := newTestClient(t, srv.URL+"/fhir", Options{Credentials: creds})
		_, err := c.Do(t.Context(), &Request{URL: "status/1", Route: RouteStatus})
		if se, ok := errors.AsType[*StatusError](err); !ok || se.StatusCode != 401 {
			t.Errorf("Do = %v, want a 401 *StatusError", err)
		}
		if n := len(rec.Requests()); n != 1 {
			t.Errorf("%d requests, want 1", n)
		}
	})
	t.Run("renewal fails", func(t *testing.T) {
		srv, _ := serve(t, status(401, ""))
		creds := &fakeCreds{reauthEr: errors.New("token endpoint down")}
		c, _ := newTestClient(t, srv.URL+"/fhir", Options{Credentials: creds})
		_, err := c.Do(t.Context(), &Request{URL: "status/1", Route: RouteStatus})
		if err == nil || !strings.Contains(err.Error(), "401 Unauthorized; renewing credentials: token endpoint down") {
			t.Errorf("Do = %v, want …401 Unauthorized; renewing credentials: token endpoint down", err)
		}
	})
	t.Run("no credentials", func(t *testing.T) {
		srv, rec := serve(t, status(401, ""))
		c, _ := newTestClient(t, srv.URL+"/fhir", Options{})
		_, err := c.Do(t.Context(), &Request{URL: "status/1", Route: RouteStatus})
		if se, ok := errors.AsType[*StatusError](err); !ok || se.StatusCode != 401 || strings.Contains(err.Error(), "token-origin") {
			t.Errorf("Do = %v, want a plain 401 *StatusError", err)
		}
		if n := len(rec.Requests()); n != 1 {
			t.Errorf("%d requests, want 1", n)
		}
		if err := c.Reauthorize(t.Context()); !errors.Is(err, ErrCannotReauthorize) {
			t.Errorf("Reauthorize without credentials = %v, want ErrCannotReauthorize", err)
		}
	})
}

func TestUnauthorizedFromUntrustedOrigin(t *testing.T) {
	files, filesRec := serve(t, status(401, ""))
	fhir, _ := serve(t, respond("{}"))
	creds := &fakeCreds{}
	c, _ := newTestClient(t, fhir.URL+"/fhir", Options{Credentials: creds})
	_, err := c.Do(t.Context(), &Request{URL: files.URL + "/files/1.ndjson", Route: RouteFile})
	o, _ := url.Parse(files.URL)
	wantOrigin, _ := origin(o)
	if err == nil || !strings.Contains(err.Error(), "--token-origin "+wantOrigin) {
		t.Errorf("401 from an untrusted origin = %v, want --token-origin %s", err, wantOrigin)
	}
	if se, ok := errors.AsType[*StatusError](err); !ok || se.StatusCode != 401 {
		t.Errorf("401 from an untrusted origin = %v, want it to wrap the *StatusError", err)
	}
	if got := filesRec.Requests()[0].Header.Get("Authorization"); got != "" {
		t.Errorf("untrusted origin got Authorization %q", got)
	}
	if calls, reauths := creds.counts(); calls != 0 || reauths != 0 {
		t.Errorf("credentials: %d calls, %d reauths; want 0, 0", calls, reauths)
	}
}

func TestEpicClientID(t *testing.T) {
	tests := []struct {
		name     string
		metadata string
		want     string
	}{
		{"epic software", `{"resourceType":"CapabilityStatement","software":{"name":"Epic","version":"May 2024"},"fhirVersion":"4.0.1"}`, "client-123"},
		{"epic publisher", `{"resourceType":"CapabilityStatement","publisher":"Epic Systems Corporation"}`, "client-123"},
		{"case-insensitive", `{"resourceType":"CapabilityStatement","software":{"name":"EPIC interconnect"}}`, "client-123"},
		{"dstu2 conformance", `{"resourceType":"Conformance","publisher":"Epic"}`, "client-123"},
		{"hapi", `{"resourceType":"CapabilityStatement","software":{"name":"HAPI FHIR Server"},"publisher":"Not provided"}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			other, otherRec := serve(t, respond("{}"))
			srv, rec := serve(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/fhir/metadata" {
					w.Header().Set("Content-Type", "application/fhir+json")
					w.Write([]byte(tt.metadata))
					return
				}
				w.Write([]byte("{}"))
			})
			c, _ := newTestClient(t, srv.URL+"/fhir", Options{ClientID: "client-123"})
			get := func(u string) {
				t.Helper()
				resp, err := c.Do(t.Context(), &Request{URL: u, Route: RouteOther})
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
			}
			get("Patient/1")
			capa, err := c.Metadata(t.Context())
			if err != nil {
				t.Fatalf("Metadata = %v", err)
			}
			if capa.Epic() != (tt.want != "") {
				t.Errorf("Capability.Epic() = %v for %s", capa.Epic(), tt.metadata)
			}
			get("Patient/2")
			get(other.URL + "/files/1")
			reqs := rec.Requests()
			if got := reqs[0].Header.Get("Epic-Client-ID"); got != "" {
				t.Errorf("Epic-Client-ID before Metadata = %q, want none", got)
			}
			if got := reqs[1].Header.Get("Accept"); reqs[1].Path != "/fhir/metadata" || got != "application/fhir+json" {
				t.Errorf("Metadata request = %s Accept %q, want /fhir/metadata with application/fhir+json", reqs[1].Path, got)
			}
			if got := reqs[2].Header.Get("Epic-Client-ID"); got != tt.want {
				t.Errorf("Epic-Client-ID after Metadata = %q, want %q", got, tt.want)
			}
			if got := otherRec.Requests()[0].Header.Get("Epic-Client-ID"); got != "" {
				t.Errorf("Epic-Client-ID to an untrusted origin = %q, want none", got)
			}
		})
	}
}

func TestDefaultHTTPClient(t *testing.T) {
	hc := newHTTPClient()
	if hc.Timeout != 0 {
		t.Errorf("Timeout = %v, want none (downloads are long)", hc.Timeout)
	}
	tr := hc.Transport.(*http.Transport)
	if !tr.DisableCompression {
		t.Errorf("DisableCompression = false, want true (callers handle gzip and Range)")
	}
	if tr.MaxIdleConnsPerHost < 16 {
		t.Errorf("MaxIdleConnsPerHost = %d, want ≥ 16", tr.MaxIdleConnsPerHost)
	}
	if tr.ResponseHeaderTimeout <= 0 || tr.TLSHandshakeTimeout <= 0 || tr.ResponseHeaderTimeout > 10*time.Minute {
		t.Errorf("ResponseHeaderTimeout %v, TLSHandshakeTimeout %v; want both set", tr.ResponseHeaderTimeout, tr.TLSHandshakeTimeout)
	}
}

func TestRedirectLimitNotRetried(t *testing.T) {
	srv, rec := serve(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.Path, http.StatusFound)
	})
	c, clk := newTestClient(t, srv.URL+"/fhir", Options{})
	_, err := c.Do(t.Context(), &Request{URL: "loop", Route: RouteStatus})
	if err == nil || !strings.Contains(err.Error(), "stopped after 10 redirects") || strings.Contains(err.Error(), "giving up") {
		t.Errorf("redirect loop = %v, want stopped after 10 redirects, not retried", err)
	}
	if n, s := len(rec.Requests()), len(clk.Sleeps()); n != 10 || s != 0 {
		t.Errorf("redirect loop: %d requests, %d sleeps; want 10, 0", n, s)
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	c, _ := newTestClient(t, srv.URL+"/fhir", Options{HTTPClient: hc})
	resp, err := c.Do(t.Context(), &Request{URL: "x", Route: RouteOther})
	if err != nil {
		t.Fatalf("Do with ErrUseLastResponse = %v, want the 302", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/elsewhere" {
		t.Errorf("Do = %d Location %q, want 302 /elsewhere", resp.StatusCode, resp.Header.Get("Location"))
	}
}

type staticErr struct{}

func (staticErr) Error() string { return "static" }
func (staticErr) Static() bool  { return true }
