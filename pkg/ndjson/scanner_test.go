package ndjson

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
)

type rec struct {
	Line int
	Text string
}

func scanAll(s *Scanner) ([]rec, error) {
	var got []rec
	for s.Scan() {
		got = append(got, rec{s.Line(), string(s.Bytes())})
	}
	return got, s.Err()
}

func TestScanner(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []rec
	}{
		{"empty", "", nil},
		{"one line", "{}\n", []rec{{1, "{}"}}},
		{"no final newline", "{\"a\":1}\n{\"b\":2}", []rec{{1, `{"a":1}`}, {2, `{"b":2}`}}},
		{"crlf", "{}\r\n[]\r\n", []rec{{1, "{}"}, {2, "[]"}}},
		{"crlf no final newline", "{}\r\n[]\r", []rec{{1, "{}"}, {2, "[]"}}},
		{"blank lines counted", "\n{}\n\n  \t\n[]\n\n", []rec{{2, "{}"}, {5, "[]"}}},
		{"whitespace-only crlf", "{}\r\n \r\n\r\n1", []rec{{1, "{}"}, {4, "1"}}},
		{"bom", "\xEF\xBB\xBF{}\n[]\n", []rec{{1, "{}"}, {2, "[]"}}},
		{"bom alone on line 1", "\xEF\xBB\xBF\n{}\n", []rec{{2, "{}"}}},
		{"bom only at start", "{}\n\xEF\xBB\xBF[]\n", []rec{{1, "{}"}, {2, "\xEF\xBB\xBF[]"}}},
		{"only blanks", "\n\n \n", nil},
		{"inner whitespace kept", " {} \n", []rec{{1, " {} "}}},
		{"single cr kept inside", "a\rb\n", []rec{{1, "a\rb"}}},
	}
	for _, tt := range tests {
		for _, size := range []int{16, bufferSize} {
			got, err := scanAll(newScanner(strings.NewReader(tt.in), 0, size))
			if err != nil {
				t.Errorf("%s (buffer %d): Err() = %v, want nil", tt.name, size, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("%s (buffer %d): Scan(%q) mismatch (-want +got):\n%s", tt.name, size, tt.in, diff)
			}
		}
	}
}

func TestScannerLongLines(t *testing.T) {
	long := strings.Repeat("x", 1000)
	in := "{}\n" + long + "\r\n\n" + long + "y"
	for _, r := range []io.Reader{strings.NewReader(in), iotest.OneByteReader(strings.NewReader(in)), iotest.HalfReader(strings.NewReader(in))} {
		got, err := scanAll(newScanner(r, 1001, 16))
		if err != nil {
			t.Fatalf("Err() = %v, want nil", err)
		}
		want := []rec{{1, "{}"}, {2, long}, {4, long + "y"}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("long lines mismatch (-want +got):\n%s", diff)
		}
	}
}

func TestScannerTooLong(t *testing.T) {
	tests := []struct {
		in      string
		max     int
		wantErr string
		want    []rec
	}{
		{"{}\n12345\n", 5, "", []rec{{1, "{}"}, {2, "12345"}}},
		{"{}\n12345\r\n", 5, "", []rec{{1, "{}"}, {2, "12345"}}},
		{"\xEF\xBB\xBF12345\n", 5, "", []rec{{1, "12345"}}},
		{"{}\n123456\n", 5, "line 2: longer than 5 bytes", []rec{{1, "{}"}}},
		{"{}\n\n123456", 5, "line 3: longer than 5 bytes", []rec{{1, "{}"}}},
		{"{}\n" + strings.Repeat("a", 100) + "\n{}\n", 50, "line 2: longer than 50 bytes", []rec{{1, "{}"}}},
		{strings.Repeat(" ", 100) + "\n{}\n", 50, "line 1: longer than 50 bytes", nil},
		{strings.Repeat("a", 100), 50, "line 1: longer than 50 bytes", nil},
	}
	for _, tt := range tests {
		for _, size := range []int{16, bufferSize} {
			got, err := scanAll(newScanner(strings.NewReader(tt.in), tt.max, size))
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("Scan(%.20q, max %d) error = %v, want nil", tt.in, tt.max, err)
				}
			} else if err == nil || err.Error() != tt.wantErr || !errors.Is(err, ErrLineTooLong) {
				t.Errorf("Scan(%.20q, max %d, buffer %d) error = %v, want %q wrapping ErrLineTooLong", tt.in, tt.max, size, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Scan(%.20q, max %d, buffer %d) mismatch (-want +got):\n%s", tt.in, tt.max, size, diff)
			}
		}
	}
}

