// Package fhirscript runs the tools' testscript contracts (STYLE.md convention 13) against the
// test server of package fhirtest. It is kept apart from fhirtest, as goproxytest is from
// testscript, so that cmd/bulk-testserver does not link the testing package.
package fhirscript

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/bulkpipe/bulkpipe/pkg/failpoint"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
)

// ServerKey is the testscript Env.Values key under which ScriptParams keeps the *Server it
// started, for custom commands of a tool's own tests (ts.Value(fhirscript.ServerKey{})).
type ServerKey struct{}

// ScriptParams returns testscript parameters for a tool's CLI contract tests (STYLE.md
// convention 13): scripts in dir, RequireExplicitExec, golden files rewritten when update is
// true, the `exits CODE cmd args...` command, the condition [failpoint] (true when the test
// binary was built with -tags failpoint, so BULKPIPE_CRASH works), and a server for every
// script that has a .fhirserver/ folder:
//
//   - .fhirserver/flags (optional) holds bulk-testserver flags on one line ($WORK and other
//     variables expanded; relative paths are relative to $WORK). --retry-after 0 is the default
//     here, so scripts poll fast.
//   - every other file under .fhirserver/ is served verbatim at base+path, overriding the
//     route: .fhirserver/status/job1 answers $FHIR_BASE_URL/status/job1. A file that starts
//     with "HTTP/1.1 200 OK" is a whole response (status line, headers, blank line, body).
//
// The server's base URL is exported as $FHIR_BASE_URL (and the files origin, when on, as
// $FHIR_FILES_URL), as goproxytest exports $GOPROXY; it is closed when the script ends.
func ScriptParams(dir string, update bool) testscript.Params {
	return testscript.Params{
		Dir:                 dir,
		UpdateScripts:       update,
		RequireExplicitExec: true,
		Cmds:                map[string]func(*testscript.TestScript, bool, []string){"exits": Exits},
		Setup:               setupServer,
		Condition:           condition,
	}
}

// Exits is the testscript command `exits CODE cmd args...`: it runs cmd as exec does and fails
// unless the exit status is CODE. testscript's exec only tells success from failure, and the
// tools' contract (DESIGN.md §1) distinguishes 1, 2 and 130.
func Exits(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! exits (give the expected exit status instead)")
	}
	if len(args) < 2 {
		ts.Fatalf("usage: exits CODE program [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil || want < 0 {
		ts.Fatalf("exits: CODE %q is not an exit status", args[0])
	}
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	if err != nil {
		ee, ok := errors.AsType[*exec.ExitError](err)
		if !ok {
			ts.Fatalf("exits: %v", err)
		}
		got = ee.ExitCode()
		if got < 0 {
			ts.Fatalf("exits: %s ended by %v, want exit status %d", args[1], err, want)
		}
	}
	if got != want {
		ts.Fatalf("%s exited with status %d, want %d", args[1], got, want)
	}
}

// condition answers [failpoint]: scripts that kill a tool with BULKPIPE_CRASH skip without it.
func condition(cond string) (bool, error) {
	if cond == "failpoint" {
		return failpoint.Enabled, nil
	}
	return false, fmt.Errorf("unknown condition %q", cond)
}

// setupServer starts a server for a script with a .fhirserver/ folder, and gives every script
// a cache folder of its own.
func setupServer(env *testscript.Env) error {
	// bulk-kickoff's export records go to the script's own folder, never the user's cache.
	env.Setenv("BULK_CACHE_DIR", filepath.Join(env.WorkDir, ".cache"))
	root := filepath.Join(env.WorkDir, ".fhirserver")
	if st, err := os.Stat(root); err != nil || !st.IsDir() {
		return nil
	}
	args := []string{"--retry-after=0"}
	override := map[string][]byte{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if rel == "flags" {
			args = append(args, strings.Fields(os.Expand(string(b), env.Getenv))...)
			return nil
		}
		override["/"+filepath.ToSlash(rel)] = b
		return nil
	})
	if err != nil {
		return fmt.Errorf(".fhirserver: %w", err)
	}
	opts, err := fhirtest.ParseFlags(args, env.WorkDir)
	if err != nil {
		return fmt.Errorf(".fhirserver/flags: %w", err)
	}
	opts.Override = override
	srv, err := fhirtest.NewServer(opts)
	if err != nil {
		return fmt.Errorf(".fhirserver: %w", err)
	}
	env.Defer(func() { srv.Close() })
	env.Setenv("FHIR_BASE_URL", srv.URL())
	if u := srv.FilesURL(); u != "" {
		env.Setenv("FHIR_FILES_URL", u)
	}
	env.Values[ServerKey{}] = srv
	return nil
}
