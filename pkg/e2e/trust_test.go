package e2e

// Issue 11: where trust comes from. The FHIR base, whose origin receives the credentials, is
// only ever what the user gave or what the tools learned from the server the user pointed them
// at; never the manifest's request member, and never a log bulk-fetch wrote from a manifest
// (DESIGN.md §2, token safety).

import (
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
)

// trustRecorder is an httptest server that records the Authorization header of each request.
type trustRecorder struct {
	*httptest.Server
	mu    sync.Mutex
	authz []string // "METHOD PATH: Authorization" of each request that carried one
	n     int
}

func newTrustRecorder(t *testing.T, h func(w http.ResponseWriter, r *http.Request)) *trustRecorder {
	t.Helper()
	rec := &trustRecorder{}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.n++
		if a := r.Header.Get("Authorization"); a != "" {
			rec.authz = append(rec.authz, r.Method+" "+r.URL.Path+": "+a)
		}
		rec.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(rec.Close)
	return rec
}

func (rec *trustRecorder) got() (n int, authz []string) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.n, append([]string(nil), rec.authz...)
}

// TestTrustManifestRequest: a manifest whose request member names another host (B), with its
// files and attachments there, must not make B trusted: neither bulk-fetch given the manifest
// alone, nor bulk-poll | bulk-fetch, nor ndjson-inline -i on the folder they wrote send B the
// bearer token or the basic password (issue 11.1).
func TestTrustManifestRequest(t *testing.T) {
	needBinaries(t, "bulk-poll", "bulk-fetch", "ndjson-inline")
	docRef := `{"resourceType":"DocumentReference","id":"d1","content":[{"attachment":{"contentType":"text/plain","url":"Binary/1"}}]}` + "\n"
	hostile := newTrustRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/files/DocumentReference.ndjson"):
			w.Header().Set("Content-Type", "application/fhir+ndjson")
			fmt.Fprint(w, docRef)
		case strings.HasSuffix(r.URL.Path, "/Binary/1"):
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, "hello world")
		default:
			http.NotFound(w, r)
		}
	})
	manifest := `{"transactionTime":"2024-01-01T00:00:00Z","request":"` + hostile.URL + `/fhir/Group/g/$export",` +
		`"requiresAccessToken":true,"output":[{"type":"DocumentReference","url":"` + hostile.URL + `/fhir/files/DocumentReference.ndjson"}],"error":[]}`
	// The server the user points bulk-poll at answers with that manifest.
	status := newTrustRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodDelete:
			w.WriteHeader(http.StatusAccepted)
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, manifest)
		}
	})
	creds := map[string][]string{
		"bearer": {"BULK_BEARER_TOKEN=" + secToken},
		"basic":  {"BULK_BASIC_USER=" + secUser, "BULK_BASIC_PASSWORD=" + secPassword},
	}
	for name, cred := range creds {
		t.Run(name, func(t *testing.T) {
			env := append([]string{"BULK_FHIR_URL=", "BULK_CACHE_DIR=" + t.TempDir()}, cred...)
			work := t.TempDir()

			// The manifest alone: nothing the user gave names a server, so there is nowhere
			// to send credentials.
			m := biWrite(t, filepath.Join(work, "manifest.json"), manifest+"\n")
			r := run(t, env, "", "bulk-fetch", "-q", "--dir", filepath.Join(work, "alone"), m)
			if r.Code != 2 || !strings.Contains(r.Stderr, "--fhir-url") {
				t.Errorf("bulk-fetch MANIFEST (request on another host): exit %d, stderr %q; want exit 2 naming --fhir-url", r.Code, r.Stderr)
			}

			// bulk-poll | bulk-fetch: the status URL's server is trusted, B is not.
			polled := mustRun(t, env, "", "bulk-poll", "-q", status.URL+"/fhir/status/1").Stdout
			dir := filepath.Join(work, "export")
			mustRun(t, env, polled, "bulk-fetch", "-q", "--dir", dir)
			if _, authz := status.got(); len(authz) == 0 {
				t.Errorf("the status server never got credentials: the test proves nothing")
			}

			// ndjson-inline -i on the folder: its log was written from the manifest, so it
			// vouches for no base; the relative attachment URL goes nowhere.
			r = run(t, env, "", "ndjson-inline", "-q", "-i", dir)
			if r.Code == 0 {
				t.Errorf("ndjson-inline -i: exit 0, want a failure naming --fhir-url; stderr %q", r.Stderr)
			}
			if n, authz := hostile.got(); n == 0 || len(authz) > 0 {
				t.Errorf("host B got %d requests, credentials on %q; want requests and no credentials", n, authz)
			}
		})
	}
}

