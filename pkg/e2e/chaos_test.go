package e2e

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/failpoint"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest/synth"
)

// The chaos matrix of issue 8 (DESIGN.md §8): the whole pipeline — bulk-kickoff, bulk-poll,
// bulk-fetch for a Group export and for four category slices of its Observations, ndjson-inline
// --in-place, ndjson-merge of the slices, etl-load of both folders — under each fault kind of the
// test server, under a seeded random mix of faults, and with each tool killed by SIGKILL at each
// of its failpoints and run again. Every case must end with the result of one fault-free run:
// the same export folders (byte for byte, or as the fault's contract says), the same database
// rows, and no partial or temporary file left. docs/reliability.md lists the cases, what each
// one promises and the outcomes of the last long run.

// The data is small on purpose: 20 patients (about 2,500 resources, 3 MB), types split past 400
// lines so that Observations span several files.
const (
	chaosPatients  = 20
	chaosFileLines = 400
	chaosClientID  = "chaos-client"
)

// chaosExport is one export of the pipeline: the Group export, or a slice of its Observations.
type chaosExport struct{ name, filter string }

// chaosExports covers every Observation category of the generated data (laboratory, vital-signs,
// social-history, survey, imaging, exam, none), so the merged slices hold exactly the Group
// export's Observations: that is checked on the reference run. The third slice ORs four
// categories with commas inside one filter (DESIGN.md §2 escaping).
var chaosExports = []chaosExport{
	{"main", ""},
	{"s-laboratory", "Observation?category=laboratory"},
	{"s-vital-signs", "Observation?category=vital-signs"},
	{"s-other", "Observation?category=social-history,survey,imaging,exam"},
	{"s-missing", "Observation?category:missing=true"},
}

// chaosData is the data set of the in-process servers: the one bulk-testserver --patients 20
// --seed 0 serves, so every case compares with the same reference whatever its server.
var chaosData = sync.OnceValue(func() *synth.Dataset {
	return synth.Generate(synth.Options{Patients: chaosPatients, Seed: 0})
})

// crashSpec kills one step at a failpoint.
type crashSpec struct {
	step  string // pipeline step: poll:main, fetch:main, inline, merge, load
	point string // BULKPIPE_CRASH value, NAME[:N]
	db    string // etl-load: the database right after the kill: "empty", "main" (first folder only) or "full"
}

// failSpec is a step that must fail once, with exit status 1 and a message, and then succeed
// when run again (the fault is used up): "the tool exits 1 saying why" of DESIGN.md §8.
type failSpec struct {
	step string
	want string // regexp its stderr must match
}

// chaosCase is one case of the matrix.
type chaosCase struct {
	group, name string
	ci          bool     // part of the short fixed subset that plain go test runs
	faults      []string // KIND[:ARG][@ROUTE][*COUNT|%RATE]
	serverArgs  []string // more bulk-testserver flags
	inproc      bool     // in-process fhirtest.Server (request log; fault seed apart from data)
	seed        int64    // in-process: the seed of %RATE faults
	auth        bool     // SMART Backend Services, files need the token
	tokenTTL    string
	kickoff     []string // more flags for every bulk-kickoff
	urlStrip    []string // what those flags add to the kickoff URL that etl__completion records
	poll        []string // replaces the default bulk-poll flags of the Group export
	fetch       []string // more bulk-fetch flags
	inline      []string // more ndjson-inline flags
	fail        *failSpec
	crash       *crashSpec
	shape       shape
	evidence    map[string]string // tool → regexp its stderr must match: proof that the fault was met
	maxWait     time.Duration     // bulk-poll's announced retry waits stay within this (Retry-After parsed, not capped)
	maxStep     time.Duration     // no step may take longer: a silent server must be noticed, not waited out
}

func (c *chaosCase) String() string { return c.group + "/" + c.name }

// stall is the --stall-timeout of bulk-fetch and ndjson-inline: short where a stall fault may
// fire, so the case stays quick, and otherwise long enough that two busy cores running four
// cases never make a healthy download look stalled.
func (c *chaosCase) stall() string {
	for _, f := range c.faults {
		if strings.HasPrefix(f, "stall") {
			return "1s"
		}
	}
	return "10s"
}

