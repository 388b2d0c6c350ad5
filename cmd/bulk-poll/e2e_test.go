package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tidwall/gjson"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
	"github.com/bulkpipe/bulkpipe/pkg/smartauth"
	"github.com/bulkpipe/bulkpipe/pkg/tool"
)

// clockDeps are the deps of a run on the fake clock.
// clockDeps gives each answer 30 s, stallDeps (for the tests that stall the server) 200 ms: on a
// loaded CI machine an honest answer can take longer than 200 ms, and the retry that would set
// off adds a line to stderr that the exact-output tests do not expect.
func clockDeps(c *fhirtest.Clock) tool.Deps {
	return tool.Deps{Now: c.Now, Sleep: c.Sleep, ReadTimeout: 30 * time.Second}
}

func stallDeps(c *fhirtest.Clock) tool.Deps {
	d := clockDeps(c)
	d.ReadTimeout = 200 * time.Millisecond
	return d
}

func newServer(t *testing.T, opts fhirtest.Options) *fhirtest.Server {
	t.Helper()
	if opts.Patients == 0 {
		opts.Patients = 4
	}
	return fhirtest.Start(t, opts)
}

// kickoff starts an export with the library (bulk-kickoff is another binary).
func kickoff(t *testing.T, c *fhirclient.Client, req bulk.KickoffRequest) string {
	t.Helper()
	pk, err := req.Prepare()
	if err != nil {
		t.Fatal(err)
	}
	res, err := pk.Send(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusURL
}

func plainClient(t *testing.T, base string) *fhirclient.Client {
	t.Helper()
	c, err := fhirclient.New(fhirclient.Options{FHIRBase: base, Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// runPoll runs bulk-poll in-process with the fake clock.
func runPoll(t *testing.T, d tool.Deps, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = tool.Run(t.Context(), newApp(d), append([]string{"bulk-poll"}, args...), strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// summary describes manifest lines without what differs between two runs of the same export
// (file URLs, job ids, times): per page, each item's type and count.
func summary(t *testing.T, stdout string) []string {
	t.Helper()
	var out []string
	for line := range strings.SplitSeq(strings.TrimSuffix(stdout, "\n"), "\n") {
		if !gjson.Valid(line) {
			t.Fatalf("stdout line is not JSON: %q", line)
		}
		m := gjson.Parse(line)
		s := fmt.Sprintf("page %d:", m.Get("_bulkpipe.page").Int())
		for _, key := range []string{"output", "deleted", "error", "outcome"} {
			if !m.Get(key).Exists() {
				continue
			}
			s += " " + key + "["
			for _, it := range m.Get(key).Array() {
				s += fmt.Sprintf(" %s:%d", it.Get("type").Str, it.Get("count").Int())
			}
			s += " ]"
		}
		out = append(out, s)
	}
	return out
}

var exportReq = bulk.KickoffRequest{Types: []string{"Patient", "Condition", "Observation"}}

func TestPollStatusFaults(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Polls: 1})
	c := plainClient(t, srv.URL())
	req := exportReq
	req.URL = srv.URL() + "/Group/all"
	clk := fhirtest.NewClock()
	code, want, stderr := runPoll(t, clockDeps(clk), "", kickoff(t, c, req), "--fhir-url", srv.URL())
	if code != 0 || strings.Count(want, "\n") != 1 {
		t.Fatalf("fault-free poll: exit %d, stdout %q, stderr %s", code, want, stderr)
	}
	if got := summary(t, want); len(got) != 1 || !strings.Contains(got[0], "Patient:4") {
		t.Fatalf("fault-free manifest = %q", got)
	}
	for _, spec := range []string{"500@status*2", "503@status", "503:1@status*3", "429:2@status", "429:date@status",
		"429:epoch-ms@status", "429:epoch-s@status", "reset@status*2", "truncate@status*2", "stall@status",
		"slow:20@status*3", "500@status*8"} {
		t.Run(spec, func(t *testing.T) {
			f, err := fhirtest.ParseFault(spec)
			if err != nil {
				t.Fatal(err)
			}
			srv, c, req := srv, c, req
			if f.Kind == fhirtest.FaultStall {
				// A stall after a 202's empty body would hang the next request on the kept-alive
				// connection until the transport's header timeout: stall the manifest itself.
				srv = newServer(t, fhirtest.Options{})
				c = plainClient(t, srv.URL())
				req.URL = srv.URL() + "/Group/all"
			}
			deps := clockDeps(clk)
			if f.Kind == fhirtest.FaultStall {
				deps = stallDeps(clk)
			}
			status := kickoff(t, c, req)
			srv.AddFault(f)
			code, got, stderr := runPoll(t, deps, "", status, "--fhir-url", srv.URL())
			if spec == "500@status*8" {
				// More failures in a row than --retries allows: exit 1 saying what was tried.
				if code != 1 || got != "" || !strings.Contains(stderr, "500 Internal Server Error") {
					t.Errorf("exit %d, stdout %q, stderr %s; want exit 1 naming the 500", code, got, stderr)
				}
				return
			}
			if code != 0 {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr)
			}
			if diff := cmp.Diff(summary(t, want), summary(t, got)); diff != "" {
				t.Errorf("manifest differs from a fault-free run (-want +got):\n%s", diff)
			}
			if !regexp.MustCompile(`retry|trying again`).MatchString(stderr) && !strings.Contains(spec, "slow") {
				t.Errorf("stderr does not report the retry:\n%s", stderr)
			}
		})
	}
}

// An epoch-milliseconds Retry-After (a reference server's habit) is a wait, not 50 years.
func TestPollEpochMillisRetryAfter(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Polls: 1, Faults: []fhirtest.Fault{{Kind: "429", Arg: "epoch-ms", Route: "status"}}})
	clk := fhirtest.NewClock()
	code, _, stderr := runPoll(t, clockDeps(clk), "", kickoff(t, plainClient(t, srv.URL()), bulk.KickoffRequest{URL: srv.URL()}))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, d := range clk.Slept() {
		if d > time.Minute {
			t.Errorf("slept %v: the epoch-ms Retry-After was not read as a point in time", d)
		}
	}
}

func TestPollProgress30Steps(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Polls: 30})
	status := kickoff(t, plainClient(t, srv.URL()), bulk.KickoffRequest{URL: srv.URL() + "/Patient"})
	clk := fhirtest.NewClock()
	// On a terminal: one progress line redrawn at each poll.
	tty := clockDeps(clk)
	tty.Terminal = true
	code, stdout, stderr := runPoll(t, tty, status+"\n")
	if code != 0 || strings.Count(stdout, "\n") != 1 {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
	lines := regexp.MustCompile(`\r|\n|\x1b\[K`).Split(strings.TrimSuffix(stderr, "\n"), -1)
	if want := "bulk-poll: polling " + status; lines[0] != want {
		t.Errorf("first stderr line = %q, want %q", lines[0], want)
	}
	progress := regexp.MustCompile(`^bulk-poll: in progress \(step (\d+) of 30\); next poll in 1s \(poll (\d+), \d+s elapsed\)$`)
	n := 0
	for _, l := range lines {
		if m := progress.FindStringSubmatch(l); m != nil {
			n++
			if m[1] != fmt.Sprint(n) || m[2] != fmt.Sprint(n) {
				t.Errorf("progress line %d = %q", n, l)
			}
		}
	}
	if n != 30 || len(clk.Slept()) != 30 {
		t.Errorf("%d progress lines and %d waits, want 30 of each; stderr:\n%s", n, len(clk.Slept()), stderr)
	}
	if !strings.HasSuffix(stderr, "\r\x1b[Kbulk-poll: manifest page 1: 13 output, 0 deleted, 1 error files\nbulk-poll: export complete: 13 output, 0 deleted, 1 error files\n") {
		t.Errorf("stderr on a terminal does not end with the progress line cleared, the page and the summary:\n%q", stderr)
	}
	// Off a terminal: no progress, the status URL (how to resume) and the summary.
	status = kickoff(t, plainClient(t, srv.URL()), bulk.KickoffRequest{URL: srv.URL() + "/Patient"})
	code, _, stderr = runPoll(t, clockDeps(clk), "", status)
	if want := "bulk-poll: polling " + status + "\nbulk-poll: manifest page 1: 13 output, 0 deleted, 1 error files\nbulk-poll: export complete: 13 output, 0 deleted, 1 error files\n"; code != 0 || stderr != want {
		t.Errorf("off a terminal: exit %d, stderr %q, want %q", code, stderr, want)
	}
	// --quiet: nothing on stderr, the same stdout.
	for _, d := range []tool.Deps{clockDeps(clk), tty} {
		code, stdout2, stderr := runPoll(t, d, "", status, "-q")
		if code != 0 || stderr != "" || len(summary(t, stdout2)) != 1 {
			t.Errorf("--quiet (terminal %v): exit %d, stderr %q", d.Terminal, code, stderr)
		}
	}
}

