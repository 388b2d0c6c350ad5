package e2e

// Issue 8's security checks, run against the real binaries: the token (and --header values)
// never reach an untrusted origin, whatever the route (files, attachments, redirects to another
// port or host); secrets given by file or environment never show in logs, errors, --help or
// /proc/PID/cmdline; a private key readable by others draws a warning (DESIGN.md §1, §2).

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
)

// Secrets of these tests: distinctive, so a leak anywhere is found by substring.
const (
	secToken    = "tok-9f3a7c-s3cret"
	secPassword = "pw-2b8e-s3cret"
	secHeader   = "hdr-77d1-s3cret"
	secUser     = "alice"
	secClientID = "e2e-client"
)

// secFiles writes the secrets to files in a folder of their own (which leak scans skip) and
// returns their paths by name: token, password, header (a --header @FILE).
func secFiles(t *testing.T) map[string]string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "secrets")
	files := map[string]string{"token": secToken + "\n", "password": secPassword + "\n", "header": "X-Api-Key: " + secHeader + "\n"}
	out := map[string]string{}
	for name, content := range files {
		out[name] = biWrite(t, filepath.Join(dir, name), content)
		os.Chmod(out[name], 0o600)
	}
	return out
}

// secKeys makes a SMART key pair with jose (the seed's own commands, as scripts/gen-keys.sh
// does): the private JWKS file (mode 0600), the public JWKS, and the private key's "d".
func secKeys(t *testing.T) (private string, public []byte, d string) {
	t.Helper()
	if _, err := exec.LookPath("jose"); err != nil {
		t.Skip("needs jose (apt-get install jose) to make SMART keys, as scripts/gen-keys.sh does")
	}
	dir := filepath.Join(t.TempDir(), "keys")
	os.Mkdir(dir, 0o700)
	private, pub := filepath.Join(dir, "private.jwks"), filepath.Join(dir, "public.jwks")
	for _, args := range [][]string{
		{"jwk", "gen", "-s", "-i", `{"alg":"ES384","kid":"e2e-kid"}`, "-o", private},
		{"jwk", "pub", "-s", "-i", private, "-o", pub},
	} {
		if out, err := exec.Command("jose", args...).CombinedOutput(); err != nil {
			t.Fatalf("jose %v: %v: %s", args, err, out)
		}
	}
	os.Chmod(private, 0o600)
	b, _ := os.ReadFile(private)
	public, _ = os.ReadFile(pub)
	d = gjson.GetBytes(b, "keys.0.d").Str
	if d == "" {
		t.Fatalf("jose made no private key: %s", b)
	}
	return private, public, d
}

// secRedirector is another origin (a port of its own) that records the Authorization and
// X-Api-Key of each request and redirects it to target(path).
type secRedirector struct {
	*httptest.Server
	mu   sync.Mutex
	seen []http.Header
}

func secRedirect(t *testing.T, target func(path string) string) *secRedirector {
	t.Helper()
	r := &secRedirector{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.seen = append(r.seen, req.Header.Clone())
		r.mu.Unlock()
		http.Redirect(w, req, target(req.URL.Path), http.StatusFound)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *secRedirector) headers() []http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]http.Header(nil), r.seen...)
}

// secNoCredentials fails for each request to origin ("main" or "files") since index from that
// carries the token or the --header value; it returns how many there were.
func secNoCredentials(t *testing.T, srv *fhirtest.Server, from int, origin string, route string) int {
	t.Helper()
	n := 0
	for _, req := range srv.Requests()[from:] {
		if req.Origin != origin || (route != "" && req.Route != route) {
			continue
		}
		n++
		if req.Authorization != "" || req.Header.Get("X-Api-Key") != "" {
			t.Errorf("%s %s (%s origin, untrusted) got Authorization %q, X-Api-Key %q", req.Method, req.URL, origin,
				req.Authorization, req.Header.Get("X-Api-Key"))
		}
	}
	return n
}

// secEnv authenticates with the bearer token and a --header @FILE secret.
func secEnv(files map[string]string, more ...string) []string {
	return append([]string{"BULK_BEARER_TOKEN=" + secToken, "BULK_HEADER=@" + files["header"], "BULK_FHIR_URL="}, more...)
}

