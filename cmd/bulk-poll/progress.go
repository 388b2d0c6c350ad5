package main

import (
	"fmt"
	"io"
	"sync"
)

// statusLine renders progress on stderr: on a terminal one live line rewritten in place (a poll
// that lasts days should not scroll the terminal away), otherwise plain lines a log file can keep;
// nothing with --quiet. Warnings go through warn, which --quiet does not silence.
type statusLine struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	quiet bool
	live  bool // a live line is on screen, without its newline
}

const prefix = "bulk-poll: "

// line prints a plain line (after closing a live one), unless --quiet.
func (s *statusLine) line(format string, a ...any) {
	if s.quiet {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endLocked()
	fmt.Fprintf(s.w, prefix+format+"\n", a...)
}

// warn prints a warning line, even with --quiet.
func (s *statusLine) warn(format string, a ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endLocked()
	fmt.Fprintf(s.w, prefix+"warning: "+format+"\n", a...)
}

// progress shows text as the live line on a terminal, else as a plain line.
func (s *statusLine) progress(text string) {
	if s.quiet {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.tty {
		fmt.Fprintln(s.w, prefix+text)
		return
	}
	// \r returns to the start of the line, ESC[K clears what the previous, longer text left.
	fmt.Fprint(s.w, "\r"+prefix+text+"\x1b[K")
	s.live = true
}

// end closes the live line, so that what follows (the error tool.Run prints) starts on its own.
func (s *statusLine) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endLocked()
}

func (s *statusLine) endLocked() {
	if s.live {
		fmt.Fprintln(s.w)
		s.live = false
	}
}
