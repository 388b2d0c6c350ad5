package attachment

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

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
