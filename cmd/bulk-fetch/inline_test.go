package main

import (
	"flag"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestInlineReads: bulk-fetch asks for a Binary scope only when it inlines attachments of an
// exported type, since servers that hold no Binary refuse the whole token request.
func TestInlineReads(t *testing.T) {
	tests := []struct {
		args  string
		types []string
		want  []string
	}{
		{"", []string{"Patient", "DocumentReference"}, nil},
		{"--inline", []string{"Patient", "DocumentReference"}, []string{"Binary"}},
		{"--inline", []string{"Patient", "DiagnosticReport"}, []string{"Binary"}},
		{"--inline", []string{"Patient", "Observation"}, nil},
		{"--inline", nil, []string{"Binary"}},
		{"--inline --inline-resource DiagnosticReport", []string{"DocumentReference"}, nil},
		{"--inline --inline-resource DocumentReference,DiagnosticReport", []string{"DiagnosticReport"}, []string{"Binary"}},
	}
	for _, tt := range tests {
		set := flag.NewFlagSet("bulk-fetch", flag.ContinueOnError)
		for _, f := range inlineFlags() {
			if err := f.Apply(set); err != nil {
				t.Fatal(err)
			}
		}
		if err := set.Parse(strings.Fields(tt.args)); err != nil {
			t.Fatal(err)
		}
		if got := inlineReads(cli.NewContext(nil, set, nil), tt.types); !slices.Equal(got, tt.want) {
			t.Errorf("inlineReads(%q, %q) = %q, want %q", tt.args, tt.types, got, tt.want)
		}
	}
}
