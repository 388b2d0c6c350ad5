// Package tooltest holds checks that every tool's tests share: that a man page documents each
// flag (STYLE.md convention 15).
package tooltest

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// ManPage returns the path of man/NAME.1 in the module root, found from the caller's file.
func ManPage(t testing.TB, name string) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(1)
	if !ok {
		t.Fatal("cannot locate the caller's source file")
	}
	dir := filepath.Dir(file)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "man", name+".1")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("no go.mod above %s", file)
		}
		dir = parent
	}
}

// CheckManPage fails the test for every long flag of app that the man page does not mention as
// \-\-name, and for a page missing one of the sections every tool's page has.
func CheckManPage(t *testing.T, app *cli.App, page string) {
	t.Helper()
	text, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range app.Flags {
		for _, name := range f.Names() {
			if len(name) > 1 && !bytes.Contains(text, []byte(`\-\-`+name)) {
				t.Errorf("%s does not document --%s", filepath.Base(page), name)
			}
		}
	}
	for _, sec := range []string{"NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "ENVIRONMENT", "EXAMPLES", "SEE ALSO"} {
		if !bytes.Contains(text, []byte(".SH "+sec)) && !bytes.Contains(text, []byte(`.SH "`+sec+`"`)) {
			t.Errorf("%s has no %s section", filepath.Base(page), sec)
		}
	}
	for _, f := range app.Flags {
		if ev, ok := f.(interface{ GetEnvVars() []string }); ok {
			for _, v := range ev.GetEnvVars() {
				if !strings.Contains(string(text), v) {
					t.Errorf("%s does not mention environment variable %s (for --%s)", filepath.Base(page), v, f.Names()[0])
				}
			}
		}
	}
}
