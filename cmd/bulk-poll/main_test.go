package main

import (
	"context"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest/fhirscript"
	"github.com/bulkpipe/bulkpipe/pkg/tool"
	"github.com/bulkpipe/bulkpipe/pkg/tool/tooltest"
)

var update = flag.Bool("update", false, "rewrite testscript golden files")

func TestMain(m *testing.M) {
	testscript.Main(tooltest.PrivateCache(m), map[string]func(){"bulk-poll": main})
}

func TestScript(t *testing.T) {
	p := fhirscript.ScriptParams("testdata/script", *update)
	p.Cmds["kickoff"] = kickoffCmd
	testscript.Run(t, p)
}

// kickoffCmd is the testscript command `kickoff [-o FILE] URL [NAME=VALUE...]`: it starts an
// export with pkg/bulk (bulk-kickoff is another binary), sets $STATUS_URL and, with -o, writes
// the status URL to FILE as bulk-kickoff would. NAME=VALUE pairs are kickoff parameters; post=1
// sends a POST.
func kickoffCmd(ts *testscript.TestScript, neg bool, args []string) {
	var file string
	if len(args) > 1 && args[0] == "-o" {
		file, args = args[1], args[2:]
	}
	if neg || len(args) < 1 {
		ts.Fatalf("usage: kickoff [-o FILE] URL [NAME=VALUE...]")
	}
	req := bulk.KickoffRequest{URL: args[0]}
	for _, kv := range args[1:] {
		name, value, _ := strings.Cut(kv, "=")
		if name == "post" {
			req.Post = true
			continue
		}
		req.Params = append(req.Params, [2]string{name, value})
	}
	c, err := fhirclient.New(fhirclient.Options{FHIRBase: args[0]})
	ts.Check(err)
	pk, err := req.Prepare()
	ts.Check(err)
	res, err := pk.Send(context.Background(), c)
	ts.Check(err)
	ts.Setenv("STATUS_URL", res.StatusURL)
	if file != "" {
		ts.Check(os.WriteFile(ts.MkAbs(file), []byte(res.StatusURL+"\n"), 0o644))
	}
}

func TestManPage(t *testing.T) {
	tooltest.CheckManPage(t, newApp(tool.Deps{}), tooltest.ManPage(t, "bulk-poll"))
}
