package attachment

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{"0", 0, ""}, {"11", 11, ""}, {"64MiB", 64 << 20, ""}, {"64M", 64 << 20, ""}, {"10MB", 10e6, ""},
		{"1.5k", 1536, ""}, {" 2 GiB ", 2 << 30, ""}, {"512b", 512, ""}, {"1tb", 1e12, ""},
		{"", 0, "want a number"}, {"MB", 0, "want a number"}, {"10XB", 0, "want a number"}, {"1.2.3", 0, "want a number"},
		{"-5", 0, "want a number"}, {"99999999999T", 0, "too large"},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseSize(%q) = %d, %v, want an error containing %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if got != tt.want || err != nil {
			t.Errorf("ParseSize(%q) = %d, %v, want %d", tt.in, got, err, tt.want)
		}
	}
}

// FuzzParseSize: any input gives a size ≥ 0 or an error, never a panic.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"64MiB", "1.5k", "0", "10 MB", "9e9", ".", "1KiBB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := ParseSize(s); err == nil && n < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
	})
}

func TestSplitList(t *testing.T) {
	tests := []struct {
		in   []string
		want []string
	}{
		{nil, nil},
		{[]string{""}, nil},
		{[]string{"text/plain,text/html", " application/pdf "}, []string{"text/plain", "text/html", "application/pdf"}},
		{[]string{"DocumentReference,,"}, []string{"DocumentReference"}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, SplitList(tt.in)); diff != "" {
			t.Errorf("SplitList(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestMediaType(t *testing.T) {
	tests := []struct{ in, mt, charset string }{
		{"text/plain", "text/plain", ""},
		{"Text/HTML; Charset=ISO-8859-1", "text/html", "ISO-8859-1"},
		{`text/plain; charset="utf-8"`, "text/plain", "utf-8"},
		{"text/plain; charset=latin1; ;=", "text/plain", "latin1"},
		{"text/plain;", "text/plain", ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		if mt, cs := mediaType(tt.in); mt != tt.mt || cs != tt.charset {
			t.Errorf("mediaType(%q) = %q, %q, want %q, %q", tt.in, mt, cs, tt.mt, tt.charset)
		}
	}
}
