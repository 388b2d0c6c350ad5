package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tidwall/gjson"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
	"github.com/bulkpipe/bulkpipe/pkg/tool"
)

// clockDeps are the deps of a run on the fake clock.
func clockDeps(c *fhirtest.Clock) tool.Deps {
	return tool.Deps{Now: c.Now, Sleep: c.Sleep, ReadTimeout: 200 * time.Millisecond}
}

func newServer(t *testing.T, opts fhirtest.Options) *fhirtest.Server {
	t.Helper()
	if opts.Patients == 0 {
		opts.Patients = 4
	}
	return fhirtest.Start(t, opts)
}

func runKickoff(t *testing.T, d tool.Deps, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = tool.Run(t.Context(), newApp(d), append([]string{"bulk-kickoff"}, args...), strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

var statusLine = regexp.MustCompile(`^http://127\.0\.0\.1:\d+/fhir/status/\w+\n$`)

// manifest polls an export with the library and describes it without what differs between two
// runs of the same export (URLs, times): the request and each item's type and count.
func manifest(t *testing.T, srv *fhirtest.Server, status string) string {
	t.Helper()
	c, err := fhirclient.New(fhirclient.Options{FHIRBase: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	var s string
	err = bulk.Poll(t.Context(), c, strings.TrimSpace(status), bulk.PollOptions{MaxWait: time.Millisecond}, func(p bulk.Page) error {
		m := gjson.ParseBytes(p.Raw)
		s += fmt.Sprintf("page %d %s:", p.Number, m.Get("request").Str)
		for _, key := range []string{"output", "deleted", "error", "outcome"} {
			for _, it := range m.Get(key).Array() {
				s += fmt.Sprintf(" %s/%s:%d", key, it.Get("type").Str, it.Get("count").Int())
			}
		}
		s += "\n"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(s, srv.URL(), "BASE")
}

// lastKickoff is the last kickoff request the server saw.
func lastKickoff(t *testing.T, srv *fhirtest.Server) fhirtest.RequestRecord {
	t.Helper()
	reqs := srv.Requests()
	for i := len(reqs) - 1; i >= 0; i-- {
		if reqs[i].Route == "kickoff" {
			return reqs[i]
		}
	}
	t.Fatal("no kickoff request")
	return fhirtest.RequestRecord{}
}

func TestKickoffLevelsAndMethods(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Polls: 1})
	clk := fhirtest.NewClock()
	for _, level := range []string{"", "/Patient", "/Group/all", "/Group/cohort-a", "/$export", "/Group/cohort-b/$export?_type=Patient"} {
		for _, post := range []bool{false, true} {
			name := fmt.Sprintf("%s post=%v", level, post)
			args := []string{srv.URL() + level, "--type", "Patient,Condition", "--type", "Patient"}
			if post {
				args = append(args, "--post")
			}
			code, stdout, stderr := runKickoff(t, clockDeps(clk), "", args...)
			if code != 0 || !statusLine.MatchString(stdout) {
				t.Errorf("%s: exit %d, stdout %q, stderr:\n%s", name, code, stdout, stderr)
				continue
			}
			if want := "bulk-kickoff: to resume: bulk-poll '" + strings.TrimSpace(stdout) + "'\n"; !strings.HasSuffix(stderr, want) {
				t.Errorf("%s: stderr %q does not end with %q", name, stderr, want)
			}
			k := lastKickoff(t, srv)
			wantMethod, wantPath := "GET", strings.SplitN(level, "?", 2)[0]
			if post {
				wantMethod = "POST"
			}
			if !strings.HasSuffix(wantPath, "$export") {
				wantPath += "/$export"
			}
			if k.Method != wantMethod || !strings.HasPrefix(k.URL, srv.URL()+wantPath) {
				t.Errorf("%s: server saw %s %s, want %s %s", name, k.Method, k.URL, wantMethod, srv.URL()+wantPath)
			}
			if !post && !strings.Contains(k.URL, "_type=Patient,Condition") {
				t.Errorf("%s: kickoff URL %s, want _type=Patient,Condition in one comma list", name, k.URL)
			}
			m := manifest(t, srv, stdout)
			if !strings.Contains(m, "output/Patient:") || strings.Contains(m, "output/Observation") {
				t.Errorf("%s: manifest %s, want Patient and Condition only", name, m)
			}
			if level == "/Group/cohort-b/$export?_type=Patient" && strings.Contains(m, "output/Patient:4") {
				t.Errorf("%s: manifest %s: cohort-b has fewer patients", name, m)
			}
		}
	}
}

// Every fault kind on kickoff: retried only when the server said it started nothing (429, 503
// with Retry-After), then the export equals a fault-free one; otherwise exit 1 saying why.
func TestKickoffFaults(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Polls: 1})
	clk := fhirtest.NewClock()
	args := []string{srv.URL() + "/Group/all", "--type", "Patient,Observation", "--type-filter", "Observation?category=laboratory,vital-signs"}
	code, stdout, stderr := runKickoff(t, clockDeps(clk), "", args...)
	if code != 0 {
		t.Fatalf("fault-free kickoff: exit %d: %s", code, stderr)
	}
	want := manifest(t, srv, stdout)
	// The filter reached the server as one filter whose category means "laboratory or
	// vital-signs": fewer Observations than without it, more than with one category.
	count := func(m string) string { return regexp.MustCompile(`output/Observation:\d+`).FindString(m) }
	_, all, _ := runKickoff(t, clockDeps(clk), "", srv.URL()+"/Group/all", "--type", "Patient,Observation")
	_, lab, _ := runKickoff(t, clockDeps(clk), "", args[0], "--type", "Observation", "--type-filter", "Observation?category=laboratory")
	nAll, nLab, nBoth := count(manifest(t, srv, all)), count(manifest(t, srv, lab)), count(want)
	var a, l, b int
	fmt.Sscanf(nAll, "output/Observation:%d", &a)
	fmt.Sscanf(nLab, "output/Observation:%d", &l)
	fmt.Sscanf(nBoth, "output/Observation:%d", &b)
	if !(l < b && b < a) {
		t.Errorf("Observations: %d laboratory, %d laboratory or vital-signs, %d in all; want strictly increasing", l, b, a)
	}
	tests := []struct {
		spec string
		code int
		err  string // in stderr
	}{
		{"429:2@kickoff*2", 0, "429 Too Many Requests; retrying in 2s (attempt 2)"},
		{"429:date@kickoff", 0, "429 Too Many Requests; retrying in"},
		{"429:epoch-ms@kickoff", 0, "429 Too Many Requests; retrying in"},
		{"429:epoch-s@kickoff", 0, "429 Too Many Requests; retrying in"},
		{"503:1@kickoff", 0, "503 Service Unavailable; retrying in 1s (attempt 2)"},
		{"slow:30@kickoff", 0, ""},
		{"truncate@kickoff", 0, ""}, // the 202's headers arrived: the status URL is known
		{"reset@kickoff", 0, ""},
		{"stall@kickoff", 0, ""},
		{"500@kickoff", 1, "500 Internal Server Error"},
		{"503@kickoff", 1, "503 Service Unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			f, err := fhirtest.ParseFault(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			srv.AddFault(f)
			before := len(srv.Requests())
			code, stdout, stderr := runKickoff(t, clockDeps(clk), "", args...)
			if code != tt.code || !strings.Contains(stderr, tt.err) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, stderr, tt.code, tt.err)
			}
			kickoffs := 0
			for _, r := range srv.Requests()[before:] {
				if r.Route == "kickoff" {
					kickoffs++
				}
			}
			if tt.code != 0 {
				if stdout != "" || kickoffs != 1 || strings.Count(stderr, "\n") > 2 {
					t.Errorf("stdout %q after %d kickoff requests, stderr %q; want nothing, 1 request (no retry), one error line", stdout, kickoffs, stderr)
				}
				return
			}
			if got := manifest(t, srv, stdout); got != want {
				t.Errorf("export differs from a fault-free one:\n got %s\nwant %s", got, want)
			}
		})
	}
}