// TestSecurityTokenOrigins: the token and --header values go to trusted origins only (the FHIR
// base's, the status URL's, --token-origin), on every route and every redirect hop: not to
// presigned file URLs, not to absolute attachment URLs on another host, and not to the target
// of a redirect from a trusted origin to another port or another host name.
func TestSecurityTokenOrigins(t *testing.T) {
	needBinaries(t, "bulk-kickoff", "bulk-poll", "bulk-fetch", "ndjson-inline")
	files := secFiles(t)
	env := secEnv(files)

	t.Run("bulk-fetch-files-origin", func(t *testing.T) {
		srv := biServer(t, fhirtest.Options{Patients: 5, Seed: 101, RequiresToken: true, FilesOrigin: true, FilesRejectAuth: true})
		work := t.TempDir()
		m := biWrite(t, filepath.Join(work, "manifest.ndjson"), biManifest(t, srv.URL(), env))
		mustRun(t, env, "", "bulk-fetch", "-q", "--dir", filepath.Join(work, "export"), "--no-delete", m)
		if n := secNoCredentials(t, srv, 0, "files", ""); n < 5 {
			t.Errorf("%d requests to the files origin, want one per file", n)
		}
		secTrustedGotThem(t, srv, fhirtest.RouteStatus)
	})

	t.Run("ndjson-inline-files-origin", func(t *testing.T) {
		srv := biServer(t, fhirtest.Options{Patients: 5, Seed: 102, FilesOrigin: true, FilesRejectAuth: true})
		work := t.TempDir()
		m := biWrite(t, filepath.Join(work, "manifest.ndjson"), biManifest(t, srv.URL(), env, "--type", "DocumentReference,DiagnosticReport"))
		dir := filepath.Join(work, "export")
		mustRun(t, env, "", "bulk-fetch", "-q", "--dir", dir, "--no-delete", m)
		from := len(srv.Requests())
		r := mustRun(t, env, "", "ndjson-inline", "--in-place", dir)
		if !strings.Contains(lastLine(r.Stderr), " 0 failed, in ") {
			t.Errorf("ndjson-inline: stderr ends %q, want no failed attachment", r.Stderr[max(0, len(r.Stderr)-200):])
		}
		if n := secNoCredentials(t, srv, from, "files", ""); n == 0 {
			t.Errorf("no attachment was read from the files origin: nothing was tested")
		}
		secTrustedGotThem(t, srv, fhirtest.RouteBinary)
	})

	// A trusted origin (given with --token-origin) that redirects each file to the files origin,
	// by another port of the same host, or by another host name for the same address.
	for _, host := range []string{"127.0.0.1", "localhost"} {
		t.Run("bulk-fetch-redirect-to-"+host, func(t *testing.T) {
			srv := biServer(t, fhirtest.Options{Patients: 3, Seed: 103, RequiresToken: true, FilesOrigin: true, FilesRejectAuth: true})
			files, _ := url.Parse(srv.FilesURL())
			red := secRedirect(t, func(path string) string { return "http://" + host + ":" + files.Port() + path })
			work := t.TempDir()
			m := biWrite(t, filepath.Join(work, "manifest.ndjson"), biEditManifest(t, biManifest(t, srv.URL(), env), func(m map[string]any) {
				for _, arr := range []string{"output", "deleted", "error"} {
					for _, it := range biItems(m, arr) {
						u, _ := url.Parse(it["url"].(string))
						it["url"] = red.URL + u.Path
					}
				}
			}))
			mustRun(t, env, "", "bulk-fetch", "-q", "--dir", filepath.Join(work, "export"), "--no-delete", "--token-origin", red.URL, m)
			seen := red.headers()
			for _, h := range seen {
				if h.Get("Authorization") != "Bearer "+secToken || h.Get("X-Api-Key") != secHeader {
					t.Errorf("the trusted redirecting origin got Authorization %q, X-Api-Key %q; want both", h.Get("Authorization"), h.Get("X-Api-Key"))
				}
			}
			if n := secNoCredentials(t, srv, 0, "files", ""); n < len(seen) || len(seen) == 0 {
				t.Errorf("%d redirects, %d requests at their target: want each redirect followed", len(seen), n)
			}
		})
	}

	t.Run("ndjson-inline-redirect-to-another-port", func(t *testing.T) {
		srv := biServer(t, fhirtest.Options{Patients: 5, Seed: 104})
		work := t.TempDir()
		m := biWrite(t, filepath.Join(work, "manifest.ndjson"), biManifest(t, srv.URL(), env, "--type", "DocumentReference"))
		dir := filepath.Join(work, "export")
		mustRun(t, env, "", "bulk-fetch", "-q", "--dir", dir, "--no-delete", m)
		main, _ := url.Parse(srv.URL())
		// The FHIR base (trusted) answers each Binary read with a redirect to the test server,
		// which is another port: relative attachment URLs take that route.
		red := secRedirect(t, func(path string) string { return "http://" + main.Host + path })
		from := len(srv.Requests())
		r := mustRun(t, env, "", "ndjson-inline", "--fhir-url", red.URL+"/fhir", filepath.Join(dir, "DocumentReference.000.ndjson"))
		if !strings.Contains(lastLine(r.Stderr), " 0 failed, in ") {
			t.Errorf("ndjson-inline: stderr ends %q, want no failed attachment", r.Stderr[max(0, len(r.Stderr)-200):])
		}
		seen := red.headers()
		for _, h := range seen {
			if h.Get("Authorization") != "Bearer "+secToken {
				t.Errorf("the FHIR base got Authorization %q, want the token", h.Get("Authorization"))
			}
		}
		if n := secNoCredentials(t, srv, from, "main", fhirtest.RouteBinary); n < len(seen) || len(seen) == 0 {
			t.Errorf("%d redirects, %d Binary reads at their target: want each redirect followed", len(seen), n)
		}
	})
}