// chaosCases is the matrix: the long one, or the short fixed subset (ci cases) plus the mixes.
func chaosCases(long bool, seeds []int64) []*chaosCase {
	var cs []*chaosCase
	fault := func(name string, ci bool, faults ...string) *chaosCase {
		c := &chaosCase{group: "fault", name: name, ci: ci, faults: faults, evidence: map[string]string{}}
		cs = append(cs, c)
		return c
	}
	// Kickoff: retried only when the server said it started nothing (DESIGN.md §2).
	fault("500-kickoff", false, "500@kickoff").fail = &failSpec{"kickoff:main", `500 Internal Server Error`}
	fault("503-kickoff", false, "503:1@kickoff").evidence["bulk-kickoff"] = `503 Service Unavailable.*retrying`
	fault("429-kickoff", false, "429@kickoff").evidence["bulk-kickoff"] = `429 Too Many Requests.*retrying`
	fault("reset-kickoff", false, "reset@kickoff") // the 202's headers arrive: the kickoff has its answer
	c := fault("401-kickoff", false, "401@kickoff")
	c.auth = true
	c.evidence["bulk-kickoff"] = `401`

	// Status: polling retries everything retryable, with the Retry-After of every form honoured.
	fault("500-status", false, "500@status*2").evidence["bulk-poll"] = `500 Internal Server Error.*retrying`
	fault("503-status", false, "503@status*2").evidence["bulk-poll"] = `503 Service Unavailable.*retrying`
	for _, form := range []string{"1", "date", "epoch-ms", "epoch-s"} {
		name := "429-" + form + "-status"
		if form == "1" {
			name = "429-seconds-status"
		}
		c := fault(name, form == "epoch-ms", "429:"+form+"@status")
		c.poll = []string{"--max-wait", "30s"}
		c.maxWait = 3 * time.Second
		c.evidence["bulk-poll"] = `429 Too Many Requests.*retrying`
	}
	// Three status answers: both 202s and the manifest, whose body bulk-poll needs.
	fault("reset-status", false, "reset@status*3").evidence["bulk-poll"] = `retrying|trying again`
	fault("truncate-status", false, "truncate@status*3").evidence["bulk-poll"] = `retrying|trying again`
	if long {
		// The first 202's body never ends: bulk-poll reads it until the server gives up after a
		// minute (the slowest case), then polls on.
		fault("stall-status", false, "stall@status")
	}
	fault("slow-status", false, "slow:300@status*3")
	c = fault("401-status", false, "401@status")
	c.auth = true
	c.evidence["bulk-poll"] = `401`

	// Files: resumed, retried, refreshed; never a byte more or less.
	fault("500-file", false, "500@file*2").evidence["bulk-fetch"] = `500 Internal Server Error.*retrying`
	fault("503-file", false, "503:0@file*2").evidence["bulk-fetch"] = `503 Service Unavailable.*retrying`
	fault("429-seconds-file", false, "429:1@file*2").evidence["bulk-fetch"] = `429 Too Many Requests.*retrying`
	fault("429-epoch-ms-file", false, "429:epoch-ms@file").evidence["bulk-fetch"] = `429 Too Many Requests.*retrying`
	fault("reset-file", true, "reset@file*2").evidence["bulk-fetch"] = `connection reset by peer.*retrying`
	fault("truncate-file", false, "truncate@file*2").evidence["bulk-fetch"] = `retrying`
	fault("stall-file", false, "stall:1000@file").evidence["bulk-fetch"] = `no data for 1s`
	fault("slow-file", false, "slow:200@file*5")
	c = fault("401-file", false, "401@file")
	c.auth = true
	c.evidence["bulk-fetch"] = `401`
	fault("expire-links", true, "expire-links").evidence["bulk-fetch"] = `fetching the manifest again`
	if long {
		// The first five file answers are complete (BYTES is more than any file) but the server
		// then keeps each connection and never answers the next request sent on it: a kept-alive
		// connection gone silent. Expired links make bulk-fetch ask the status URL again, over a
		// pooled connection. Every request must be given up after --stall-timeout; waiting for
		// the server to close (fhirtest.StallCap, a minute) fails the case.
		c := fault("stall-keepalive", false, "stall:100000@file*5", "expire-links")
		c.fetch = []string{"--parallel", "1"}
		c.maxStep = fhirtest.StallCap / 2
		c.evidence["bulk-fetch"] = `fetching the manifest again`
	}

	// Attachments: a failed one would be left as it was, so only the data comparison shows it.
	fault("500-binary", false, "500@binary*2").evidence["ndjson-inline"] = `500 Internal Server Error.*retrying`
	fault("503-binary", false, "503@binary*2").evidence["ndjson-inline"] = `503 Service Unavailable.*retrying`
	fault("429-binary", false, "429@binary").evidence["ndjson-inline"] = `429 Too Many Requests.*retrying`
	fault("reset-binary", false, "reset@binary*2")
	fault("truncate-binary", false, "truncate@binary*2")
	fault("stall-binary", false, "stall@binary")
	c = fault("401-binary", false, "401@binary")
	c.auth = true

	// Tokens.
	fault("500-token", false, "500@token*2").auth = true
	c = fault("token-expiry", false)
	c.auth, c.tokenTTL = true, "300ms"
	fault("slow-any", false, "slow:100%0.3")

	// Data habits of real servers (DESIGN.md §9): the contract says what stays equal.
	fault("dup-lines", true, "dup-lines").shape = shapeDupLines
	fault("no-final-newline", false, "no-final-newline").shape = shapeNoFinalNL
	fault("b64-size", false, "b64-size").shape = shapeB64Size
	fault("no-lastupdated", false, "no-lastupdated").shape = shapeNoLastUpdate
	c = fault("ignore-typefilter", false, "ignore-typefilter")
	c.shape, c.evidence["ndjson-merge"] = shapeNoTypeFilter, `do not match its filter`

	// Server profiles and habits that are not faults but change the conversation.
	c = fault("partial-manifests", false)
	c.serverArgs = []string{"--page-size", "3"}
	c.kickoff = []string{"--allow-partial-manifests"}
	c.urlStrip = []string{"?allowPartialManifests=true"}
	c.evidence["bulk-poll"] = `manifest page 2`
	fault("gzip", false).serverArgs = []string{"--gzip"}
	fault("profile-v4", false).serverArgs = []string{"--profile", "v4"}
	fault("profile-v2", false).serverArgs = []string{"--profile", "v2"}

	crash := func(step, point, db string, ci bool) {
		cs = append(cs, &chaosCase{group: "crash", name: point, ci: ci, inproc: true,
			crash: &crashSpec{step: step, point: point, db: db}, evidence: map[string]string{}})
	}
	crash("poll:main", "poll.wait:1", "", false)
	crash("poll:main", "poll.page:1", "", false)
	for _, p := range []string{"fetch.after-part-write:1", "fetch.after-part-write:12", "fetch.before-rename:1",
		"fetch.before-rename:6", "fetch.after-rename:1", "fetch.after-rename:3", "fetch.after-rename:9",
		"fetch.after-state:1", "fetch.after-state:10"} {
		crash("fetch:main", p, "", p == "fetch.after-rename:3")
	}
	for _, p := range []string{"inline.before-rename:1", "inline.before-rename:2", "inline.after-rename:1",
		"inline.after-rename:2", "inline.after-state:1", "inline.after-state:2"} {
		crash("inline", p, "", p == "inline.after-rename:1")
	}
	crash("merge", "merge.before-rename:1", "", false)
	// main has 13 resource types, so load.after-merge:14 is the merged folder's Observations.
	for _, p := range []struct{ point, db string }{
		{"load.after-stage:1", "empty"}, {"load.after-merge:1", "empty"}, {"load.after-merge:7", "empty"},
		{"load.before-commit:1", "empty"}, {"load.after-commit:1", "main"}, {"load.after-stage:2", "main"},
		{"load.after-merge:14", "main"}, {"load.before-commit:2", "main"}, {"load.after-commit:2", "full"},
	} {
		crash("load", p.point, p.db, p.point == "load.after-merge:7")
	}

	for _, seed := range seeds {
		cs = append(cs, &chaosCase{group: "mix", name: "seed=" + strconv.FormatInt(seed, 10), inproc: true,
			seed: seed, faults: mixFaults(seed), evidence: map[string]string{},
			// One download at a time: the server draws its %RATE faults in request order, so the
			// same seed replays the same faults on the same requests.
			fetch: []string{"--parallel", "1"}, inline: []string{"--parallel", "1"}})
	}
	if long {
		return cs
	}
	return slices.DeleteFunc(cs, func(c *chaosCase) bool { return !c.ci && c.group != "mix" })
}

