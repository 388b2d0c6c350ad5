package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
)

// TestBadInputRefusedScope: a server that refuses the token for a scope of a type it does not
// hold (the SMART reference server refuses system/Binary.read) still serves a whole
// kickoff | poll | fetch of Patient and DocumentReference, since those steps ask only for the
// exported types. Asking for Binary anyway — with --scope, or by inlining attachments — fails
// with one line that names the refused scope and --scope.
func TestBadInputRefusedScope(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	keyPath := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	srv := biServer(t, fhirtest.Options{Patients: 2, Seed: 112, Auth: fhirtest.AuthSMART, ClientID: "scopes",
		PublicKeys: [][]byte{pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})}, StrictScopes: true})
	env := []string{"BULK_FHIR_URL=" + srv.URL(), "BULK_SMART_CLIENT_ID=scopes", "BULK_SMART_KEY=" + keyPath}

	dir := filepath.Join(t.TempDir(), "export")
	manifest := biManifest(t, srv.URL()+"/Group/all", env, "--type", "Patient,DocumentReference")
	files := mustRun(t, env, manifest, "bulk-fetch", "-q", "--dir", dir, "--no-delete").Stdout
	if !strings.Contains(files, "DocumentReference.000.ndjson") || !strings.Contains(files, "Patient.000.ndjson") {
		t.Fatalf("bulk-fetch wrote %q, want Patient and DocumentReference files", files)
	}

	r := run(t, env, "", "bulk-kickoff", "-q", srv.URL()+"/Group/all", "--type", "Patient",
		"--scope", "system/Patient.read system/Binary.read")
	want := `invalid_scope: Resources of type "Binary" do not exist on this server (refused: system/Binary.read); ` +
		`give --scope (or BULK_SCOPE) with the scopes this server grants, such as --scope 'system/Patient.read'`
	if last := lastLine(r.Stderr); r.Code != 1 || r.Stdout != "" || !strings.HasPrefix(last, "bulk-kickoff: ") || !strings.HasSuffix(last, want) {
		t.Errorf("bulk-kickoff --scope with Binary: exit %d, stdout %q, stderr:\n%s\nwant exit 1 and a last line ending %q", r.Code, r.Stdout, r.Stderr, want)
	}

	// Each attachment reports the refusal; the token endpoint is asked once, not once per
	// attachment. The scope is SMART v2's: the server's smart-configuration lists permission-v2.
	before := tokenRequests(srv)
	r = run(t, env, "", "ndjson-inline", "-q", "--in-place", dir)
	if n := tokenRequests(srv) - before; !strings.Contains(r.Stderr, "(refused: system/Binary.rs); give --scope") || n != 1 {
		t.Errorf("ndjson-inline against a server without Binary: exit %d, %d token requests (want 1), stderr:\n%s\nwant the refused scope and --scope named",
			r.Code, n, r.Stderr)
	}
}

func tokenRequests(srv *fhirtest.Server) int {
	n := 0
	for _, r := range srv.Requests() {
		if r.Route == "token" {
			n++
		}
	}
	return n
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndexByte(s, '\n')+1:]
}
