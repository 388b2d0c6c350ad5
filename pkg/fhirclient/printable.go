package fhirclient

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Printable returns server text made safe to print on a terminal: control characters (C0, DEL,
// C1: ESC sequences that retitle the window or clear the screen, CR that overwrites a line, BEL),
// the line and paragraph separators U+2028/9, and the bidirectional overrides and isolates that
// make text read differently from its bytes are written as Go escapes (\x1b, \r, \u202e), as is
// every byte of invalid UTF-8. Other text, including a backslash, is kept as it is, so ordinary
// messages read unchanged. The result never needs escaping again.
//
// Everything a server says (reason phrases, OperationOutcome text, body excerpts, X-Progress,
// URLs) passes through it where this package captures it, so no caller can forget.
func Printable(s string) string {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if unprintable(r, n) {
			return escapeFrom(s, i)
		}
		i += n
	}
	return s
}

// unprintable reports whether the rune r, n bytes long in its input, must be escaped.
func unprintable(r rune, n int) bool {
	switch {
	case r == utf8.RuneError && n == 1: // invalid UTF-8
		return true
	case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f: // C0, DEL, C1
		return true
	case r == 0x2028, r == 0x2029: // line and paragraph separators
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069: // bidi embeddings, overrides, isolates
		return true
	case r == 0x200e, r == 0x200f, r == 0x061c: // bidi marks
		return true
	}
	return false
}

func escapeFrom(s string, i int) string {
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case !unprintable(r, n):
			b.WriteString(s[i : i+n])
		case r == utf8.RuneError:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\a':
			b.WriteString(`\a`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\v':
			b.WriteString(`\v`)
		case r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += n
	}
	return b.String()
}
