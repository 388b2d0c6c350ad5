package tool

import (
	"strings"
	"testing"
)

// The cases of both size parsers this one replaced (attachment's and ndjson-merge's copy).
func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{"0", 0, ""}, {"11", 11, ""}, {"64MiB", 64 << 20, ""}, {"64M", 64 << 20, ""}, {"10MB", 10e6, ""},
		{"1.5k", 1536, ""}, {" 2 GiB ", 2 << 30, ""}, {"512b", 512, ""}, {"1tb", 1e12, ""},
		{"512MB", 512e6, ""}, {"1GB", 1e9, ""}, {"64KiB", 64 << 10, ""}, {"1GiB", 1 << 30, ""},
		{"64k", 64 << 10, ""}, {"1.5G", 3 << 29, ""}, {"100b", 100, ""}, {" 2 MiB ", 2 << 20, ""}, {"1T", 1 << 40, ""},
		{"", 0, "want a number"}, {"MB", 0, "want a number"}, {"10XB", 0, "want a number"}, {"1.2.3", 0, "want a number"},
		{"-5", 0, "want a number"}, {"-5M", 0, "want a number"}, {"1.2.3M", 0, "want a number"}, {"1e9", 0, "want a number"},
		{"12 mega", 0, "want a number"}, {"99999999999T", 0, "too large"},
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
	for _, s := range []string{"64MiB", "1.5k", "0", "10 MB", "9e9", ".", "1KiBB", "512MB", "1.5g", "", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := ParseSize(s); err == nil && n < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
	})
}
