package smartauth

import (
	"context"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeClock is the injected Now: tests move time instead of sleeping.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// tokenServer is a token endpoint that verifies each client assertion with the public key, as
// a real server does, and answers with reply (nil → a bearer token that lives expiresIn).
type tokenServer struct {
	t         *testing.T
	srv       *httptest.Server
	key       *Key
	clock     *fakeClock
	expiresIn any // JSON value of expires_in; nil leaves it out

	reply   func(n int, w http.ResponseWriter, body string)
	entered chan struct{} // when set, receives once per request before block is awaited
	block   chan struct{} // when set, each request waits for it to close

	mu         sync.Mutex
	requests   int
	jtis       map[string]bool
	scopes     []string
	assertions []string
}

func newTokenServer(t *testing.T) *tokenServer {
	k, err := ParseKey(sec1(t, ecKey(t, elliptic.P256())))
	if err != nil {
		t.Fatal(err)
	}
	ts := &tokenServer{t: t, key: k, clock: &fakeClock{now: time.Now()}, expiresIn: 3600, jtis: map[string]bool{}}
	ts.srv = httptest.NewServer(http.HandlerFunc(ts.serve))
	t.Cleanup(ts.srv.Close)
	return ts
}

func (ts *tokenServer) tokenURL() string { return ts.srv.URL + "/auth/token" }

func (ts *tokenServer) source(scopes []string, sleep func(context.Context, time.Duration) error) *Source {
	if sleep == nil {
		sleep = func(context.Context, time.Duration) error {
			ts.t.Error("unexpected Sleep")
			return nil
		}
	}
	return NewSource(Config{ClientID: "bulk-client", Key: ts.key, TokenURL: ts.tokenURL(), Scopes: scopes,
		HTTP: ts.srv.Client(), Now: ts.clock.Now, Sleep: sleep})
}

func (ts *tokenServer) count() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.requests
}

func (ts *tokenServer) serve(w http.ResponseWriter, r *http.Request) {
	t := ts.t
	body, _ := io.ReadAll(r.Body)
	form, err := url.ParseQuery(string(body))
	if err != nil || r.Method != http.MethodPost ||
		r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" || r.Header.Get("Accept") != "application/json" {
		t.Errorf("token request %s %q with Content-Type %q, Accept %q: %v", r.Method, body, r.Header.Get("Content-Type"), r.Header.Get("Accept"), err)
	}
	if form.Get("grant_type") != "client_credentials" || form.Get("client_assertion_type") != assertionType {
		t.Errorf("token request form = %v", form)
	}
	assertion := form.Get("client_assertion")
	c := verifyAssertion(t, assertion, ts.key.public(), ts.key.Alg(), ts.key.KeyID(), "bulk-client", ts.tokenURL(), ts.clock.Now())

	ts.mu.Lock()
	ts.requests++
	n := ts.requests
	if ts.jtis[c.ID] {
		t.Errorf("jti %q reused: servers reject a replayed assertion", c.ID)
	}
	ts.jtis[c.ID] = true
	ts.scopes = append(ts.scopes, form.Get("scope"))
	ts.assertions = append(ts.assertions, assertion)
	ts.mu.Unlock()

	if ts.entered != nil {
		ts.entered <- struct{}{}
	}
	if ts.block != nil {
		<-ts.block
	}
	if ts.reply != nil {
		ts.reply(n, w, string(body))
		return
	}
	resp := map[string]any{"access_token": fmt.Sprintf("token-%d", n), "token_type": "bearer"}
	if ts.expiresIn != nil {
		resp["expires_in"] = ts.expiresIn
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

func TestSourceCaches(t *testing.T) {
	ts := newTokenServer(t)
	s := ts.source([]string{"system/Patient.read", "system/Observation.read"}, nil)
	for i := range 10 {
		got, err := s.Authorization(t.Context())
		if err != nil || got != "Bearer token-1" {
			t.Fatalf("Authorization #%d = %q, %v; want Bearer token-1", i+1, got, err)
		}
		ts.clock.Advance(time.Minute)
	}
	if n := ts.count(); n != 1 {
		t.Errorf("token requests = %d, want 1", n)
	}
	if diff := cmp.Diff([]string{"system/Patient.read system/Observation.read"}, ts.scopes); diff != "" {
		t.Errorf("scope parameter (-want +got):\n%s", diff)
	}
}

func TestSourceRefreshesBeforeExpiry(t *testing.T) {
	tests := []struct {
		expiresIn any
		refresh   time.Duration // from the token request to the renewal
	}{
		{3600, 3240 * time.Second},  // 10% margin
		{600, 540 * time.Second},    // 10% = 60 s
		{120, 90 * time.Second},     // 30 s minimum
		{60, 30 * time.Second},      // 30 s minimum = half
		{10, 5 * time.Second},       // capped at half the lifetime
		{nil, 270 * time.Second},    // missing: 300 s assumed
		{0, 270 * time.Second},      // nonsense: 300 s assumed
		{"120", 90 * time.Second},   // a string, as some servers send
		{"soon", 270 * time.Second}, // unreadable: 300 s assumed
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.expiresIn), func(t *testing.T) {
			ts := newTokenServer(t)
			ts.expiresIn = tt.expiresIn
			s := ts.source(nil, nil)
			check := func(want string) {
				t.Helper()
				if got, err := s.Authorization(t.Context()); err != nil || got != want {
					t.Errorf("Authorization at +%v = %q, %v; want %q", ts.clock.Now(), got, err, want)
				}
			}
			check("Bearer token-1")
			ts.clock.Advance(tt.refresh - time.Second)
			check("Bearer token-1")
			ts.clock.Advance(time.Second)
			check("Bearer token-2")
			check("Bearer token-2")
		})
	}
}