// TestTrustSmartPipe: with only BULK_SMART_CLIENT_ID and BULK_SMART_KEY set, the README pipeline
// works end to end (the FHIR base and token endpoint that bulk-kickoff found reach bulk-poll and
// bulk-fetch through its export record), and so does resuming with `bulk-poll URL` in a new
// shell, which has nothing but the status URL (issue 12.5).
func TestTrustSmartPipe(t *testing.T) {
	needBinaries(t, "bulk-testserver", "bulk-kickoff", "bulk-poll", "bulk-fetch", "ndjson-inline")
	private, public := chaosKeys(t, t.TempDir())
	srv := startServer(t, "--patients", "3", "--polls", "2", "--retry-after", "0", "--auth", "smart",
		"--client-id", "site-client", "--public-key", public, "--requires-token")
	cache := t.TempDir()
	env := []string{"BULK_FHIR_URL=", "BULK_TOKEN_URL=", "BULK_CACHE_DIR=" + cache,
		"BULK_SMART_CLIENT_ID=site-client", "BULK_SMART_KEY=" + private}
	work := t.TempDir()

	// kickoff | poll | fetch, as the README has it.
	status := mustRun(t, env, "", "bulk-kickoff", "-q", srv.URL+"/Group/all", "--type", "Patient,Encounter,DocumentReference").Stdout
	manifest := mustRun(t, env, status, "bulk-poll", "-q").Stdout
	dir := filepath.Join(work, "export")
	written := mustRun(t, env, manifest, "bulk-fetch", "-q", "--dir", dir).Stdout
	if !strings.Contains(written, "Patient.000.ndjson") {
		t.Errorf("bulk-fetch wrote %q, want Patient.000.ndjson among them", written)
	}
	// The folder's log vouches for the base the record gave, so ndjson-inline needs nothing more.
	mustRun(t, env, "", "ndjson-inline", "-q", "-i", dir)

	// A second export, resumed in a new shell: the status URL as argument, the same settings,
	// after a first bulk-poll gave up.
	status2 := strings.TrimSpace(mustRun(t, env, "", "bulk-kickoff", "-q", srv.URL+"/Group/all", "--type", "Patient").Stdout)
	records, _ := filepath.Glob(filepath.Join(cache, "exports", "*.json"))
	if len(records) != 1 {
		t.Fatalf("export records after two kickoffs and one fetch: %q, want the second export's only", records)
	}
	for path, want := range map[string]os.FileMode{records[0]: 0o600, filepath.Dir(records[0]): 0o700} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", path, fi.Mode().Perm(), err, want)
		}
	}
	if r := run(t, env, "", "bulk-poll", "-q", "--timeout", "1ns", status2); r.Code != 1 {
		t.Fatalf("bulk-poll --timeout 1ns: exit %d, want 1 (gave up); stderr %q", r.Code, r.Stderr)
	}
	manifest2 := mustRun(t, env, "", "bulk-poll", "-q", status2).Stdout
	if base := gjson.Get(manifest2, "_bulkpipe.fhirBase").Str; base != srv.URL {
		t.Errorf("resumed bulk-poll: _bulkpipe.fhirBase = %q, want %q", base, srv.URL)
	}
	mustRun(t, env, manifest2, "bulk-fetch", "-q", "--dir", filepath.Join(work, "export2"))
}

