// Package tooltest holds checks that every tool's tests share: that a man page documents each
// flag (STYLE.md convention 15), and a tool's own peak memory as a process (PeakRSS).
package tooltest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/bulkpipe/bulkpipe/pkg/tool"
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

// maxHelpWidth is the widest --help line allowed: it fits a 100-column terminal.
const maxHelpWidth = 100

// placeholderRE is a value placeholder as --help shows it after a flag name: N, FILE, DURATION.
var placeholderRE = regexp.MustCompile(`^[A-Z][A-Z0-9_=]*$`)

// CheckHelp fails the test for a --help line wider than 100 columns, for a flag that takes a
// value without a placeholder naming it (`--retries N`, not urfave/cli's "--retries value"), and
// for a numeric default shown in quotes ("256MiB").
func CheckHelp(t *testing.T, app *cli.App) {
	t.Helper()
	for _, f := range app.Flags {
		tv, ok := f.(interface{ TakesValue() bool })
		if !ok || !tv.TakesValue() {
			continue
		}
		// f.String() is the flag's help entry: "--name PLACEHOLDER, -n PLACEHOLDER\tusage (default: x)".
		head, _, _ := strings.Cut(f.String(), "\t")
		fields := strings.Fields(strings.Split(head, ",")[0])
		if len(fields) < 2 || !placeholderRE.MatchString(fields[1]) {
			t.Errorf("--help: %q has no placeholder (want e.g. --%s N or FILE)", head, f.Names()[0])
		}
	}
	var out, errb bytes.Buffer
	if code := tool.Run(context.Background(), app, []string{app.Name, "--help"}, strings.NewReader(""), &out, &errb); code != 0 {
		t.Fatalf("%s --help = exit %d: %s", app.Name, code, errb.String())
	}
	for i, line := range strings.Split(out.String(), "\n") {
		if quotedNumber.MatchString(line) {
			t.Errorf("%s --help line %d shows a numeric default in quotes: %q", app.Name, i+1, line)
		}
		if w := utf8.RuneCountInString(strings.ReplaceAll(line, "\t", "        ")); w > maxHelpWidth {
			t.Errorf("%s --help line %d is %d columns wide, want at most %d: %q", app.Name, i+1, w, maxHelpWidth, line)
		}
	}
}

// quotedNumber is a default shown as a string though it is a number or a size: (default: "256MiB").
var quotedNumber = regexp.MustCompile(`\(default: "\d`)