func TestSourceConcurrentCallersShareOneRequest(t *testing.T) {
	ts := newTokenServer(t)
	ts.entered, ts.block = make(chan struct{}, 8), make(chan struct{})
	s := ts.source(nil, nil)
	const callers = 8
	got := make([]string, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			h, err := s.Authorization(t.Context())
			if err != nil {
				t.Errorf("Authorization = %v", err)
			}
			got[i] = h
		})
	}
	<-ts.entered // one request is in flight; the others wait for it or come after it
	close(ts.block)
	wg.Wait()
	if n := ts.count(); n != 1 {
		t.Errorf("token requests = %d, want 1", n)
	}
	for i, h := range got {
		if h != "Bearer token-1" {
			t.Errorf("caller %d got %q, want Bearer token-1", i, h)
		}
	}
}

func TestSourceWaitHonoursContext(t *testing.T) {
	ts := newTokenServer(t)
	ts.entered, ts.block = make(chan struct{}, 1), make(chan struct{})
	s := ts.source(nil, nil)
	done := make(chan error)
	go func() {
		_, err := s.Authorization(t.Context())
		done <- err
	}()
	<-ts.entered
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Authorization(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Authorization(cancelled ctx) while a request is in flight = %v, want context.Canceled", err)
	}
	if err := s.Reauthorize(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Reauthorize(cancelled ctx) while a request is in flight = %v, want context.Canceled", err)
	}
	close(ts.block)
	if err := <-done; err != nil {
		t.Errorf("first Authorization = %v", err)
	}
}

func TestSourceReauthorize(t *testing.T) {
	ts := newTokenServer(t)
	s := ts.source(nil, nil)
	if got, err := s.Authorization(t.Context()); err != nil || got != "Bearer token-1" {
		t.Fatalf("Authorization = %q, %v", got, err)
	}
	if err := s.Reauthorize(t.Context()); err != nil {
		t.Fatalf("Reauthorize = %v", err)
	}
	if n := ts.count(); n != 2 {
		t.Errorf("token requests after Reauthorize = %d, want 2", n)
	}
	if got, err := s.Authorization(t.Context()); err != nil || got != "Bearer token-2" {
		t.Errorf("Authorization after Reauthorize = %q, %v; want Bearer token-2", got, err)
	}
	if n := ts.count(); n != 2 {
		t.Errorf("token requests = %d, want 2", n)
	}
}

