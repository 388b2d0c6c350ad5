package tool

import (
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// Status is every tool's voice on stderr, so that all of them follow one rule:
//
//   - Progress: one line redrawn in place, on a terminal only, never with --quiet;
//   - Note: a plain line on a terminal only (progress that scrolls: a manifest page arrived);
//   - Line: a plain diagnostic line (a retry, the request sent), on or off a terminal, not with --quiet;
//   - Warn: "warning: …", always, also with --quiet;
//   - Print: a line that must never be lost (how to resume a started export), always;
//   - Summary: the tool's last line, on or off a terminal, not with --quiet.
//
// Every line starts with the tool's name. Status is safe for concurrent use.
type Status struct {
	mu    sync.Mutex
	name  string
	w     io.Writer
	tty   bool
	quiet bool
	width int  // the terminal's columns (0: unknown)
	live  bool // a progress line is on screen, without its newline
	last  time.Time
	now   func() time.Time
}

// progressEvery is the shortest time between two redraws of the progress line: faster is
// flicker, and costs a write per record on a fast load.
const progressEvery = 200 * time.Millisecond

// NewStatus is the Status of the running tool: its name, --quiet (when the tool has that flag),
// and whether stderr is a terminal.
func NewStatus(c *cli.Context) *Status {
	s := NewStatusTo(c.App.Name, c.App.ErrWriter, IsTerminal(c.App.ErrWriter), quiet(c))
	if s.tty {
		s.width = termWidth(c.App.ErrWriter)
	}
	return s
}

// NewStatusTo is a Status writing to w, for tests and for tools that decide themselves whether
// w is a terminal.
func NewStatusTo(name string, w io.Writer, terminal, quiet bool) *Status {
	return &Status{name: name, w: w, tty: terminal, quiet: quiet, now: time.Now}
}

// Terminal reports whether progress is drawn: stderr is a terminal and --quiet was not given.
func (s *Status) Terminal() bool { return s.tty && !s.quiet }

// Quiet reports whether --quiet was given.
func (s *Status) Quiet() bool { return s.quiet }

// SetWriter sends what follows to w, e.g. progress bars that print lines above themselves,
// and returns the writer used until then.
func (s *Status) SetWriter(w io.Writer) io.Writer {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endLocked()
	old := s.w
	s.w = w
	return old
}

// Progress redraws the progress line, at most a few times a second (Progress with force set
// always redraws: the last state before a pause). Nothing is drawn off a terminal or with --quiet.
func (s *Status) Progress(force bool, format string, a ...any) {
	if !s.Terminal() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if !force && s.live && now.Sub(s.last) < progressEvery {
		return
	}
	s.last, s.live = now, true
	line := s.name + ": " + fmt.Sprintf(format, a...)
	// A line wider than the terminal wraps, and \r then returns only to the start of its last
	// row: every redraw would leave a row behind.
	if r := []rune(line); s.width > 1 && len(r) >= s.width {
		line = string(r[:s.width-1])
	}
	// \r returns to the start of the line; ESC[K clears what a longer previous line left.
	fmt.Fprintf(s.w, "\r%s\x1b[K", line)
}

// Note prints a plain line on a terminal only.
func (s *Status) Note(format string, a ...any) {
	if s.Terminal() {
		s.print("", format, a...)
	}
}

// Line prints a plain line unless --quiet.
func (s *Status) Line(format string, a ...any) {
	if !s.quiet {
		s.print("", format, a...)
	}
}

// Warn prints "warning: …", also with --quiet.
func (s *Status) Warn(format string, a ...any) { s.print("warning: ", format, a...) }

// Print prints a line also with --quiet: for what must never be lost.
func (s *Status) Print(format string, a ...any) { s.print("", format, a...) }

// Summary prints the tool's closing line unless --quiet, on or off a terminal.
func (s *Status) Summary(format string, a ...any) {
	if !s.quiet {
		s.print("", format, a...)
	}
}

// End clears the progress line, so that what follows (the error tool.Run prints) starts on a
// line of its own.
func (s *Status) End() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endLocked()
}

func (s *Status) print(prefix, format string, a ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endLocked()
	fmt.Fprintf(s.w, "%s: %s%s\n", s.name, prefix, fmt.Sprintf(format, a...))
}

func (s *Status) endLocked() {
	if s.live {
		fmt.Fprint(s.w, "\r\x1b[K")
		s.live = false
	}
}

// termWidth is the width of the terminal that stream is, or 0.
func termWidth(stream any) int {
	sc, ok := stream.(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	w := 0
	rc.Control(func(fd uintptr) {
		if cols, _, err := term.GetSize(int(fd)); err == nil {
			w = cols
		}
	})
	return w
}

// FormatBytes prints n bytes in binary units, as every tool shows sizes: "512 B", "1.5 KiB",
// "12.3 MiB", "2.0 GiB".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// FormatRate prints the rate of n bytes in d, as "3.4 MiB/s"; "0 B/s" when d is not positive.
func FormatRate(n int64, d time.Duration) string {
	if d <= 0 || n <= 0 {
		return "0 B/s"
	}
	return FormatBytes(int64(float64(n)/d.Seconds())) + "/s"
}