// mixFaults draws a random mix of transport faults with rates from seed: five or six of the
// kinds below, each on its natural route at a rate low enough that the tools' default eight
// attempts in a row are practically never all spoiled, plus expired links once, half the time.
// A kickoff gets only the answers after which a retry is safe (DESIGN.md §2).
func mixFaults(seed int64) []string {
	r := rand.New(rand.NewPCG(uint64(seed), 0x6368616f73))
	pool := []string{
		"500@status", "503@status", "429:epoch-ms@status", "reset@status", "truncate@status",
		"500@file", "503:0@file", "429:1@file", "reset@file", "truncate@file", "stall:300@file",
		"500@binary", "503@binary", "429@binary", "reset@binary", "truncate@binary",
		"429@kickoff", "503:1@kickoff", "slow:50",
	}
	r.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	n := 5 + r.IntN(2)
	var out []string
	for _, f := range pool[:n] {
		var rate float64
		switch {
		case strings.HasSuffix(f, "@binary"):
			rate = 0.01 + 0.04*r.Float64() // 166 attachments: a handful of faults
		case strings.HasPrefix(f, "slow"):
			rate = 0.1 + 0.2*r.Float64()
		default:
			rate = 0.05 + 0.2*r.Float64()
		}
		out = append(out, fmt.Sprintf("%s%%%.2f", f, rate))
	}
	if r.IntN(2) == 0 {
		out = append(out, "expire-links*1")
	}
	return out
}

// TestChaos runs the chaos matrix: a fault-free reference run first, then every case in
// parallel (go test -parallel), each compared with the reference.
func TestChaos(t *testing.T) {
	needBinaries(t, "bulk-testserver", "bulk-kickoff", "bulk-poll", "bulk-fetch", "ndjson-inline", "ndjson-merge", "etl-load")
	var seeds []int64
	switch {
	case *chaosSeed != 0:
		seeds = []int64{*chaosSeed}
	case *chaosLong:
		seeds = []int64{time.Now().UnixNano() % 1e9, (time.Now().UnixNano() / 7) % 1e9}
	}
	for _, s := range seeds {
		t.Logf("chaos: random mix seed %d (replay: go test ./pkg/e2e -run 'Chaos/cases/mix' -chaos.seed=%d -v)", s, s)
	}
	recs := &chaosRecords{}
	start := time.Now()
	ref := newReference(t)
	recs.add(chaosRecord{Group: "reference", Name: "fault-free", Outcome: outcomeOf(t), Elapsed: time.Since(start),
		Notes: ref.p.notes})
	if t.Failed() {
		t.Fatal("the fault-free reference run failed: no case can be judged")
	}
	cases := chaosCases(*chaosLong, seeds)
	t.Run("cases", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.String(), func(t *testing.T) {
				t.Parallel()
				start := time.Now()
				p := &pipeline{t: t, c: c, ref: ref}
				defer func() {
					var notes []string
					switch {
					case c.crash != nil:
						notes = append(notes, failpoint.Env+"="+c.crash.point)
					case len(c.faults) > 0:
						notes = append(notes, strings.Join(c.faults, " "))
					}
					notes = append(notes, p.notes...)
					t.Logf("%s %s in %v: %s", c, outcomeOf(t), time.Since(start).Round(100*time.Millisecond), strings.Join(notes, "; "))
					recs.add(chaosRecord{Group: c.group, Name: c.name, Outcome: outcomeOf(t), Elapsed: time.Since(start), Notes: notes})
				}()
				p.start()
				p.run()
				p.check()
			})
		}
	})
	t.Logf("chaos: done in %v\n%s", time.Since(start).Round(time.Second), recs.summary())
	if *chaosReport != "" {
		if err := recs.write(*chaosReport); err != nil {
			t.Error(err)
		}
	}
}

