package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func loadRecs(etl1, etl10, inc float64, rss10 int64) []Record {
	return []Record{
		{Step: "load 1 GB", Name: "sqlload", Role: "limit", Bytes: 1e9, Wall: 20, Limit: "2GiB"},
		{Step: "load 1 GB", Name: "etl-load", Role: "tool", Bytes: 1e9, Wall: etl1, Limit: "2GiB", RSS: 1 << 20},
		{Step: "load 10 GB", Name: "sqlload", Role: "limit", Bytes: 10e9, Wall: 200, Limit: "2GiB"},
		{Step: "load 10 GB", Name: "etl-load", Role: "tool", Bytes: 10e9, Wall: etl10, Limit: "2GiB", RSS: rss10},
		{Step: "load 1 GB onto 10 GB", Name: "sqlload", Role: "limit", Bytes: 1e9, Wall: 30, Limit: "2GiB"},
		{Step: "load 1 GB onto 10 GB", Name: "etl-load", Role: "tool", Bytes: 1e9, Wall: inc, Limit: "2GiB", RSS: 1 << 20},
	}
}

// verdicts keeps the verdict of each target line, in order.
func verdicts(lines []string) []string {
	var out []string
	for _, l := range lines {
		switch {
		case strings.HasSuffix(l, "**not met**"):
			out = append(out, "not met")
		case strings.HasSuffix(l, "met"):
			out = append(out, "met")
		case strings.Contains(l, "not measured"):
			out = append(out, "not measured")
		default:
			out = append(out, "reported")
		}
	}
	return out
}

