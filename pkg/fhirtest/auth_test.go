package fhirtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/tidwall/gjson"
)

type keySet struct {
	rsa    *rsa.PrivateKey
	ec     *ecdsa.PrivateKey
	jwks   []byte // public JWKS: RS384 "rsa-1" and ES384 "ec-1"
	ecPEM  []byte // public PEM of the EC key
	rsaPEM []byte // PKCS#1 public PEM of the RSA key
}

var testKeys = func() func(t *testing.T) *keySet {
	var once sync.Once
	var ks keySet
	return func(t *testing.T) *keySet {
		once.Do(func() {
			ks.rsa, _ = rsa.GenerateKey(rand.Reader, 2048)
			ks.ec, _ = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
			set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
				{Key: &ks.rsa.PublicKey, KeyID: "rsa-1", Algorithm: "RS384", Use: "sig"},
				{Key: &ks.ec.PublicKey, KeyID: "ec-1", Algorithm: "ES384", Use: "sig"},
			}}
			ks.jwks, _ = json.Marshal(set)
			der, _ := x509.MarshalPKIXPublicKey(&ks.ec.PublicKey)
			ks.ecPEM = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
			ks.rsaPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&ks.rsa.PublicKey)})
		})
		if ks.rsa == nil || ks.ec == nil {
			t.Fatal("key generation failed")
		}
		return &ks
	}
}()

// sign makes a client assertion as a SMART Backend Services client does.
func sign(t *testing.T, key any, alg jose.SignatureAlgorithm, kid string, c jwt.Claims) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jwt.Signed(signer).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claims(s *Server, now time.Time, jti string) jwt.Claims {
	return jwt.Claims{Issuer: "client-1", Subject: "client-1", Audience: jwt.Audience{s.URL() + "/auth/token"},
		Expiry: jwt.NewNumericDate(now.Add(5 * time.Minute)), IssuedAt: jwt.NewNumericDate(now), ID: jti}
}

func tokenRequest(t *testing.T, s *Server, assertion, scope string) (int, []byte) {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}}
	resp, body := do(t, "POST", s.URL()+"/auth/token", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, []byte(form.Encode()))
	return resp.StatusCode, body
}

// accessToken gets a token with the RSA key.
func accessToken(t *testing.T, s *Server, now time.Time, scope string) string {
	t.Helper()
	status, body := tokenRequest(t, s, sign(t, testKeys(t).rsa, jose.RS384, "rsa-1", claims(s, now, rand.Text())), scope)
	if status != 200 {
		t.Fatalf("token request = %d %s, want 200", status, body)
	}
	return gjson.GetBytes(body, "access_token").Str
}

func smartServer(t *testing.T, clock *fakeClock, extra Options) *Server {
	ks := testKeys(t)
	extra.Auth, extra.ClientID, extra.PublicKeys, extra.Now = AuthSMART, "client-1", [][]byte{ks.jwks}, clock.now
	return start(t, extra)
}

func TestTokenFlow(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	s := smartServer(t, clock, Options{TokenTTL: 90 * time.Second})
	ks := testKeys(t)
	now := clock.now()
	for _, tc := range []struct {
		name string
		key  any
		alg  jose.SignatureAlgorithm
		kid  string
	}{{"RS384", ks.rsa, jose.RS384, "rsa-1"}, {"ES384", ks.ec, jose.ES384, "ec-1"}, {"ES384 no kid", ks.ec, jose.ES384, ""}} {
		status, body := tokenRequest(t, s, sign(t, tc.key, tc.alg, tc.kid, claims(s, now, rand.Text())), "system/*.read")
		if status != 200 || gjson.GetBytes(body, "token_type").Str != "bearer" || gjson.GetBytes(body, "expires_in").Int() != 90 ||
			gjson.GetBytes(body, "scope").Str != "system/*.read" || gjson.GetBytes(body, "access_token").Str == "" {
			t.Errorf("%s: token = %d %s, want 200 bearer expires_in 90 scope system/*.read", tc.name, status, body)
		}
	}
	tok := accessToken(t, s, now, "system/*.read")
	bearer := http.Header{"Authorization": {"Bearer " + tok}}
	h := kickoffHeader()
	if resp, _ := do(t, "GET", s.URL()+"/$export", h, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("kickoff without token = %s, want 401", resp.Status)
	}
	h.Set("Authorization", "Bearer "+tok)
	status := kickoff(t, s, "/$export", nil, h)
	m, _ := poll(t, status, bearer)
	if resp, _ := do(t, "GET", m.Output[0].URL, nil, nil); resp.StatusCode != 200 {
		t.Errorf("file without token, requiresAccessToken false = %s, want 200", resp.Status)
	}
	if resp, _ := do(t, "GET", s.URL()+"/Binary/b1", nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("Binary without token = %s, want 401", resp.Status)
	}
	if resp, body := do(t, "GET", s.URL()+"/Binary/b1", bearer, nil); resp.StatusCode != 200 {
		t.Errorf("Binary with token = %s %s, want 200", resp.Status, body)
	}
	if resp, _ := do(t, "GET", s.URL()+"/metadata", nil, nil); resp.StatusCode != 200 {
		t.Errorf("metadata without token = %s, want 200 (open)", resp.Status)
	}
}

