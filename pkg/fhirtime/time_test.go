package fhirtime

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time
	}{
		{"2024", time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"2024-05", time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)},
		{"2024-05-01", time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)},
		{" 2024-05-01 ", time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)},
		{"2024-02-29", time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)},
		{"2024-05-01T12:00Z", time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)},
		{"2024-05-01T12:00:00Z", time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)},
		{"2024-05-01t12:00:00z", time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)},
		{"2024-05-01 12:00:00+00:00", time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)},
		{"2024-05-01T14:00:00+02:00", time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)},
		{"2024-05-01T06:30:00-0530", time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)},
		{"2024-05-01T12:00:00.5Z", time.Date(2024, 5, 1, 12, 0, 0, 5e8, time.UTC)},
		{"2024-05-01T12:00:00.1234567891Z", time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.UTC)},
		{"2024-01-01T00:30:00+01:00", time.Date(2023, 12, 31, 23, 30, 0, 0, time.UTC)},
		{"0001", time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"9999-12-31T23:59:59Z", time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("Parse(%q) = %v, %v, want %v", tt.in, got, err, tt.want)
		}
	}
	bad := []struct{ in, msg string }{
		{"", "is not a FHIR date or dateTime"},
		{"yesterday", "is not a FHIR date or dateTime"},
		{"24", "is not a FHIR date or dateTime"},
		{"1714564800", "is not a FHIR date or dateTime"},
		{"2024-1-5", "is not a FHIR date or dateTime"},
		{"2024-03-05T10", "is not a FHIR date or dateTime"},
		{"2024-03-05T10:20:30.Z", "is not a FHIR date or dateTime"},
		{"2024-13", "is not a valid date or time"},
		{"2023-02-29", "is not a valid date or time"},
		{"2024-04-31", "is not a valid date or time"},
		{"2024-03-05T24:00:00Z", "is not a valid date or time"},
		{"2024-03-05T10:20:61Z", "is not a valid date or time"},
		{"2024-03-05T10:20:30+15:00", "out of range"},
		{"2024-03-05T10:20:30+01:75", "out of range"},
		{"2024-03-05T10:20", "a time needs a zone offset"},
		{"2024-03-05T10:20:30", "a time needs a zone offset"},
		{"2024-03-05 10:20:30.5", "a time needs a zone offset"},
		{"0000", "year 0000 is not a FHIR year"},
		{"0000-01-01T00:00:00-00:10", "year 0000 is not a FHIR year"},
		// Found by FuzzParseTime: an offset carries these into year 0 or 10000 in UTC.
		{"0001-01-01T00:00:00+00:10", "outside the years 0001 to 9999"},
		{"9999-12-31T23:59:59-01:00", "outside the years 0001 to 9999"},
	}
	for _, tt := range bad {
		if got, err := Parse(tt.in); err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("Parse(%q) = %v, %v, want an error saying %q", tt.in, got, err, tt.msg)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"2024", "2024-03-05T10:20:30.5+02:00", "2024-02-30", "x", "2024-03-05T10:20", "2024-03-05 10:20Z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := Parse(s)
		if err != nil {
			return
		}
		// What Parse accepts, written back as an instant, reads back as the same instant.
		// Written in its own zone or in UTC, as every tool writes it back.
		for _, back := range []string{got.Format(time.RFC3339Nano), got.UTC().Format(time.RFC3339Nano)} {
			again, err := Parse(back)
			if err != nil || !again.Equal(got) {
				t.Fatalf("Parse(%q) = %v; Parse(%q) = %v, %v", s, got, back, again, err)
			}
		}
	})
}
