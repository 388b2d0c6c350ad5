package main

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest/fhirscript"
	"github.com/bulkpipe/bulkpipe/pkg/tool/tooltest"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/script")

// runMainEnv makes the test binary behave as ndjson-inline, for tests that must kill it
// (BULKPIPE_CRASH) and so cannot run it inside testscript's exec.
const runMainEnv = "NDJSON_INLINE_TEST_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		return
	}
	testscript.Main(m, map[string]func(){"ndjson-inline": main})
}

// TestScript runs the CLI contract of testdata/script/*.txtar (STYLE.md convention 13).
func TestScript(t *testing.T) {
	p := fhirscript.ScriptParams("testdata/script", *update)
	p.Cmds["expand"] = expand
	testscript.Run(t, p)
}

// TestManPage checks that man/ndjson-inline.1 documents every flag (STYLE.md convention 15).
func TestManPage(t *testing.T) {
	tooltest.CheckManPage(t, newApp(), tooltest.ManPage(t, "ndjson-inline"))
}

var braced = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expand is the testscript command `expand SRC DST`: it copies SRC to DST with ${NAME} replaced
// by the script's variable, so a txtar file can hold URLs of the server the script started
// ($FHIR_BASE_URL, $FHIR_FILES_URL). Only the braced form is expanded: "$export" in a URL stays.
func expand(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: expand SRC DST")
	}
	b := ts.ReadFile(args[0])
	out := braced.ReplaceAllStringFunc(b, func(m string) string {
		return ts.Getenv(braced.FindStringSubmatch(m)[1])
	})
	dst := ts.MkAbs(args[1])
	os.MkdirAll(filepath.Dir(dst), 0o755)
	if err := os.WriteFile(dst, []byte(out), 0o644); err != nil {
		ts.Fatalf("expand: %v", err)
	}
}

func TestInputNames(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "stdin"},
		{[]string{"-"}, "stdin"},
		{[]string{"export/"}, "export/"},
		{[]string{"a.ndjson", "-", "b.ndjson"}, "a.ndjson, stdin, b.ndjson"},
		{[]string{"a", "b", "c", "d", "e"}, "a, b and 3 more"},
	}
	for _, tt := range tests {
		if got := inputNames(tt.args); got != tt.want {
			t.Errorf("inputNames(%q) = %q, want %q", tt.args, got, tt.want)
		}
	}
}