func TestTokenErrors(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	s := smartServer(t, clock, Options{})
	ks := testKeys(t)
	now := clock.now()
	other, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	reused := sign(t, ks.rsa, jose.RS384, "rsa-1", claims(s, now, "same-jti"))
	if status, body := tokenRequest(t, s, reused, "system/*.read"); status != 200 {
		t.Fatalf("first use of a jti = %d %s", status, body)
	}
	mod := func(f func(c *jwt.Claims)) string {
		c := claims(s, now, rand.Text())
		f(&c)
		return sign(t, ks.rsa, jose.RS384, "rsa-1", c)
	}
	tests := []struct {
		name, assertion, scope, wantErr, wantDesc string
	}{
		{"jti reused", reused, "system/*.read", "invalid_client", "jti"},
		{"wrong aud", mod(func(c *jwt.Claims) { c.Audience = jwt.Audience{"https://elsewhere/token"} }), "system/*.read", "invalid_client", "aud"},
		{"wrong iss", mod(func(c *jwt.Claims) { c.Issuer = "other" }), "system/*.read", "invalid_client", "iss"},
		{"sub differs", mod(func(c *jwt.Claims) { c.Subject = "other" }), "system/*.read", "invalid_client", "sub"},
		{"expired", mod(func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(now.Add(-time.Minute)) }), "system/*.read", "invalid_client", "expired"},
		{"exp too far", mod(func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(now.Add(10 * time.Minute)) }), "system/*.read", "invalid_client", "five minutes"},
		{"no jti", mod(func(c *jwt.Claims) { c.ID = "" }), "system/*.read", "invalid_client", "jti"},
		{"unregistered key", sign(t, other, jose.ES384, "ec-1", claims(s, now, rand.Text())), "system/*.read", "invalid_client", "signature"},
		{"HS256", func() string {
			signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, nil)
			v, _ := jwt.Signed(signer).Claims(claims(s, now, rand.Text())).Serialize()
			return v
		}(), "system/*.read", "invalid_client", "client_assertion"},
		{"no usable scope", sign(t, ks.rsa, jose.RS384, "rsa-1", claims(s, now, rand.Text())), "patient/*.read launch", "invalid_scope", "system/"},
		{"no scope", sign(t, ks.rsa, jose.RS384, "rsa-1", claims(s, now, rand.Text())), "", "invalid_request", "scope"},
		{"not a JWT", "abc", "system/*.read", "invalid_client", "client_assertion"},
	}
	for _, tt := range tests {
		status, body := tokenRequest(t, s, tt.assertion, tt.scope)
		if status != 400 || gjson.GetBytes(body, "error").Str != tt.wantErr || !strings.Contains(gjson.GetBytes(body, "error_description").Str, tt.wantDesc) {
			t.Errorf("%s: token request = %d %s, want 400 %s mentioning %q", tt.name, status, body, tt.wantErr, tt.wantDesc)
		}
	}
	form := url.Values{"grant_type": {"authorization_code"}}
	resp, body := do(t, "POST", s.URL()+"/auth/token", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, []byte(form.Encode()))
	if resp.StatusCode != 400 || gjson.GetBytes(body, "error").Str != "unsupported_grant_type" {
		t.Errorf("authorization_code grant = %s %s, want 400 unsupported_grant_type", resp.Status, body)
	}
}