func TestSourceTokenErrors(t *testing.T) {
	status := func(code int, contentType, body string) func(http.ResponseWriter) {
		return func(w http.ResponseWriter) {
			if contentType != "" {
				w.Header().Set("Content-Type", contentType)
			}
			w.WriteHeader(code)
			_, _ = io.WriteString(w, body)
		}
	}
	ok := status(200, "application/json", `{"access_token":"fresh","token_type":"Bearer","expires_in":300}`)
	bare400 := status(400, "", "")
	oauth400 := status(400, "application/json", `{"error":"invalid_client","error_description":"unknown kid"}`)
	tests := []struct {
		name     string
		replies  []func(http.ResponseWriter)
		requests int
		sleeps   []time.Duration
		errWant  []string // nil → success
	}{
		{"bare 400 twice then 200", []func(http.ResponseWriter){bare400, bare400, ok}, 3, []time.Duration{time.Second, 2 * time.Second}, nil},
		{"bare 400 three times", []func(http.ResponseWriter){bare400, bare400, bare400, ok}, 3, []time.Duration{time.Second, 2 * time.Second},
			[]string{"request access token: POST ", "/auth/token: 400 Bad Request", "(3 attempts)"}},
		// Only a bare 400 is retried (Epic's hiccup); an OAuth error is the server's final word.
		{"OAuth error on a 400 is final", []func(http.ResponseWriter){oauth400, oauth400, oauth400}, 1, nil,
			[]string{"400 Bad Request: invalid_client: unknown kid"}},
		{"OAuth error on a 401 is final", []func(http.ResponseWriter){status(401, "application/json", `{"error":"invalid_client","error_description":"signature"}`)}, 1, nil,
			[]string{"401 Unauthorized: invalid_client: signature"}},
		{"HTML 500", []func(http.ResponseWriter){status(500, "text/html", "<html>\n <b>oops</b>\n</html>")}, 1, nil,
			[]string{"500 Internal Server Error: <html> <b>oops</b> </html>"}},
		{"200 without JSON", []func(http.ResponseWriter){status(200, "text/plain", "hello")}, 1, nil, []string{"200 OK: response is not JSON"}},
		{"200 without access_token", []func(http.ResponseWriter){status(200, "application/json", `{"token_type":"bearer"}`)}, 1, nil, []string{"no access_token"}},
		{"200 with an OAuth error", []func(http.ResponseWriter){status(200, "application/json", `{"error":"invalid_scope"}`)}, 1, nil, []string{"200 OK: invalid_scope"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTokenServer(t)
			ts.reply = func(n int, w http.ResponseWriter, _ string) { tt.replies[n-1](w) }
			var slept []time.Duration
			s := ts.source(nil, func(_ context.Context, d time.Duration) error {
				slept = append(slept, d)
				return nil
			})
			got, err := s.Authorization(t.Context())
			if tt.errWant == nil {
				if err != nil || got != "Bearer fresh" {
					t.Errorf("Authorization = %q, %v; want Bearer fresh", got, err)
				}
			} else {
				if err == nil {
					t.Fatalf("Authorization = %q, want an error", got)
				}
				for _, w := range tt.errWant {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("Authorization error = %q, want it to contain %q", err, w)
					}
				}
				if _, ok := errors.AsType[*TokenError](err); !ok {
					t.Errorf("Authorization error %v is not a *TokenError", err)
				}
			}
			if n := ts.count(); n != tt.requests {
				t.Errorf("token requests = %d, want %d", n, tt.requests)
			}
			if diff := cmp.Diff(tt.sleeps, slept); diff != "" {
				t.Errorf("backoff sleeps (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSourceBackoffCancelled(t *testing.T) {
	ts := newTokenServer(t)
	ts.reply = func(_ int, w http.ResponseWriter, _ string) { w.WriteHeader(400) }
	s := ts.source(nil, func(ctx context.Context, _ time.Duration) error { return context.Canceled })
	if _, err := s.Authorization(t.Context()); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "400") {
		t.Errorf("Authorization with a cancelled backoff = %v, want the 400 and context.Canceled", err)
	}
}

// TestSourceNeverLeaksSecrets: servers that echo the request, or send a token with an error
// status, must not get the assertion or a token into an error message.
func TestSourceNeverLeaksSecrets(t *testing.T) {
	replies := map[string]func(w http.ResponseWriter, body string){
		"400 echoing the form": func(w http.ResponseWriter, body string) {
			w.WriteHeader(400)
			_, _ = io.WriteString(w, "bad request: "+body)
		},
		"400 OAuth error echoing the form": func(w http.ResponseWriter, body string) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_request", "error_description": body})
		},
		"500 with a token": func(w http.ResponseWriter, _ string) {
			w.WriteHeader(500)
			_, _ = io.WriteString(w, `{"access_token":"sekrit-token","expires_in":60}`)
		},
		"200 with a token of the wrong type": func(w http.ResponseWriter, _ string) {
			_, _ = io.WriteString(w, `{"access_token":"sekrit-token","expires_in":{"sekrit-token":1},"token_type":7}`)
		},
	}
	for name, reply := range replies {
		t.Run(name, func(t *testing.T) {
			ts := newTokenServer(t)
			ts.reply = func(_ int, w http.ResponseWriter, body string) { reply(w, body) }
			s := ts.source(nil, func(context.Context, time.Duration) error { return nil })
			h, err := s.Authorization(t.Context())
			if err == nil {
				// A 2xx with a usable token is fine; the test is about errors.
				if h != "Bearer sekrit-token" {
					t.Errorf("Authorization = %q, want an error or the token", h)
				}
				return
			}
			msg := err.Error()
			if strings.Contains(msg, "sekrit") {
				t.Errorf("error %q contains the token", msg)
			}
			for _, a := range ts.assertions {
				sig := a[strings.LastIndexByte(a, '.')+1:]
				if strings.Contains(msg, sig) {
					t.Errorf("error %q contains the assertion's signature", msg)
				}
			}
		})
	}

	// A transport error that quotes the request (some proxies' errors do).
	k := newTokenServer(t).key
	s := NewSource(Config{ClientID: "c", Key: k, TokenURL: "https://ehr.example/token",
		HTTP: doerFunc(func(r *http.Request) (*http.Response, error) {
			b, _ := io.ReadAll(r.Body)
			return nil, fmt.Errorf("proxy refused %s", b)
		})})
	_, err := s.Authorization(t.Context())
	if err == nil || strings.Contains(err.Error(), "client_assertion=ey") || !strings.Contains(err.Error(), "REDACTED") {
		t.Errorf("Authorization with a chatty transport error = %v, want the assertion redacted", err)
	}
}

type doerFunc func(*http.Request) (*http.Response, error)

func (f doerFunc) Do(r *http.Request) (*http.Response, error) { return f(r) }

func TestSourceDoesNotPrintToken(t *testing.T) {
	ts := newTokenServer(t)
	ts.reply = func(_ int, w http.ResponseWriter, _ string) {
		_, _ = io.WriteString(w, `{"access_token":"sekrit-token"}`)
	}
	s := ts.source(nil, nil)
	if _, err := s.Authorization(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		if got := fmt.Sprintf(format, s); strings.Contains(got, "sekrit") {
			t.Errorf("Sprintf(%q, source) = %q, shows the token", format, got)
		}
	}
}

func TestSourceConfigErrors(t *testing.T) {
	k := newTokenServer(t).key
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no token URL", Config{ClientID: "c", Key: k}, "no token URL"},
		{"no key", Config{ClientID: "c", TokenURL: "https://x/token"}, "no key"},
		{"no client id", Config{Key: k, TokenURL: "https://x/token"}, "no client id"},
	}
	for _, tt := range tests {
		s := NewSource(tt.cfg)
		if _, err := s.Authorization(t.Context()); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Authorization = %v, want error containing %q", tt.name, err, tt.want)
		}
	}
}

