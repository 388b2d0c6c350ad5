package main

import (
	"flag"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest/fhirscript"
	"github.com/bulkpipe/bulkpipe/pkg/tool"
	"github.com/bulkpipe/bulkpipe/pkg/tool/tooltest"
)

var update = flag.Bool("update", false, "rewrite testscript golden files")

func TestMain(m *testing.M) {
	testscript.Main(tooltest.PrivateCache(m), map[string]func(){"bulk-kickoff": main})
}

func TestScript(t *testing.T) {
	testscript.Run(t, fhirscript.ScriptParams("testdata/script", *update))
}

func TestManPage(t *testing.T) {
	tooltest.CheckManPage(t, newApp(tool.Deps{}), tooltest.ManPage(t, "bulk-kickoff"))
}