func outcomeOf(t *testing.T) string {
	if t.Failed() {
		return "FAIL"
	}
	return "pass"
}

// pipeline is one run of the whole pipeline in its own folder against its own server.
type pipeline struct {
	t       *testing.T
	c       *chaosCase
	ref     *reference
	work    string
	srv     chaosServer
	env     []string // environment of the tools that talk to the server
	stderr  map[string]*strings.Builder
	notes   []string
	summary string // etl-load --summary
	crashed bool
	failed  bool
	after   func() // the crash case's check after the rerun of the killed step
}

func (p *pipeline) path(elem ...string) string {
	return filepath.Join(append([]string{p.work}, elem...)...)
}

func (p *pipeline) note(format string, a ...any) {
	p.notes = append(p.notes, fmt.Sprintf(format, a...))
}

// start starts the case's server and sets the tools' environment.
func (p *pipeline) start() {
	t, c := p.t, p.c
	p.work = t.TempDir()
	p.stderr = map[string]*strings.Builder{}
	var key string
	if !c.inproc {
		args := []string{"--patients", strconv.Itoa(chaosPatients), "--polls", "2", "--retry-after", "0",
			"--file-lines", strconv.Itoa(chaosFileLines)}
		if c.auth {
			private, public := chaosKeys(t, p.work)
			key = private
			args = append(args, "--auth", "smart", "--client-id", chaosClientID, "--public-key", public, "--requires-token")
			if c.tokenTTL != "" {
				args = append(args, "--token-ttl", c.tokenTTL)
			}
		}
		for _, f := range c.faults {
			args = append(args, "--fault", f)
		}
		args = append(args, c.serverArgs...)
		p.srv = chaosServer{base: startServer(t, args...).URL}
	} else {
		opts := fhirtest.Options{Data: chaosData(), Seed: c.seed, Polls: 2, FileLines: chaosFileLines}
		for _, s := range c.faults {
			f, err := fhirtest.ParseFault(s)
			if err != nil {
				t.Fatal(err)
			}
			opts.Faults = append(opts.Faults, f)
		}
		srv, err := fhirtest.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		p.srv = chaosServer{base: srv.URL(), srv: srv}
	}
	p.env = toolEnv()
	if c.auth {
		p.env = toolEnv("BULK_FHIR_URL="+p.srv.base, "BULK_SMART_CLIENT_ID="+chaosClientID, "BULK_SMART_KEY="+key)
	}
}

// run runs the pipeline: each export, inline, merge, load, then bulk-fetch once more on the
// inlined folder (it must trust state.json and download nothing).
func (p *pipeline) run() {
	for _, e := range chaosExports {
		p.export(e)
	}
	// Keep the notes as bulk-fetch saved them: the inline checks compare with them.
	if err := os.MkdirAll(p.path("raw"), 0o755); err != nil {
		p.t.Fatal(err)
	}
	notes, _ := filepath.Glob(p.path("main", "D*.ndjson"))
	for _, f := range notes {
		if err := copyFile(f, p.path("raw", filepath.Base(f))); err != nil {
			p.t.Fatal(err)
		}
	}
	p.step("inline", "ndjson-inline", p.env, slices.Concat([]string{"--in-place", "--stall-timeout", p.c.stall()}, p.c.inline, []string{p.path("main")})...)
	merge := []string{"--dir", p.path("merged")}
	for _, e := range chaosExports[1:] {
		merge = append(merge, p.path(e.name))
	}
	p.step("merge", "ndjson-merge", toolEnv(), merge...)
	p.summary = p.step("load", "etl-load", toolEnv(), "--db", p.path("bulkpipe.duckdb"), "--summary", p.path("main"), p.path("merged")).Stdout

	before := newSnapshot()
	folderSnapshot(p.t, before, p.path("main"), "main", shapeExact, func(b []byte) []byte { return b })
	mark := len(p.srv.requests())
	p.step("refetch", "bulk-fetch", p.env, "--dir", p.path("main"), "--log", p.path("main.log.ndjson"),
		"--stall-timeout", p.c.stall(), p.path("main.manifest"))
	after := newSnapshot()
	folderSnapshot(p.t, after, p.path("main"), "main", shapeExact, func(b []byte) []byte { return b })
	for k, v := range before.sum {
		if strings.HasPrefix(k, "file ") && after.sum[k] != v {
			p.t.Errorf("bulk-fetch run again after ndjson-inline changed %s (%s → %s): it must trust state.json", k, v, after.sum[k])
		}
	}
	if p.srv.srv != nil {
		for _, r := range p.srv.requests()[mark:] {
			if r.Route == fhirtest.RouteFile {
				p.t.Errorf("bulk-fetch run again after ndjson-inline downloaded %s: every file was verified", r.URL)
			}
		}
	}
}

