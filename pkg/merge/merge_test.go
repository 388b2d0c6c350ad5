package merge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/google/go-cmp/cmp"
)

// slice describes a slice folder for a test: its files (path relative to the folder → content) and
// the log bulk-fetch would have written.
type slice struct {
	group  string
	time   string // status_complete transactionTime; "" = no status_complete
	params map[string]any
	files  map[string]string
	noLog  bool
	// synthesized writes the kickoff event as bulk-fetch does from a manifest alone: marked, with
	// an exportUrl the server wrote and no FHIR base it vouches for.
	synthesized bool
}

// writeSlice writes s as an export folder in dir, its log through exportdir.
func writeSlice(t testing.TB, dir string, s slice) {
	t.Helper()
	for rel, content := range s.files {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if s.noLog {
		return
	}
	base := "https://ehr.example/fhir"
	if s.group != "" {
		base += "/Group/" + url.PathEscape(s.group)
	}
	q := url.Values{}
	for k, v := range s.params {
		q.Set(k, fmt.Sprint(v))
	}
	exportURL := base + "/$export?" + q.Encode()
	id := "https://ehr.example/fhir/status/" + filepath.Base(dir)
	lw, err := exportdir.OpenLog(filepath.Join(dir, exportdir.LogName))
	if err != nil {
		t.Fatal(err)
	}
	defer lw.Close()
	now := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	events := []struct {
		id     string
		detail any
	}{{"kickoff", map[string]any{"exportUrl": exportURL, "requestParameters": s.params, "softwareName": "EHR", "logVersion": "2"}}}
	if s.synthesized {
		events[0].detail.(map[string]any)[bulk.SynthesizedMember] = "bulk-fetch"
	}
	if s.time != "" {
		events = append(events, struct {
			id     string
			detail any
		}{"status_complete", map[string]any{"transactionTime": s.time}})
	}
	for _, ev := range events {
		e, err := exportdir.NewEvent(id, ev.id, ev.detail, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := lw.Write(e, false); err != nil {
			t.Fatal(err)
		}
	}
}

// testOptions are the options of a merge in a test: generous memory, a fixed clock, warnings kept.
func testOptions(t testing.TB, out string, srcs ...string) (*Options, *[]string) {
	var warnings []string
	return &Options{
		Sources: srcs, Out: out, Mem: 64 << 20, MaxFile: 1 << 30, MaxLine: 1 << 20,
		Stdin: strings.NewReader(""), Stdout: &bytes.Buffer{},
		Warn:    func(msg string) { warnings = append(warnings, msg) },
		Now:     func() time.Time { return time.Date(2024, 7, 1, 0, 0, 0, 0, time.UTC) },
		Version: "test",
	}, &warnings
}

// readTree returns every file under dir (slash paths → content), without the log and state, whose
// timestamps and hashes are checked elsewhere.
func readTree(t testing.TB, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b, err := os.ReadFile(p)
		got[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// lines joins resource lines as a file holds them.
func lines(ls ...string) string { return strings.Join(ls, "\n") + "\n" }

// obs is an Observation; a tag starting "lab" or "vit" gives it the category its slice's filter
// selects (laboratory, vital-signs), as a server that applies _typeFilter would send.
func obs(id, lu, tag string) string {
	cat := ""
	switch {
	case strings.HasPrefix(tag, "lab"):
		cat = `,"category":[{"coding":[{"code":"laboratory"}]}]`
	case strings.HasPrefix(tag, "vit"):
		cat = `,"category":[{"coding":[{"code":"vital-signs"}]}]`
	}
	if lu == "" {
		return fmt.Sprintf(`{"resourceType":"Observation","id":%q,"tag":%q%s}`, id, tag, cat)
	}
	return fmt.Sprintf(`{"resourceType":"Observation","id":%q,"meta":{"lastUpdated":%q},"tag":%q%s}`, id, lu, tag, cat)
}

func deleteBundle(keys ...string) string {
	var es []string
	for _, k := range keys {
		es = append(es, fmt.Sprintf(`{"request":{"method":"DELETE","url":%q}}`, k))
	}
	return `{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(es, ",") + `]}`
}

// TestMergeFolder merges two slices with a duplicate, deletes and errors, and checks the whole
// folder: files, order, deleted/, error/, manifest, log and state.
func TestMergeFolder(t *testing.T) {
	dir := t.TempDir()
	writeSlice(t, filepath.Join(dir, "lab"), slice{group: "g1", time: "2024-05-02T00:00:00Z",
		params: map[string]any{"_type": "Observation", "_typeFilter": "Observation?category=laboratory"},
		files: map[string]string{
			"Observation.000.ndjson":            lines(obs("2", "2024-01-01T00:00:00Z", "lab2"), obs("10", "", "lab10")),
			"Observation.001.ndjson":            lines(obs("1", "2024-01-01T00:00:00Z", "lab1")),
			"deleted/Bundle.000.ndjson":         lines(deleteBundle("Observation/7", "Observation/3")),
			"error/OperationOutcome.000.ndjson": lines(`{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"informational","diagnostics":"lab"}]}`, `{"resourceType":"OperationOutcome","id":"export-warning","issue":[{"severity":"warning","code":"informational","diagnostics":"same in every slice"}]}`),
		}})
	writeSlice(t, filepath.Join(dir, "vitals"), slice{group: "g1", time: "2024-05-01T12:00:00+02:00",
		params: map[string]any{"_type": "Observation", "_typeFilter": "Observation?category=vital-signs"},
		files: map[string]string{
			// Observation/1 again, older: the lab copy wins; Observation/3 deleted by the later lab slice
			"1.Observation.ndjson": lines(obs("1", "2023-01-01T00:00:00Z", "vit1"), obs("3", "", "vit3"), obs("9", "", "vit9")),
			// the server's warning again, as each slice has it: kept once
			"error/OperationOutcome.000.ndjson": lines(`{"resourceType":"OperationOutcome","id":"export-warning","issue":[{"severity":"warning","code":"informational","diagnostics":"same in every slice"}]}`, `{"resourceType":"OperationOutcome","issue":[{"severity":"warning","code":"processing","diagnostics":"vitals"}]}`, `{"resourceType":"OperationOutcome","id":"export-warning","issue":[{"severity":"warning","code":"informational","diagnostics":"same in every slice"}]}`),
		}})
	out := filepath.Join(dir, "merged")
	o, warnings := testOptions(t, out, filepath.Join(dir, "lab"), filepath.Join(dir, "vitals"))
	res, err := Run(t.Context(), o)
	if err != nil {
		t.Fatalf("merge: %v", err)
	}
	got := readTree(t, out)
	want := map[string]string{
		// sorted by id as bytes: "1" < "10" < "2" < "9"
		"Observation.000.ndjson":            lines(obs("1", "2024-01-01T00:00:00Z", "lab1"), obs("10", "", "lab10"), obs("2", "2024-01-01T00:00:00Z", "lab2"), obs("9", "", "vit9")),
		"deleted/Bundle.000.ndjson":         lines(deleteBundle("Observation/3", "Observation/7")),
		"error/OperationOutcome.000.ndjson": lines(`{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"informational","diagnostics":"lab"}]}`, `{"resourceType":"OperationOutcome","id":"export-warning","issue":[{"severity":"warning","code":"informational","diagnostics":"same in every slice"}]}`, `{"resourceType":"OperationOutcome","issue":[{"severity":"warning","code":"processing","diagnostics":"vitals"}]}`),
	}
	for k := range got {
		if k == "manifest.json" || k == exportdir.LogName || strings.HasPrefix(k, ".bulkpipe/") {
			continue
		}
		if _, ok := want[k]; !ok {
			want[k] = "(absent)"
		}
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("merged %s =\n%s\nwant\n%s", k, got[k], w)
		}
	}
	if res.Read != 6 || res.Written != 4 || res.Deleted != 2 || res.Errors != 3 {
		t.Errorf("merge result = %+v, want 6 read, 4 written, 2 deleted, 3 errors", *res)
	}
	if len(*warnings) > 0 {
		t.Errorf("warnings = %q, want none", *warnings)
	}

	// The log reads back as one export: the common Group, the EARLIEST slice time (vitals:
	// 12:00+02:00 is 10:00Z, before the lab slice), the slices' filters.
	exp, err := exportdir.ReadLog(filepath.Join(out, exportdir.LogName))
	if err != nil {
		t.Fatalf("ReadLog(merged log): %v", err)
	}
	if exp.Group != "g1" {
		t.Errorf("merged log Group = %q, want g1", exp.Group)
	}
	if wt := ts("2024-05-01T10:00:00Z"); !exp.HasTime || !exp.TransactionTime.Equal(wt) {
		t.Errorf("merged log transactionTime = %v (has %v), want %v", exp.TransactionTime, exp.HasTime, wt)
	}
	if f, ok := exp.RequestParameters["_typeFilter"].([]any); !ok || !cmp.Equal(f, []any{"Observation?category=laboratory", "Observation?category=vital-signs"}) {
		t.Errorf("merged requestParameters._typeFilter = %#v, want both slices' filters", exp.RequestParameters["_typeFilter"])
	}
	if sl, ok := exp.RequestParameters["_bulkpipeSlices"].([]any); !ok || len(sl) != 2 {
		t.Errorf("merged requestParameters._bulkpipeSlices = %#v, want 2 slices", exp.RequestParameters["_bulkpipeSlices"])
	}
	if exp.RequestParameters["_type"] != "Observation" {
		t.Errorf("merged requestParameters._type = %#v, want Observation", exp.RequestParameters["_type"])
	}

	// The manifest describes the merged files; the state matches them byte for byte.
	mb, err := os.ReadFile(filepath.Join(out, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	man, err := bulk.ParseManifest(mb)
	if err != nil {
		t.Fatalf("ParseManifest(merged manifest): %v", err)
	}
	if man.TransactionTime != "2024-05-01T12:00:00+02:00" || len(man.Output) != 1 || man.Output[0].URL != "Observation.000.ndjson" ||
		man.Output[0].Count != 4 || len(man.Deleted) != 1 || man.Deleted[0].Count != 1 || len(man.Error) != 1 || man.Error[0].Count != 3 {
		t.Errorf("merged manifest = %s", mb)
	}
	st, err := exportdir.ReadState(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Files) != 3 || st.ExportID != exp.ExportID || st.TransactionTime != man.TransactionTime {
		t.Errorf("merged state = %+v, want 3 files of export %s", st, exp.ExportID)
	}
	for _, f := range st.Files {
		if b := got[f.Name]; int64(len(b)) != f.Size || f.Lines != strings.Count(b, "\n") {
			t.Errorf("state for %s: size %d, lines %d; file has %d bytes, %d lines", f.Name, f.Size, f.Lines, len(b), strings.Count(b, "\n"))
		}
	}
	leftovers(t, dir, "lab", "vitals", "merged")
}

// leftovers fails when dir holds anything but the names given (a staging folder, runs).
func leftovers(t *testing.T, dir string, want ...string) {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Name())
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s holds %q, want %q", dir, got, want)
	}
}

// TestDeleteRulesInFolders checks the delete rules through real deleted/ files and logs, including
// the decision for a delete and a copy in the same slice (the copy stays, the delete goes).
func TestDeleteRulesInFolders(t *testing.T) {
	tests := []struct {
		name   string
		slices []slice
		want   string // Observation file
		del    string // deleted/ file, "" for none
	}{
		{"delete in a later slice removes", []slice{
			{time: "2024-01-01T00:00:00Z", files: map[string]string{"Observation.000.ndjson": lines(obs("1", "", "a"), obs("2", "", "a"))}},
			{time: "2024-02-01T00:00:00Z", files: map[string]string{"deleted/Bundle.000.ndjson": lines(deleteBundle("Observation/1"))}},
		}, lines(obs("2", "", "a")), lines(deleteBundle("Observation/1"))},
		{"delete in an earlier slice does not", []slice{
			{time: "2024-02-01T00:00:00Z", files: map[string]string{"Observation.000.ndjson": lines(obs("1", "", "a"))}},
			{time: "2024-01-01T00:00:00Z", files: map[string]string{"deleted/Bundle.000.ndjson": lines(deleteBundle("Observation/1"))}},
		}, lines(obs("1", "", "a")), ""},
		{"delete in the same slice does not", []slice{
			{time: "2024-01-01T00:00:00Z", files: map[string]string{"Observation.000.ndjson": lines(obs("1", "", "a")),
				"deleted/Bundle.000.ndjson": lines(deleteBundle("Observation/1"))}},
		}, lines(obs("1", "", "a")), ""},
		{"re-created after the delete", []slice{
			{time: "2024-01-01T00:00:00Z", files: map[string]string{"Observation.000.ndjson": lines(obs("1", "2023-12-01T00:00:00Z", "old"))}},
			{time: "2024-02-01T00:00:00Z", files: map[string]string{"deleted/Bundle.000.ndjson": lines(deleteBundle("Observation/1"))}},
			{time: "2024-03-01T00:00:00Z", files: map[string]string{"Observation.000.ndjson": lines(obs("1", "2023-11-01T00:00:00Z", "new"))}},
		}, lines(obs("1", "2023-11-01T00:00:00Z", "new")), ""},
		{"duplicate deletes kept once", []slice{
			{time: "2024-01-01T00:00:00Z", files: map[string]string{"deleted/Bundle.000.ndjson": lines(deleteBundle("Observation/5", "Patient/5"))}},
			{time: "2024-02-01T00:00:00Z", files: map[string]string{"deleted/Bundle.000.ndjson": lines(deleteBundle("Observation/5"))}},
		}, "", lines(deleteBundle("Observation/5"), deleteBundle("Patient/5"))},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.name, " ", "_"), func(t *testing.T) {
			dir := t.TempDir()
			var srcs []string
			for i, s := range tt.slices {
				p := filepath.Join(dir, fmt.Sprint("s", i))
				writeSlice(t, p, s)
				srcs = append(srcs, p)
			}
			out := filepath.Join(dir, "out")
			o, _ := testOptions(t, out, srcs...)
			if _, err := Run(t.Context(), o); err != nil {
				t.Fatal(err)
			}
			got := readTree(t, out)
			if got["Observation.000.ndjson"] != tt.want {
				t.Errorf("Observation.000.ndjson =\n%s\nwant\n%s", got["Observation.000.ndjson"], tt.want)
			}
			if got["deleted/Bundle.000.ndjson"] != tt.del {
				t.Errorf("deleted/Bundle.000.ndjson =\n%s\nwant\n%s", got["deleted/Bundle.000.ndjson"], tt.del)
			}
		})
	}
}

func TestMixedGroups(t *testing.T) {
	dir := t.TempDir()
	writeSlice(t, filepath.Join(dir, "a"), slice{group: "cohort-a", time: "2024-01-01T00:00:00Z", files: map[string]string{"Observation.000.ndjson": lines(obs("1", "", "a"))}})
	writeSlice(t, filepath.Join(dir, "b"), slice{group: "cohort-b", time: "2024-01-01T00:00:00Z", files: map[string]string{"Observation.000.ndjson": lines(obs("2", "", "b"))}})
	writeSlice(t, filepath.Join(dir, "c"), slice{time: "2024-01-01T00:00:00Z", files: map[string]string{"Observation.000.ndjson": lines(obs("2", "", "b"))}})
	for _, pair := range [][2]string{{"a", "b"}, {"a", "c"}} {
		out := filepath.Join(dir, "out")
		o, _ := testOptions(t, out, filepath.Join(dir, pair[0]), filepath.Join(dir, pair[1]))
		_, err := Run(t.Context(), o)
		if err == nil || !strings.Contains(err.Error(), "different Groups") {
			t.Errorf("Run(%s, %s) = %v, want a different-Groups error", pair[0], pair[1], err)
			continue
		}
		for _, g := range []string{"Group cohort-a", map[string]string{"b": "Group cohort-b", "c": "no Group"}[pair[1]]} {
			if !strings.Contains(err.Error(), g) {
				t.Errorf("Run(%s, %s) error %q does not name %q", pair[0], pair[1], err, g)
			}
		}
	}
	leftovers(t, dir, "a", "b", "c")
}

// TestSpillSameOutput merges the same slices within 4 KiB and within 64 MiB: the bytes match.
func TestSpillSameOutput(t *testing.T) {
	dir := t.TempDir()
	var srcs []string
	for s := range 4 {
		var ls, dels []string
		for i := range 150 {
			id := fmt.Sprint((i*7 + s*31) % 200)
			lu := fmt.Sprintf("2024-01-%02dT00:00:00Z", 1+(i+s)%9)
			if i%5 == 0 {
				lu = ""
			}
			ls = append(ls, obs(id, lu, fmt.Sprintf("s%d-%d-%s", s, i, strings.Repeat("x", i%40))))
			if i%17 == 0 {
				dels = append(dels, fmt.Sprintf("Observation/%d", (i*13+s)%250))
			}
		}
		p := filepath.Join(dir, fmt.Sprint("s", s))
		writeSlice(t, p, slice{time: fmt.Sprintf("2024-02-%02dT00:00:00Z", 1+(s*5)%4), files: map[string]string{
			"Observation.000.ndjson": lines(ls...), "deleted/Bundle.000.ndjson": lines(deleteBundle(dels...)),
			"Patient.000.ndjson": lines(fmt.Sprintf(`{"resourceType":"Patient","id":"p%d"}`, s%2))}})
		srcs = append(srcs, p)
	}
	var trees []map[string]string
	for _, mem := range []int64{64 << 20, 4 << 10} {
		out := filepath.Join(dir, fmt.Sprint("out", mem))
		o, _ := testOptions(t, out, srcs...)
		o.Mem = mem
		o.MaxFile = 8 << 10 // several files per type
		if _, err := Run(t.Context(), o); err != nil {
			t.Fatalf("merge --mem %d: %v", mem, err)
		}
		tree := readTree(t, out)
		delete(tree, exportdir.LogName) // event timestamps aside, the log is compared below
		trees = append(trees, tree)
	}
	if diff := cmp.Diff(trees[0], trees[1]); diff != "" {
		t.Errorf("merge with --mem 4KiB differs from --mem 64MiB (-64MiB +4KiB):\n%s", diff)
	}
	if _, ok := trees[0]["Observation.001.ndjson"]; !ok {
		t.Errorf("--max-file-size 8KiB wrote no Observation.001.ndjson: %v", slices.Collect(mapKeys(trees[0])))
	}
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestInterrupted cancels a merge while reading and while writing: nothing appears at --dir, and
// the staging folder and runs are gone.
func TestInterrupted(t *testing.T) {
	for _, phase := range []string{"reading", "merging", "writing"} {
		t.Run(phase, func(t *testing.T) {
			dir := t.TempDir()
			var ls []string
			for i := range 20000 {
				ls = append(ls, obs(fmt.Sprint(i), "", "x"))
			}
			writeSlice(t, filepath.Join(dir, "a"), slice{time: "2024-01-01T00:00:00Z", files: map[string]string{"Observation.000.ndjson": lines(ls...)}})
			out := filepath.Join(dir, "out")
			o, _ := testOptions(t, out, filepath.Join(dir, "a"))
			o.Mem = 64 << 10 // spill, so runs exist when cancelled
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			o.Progress = func(p Progress) {
				if p.Phase == phase {
					cancel()
				}
			}
			_, err := Run(ctx, o)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("merge cancelled while %s = %v, want context.Canceled", phase, err)
			}
			leftovers(t, dir, "a")
		})
	}
}

// TestBadInput: a bad line is an error naming FILE:LINE, and nothing appears at --dir.
func TestBadInput(t *testing.T) {
	tests := []struct {
		line, want string
	}{
		{`{"resourceType":"Observation","id":"1"`, ":3: invalid JSON"},
		{`not json`, ":3: invalid JSON"},
		{`{"id":"1"}`, ":3: no resourceType"},
		{`{"resourceType":"Observation"}`, ":3: Observation has no id"},
		{`{"resourceType":"Observation","id":7}`, ":3: Observation has no id"},
		{`{"resourceType":"../../etc","id":"1"}`, `:3: resourceType "../../etc" is not a FHIR resource type`},
	}
	for _, tt := range tests {
		dir := t.TempDir()
		// line 2 is blank: line numbers count physical lines
		in := filepath.Join(dir, "in.ndjson")
		os.WriteFile(in, []byte(obs("0", "", "ok")+"\n\n"+tt.line+"\n"), 0o666)
		out := filepath.Join(dir, "out")
		o, _ := testOptions(t, out, in)
		o.Timestamp, o.HasTime = ts("2024-01-01T00:00:00Z"), true
		_, err := Run(t.Context(), o)
		if err == nil || !strings.HasPrefix(err.Error(), in+tt.want) {
			t.Errorf("merge of %s = %v, want %s%s", tt.line, err, in, tt.want)
		}
		leftovers(t, dir, "in.ndjson")
	}
}

// TestLastUpdatedUnparseable: an unparseable lastUpdated counts as missing, with one warning.
func TestLastUpdatedUnparseable(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.ndjson")
	os.WriteFile(in, []byte(lines(obs("1", "2024-01-01T00:00:00Z", "good"), obs("1", "yesterday", "bad"), obs("1", "2024-01-01", "bad2"))), 0o666)
	o, warnings := testOptions(t, "-", in)
	o.Timestamp, o.HasTime = ts("2024-01-01T00:00:00Z"), true
	if _, err := Run(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	if got, want := o.Stdout.(*bytes.Buffer).String(), lines(obs("1", "2024-01-01T00:00:00Z", "good")); got != want {
		t.Errorf("merge = %s, want %s", got, want)
	}
	if len(*warnings) != 1 || !strings.Contains((*warnings)[0], in+`:2: meta.lastUpdated "yesterday" is not an instant`) {
		t.Errorf("warnings = %q, want one naming line 2", *warnings)
	}
}

func TestSourcesWithoutLog(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.ndjson")
	os.WriteFile(in, []byte(lines(obs("1", "", "a"))), 0o666)
	writeSlice(t, filepath.Join(dir, "folder"), slice{noLog: true, files: map[string]string{"Observation.000.ndjson": lines(obs("2", "", "b"))}})

	o, _ := testOptions(t, filepath.Join(dir, "out"), in)
	if _, err := Run(t.Context(), o); err == nil || !strings.Contains(err.Error(), "--export-timestamp") {
		t.Errorf("merge of a file without --export-timestamp = %v, want a usage error naming the flag", err)
	}

	o, _ = testOptions(t, filepath.Join(dir, "out"), in, filepath.Join(dir, "folder"))
	o.Timestamp, o.HasTime, o.Group = ts("2024-03-01T00:00:00-05:00"), true, "g 1"
	if _, err := Run(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	exp, err := exportdir.ReadLog(filepath.Join(dir, "out", exportdir.LogName))
	if err != nil {
		t.Fatal(err)
	}
	if exp.Group != "g 1" || !exp.TransactionTime.Equal(ts("2024-03-01T05:00:00Z")) {
		t.Errorf("merged log of log-less sources: Group %q, time %v; want g 1, 2024-03-01T05:00:00Z", exp.Group, exp.TransactionTime)
	}
}

func TestExistingOut(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.ndjson")
	os.WriteFile(in, []byte(lines(obs("1", "", "a"))), 0o666)
	out := filepath.Join(dir, "out")
	os.MkdirAll(out, 0o777)
	os.WriteFile(filepath.Join(out, "old.txt"), []byte("old"), 0o666)
	run := func(force bool) error {
		o, _ := testOptions(t, out, in)
		o.Timestamp, o.HasTime, o.Force = ts("2024-01-01T00:00:00Z"), true, force
		_, err := Run(t.Context(), o)
		return err
	}
	if err := run(false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("merge into a non-empty --dir = %v, want an error naming --force", err)
	}
	if err := run(true); err != nil {
		t.Fatalf("merge --force: %v", err)
	}
	got := readTree(t, out)
	if _, ok := got["old.txt"]; ok || got["Observation.000.ndjson"] != lines(obs("1", "", "a")) {
		t.Errorf("--force left %v", slices.Collect(mapKeys(got)))
	}
	// an empty folder is replaced without --force
	os.RemoveAll(out)
	os.MkdirAll(out, 0o777)
	if err := run(false); err != nil {
		t.Errorf("merge into an empty --dir = %v", err)
	}
	leftovers(t, dir, "in.ndjson", "out")
}

func TestStdout(t *testing.T) {
	dir := t.TempDir()
	writeSlice(t, filepath.Join(dir, "a"), slice{time: "2024-01-01T00:00:00Z", files: map[string]string{
		"Observation.000.ndjson": lines(obs("2", "", "a"), obs("1", "", "a")), "deleted/Bundle.000.ndjson": lines(deleteBundle("Observation/9"))}})
	o, warnings := testOptions(t, "-", filepath.Join(dir, "a"), "-")
	o.Stdin = strings.NewReader(lines(obs("1", "", "stdin")))
	o.Timestamp, o.HasTime = ts("2024-01-01T00:00:00Z"), true
	if _, err := Run(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	// stdin is the later argument with the same time: its copy of Observation/1 wins
	if got, want := o.Stdout.(*bytes.Buffer).String(), lines(obs("1", "", "stdin"), obs("2", "", "a")); got != want {
		t.Errorf("merge --dir - =\n%s\nwant\n%s", got, want)
	}
	if len(*warnings) != 1 || !strings.Contains((*warnings)[0], "1 deletions are not written") {
		t.Errorf("warnings = %q, want one about the deletion", *warnings)
	}
	leftovers(t, dir, "a")
}

// TestStaleStaging: a run killed with -9 leaves its staging folder beside --dir; the next run
// removes it, but never the staging folder of a merge still running (it holds the lock).
func TestStaleStaging(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.ndjson")
	os.WriteFile(in, []byte(lines(obs("1", "", "a"))), 0o666)
	out := filepath.Join(dir, "out")
	stale := filepath.Join(dir, ".out.ndjson-merge-111")
	os.MkdirAll(filepath.Join(stale, ".ndjson-merge-runs-1"), 0o777)
	os.WriteFile(filepath.Join(stale, "Observation.000.ndjson"), []byte("half"), 0o666)
	running := filepath.Join(dir, ".out.ndjson-merge-222")
	os.MkdirAll(running, 0o777)
	unlock, err := exportdir.Lock(running)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	o, _ := testOptions(t, out, in)
	o.Timestamp, o.HasTime = ts("2024-01-01T00:00:00Z"), true
	if _, err := Run(t.Context(), o); err != nil {
		t.Fatalf("merge: %v", err)
	}
	leftovers(t, dir, "in.ndjson", "out", ".out.ndjson-merge-222")
}

// TestSeenErrorBounded: error/ lines are remembered up to the bound; past it a repeat is
// written again rather than memory growing with the error files.
func TestSeenErrorBounded(t *testing.T) {
	d := &outDir{maxErrors: 2}
	for i, tt := range []struct {
		line string
		want bool
	}{{"a", false}, {"b", false}, {"a", true}, {"c", false}, {"b", true}, {"c", false}} {
		if got := d.seenError([]byte(tt.line)); got != tt.want {
			t.Errorf("step %d: seenError(%q) = %v, want %v", i, tt.line, got, tt.want)
		}
	}
	if len(d.errKeys) != 2 {
		t.Errorf("%d lines remembered, want the bound, 2", len(d.errKeys))
	}
}

// TestMergedKickoffVouches: the merged log vouches for a FHIR base only when every slice's kickoff
// does, for the same one, so ndjson-inline never trusts an origin that only a manifest named.
func TestMergedKickoffVouches(t *testing.T) {
	tests := []struct {
		name        string
		synthesized [2]bool
		want        string
	}{
		{"both sent by a client", [2]bool{false, false}, "https://ehr.example/fhir"},
		{"one from a manifest alone", [2]bool{false, true}, ""},
		{"both from manifests alone", [2]bool{true, true}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var srcs []string
			for i, syn := range tt.synthesized {
				src := filepath.Join(dir, fmt.Sprint("s", i))
				writeSlice(t, src, slice{time: "2024-01-01T00:00:00Z", synthesized: syn,
					files: map[string]string{"Observation.000.ndjson": lines(obs(fmt.Sprint(i), "", "x"))}})
				srcs = append(srcs, src)
			}
			out := filepath.Join(dir, "out")
			o, _ := testOptions(t, out, srcs...)
			if _, err := Run(t.Context(), o); err != nil {
				t.Fatal(err)
			}
			ex, err := exportdir.ReadLog(filepath.Join(out, exportdir.LogName))
			if err != nil {
				t.Fatal(err)
			}
			raw := kickoffRaw(ex)
			if raw == nil {
				t.Fatal("merged log has no kickoff event")
			}
			if got := bulk.KickoffBase(raw); got != tt.want {
				t.Errorf("KickoffBase(merged kickoff) = %q, want %q (detail %s)", got, tt.want, raw)
			}
		})
	}
}

// TestOptionsErrors: a merge asked for in a way that cannot work is an *OptionsError (which
// ndjson-merge reports as a usage error, exit 2), found by type and not by its text, and nothing
// appears at Out.
func TestOptionsErrors(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.ndjson")
	if err := os.WriteFile(a, []byte(`{"resourceType":"Patient","id":"1"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	tests := []struct {
		name string
		edit func(o *Options)
		want string
	}{
		{"force to stdout", func(o *Options) { o.Out, o.Force, o.HasTime = "-", true, true }, "--force"},
		{"stdin twice", func(o *Options) { o.Sources, o.HasTime = []string{"-", "-"}, true }, "given twice"},
		{"no time", func(o *Options) {}, "--export-timestamp"},
		{"out is a source", func(o *Options) { o.Out, o.HasTime = dir, true }, "holds the source"},
	}
	for _, tt := range tests {
		o, _ := testOptions(t, out, a)
		tt.edit(o)
		_, err := Run(t.Context(), o)
		if oe, ok := errors.AsType[*OptionsError](err); !ok || !strings.Contains(oe.Error(), tt.want) {
			t.Errorf("%s: Run = %v, want an *OptionsError naming %q", tt.name, err, tt.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%s: Run left %s", tt.name, out)
		}
	}
}
