package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// TestSeedKeysAuthenticate runs the key commands of the user's how-to verbatim (jose and uuidgen,
// as a site registering a backend client would) and exports with the result through the real
// binaries against bulk-testserver with SMART auth on; then the same with scripts/gen-keys.sh's
// PEM key. Nothing about the keys is prepared in Go.
func TestSeedKeysAuthenticate(t *testing.T) {
	for _, tool := range []string{"jose", "uuidgen", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (.ci/run installs it)", tool)
		}
	}
	needBinaries(t, "bulk-testserver", "bulk-kickoff", "bulk-poll")
	dir := t.TempDir()
	seed := `jose jwk gen -s -i "{\"alg\":\"RS384\",\"kid\":\"` + "`uuidgen`" + `\"}" -o private.jwks
jose jwk pub -s -i private.jwks -o public.jwks
chmod 600 private.jwks
sh "$ROOT/scripts/gen-keys.sh" pemkeys >/dev/null`
	if r := sh(t, dir, []string{"ROOT=" + moduleRoot()}, seed); r.Code != 0 {
		t.Fatalf("the seed's key commands failed (exit %d): %s", r.Code, r.Stderr)
	}
	cases := []struct{ name, public, private string }{
		{"seed JWKS", "public.jwks", "private.jwks"},
		{"gen-keys PEM", "pemkeys/public.pem", "pemkeys/private.pem"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, "--patients", "3", "--polls", "1", "--retry-after", "0",
				"--auth", "smart", "--client-id", "site-client", "--public-key", filepath.Join(dir, tc.public), "--requires-token")
			env := []string{"BULK_FHIR_URL=" + srv.URL, "BULK_SMART_CLIENT_ID=site-client",
				"BULK_SMART_KEY=" + filepath.Join(dir, tc.private)}
			status := mustRun(t, env, "", "bulk-kickoff", srv.URL+"/Group/all", "--type", "Patient,Encounter")
			manifest := mustRun(t, env, status.Stdout, "bulk-poll").Stdout
			if n := gjson.Get(manifest, "output.#").Int(); n < 2 || !gjson.Get(manifest, "requiresAccessToken").Bool() {
				t.Errorf("manifest has %d output files, requiresAccessToken %v: %s", n, gjson.Get(manifest, "requiresAccessToken"), manifest)
			}
			// And a wrong client is refused with the server's reason, at once.
			bad := append(env[:1:1], "BULK_SMART_CLIENT_ID=someone-else", env[2])
			r := run(t, bad, "", "bulk-kickoff", srv.URL+"/Group/all", "--type", "Patient")
			if r.Code != 1 || !strings.Contains(r.Stderr, "400 Bad Request") {
				t.Errorf("an unregistered client: exit %d, stderr %q; want exit 1 naming the token endpoint's 400", r.Code, r.Stderr)
			}
		})
	}
}
