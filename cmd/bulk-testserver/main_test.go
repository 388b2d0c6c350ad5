package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rogpeppe/go-internal/testscript"
	"github.com/urfave/cli/v2"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest/fhirscript"
	"github.com/bulkpipe/bulkpipe/pkg/tool"
	"github.com/bulkpipe/bulkpipe/pkg/tool/tooltest"
)

var update = flag.Bool("update", false, "rewrite golden files of the scripts")

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"bulk-testserver": main})
}

func TestScript(t *testing.T) { testscript.Run(t, fhirscript.ScriptParams("testdata/script", *update)) }

func TestManPage(t *testing.T) {
	tooltest.CheckManPage(t, newApp(), tooltest.ManPage(t, "bulk-testserver"))
}

func TestHelpShowsEveryFault(t *testing.T) {
	var out bytes.Buffer
	if code := tool.Run(t.Context(), newApp(), []string{"bulk-testserver", "--help"}, strings.NewReader(""), &out, io.Discard); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, k := range fhirtest.FaultKinds() {
		if !strings.Contains(out.String(), "--fault "+k) {
			t.Errorf("--help has no example of fault %s", k)
		}
	}
}

// TestFirstLineIsBaseURL reads stdout through a pipe while the server runs, as a script does.
func TestFirstLineIsBaseURL(t *testing.T) {
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int)
	var stderr bytes.Buffer
	go func() {
		done <- tool.Run(ctx, newApp(), []string{"bulk-testserver", "--patients", "1", "--polls", "0"}, strings.NewReader(""), pw, &stderr)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("read first line: %v", err)
	}
	base := strings.TrimSpace(line)
	if !strings.HasPrefix(base, "http://127.0.0.1:") || !strings.HasSuffix(base, "/fhir") {
		t.Errorf("first line = %q, want http://127.0.0.1:PORT/fhir", line)
	}
	resp, err := http.Get(base + "/metadata")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET metadata: %v %v", resp, err)
	}
	resp.Body.Close()
	go io.Copy(io.Discard, pr)
	cancel() // what SIGINT/SIGTERM do through tool.Main
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code after cancel = %d, want 0; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server did not stop after cancel")
	}
}

// TestFlagsAsHarness checks that the program reads its flags, through urfave/cli, into the same
// Options as the testscript harness's parser does from the same words.
func TestFlagsAsHarness(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "public.jwks")
	if err := os.WriteFile(key, []byte(`{"keys":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := [][]string{
		nil,
		{"--patients", "7", "--seed=3", "--polls", "0", "--retry-after", "0"},
		{"--gzip", "--files-origin", "--files-reject-auth", "--requires-token", "--profile", "v4", "--page-size", "2"},
		{"--auth", "smart", "--client-id", "demo", "--public-key", key, "--public-key=" + key, "--token-ttl", "500ms", "--strict-scopes"},
		{"--fault", "503:1@status", "--fault", "reset@file*3", "--fault=429:5%50", "--file-lines", "10", "--gzip=false"},
		{"--patients", "many"},
		{"--auth", "smart", "--client-id", "demo"},
	}
	for _, args := range tests {
		want, wantErr := fhirtest.ParseFlags(args, "")
		var got fhirtest.Options
		var gotErr error
		app := newApp()
		app.Action = func(c *cli.Context) error {
			got, gotErr = options(c)
			return nil
		}
		if code := tool.Run(t.Context(), app, append([]string{"bulk-testserver"}, args...), strings.NewReader(""), io.Discard, io.Discard); code != 0 {
			t.Fatalf("bulk-testserver %q: exit %d", args, code)
		}
		if gotErr != nil && !tool.IsUsageError(gotErr) {
			t.Errorf("bulk-testserver %q: error %v is not a usage error", args, gotErr)
		}
		if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Errorf("bulk-testserver %q: error %v, want %v (as ParseFlags)", args, gotErr, wantErr)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("bulk-testserver %q: Options differ from ParseFlags's (-want +got):\n%s", args, diff)
		}
	}
}

// TestReleaseBinariesLinkNoTesting keeps test-only code out of every program: the testscript
// harness lives in fhirscript, apart from the fhirtest server that bulk-testserver serves.
func TestReleaseBinariesLinkNoTesting(t *testing.T) {
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, "github.com/bulkpipe/bulkpipe/cmd/...")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 7 {
		t.Fatalf("go list found %d programs, want the 7 in cmd/", len(lines))
	}
	for _, line := range lines {
		prog, deps, _ := strings.Cut(line, " ")
		for dep := range strings.FieldsSeq(deps) {
			if dep == "testing" || strings.HasPrefix(dep, "github.com/rogpeppe/go-internal/testscript") {
				t.Errorf("%s links %s", prog, dep)
			}
		}
	}
}
