package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/vbauerster/mpb/v8"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/fetch"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest/fhirscript"
	"github.com/bulkpipe/bulkpipe/pkg/tool/tooltest"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/script")

func TestMain(m *testing.M) {
	testscript.Main(tooltest.PrivateCache(m), map[string]func(){"bulk-fetch": main})
}

// TestScript runs the CLI contract in testdata/script. Besides testscript's builtins and exits:
//
//	manifest [-partial] [-group ID] [-types T,U] FILE   kick off an export on the script's server
//	                                                    and write its manifest lines as bulk-poll does
//	fault SPEC...                                       add faults to the server
//	requests ROUTE|METHOD                               print how many requests the server saw
//	authseen ORIGIN                                     print how many requests to ORIGIN (main,
//	                                                    files) carried an Authorization header
func TestScript(t *testing.T) {
	p := fhirscript.ScriptParams("testdata/script", *update)
	p.Cmds["manifest"] = manifestCmd
	p.Cmds["fault"] = faultCmd
	p.Cmds["requests"] = requestsCmd
	p.Cmds["authseen"] = authSeenCmd
	testscript.Run(t, p)
}

func server(ts *testscript.TestScript) *fhirtest.Server {
	srv, ok := ts.Value(fhirscript.ServerKey{}).(*fhirtest.Server)
	if !ok {
		ts.Fatalf("no server: the script needs a .fhirserver/ folder")
	}
	return srv
}

func manifestCmd(ts *testscript.TestScript, neg bool, args []string) {
	fs := flag.NewFlagSet("manifest", flag.ContinueOnError)
	partial := fs.Bool("partial", false, "allowPartialManifests")
	group := fs.String("group", "", "Group id")
	types := fs.String("types", "", "_type")
	if neg || fs.Parse(args) != nil || fs.NArg() != 1 {
		ts.Fatalf("usage: manifest [-partial] [-group ID] [-types T,U] FILE")
	}
	srv := server(ts)
	c, err := fhirclient.New(fhirclient.Options{FHIRBase: srv.URL(), Credentials: bearerFromEnv(ts)})
	ts.Check(err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req := bulk.KickoffRequest{URL: srv.URL(), AllowPartialManifests: *partial}
	if *group != "" {
		req.URL += "/Group/" + *group
	}
	if *types != "" {
		req.Types = strings.Split(*types, ",")
	}
	pk, err := req.Prepare()
	ts.Check(err)
	res, err := pk.Send(ctx, c)
	ts.Check(err)
	var out bytes.Buffer
	ts.Check(bulk.Poll(ctx, c, res.StatusURL, bulk.PollOptions{}, func(p bulk.Page) error {
		line, err := bulk.WithContext(p.Raw, bulk.Context{StatusURL: res.StatusURL, FHIRBase: srv.URL(),
			ExportURL: res.ExportURL, Expires: p.Expires, Page: p.Number})
		out.Write(append(line, '\n'))
		return err
	}))
	ts.Check(os.WriteFile(ts.MkAbs(fs.Arg(0)), out.Bytes(), 0o644))
}

// bearer is a static token for the manifest command on servers that require one.
type bearer string

func (b bearer) Authorization(context.Context) (string, error) { return "Bearer " + string(b), nil }
func (b bearer) Reauthorize(context.Context) error             { return fhirclient.ErrCannotReauthorize }

func bearerFromEnv(ts *testscript.TestScript) fhirclient.Credentials {
	if tok := ts.Getenv("BULK_BEARER_TOKEN"); tok != "" {
		return bearer(tok)
	}
	return nil
}

func faultCmd(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: fault SPEC...")
	}
	for _, a := range args {
		f, err := fhirtest.ParseFault(a)
		ts.Check(err)
		server(ts).AddFault(f)
	}
}

func requestsCmd(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: requests ROUTE|METHOD")
	}
	n := 0
	for _, r := range server(ts).Requests() {
		if r.Route == args[0] || r.Method == args[0] {
			n++
		}
	}
	fmt.Fprintln(ts.Stdout(), n)
}

func authSeenCmd(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: authseen ORIGIN")
	}
	n := 0
	for _, r := range server(ts).Requests() {
		if r.Origin == args[0] && r.Authorization != "" {
			n++
		}
	}
	fmt.Fprintln(ts.Stdout(), n)
}