// A kickoff cut after it was sent is not repeated: exit 1 saying an export may already exist.
func TestKickoffMaybeSent(t *testing.T) {
	clk := fhirtest.NewClock()
	srv := newServer(t, fhirtest.Options{Override: map[string][]byte{
		"/$export":           []byte("HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"),
		"/Group/rel/$export": []byte("HTTP/1.1 202 Accepted\r\nContent-Location: ../../status/job9\r\nContent-Length: 0\r\n\r\n"),
	}})
	code, stdout, stderr := runKickoff(t, clockDeps(clk), "", srv.URL(), "-q")
	if want := "bulk-kickoff: GET " + srv.URL() + "/$export: 202 Accepted without a Content-Location header (no status URL to poll)\n"; code != 1 || stdout != "" || stderr != want {
		t.Errorf("202 without Content-Location: exit %d, stdout %q, stderr %q; want 1 and %q", code, stdout, stderr, want)
	}
	// A relative Content-Location is resolved against the kickoff URL.
	code, stdout, stderr = runKickoff(t, clockDeps(clk), "", srv.URL()+"/Group/rel", "-q")
	if code != 0 || stdout != srv.URL()+"/status/job9\n" {
		t.Errorf("relative Content-Location: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// A connection reset before any answer, once the request went out.
	l := newResetServer(t)
	code, stdout, stderr = runKickoff(t, clockDeps(clk), "", l)
	if code != 1 || stdout != "" || !strings.Contains(stderr, "an export may already exist on the server") {
		t.Errorf("reset after sending: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestKickoffLog(t *testing.T) {
	srv := newServer(t, fhirtest.Options{})
	clk := fhirtest.NewClock()
	logPath := filepath.Join(t.TempDir(), "log.ndjson")
	code, stdout, stderr := runKickoff(t, clockDeps(clk), "", srv.URL()+"/Group/all", "--log", logPath, "--patient", "p1",
		"--patient", "Patient/p2", "--type", "Patient", "--since", "2020-01", "--allow-partial-manifests", "-o", filepath.Join(t.TempDir(), "url"))
	if code != 0 || stdout != "" {
		t.Fatalf("exit %d, stdout %q: %s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "bulk-kickoff: _since=2020-01-01T00:00:00Z\n") {
		t.Errorf("stderr does not echo the normalized --since: %s", stderr)
	}
	events, err := exportdir.LogEvents(logPath)
	if err != nil || len(events) != 1 {
		t.Fatalf("log: %v, %d events", err, len(events))
	}
	e := events[0]
	d := gjson.ParseBytes(e.EventDetail)
	if e.EventID != "kickoff" || !strings.HasPrefix(e.ExportID, srv.URL()+"/status/") || e.Client != "bulkpipe" || e.ClientVersion == "" {
		t.Errorf("event = %+v", e)
	}
	wantParams := `{"_since":"2020-01-01T00:00:00Z","_type":"Patient","_patientCount":2,"allowPartialManifests":true}`
	if got := d.Get("requestParameters"); !gjson.Valid(got.Raw) || !jsonEqual(got.Raw, wantParams) {
		t.Errorf("requestParameters = %s, want %s", got.Raw, wantParams)
	}
	if d.Get("exportUrl").Str != srv.URL()+"/Group/all/$export" || d.Get("logVersion").Str != "2" ||
		d.Get("errorCode").Type != gjson.Null || d.Get("softwareName").Str == "" || d.Get("fhirVersion").Str == "" ||
		!d.Get("responseHeaders.content-location").Exists() {
		t.Errorf("kickoff event detail = %s", d.Raw)
	}
	// A failed kickoff is logged too, under a random id; -o leaves no file.
	outFile := filepath.Join(t.TempDir(), "status.txt")
	code, _, _ = runKickoff(t, clockDeps(clk), "", srv.URL()+"/Group/nope", "--log", logPath, "-o", outFile)
	if entries, _ := os.ReadDir(filepath.Dir(outFile)); len(entries) != 0 {
		t.Errorf("after a failed kickoff the -o folder holds %v; want nothing", entries)
	}
	events, _ = exportdir.LogEvents(logPath)
	if code != 1 || len(events) != 2 {
		t.Fatalf("failed kickoff: exit %d, %d events", code, len(events))
	}
	e = events[1]
	d = gjson.ParseBytes(e.EventDetail)
	if !regexp.MustCompile(`^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(e.ExportID) ||
		d.Get("errorCode").Int() != 404 || !strings.Contains(d.Get("errorBody").Str, "Group/nope") {
		t.Errorf("failed kickoff event = %s %s", e.ExportID, d.Raw)
	}
}

// 429s (another export running) are retried for --wait, then the kickoff gives up saying so.
func TestKickoffWaitBudget(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Faults: []fhirtest.Fault{{Kind: "429", Arg: "120", Route: "kickoff", Count: 1000}}})
	clk := fhirtest.NewClock()
	code, stdout, stderr := runKickoff(t, clockDeps(clk), "", srv.URL(), "--wait", "10m", "-q")
	if code != 1 || stdout != "" || !strings.Contains(stderr, "429 Too Many Requests") || !strings.Contains(stderr, "10m0s budget") {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 naming the 429 and the budget", code, stdout, stderr)
	}
	var waited time.Duration
	for _, d := range clk.Slept() {
		waited += d
	}
	if waited > 10*time.Minute || waited < 8*time.Minute {
		t.Errorf("waited %v in all, want most of the 10m budget and no more", waited)
	}
}

// Values of --patient, --param, --type-filter and --header are never split on commas.
func TestKickoffNoSplitting(t *testing.T) {
	srv := newServer(t, fhirtest.Options{})
	clk := fhirtest.NewClock()
	code, _, stderr := runKickoff(t, clockDeps(clk), "", srv.URL()+"/Group/all", "--header", "X-Test: a,b", "--type", "Patient",
		"--patient", "p,1", "--param", "x-vendor=c,d", "--lenient")
	k := lastKickoff(t, srv)
	if got := k.Header.Values("X-Test"); len(got) != 1 || got[0] != "a,b" {
		t.Errorf("X-Test = %q (exit %d: %s), want one value a,b", got, code, stderr)
	}
	if k.Method != "POST" {
		t.Errorf("--patient sent a %s, want a POST", k.Method)
	}
	if !slices.Equal(k.Header.Values("Prefer"), []string{"respond-async", "handling=lenient"}) {
		t.Errorf("Prefer = %q", k.Header.Values("Prefer"))
	}
}

func jsonEqual(a, b string) bool {
	return cmp.Equal(gjson.Parse(a).Value(), gjson.Parse(b).Value())
}

func TestKickoffMetadataNotFatal(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Override: map[string][]byte{"/metadata": []byte("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")}})
	clk := fhirtest.NewClock()
	logPath := filepath.Join(t.TempDir(), "log.ndjson")
	code, stdout, stderr := runKickoff(t, clockDeps(clk), "", srv.URL(), "--log", logPath, "-q")
	if code != 0 || !statusLine.MatchString(stdout) || !strings.Contains(stderr, "bulk-kickoff: warning: GET "+srv.URL()+"/metadata: 404 Not Found") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	events, _ := exportdir.LogEvents(logPath)
	if d := gjson.ParseBytes(events[0].EventDetail); d.Get("softwareName").Type != gjson.Null {
		t.Errorf("softwareName = %s, want null", d.Get("softwareName").Raw)
	}
}

func TestKickoffSMART(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	keyPath := filepath.Join(t.TempDir(), "key.pem")
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	pubDER, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	pub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	srv := newServer(t, fhirtest.Options{Auth: fhirtest.AuthSMART, ClientID: "kick", PublicKeys: [][]byte{pub},
		Faults: []fhirtest.Fault{{Kind: "401", Route: "kickoff"}}})
	clk := fhirtest.NewClock()
	code, stdout, stderr := runKickoff(t, clockDeps(clk), "", srv.URL()+"/Group/all", "--type", "Patient,DocumentReference",
		"--smart-client-id", "kick", "--smart-key", keyPath)
	if code != 0 || !statusLine.MatchString(stdout) {
		t.Fatalf("exit %d, stdout %q, stderr %s", code, stdout, stderr)
	}
	var kickoffs int
	for _, r := range srv.Requests() {
		if r.Route == "kickoff" {
			kickoffs++
			if !strings.HasPrefix(r.Authorization, "Bearer ") {
				t.Errorf("kickoff without a token: %+v", r)
			}
		}
	}
	if kickoffs != 2 {
		t.Errorf("%d kickoff requests, want 2 (a revoked token: re-authorize once)", kickoffs)
	}
	code, _, stderr = runKickoff(t, clockDeps(clk), "", srv.URL(), "--smart-client-id", "kick")
	if code != 2 || !strings.Contains(stderr, "--smart-key") {
		t.Errorf("half the SMART flags: exit %d, stderr %s", code, stderr)
	}
}

// smartKey writes a new P-384 private key for a SMART client and returns its path and the PEM
// public key to register with the test server.
func smartKey(t *testing.T) (path string, pub []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	path = filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
}

// TestKickoffScopes: against a server that refuses scopes for types it does not hold (as the
// SMART reference server refuses system/Binary.read), the kickoff asks only for the exported
// types, and a refused --scope is reported with the scope and how to set --scope.
func TestKickoffScopes(t *testing.T) {
	keyPath, pub := smartKey(t)
	srv := newServer(t, fhirtest.Options{Auth: fhirtest.AuthSMART, ClientID: "kick", PublicKeys: [][]byte{pub}, StrictScopes: true})
	clk := fhirtest.NewClock()
	code, stdout, stderr := runKickoff(t, clockDeps(clk), "", srv.URL()+"/Group/all", "--type", "Patient,DocumentReference,MedicationRequest",
		"--smart-client-id", "kick", "--smart-key", keyPath, "-q")
	if code != 0 || !statusLine.MatchString(stdout) {
		t.Fatalf("kickoff of Patient,DocumentReference,MedicationRequest: exit %d, stdout %q, stderr %s", code, stdout, stderr)
	}

	code, stdout, stderr = runKickoff(t, clockDeps(clk), "", srv.URL()+"/Group/all", "--type", "Patient,DocumentReference",
		"--smart-client-id", "kick", "--smart-key", keyPath, "-q", "--scope", "system/Patient.read system/DocumentReference.read system/Binary.read")
	want := `bulk-kickoff: GET ` + srv.URL() + `/Group/all/$export?_type=Patient,DocumentReference: getting credentials: request access token: POST ` + srv.URL() +
		`/auth/token: 400 Bad Request: invalid_scope: Resources of type "Binary" do not exist on this server (refused: system/Binary.read); ` +
		`give --scope (or BULK_SCOPE) with the scopes this server grants, such as --scope 'system/Patient.read system/DocumentReference.read'` + "\n"
	// (A warning about /metadata, fetched with the same token, may come first.)
	if code != 1 || stdout != "" || !strings.HasSuffix(stderr, "\n"+want) && stderr != want {
		t.Errorf("refused --scope: exit %d, stdout %q, stderr\n%s\nwant exit 1 and stderr ending\n%s", code, stdout, stderr, want)
	}
}

func TestKickoffArguments(t *testing.T) {
	srv := newServer(t, fhirtest.Options{})
	clk := fhirtest.NewClock()
	tests := []struct {
		stdin string
		args  []string
		code  int
		err   string
	}{
		{"", nil, 2, "no FHIR_URL"},
		{"", []string{"-"}, 1, "bulk-kickoff: no input on stdin (did the previous step fail?)\n"},
		{"", []string{"a", "b"}, 2, "too many arguments"},
		{"", []string{srv.URL(), "--since", "last week"}, 2, `bulk-kickoff: --since: "last week" is not a FHIR date or dateTime`},
		{"", []string{srv.URL(), "--until", "2024-02-30"}, 2, "bulk-kickoff: --until:"},
		{"", []string{srv.URL(), "--param", "noequals"}, 2, `--param "noequals": want NAME=VALUE`},
		{"", []string{srv.URL(), "--param", "_outputFormat=x", "--output-format", "y"}, 2, "given twice"},
		{"", []string{"ftp://x/fhir"}, 2, "want an absolute http or https URL"},
		{"", []string{srv.URL(), "--wait", "forever"}, 2, `invalid value "forever" for flag -wait`},
		{"", []string{srv.URL() + "/$export?_type=Nope"}, 2, `_type "Nope": not a FHIR resource type`},
		{"", []string{srv.URL() + "/$export?_type=Nope", "--allow-unknown-types"}, 1, "400 Bad Request"},
	}
	for _, tt := range tests {
		code, stdout, stderr := runKickoff(t, clockDeps(clk), tt.stdin, tt.args...)
		if code != tt.code || stdout != "" || !strings.Contains(stderr, tt.err) {
			t.Errorf("bulk-kickoff %q = exit %d, stdout %q, stderr %q; want exit %d, %q", tt.args, code, stdout, stderr, tt.code, tt.err)
		}
	}
	// The URL from stdin, and from --fhir-url.
	for _, tt := range []struct {
		stdin string
		args  []string
	}{{srv.URL() + "/Patient\n", []string{"-"}}, {"", []string{"--fhir-url", srv.URL()}}} {
		if code, stdout, stderr := runKickoff(t, clockDeps(clk), tt.stdin, tt.args...); code != 0 || !statusLine.MatchString(stdout) {
			t.Errorf("bulk-kickoff %q <<< %q = exit %d, stdout %q: %s", tt.args, tt.stdin, code, stdout, stderr)
		}
	}
}

// newResetServer accepts connections, reads each request's headers, then resets the
// connection without answering: the request reached the server, its fate is unknown.
func newResetServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReader(conn)
			for {
				line, err := br.ReadString('\n')
				if err != nil || line == "\r\n" {
					break
				}
			}
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
		}
	}()
	return "http://" + l.Addr().String() + "/fhir"
}
