package fetch

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"

	"github.com/bulkpipe/bulkpipe/pkg/fhirjson"
	"github.com/bulkpipe/bulkpipe/pkg/ndjson"
)

// ErrVerify is wrapped by every verification failure: a line that is not JSON, a resourceType
// that is not the manifest's type, a line count that is not the manifest's count. Such a file is
// never renamed (DESIGN.md §3); its .part stays for inspection.
var ErrVerify = errors.New("verification failed")

// verifyError names the file, the line and what was expected, as an editor's "file:line: msg".
type verifyError struct {
	name     string
	line     int64 // 0 when the failure is about the whole file (a count)
	msg      string
	overflow bool // the body holds more than the manifest promised (errOverflow)
}

func (e *verifyError) Error() string {
	if e.line == 0 {
		return e.name + ": " + e.msg
	}
	return fmt.Sprintf("%s:%d: %s", e.name, e.line, e.msg)
}

func (e *verifyError) Unwrap() []error {
	if e.overflow {
		return []error{ErrVerify, errOverflow}
	}
	return []error{ErrVerify}
}

// errOverflow is wrapped by the verification failures that stop a body before its end because it
// holds more than the manifest promised (or more padding than any file has): a gzip bomb or an
// endless body. The .part of such a file is deleted, not kept: it is as large as the attack.
var errOverflow = errors.New("more than the manifest promised")

// maxBlank is the most whitespace-only lines (bytes, newlines included) a file may hold. Readers
// skip blank lines, so they would otherwise be the one thing a count does not bound: a body of
// endless newlines. Real files hold a few, if any.
const maxBlank = 1 << 20

// bigCarry is the capacity above which the partial-line buffer is dropped after use, so one huge
// resource does not pin its size in memory for the rest of the file.
const bigCarry = 1 << 20

// verifier checks an NDJSON stream as it is written, without holding more than the longest line:
// every non-blank line is valid JSON whose resourceType is want, and the number of lines equals
// the manifest's count when it gave one. A count is enforced as the lines arrive, so with the
// line cap and maxBlank it bounds the bytes a file can take, whatever the server streams (STYLE.md
// §17). It also computes the SHA-256 and the size of the bytes.
// It accepts what the ndjson package accepts (CRLF, a BOM on line 1, blank lines, a last line
// without a newline) but never changes a byte: the .part holds what the server sent.
type verifier struct {
	name     string // shown in errors: the .part path
	want     string // resourceType of every line
	count    int64
	hasCount bool
	maxLine  int

	sum   hash.Hash
	size  int64
	lines int64 // records (non-blank lines)
	phys  int64 // physical lines completed
	blank int64 // bytes of blank lines, newlines included
	// maxBlank is the most blank-line bytes accepted (the package's maxBlank; tests lower it).
	maxBlank int64
	carry    []byte
	err      error
}

func newVerifier(name, want string, count int64, hasCount bool, maxLine int) *verifier {
	if maxLine <= 0 {
		maxLine = ndjson.DefaultMaxLine
	}
	return &verifier{name: name, want: want, count: count, hasCount: hasCount, maxLine: maxLine, sum: sha256.New(), maxBlank: maxBlank}
}

// reset forgets everything seen, for a download that starts over.
func (v *verifier) reset() {
	v.sum.Reset()
	v.size, v.lines, v.phys, v.blank, v.err = 0, 0, 0, 0, nil
	v.carry = nil
}

// write feeds the next bytes of the file. After the first error every call returns it.
func (v *verifier) write(p []byte) error {
	if v.err != nil {
		return v.err
	}
	v.sum.Write(p)
	v.size += int64(len(p))
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(v.carry)+len(p) > ndjson.MaxPhysical(v.maxLine) {
				v.err = &verifyError{name: v.name, line: v.phys + 1, msg: fmt.Sprintf("line longer than %d bytes (raise --max-line)", v.maxLine)}
				return v.err
			}
			v.carry = append(v.carry, p...)
			return nil
		}
		line := p[:i]
		if len(v.carry) > 0 {
			v.carry = append(v.carry, line...)
			line = v.carry
		}
		if err := v.line(line); err != nil {
			v.err = err
			return err
		}
		if cap(v.carry) > bigCarry {
			v.carry = nil
		} else {
			v.carry = v.carry[:0]
		}
		p = p[i+1:]
	}
	return nil
}

// line checks one physical line (without its '\n').
func (v *verifier) line(b []byte) error {
	v.phys++
	b = ndjson.Trim(b, int(v.phys))
	if len(b) > v.maxLine {
		return &verifyError{name: v.name, line: v.phys, msg: fmt.Sprintf("line longer than %d bytes (raise --max-line)", v.maxLine)}
	}
	if ndjson.Blank(b) {
		if v.blank += int64(len(b)) + 1; v.blank > v.maxBlank {
			return &verifyError{name: v.name, line: v.phys, overflow: true,
				msg: fmt.Sprintf("more than %d bytes of blank lines: not an NDJSON file", v.maxBlank)}
		}
		return nil
	}
	v.lines++
	if v.hasCount && v.lines > v.count {
		// Stop at the first line too many, not at the end of a body that may never end.
		return &verifyError{name: v.name, line: v.phys, overflow: true,
			msg: fmt.Sprintf("more than %d resources (the manifest's count)", v.count)}
	}
	if !ndjson.Valid(b) {
		return &verifyError{name: v.name, line: v.phys, msg: "not valid JSON"}
	}
	if rt := fhirjson.ResourceType(b); rt != v.want {
		if rt == "" {
			return &verifyError{name: v.name, line: v.phys, msg: fmt.Sprintf("no resourceType, want %q", v.want)}
		}
		return &verifyError{name: v.name, line: v.phys, msg: fmt.Sprintf("resourceType %q, want %q", rt, v.want)}
	}
	return nil
}

// finish checks the last line (which may lack its newline) and the count.
func (v *verifier) finish() error {
	if v.err != nil {
		return v.err
	}
	if len(v.carry) > 0 {
		if err := v.line(v.carry); err != nil {
			v.err = err
			return err
		}
		v.carry = nil
	}
	if v.hasCount && v.lines != v.count {
		v.err = &verifyError{name: v.name, msg: fmt.Sprintf("%d resources, want %d (the manifest's count)", v.lines, v.count)}
		return v.err
	}
	return nil
}

// digest is the hex SHA-256 of every byte written.
func (v *verifier) digest() string { return hex.EncodeToString(v.sum.Sum(nil)) }