// secTrustedGotThem checks that the server's own origin got the token and the header on route:
// the negative checks above mean something only if the secrets were sent at all.
func secTrustedGotThem(t *testing.T, srv *fhirtest.Server, route string) {
	t.Helper()
	n := 0
	for _, req := range srv.Requests() {
		if req.Origin != "main" || req.Route != route {
			continue
		}
		n++
		if req.Authorization != "Bearer "+secToken || req.Header.Get("X-Api-Key") != secHeader {
			t.Errorf("%s %s (trusted) got Authorization %q, X-Api-Key %q; want both", req.Method, req.URL, req.Authorization, req.Header.Get("X-Api-Key"))
		}
	}
	if n == 0 {
		t.Errorf("no %s request reached the FHIR server's own origin", route)
	}
}

// secScan fails for each secret found in text.
func secScan(t *testing.T, where, text string, secrets []string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("%s holds the secret %q", where, s)
		}
	}
}

// secScanTree fails for each secret found in any file under dir (logs, manifests, data, the
// database): none was written anywhere.
func secScanTree(t *testing.T, dir string, secrets []string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			return nil
		}
		secScan(t, p, string(b), secrets)
		return nil
	})
}

// secIssued returns the access tokens the server saw (those it issued, for SMART).
func secIssued(srv *fhirtest.Server) []string {
	var out []string
	for _, req := range srv.Requests() {
		if tok, ok := strings.CutPrefix(req.Authorization, "Bearer "); ok && tok != "" {
			out = append(out, tok)
		}
	}
	return out
}

