package main

import (
	"flag"
	"testing"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest/fhirscript"
	"github.com/bulkpipe/bulkpipe/pkg/tool/tooltest"
	"github.com/rogpeppe/go-internal/testscript"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/script")

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"ndjson-merge": main})
}

// TestScript runs the CLI contract of testdata/script/*.txtar (STYLE.md convention 13).
func TestScript(t *testing.T) {
	testscript.Run(t, fhirscript.ScriptParams("testdata/script", *update))
}

// TestManPage checks that man/ndjson-merge.1 documents every flag (STYLE.md convention 15).
func TestManPage(t *testing.T) {
	tooltest.CheckManPage(t, newApp(), tooltest.ManPage(t, "ndjson-merge"))
}
