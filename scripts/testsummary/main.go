// Command testsummary prints what plain `go test` prints — the output of failing tests and each
// package's closing "ok" or "FAIL" line — from the JSON stream of `go test -json`, then lists the
// tests that were skipped, with their reasons, so that a test skipped for a missing tool does not
// go unnoticed. `make test` runs it.
//
//	testsummary go test -json -race ./...    run the command; exit with its status
//	go test -json ./... | testsummary         read the stream on stdin; exit 1 if anything failed
//
// With a command, the exit status is the command's, or 1 when it exited 0 but the stream reports
// a failure. Lines that are not test events pass through unchanged.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
)

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	s := newSummary(stdout)
	if len(args) == 0 {
		if err := s.read(stdin); err != nil {
			fmt.Fprintf(stderr, "testsummary: %v\n", err)
			return 1
		}
		s.finish()
		if s.failed {
			return 1
		}
		return 0
	}
	if args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stdout, "usage: testsummary [go test -json ARGS...]   (or: go test -json ... | testsummary)")
		return 0
	}
	// The terminal sends ^C to the whole process group: go test stops its tests and reports
	// them, and this process keeps reading until it has, instead of dying first. Catching (not
	// ignoring) the signals keeps the child's default handling, which an ignored signal would not.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)

	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stderr = stdin, stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintf(stderr, "testsummary: %v\n", err)
		return 1
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "testsummary: %v\n", err)
		return 1
	}
	rerr := s.read(out)
	if rerr != nil {
		_, _ = io.Copy(io.Discard, out) // let the command finish rather than block on a full pipe
	}
	werr := cmd.Wait()
	s.finish()
	if rerr != nil {
		fmt.Fprintf(stderr, "testsummary: %v\n", rerr)
	}
	if ee, ok := errors.AsType[*exec.ExitError](werr); ok {
		if code := ee.ExitCode(); code > 0 {
			return code
		}
		return 130 // killed by a signal
	}
	if werr != nil {
		fmt.Fprintf(stderr, "testsummary: %v\n", werr)
		return 1
	}
	if s.failed || rerr != nil {
		return 1
	}
	return 0
}

// event is one line of `go test -json` (cmd/test2json), build events included.
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// testKey names a test across packages.
type testKey struct{ pkg, test string }

// skip is a skipped test and why.
type skip struct {
	testKey
	reason string
}

// maxLines bounds the output kept per running test: a chatty test that fails shows its last
// lines, as much as anyone reads.
const maxLines = 2000

// maxLine is the longest line parsed as an event; a longer one passes through unparsed.
const maxLine = 1 << 20

// summary turns the event stream into plain go test output plus the list of skips.
type summary struct {
	w       io.Writer
	running map[testKey]*buffer // output of tests still running, shown only if they fail
	order   []testKey           // running tests in start order, for a package that dies mid-test
	skips   []skip
	failed  bool
}

type buffer struct {
	lines   []string
	dropped int
}

func (b *buffer) add(s string) {
	if len(b.lines) == maxLines {
		b.lines = b.lines[1:]
		b.dropped++
	}
	b.lines = append(b.lines, s)
}

func newSummary(w io.Writer) *summary {
	return &summary{w: w, running: map[testKey]*buffer{}}
}

// read handles each line of r until EOF.
func (s *summary) read(r io.Reader) error {
	br := bufio.NewReaderSize(r, maxLine)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// Not an event this program needs to understand: pass the whole line through.
			s.write(string(line))
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				s.write(string(line))
			}
		} else if len(line) > 0 {
			s.line(line)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (s *summary) write(text string) {
	_, _ = io.WriteString(s.w, text)
}

// line handles one line of the stream.
func (s *summary) line(raw []byte) {
	var e event
	if !strings.HasPrefix(string(raw), "{") || json.Unmarshal(raw, &e) != nil || e.Action == "" {
		s.write(string(raw))
		if raw[len(raw)-1] != '\n' {
			s.write("\n")
		}
		return
	}
	switch e.Action {
	case "build-output":
		s.write(e.Output)
		return
	case "build-fail":
		s.failed = true
		return
	}
	if e.Test == "" {
		switch e.Action {
		case "output":
			// Plain go test prints a package's PASS line only in verbose mode.
			if e.Output != "PASS\n" {
				s.write(e.Output)
			}
		case "fail":
			s.failed = true
			s.flushPackage(e.Package)
		}
		return
	}
	k := testKey{e.Package, e.Test}
	switch e.Action {
	case "run":
		if s.running[k] == nil {
			s.running[k] = &buffer{}
			s.order = append(s.order, k)
		}
	case "output":
		b := s.running[k]
		if b == nil {
			b = &buffer{}
			s.running[k] = b
			s.order = append(s.order, k)
		}
		b.add(e.Output)
	case "fail":
		s.failed = true
		s.show(k)
	case "pass":
		s.done(k)
	case "skip":
		s.skips = append(s.skips, skip{k, reason(s.running[k])})
		s.done(k)
	}
}

// show prints a finished test's output, as plain go test does for a failed one.
func (s *summary) show(k testKey) {
	if b := s.running[k]; b != nil {
		if b.dropped > 0 {
			s.write(fmt.Sprintf("    (%d earlier lines of %s not shown)\n", b.dropped, k.test))
		}
		for _, l := range b.lines {
			// Plain go test does not print the === RUN/PAUSE/CONT/NAME framing of -json's
			// verbose mode.
			if !strings.HasPrefix(l, "=== ") {
				s.write(l)
			}
		}
	}
	s.done(k)
}

func (s *summary) done(k testKey) {
	delete(s.running, k)
	for i, o := range s.order {
		if o == k {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
}

// flushPackage shows the output of a failed package's tests that never finished (a panic, a
// timeout): what they printed is the clue.
func (s *summary) flushPackage(pkg string) {
	var left []testKey
	for _, k := range s.order {
		if k.pkg == pkg {
			left = append(left, k)
		}
	}
	for _, k := range left {
		s.show(k)
	}
}

// reason is what a skipped test printed, without the === and --- framing: its t.Skip message.
func reason(b *buffer) string {
	if b == nil {
		return "(no reason given)"
	}
	var parts []string
	for _, l := range b.lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- ") {
			continue
		}
		parts = append(parts, t)
	}
	r := strings.Join(parts, " ")
	if r == "" {
		return "(no reason given)"
	}
	const limit = 300
	if len(r) > limit {
		r = strings.ToValidUTF8(r[:limit], "") + "…"
	}
	return r
}

// finish shows what is left of tests that never finished and lists the skipped tests last.
func (s *summary) finish() {
	for len(s.order) > 0 {
		s.show(s.order[0])
	}
	if len(s.skips) == 0 {
		return
	}
	s.write(fmt.Sprintf("\nskipped tests (%d):\n", len(s.skips)))
	for _, sk := range s.skips {
		s.write(fmt.Sprintf("  %s %s: %s\n", sk.pkg, sk.test, sk.reason))
	}
}