// TestTrustNoDowngrade: a kickoff over https answered with a plain-http Content-Location: the
// status URL's server never gets the token in clear text, bulk-kickoff warns, and bulk-poll's
// error says why no token was sent (issue 11.2).
func TestTrustNoDowngrade(t *testing.T) {
	needBinaries(t, "bulk-kickoff", "bulk-poll")
	plain := newTrustRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"transactionTime":"2024-01-01T00:00:00Z","request":"x","requiresAccessToken":true,"output":[],"error":[]}`)
	})
	secure := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/$export") {
			w.Header().Set("Content-Location", plain.URL+"/fhir/status/1")
			w.WriteHeader(http.StatusAccepted)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(secure.Close)
	cert := biWrite(t, filepath.Join(t.TempDir(), "ca.pem"),
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: secure.Certificate().Raw})))
	env := []string{"BULK_FHIR_URL=", "BULK_CACHE_DIR=" + t.TempDir(), "SSL_CERT_FILE=" + cert, "BULK_BEARER_TOKEN=" + secToken}

	k := mustRun(t, env, "", "bulk-kickoff", "-q", secure.URL+"/fhir")
	if !strings.Contains(k.Stderr, "plain http") {
		t.Errorf("bulk-kickoff stderr = %q, want a warning about the plain-http status URL", k.Stderr)
	}
	r := run(t, env, k.Stdout, "bulk-poll", "-q")
	if r.Code != 1 || !strings.Contains(r.Stderr, "plain http on a host reached over https") {
		t.Errorf("bulk-poll: exit %d, stderr %q; want exit 1 naming the downgrade", r.Code, r.Stderr)
	}
	if n, authz := plain.got(); n == 0 || len(authz) > 0 {
		t.Errorf("the plain-http status server got %d requests, credentials on %q; want requests and no credentials", n, authz)
	}
}

// TestTrustNotAManifest: a 200 that is not a Bulk Data manifest (a Group, the
// CapabilityStatement) is an error in bulk-poll naming what came back, and bulk-fetch never
// DELETEs a URL whose manifest it did not read (issue 12.4).
func TestTrustNotAManifest(t *testing.T) {
	needBinaries(t, "bulk-poll", "bulk-fetch")
	var mu sync.Mutex
	var deletes []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete {
			mu.Lock()
			deletes = append(deletes, r.URL.Path)
			mu.Unlock()
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/Group/cohort-b"):
			fmt.Fprint(w, `{"resourceType":"Group","id":"cohort-b","type":"person","actual":true}`)
		case strings.HasSuffix(r.URL.Path, "/metadata"):
			fmt.Fprint(w, `{"resourceType":"CapabilityStatement","status":"active","kind":"instance","fhirVersion":"4.0.1"}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	env := []string{"BULK_FHIR_URL=", "BULK_CACHE_DIR=" + t.TempDir()}
	work := t.TempDir()
	for _, c := range []struct{ path, want string }{
		{"/fhir/Group/cohort-b", "not a Bulk Data manifest but a FHIR Group resource"},
		{"/fhir/metadata", "not a Bulk Data manifest but a FHIR CapabilityStatement resource"},
	} {
		r := run(t, env, "", "bulk-poll", "-q", srv.URL+c.path)
		if r.Code != 1 || !strings.Contains(r.Stderr, c.want) || r.Stdout != "" {
			t.Errorf("bulk-poll %s: exit %d, stdout %q, stderr %q; want exit 1, nothing on stdout, and %q", c.path, r.Code, r.Stdout, r.Stderr, c.want)
		}
		piped := sh(t, work, append(env, "URL="+srv.URL+c.path), `bulk-poll -q "$URL" | bulk-fetch -q --dir x`)
		if piped.Code == 0 {
			t.Errorf("bulk-poll %s | bulk-fetch: exit 0, want a failure; stderr %q", c.path, piped.Stderr)
		}
	}
	// A Group with a context line, as a tool that took it for a manifest would write.
	line := `{"resourceType":"Group","id":"cohort-b","_bulkpipe":{"statusUrl":"` + srv.URL + `/fhir/Group/cohort-b","page":1}}` + "\n"
	if r := run(t, env, line, "bulk-fetch", "-q", "--dir", filepath.Join(work, "g")); r.Code != 1 || !strings.Contains(r.Stderr, "not a Bulk Data manifest") {
		t.Errorf("bulk-fetch on a Group line: exit %d, stderr %q; want exit 1 naming it", r.Code, r.Stderr)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(deletes) > 0 {
		t.Errorf("DELETE reached %q, want no DELETE at all", deletes)
	}
}

// TestTrustPublicMetadata: with SMART auth, bulk-kickoff reads /metadata and
// .well-known/smart-configuration without credentials, and asks for a token only for the
// kickoff itself (issue 17.4).
func TestTrustPublicMetadata(t *testing.T) {
	needBinaries(t, "bulk-kickoff")
	private, public := chaosKeys(t, t.TempDir())
	pub, err := os.ReadFile(public)
	if err != nil {
		t.Fatal(err)
	}
	srv := biServer(t, fhirtest.Options{Patients: 2, Seed: 7, Auth: fhirtest.AuthSMART, ClientID: "site-client", PublicKeys: [][]byte{pub}})
	env := []string{"BULK_FHIR_URL=", "BULK_CACHE_DIR=" + t.TempDir(), "BULK_SMART_CLIENT_ID=site-client", "BULK_SMART_KEY=" + private}
	mustRun(t, env, "", "bulk-kickoff", "-q", srv.URL()+"/Group/all", "--type", "Patient")
	var routes []string
	for _, r := range srv.Requests() {
		routes = append(routes, r.Route)
		switch r.Route {
		case "metadata", "smart-configuration":
			if r.Authorization != "" {
				t.Errorf("%s %s got Authorization, want none: it is public", r.Method, r.URL)
			}
		case "kickoff":
			if r.Authorization == "" {
				t.Errorf("%s %s got no Authorization: the test proves nothing", r.Method, r.URL)
			}
		}
	}
	if got := strings.Join(routes, " "); !strings.HasPrefix(got, "metadata ") {
		t.Errorf("requests = %s, want the CapabilityStatement read first, before any token request", got)
	}
}
