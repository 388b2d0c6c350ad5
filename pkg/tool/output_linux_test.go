package tool

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// writeOutput runs a tool that writes text to -o path and commits it.
func writeOutput(t *testing.T, path, text string) {
	t.Helper()
	action := func(c *cli.Context) error {
		o, err := CreateOutput(c, c.String("output"))
		if err != nil {
			return err
		}
		defer o.Abort()
		fmt.Fprint(o, text)
		return o.Commit()
	}
	if code, _, stderr := run(t, action, "-o", path); code != 0 {
		t.Fatalf("run -o %s = %d %q, want 0", path, code, stderr)
	}
}

func TestOutputThroughSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.txt")
	os.WriteFile(real, []byte("old\n"), 0o600)
	tests := []struct {
		link, target string // target relative to the link, as users write them
		wantFile     string
	}{
		{"link.txt", "real.txt", real},
		{"sub/link.txt", "../real.txt", real},
		{"dangling.txt", "new.txt", filepath.Join(dir, "new.txt")},
		{"chain.txt", "link.txt", real},
	}
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	for _, tt := range tests {
		link := filepath.Join(dir, tt.link)
		if err := os.Symlink(tt.target, link); err != nil {
			t.Fatal(err)
		}
		writeOutput(t, link, "new "+tt.link)
		if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("-o %s: after the run the link is %v, %v, want a symlink still", tt.link, fi.Mode(), err)
		}
		if got, _ := os.ReadFile(tt.wantFile); string(got) != "new "+tt.link {
			t.Errorf("-o %s: %s = %q, want %q", tt.link, tt.wantFile, got, "new "+tt.link)
		}
	}
	// A replaced regular file keeps its permissions.
	if fi, _ := os.Stat(real); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode of %s = %v, want 0600", real, fi.Mode().Perm())
	}
	if ents, _ := filepath.Glob(filepath.Join(dir, ".*.tmp-*")); len(ents) != 0 {
		t.Errorf("temporaries left: %q", ents)
	}
}

func TestOutputSymlinkLoop(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.Symlink("b", a)
	os.Symlink("a", b)
	action := func(c *cli.Context) error {
		_, err := CreateOutput(c, c.String("output"))
		return err
	}
	if code, _, stderr := run(t, action, "-o", a); code != 1 {
		t.Errorf("-o through a symlink loop = %d %q, want 1", code, stderr)
	}
}

func TestOutputFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// A reader opened without blocking lets the tool's open for writing proceed, and never
	// hangs the test: a FIFO nobody writes to reads as empty.
	r, err := os.OpenFile(fifo, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	writeOutput(t, fifo, "https://x/status/1\n")
	if b, _ := io.ReadAll(r); string(b) != "https://x/status/1\n" {
		t.Errorf("read from the FIFO %q, want %q", b, "https://x/status/1\n")
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("after the run %s is %v, %v, want a FIFO still", fifo, fi.Mode(), err)
	}
}

func TestOutputDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mknod of a character device needs root; the FIFO test covers writing in place")
	}
	null := filepath.Join(t.TempDir(), "fakenull")
	if err := unix.Mknod(null, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Skipf("mknod %s: %v (no device nodes on this file system)", null, err)
	}
	writeOutput(t, null, "https://x/status/1\n")
	fi, err := os.Lstat(null)
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Errorf("after the run %s is %v, %v, want a character device still", null, fi.Mode(), err)
	}
}

// TestInputDevNull: /dev/null is a character device but not a terminal; as the stdin of cron
// jobs, systemd units and `ssh -n` it is an empty input.
func TestInputDevNull(t *testing.T) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	app := &cli.App{Name: "t", ArgsUsage: "[URL]", Action: func(c *cli.Context) error {
		in, err := Input(c, "")
		if err != nil {
			return err
		}
		_, err = FirstLine(in)
		return err
	}}
	var out, errb bytes.Buffer
	code := Run(context.Background(), app, []string{"t"}, null, &out, &errb)
	if want := "t: " + ErrNoInput.Error() + "\n"; code != ExitFailure || errb.String() != want {
		t.Errorf("t </dev/null = %d %q, want %d %q", code, errb.String(), ExitFailure, want)
	}
	if IsTerminal(null) {
		t.Errorf("IsTerminal(/dev/null) = true, want false")
	}
}

func TestIsTerminalPty(t *testing.T) {
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	defer ptm.Close()
	if !IsTerminal(ptm) {
		t.Errorf("IsTerminal(/dev/ptmx) = false, want true")
	}
	if IsTerminal(&bytes.Buffer{}) {
		t.Errorf("IsTerminal(a buffer) = true, want false")
	}
}

// NewStatus draws progress on a terminal, cut to its width, and not on a file.
func TestNewStatusPty(t *testing.T) {
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	defer ptm.Close()
	if err := unix.IoctlSetWinsize(int(ptm.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 20}); err != nil {
		t.Skipf("cannot size the pseudo-terminal: %v", err)
	}
	file, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	for _, tt := range []struct {
		name     string
		stderr   *os.File
		args     []string
		terminal bool
		width    int
	}{
		{"pty", ptm, []string{"t"}, true, 20},
		{"pty --quiet", ptm, []string{"t", "-q"}, false, 20},
		{"file", file, []string{"t"}, false, 0},
	} {
		var got *Status
		app := &cli.App{Name: "t", Flags: []cli.Flag{&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}}},
			Action: func(c *cli.Context) error { got = NewStatus(c); return nil }}
		if code := Run(t.Context(), app, tt.args, strings.NewReader(""), &bytes.Buffer{}, tt.stderr); code != ExitOK {
			t.Fatalf("%s: exit %d", tt.name, code)
		}
		if got.Terminal() != tt.terminal || got.width != tt.width {
			t.Errorf("%s: NewStatus: Terminal() = %v, width %d; want %v, %d", tt.name, got.Terminal(), got.width, tt.terminal, tt.width)
		}
	}
}