func TestAssertion(t *testing.T) {
	k, err := ParseKey(pkcs8(t, ecKey(t, elliptic.P384())))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2024, 1, 2, 3, 4, 5, 999_000_000, time.UTC)
	s := NewSource(Config{ClientID: "my-client", Key: k, TokenURL: "https://ehr.example/token"})
	a1, err1 := s.Assertion(now)
	a2, err2 := s.Assertion(now)
	if err1 != nil || err2 != nil {
		t.Fatalf("Assertion = %v, %v", err1, err2)
	}
	c1 := verifyAssertion(t, a1, k.public(), "ES384", k.KeyID(), "my-client", "https://ehr.example/token", now)
	c2 := verifyAssertion(t, a2, k.public(), "ES384", k.KeyID(), "my-client", "https://ehr.example/token", now)
	if c1.ID == c2.ID {
		t.Errorf("two assertions share jti %q", c1.ID)
	}
	if got := c1.Expiry.Time(); got.After(now.Add(5 * time.Minute)) {
		t.Errorf("exp = %v, more than 5 min after %v", got, now)
	}
	// aud must be a plain string: Epic rejects an array.
	var raw map[string]any
	payload := strings.Split(a1, ".")[1]
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil || json.Unmarshal(b, &raw) != nil {
		t.Fatalf("decode payload %q: %v", payload, err)
	}
	if _, ok := raw["aud"].(string); !ok {
		t.Errorf("aud = %#v, want a string", raw["aud"])
	}
}