func TestPollPartialManifests(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Polls: 2, PageSize: 1})
	c := plainClient(t, srv.URL())
	clk := fhirtest.NewClock()
	whole := exportReq
	whole.URL = srv.URL()
	_, single, _ := runPoll(t, clockDeps(clk), "", kickoff(t, c, whole))
	partial := whole
	partial.AllowPartialManifests = true
	status := kickoff(t, c, partial)
	code, paged, stderr := runPoll(t, clockDeps(clk), "", status, "--fhir-url", srv.URL())
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	pages := summary(t, paged)
	if len(pages) < 3 {
		t.Fatalf("%d pages, want one per output file: %q", len(pages), pages)
	}
	var items []string
	for i, line := range strings.Split(strings.TrimSpace(paged), "\n") {
		ctx, ok := bulk.ContextOf([]byte(line))
		if !ok || ctx.Page != i+1 || ctx.StatusURL != status || ctx.FHIRBase != srv.URL() {
			t.Errorf("page %d context = %+v", i+1, ctx)
		}
		items = append(items, gjson.Get(line, "output.#.type").String())
	}
	if got, want := strings.Count(strings.Join(items, ""), `"`), strings.Count(gjson.Get(single, "output.#.type").String(), `"`); got != want {
		t.Errorf("pages list %d output items, the single manifest %d", got/2, want/2)
	}
	if !strings.Contains(stderr, "manifest page 3") {
		t.Errorf("stderr does not report pages:\n%s", stderr)
	}
	// --merge: one line, every item, no link.
	code, merged, stderr := runPoll(t, clockDeps(clk), "", status, "--merge")
	if code != 0 || strings.Count(merged, "\n") != 1 {
		t.Fatalf("--merge: exit %d, stdout %q, stderr %s", code, merged, stderr)
	}
	if gjson.Get(merged, "link").Exists() || gjson.Get(merged, "output.#").Int() != gjson.Get(single, "output.#").Int() ||
		gjson.Get(merged, "_bulkpipe.page").Int() != 1 || !gjson.Get(merged, "error").Exists() {
		t.Errorf("--merge = %s\nwant the items of %s", merged, single)
	}
}

