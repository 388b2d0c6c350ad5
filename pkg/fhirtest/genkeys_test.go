package fhirtest

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// TestGenKeysScript authenticates with the keys scripts/gen-keys.sh makes (jose, uuidgen,
// openssl): each key of private.jwks against public.jwks, and private.pem against public.pem.
func TestGenKeysScript(t *testing.T) {
	for _, tool := range []string{"jose", "uuidgen", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (.ci/run installs it)", tool)
		}
	}
	dir := t.TempDir()
	out, err := exec.Command("sh", "../../scripts/gen-keys.sh", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("gen-keys.sh: %v\n%s", err, out)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if st, err := os.Stat(filepath.Join(dir, "private.jwks")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("private.jwks mode = %v (%v), want 0600", st.Mode().Perm(), err)
	}
	var priv jose.JSONWebKeySet
	if err := json.Unmarshal(read("private.jwks"), &priv); err != nil || len(priv.Keys) != 2 {
		t.Fatalf("private.jwks: %v, %d keys; want 2", err, len(priv.Keys))
	}
	clock := &fakeClock{t: time.Now()}
	s := start(t, Options{Auth: AuthSMART, ClientID: "client-1", PublicKeys: [][]byte{read("public.jwks")}, Now: clock.now})
	for _, k := range priv.Keys {
		assertion := sign(t, k.Key, jose.SignatureAlgorithm(k.Algorithm), k.KeyID, claims(s, clock.now(), rand.Text()))
		if status, body := tokenRequest(t, s, assertion, "system/*.read"); status != 200 {
			t.Errorf("token with the %s key of private.jwks = %d %s, want 200", k.Algorithm, status, body)
		}
	}
	b, _ := pem.Decode(read("private.pem"))
	if b == nil {
		t.Fatal("private.pem: no PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatalf("private.pem: %v", err)
	}
	s = start(t, Options{Auth: AuthSMART, ClientID: "client-1", PublicKeys: [][]byte{read("public.pem")}, Now: clock.now})
	jwk := jose.JSONWebKey{Key: key}
	kid := thumbprint(t, jwk.Public().Key)
	if status, body := tokenRequest(t, s, sign(t, key, jose.RS384, kid, claims(s, clock.now(), rand.Text())), "system/*.read"); status != 200 {
		t.Errorf("token with private.pem = %d %s, want 200", status, body)
	}
}
