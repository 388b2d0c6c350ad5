package e2e

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// binDir holds the binaries built once for the whole package.
var binDir string

func TestMain(m *testing.M) {
	flag.Parse() // testing.Short reads the flags
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "bulkpipe-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// -tags failpoint: the crash cases kill tools with BULKPIPE_CRASH, which release builds ignore.
	cmd := exec.Command("go", "build", "-tags", "failpoint", "-o", dir+"/", "./cmd/...")
	cmd.Dir = moduleRoot()
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building ./cmd/...:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	binDir = dir
	// bulk-kickoff's export records go to a folder of the run's, never the user's cache; not
	// inside binDir, whose entries the chmod-000 test links for another user one by one.
	cache, err := os.MkdirTemp("", "bulkpipe-e2e-cache-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	os.Setenv("BULK_CACHE_DIR", cache)
	code := m.Run()
	os.RemoveAll(dir)
	os.RemoveAll(cache)
	os.Exit(code)
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// needBinaries skips tests in -short mode, where TestMain builds nothing.
func needBinaries(t *testing.T, names ...string) {
	t.Helper()
	if binDir == "" {
		t.Skip("end-to-end tests build the binaries; skipped in -short mode")
	}
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(binDir, n)); err != nil {
			t.Fatalf("binary %s was not built: %v", n, err)
		}
	}
}

// server is a running bulk-testserver process.
type server struct {
	URL string
	cmd *exec.Cmd
}

// startServer runs bulk-testserver with args and reads its base URL from the first line of
// stdout, the contract scripts rely on.
func startServer(t *testing.T, args ...string) *server {
	t.Helper()
	needBinaries(t, "bulk-testserver")
	cmd := exec.Command(filepath.Join(binDir, "bulk-testserver"), args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("bulk-testserver %v printed no URL: %v; stderr: %s", args, err, stderr.String())
	}
	go io.Copy(io.Discard, stdout)
	return &server{URL: strings.TrimSpace(line), cmd: cmd}
}

// result is what one command did.
type result struct {
	Code           int
	Stdout, Stderr string
}

// run runs a bulkpipe binary with stdin and extra environment, within a generous deadline
// (a hung tool fails the test rather than the whole package timeout).
func run(t *testing.T, env []string, stdin string, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, name), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s %v: %v", name, args, err)
		}
		code = ee.ExitCode()
	}
	return result{Code: code, Stdout: out.String(), Stderr: errb.String()}
}

// mustRun is run that fails the test on a non-zero exit.
func mustRun(t *testing.T, env []string, stdin string, name string, args ...string) result {
	t.Helper()
	r := run(t, env, stdin, name, args...)
	if r.Code != 0 {
		t.Fatalf("%s %s: exit %d\nstderr:\n%s", name, strings.Join(args, " "), r.Code, r.Stderr)
	}
	return r
}

// sh runs a POSIX shell script line with the binaries first on PATH.
func sh(t *testing.T, dir string, env []string, script string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append([]string{"PATH=" + binDir + ":" + os.Getenv("PATH")}, env...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("sh -c %q: %v", script, err)
	}
	return result{Code: code, Stdout: out.String(), Stderr: errb.String()}
}

// holder is a bulk-fetch run that holds an export folder's lock: its manifest input stays open,
// so it waits for more pages. finish closes the input and waits for the run to end.
type holder struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	Stderr *bytes.Buffer
	PID    string
}

// holdFolder starts bulk-fetch (with extra flags) on dir with manifest as its first input, and
// returns once the folder's lock names it.
func holdFolder(t *testing.T, dir, manifest string, flags ...string) *holder {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), filepath.Join(binDir, "bulk-fetch"), append([]string{"--dir", dir, "--no-delete"}, flags...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	h := &holder{cmd: cmd, stdin: stdin, Stderr: &bytes.Buffer{}}
	cmd.Stderr = h.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	io.WriteString(stdin, manifest)
	h.PID = strconv.Itoa(cmd.Process.Pid)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, _ := os.ReadFile(filepath.Join(dir, ".bulkpipe", "lock")); strings.TrimSpace(string(b)) == h.PID {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first bulk-fetch never locked %s: %s", dir, h.Stderr.String())
		}
		time.Sleep(20 * time.Millisecond) // waiting for the other process, not for time to pass
	}
}

// finish ends the holder's input and waits for it.
func (h *holder) finish() error {
	h.stdin.Close()
	return h.cmd.Wait()
}