// TestSecuritySecretsNotLogged runs the whole pipeline (kickoff, poll, fetch, inline, load, each
// with its log) and failing runs (a 404 status URL, a 500 kickoff, a file that is gone, a
// rejected token) with each kind of credential, given by file or by environment, then looks for
// the secrets in every output stream and every file written.
func TestSecuritySecretsNotLogged(t *testing.T) {
	needBinaries(t, "bulk-kickoff", "bulk-poll", "bulk-fetch", "ndjson-inline", "etl-load")
	files := secFiles(t)
	basic := base64.StdEncoding.EncodeToString([]byte(secUser + ":" + secPassword))
	plain := biServer(t, fhirtest.Options{Patients: 3, Seed: 105, FilesOrigin: true, FilesRejectAuth: true})
	key, public, d := secKeys(t)
	smart := biServer(t, fhirtest.Options{Patients: 3, Seed: 106, Auth: fhirtest.AuthSMART, ClientID: secClientID,
		PublicKeys: [][]byte{public}, RequiresToken: true})
	keyFile, _ := os.ReadFile(key)

	for _, mode := range []struct {
		name    string
		srv     *fhirtest.Server
		env     []string
		secrets []string
		sent    string // the Authorization the server must have seen ("": the X-Api-Key header)
	}{
		{"bearer-file", plain, []string{"BULK_BEARER_TOKEN_FILE=" + files["token"]}, []string{secToken}, "Bearer " + secToken},
		{"bearer-env", plain, []string{"BULK_BEARER_TOKEN=" + secToken}, []string{secToken}, "Bearer " + secToken},
		{"basic-file", plain, []string{"BULK_BASIC_USER=" + secUser, "BULK_BASIC_PASSWORD_FILE=" + files["password"]}, []string{secPassword, basic}, "Basic " + basic},
		{"basic-env", plain, []string{"BULK_BASIC_USER=" + secUser, "BULK_BASIC_PASSWORD=" + secPassword}, []string{secPassword, basic}, "Basic " + basic},
		{"header-file", plain, []string{"BULK_HEADER=@" + files["header"]}, []string{secHeader}, ""},
		{"smart", smart, []string{"BULK_SMART_CLIENT_ID=" + secClientID, "BULK_SMART_KEY=" + key}, []string{d, string(bytes.TrimSpace(keyFile))}, ""},
	} {
		t.Run(mode.name, func(t *testing.T) {
			work := t.TempDir()
			env := append([]string{"BULK_FHIR_URL=" + mode.srv.URL(), "BULK_RETRIES=0"}, mode.env...)
			var runs []result
			step := func(code int, stdin, name string, args ...string) string {
				t.Helper()
				r := run(t, env, stdin, name, args...)
				if r.Code != code {
					t.Errorf("%s %s: exit %d, want %d\n%s", name, strings.Join(args, " "), r.Code, code, r.Stderr)
				}
				runs = append(runs, r)
				return r.Stdout
			}
			log := filepath.Join(work, "export.log")
			dir := filepath.Join(work, "export")
			from := len(mode.srv.Requests())
			status := step(0, "", "bulk-kickoff", "--log", log, mode.srv.URL(), "--type", "Patient,DocumentReference,MedicationRequest")
			manifest := biWrite(t, filepath.Join(work, "manifest.ndjson"), step(0, status, "bulk-poll", "--log", log))
			step(0, "", "bulk-fetch", "--log", log, "--dir", dir, "--no-delete", manifest)
			step(0, "", "ndjson-inline", "--in-place", "--log", filepath.Join(dir, "log.ndjson"), dir)
			step(0, "", "etl-load", "--db", filepath.Join(work, "site.duckdb"), dir)

			// Failures: their messages name URLs and statuses, never credentials.
			step(1, "", "bulk-poll", mode.srv.URL()+"/status/no-such-job")
			secAddFault(t, mode.srv, "500@kickoff*1")
			step(1, "", "bulk-kickoff", mode.srv.URL())
			gone := biWrite(t, filepath.Join(work, "gone.ndjson"), biEditManifest(t, biRead(t, manifest), func(m map[string]any) {
				delete(m, "_bulkpipe")
				m["output"] = []any{map[string]any{"type": "Patient", "url": mode.srv.URL() + "/files/no-such-job/x.ndjson"}}
			}))
			step(1, "", "bulk-fetch", "--dir", filepath.Join(work, "gone"), "--no-delete", gone)

			secrets := append(mode.secrets, secIssued(mode.srv)...)
			if mode.name == "smart" {
				if len(secrets) == len(mode.secrets) {
					t.Fatalf("the SMART server saw no access token: nothing was tested")
				}
				// A token this server never issued, and a client it does not know.
				r := run(t, append(env, "BULK_SMART_KEY=", "BULK_SMART_CLIENT_ID=", "BULK_BEARER_TOKEN="+secToken), "", "bulk-kickoff", mode.srv.URL())
				runs = append(runs, r)
				secrets = append(secrets, secToken)
				r = run(t, append(env, "BULK_SMART_CLIENT_ID=someone-else"), "", "bulk-kickoff", mode.srv.URL())
				runs = append(runs, r)
				for _, r := range runs[len(runs)-2:] {
					if r.Code != 1 {
						t.Errorf("bulk-kickoff with a rejected credential: exit %d, want 1\n%s", r.Code, r.Stderr)
					}
				}
			}
			seen := false
			for _, req := range mode.srv.Requests()[from:] {
				seen = seen || mode.sent != "" && req.Authorization == mode.sent || mode.sent == "" && req.Header.Get("X-Api-Key") == secHeader
			}
			if !seen && mode.name != "smart" {
				t.Errorf("the server never saw the credential (Authorization %q, or the X-Api-Key header): the secret was not in play", mode.sent)
			}
			// A JWT (a client assertion, or a token) starts "eyJ": none belongs in a message or a log.
			jwt := append(secrets, "eyJ")
			for i, r := range runs {
				secScan(t, "stdout of run "+strconv.Itoa(i), r.Stdout, jwt)
				secScan(t, "stderr of run "+strconv.Itoa(i), r.Stderr, jwt)
			}
			for _, l := range []string{log, filepath.Join(dir, "log.ndjson")} {
				secScan(t, l, biRead(t, l), jwt)
			}
			secScanTree(t, work, secrets)
		})
	}
}