func TestPEMPublicKeys(t *testing.T) {
	ks := testKeys(t)
	clock := &fakeClock{t: time.Now()}
	s := start(t, Options{Auth: AuthSMART, ClientID: "client-1", PublicKeys: [][]byte{ks.ecPEM, ks.rsaPEM}, Now: clock.now})
	now := clock.now()
	// A PEM key has no kid: the server knows it by its RFC 7638 thumbprint, and tries every key
	// for a kid it does not know.
	for _, tc := range []struct {
		key any
		alg jose.SignatureAlgorithm
		kid string
	}{{ks.ec, jose.ES384, thumbprint(t, &ks.ec.PublicKey)}, {ks.rsa, jose.RS384, "whatever"}} {
		if status, body := tokenRequest(t, s, sign(t, tc.key, tc.alg, tc.kid, claims(s, now, rand.Text())), "system/Patient.rs"); status != 200 {
			t.Errorf("%s with PEM-registered key = %d %s, want 200", tc.alg, status, body)
		}
	}
}

func thumbprint(t *testing.T, pub any) string {
	k := jose.JSONWebKey{Key: pub}
	b, err := k.Thumbprint(cryptoSHA256)
	if err != nil {
		t.Fatal(err)
	}
	return b64url(b)
}

func TestTokenExpiryMilliseconds(t *testing.T) {
	clock := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := smartServer(t, clock, Options{TokenTTL: 1500 * time.Millisecond})
	status, body := tokenRequest(t, s, sign(t, testKeys(t).ec, jose.ES384, "ec-1", claims(s, clock.now(), "j1")), "system/*.read")
	if status != 200 || gjson.GetBytes(body, "expires_in").Int() != 2 {
		t.Fatalf("token with a 1500 ms TTL = %d %s, want expires_in 2 (rounded up)", status, body)
	}
	h := kickoffHeader()
	h.Set("Authorization", "Bearer "+gjson.GetBytes(body, "access_token").Str)
	clock.add(1499 * time.Millisecond)
	if resp, body := do(t, "GET", s.URL()+"/$export", h, nil); resp.StatusCode != 202 {
		t.Errorf("kickoff 1499 ms after the token = %s %s, want 202", resp.Status, body)
	}
	clock.add(time.Millisecond)
	resp, body := do(t, "GET", s.URL()+"/$export", h, nil)
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_token") ||
		gjson.GetBytes(body, "resourceType").Str != "OperationOutcome" {
		t.Errorf("kickoff 1500 ms after the token = %s %q %s, want 401 invalid_token OperationOutcome", resp.Status, resp.Header.Get("WWW-Authenticate"), body)
	}
}

func TestScopes(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	s := smartServer(t, clock, Options{})
	tok := accessToken(t, s, clock.now(), "system/Patient.read system/Observation.rs openid")
	h := kickoffHeader()
	h.Set("Authorization", "Bearer "+tok)
	for q, want := range map[string]int{
		"_type=Patient,Observation": 202,
		"_type=Patient,Condition":   403,
		"":                          403, // every type: needs system/*.read
	} {
		if resp, body := do(t, "GET", s.URL()+"/$export?"+q, h, nil); resp.StatusCode != want {
			t.Errorf("kickoff %q with Patient and Observation scopes = %s %s, want %d", q, resp.Status, body, want)
		}
	}
	if resp, _ := do(t, "GET", s.URL()+"/Binary/b1", http.Header{"Authorization": {"Bearer " + tok}}, nil); resp.StatusCode != 403 {
		t.Errorf("Binary without a Binary scope = %s, want 403", resp.Status)
	}
}

func TestRequestsRecordAuthorization(t *testing.T) {
	s := start(t, Options{})
	do(t, "GET", s.URL()+"/metadata", http.Header{"Authorization": {"Bearer abc"}, "X-Test": {"1"}}, nil)
	recs := s.Requests()
	if len(recs) != 1 {
		t.Fatalf("Requests() = %d records, want 1", len(recs))
	}
	r := recs[0]
	if r.Method != "GET" || r.URL != s.URL()+"/metadata" || r.Route != "metadata" || r.Origin != "main" ||
		r.Authorization != "Bearer abc" || r.Header.Get("X-Test") != "1" {
		t.Errorf("Requests()[0] = %+v", r)
	}
}

