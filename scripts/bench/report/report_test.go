package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestReplaceBlock(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want string
		fails           bool
	}{
		{"replaces only the block", "# t\n\nhand\n" + beginMark + "\nold\n" + endMark + "\nafter\n",
			"# t\n\nhand\n" + beginMark + "\nNEW\n" + endMark + "\nafter\n", false},
		{"empty block", beginMark + "\n" + endMark + "\n", beginMark + "\nNEW\n" + endMark + "\n", false},
		{"no markers", "# hand-written\n", "", true},
		{"end before begin", endMark + "\n" + beginMark + "\n", "", true},
	} {
		got, err := replaceBlock(tc.doc, benchMarks, "NEW\n")
		if (err != nil) != tc.fails {
			t.Errorf("%s: replaceBlock error = %v, want failure %v", tc.name, err, tc.fails)
			continue
		}
		if got != tc.want {
			t.Errorf("%s: replaceBlock = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestRewriteBlockLeavesUnmarkedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.md")
	if err := os.WriteFile(path, []byte("mine\n"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := rewriteBlock(path, benchMarks, "x\n"); err == nil {
		t.Errorf("rewriteBlock(unmarked file) = nil, want an error")
	}
	if b, _ := os.ReadFile(path); string(b) != "mine\n" {
		t.Errorf("unmarked file became %q, want it unchanged", b)
	}
	created := filepath.Join(t.TempDir(), "new.md")
	if err := rewriteBlock(created, benchMarks, "x\n"); err != nil {
		t.Fatalf("rewriteBlock(missing file) = %v", err)
	}
	if b, _ := os.ReadFile(created); !strings.Contains(string(b), beginMark+"\nx\n"+endMark) {
		t.Errorf("created report = %q, want the block between the markers", b)
	}
}

func TestCells(t *testing.T) {
	limit := &row{Record: Record{Step: "fetch", Name: "curl", Role: "limit", Bytes: 2e9, Wall: 10, User: 1, Sys: 1, RSS: 2048}}
	ref := &row{Record: Record{Step: "fetch", Name: "server", Role: "ref", Bytes: 2e9, Wall: 2, TargetFaster: 3}}
	for _, tc := range []struct {
		wall float64
		want []string
	}{
		{8, []string{"fetch", "tool", "2000.0", "8.00", "250.0", "1.25× curl", "2.0", "4", "≥ 0.90× curl: met"}},
		{20, []string{"fetch", "tool", "2000.0", "20.00", "100.0", "0.50× curl", "2.0", "4", "≥ 0.90× curl: **below**"}},
	} {
		tool := &row{Record: Record{Step: "fetch", Name: "tool", Role: "tool", Bytes: 2e9, Wall: tc.wall, User: 3, Sys: 1, RSS: 4096, TargetRatio: 0.9}}
		s := &step{name: "fetch", rows: []*row{ref, limit, tool}}
		if diff := cmp.Diff(tc.want, cells(s, tool)); diff != "" {
			t.Errorf("cells(tool, wall %v) mismatch (-want +got):\n%s", tc.wall, diff)
		}
		got := cells(s, ref)[5]
		want := map[float64]string{8: "4.0× tool's speed", 20: "10.0× tool's speed"}[tc.wall]
		if got != want {
			t.Errorf("cells(ref, tool wall %v)[vs] = %q, want %q", tc.wall, got, want)
		}
	}
}

func TestReadResultsKeepsBestRound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.jsonl")
	data := `{"step":"load","name":"sql","role":"limit","bytes":1,"wall":5,"load1":2}
{"step":"load","name":"etl","role":"tool","bytes":1,"wall":4,"load1":3}
{"step":"load","name":"sql","role":"limit","bytes":1,"wall":3,"load1":-1}
`
	if err := os.WriteFile(path, []byte(data), 0o666); err != nil {
		t.Fatal(err)
	}
	steps, loads, err := readResults(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 1 || len(steps[0].rows) != 2 {
		t.Fatalf("readResults = %d steps, want 1 with 2 rows", len(steps))
	}
	if got := steps[0].rows[0]; got.Wall != 3 || got.rounds != 2 {
		t.Errorf("sql row = wall %v, %d rounds; want 3, 2", got.Wall, got.rounds)
	}
	if diff := cmp.Diff([]float64{2, 3}, loads); diff != "" {
		t.Errorf("loads mismatch (-want +got):\n%s", diff)
	}
}

func FuzzReplaceBlock(f *testing.F) {
	f.Add("# t\n" + beginMark + "\nold\n" + endMark + "\n")
	f.Add("no markers")
	f.Add(endMark + beginMark)
	f.Fuzz(func(t *testing.T, doc string) {
		got, err := replaceBlock(doc, benchMarks, "NEW\n")
		if err != nil {
			return
		}
		i := strings.Index(doc, beginMark)
		if !strings.HasPrefix(got, doc[:i+len(beginMark)]+"\nNEW\n"+endMark) {
			t.Errorf("replaceBlock(%q) = %q: text before the block changed or block missing", doc, got)
		}
		if !strings.HasSuffix(doc, got[strings.Index(got, "\nNEW\n")+len("\nNEW\n"):]) {
			t.Errorf("replaceBlock(%q) = %q: text after the block changed", doc, got)
		}
	})
}
