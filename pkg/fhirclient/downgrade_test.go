package fhirclient

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// downgradeServers starts an https FHIR server and a plain http one on the same host
// (127.0.0.1, another port), as a server that answers an https kickoff with an http
// Content-Location. Each records what it got.
func downgradeServers(t *testing.T, plain http.HandlerFunc) (secure *httptest.Server, insecure string, secureRec, plainRec *recorder) {
	t.Helper()
	plainRec = &recorder{steps: []http.HandlerFunc{plain}}
	p := httptest.NewServer(plainRec)
	t.Cleanup(p.Close)
	secureRec = &recorder{steps: []http.HandlerFunc{func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/to-plain") {
			http.Redirect(w, r, p.URL+"/fhir/status/1", http.StatusFound)
			return
		}
		w.WriteHeader(http.StatusOK)
	}}}
	secure = httptest.NewTLSServer(secureRec)
	t.Cleanup(secure.Close)
	return secure, p.URL + "/fhir", secureRec, plainRec
}

// TestNoCredentialsOverDowngrade: credentials never go over plain http to a host trusted over
// https — neither to a status URL on it that was trusted later (bulk-poll trusts the status
// URL), nor after a redirect from https — and the downgrade is reported once; a 401 there names
// the reason. The user can still name such an origin (--token-origin, or an http FHIR base).
func TestNoCredentialsOverDowngrade(t *testing.T) {
	ctx := context.Background()
	secure, plainBase, secureRec, plainRec := downgradeServers(t, status(http.StatusUnauthorized, ""))
	var mu sync.Mutex
	var warnings []string
	c, _ := newTestClient(t, secure.URL+"/fhir", Options{Credentials: &fakeCreds{static: true}, HTTPClient: secure.Client(),
		OnWarn: func(m string) { mu.Lock(); warnings = append(warnings, m); mu.Unlock() }})
	if err := c.Trust(plainBase + "/status/1"); err != nil {
		t.Fatal(err)
	}
	_, err := c.Do(ctx, &Request{URL: plainBase + "/status/1", Route: RouteStatus})
	if err == nil || !strings.Contains(err.Error(), "plain http on a host reached over https") {
		t.Errorf("Do(http status URL) = %v, want a 401 naming the downgrade", err)
	}
	if _, err := c.Do(ctx, &Request{URL: secure.URL + "/fhir/to-plain", Route: RouteStatus}); err == nil {
		t.Errorf("Do(redirect to http) = nil, want the plain server's 401")
	}
	for i, r := range plainRec.Requests() {
		if a := r.Header.Get("Authorization"); a != "" {
			t.Errorf("plain http request %d (%s) got Authorization %q, want none", i, r.Path, a)
		}
	}
	if n := len(plainRec.Requests()); n != 2 {
		t.Errorf("plain server got %d requests, want 2", n)
	}
	if a := secureRec.Requests()[0].Header.Get("Authorization"); a == "" {
		t.Errorf("the https server got no Authorization: the test proves nothing")
	}
	mu.Lock()
	if len(warnings) != 1 || !strings.Contains(warnings[0], "plain http") {
		t.Errorf("warnings = %q, want one about plain http", warnings)
	}
	mu.Unlock()

	// Named by the user, the origin gets them.
	u, _ := c.Resolve(plainBase)
	named, _ := newTestClient(t, secure.URL+"/fhir", Options{Credentials: &fakeCreds{static: true}, HTTPClient: secure.Client(),
		TrustedOrigins: []string{u.Scheme + "://" + u.Host}})
	if !named.Trusted(u) {
		t.Errorf("Trusted(%s) with --token-origin = false, want true", u)
	}
	base, _ := newTestClient(t, plainBase, Options{})
	base.Trust(secure.URL)
	if !base.Trusted(u) {
		t.Errorf("Trusted(%s), the http FHIR base the user gave, = false after trusting https on the host, want true", u)
	}
}
