package bulk

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestNormalizeTime(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"2024", "2024-01-01T00:00:00Z"},
		{"2024-03", "2024-03-01T00:00:00Z"},
		{"2024-03-05", "2024-03-05T00:00:00Z"},
		{" 2024-03-05 ", "2024-03-05T00:00:00Z"},
		{"2024-03-05T10:20Z", "2024-03-05T10:20:00Z"},
		{"2024-03-05T10:20:30Z", "2024-03-05T10:20:30Z"},
		{"2024-03-05t10:20:30z", "2024-03-05T10:20:30Z"},
		{"2024-03-05T10:20:30.5Z", "2024-03-05T10:20:30.5Z"},
		{"2024-03-05T10:20:30.123456789Z", "2024-03-05T10:20:30.123456789Z"},
		{"2024-03-05T10:20:30.1234567891Z", "2024-03-05T10:20:30.123456789Z"},
		{"2024-03-05T10:20:30.000Z", "2024-03-05T10:20:30Z"},
		{"2024-03-05T10:20:30+02:00", "2024-03-05T08:20:30Z"},
		{"2024-03-05T10:20:30-0530", "2024-03-05T15:50:30Z"},
		{"2024-01-01T00:30:00+01:00", "2023-12-31T23:30:00Z"},
		{"2024-02-29", "2024-02-29T00:00:00Z"},
	}
	for _, tt := range tests {
		got, err := NormalizeTime(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("NormalizeTime(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "yesterday", "24", "2024-1-5", "2024-13", "2023-02-29", "2024-04-31",
		"2024-03-05T24:00:00Z", "2024-03-05T10:60", "2024-03-05T10:20:61Z", "2024-03-05T10:20:30+15:00",
		"2024-03-05T10:20:30+01:75", "2024-03-05 10:20:30", "1709634030", "2024-03-05T10", "2024-03-05T10:20:30.Z",
		"2024-01-01T10:00", "2024-03-05T10:20:30", "2024-03-05T10:20:30.5"} {
		if got, err := NormalizeTime(bad); err == nil {
			t.Errorf("NormalizeTime(%q) = %q, nil, want an error", bad, got)
		}
	}
}

func FuzzNormalizeTime(f *testing.F) {
	for _, s := range []string{"2024", "2024-03-05T10:20:30.5+02:00", "2024-02-30", "x", "2024-03-05T10:20", "2024-03-05T10:20Z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := NormalizeTime(s)
		if err != nil {
			return
		}
		if _, err := time.Parse(time.RFC3339Nano, got); err != nil {
			t.Fatalf("NormalizeTime(%q) = %q, not RFC 3339: %v", s, got, err)
		}
		if again, err := NormalizeTime(got); err != nil || again != got {
			t.Fatalf("NormalizeTime(%q) = %q, %v; not idempotent on %q", got, again, err, s)
		}
	})
}

// The wire form of DESIGN.md §2, pinned.
func TestEscapeTypeFilterWire(t *testing.T) {
	in := "Observation?category=laboratory,vital-signs"
	if got, want := EscapeTypeFilter(in), "Observation?category=laboratory%2Cvital-signs"; got != want {
		t.Errorf("EscapeTypeFilter(%q) = %q, want %q", in, got, want)
	}
	pk, err := KickoffRequest{URL: "https://x/fhir", TypeFilters: []string{in}}.Prepare()
	if err != nil {
		t.Fatal(err)
	}
	if want := "https://x/fhir/$export?_typeFilter=Observation%3Fcategory%3Dlaboratory%252Cvital-signs"; pk.URL != want {
		t.Errorf("kickoff URL = %s, want %s", pk.URL, want)
	}
	// What the server sees: one filter, whose own query still says "laboratory or vital-signs".
	u, _ := url.Parse(pk.URL)
	filters := strings.Split(u.Query().Get("_typeFilter"), ",")
	if len(filters) != 1 {
		t.Fatalf("server splits _typeFilter into %q, want one filter", filters)
	}
	_, q, _ := strings.Cut(filters[0], "?")
	inner, err := url.ParseQuery(q)
	if err != nil || inner.Get("category") != "laboratory,vital-signs" {
		t.Errorf("server reads category = %q (%v), want laboratory,vital-signs", inner.Get("category"), err)
	}
}

func FuzzEscapeTypeFilter(f *testing.F) {
	for _, s := range []string{"Observation?category=laboratory,vital-signs", "Condition", "a%2Cb,c", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := EscapeTypeFilter(s)
		if strings.Contains(got, ",") {
			t.Fatalf("EscapeTypeFilter(%q) = %q, still has a comma", s, got)
		}
		if strings.Count(got, "%2C")-strings.Count(s, "%2C") != strings.Count(s, ",") {
			t.Fatalf("EscapeTypeFilter(%q) = %q, escaped the wrong number of commas", s, got)
		}
	})
}

func TestSplitList(t *testing.T) {
	tests := []struct {
		in   []string
		want []string
	}{
		{nil, nil},
		{[]string{"Patient"}, []string{"Patient"}},
		{[]string{"Patient,Condition", "Observation"}, []string{"Patient", "Condition", "Observation"}},
		{[]string{" Patient , ,Condition,", "Patient"}, []string{"Patient", "Condition"}},
		{[]string{""}, nil},
	}
	for _, tt := range tests {
		if got := SplitList(tt.in...); !cmp.Equal(got, tt.want) {
			t.Errorf("SplitList(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestPatientReference(t *testing.T) {
	for in, want := range map[string]string{"123": "Patient/123", "Patient/9": "Patient/9", " 7 ": "Patient/7"} {
		if got := PatientReference(in); got != want {
			t.Errorf("PatientReference(%q) = %q, want %q", in, got, want)
		}
	}
}