func TestPollV4AndFHIRBase(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Polls: 1, Profile: fhirtest.ProfileV4})
	req := bulk.KickoffRequest{URL: srv.URL() + "/Group/cohort-a", Types: []string{"Patient"}}
	status := kickoff(t, plainClient(t, srv.URL()), req)
	clk := fhirtest.NewClock()
	code, stdout, stderr := runPoll(t, clockDeps(clk), "", status)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	m := gjson.Parse(stdout)
	if !m.Get("outcome").IsArray() || m.Get("error").Exists() || m.Get("request").Exists() {
		t.Errorf("v4 manifest = %s, want outcome and no error or request", stdout)
	}
	if m.Get("_bulkpipe.fhirBase").Exists() || m.Get("_bulkpipe.exportUrl").Exists() {
		t.Errorf("_bulkpipe = %s: nothing says what the FHIR base is", m.Get("_bulkpipe").Raw)
	}
	// The kickoff event of --log tells the base and the kickoff URL.
	logPath := filepath.Join(t.TempDir(), "log.ndjson")
	w, err := exportdir.OpenLog(logPath)
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := req.Prepare()
	e, _ := exportdir.NewEvent(status, "kickoff", map[string]any{"exportUrl": pk.URL, "requestParameters": pk.Parameters}, clk.Now())
	w.Write(e, true)
	w.Close()
	code, stdout, stderr = runPoll(t, clockDeps(clk), "", status, "--log", logPath)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	ctx, _ := bulk.ContextOf([]byte(stdout))
	if ctx.FHIRBase != srv.URL() || ctx.ExportURL != pk.URL || ctx.Expires == "" {
		t.Errorf("context from the log = %+v, want base %s and exportUrl %s", ctx, srv.URL(), pk.URL)
	}
	// A v3 manifest's request member is recorded as the export URL (for the log's Group), but
	// the server wrote it, so it is never the FHIR base, whose origin gets the credentials.
	srv3 := newServer(t, fhirtest.Options{Polls: 1})
	status3 := kickoff(t, plainClient(t, srv3.URL()), bulk.KickoffRequest{URL: srv3.URL() + "/Group/all"})
	_, stdout, _ = runPoll(t, clockDeps(clk), "", status3)
	if ctx, _ := bulk.ContextOf([]byte(stdout)); ctx.FHIRBase != "" || !strings.HasSuffix(ctx.ExportURL, "/Group/all/$export") {
		t.Errorf("context from the manifest's request = %+v, want no fhirBase and its exportUrl", ctx)
	}
}

