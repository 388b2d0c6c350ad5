package fetch

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/bulkpipe/bulkpipe/pkg/ndjson"
)

// verifyAll feeds in to a fresh verifier step bytes at a time.
func verifyAll(in []byte, step, maxLine int) (*verifier, error) {
	v := newVerifier("f", "Patient", 0, false, maxLine)
	var err error
	for i := 0; i < len(in) && err == nil; i += step {
		err = v.write(in[i:min(i+step, len(in))])
	}
	if err == nil {
		err = v.finish()
	}
	return v, err
}

// A first line of a BOM, exactly --max-line bytes and CRLF is within the cap, however the bytes
// arrive (it passed in one write and failed byte by byte), as ndjson.Scanner has it.
func TestVerifierLineCapEdge(t *testing.T) {
	rec := `{"resourceType":"Patient","x":"` + strings.Repeat("a", 30) + `"}`
	maxLine := len(rec)
	for _, in := range []string{"\xef\xbb\xbf" + rec + "\r\n", "\xef\xbb\xbf" + rec + "\r\n" + rec + "\r\n", rec + "\r\n" + rec} {
		for _, step := range []int{len(in), 1, 2, 3} {
			if v, err := verifyAll([]byte(in), step, maxLine); err != nil || v.lines != int64(strings.Count(in, "Patient")) {
				t.Errorf("verify(%q, step %d, max-line %d) = %v", in, step, maxLine, err)
			}
		}
	}
	// One byte more is over the cap, at any step.
	in := []byte("\xef\xbb\xbf" + rec + "a\r\n")
	for _, step := range []int{len(in), 1, 2, 3} {
		if _, err := verifyAll(in, step, maxLine); err == nil || !strings.Contains(err.Error(), "f:1: line longer than") {
			t.Errorf("verify(%q, step %d, max-line %d) = %v, want line 1 too long", in, step, maxLine, err)
		}
	}
}

// FuzzVerifierScanner: the verifier, fed in writes of any size, draws lines where ndjson.Scanner
// does: the same records, and a line over the cap at the same line number.
func FuzzVerifierScanner(f *testing.F) {
	f.Add(true, true, []byte{30, 0, 31, 29}, uint8(40), uint8(1))
	f.Add(false, true, []byte{10, 255, 42}, uint8(41), uint8(3))
	f.Add(true, false, []byte{43, 44}, uint8(41), uint8(7))
	f.Fuzz(func(t *testing.T, withBOM, crlf bool, pads []byte, maxLine, step uint8) {
		// Records of fuzzed sizes (a pad of 255 is a whitespace-only line), then the last line
		// without its newline when pads is odd.
		var in bytes.Buffer
		if withBOM {
			in.WriteString("\xef\xbb\xbf")
		}
		for i, p := range pads {
			if p == 255 {
				in.WriteString("  \t")
			} else {
				in.WriteString(`{"resourceType":"Patient","x":"` + strings.Repeat("a", int(p)) + `"}`)
			}
			if i == len(pads)-1 && len(pads)%2 == 1 {
				break
			}
			if crlf {
				in.WriteString("\r")
			}
			in.WriteString("\n")
		}
		limit := int(maxLine) + 1
		sc := ndjson.NewScanner(bytes.NewReader(in.Bytes()), limit)
		records := int64(0)
		for sc.Scan() {
			records++
		}
		v, err := verifyAll(in.Bytes(), int(step%16)+1, limit)
		if scErr := sc.Err(); scErr != nil {
			if !errors.Is(scErr, ndjson.ErrLineTooLong) {
				t.Fatalf("Scanner: %v", scErr)
			}
			// Scanner says "line N: longer than …"; the verifier "f:N: line longer than …".
			n := strings.TrimPrefix(strings.Split(scErr.Error(), ":")[0], "line ")
			if err == nil || !strings.HasPrefix(err.Error(), "f:"+n+": line longer than") {
				t.Fatalf("Scanner: %v; verifier: %v (input %q, max-line %d)", scErr, err, in.Bytes(), limit)
			}
			return
		}
		if err != nil || v.lines != records {
			t.Fatalf("Scanner: %d records; verifier: %d, %v (input %q, max-line %d)", records, v.lines, err, in.Bytes(), limit)
		}
	})
}
