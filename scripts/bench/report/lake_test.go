package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// lakeRecs is a lake part of two rounds: the base, then the folder onto a new lake and onto the
// base in turn, with the given wall seconds and bytes written of the rounds' onto runs.
func lakeRecs(ontoWall [2]float64, ontoWritten int64) []Record {
	r := func(step, role string, bytes int64, wall float64, written int64) Record {
		return Record{Step: step, Name: "etl-load --lake", Role: role, Bytes: bytes, Wall: wall,
			Written: written, Grown: written / 10, Limit: "2GiB", RSS: 1 << 20}
	}
	return []Record{
		r("lake 10 GB (base)", lakeBase, 10e9, 1000, 12e9),
		r("lake 1 GB, round 1", lakeNew, 1e9, 110, 1.2e9),
		r("lake 1 GB onto 10 GB, round 1", lakeOnto, 1e9, ontoWall[0], ontoWritten),
		r("lake 1 GB, round 2", lakeNew, 1e9, 100, 1.2e9),
		r("lake 1 GB onto 10 GB, round 2", lakeOnto, 1e9, ontoWall[1], ontoWritten),
	}
}

func TestLakeTargets(t *testing.T) {
	// time, bytes written, growth, base s/GB, then the RSS of each of the five runs.
	for _, tc := range []struct {
		name     string
		ontoWall [2]float64
		written  int64
		want     []string
	}{
		{"the same", [2]float64{130, 105}, 1.2e9,
			[]string{"met", "met", "reported", "reported", "met", "met", "met", "met", "met"}},
		// The fastest rounds are compared: 112 s against 100 s.
		{"slower onto the base", [2]float64{112, 150}, 1.2e9,
			[]string{"not met", "met", "reported", "reported", "met", "met", "met", "met", "met"}},
		{"writes more onto the base", [2]float64{100, 100}, 1.5e9,
			[]string{"met", "not met", "reported", "reported", "met", "met", "met", "met", "met"}},
	} {
		lines := lakeTargets(lakeRecs(tc.ontoWall, tc.written))
		if got := verdicts(lines); strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: lakeTargets verdicts = %v, want %v\n%s", tc.name, got, tc.want, strings.Join(lines, "\n"))
		}
	}
}

func TestLakeTargetsFailedOrUnmeasured(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func([]Record)
		want   string
	}{
		{"a failed round is not hidden by a faster one", func(r []Record) { r[4].Exit = 1 },
			"**not measured** (exit 1 onto the base, 0 onto an empty lake)"},
		// Found by a 10 GB run: the base failed, and the appends "onto" it looked like a success.
		{"a failed base", func(r []Record) { r[0].Exit = 1 },
			"**not measured** (the base load failed, exit 1: the lake held none of it)"},
		{"no rusage", func(r []Record) {
			for i := range r {
				r[i].Written = 0
			}
		}, "bytes written: **not measured**"},
	} {
		recs := lakeRecs([2]float64{100, 100}, 1.2e9)
		tc.change(recs)
		if joined := strings.Join(lakeTargets(recs), "\n"); !strings.Contains(joined, tc.want) {
			t.Errorf("%s: lakeTargets lacks %q:\n%s", tc.name, tc.want, joined)
		}
	}
}

// TestRunRecordsGrowthAndWrites: report run measures how much -grow DIR grew and what the
// command wrote, through a real shell writing a real file.
func TestRunRecordsGrowthAndWrites(t *testing.T) {
	dir := t.TempDir()
	lake := filepath.Join(dir, "lake")
	if err := os.MkdirAll(lake, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(lake, "old"), make([]byte, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	results := filepath.Join(dir, "results.jsonl")
	err := runCmd([]string{"-o", results, "-step", "s", "-name", "n", "-grow", lake, "--",
		"sh", "-c", `head -c 3000000 /dev/zero > "$1"/new && sync`, "sh", lake})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(results)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r Record
	if err := json.NewDecoder(bufio.NewReader(f)).Decode(&r); err != nil {
		t.Fatal(err)
	}
	if r.Grown != 3000000 {
		t.Errorf("run -grow: Grown = %d, want 3000000 (the new file, not the old one)", r.Grown)
	}
	// Linux counts writes to a disk; a tmpfs TMPDIR writes to none, and other systems do not say.
	if runtime.GOOS == "linux" && r.Written != 0 && r.Written < 3000000 {
		t.Errorf("run: Written = %d, want at least the 3000000 bytes written", r.Written)
	}
	t.Logf("written %d bytes, grown %d", r.Written, r.Grown)
}
