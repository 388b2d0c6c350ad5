package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
	"github.com/bulkpipe/bulkpipe/pkg/tool"
	"github.com/bulkpipe/bulkpipe/pkg/tool/tooltest"
)

var update = flag.Bool("update", false, "rewrite golden files of the scripts")

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"bulk-testserver": main})
}

func TestScript(t *testing.T) { testscript.Run(t, fhirtest.ScriptParams("testdata/script", *update)) }

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
