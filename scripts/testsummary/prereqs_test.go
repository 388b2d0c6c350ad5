package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestCheckPrereqsScript runs scripts/check-prereqs.sh, which `make test` runs before this
// program, with a PATH that holds only what each case gives it.
func TestCheckPrereqsScript(t *testing.T) {
	script, err := filepath.Abs("../check-prereqs.sh")
	if err != nil {
		t.Fatal(err)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	real := map[string]string{}
	for _, name := range []string{"go", "id"} {
		p, err := exec.LookPath(name)
		if err != nil {
			t.Fatalf("%s is needed to run the script: %v", name, err)
		}
		real[name] = p
	}
	tests := []struct {
		name    string
		tools   []string // stand-ins on PATH besides go and id
		env     []string
		code    int
		pattern string
	}{
		{"nothing installed", nil, nil, 1,
			`^check-prereqs: make test needs programs that are not installed; install them with:\n  (sudo )?apt-get install -y gcc jose uuid-runtime openssl\n$`},
		{"only the key tools missing", []string{"gcc", "openssl"}, nil, 1,
			`\n  (sudo )?apt-get install -y jose uuid-runtime\n$`},
		{"CC names another compiler", []string{"gcc", "jose", "uuidgen", "openssl"}, []string{"CC=ccache clang -O2"}, 1,
			`apt-get install -y gcc\n$`},
		{"everything there", []string{"gcc", "jose", "uuidgen", "openssl"}, nil, 0, `^$`},
		{"cgo turned off", []string{"gcc", "jose", "uuidgen", "openssl"}, []string{"CGO_ENABLED=0"}, 1,
			`^check-prereqs: cgo is off \(CGO_ENABLED=0\); DuckDB needs it`},
	}
	for _, tt := range tests {
		bin := t.TempDir()
		for name, p := range real {
			if err := os.Symlink(p, filepath.Join(bin, name)); err != nil {
				t.Fatal(err)
			}
		}
		for _, name := range tt.tools {
			if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command(sh, script)
		cmd.Env = append(withoutVars(os.Environ(), "PATH", "CC", "CGO_ENABLED", "GO"), "PATH="+bin)
		cmd.Env = append(cmd.Env, tt.env...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tt.code || !regexp.MustCompile(tt.pattern).Match(out) {
			t.Errorf("%s: check-prereqs.sh = exit %d, %q; want exit %d, output matching %s", tt.name, code, out, tt.code, tt.pattern)
		}
	}
}

// withoutVars drops the named variables from an environment.
func withoutVars(env []string, names ...string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		keep := true
		for _, n := range names {
			if name == n {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}