// export runs one export of the pipeline: the Group's, or a slice of its Observations.
func (p *pipeline) export(e chaosExport) {
	var kickoff []string
	if e.filter != "" {
		kickoff = []string{"--type", "Observation", "--type-filter", e.filter}
	}
	p.exportGroup(e.name, "all", kickoff...)
}

// exportGroup runs bulk-kickoff (with the kickoff flags), bulk-poll and bulk-fetch for one
// export of a Group into the folder name, each step writing its result to a file (-o, --dir) as
// scripts/export-sliced.sh does.
func (p *pipeline) exportGroup(name, group string, kickoff ...string) {
	logf := p.path(name + ".log.ndjson")
	status, manifest := p.path(name+".status"), p.path(name+".manifest")
	args := slices.Concat([]string{"--log", logf, "-o", status}, kickoff, p.c.kickoff, []string{p.srv.base + "/Group/" + group})
	p.step("kickoff:"+name, "bulk-kickoff", p.env, args...)
	b, err := os.ReadFile(status)
	if err != nil {
		p.t.Fatal(err)
	}
	// Polls wait at least a second unless --max-wait is shorter (bulk-poll(1)); the case's own
	// flags go to the Group export, which meets its status faults first.
	poll := []string{"--max-wait", "100ms"}
	if p.c.poll != nil && name == "main" {
		poll = p.c.poll
	}
	p.step("poll:"+name, "bulk-poll", p.env, slices.Concat([]string{"--log", logf, "-o", manifest}, poll,
		[]string{strings.TrimSpace(string(b))})...)
	p.step("fetch:"+name, "bulk-fetch", p.env, slices.Concat([]string{"--dir", p.path(name), "--log", logf,
		"--stall-timeout", p.c.stall()}, p.c.fetch, []string{manifest})...)
}

// step runs one tool; a crash case kills it at its failpoint first, a failing case sees it fail
// once first. Any other end than exit 0 fails the case.
func (p *pipeline) step(name, tool string, env []string, args ...string) outcome {
	t := p.t
	t.Helper()
	if cr := p.c.crash; cr != nil && cr.step == name && !p.crashed {
		p.crashed = true
		o := runTool(t, append(slices.Clone(env), failpoint.Env+"="+cr.point), tool, args...)
		p.record(tool, o)
		if o.Signal != syscall.SIGKILL {
			t.Fatalf("%s with %s=%s: exit %d, want a kill by SIGKILL at the failpoint (never reached?)\nstderr:\n%s",
				tool, failpoint.Env, cr.point, o.Code, o.Stderr)
		}
		p.afterCrash(tool, args)
	}
	if f := p.c.fail; f != nil && f.step == name && !p.failed {
		p.failed = true
		o := runTool(t, env, tool, args...)
		p.record(tool, o)
		if o.Code != 1 || !regexp.MustCompile(f.want).MatchString(o.Stderr) {
			t.Errorf("%s: exit %d, want 1 with a message matching %q\nstderr:\n%s", name, o.Code, f.want, o.Stderr)
		}
		if out := outputOf(args); out != "" {
			if _, err := os.Stat(out); err == nil {
				t.Errorf("%s failed but wrote %s", name, out)
			}
		}
		p.note("%s exited 1 as it must, then succeeded when run again", name)
	}
	o := runTool(t, env, tool, args...)
	p.record(tool, o)
	if p.c.maxStep > 0 && o.Elapsed > p.c.maxStep {
		t.Errorf("%s took %v, more than %v: a silent connection was waited out, not given up after --stall-timeout",
			name, o.Elapsed.Round(100*time.Millisecond), p.c.maxStep)
	}
	if o.Elapsed > 10*time.Second {
		p.note("%s took %v", name, o.Elapsed.Round(100*time.Millisecond))
		t.Logf("%s took %v; its stderr:\n%s", name, o.Elapsed.Round(100*time.Millisecond), o.Stderr)
	}
	if o.Code != 0 {
		t.Fatalf("%s: %s %s: exit %d\nstderr:\n%s", name, tool, strings.Join(args, " "), o.Code, o.Stderr)
	}
	if p.after != nil {
		p.after()
		p.after = nil
	}
	return o
}

func (p *pipeline) record(tool string, o outcome) {
	b := p.stderr[tool]
	if b == nil {
		b = &strings.Builder{}
		p.stderr[tool] = b
	}
	b.WriteString(o.Stderr)
}

