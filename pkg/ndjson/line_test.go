package ndjson

import "testing"

func TestTrim(t *testing.T) {
	tests := []struct {
		raw  string
		n    int
		want string
	}{
		{"\xef\xbb\xbf{}\r", 1, "{}"},
		{"\xef\xbb\xbf{}", 2, "\xef\xbb\xbf{}"}, // a BOM is a mark of the file's start only
		{"{}\r\r", 3, "{}\r"},
		{"", 1, ""},
		{"\r", 5, ""},
	}
	for _, tt := range tests {
		if got := string(Trim([]byte(tt.raw), tt.n)); got != tt.want {
			t.Errorf("Trim(%q, %d) = %q, want %q", tt.raw, tt.n, got, tt.want)
		}
	}
	for in, want := range map[string]bool{"": true, " \t\r": true, " x": false, "\xa0": false} {
		if got := Blank([]byte(in)); got != want {
			t.Errorf("Blank(%q) = %v, want %v", in, got, want)
		}
	}
	if got := MaxPhysical(10); got != len("\xef\xbb\xbf")+10+len("\r") {
		t.Errorf("MaxPhysical(10) = %d, want 14", got)
	}
}
