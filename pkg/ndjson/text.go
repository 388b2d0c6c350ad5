package ndjson

import (
	"bytes"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// TextError says where a JSON line's text is not Unicode: invalid UTF-8, or a \u escape that is
// half of a UTF-16 surrogate pair. encoding/json and Valid accept both (json.Unmarshal quietly
// turns them into U+FFFD), but a store that keeps the text cannot: DuckDB reads invalid UTF-8 as
// NULL and refuses a lone surrogate in its JSON type.
type TextError struct {
	Offset int    // where in the line, from 0 (the message counts from 1)
	What   string // "invalid UTF-8" or `lone surrogate \ud800`
}

func (e *TextError) Error() string { return fmt.Sprintf("%s at byte %d", e.What, e.Offset+1) }

// CheckText returns a *TextError for the first invalid UTF-8 sequence or lone surrogate escape of
// line, which must be valid JSON (Valid), or nil. It costs one fast pass over the line plus a
// look at each backslash.
func CheckText(line []byte) error {
	if !utf8.Valid(line) {
		off := 0
		for off < len(line) {
			r, size := utf8.DecodeRune(line[off:])
			if r == utf8.RuneError && size == 1 {
				break
			}
			off += size
		}
		return &TextError{Offset: off, What: "invalid UTF-8"}
	}
	for i := 0; i < len(line); {
		j := bytes.IndexByte(line[i:], '\\')
		if j < 0 {
			return nil
		}
		i += j
		// In valid JSON every backslash opens an escape inside a string, so walking escapes from
		// the left never mistakes the u of `\\u` for one.
		if i+1 < len(line) && line[i+1] != 'u' {
			i += 2
			continue
		}
		_, n, lone := escapedRune(line[i:])
		if lone {
			return &TextError{Offset: i, What: fmt.Sprintf(`lone surrogate %s`, line[i:i+6])}
		}
		i += n
	}
	return nil
}

// FixText returns line with each invalid UTF-8 byte and each lone surrogate escape replaced by
// U+FFFD (as `\ufffd` for an escape), which is what json.Unmarshal makes of them, and the number
// of replacements. line must be valid JSON; when nothing needs replacing it is returned as is.
func FixText(line []byte) ([]byte, int) {
	if CheckText(line) == nil {
		return line, 0
	}
	out := make([]byte, 0, len(line)+16)
	n := 0
	for i := 0; i < len(line); {
		c := line[i]
		switch {
		case c == '\\' && i+1 < len(line) && line[i+1] == 'u':
			_, size, lone := escapedRune(line[i:])
			if lone {
				out = append(out, `\ufffd`...)
				n++
			} else {
				out = append(out, line[i:i+size]...)
			}
			i += size
		case c == '\\':
			out = append(out, line[i:min(i+2, len(line))]...)
			i += 2
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			r, size := utf8.DecodeRune(line[i:])
			if r == utf8.RuneError && size == 1 {
				out = utf8.AppendRune(out, utf8.RuneError)
				n++
			} else {
				out = append(out, line[i:i+size]...)
			}
			i += size
		}
	}
	return out, n
}

// escapedRune decodes the \uXXXX escape at the start of b, joining a surrogate pair `\uD83D\uDE00`
// into one rune. It returns the rune and the bytes it spans (12 for a pair, 6 for one escape, 2
// when b holds no complete escape); lone is set for half a pair, which decodes to nothing.
func escapedRune(b []byte) (r rune, size int, lone bool) {
	r1 := codeUnit(b)
	switch {
	case r1 < 0:
		return utf8.RuneError, 2, false
	case !utf16.IsSurrogate(r1):
		return r1, 6, false
	}
	if len(b) >= 12 {
		if dec := utf16.DecodeRune(r1, codeUnit(b[6:])); dec != utf8.RuneError {
			return dec, 12, false
		}
	}
	return utf8.RuneError, 6, true
}

// codeUnit returns the UTF-16 code unit of the \uXXXX escape at the start of b, or -1.
func codeUnit(b []byte) rune {
	if len(b) < 6 || b[0] != '\\' || b[1] != 'u' {
		return -1
	}
	var r rune
	for _, h := range b[2:6] {
		switch {
		case '0' <= h && h <= '9':
			r = r<<4 | rune(h-'0')
		case 'a' <= h && h <= 'f':
			r = r<<4 | rune(h-'a'+10)
		case 'A' <= h && h <= 'F':
			r = r<<4 | rune(h-'A'+10)
		default:
			return -1
		}
	}
	return r
}