// outputOf returns what a command line writes whole: bulk-poll's -o FILE, ndjson-merge's --dir
// (or its old name --out), "" when none.
func outputOf(args []string) string {
	for i, a := range args {
		if (a == "-o" || a == "--output" || a == "--dir" || a == "--out") && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// crashState is what a crash case saw right after the kill.
type crashState struct {
	mark      int             // requests the server had seen
	verified  map[string]bool // bulk-fetch: files with their final name (verified before the rename)
	rewritten map[string]bool // ndjson-inline: note files already rewritten
}

// afterCrash checks what the kill left (nothing visible that a reader would take for a result)
// and arms the check that follows the rerun (nothing done twice that was done before the kill).
func (p *pipeline) afterCrash(tool string, args []string) {
	t, cr := p.t, p.c.crash
	st := crashState{mark: len(p.srv.requests())}
	switch tool {
	case "bulk-poll", "ndjson-merge":
		// -o and --dir appear complete or not at all.
		if out := outputOf(args); out != "" {
			if _, err := os.Stat(out); err == nil {
				t.Errorf("%s killed at %s left %s, which must appear only when complete", tool, cr.point, out)
			}
		}
	case "bulk-fetch":
		urls := manifestURLs(t, p.path("main.manifest"))
		files, _ := exportdir.Discover(p.path("main"))
		st.verified = map[string]bool{}
		for _, f := range files {
			st.verified[f.Rel] = true
		}
		p.note("%d of %d files verified before the kill", len(st.verified), len(urls))
		p.after = func() {
			again := 0
			for _, r := range p.srv.requests()[st.mark:] {
				for rel := range st.verified {
					if r.Route == fhirtest.RouteFile && urls[rel] == r.URL {
						t.Errorf("the rerun downloaded %s again, verified before the kill", rel)
						again++
					}
				}
			}
			if again == 0 {
				p.note("no verified file downloaded again")
			}
		}
	case "ndjson-inline":
		raws, _ := filepath.Glob(p.path("raw", "*.ndjson"))
		want := 0
		st.rewritten = map[string]bool{}
		for _, raw := range raws {
			a, _ := os.ReadFile(raw)
			b, _ := os.ReadFile(p.path("main", filepath.Base(raw)))
			if bytes.Equal(a, b) {
				want += inlineable(t, raw)
			} else {
				st.rewritten[filepath.Base(raw)] = true
			}
		}
		p.note("%d of %d note files rewritten before the kill", len(st.rewritten), len(raws))
		p.after = func() {
			got := 0
			for _, r := range p.srv.requests()[st.mark:] {
				if r.Route == fhirtest.RouteBinary {
					got++
				}
			}
			if got != want {
				t.Errorf("the rerun downloaded %d attachments, want %d: those of the files not rewritten before the kill, once each", got, want)
			} else {
				p.note("rerun downloaded the %d attachments of the files not yet rewritten, once each", got)
			}
		}
	case "etl-load":
		p.checkLoadCrash()
	}
}

// checkLoadCrash checks the database an etl-load killed at its failpoint left: what the folders
// committed before the kill, and nothing of the folder it was loading.
func (p *pipeline) checkLoadCrash() {
	t, cr, ref := p.t, p.c.crash, p.ref
	t.Helper()
	s := newSnapshot()
	l := newLabeler(t, p.work, p.srv.origin(), "main", "merged")
	norm := lineNormalizer(shapeExact, p.srv.origin(), nil)
	dbSnapshot(t, s, p.path("bulkpipe.duckdb"), l, norm, true)
	switch cr.db {
	case "empty":
		if ok, why := dbIsEmpty(s); !ok {
			t.Errorf("killed at %s, before the first folder committed, the database holds %s; want nothing", cr.point, why)
		}
	case "main", "full":
		want := ref.mainOnly
		if cr.db == "full" {
			want = ref.snapshot(t, shapeExact)
		}
		sub := newSnapshot()
		for k, v := range want.sum {
			if strings.HasPrefix(k, "db ") {
				sub.sum[k], sub.detail[k] = v, want.detail[k]
			}
		}
		gotDB := newSnapshot()
		for k, v := range s.sum {
			gotDB.sum[k], gotDB.detail[k] = v, s.detail[k]
		}
		if d := explain(sub, gotDB); d != "" {
			t.Errorf("killed at %s, the database differs from %s folder(s) loaded alone:\n%s", cr.point, cr.db, d)
		}
	}
	p.note("database right after the kill: %s", cr.db)
}

// manifestURLs maps each file's name in the export folder to its URL in the manifest lines,
// by the numbering of DESIGN.md §3 (a counter per item type and resource type, across pages).
func manifestURLs(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	n := map[string]int{}
	for line := range bytes.Lines(b) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		m, err := bulk.ParseManifest(line)
		if err != nil {
			t.Fatal(err)
		}
		for _, arr := range []struct {
			it    exportdir.ItemType
			typ   string
			items []bulk.Item
		}{{exportdir.ItemOutput, "", m.Output}, {exportdir.ItemDeleted, "Bundle", m.Deleted}, {exportdir.ItemError, "OperationOutcome", m.Error}} {
			for _, it := range arr.items {
				typ := arr.typ
				if typ == "" {
					typ = it.Type
				}
				k := string(arr.it) + "/" + typ
				out[exportdir.Rel(arr.it, typ, n[k])] = it.URL
				n[k]++
			}
		}
	}
	return out
}

// snapshot records the run's export folders (the slices too, unless the server ignored their
// filters), its database and the etl-load summary.
func (p *pipeline) snapshot(t *testing.T, sh shape, untouched map[string]bool) *snapshot {
	t.Helper()
	s := newSnapshot()
	norm := lineNormalizer(sh, p.srv.origin(), untouched)
	for _, e := range append(slices.Clone(chaosExports), chaosExport{name: "merged"}) {
		if sh == shapeNoTypeFilter && e.filter != "" {
			continue
		}
		folderSnapshot(t, s, p.path(e.name), e.name, sh, norm)
	}
	l := newLabeler(t, p.work, p.srv.origin(), "main", "merged")
	l.strip = p.c.urlStrip
	dbSnapshot(t, s, p.path("bulkpipe.duckdb"), l, norm, sh != shapeDupLines)
	s.sum["etl-load --summary"] = p.summary
	return s
}

// check compares the run with the reference and looks for what must not be left.
func (p *pipeline) check() {
	t, c, ref := p.t, p.c, p.ref
	t.Helper()
	p.checkEvidence()
	for _, tool := range slices.Sorted(maps.Keys(p.stderr)) {
		out := p.stderr[tool].String()
		if n := strings.Count(out, "retrying") + strings.Count(out, "trying again"); n > 0 {
			p.note("%s: %d retries", tool, n)
		}
		if n := strings.Count(out, "fetching the manifest again"); n > 0 {
			p.note("%s: %d manifest refreshes", tool, n)
		}
		if len(c.faults) == 0 {
			// A retry against a fault-free server is worth a look: say what it was.
			for _, l := range strings.Split(out, "\n") {
				if strings.Contains(l, "retrying") || strings.Contains(l, "trying again") {
					p.note("unexpected retry: %s", l)
				}
			}
		}
	}
	if c.maxWait > 0 {
		var polled string
		if b := p.stderr["bulk-poll"]; b != nil {
			polled = b.String()
		}
		waits := regexp.MustCompile(`retrying in ([0-9][0-9.hmsµ]*)`).FindAllStringSubmatch(polled, -1)
		for _, w := range waits {
			d, err := time.ParseDuration(w[1])
			if err != nil || d > c.maxWait {
				t.Errorf("bulk-poll announced a wait of %s after a Retry-After of about a second: want at most %v", w[1], c.maxWait)
			}
		}
	}
	p.shapeEvidence()
	want := ref.snapshot(t, c.shape)
	var untouched map[string]bool
	if c.shape == shapeB64Size {
		untouched = ref.untouched
	}
	got := p.snapshot(t, c.shape, untouched)
	if d := explain(want, got); d != "" {
		t.Errorf("the result differs from the fault-free run (compared as %s):\n%s", c.shape, d)
	}
	if left := leftovers(p.work); len(left) > 0 {
		t.Errorf("left behind: %s", strings.Join(left, ", "))
		p.note("left behind: %s", strings.Join(left, ", "))
	}
}

// checkEvidence checks that each fault of the case showed in the stderr of the tool that met it:
// otherwise the case would prove nothing.
func (p *pipeline) checkEvidence() {
	p.t.Helper()
	for tool, re := range p.c.evidence {
		var got string
		if b := p.stderr[tool]; b != nil {
			got = b.String()
		}
		if !regexp.MustCompile(re).MatchString(got) {
			p.t.Errorf("the fault never showed: %s's stderr does not match %q:\n%s", tool, re, got)
		}
	}
}

// shapeEvidence checks that a data-shaping fault did change what the server sent: otherwise its
// case would prove nothing.
func (p *pipeline) shapeEvidence() {
	t, ref := p.t, p.ref
	lines := func(glob string) (n, unique, noNL int) {
		files, _ := filepath.Glob(glob)
		seen := map[string]bool{}
		for _, f := range files {
			b, _ := os.ReadFile(f)
			if len(b) > 0 && b[len(b)-1] != '\n' {
				noNL++
			}
			for l := range bytes.Lines(b) {
				n++
				k := string(bytes.TrimSuffix(l, []byte("\n")))
				if !seen[k] {
					seen[k] = true
					unique++
				}
			}
		}
		return n, unique, noNL
	}
	switch p.c.shape {
	case shapeDupLines:
		n, u, _ := lines(p.path("main", "*.ndjson"))
		if n == u {
			t.Errorf("dup-lines: no line of main/ is repeated")
		}
		p.note("%d repeated lines in main/", n-u)
	case shapeNoFinalNL:
		_, _, k := lines(p.path("main", "*.ndjson"))
		if k == 0 {
			t.Errorf("no-final-newline: every file of main/ ends with a newline")
		}
		p.note("%d files of main/ without a final newline after inline", k)
	case shapeB64Size:
		changed := 0
		for _, f := range []string{"DocumentReference.000.ndjson", "DiagnosticReport.000.ndjson"} {
			a, _ := os.ReadFile(p.path("raw", f))
			b, _ := os.ReadFile(ref.p.path("raw", f))
			a = bytes.ReplaceAll(a, []byte(p.srv.origin()), []byte("ORIGIN"))
			b = bytes.ReplaceAll(b, []byte(ref.p.srv.origin()), []byte("ORIGIN"))
			if !bytes.Equal(a, b) {
				changed++
			}
		}
		if changed == 0 {
			t.Errorf("b64-size: the notes as fetched equal the reference's")
		}
		p.note("%d attachment sizes left as the server sent them (not downloaded by ndjson-inline)", sizesLeft(t, p.path("main")))
	case shapeNoLastUpdate:
		b, _ := os.ReadFile(p.path("main", "Patient.000.ndjson"))
		if bytes.Contains(b, []byte(`"lastUpdated"`)) {
			t.Errorf("no-lastupdated: main/Patient.000.ndjson still has meta.lastUpdated")
		}
	case shapeNoTypeFilter:
		n, _, _ := lines(p.path("s-laboratory", "Observation.*.ndjson"))
		all, _, _ := lines(p.path("main", "Observation.*.ndjson"))
		if n != all {
			t.Errorf("ignore-typefilter: the laboratory slice holds %d Observations, the Group %d: the filter was applied", n, all)
		}
	}
}

// sizesLeft counts the note attachments of a folder whose size is not their byte count.
func sizesLeft(t *testing.T, dir string) int {
	n := 0
	files, _ := filepath.Glob(filepath.Join(dir, "D*.ndjson"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for l := range bytes.Lines(b) {
			for _, r := range append(gjson.GetBytes(l, "content.#.attachment").Array(), gjson.GetBytes(l, "presentedForm").Array()...) {
				if !r.Get("size").Exists() || !r.Get("data").Exists() {
					if r.Get("size").Exists() {
						n++ // a size the server sent for content that is not here
					}
					continue
				}
				if d, err := decodeStd(r.Get("data").Str); err == nil && int64(len(d)) != r.Get("size").Int() {
					n++
				}
			}
		}
	}
	return n
}

// reference is the fault-free run every case is compared with.
type reference struct {
	p         *pipeline
	mainOnly  *snapshot       // the database after loading main/ alone (etl-load crash cases)
	untouched map[string]bool // attachments ndjson-inline leaves alone (b64-size)

	mu    sync.Mutex
	snaps map[shape]*snapshot
}

// snapshot returns the reference as a case of shape sees it, computed once per shape.
func (r *reference) snapshot(t *testing.T, sh shape) *snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.snaps[sh]; s != nil {
		return s
	}
	var untouched map[string]bool
	if sh == shapeB64Size {
		untouched = r.untouched
	}
	s := r.p.snapshot(t, sh, untouched)
	r.snaps[sh] = s
	return s
}

// newReference runs the pipeline against a fault-free bulk-testserver process and checks what
// the other cases take for granted: the slices add up to the Group's Observations, every note
// is inlined, the database holds every resource, and nothing is left behind.
func newReference(t *testing.T) *reference {
	t.Helper()
	p := &pipeline{t: t, c: &chaosCase{group: "reference", name: "fault-free", evidence: map[string]string{}}}
	p.start()
	ref := &reference{p: p, snaps: map[shape]*snapshot{}}
	p.ref = ref
	p.run()
	p.check() // against itself: consistency of state.json, no leftovers

	// The merged slices hold exactly the Group's Observations.
	read := func(glob string) []string {
		var out []string
		files, _ := filepath.Glob(glob)
		for _, f := range files {
			b, _ := os.ReadFile(f)
			for l := range bytes.Lines(b) {
				out = append(out, string(bytes.TrimSuffix(l, []byte("\n"))))
			}
		}
		slices.Sort(out)
		return out
	}
	obs, merged := read(p.path("main", "Observation.*.ndjson")), read(p.path("merged", "Observation.*.ndjson"))
	if !slices.Equal(obs, merged) {
		t.Errorf("the merged slices hold %d Observations, the Group export %d: the slices do not cover every category", len(merged), len(obs))
	}
	if n := len(obs); n < chaosFileLines {
		t.Errorf("the Group export has %d Observations: too few to span several files", n)
	}
	for _, f := range []string{"DocumentReference.000.ndjson", "DiagnosticReport.000.ndjson"} {
		if n := inlineable(t, p.path("main", f)); n != 0 {
			t.Errorf("main/%s: %d attachments not inlined", f, n)
		}
	}
	if !strings.Contains(p.summary, "patient\t"+strconv.Itoa(chaosPatients)+"\n") {
		t.Errorf("etl-load --summary = %q, want %d patients", p.summary, chaosPatients)
	}
	ref.untouched = untouchedAttachments(t, p.path("raw"))
	p.note("%d Observations in %d slices; %d attachments inlined", len(obs), len(chaosExports)-1,
		inlineable(t, p.path("raw", "DocumentReference.000.ndjson"))+inlineable(t, p.path("raw", "DiagnosticReport.000.ndjson")))

	// The database with the Group folder alone: what a kill after its commit must leave.
	if o := runTool(t, toolEnv(), "etl-load", "--db", p.path("main-only.duckdb"), p.path("main")); o.Code != 0 {
		t.Fatalf("etl-load of main/ alone: exit %d\n%s", o.Code, o.Stderr)
	}
	ref.mainOnly = newSnapshot()
	l := newLabeler(t, p.work, p.srv.origin(), "main", "merged")
	dbSnapshot(t, ref.mainOnly, p.path("main-only.duckdb"), l, lineNormalizer(shapeExact, p.srv.origin(), nil), true)
	return ref
}
