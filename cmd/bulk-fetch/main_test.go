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

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
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

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 5 << 30: "5.0 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