// secAddFault adds a fault to a running in-process server.
func secAddFault(t *testing.T, srv *fhirtest.Server, spec string) {
	t.Helper()
	f, err := fhirtest.ParseFault(spec)
	if err != nil {
		t.Fatal(err)
	}
	srv.AddFault(f)
}

// TestSecurityHelpShowsNoSecrets: --help (and a usage error) with every secret set in the
// environment prints none of them: urfave/cli shows an environment variable's value as a
// flag's default, which would print BULK_HEADER or a password.
func TestSecurityHelpShowsNoSecrets(t *testing.T) {
	tools := []string{"bulk-kickoff", "bulk-poll", "bulk-fetch", "ndjson-inline", "ndjson-merge", "etl-load"}
	needBinaries(t, tools...)
	files := secFiles(t)
	env := []string{"BULK_BEARER_TOKEN=" + secToken, "BULK_BASIC_PASSWORD=" + secPassword, "BULK_HEADER=X-Api-Key: " + secHeader,
		"BULK_HEADERS=X-Api-Key: " + secHeader, "BULK_BEARER_TOKEN_FILE=" + files["token"], "BULK_BASIC_PASSWORD_FILE=" + files["password"]}
	for _, tool := range tools {
		for _, args := range [][]string{{"--help"}, {"--no-such-flag"}} {
			r := run(t, env, "", tool, args...)
			secScan(t, tool+" "+args[0]+" stdout", r.Stdout, []string{secToken, secPassword, secHeader})
			secScan(t, tool+" "+args[0]+" stderr", r.Stderr, []string{secToken, secPassword, secHeader})
		}
	}
}

