// Package ndjson reads and writes newline-delimited JSON streams: one record a line, lines of any
// size up to a cap, line-numbered errors. It knows nothing of FHIR (STYLE.md §5).
package ndjson

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// DefaultMaxLine is the default cap on one line: 256 MiB. Single FHIR resources are rarely above a few
// MiB, but a DocumentReference with inlined PDFs can reach tens of MiB; the cap keeps a file with no
// newlines at all from eating memory (STYLE.md §5, `--max-line`).
const DefaultMaxLine = 256 << 20

// bufferSize is the read buffer. Lines that fit in it are returned without copying.
const bufferSize = 64 << 10

// ErrLineTooLong is wrapped by the error Scanner.Err returns when a line exceeds the cap.
var ErrLineTooLong = errors.New("line too long")

// bom is the UTF-8 byte order mark some Windows tools put at the start of a file (DESIGN.md §3).
var bom = []byte{0xEF, 0xBB, 0xBF}

// Scanner reads records from an NDJSON stream. Unlike bufio.Scanner it has no 64 KiB token limit:
// lines grow up to the cap given to NewScanner. It accepts what other exporters write (DESIGN.md §3):
// CRLF line ends, a UTF-8 BOM, blank or whitespace-only lines (skipped but counted, so line numbers
// match an editor's), and a last line without a newline. It does not validate JSON.
type Scanner struct {
	r       *bufio.Reader
	maxLine int
	long    []byte // holds lines longer than the read buffer; reused
	rec     []byte
	line    int
	eof     bool
	err     error
}

// NewScanner returns a Scanner reading r with lines capped at maxLine bytes (excluding the line end);
// maxLine ≤ 0 means DefaultMaxLine.
func NewScanner(r io.Reader, maxLine int) *Scanner {
	return newScanner(r, maxLine, bufferSize)
}

// newScanner lets tests use a tiny buffer to exercise the long-line path.
func newScanner(r io.Reader, maxLine, size int) *Scanner {
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	return &Scanner{r: bufio.NewReaderSize(r, size), maxLine: maxLine}
}

// Scan advances to the next non-blank line. It returns false at the end of the stream or on an error,
// which Err reports.
func (s *Scanner) Scan() bool {
	s.rec = nil
	for s.err == nil && !s.eof {
		raw, err := s.readLine()
		if err != nil {
			s.err = err
			return false
		}
		if raw == nil {
			return false
		}
		s.line++
		raw = Trim(raw, s.line)
		if len(raw) > s.maxLine {
			s.err = &lineError{line: s.line, limit: s.maxLine}
			return false
		}
		if Blank(raw) {
			continue
		}
		s.rec = raw
		return true
	}
	return false
}

// readLine returns the next physical line without its '\n', or nil at the end of the stream.
// A line that fits in the read buffer is a slice of it (no copy, no allocation).
func (s *Scanner) readLine() ([]byte, error) {
	frag, err := s.r.ReadSlice('\n')
	switch err {
	case nil:
		return frag[:len(frag)-1], nil
	case io.EOF:
		s.eof = true
		if len(frag) == 0 {
			return nil, nil
		}
		return frag, nil // last line without a newline
	case bufio.ErrBufferFull:
		return s.readLong(frag)
	}
	return nil, s.readError(err)
}

// readLong assembles a line longer than the read buffer into s.long, growing it only as far as the
// cap needs, and failing as soon as the line is certainly too long rather than buffering all of it.
func (s *Scanner) readLong(frag []byte) ([]byte, error) {
	// Slack for a BOM and a '\r' that Scan strips before checking the exact length.
	limit := MaxPhysical(s.maxLine)
	s.long = s.long[:0]
	for {
		s.long = s.grow(s.long, frag)
		if len(s.long) > limit {
			return nil, &lineError{line: s.line + 1, limit: s.maxLine}
		}
		var err error
		frag, err = s.r.ReadSlice('\n')
		switch err {
		case nil:
			s.long = s.grow(s.long, frag)
			if len(s.long)-1 > limit {
				return nil, &lineError{line: s.line + 1, limit: s.maxLine}
			}
			return s.long[:len(s.long)-1], nil
		case io.EOF:
			s.eof = true
			s.long = s.grow(s.long, frag)
			return s.long, nil
		case bufio.ErrBufferFull:
			continue
		}
		return nil, s.readError(err)
	}
}

// grow appends frag to b, doubling the capacity but never past what the cap can need, so a line
// just under a 256 MiB cap does not reserve 512 MiB.
func (s *Scanner) grow(b, frag []byte) []byte {
	if need := len(b) + len(frag); need > cap(b) {
		c := max(2*cap(b), need, 4*bufferSize)
		c = min(c, max(need, MaxPhysical(s.maxLine)+s.r.Size()))
		nb := make([]byte, len(b), c)
		copy(nb, b)
		b = nb
	}
	return append(b, frag...)
}

func (s *Scanner) readError(err error) error {
	return fmt.Errorf("line %d: %w", s.line+1, err)
}

// Bytes returns the current record without its line end. The slice is overwritten by the next Scan:
// copy it before keeping it.
func (s *Scanner) Bytes() []byte { return s.rec }

// Line returns the 1-based physical line number of the current record, counting blank lines, so
// errors can point an editor at it. After Scan returns false it is the last line read.
func (s *Scanner) Line() int { return s.line }

// Err returns the first error other than io.EOF, prefixed with "line N: ".
func (s *Scanner) Err() error { return s.err }

// lineError reports a line over the cap; it names the line and the cap so the user knows which
// --max-line to pass.
type lineError struct{ line, limit int }

func (e *lineError) Error() string {
	return fmt.Sprintf("line %d: longer than %d bytes", e.line, e.limit)
}

func (e *lineError) Unwrap() error { return ErrLineTooLong }
