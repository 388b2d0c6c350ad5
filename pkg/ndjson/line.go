package ndjson

import "bytes"

// The line rules of DESIGN.md §3, in one place for every reader: the Scanner, which pulls lines
// from a reader, and bulk-fetch's verifier, which is pushed a download's bytes as they arrive.

// MaxPhysical is the most bytes a physical line may hold before its '\n' and still give a record
// of at most maxLine bytes: a BOM (line 1) and a '\r' are stripped before the record is measured.
// A reader that holds a partial line longer than this may fail at once, whatever follows.
func MaxPhysical(maxLine int) int { return maxLine + len(bom) + 1 }

// Trim returns the record of physical line n (1-based; raw without its '\n'): a UTF-8 BOM is
// dropped from line 1, a '\r' from the end of every line.
func Trim(raw []byte, n int) []byte {
	if n == 1 {
		raw = bytes.TrimPrefix(raw, bom)
	}
	if k := len(raw); k > 0 && raw[k-1] == '\r' {
		raw = raw[:k-1]
	}
	return raw
}

// Blank reports whether a record holds only JSON whitespace: such lines are skipped (and counted,
// so that line numbers match an editor's).
func Blank(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
		default:
			return false
		}
	}
	return true
}
