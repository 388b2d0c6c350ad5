package main

import (
	"testing"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/google/go-cmp/cmp"
)

func TestMergeParams(t *testing.T) {
	tests := []struct {
		name   string
		params []map[string]any // one per logged slice
		want   map[string]any   // without _bulkpipeSlices
		notes  int
	}{
		{"category slices",
			[]map[string]any{
				{"_type": "Observation", "_typeFilter": "Observation?category=laboratory"},
				{"_type": "Observation", "_typeFilter": []any{"Observation?category=vital-signs"}},
				{"_type": "Observation", "_typeFilter": "Observation?category:missing=true"},
			},
			map[string]any{"_type": "Observation", "_typeFilter": []string{"Observation?category=laboratory", "Observation?category=vital-signs", "Observation?category:missing=true"}}, 0},
		{"a comma list is several filters; an escaped comma is not",
			[]map[string]any{{"_typeFilter": "Observation?category=a%2Cb,Condition?category=c"}},
			map[string]any{"_typeFilter": []string{"Observation?category=a%2Cb", "Condition?category=c"}}, 0},
		{"a type exported whole needs no filter",
			[]map[string]any{
				{"_type": "Observation,Condition", "_typeFilter": "Observation?category=laboratory,Condition?category=problem-list-item"},
				{"_type": "Observation"},
			},
			map[string]any{"_type": "Observation,Condition", "_typeFilter": []string{"Condition?category=problem-list-item"}}, 0},
		{"no _type means every type",
			[]map[string]any{{"_type": "Observation", "_typeFilter": "Observation?category=laboratory"}, {}},
			map[string]any{}, 0},
		{"same values kept, different ones listed",
			[]map[string]any{{"_outputFormat": "application/fhir+ndjson", "_elements": "id"}, {"_outputFormat": "application/fhir+ndjson", "_elements": "meta"}},
			map[string]any{"_outputFormat": "application/fhir+ndjson", "_elements": []any{"id", "meta"}}, 1},
		{"a parameter of one slice only stays",
			[]map[string]any{{"_patientCount": 3.0}, {}},
			map[string]any{"_patientCount": []any{3.0}}, 1},
		{"date slices join",
			[]map[string]any{{"_until": "2020-01-01T00:00:00Z"}, {"_since": "2020-01-01T00:00:00Z", "_until": "2022-01-01T00:00:00Z"}, {"_since": "2021-06-01T00:00:00Z"}},
			map[string]any{}, 0},
		{"joined range with bounds",
			[]map[string]any{{"_since": "2019-01-01T00:00:00Z", "_until": "2020-01-01T00:00:00Z"}, {"_since": "2020-01-01", "_until": "2021-01-01T00:00:00Z"}},
			map[string]any{"_since": "2019-01-01T00:00:00Z", "_until": "2021-01-01T00:00:00Z"}, 0},
		{"gap keeps the latest range",
			[]map[string]any{{"_since": "2019-01-01T00:00:00Z", "_until": "2020-01-01T00:00:00Z"}, {"_since": "2021-01-01T00:00:00Z"}},
			map[string]any{"_since": "2021-01-01T00:00:00Z"}, 1},
	}
	for _, tt := range tests {
		var srcs []*source
		for i, p := range tt.params {
			srcs = append(srcs, &source{index: i, time: ts("2024-01-01T00:00:00Z"), export: &exportdir.Export{ExportID: "x", RequestParameters: p}})
		}
		srcs = append(srcs, &source{arg: "extra.ndjson", index: len(srcs), time: ts("2024-01-02T00:00:00Z")}) // no log: no say
		got, notes := mergeParams(srcs)
		slicesRec, _ := got["_bulkpipeSlices"].([]any)
		delete(got, "_bulkpipeSlices")
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: mergeParams (-want +got):\n%s", tt.name, diff)
		}
		if len(notes) != tt.notes {
			t.Errorf("%s: mergeParams notes = %q, want %d", tt.name, notes, tt.notes)
		}
		if len(slicesRec) != len(srcs) {
			t.Errorf("%s: _bulkpipeSlices has %d entries, want %d", tt.name, len(slicesRec), len(srcs))
		} else if last := slicesRec[len(slicesRec)-1].(map[string]any); last["source"] != "extra.ndjson" || last["transactionTime"] != "2024-01-02T00:00:00Z" {
			t.Errorf("%s: _bulkpipeSlices entry of a log-less source = %v", tt.name, last)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"512MB", 512e6}, {"256MB", 256e6}, {"1GB", 1e9}, {"64KiB", 64 << 10}, {"4KiB", 4 << 10}, {"1GiB", 1 << 30},
		{"64k", 64 << 10}, {"1.5G", 3 << 29}, {"100", 100}, {"100b", 100}, {" 2 MiB ", 2 << 20}, {"1T", 1 << 40},
	}
	for _, tt := range tests {
		if got, err := parseSize(tt.in); err != nil || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v, want %d", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "MB", "12XB", "1.2.3M", "-5M", "1e9", "12 mega", "99999999999999T"} {
		if got, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", bad, got)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"512MB", "64KiB", "1.5g", "", "7", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize(s)
		if err == nil && n < 0 {
			t.Errorf("parseSize(%q) = %d, want ≥ 0", s, n)
		}
	})
}

func TestParseTimestamp(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time
	}{
		{"2024-05-01", time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)},
		{"2024-05", time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)},
		{"2024", time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"2024-05-01T10:00:00+02:00", time.Date(2024, 5, 1, 8, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		if got, err := parseTimestamp(tt.in); err != nil || !got.Equal(tt.want) {
			t.Errorf("parseTimestamp(%q) = %v, %v, want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"2024-05-01T10:00:00", "yesterday", ""} {
		if _, err := parseTimestamp(bad); err == nil {
			t.Errorf("parseTimestamp(%q) = nil error, want one", bad)
		}
	}
}

func FuzzParseInstant(f *testing.F) {
	for _, s := range []string{"2024-01-01T00:00:00Z", "2024-01-01T00:00:00.123456789+14:00", "2024-01-01", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, ok := parseInstant(s)
		if ok != a.ok || (ok && a.compare(a) != 0) || (ok && a.compare(instant{}) <= 0) {
			t.Errorf("parseInstant(%q) = %+v, %v: a parsed instant must sort after a missing one", s, a, ok)
		}
	})
}
