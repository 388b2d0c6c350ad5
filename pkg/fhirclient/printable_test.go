package fhirclient

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestPrintable(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"Group/nope is not known", "Group/nope is not known"},
		{"café – 50% … 日本", "café – 50% … 日本"},
		{`C:\path`, `C:\path`},
		{"\x1b]0;pwned\x07\x1b[2J", `\x1b]0;pwned\a\x1b[2J`},
		{"a\r\nb\tc", `a\r\nb\tc`},
		{"del\x7f", `del\x7f`},
		{"c1\u0085\u009b", `c1\u0085\u009b`},
		{"ls\u2028x\u2029", `ls\u2028x\u2029`},
		{"abc\u202edcba\u202c", `abc\u202edcba\u202c`},
		{"\u2066iso\u2069 \u200f", `\u2066iso\u2069 \u200f`},
		{"bad\xffutf8\xc3", `bad\xffutf8\xc3`},
		{"nul\x00", `nul\x00`},
	}
	for _, tt := range tests {
		if got := Printable(tt.in); got != tt.want {
			t.Errorf("Printable(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzPrintable(f *testing.F) {
	for _, s := range []string{"", "ok", "\x1b[2J", "\u202e", "\xff\xfe", "a\\x1b", "\u0085\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Printable(s)
		if !utf8.ValidString(got) {
			t.Fatalf("Printable(%q) = %q: invalid UTF-8", s, got)
		}
		for i, r := range got {
			if unprintable(r, utf8.RuneLen(r)) {
				t.Fatalf("Printable(%q) = %q: unprintable %U at %d", s, got, r, i)
			}
		}
		if again := Printable(got); again != got {
			t.Fatalf("Printable(Printable(%q)) = %q, want %q", s, again, got)
		}
		if !strings.ContainsFunc(s, func(r rune) bool { return unprintable(r, utf8.RuneLen(r)) }) && utf8.ValidString(s) && got != s {
			t.Fatalf("Printable(%q) = %q, want it unchanged", s, got)
		}
	})
}

func TestParseHTTPURL(t *testing.T) {
	tests := []struct{ in, err string }{
		{"https://ehr.example/fhir", ""},
		{"http://127.0.0.1:1/fhir/Group/all", ""},
		{"localhost:8080/fhir", `"localhost:8080/fhir": want an absolute http or https URL (did you mean https://localhost:8080/fhir?)`},
		{"ehr.example/fhir", `"ehr.example/fhir": want an absolute http or https URL (did you mean https://ehr.example/fhir?)`},
		{"/fhir/status/1", `"/fhir/status/1": want an absolute http or https URL`},
		{"ftp://x/fhir", `"ftp://x/fhir": want an absolute http or https URL`},
		{"https:///fhir", `"https:///fhir": want an absolute http or https URL`},
		{"http://[::1", `"http://[::1": want an absolute http or https URL`},
	}
	for _, tt := range tests {
		_, err := ParseHTTPURL(tt.in)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.err {
			t.Errorf("ParseHTTPURL(%q) error = %q, want %q", tt.in, got, tt.err)
		}
	}
}