// TestSecurityCmdline: while bulk-poll waits on a long export, /proc/PID/cmdline (readable by
// every user) holds no secret given by file or environment: the tools never re-exec themselves
// with one, or put one in argv.
func TestSecurityCmdline(t *testing.T) {
	needBinaries(t, "bulk-kickoff", "bulk-poll")
	if _, err := os.Stat("/proc/self/cmdline"); err != nil {
		t.Skip("needs /proc/PID/cmdline (Linux)")
	}
	files := secFiles(t)
	key, public, d := secKeys(t)
	keyFile, _ := os.ReadFile(key)
	long := fhirtest.Options{Patients: 1, Seed: 107, Polls: 1 << 20, RetryAfter: time.Second}
	plain := biServer(t, long)
	long.Auth, long.ClientID, long.PublicKeys = fhirtest.AuthSMART, secClientID, [][]byte{public}
	smart := biServer(t, long)
	smartEnv := []string{"BULK_SMART_CLIENT_ID=" + secClientID, "BULK_SMART_KEY=" + key}

	for _, mode := range []struct {
		name    string
		srv     *fhirtest.Server
		env     []string
		args    []string
		secrets []string
	}{
		{"bearer-file", plain, nil, []string{"--bearer-token", files["token"]}, []string{secToken}},
		{"bearer-env", plain, []string{"BULK_BEARER_TOKEN=" + secToken}, nil, []string{secToken}},
		{"basic-file", plain, []string{"BULK_BASIC_USER=" + secUser}, []string{"--basic-password", files["password"]}, []string{secPassword}},
		{"header-file", plain, nil, []string{"--header", "@" + files["header"]}, []string{secHeader}},
		{"smart", smart, smartEnv, nil, []string{d, string(bytes.TrimSpace(keyFile))}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			env := append([]string{"BULK_FHIR_URL=" + mode.srv.URL()}, mode.env...)
			status := strings.TrimSpace(mustRun(t, env, "", "bulk-kickoff", append([]string{"-q", mode.srv.URL()}, mode.args...)...).Stdout)
			from := len(mode.srv.Requests())
			cmd := exec.CommandContext(t.Context(), filepath.Join(binDir, "bulk-poll"), append([]string{status}, mode.args...)...)
			cmd.Env = append(os.Environ(), env...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
			// Once the server has seen an authenticated poll, the credentials were read.
			deadline := time.Now().Add(30 * time.Second)
			for !secPolled(mode.srv, from, status) {
				if time.Now().After(deadline) {
					t.Fatalf("bulk-poll never polled %s with credentials: %s", status, stderr.String())
				}
				time.Sleep(20 * time.Millisecond) // waiting for the other process, not for time to pass
			}
			cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cmdline")
			if err != nil || len(cmdline) == 0 {
				t.Fatalf("/proc/%d/cmdline: %q, %v", cmd.Process.Pid, cmdline, err)
			}
			secScan(t, "/proc/PID/cmdline ("+strings.ReplaceAll(string(cmdline), "\x00", " ")+")", string(cmdline), mode.secrets)
		})
	}
}

// secPolled reports whether the server has seen, since index from, a poll of status that
// carried credentials (Authorization or the --header value).
func secPolled(srv *fhirtest.Server, from int, status string) bool {
	for _, req := range srv.Requests()[from:] {
		if req.Route == fhirtest.RouteStatus && req.URL == status && (req.Authorization != "" || req.Header.Get("X-Api-Key") != "") {
			return true
		}
	}
	return false
}

// TestSecurityKeyFileMode: a private key file readable by group or others draws a warning
// naming it (like ssh); one readable by its owner only does not.
func TestSecurityKeyFileMode(t *testing.T) {
	needBinaries(t, "bulk-kickoff", "bulk-poll")
	key, public, _ := secKeys(t)
	srv := biServer(t, fhirtest.Options{Patients: 1, Seed: 108, Auth: fhirtest.AuthSMART, ClientID: secClientID, PublicKeys: [][]byte{public}})
	env := []string{"BULK_FHIR_URL=" + srv.URL(), "BULK_SMART_CLIENT_ID=" + secClientID, "BULK_SMART_KEY=" + key}
	for _, tc := range []struct {
		mode os.FileMode
		warn bool
	}{{0o644, true}, {0o640, true}, {0o600, false}, {0o400, false}} {
		if err := os.Chmod(key, tc.mode); err != nil {
			t.Fatal(err)
		}
		r := mustRun(t, env, "", "bulk-kickoff", srv.URL())
		p := mustRun(t, env, r.Stdout, "bulk-poll")
		for _, out := range []struct{ tool, stderr string }{{"bulk-kickoff", r.Stderr}, {"bulk-poll", p.Stderr}} {
			warned := strings.Contains(out.stderr, "warning: "+key+" is readable by others")
			if warned != tc.warn {
				t.Errorf("%s with the key file mode %v: warned = %v, want %v\nstderr:\n%s", out.tool, tc.mode, warned, tc.warn, out.stderr)
			}
		}
	}
}