const cryptoSHA256 = crypto.SHA256

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func FuzzParsePublicKeys(f *testing.F) {
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-384","x":"AAAA","y":"AAAA"}]}`))
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n"))
	f.Add([]byte(`{"kty":"RSA","e":"AQAB","n":"AAAA"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := parsePublicKeys([][]byte{data})
		if err == nil && len(keys) == 0 {
			t.Errorf("parsePublicKeys(%q): no error and no key", data)
		}
		for _, k := range keys {
			if !k.IsPublic() {
				t.Errorf("parsePublicKeys(%q) kept a private key", data)
			}
		}
	})
}

func TestStrictScopes(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	strict := smartServer(t, clock, Options{StrictScopes: true})
	lenient := smartServer(t, clock, Options{})
	key := testKeys(t).ec
	tests := []struct {
		scope    string
		wantDesc string // "" → granted
	}{
		{"system/Patient.read system/DocumentReference.read", ""},
		{"system/*.read", ""},
		{"system/Patient.rs openid", ""},
		{"system/Patient.read system/Binary.read", `Resources of type "Binary" do not exist on this server`},
		{"system/Medication.rs", `Resources of type "Medication" do not exist on this server`},
	}
	for _, tt := range tests {
		status, body := tokenRequest(t, strict, sign(t, key, jose.ES384, "ec-1", claims(strict, clock.now(), rand.Text())), tt.scope)
		switch {
		case tt.wantDesc == "" && status != 200:
			t.Errorf("strict token for %q = %d %s, want 200", tt.scope, status, body)
		case tt.wantDesc != "" && (status != 400 || gjson.GetBytes(body, "error").Str != "invalid_scope" ||
			gjson.GetBytes(body, "error_description").Str != tt.wantDesc):
			t.Errorf("strict token for %q = %d %s, want 400 invalid_scope %q", tt.scope, status, body, tt.wantDesc)
		}
		// Without the option, a scope for a type the data lacks is granted (and simply unused).
		if status, body := tokenRequest(t, lenient, sign(t, key, jose.ES384, "ec-1", claims(lenient, clock.now(), rand.Text())), tt.scope); status != 200 {
			t.Errorf("lenient token for %q = %d %s, want 200", tt.scope, status, body)
		}
	}
}

// TestRegister: the SMART reference server's /auth/register takes a client's JWKS and answers a
// new client id, whose assertions then get tokens; the configured client still works.
func TestRegister(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	s := smartServer(t, clock, Options{Vendor: VendorSMART})
	other, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &other.PublicKey, KeyID: "other-1", Algorithm: "ES384", Use: "sig"}}})
	form := url.Values{"jwks": {string(set)}}
	resp, body := do(t, "POST", s.URL()+"/auth/register", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, []byte(form.Encode()))
	id := string(body)
	if resp.StatusCode != 200 || !strings.HasPrefix(id, "client-") {
		t.Fatalf("register = %s %s, want 200 and a client id", resp.Status, body)
	}
	c := claims(s, clock.now(), rand.Text())
	c.Issuer, c.Subject = id, id
	status, body := tokenRequest(t, s, sign(t, other, jose.ES384, "other-1", c), "system/Patient.read")
	if status != 200 {
		t.Errorf("token for the registered client = %d %s, want 200", status, body)
	}
	// The registered client's key does not sign for the configured client, nor the reverse.
	c = claims(s, clock.now(), rand.Text())
	if status, body := tokenRequest(t, s, sign(t, other, jose.ES384, "other-1", c), "system/Patient.read"); status != 400 {
		t.Errorf("client-1 signed by the registered key = %d %s, want 400", status, body)
	}
	c.ID, c.Issuer, c.Subject = rand.Text(), id, id
	if status, body := tokenRequest(t, s, sign(t, testKeys(t).rsa, jose.RS384, "rsa-1", c), "system/Patient.read"); status != 400 {
		t.Errorf("registered client signed by client-1's key = %d %s, want 400", status, body)
	}
	accessToken(t, s, clock.now(), "system/Patient.read")
	if resp, _ := do(t, "POST", s.URL()+"/auth/register", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, []byte("jwks_url=http://x/jwks")); resp.StatusCode != 400 {
		t.Errorf("register with jwks_url = %s, want 400", resp.Status)
	}
	if resp, _ := do(t, "POST", start(t, Options{Vendor: VendorSMART}).URL()+"/auth/register", nil, nil); resp.StatusCode != 404 {
		t.Errorf("register without SMART auth = %s, want 404", resp.Status)
	}
}