func TestSourceInvalidScope(t *testing.T) {
	requested := []string{"system/Patient.read", "system/DocumentReference.read", "system/Binary.read"}
	tests := []struct {
		desc        string
		refused     []string
		errContains string
	}{
		// The SMART reference server's answer to system/Binary.read.
		{`Resources of type \"Binary\" do not exist on this server`, []string{"system/Binary.read"}, "(refused: system/Binary.read)"},
		{"scope system/DocumentReference.read is not granted", []string{"system/DocumentReference.read"}, "(refused: system/DocumentReference.read)"},
		// "Patients" is not the type Patient.
		{"too many Patients", nil, "(asked for: system/Patient.read system/DocumentReference.read system/Binary.read)"},
		{"", nil, "400 Bad Request: invalid_scope (asked for: "},
	}
	for _, tt := range tests {
		ts := newTokenServer(t)
		ts.reply = func(_ int, w http.ResponseWriter, _ string) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":"invalid_scope","error_description":"`+tt.desc+`"}`)
		}
		src := ts.source(requested, nil)
		_, err := src.Authorization(t.Context())
		// The answer is final for these scopes: asking again (an attachment after another, a
		// 401's re-authorization) gets it without another request.
		_, again := src.Authorization(t.Context())
		if rerr := src.Reauthorize(t.Context()); ts.count() != 1 || again == nil || again.Error() != fmt.Sprint(err) || rerr == nil {
			t.Errorf("%s: after invalid_scope, %d token requests (want 1); again: %v; Reauthorize: %v", tt.desc, ts.count(), again, rerr)
		}
		se, ok := errors.AsType[*ScopeError](err)
		if !ok {
			t.Errorf("%s: Authorization error = %v, want a *ScopeError", tt.desc, err)
			continue
		}
		if !cmp.Equal(se.Refused, tt.refused) || !cmp.Equal(se.Requested, requested) {
			t.Errorf("%s: ScopeError refused %q of %q, want %q of %q", tt.desc, se.Refused, se.Requested, tt.refused, requested)
		}
		if te, ok := errors.AsType[*TokenError](err); !ok || te.Code != "invalid_scope" || te.Attempts != 1 {
			t.Errorf("%s: TokenError = %+v, want code invalid_scope after 1 attempt", tt.desc, te)
		}
		if !strings.Contains(err.Error(), tt.errContains) {
			t.Errorf("%s: error = %q, want it to contain %q", tt.desc, err, tt.errContains)
		}
	}
}

func TestContainsWord(t *testing.T) {
	tests := []struct {
		s, w string
		want bool
	}{
		{`type "Binary" do`, "Binary", true},
		{"Binary", "Binary", true},
		{"Binaryx Binary.", "Binary", true},
		{"Binaryx xBinary", "Binary", false},
		{"Patients", "Patient", false},
		{"", "Patient", false},
	}
	for _, tt := range tests {
		if got := containsWord(tt.s, tt.w); got != tt.want {
			t.Errorf("containsWord(%q, %q) = %v, want %v", tt.s, tt.w, got, tt.want)
		}
	}
}