func TestLoadTargets(t *testing.T) {
	// trend, incremental, then speed and RSS at 1 GB, 10 GB and onto 10 GB.
	for _, tc := range []struct {
		name             string
		etl1, etl10, inc float64
		rss10            int64
		want             []string
	}{
		{"all met", 16, 190, 20, 2300 << 10,
			[]string{"met", "met", "met", "met", "met", "met", "met", "met"}},
		{"slower per GB at 10 GB, and than sqlload there", 16, 210, 20, 2300 << 10,
			[]string{"not met", "met", "met", "met", "not met", "met", "met", "met"}},
		{"incremental too slow, over the limit", 16, 190, 25, 2400 << 10,
			[]string{"met", "not met", "met", "met", "met", "not met", "met", "met"}},
		{"slower than sqlload", 21, 190, 31, 2300 << 10,
			[]string{"met", "met", "not met", "met", "met", "met", "not met", "met"}},
	} {
		got := verdicts(loadTargets(loadRecs(tc.etl1, tc.etl10, tc.inc, tc.rss10)))
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: loadTargets verdicts = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestLoadTargetsFailedRun(t *testing.T) {
	recs := loadRecs(16, 190, 20, 1<<20)
	recs[3].Exit = -1 // etl-load at 10 GB killed
	recs[5].Exit = 1
	lines := loadTargets(recs)
	joined := strings.Join(lines, "\n")
	for _, want := range []string{"load 10 GB: etl-load ≥ 1.0× sqlload's speed: **not measured** (exit -1 and 0)",
		"s/GB at the smallest: **not measured** (etl-load failed: load 10 GB)",
		"load 1 GB onto 10 GB ≤ 1.5 × into a new database: **not measured** (exit 1)"} {
		if !strings.Contains(joined, want) {
			t.Errorf("loadTargets with failed runs lacks %q:\n%s", want, joined)
		}
	}
	if strings.Contains(joined, "s/GB at 10 GB") {
		t.Errorf("loadTargets compared s/GB with a failed 10 GB run:\n%s", joined)
	}
}

func TestRSSTarget(t *testing.T) {
	for _, tc := range []struct {
		limit string
		rss   int64 // KiB
		slack int64
		want  string
	}{
		{"256MiB", 320 << 10, 64 << 20, "met"},
		{"256MiB", 320<<10 + 1, 64 << 20, "not met"},
		{"2GiB", 2304 << 10, 256 << 20, "met"},
		{"2GiB", 4840 << 10, 256 << 20, "not met"},
		{"", 1, 64 << 20, "not measured"},
	} {
		got := verdicts([]string{rssTarget("s", &Record{Name: "x", Limit: tc.limit, RSS: tc.rss}, tc.slack)})[0]
		if got != tc.want {
			t.Errorf("rssTarget(limit %q, RSS %d KiB) = %s, want %s", tc.limit, tc.rss, got, tc.want)
		}
	}
}

func TestMergeTargets(t *testing.T) {
	recs := []Record{
		{Step: "merge 1 GB", Name: "sort -u", Role: "limit", Bytes: 1e9, Wall: 10, Limit: "256MiB"},
		{Step: "merge 1 GB", Name: "ndjson-merge", Role: "tool", Bytes: 1e9, Wall: 9, Limit: "256MiB", RSS: 300 << 10},
		{Step: "merge 10 GB", Name: "sort -u", Role: "limit", Bytes: 10e9, Wall: 100, Limit: "256MiB"},
		{Step: "merge 10 GB", Name: "ndjson-merge", Role: "tool", Bytes: 10e9, Wall: 150, Limit: "256MiB", RSS: 400 << 10},
	}
	got := verdicts(mergeTargets(recs))
	if want := "met,met,not met,not met"; strings.Join(got, ",") != want {
		t.Errorf("mergeTargets verdicts = %v, want %s", got, want)
	}
}

func TestFetchTargets(t *testing.T) {
	meta := map[string]string{"parallel": "5", "nofile": "256", "export_files": "50000"}
	for _, tc := range []struct {
		name  string
		exit  int
		items int64
		fds   int
		want  string
	}{
		{"complete, few descriptors", 0, 50000, 21, "met,met,reported"},
		{"complete, too many descriptors", 0, 50000, 29, "met,not met,reported"},
		{"files missing", 0, 49999, 20, "not met,met,reported"},
		{"failed", 1, 50000, 20, "not met,met,reported"},
		{"descriptors never sampled", 0, 50000, 0, "met,not met,reported"},
	} {
		recs := []Record{
			{Step: "fetch 50000 files", Name: "bulk-fetch", Role: "tool", Items: tc.items, Wall: 100, Exit: tc.exit, FDs: tc.fds},
			{Step: "fetch 50000 files", Name: "xargs -P 5 curl", Role: "limit", Items: 50000, Wall: 50, FDs: 15},
		}
		got := verdicts(fetchTargets(recs, meta))
		if strings.Join(got, ",") != tc.want {
			t.Errorf("%s: fetchTargets verdicts = %v, want %s", tc.name, got, tc.want)
		}
	}
}

// A part's block is rewritten and every other block, make bench's included, is left as it was.
func TestScaleRewritesOnlyItsPart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.md")
	doc := "# b\n" + beginMark + "\nbench\n" + endMark + "\n"
	for _, p := range []string{"fetch", "load", "merge"} {
		m := scaleMarks(p)
		doc += m.begin + "\nold " + p + "\n" + m.end + "\n"
	}
	if err := os.WriteFile(path, []byte(doc), 0o666); err != nil {
		t.Fatal(err)
	}
	results := filepath.Join(t.TempDir(), "r.jsonl")
	data := `{"step":"load 1 GB","name":"sqlload","role":"limit","bytes":1000000000,"wall":20,"rssKiB":1000,"load1":1,"limit":"2GiB"}
{"step":"load 1 GB","name":"etl-load","role":"tool","bytes":1000000000,"wall":16,"rssKiB":2000,"load1":1.5,"load1Start":1,"limit":"2GiB"}
`
	if err := os.WriteFile(results, []byte(data), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := scale([]string{"-part", "load", "-results", results, "-md", path}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{"\nbench\n", "\nold fetch\n", "\nold merge\n",
		"| load 1 GB | etl-load | 1.000 | 16.0 | 62.5 | 16.0 | 2 | 2GiB | — | 1.00 → 1.50 |",
		"- load 1 GB: etl-load ≥ 1.0× sqlload's speed: 1.25× (16.0 s vs 20.0 s) — met"} {
		if !strings.Contains(got, want) {
			t.Errorf("report after scale -part load lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "old load") {
		t.Errorf("scale -part load left the old load block:\n%s", got)
	}
}

// A baseline that fails where the tool finishes is said so, and an incremental load onto the
// baseline's failed load is flagged as not incremental for it.
func TestLoadTargetsBaselineFailed(t *testing.T) {
	recs := loadRecs(16, 190, 20, 1<<20)
	recs[2].Exit = 1 // sqlload at 10 GB: out of memory
	joined := strings.Join(loadTargets(recs), "\n")
	for _, want := range []string{
		"load 10 GB: etl-load ≥ 1.0× sqlload's speed: **sqlload failed** (exit 1 after 200.0 s) where etl-load finished in 190.0 s",
		"load 1 GB onto 10 GB: sqlload's database was empty, not 10 GB",
		"etl-load s/GB at 10 GB ≤ 1.25 × s/GB at 1 GB: 19.0 vs 16.0 s/GB, 1.19× — met",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("loadTargets with sqlload failed at 10 GB lacks %q:\n%s", want, joined)
		}
	}
	if strings.Contains(joined, "load 1 GB: sqlload's database was empty") {
		t.Errorf("loadTargets flagged a load into a new database:\n%s", joined)
	}
}

func TestRunErrorFileNote(t *testing.T) {
	dir := t.TempDir()
	results, errFile := filepath.Join(dir, "r.jsonl"), filepath.Join(dir, "err")
	for _, tc := range []struct {
		name, script string
		wantNote     string
	}{
		{"failure: first line", `printf 'Out of Memory Error: 2.0 GiB used\n\nPossible solutions:\n' >"$1"; exit 1`, "Out of Memory Error: 2.0 GiB used"},
		{"success: no note", `printf 'a warning\n' >"$1"`, ""},
	} {
		os.Remove(results)
		runCmd([]string{"-o", results, "-step", "s", "-name", tc.name, "-error-file", errFile, "--", "sh", "-c", tc.script, "sh", errFile})
		recs, err := readRecords(results)
		if err != nil || len(recs) != 1 {
			t.Fatalf("%s: readRecords = %v, %v; want one record", tc.name, recs, err)
		}
		if recs[0].Note != tc.wantNote {
			t.Errorf("%s: note = %q, want %q", tc.name, recs[0].Note, tc.wantNote)
		}
	}
}
