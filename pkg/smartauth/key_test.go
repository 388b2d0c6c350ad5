package smartauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

var testRSAKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func ecKey(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pemBytes(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pkcs8(t testing.TB, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemBytes("PRIVATE KEY", der)
}

func sec1(t testing.TB, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemBytes("EC PRIVATE KEY", der)
}

// jwkJSON marshals k as a JWK with the given members added (kid, alg, use, key_ops, ...).
func jwkJSON(t testing.TB, k any, extra map[string]any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKey{Key: k})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for name, v := range extra {
		m[name] = v
	}
	b, err = json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jwksJSON(t testing.TB, keys ...json.RawMessage) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// verifyAssertion checks a client assertion independently of the code that made it: signature
// with pub (a public key or JWK), header alg/kid/typ, and every claim SMART requires.
func verifyAssertion(t testing.TB, assertion string, pub any, alg, kid, clientID, aud string, now time.Time) jwt.Claims {
	t.Helper()
	tok, err := jwt.ParseSigned(assertion, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
	if err != nil {
		t.Fatalf("parse assertion: %v", err)
	}
	h := tok.Headers[0]
	if h.Algorithm != alg || h.KeyID != kid || h.ExtraHeaders["typ"] != "JWT" {
		t.Errorf("assertion header = alg %q kid %q typ %v, want %q %q JWT", h.Algorithm, h.KeyID, h.ExtraHeaders["typ"], alg, kid)
	}
	var c jwt.Claims
	if err := tok.Claims(pub, &c); err != nil {
		t.Fatalf("verify assertion signature: %v", err)
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: clientID, Subject: clientID, AnyAudience: jwt.Audience{aud}, Time: now}, 0); err != nil {
		t.Errorf("assertion claims: %v", err)
	}
	if c.Expiry == nil || c.IssuedAt == nil || c.Expiry.Time().Sub(now) > 5*time.Minute || c.Expiry.Time().Sub(now) < 4*time.Minute {
		t.Errorf("assertion exp = %v, iat = %v; want ≤ 5 min after %v", c.Expiry, c.IssuedAt, now)
	}
	if len(c.ID) < 32 {
		t.Errorf("assertion jti = %q, want ≥ 128 random bits", c.ID)
	}
	return c
}

func signWith(t testing.TB, k *Key, now time.Time) string {
	t.Helper()
	s := NewSource(Config{ClientID: "client-1", Key: k, TokenURL: "https://ehr.example/oauth2/token"})
	a, err := s.Assertion(now)
	if err != nil {
		t.Fatalf("Assertion: %v", err)
	}
	return a
}

// TestJoseSeedCommands runs the key commands of the seed's bulk-exports.md verbatim and signs
// with the private JWKS; the assertion must verify with the public JWKS alone.
func TestJoseSeedCommands(t *testing.T) {
	if _, err := exec.LookPath("jose"); err != nil {
		t.Skip("jose is not installed (apt-get install jose)")
	}
	for _, alg := range []string{"RS384", "ES384"} {
		t.Run(alg, func(t *testing.T) {
			dir := t.TempDir()
			var gen *exec.Cmd
			if _, err := exec.LookPath("uuidgen"); err == nil {
				// The seed's line, character for character (only the alg differs for ES384).
				line := "jose jwk gen -s -i \"{\\\"alg\\\":\\\"RS384\\\",\\\"kid\\\":\\\"`uuidgen`\\\"}\" -o private.jwks"
				gen = exec.Command("sh", "-c", strings.Replace(line, "RS384", alg, 1))
			} else {
				b := make([]byte, 16)
				_, _ = rand.Read(b)
				uuid := fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
				gen = exec.Command("jose", "jwk", "gen", "-s", "-i", `{"alg":"`+alg+`","kid":"`+uuid+`"}`, "-o", "private.jwks")
			}
			gen.Dir = dir
			if out, err := gen.CombinedOutput(); err != nil {
				t.Fatalf("jose jwk gen: %v\n%s", err, out)
			}
			pub := exec.Command("jose", "jwk", "pub", "-s", "-i", "private.jwks", "-o", "public.jwks")
			pub.Dir = dir
			if out, err := pub.CombinedOutput(); err != nil {
				t.Fatalf("jose jwk pub: %v\n%s", err, out)
			}

			k, err := LoadKey(filepath.Join(dir, "private.jwks"))
			if err != nil {
				t.Fatalf("LoadKey(private.jwks) = %v", err)
			}
			if k.Alg() != alg || len(k.KeyID()) != 36 {
				t.Errorf("LoadKey(private.jwks) = alg %q kid %q, want %s and a uuid", k.Alg(), k.KeyID(), alg)
			}
			if _, err := LoadKey(filepath.Join(dir, "public.jwks")); err == nil || !strings.Contains(err.Error(), "public.jwks") || !strings.Contains(err.Error(), "public key") {
				t.Errorf("LoadKey(public.jwks) = %v, want an error naming the file and saying it is public", err)
			}

			b, err := os.ReadFile(filepath.Join(dir, "public.jwks"))
			if err != nil {
				t.Fatal(err)
			}
			var set jose.JSONWebKeySet
			if err := json.Unmarshal(b, &set); err != nil {
				t.Fatal(err)
			}
			keys := set.Key(k.KeyID())
			if len(keys) != 1 {
				t.Fatalf("public.jwks has %d keys with kid %q, want 1", len(keys), k.KeyID())
			}
			now := time.Now()
			verifyAssertion(t, signWith(t, k, now), keys[0], alg, k.KeyID(), "client-1", "https://ehr.example/oauth2/token", now)
		})
	}
}

func TestParseKeyPEM(t *testing.T) {
	rsaKey := testRSAKey()
	p256, p384, p521 := ecKey(t, elliptic.P256()), ecKey(t, elliptic.P384()), ecKey(t, elliptic.P521())
	params := pemBytes("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07})
	tests := []struct {
		name string
		data []byte
		pub  crypto.PublicKey
		alg  string
	}{
		{"RSA PKCS#1", pemBytes("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), &rsaKey.PublicKey, "RS384"},
		{"RSA PKCS#8", pkcs8(t, rsaKey), &rsaKey.PublicKey, "RS384"},
		{"P-256 PKCS#8", pkcs8(t, p256), &p256.PublicKey, "ES256"},
		{"P-384 PKCS#8", pkcs8(t, p384), &p384.PublicKey, "ES384"},
		{"P-521 PKCS#8", pkcs8(t, p521), &p521.PublicKey, "ES512"},
		{"P-256 SEC1", sec1(t, p256), &p256.PublicKey, "ES256"},
		{"P-384 SEC1", sec1(t, p384), &p384.PublicKey, "ES384"},
		{"P-521 SEC1", sec1(t, p521), &p521.PublicKey, "ES512"},
		{"SEC1 after EC PARAMETERS (openssl ecparam -genkey)", append(params, sec1(t, p256)...), &p256.PublicKey, "ES256"},
		{"CRLF and a UTF-8 BOM", []byte("\xef\xbb\xbf" + strings.ReplaceAll(string(sec1(t, p384)), "\n", "\r\n")), &p384.PublicKey, "ES384"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseKey(tt.data)
			if err != nil {
				t.Fatalf("ParseKey = %v", err)
			}
			if k.Alg() != tt.alg {
				t.Errorf("ParseKey().Alg() = %q, want %q", k.Alg(), tt.alg)
			}
			if want := thumbprint(t, tt.pub); k.KeyID() != want {
				t.Errorf("ParseKey().KeyID() = %q, want RFC 7638 thumbprint %q", k.KeyID(), want)
			}
			now := time.Now()
			verifyAssertion(t, signWith(t, k, now), tt.pub, tt.alg, k.KeyID(), "client-1", "https://ehr.example/oauth2/token", now)
		})
	}
}

// thumbprint computes RFC 7638 by hand (not through go-jose) from the required members in
// lexicographic order.
func thumbprint(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	b64 := base64.RawURLEncoding.EncodeToString
	var input string
	switch p := pub.(type) {
	case *rsa.PublicKey:
		e := minimalBytes(uint64(p.E))
		input = fmt.Sprintf(`{"e":"%s","kty":"RSA","n":"%s"}`, b64(e), b64(p.N.Bytes()))
	case *ecdsa.PublicKey:
		point, err := p.Bytes() // 0x04 || X || Y, each padded to the curve size
		if err != nil {
			t.Fatal(err)
		}
		x, y := point[1:1+len(point)/2], point[1+len(point)/2:]
		input = fmt.Sprintf(`{"crv":"%s","kty":"EC","x":"%s","y":"%s"}`, p.Curve.Params().Name, b64(x), b64(y))
	default:
		t.Fatalf("thumbprint of %T", pub)
	}
	sum := sha256.Sum256([]byte(input))
	return b64(sum[:])
}

// minimalBytes is the minimal big-endian encoding of n, as JWK "e" wants.
func minimalBytes(n uint64) []byte {
	var b []byte
	for ; n > 0; n >>= 8 {
		b = append([]byte{byte(n)}, b...)
	}
	return b
}

// TestOpenSSLKeys reads keys as `openssl genpkey` (PKCS#8) and `openssl ecparam -genkey` (SEC1
// after an EC PARAMETERS block) write them, and verifies with openssl's public key.
func TestOpenSSLKeys(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed")
	}
	tests := []struct {
		name string
		gen  []string
		alg  string
	}{
		{"genpkey RSA", []string{"genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "private.pem"}, "RS384"},
		{"genpkey EC P-384", []string{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", "private.pem"}, "ES384"},
		{"ecparam P-256", []string{"ecparam", "-name", "prime256v1", "-genkey", "-out", "private.pem"}, "ES256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, args := range [][]string{tt.gen, {"pkey", "-in", "private.pem", "-pubout", "-out", "public.pem"}} {
				cmd := exec.Command("openssl", args...)
				cmd.Dir = dir
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("openssl %v: %v\n%s", args, err, out)
				}
			}
			k, err := LoadKey(filepath.Join(dir, "private.pem"))
			if err != nil {
				t.Fatalf("LoadKey = %v", err)
			}
			b, err := os.ReadFile(filepath.Join(dir, "public.pem"))
			if err != nil {
				t.Fatal(err)
			}
			block, _ := pem.Decode(b)
			pub, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if k.Alg() != tt.alg || k.KeyID() != thumbprint(t, pub) {
				t.Errorf("LoadKey = alg %q kid %q, want %q and the thumbprint", k.Alg(), k.KeyID(), tt.alg)
			}
			now := time.Now()
			verifyAssertion(t, signWith(t, k, now), pub, tt.alg, k.KeyID(), "client-1", "https://ehr.example/oauth2/token", now)
			if _, err := LoadKey(filepath.Join(dir, "public.pem")); err == nil || !strings.Contains(err.Error(), "public.pem") {
				t.Errorf("LoadKey(public.pem) = %v, want an error naming the file", err)
			}
		})
	}
}

func TestParseKeyJWKS(t *testing.T) {
	rsaKey := testRSAKey()
	p256, p384 := ecKey(t, elliptic.P256()), ecKey(t, elliptic.P384())
	good := jwkJSON(t, p384, map[string]any{"kid": "good", "alg": "ES384"})
	tests := []struct {
		name    string
		data    []byte
		kid     string // "" → error wanted
		alg     string
		errWant string
	}{
		{"public key first, then the private one",
			jwksJSON(t, jwkJSON(t, &p384.PublicKey, map[string]any{"kid": "pub", "alg": "ES384"}), good), "good", "ES384", ""},
		{"enc key skipped",
			jwksJSON(t, jwkJSON(t, rsaKey, map[string]any{"kid": "enc", "alg": "RSA-OAEP", "use": "enc"}), good), "good", "ES384", ""},
		{"no kid, no alg skipped",
			jwksJSON(t, jwkJSON(t, p384, map[string]any{"alg": "ES384"}), jwkJSON(t, p384, map[string]any{"kid": "x"}), good), "good", "ES384", ""},
		{"key_ops without sign skipped",
			jwksJSON(t, jwkJSON(t, p384, map[string]any{"kid": "v", "alg": "ES384", "key_ops": []string{"verify"}}), good), "good", "ES384", ""},
		{"alg not for the curve skipped",
			jwksJSON(t, jwkJSON(t, p256, map[string]any{"kid": "bad", "alg": "ES384"}), good), "good", "ES384", ""},
		{"unreadable key skipped (RFC 7517 §5)",
			jwksJSON(t, json.RawMessage(`{"kty":"EC","crv":"P-999","kid":"odd","alg":"ES384","d":"AA"}`), good), "good", "ES384", ""},
		{"RSA with PS256", jwksJSON(t, jwkJSON(t, rsaKey, map[string]any{"kid": "r", "alg": "PS256", "use": "sig"})), "r", "PS256", ""},
		{"a single JWK, not a set", jwkJSON(t, rsaKey, map[string]any{"kid": "one", "alg": "RS384"}), "one", "RS384", ""},
		{"only public keys",
			jwksJSON(t, jwkJSON(t, &p384.PublicKey, map[string]any{"kid": "pub", "alg": "ES384"})), "", "", `kid "pub" is a public key`},
		{"only an enc key",
			jwksJSON(t, jwkJSON(t, rsaKey, map[string]any{"kid": "e", "alg": "RSA-OAEP", "use": "enc"})), "", "", `use "enc"`},
		{"RSA key with an EC alg",
			jwksJSON(t, jwkJSON(t, rsaKey, map[string]any{"kid": "r", "alg": "ES256"})), "", "", "does not sign with an RSA key"},
		{"symmetric key", jwksJSON(t, json.RawMessage(`{"kty":"oct","k":"c2VjcmV0","kid":"h","alg":"HS256"}`)), "", "", "symmetric"},
		{"empty set", []byte(`{"keys":[]}`), "", "", "no keys"},
		{"neither set nor key", []byte(`{"hello":1}`), "", "", "neither"},
		{"bad JSON", []byte(`{"keys":[`), "", "", "parse JSON"},
		{"single public JWK", jwkJSON(t, &p256.PublicKey, map[string]any{"kid": "p", "alg": "ES256"}), "", "", "public key"},
		{"empty", []byte(" \n"), "", "", "empty"},
		{"garbage", []byte("hello"), "", "", "neither"},
		{"PEM public key", pemBytes("PUBLIC KEY", []byte{1}), "", "", "public key"},
		{"encrypted PEM", pemBytes("ENCRYPTED PRIVATE KEY", []byte{1}), "", "", "encrypted"},
		{"bad PEM body", pemBytes("EC PRIVATE KEY", []byte{1, 2, 3}), "", "", "parse PEM EC PRIVATE KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseKey(tt.data)
			if tt.kid == "" {
				if err == nil || !strings.Contains(err.Error(), tt.errWant) {
					t.Fatalf("ParseKey = %v, %v; want error containing %q", k, err, tt.errWant)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseKey = %v", err)
			}
			if k.KeyID() != tt.kid || k.Alg() != tt.alg {
				t.Errorf("ParseKey = kid %q alg %q, want %q %q", k.KeyID(), k.Alg(), tt.kid, tt.alg)
			}
			now := time.Now()
			verifyAssertion(t, signWith(t, k, now), k.public(), tt.alg, tt.kid, "client-1", "https://ehr.example/oauth2/token", now)
		})
	}
}

func TestLoadKeyErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.jwks")
	if err := os.WriteFile(path, []byte(`{"keys":[{"kty":"EC","kid":"a"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, filepath.Join(dir, "missing.pem")} {
		if _, err := LoadKey(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("LoadKey(%q) = %v, want an error naming the file", p, err)
		}
	}
}

func TestKeyDoesNotPrintSecrets(t *testing.T) {
	k, err := ParseKey(sec1(t, ecKey(t, elliptic.P256())))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := k.jwk.Key.(*ecdsa.PrivateKey).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	var d big.Int
	d.SetBytes(raw)
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		if got := fmt.Sprintf(format, k); strings.Contains(got, d.String()) || strings.Contains(got, base64.RawURLEncoding.EncodeToString(raw)) {
			t.Errorf("Sprintf(%q, key) = %q, shows the private key", format, got)
		}
	}
}

func TestKeyFileWarning(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		mode os.FileMode
		warn bool
	}{{0o600, false}, {0o400, false}, {0o644, true}, {0o640, true}, {0o604, true}}
	for _, tt := range tests {
		if err := os.Chmod(path, tt.mode); err != nil {
			t.Fatal(err)
		}
		got := KeyFileWarning(path)
		if tt.warn != (got != "") || (tt.warn && !strings.Contains(got, path)) {
			t.Errorf("KeyFileWarning(mode %o) = %q, want warning %v naming the file", tt.mode, got, tt.warn)
		}
	}
	if got := KeyFileWarning(filepath.Join(dir, "missing")); got != "" {
		t.Errorf("KeyFileWarning(missing) = %q, want \"\"", got)
	}
}

func FuzzParseKey(f *testing.F) {
	p256 := ecKey(f, elliptic.P256())
	f.Add(sec1(f, p256))
	f.Add(pkcs8(f, p256))
	f.Add(jwksJSON(f, jwkJSON(f, p256, map[string]any{"kid": "a", "alg": "ES256"})))
	f.Add([]byte(jwkJSON(f, &p256.PublicKey, map[string]any{"kid": "a", "alg": "ES256"})))
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"k","alg":"RS384","n":"AQ","e":"AQ","d":"AQ"}]}`))
	f.Add([]byte(`{"kty":"EC","crv":"P-256","kid":"k","alg":"ES256","x":"","y":"","d":""}`))
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"))
	f.Add([]byte(`{"keys":[null,1,"x",{}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseKey(data)
		if err != nil {
			return
		}
		if k.Alg() == "" || k.KeyID() == "" {
			t.Errorf("ParseKey(%q) = key with alg %q kid %q", data, k.Alg(), k.KeyID())
		}
	})
}

// public returns the public half, to verify what the key signed.
func (k *Key) public() crypto.PublicKey {
	return k.jwk.Key.(crypto.Signer).Public()
}