func TestManPage(t *testing.T) {
	tooltest.CheckManPage(t, newApp(), tooltest.ManPage(t, "bulk-fetch"))
}

// The total bar: files of the export, bytes of those started, and an ETA only when sizes and a
// rate are known.
func TestTotalsText(t *testing.T) {
	tests := []struct {
		t       totals
		elapsed time.Duration
		want    string
	}{
		{totals{files: 14}, 0, "0 B · 0 of 14 files · 0 resources · 0 B/s"},
		// 10 MiB of 40 MiB known in 5 s: 2 MiB/s, 30 MiB left, 15 s.
		{totals{files: 14, verified: 3, resources: 500, received: 10 << 20, have: 10 << 20, known: 40 << 20, haveKnown: 10 << 20},
			5 * time.Second, "10.0 MiB of 40.0 MiB · 3 of 14 files · 500 resources · 2.0 MiB/s · ETA 15s"},
		// Resumed: 4 MiB were on disk before; the rate counts only this run's 2 MiB.
		{totals{files: 2, received: 2 << 20, have: 6 << 20, known: 8 << 20, haveKnown: 6 << 20},
			time.Second, "6.0 MiB of 8.0 MiB · 0 of 2 files · 0 resources · 2.0 MiB/s · ETA 1s"},
		// No size known (chunked responses): no total, no ETA.
		{totals{files: 1, received: 1 << 20, have: 1 << 20}, time.Second, "1.0 MiB · 0 of 1 files · 0 resources · 1.0 MiB/s"},
		// Every known byte is here: nothing to estimate.
		{totals{files: 1, verified: 1, received: 1 << 20, have: 1 << 20, known: 1 << 20, haveKnown: 1 << 20},
			time.Second, "1.0 MiB of 1.0 MiB · 1 of 1 files · 0 resources · 1.0 MiB/s"},
	}
	for _, tt := range tests {
		if got := tt.t.text(tt.elapsed); got != tt.want {
			t.Errorf("%+v.text(%v) = %q, want %q", tt.t, tt.elapsed, got, tt.want)
		}
	}
}

// The totals follow restarts: a file started again from 0 (a 200 instead of a 206) counts once.
func TestProgressTotals(t *testing.T) {
	var b bytes.Buffer
	pr := newProgress(t.Context(), &b, 2, 0)
	pr.started(fetch.FileInfo{Rel: "A.000.ndjson", Size: 100, Offset: 30})
	pr.progress("A.000.ndjson", 40, 2)
	pr.started(fetch.FileInfo{Rel: "B.000.ndjson", Size: -1})
	pr.progress("B.000.ndjson", 10, 1)
	pr.started(fetch.FileInfo{Rel: "A.000.ndjson", Size: 100, Offset: 0})
	pr.progress("A.000.ndjson", 100, 5)
	pr.done("A.000.ndjson", nil)
	pr.started(fetch.FileInfo{Rel: "C.000.ndjson", Size: 5}) // from a later page
	pr.wait()
	want := totals{files: 3, verified: 1, resources: 8, received: 150, have: 110, known: 105, haveKnown: 100}
	if pr.t != want {
		t.Errorf("totals = %+v, want %+v", pr.t, want)
	}
}

// The renderer reads the totals while downloads start: the lock it takes must not be held while
// the bars are updated, which waits for the renderer (this deadlocked on a terminal).
func TestProgressRendersWhileFilesStart(t *testing.T) {
	var b bytes.Buffer
	refresh := make(chan any)
	stop := make(chan struct{})
	pr := newProgress(t.Context(), &b, 500, 0, mpb.WithManualRefresh(refresh), mpb.WithWidth(300))
	go func() {
		for {
			select {
			case refresh <- time.Time{}:
			case <-stop:
				return
			}
		}
	}()
	for i := range 500 {
		rel := fmt.Sprintf("Patient.%03d.ndjson", i)
		pr.started(fetch.FileInfo{Rel: rel, Size: 10})
		pr.progress(rel, 10, 1)
		pr.done(rel, nil)
	}
	close(stop)
	pr.wait()
	if !strings.Contains(b.String(), "500 of 500 files") {
		t.Errorf("the total bar's last frame does not count every file:\n%q", b.String()[max(0, b.Len()-300):])
	}
}