func TestPollLogEvents(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Polls: 3})
	status := kickoff(t, plainClient(t, srv.URL()), bulk.KickoffRequest{URL: srv.URL(), Types: []string{"Patient"}})
	logPath := filepath.Join(t.TempDir(), "log.ndjson")
	clk := fhirtest.NewClock()
	code, _, stderr := runPoll(t, clockDeps(clk), "", status, "--log", logPath, "--log-progress")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	events, err := exportdir.LogEvents(logPath)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range events {
		ids = append(ids, e.EventID)
		if e.ExportID != status {
			t.Errorf("event %s has exportId %q, want the status URL", e.EventID, e.ExportID)
		}
	}
	want := []string{"status_progress", "status_progress", "status_progress", "status_page_complete", "status_complete", "manifest_complete"}
	if !cmp.Equal(ids, want) {
		t.Errorf("events = %q, want %q", ids, want)
	}
	last := gjson.ParseBytes(events[len(events)-1].EventDetail)
	if last.Get("totalOutputFileCount").Int() != 1 || last.Get("totalManifests").Int() != 1 || last.Get("transactionTime").Str == "" {
		t.Errorf("manifest_complete = %s", last.Raw)
	}
	if p := gjson.ParseBytes(events[0].EventDetail); p.Get("xProgressHeader").Str != "step 1 of 3" {
		t.Errorf("status_progress = %s", p.Raw)
	}
	// Without --log-progress, no status_progress; a failure logs status_error.
	if code, _, _ := runPoll(t, clockDeps(clk), "", srv.URL()+"/status/nope", "--log", logPath); code != 1 {
		t.Errorf("unknown job: exit %d, want 1", code)
	}
	events, _ = exportdir.LogEvents(logPath)
	e := events[len(events)-1]
	if d := gjson.ParseBytes(e.EventDetail); e.EventID != "status_error" || d.Get("code").Int() != 404 ||
		!strings.Contains(d.Get("message").Str, "404 Not Found") || d.Get("body.resourceType").Str != "OperationOutcome" {
		t.Errorf("last event = %s %s, want status_error with the 404", e.EventID, e.EventDetail)
	}
}

func TestPollCancelAnd4xx(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Polls: 5})
	status := kickoff(t, plainClient(t, srv.URL()), bulk.KickoffRequest{URL: srv.URL()})
	clk := fhirtest.NewClock()
	code, stdout, stderr := runPoll(t, clockDeps(clk), "", status, "--cancel")
	if code != 0 || stdout != "" || !strings.Contains(stderr, "cancelled "+status) {
		t.Errorf("--cancel: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	code, stdout, stderr = runPoll(t, clockDeps(clk), "", status)
	wantErr := "bulk-poll: GET " + status + ": 404 Not Found: no export "
	if code != 1 || stdout != "" || !strings.Contains(stderr, wantErr) || strings.Count(strings.TrimSpace(stderr[strings.Index(stderr, wantErr):]), "\n") != 0 {
		t.Errorf("poll after cancel: exit %d, stdout %q, stderr %q; want exit 1 and one line %q…", code, stdout, stderr, wantErr)
	}
	// Cancelling what is gone is fine: the caller wanted it gone.
	if code, _, stderr := runPoll(t, clockDeps(clk), "", status, "--cancel"); code != 0 {
		t.Errorf("second --cancel: exit %d: %s", code, stderr)
	}
	var deletes int
	for _, r := range srv.Requests() {
		if r.Method == "DELETE" {
			deletes++
		}
	}
	if deletes != 2 {
		t.Errorf("server saw %d DELETEs, want 2", deletes)
	}
}

func TestPollOutputFileAndTimeout(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Polls: 30})
	c := plainClient(t, srv.URL())
	dir := t.TempDir()
	out := filepath.Join(dir, "manifest.ndjson")
	clk := fhirtest.NewClock()
	code, stdout, stderr := runPoll(t, clockDeps(clk), "", kickoff(t, c, bulk.KickoffRequest{URL: srv.URL()}), "--timeout", "10s", "-o", out)
	if code != 1 || !strings.Contains(stderr, "time budget ran out (10s); raise --timeout, or run bulk-poll again") {
		t.Errorf("--timeout 10s: exit %d, stderr %s", code, stderr)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 || stdout != "" {
		t.Errorf("after a failed poll the -o folder holds %v, stdout %q; want nothing", entries, stdout)
	}
	code, stdout, stderr = runPoll(t, clockDeps(clk), "", kickoff(t, c, bulk.KickoffRequest{URL: srv.URL()}), "-o", out)
	b, err := os.ReadFile(out)
	if code != 0 || stdout != "" || err != nil || len(summary(t, string(b))) != 1 {
		t.Errorf("-o: exit %d, stdout %q, file %q (%v), stderr %s", code, stdout, b, err, stderr)
	}
}