func TestScannerReadError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("{}\n[]\n{\"trunc"), iotest.ErrReader(boom))
	got, err := scanAll(NewScanner(r, 0))
	if want := []rec{{1, "{}"}, {2, "[]"}}; !cmp.Equal(want, got) {
		t.Errorf("records before error = %v, want %v", got, want)
	}
	if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "line 3: ") {
		t.Errorf("Err() = %v, want line 3: boom", err)
	}
	// Scan keeps returning false after an error.
	s := NewScanner(iotest.ErrReader(boom), 0)
	if first, second := s.Scan(), s.Scan(); first || second {
		t.Errorf("Scan(), Scan() on a failing reader = %v, %v, want false, false", first, second)
	}
}

// TestScannerNoAlloc pins the "no allocation per line" promise for lines that fit the buffer.
func TestScannerNoAlloc(t *testing.T) {
	data := bytes.Repeat([]byte(`{"resourceType":"Patient","id":"1"}`+"\n"), 1000)
	r := bytes.NewReader(data)
	s := NewScanner(r, 0)
	allocs := testing.AllocsPerRun(10, func() {
		r.Reset(data)
		s.r.Reset(r)
		s.eof, s.line = false, 0
		for s.Scan() {
		}
	})
	if allocs > 0 {
		t.Errorf("allocations per 1000 lines = %v, want 0", allocs)
	}
}

func TestWriter(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, r := range []string{`{"a":1}`, "{}\n", "[]\r\n"} {
		if err := w.WriteRecord([]byte(r)); err != nil {
			t.Fatalf("WriteRecord(%q) = %v", r, err)
		}
	}
	if err := w.WriteRecord([]byte("{\n}")); err == nil {
		t.Errorf("WriteRecord with inner newline = nil, want error")
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, want := buf.String(), "{\"a\":1}\n{}\n[]\n"; got != want {
		t.Errorf("written = %q, want %q", got, want)
	}
	if got := w.count; got != 3 {
		t.Errorf("records counted = %d, want 3", got)
	}
}

// reference is the obvious, slow splitter the fuzz test compares against.
func reference(data []byte, maxLine int) ([]rec, error) {
	var out []rec
	lines := bytes.Split(data, []byte("\n"))
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	for i, l := range lines {
		if i == 0 {
			l = bytes.TrimPrefix(l, bom)
		}
		l = bytes.TrimSuffix(l, []byte("\r"))
		if len(l) > maxLine {
			return out, fmt.Errorf("line %d: longer than %d bytes", i+1, maxLine)
		}
		if len(bytes.Trim(l, " \t\r\n")) == 0 {
			continue
		}
		out = append(out, rec{i + 1, string(l)})
	}
	return out, nil
}

func FuzzScanner(f *testing.F) {
	f.Add([]byte("{}\n[]\n"), 8)
	f.Add([]byte("\xEF\xBB\xBF{}\r\n\r\n  \n{\"a\":1}"), 8)
	f.Add([]byte(strings.Repeat("x", 70)+"\n\n"+strings.Repeat("y", 20)), 64)
	f.Add([]byte("\r\r\n\r"), 1)
	f.Fuzz(func(t *testing.T, data []byte, maxLine int) {
		maxLine = 1 + abs(maxLine)%128
		want, wantErr := reference(data, maxLine)
		got, err := scanAll(newScanner(bytes.NewReader(data), maxLine, 16))
		if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
			t.Fatalf("Scan(%q, %d) error = %v, want %v", data, maxLine, err, wantErr)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("Scan(%q, %d) mismatch (-want +got):\n%s", data, maxLine, diff)
		}
	})
}

func abs(n int) int {
	if n < 0 {
		if n == -n { // math.MinInt
			return 0
		}
		return -n
	}
	return n
}

// BenchmarkScanner reports throughput on typical FHIR-sized lines; compare with BenchmarkCopy, the
// cost of only moving the same bytes through a buffer.
func BenchmarkScanner(b *testing.B) {
	data := benchData()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		s := NewScanner(bytes.NewReader(data), 0)
		n := 0
		for s.Scan() {
			n += len(s.Bytes())
		}
		if s.Err() != nil || n == 0 {
			b.Fatal(s.Err())
		}
	}
}

// BenchmarkCopy is the io.Copy baseline: the same bytes through a 32 KiB buffer with no line splitting.
func BenchmarkCopy(b *testing.B) {
	data := benchData()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		// Hide WriterTo/ReaderFrom so io.Copy really moves the bytes through its buffer.
		if _, err := io.Copy(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{bytes.NewReader(data)}); err != nil {
			b.Fatal(err)
		}
	}
}

func benchData() []byte {
	var buf bytes.Buffer
	for i := 0; buf.Len() < 16<<20; i++ {
		// Lines from ~200 bytes to ~200 KiB, like Observations next to notes with inlined text.
		n := 100 + (i*7919)%2000
		if i%97 == 0 {
			n = 200 << 10
		}
		fmt.Fprintf(&buf, `{"resourceType":"Observation","id":"%d","note":"%s"}`+"\n", i, strings.Repeat("a", n))
	}
	return buf.Bytes()
}
