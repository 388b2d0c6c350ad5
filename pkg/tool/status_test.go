package tool

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestStatusRule(t *testing.T) {
	say := func(s *Status) {
		s.Progress(false, "working")
		s.Note("page 1")
		s.Line("retrying")
		s.Warn("careful")
		s.Print("to resume: x")
		s.Summary("done")
		s.End()
	}
	tests := []struct {
		name            string
		terminal, quiet bool
		want            string
	}{
		{"terminal", true, false,
			"\rt: working\x1b[K\r\x1b[Kt: page 1\nt: retrying\nt: warning: careful\nt: to resume: x\nt: done\n"},
		{"not a terminal", false, false, "t: retrying\nt: warning: careful\nt: to resume: x\nt: done\n"},
		{"terminal, --quiet", true, true, "t: warning: careful\nt: to resume: x\n"},
		{"not a terminal, --quiet", false, true, "t: warning: careful\nt: to resume: x\n"},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		s := NewStatusTo("t", &b, tt.terminal, tt.quiet)
		say(s)
		if b.String() != tt.want {
			t.Errorf("%s: output = %q, want %q", tt.name, b.String(), tt.want)
		}
		if s.Terminal() != (tt.terminal && !tt.quiet) {
			t.Errorf("%s: Terminal() = %v", tt.name, s.Terminal())
		}
	}
}

// The progress line is redrawn at most every 200ms unless forced, and End clears it.
func TestStatusProgressPace(t *testing.T) {
	var b bytes.Buffer
	now := time.Unix(0, 0)
	s := NewStatusTo("t", &b, true, false)
	s.now = func() time.Time { return now }
	s.Progress(false, "1")
	now = now.Add(100 * time.Millisecond)
	s.Progress(false, "2") // too soon
	s.Progress(true, "3")  // forced
	now = now.Add(200 * time.Millisecond)
	s.Progress(false, "4")
	s.End()
	s.End() // nothing left to clear
	if want := "\rt: 1\x1b[K\rt: 3\x1b[K\rt: 4\x1b[K\r\x1b[K"; b.String() != want {
		t.Errorf("output = %q, want %q", b.String(), want)
	}
}

// A progress line wider than the terminal would wrap and leave a row behind at every redraw.
func TestStatusProgressWidth(t *testing.T) {
	tests := []struct {
		width int
		want  string
	}{
		{0, "t: " + strings.Repeat("é", 30)},
		{10, "t: éééééé"},
		{33, "t: " + strings.Repeat("é", 29)},
		{34, "t: " + strings.Repeat("é", 30)},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		s := NewStatusTo("t", &b, true, false)
		s.width = tt.width
		s.Progress(true, "%s", strings.Repeat("é", 30))
		if got, want := b.String(), "\r"+tt.want+"\x1b[K"; got != want {
			t.Errorf("Progress at width %d = %q, want %q", tt.width, got, want)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"},
		{12900000, "12.3 MiB"}, {5 << 30, "5.0 GiB"}, {3 << 40, "3.0 TiB"}, {1 << 62, "4.0 EiB"},
	}
	for _, tt := range tests {
		if got := FormatBytes(tt.n); got != tt.want {
			t.Errorf("FormatBytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestFormatRate(t *testing.T) {
	tests := []struct {
		n    int64
		d    time.Duration
		want string
	}{
		{0, time.Second, "0 B/s"}, {100, 0, "0 B/s"}, {10 << 20, 2 * time.Second, "5.0 MiB/s"}, {512, time.Second, "512 B/s"},
	}
	for _, tt := range tests {
		if got := FormatRate(tt.n, tt.d); got != tt.want {
			t.Errorf("FormatRate(%d, %v) = %q, want %q", tt.n, tt.d, got, tt.want)
		}
	}
}