// writeKeys makes an EC key pair for SMART Backend Services: the private PEM for bulk-poll and
// the public PEM for the server.
func writeKeys(t *testing.T) (privPath string, pub []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	privPath = filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(privPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return privPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
}

func TestPollSMARTTokenExpiry(t *testing.T) {
	keyPath, pub := writeKeys(t)
	clk := fhirtest.NewClock()
	srv := newServer(t, fhirtest.Options{Polls: 30, Auth: fhirtest.AuthSMART, ClientID: "bulk-client", PublicKeys: [][]byte{pub},
		TokenTTL: 5000 * time.Millisecond, Now: clk.Now, Faults: []fhirtest.Fault{{Kind: "401", Route: "status"}}})
	key, err := smartauth.LoadKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	var c *fhirclient.Client
	src := smartauth.NewSource(smartauth.Config{ClientID: "bulk-client", Key: key, TokenURL: srv.URL() + "/auth/token",
		Scopes: []string{"system/*.read"}, HTTP: doerFunc(func() *fhirclient.Client { return c }), Now: clk.Now, Sleep: clk.Sleep})
	c, err = fhirclient.New(fhirclient.Options{FHIRBase: srv.URL(), Credentials: src, Now: clk.Now, Sleep: clk.Sleep})
	if err != nil {
		t.Fatal(err)
	}
	req := exportReq
	req.URL = srv.URL() + "/Group/all"
	status := kickoff(t, c, req)

	auth := []string{"--smart-client-id", "bulk-client", "--smart-key", keyPath}
	code, _, stderr := runPoll(t, clockDeps(clk), "", append([]string{status}, auth...)...)
	if code != 2 || !strings.Contains(stderr, "--fhir-url") || !strings.Contains(stderr, "--token-url") {
		t.Errorf("SMART without a way to the token endpoint: exit %d, stderr %q; want 2 naming --fhir-url and --token-url", code, stderr)
	}
	code, _, stderr = runPoll(t, clockDeps(clk), "", status)
	if code != 1 || !strings.Contains(stderr, "401 Unauthorized") || !strings.Contains(stderr, "--token-url") {
		t.Errorf("no credentials: exit %d, stderr %q; want 1 saying how to give a token", code, stderr)
	}
	before := len(srv.Requests())
	code, stdout, stderr := runPoll(t, clockDeps(clk), "", append([]string{status, "--fhir-url", srv.URL()}, auth...)...)
	if code != 0 || len(summary(t, stdout)) != 1 {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
	tokens, authorized := 0, 0
	for _, r := range srv.Requests()[before:] {
		switch r.Route {
		case "token":
			tokens++
		case "status":
			if r.Authorization != "" {
				authorized++
			}
		}
	}
	// 30 polls a second apart with 5 s tokens, and a revoked one: several tokens.
	if tokens < 6 || authorized < 31 {
		t.Errorf("%d token requests and %d authorized status requests, want a renewal every few polls", tokens, authorized)
	}
	// --token-url alone is enough.
	code, _, stderr = runPoll(t, clockDeps(clk), "", append([]string{status, "--token-url", srv.URL() + "/auth/token"}, auth...)...)
	if code != 0 {
		t.Errorf("--token-url: exit %d: %s", code, stderr)
	}
}

// doerFunc sends token requests through a client made after the Source that needs them.
type doerFunc func() *fhirclient.Client

func (f doerFunc) Do(r *http.Request) (*http.Response, error) {
	return f().Doer(fhirclient.RouteToken).Do(r)
}

func TestPollArguments(t *testing.T) {
	clk := fhirtest.NewClock()
	tests := []struct {
		stdin string
		args  []string
		code  int
		err   string
	}{
		{"", nil, 1, "bulk-poll: no input on stdin (did the previous step fail?)\n"},
		{"\n\n", []string{"-"}, 1, "bulk-poll: no input on stdin (did the previous step fail?)\n"},
		{"", []string{"a", "b"}, 2, "too many arguments"},
		{"", []string{"not a url"}, 2, `status URL "not a url": want an absolute http or https URL`},
		{"bulk-kickoff: error\n", nil, 1, "on the first line of stdin"},
		{"", []string{"http://127.0.0.1:1/status/x", "--max-wait", "0s"}, 2, "--max-wait"},
		{"", []string{"--bogus"}, 2, "unknown flag --bogus (see --help)"},
		{"", []string{"http://127.0.0.1:1/status/x", "--header", "no colon"}, 2, "--header: want 'Name: value'"},
	}
	for _, tt := range tests {
		code, stdout, stderr := runPoll(t, clockDeps(clk), tt.stdin, tt.args...)
		if code != tt.code || stdout != "" || !strings.Contains(stderr, tt.err) {
			t.Errorf("bulk-poll %q <<< %q = exit %d, stdout %q, stderr %q; want exit %d, %q", tt.args, tt.stdin, code, stdout, stderr, tt.code, tt.err)
		}
	}
}

func TestProgressText(t *testing.T) {
	tests := []struct {
		p    bulk.Progress
		want string
	}{
		{bulk.Progress{Page: 1, Attempt: 3, XProgress: "50%\nnearly", Wait: 2 * time.Second, Elapsed: 65 * time.Second},
			"in progress (50% nearly); next poll in 2s (poll 3, 1m5s elapsed)"},
		{bulk.Progress{Page: 2, Attempt: 1, Wait: time.Second}, "page 2: in progress; next poll in 1s (poll 1, 0s elapsed)"},
		{bulk.Progress{Page: 1, Attempt: 2, Wait: 3 * time.Second, Err: errors.New("GET x: 503 Service Unavailable: busy")},
			"GET x: 503 Service Unavailable: busy; trying again in 3s (poll 2, 0s elapsed)"},
	}
	for _, tt := range tests {
		if got := progressText(tt.p); got != tt.want {
			t.Errorf("progressText(%+v) = %q, want %q", tt.p, got, tt.want)
		}
	}
}

// TestPollSynthesizedKickoffNotABase: a kickoff event bulk-fetch wrote from a manifest (marked
// _synthesized) names the manifest's request as exportUrl, which the server wrote: bulk-poll
// --log reads it for the export URL only, never for the FHIR base (DESIGN.md §2, token safety).
func TestPollSynthesizedKickoffNotABase(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Polls: 1, Profile: fhirtest.ProfileV4})
	status := kickoff(t, plainClient(t, srv.URL()), bulk.KickoffRequest{URL: srv.URL() + "/Group/cohort-a"})
	clk := fhirtest.NewClock()
	logPath := filepath.Join(t.TempDir(), "log.ndjson")
	w, err := exportdir.OpenLog(logPath)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := exportdir.NewEvent(status, "kickoff", map[string]any{"exportUrl": "https://evil.example/fhir/Group/g/$export",
		bulk.SynthesizedMember: "bulk-fetch: from the export context and the manifest"}, clk.Now())
	w.Write(e, true)
	w.Close()
	code, stdout, stderr := runPoll(t, clockDeps(clk), "", status, "--log", logPath)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if ctx, _ := bulk.ContextOf([]byte(stdout)); ctx.FHIRBase != "" || ctx.ExportURL != "https://evil.example/fhir/Group/g/$export" {
		t.Errorf("context from a synthesized kickoff = %+v, want no fhirBase, and its exportUrl", ctx)
	}
}
