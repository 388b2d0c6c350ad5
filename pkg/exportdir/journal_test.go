package exportdir

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func fileState(name string, size int64) FileState {
	return FileState{Name: name, ItemType: ItemOutput, ResourceType: "Patient", Size: size, SHA256: fmt.Sprintf("%064x", size), Lines: 1}
}

// names lists the names of the files of a state, in its order.
func names(s *State) []string {
	var out []string
	for _, f := range s.Files {
		out = append(out, f.Name)
	}
	return out
}

func openJournal(t *testing.T, dir string) *StateJournal {
	t.Helper()
	j, err := OpenStateJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func mustReadState(t *testing.T, dir string) *State {
	t.Helper()
	s, err := ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestStateJournal: what Put returned for is what ReadState sees, before any compaction (a
// reader during the run, or after a kill -9) and after Close, which leaves state.json alone.
func TestStateJournal(t *testing.T) {
	dir := t.TempDir()
	j := openJournal(t, dir)
	if err := j.SetExport("https://x/status/1", "2024-01-01T00:00:00Z", false); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"Patient.002.ndjson", "Patient.000.ndjson", "Patient.001.ndjson"} {
		if err := j.Put(fileState(n, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Put(fileState("Patient.000.ndjson", 7)); err != nil {
		t.Fatal(err)
	}
	if err := j.Drop("Patient.001.ndjson"); err != nil {
		t.Fatal(err)
	}
	if err := j.Put(fileState("Patient.003.ndjson", 1)); err != nil {
		t.Fatal(err)
	}
	want := []FileState{fileState("Patient.000.ndjson", 7), fileState("Patient.002.ndjson", 1), fileState("Patient.003.ndjson", 1)}
	mid := mustReadState(t, dir)
	if diff := cmp.Diff(want, mid.Files); diff != "" || mid.ExportID != "https://x/status/1" {
		t.Errorf("ReadState before Close: export %q, files (-want +got):\n%s", mid.ExportID, diff)
	}
	if _, err := os.Stat(journalPath(dir)); err != nil {
		t.Errorf("journal before Close: %v, want it on disk", err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(journalPath(dir)); !os.IsNotExist(err) {
		t.Errorf("journal after Close: %v, want it gone", err)
	}
	after := mustReadState(t, dir)
	if diff := cmp.Diff(want, after.Files); diff != "" {
		t.Errorf("ReadState after Close (-want +got):\n%s", diff)
	}
	// A run that records nothing writes nothing.
	before, _ := os.ReadFile(statePath(dir))
	if err := openJournal(t, dir).Close(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(statePath(dir)); !bytes.Equal(b, before) {
		t.Errorf("state.json changed by a run that recorded nothing")
	}
}

// TestStateJournalTornLine: a kill -9 in the middle of an append leaves a last line without its
// newline; readers skip it, and the next run does not glue its first entry to it.
func TestStateJournalTornLine(t *testing.T) {
	dir := t.TempDir()
	j := openJournal(t, dir)
	for _, n := range []string{"Patient.000.ndjson", "Patient.001.ndjson"} {
		if err := j.Put(fileState(n, 1)); err != nil {
			t.Fatal(err)
		}
	}
	whole, err := os.ReadFile(journalPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(whole, []byte("\n"))
	for cut := 1; cut < len(lines[0]); cut += 7 {
		// The second entry cut anywhere, even after its closing brace.
		torn := append(append([]byte{}, lines[0]...), lines[1][:min(cut, len(lines[1])-1)]...)
		if err := os.WriteFile(journalPath(dir), torn, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := ReadState(dir)
		if err != nil || !cmp.Equal(names(s), []string{"Patient.000.ndjson"}) {
			t.Fatalf("ReadState with a line cut at %d = %v, %v; want Patient.000.ndjson alone", cut, names(s), err)
		}
	}
	// The next run records a file: the torn line is compacted away first, not appended to.
	j = openJournal(t, dir)
	if err := j.Put(fileState("Patient.001.ndjson", 1)); err != nil {
		t.Fatal(err)
	}
	if err := j.Put(fileState("Patient.002.ndjson", 1)); err != nil {
		t.Fatal(err)
	}
	s, err := ReadState(dir)
	if want := []string{"Patient.000.ndjson", "Patient.001.ndjson", "Patient.002.ndjson"}; err != nil || !cmp.Equal(names(s), want) {
		t.Errorf("ReadState after the next run's entries = %v, %v; want %v", names(s), err, want)
	}
}

// TestStateJournalPutAll: a group of files is one synced line, so a crash in its write loses
// the whole group and nothing before it, never a file in its middle; a group too long for one
// line takes several, none longer than a reader accepts.
func TestStateJournalPutAll(t *testing.T) {
	group := func(from, n int) []FileState {
		var fs []FileState
		for i := from; i < from+n; i++ {
			fs = append(fs, fileState(fmt.Sprintf("Patient.%03d.ndjson", i), int64(i)))
		}
		return fs
	}
	tests := []struct {
		name      string
		groups    [][]FileState
		wantLines int
	}{
		{"one file, the form older readers know", [][]FileState{group(0, 1)}, 1},
		{"groups, a line each", [][]FileState{group(0, 3), group(3, 1), group(4, 20)}, 3},
		{"a group longer than a line", [][]FileState{group(0, 1000)}, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			j := openJournal(t, dir)
			var want []string
			for _, g := range tt.groups {
				if err := j.PutAll(g); err != nil {
					t.Fatal(err)
				}
				for _, f := range g {
					want = append(want, f.Name)
				}
			}
			whole, err := os.ReadFile(journalPath(dir))
			if err != nil {
				t.Fatal(err)
			}
			lines := bytes.SplitAfter(bytes.TrimSuffix(whole, []byte("\n")), []byte("\n"))
			if len(lines) != tt.wantLines {
				t.Errorf("PutAll of %d groups: %d journal lines, want %d", len(tt.groups), len(lines), tt.wantLines)
			}
			for i, l := range lines {
				if len(l) > maxGroupLine {
					t.Errorf("journal line %d: %d bytes, want ≤ %d", i+1, len(l), maxGroupLine)
				}
			}
			if got := names(mustReadState(t, dir)); !cmp.Equal(got, want) {
				t.Errorf("ReadState after PutAll = %v, want %v", got, want)
			}
			// The last line torn: every file of its group is lost, those before it are not.
			last := lines[len(lines)-1]
			lost := bytes.Count(last, []byte(`"name"`))
			torn := whole[:len(whole)-len(last)+len(last)/2]
			if err := os.WriteFile(journalPath(dir), torn, 0o644); err != nil {
				t.Fatal(err)
			}
			if got := names(mustReadState(t, dir)); !cmp.Equal(got, want[:len(want)-lost], cmpopts.EquateEmpty()) {
				t.Errorf("ReadState with the last line torn = %v, want %v", got, want[:len(want)-lost])
			}
		})
	}
}

// TestStateJournalCompaction: the journal is folded into state.json when it is as long as the
// snapshot, so the number of compactions grows with the logarithm of the file count and the bytes
// written per file stay bounded (rewriting the state every N files would be O(n²/N) bytes).
func TestStateJournalCompaction(t *testing.T) {
	const n = 500
	dir := t.TempDir()
	j := openJournal(t, dir)
	j.min = 8
	var written int64
	compactions := 0
	lastJournal := int64(0)
	size := func(p string) int64 {
		st, err := os.Stat(p)
		if err != nil {
			return 0
		}
		return st.Size()
	}
	for i := range n {
		if err := j.Put(fileState(fmt.Sprintf("Patient.%03d.ndjson", i), int64(i))); err != nil {
			t.Fatal(err)
		}
		// What this Put wrote: the growth of the journal, or, when it compacted, a new
		// state.json (its generation changed) and the journal's restart.
		js, ss := size(journalPath(dir)), size(statePath(dir))
		if js >= lastJournal {
			written += js - lastJournal
		} else {
			written += js
		}
		if js < lastJournal {
			written += ss
			compactions++
		}
		lastJournal = js
		if lines := j.lines; lines >= max(j.min, len(j.s.Files)/2+1) {
			t.Fatalf("after %d files the journal holds %d lines, want fewer than %d", i+1, lines, max(j.min, len(j.s.Files)/2+1))
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	written += size(statePath(dir))
	final := size(statePath(dir))
	gen := compactions + 1
	t.Logf("%d files: %d compactions, %d bytes written, state.json %d bytes (%.1f bytes written per byte of the state)",
		n, gen, written, final, float64(written)/float64(final))
	if gen > 9 {
		t.Errorf("%d files made %d compactions, want ≤ 9 (logarithmic)", n, gen)
	}
	if written > 5*final {
		t.Errorf("%d bytes written for a state.json of %d, want ≤ 5 × (O(1) per file)", written, final)
	}
	if s := mustReadState(t, dir); len(s.Files) != n {
		t.Errorf("ReadState after Close: %d files, want %d", len(s.Files), n)
	}
}

// TestStateJournalCrashInCompaction: a kill -9 after a compaction wrote state.json but before it
// removed the journal leaves a journal of the previous generation. Its entries are in state.json;
// replaying them would undo a later rewrite (ndjson-inline's) of the same file, so readers skip
// it.
func TestStateJournalCrashInCompaction(t *testing.T) {
	dir := t.TempDir()
	j := openJournal(t, dir)
	for _, n := range []string{"Patient.000.ndjson", "Patient.001.ndjson"} {
		if err := j.Put(fileState(n, 1)); err != nil {
			t.Fatal(err)
		}
	}
	stale, err := os.ReadFile(journalPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	// ndjson-inline rewrites Patient.000 and records it.
	s := mustReadState(t, dir)
	inlined := fileState("Patient.000.ndjson", 9)
	inlined.Inlined = true
	s.Put(inlined)
	if err := WriteState(dir, s); err != nil {
		t.Fatal(err)
	}
	// The journal the crash kept.
	if err := os.WriteFile(journalPath(dir), stale, 0o644); err != nil {
		t.Fatal(err)
	}
	got := mustReadState(t, dir)
	if f, _ := got.File("Patient.000.ndjson"); !f.Inlined || len(got.Files) != 2 {
		t.Errorf("ReadState with a journal of an old generation: %+v; want the inlined entry and 2 files", got.Files)
	}
	// The next run's entries count; the stale ones still do not.
	j = openJournal(t, dir)
	if err := j.Put(fileState("Patient.002.ndjson", 1)); err != nil {
		t.Fatal(err)
	}
	got = mustReadState(t, dir)
	if f, _ := got.File("Patient.000.ndjson"); !f.Inlined || len(got.Files) != 3 {
		t.Errorf("ReadState after the next run's entry: %+v; want the inlined entry and 3 files", got.Files)
	}
}

func TestReadStateJournalErrors(t *testing.T) {
	for in, want := range map[string]string{
		"{\"base\":\"e3b0c44298fc1c14\",\"put\":{\"name\":\"a\"}}\n{\n":                          "state.journal:2: unexpected end of JSON input",
		"{\"base\":\"e3b0c44298fc1c14\"}\n":                                                      "state.journal:1: want one of put, puts and drop",
		"{\"base\":\"e3b0c44298fc1c14\",\"drop\":\"a\",\"put\":{\"name\":\"a\"}}\n":              "state.journal:1: want one of put, puts and drop",
		"{\"base\":\"e3b0c44298fc1c14\",\"put\":{\"name\":\"a\"},\"puts\":[{\"name\":\"b\"}]}\n": "state.journal:1: want one of put, puts and drop",
		"{\"base\":\"e3b0c44298fc1c14\",\"puts\":[{\"name\":\"a\"},{\"name\":\"b\"}]}\n":         "",
		strings.Repeat(" ", maxJournalLine+1) + "\n":                                             "state.journal:1: line longer than",
		"{\"base\":\"e3b0c44298fc1c14\",\"put\":{\"name\":\"a\"}}\nnot json, and torn, ok":       "",
	} {
		dir := t.TempDir()
		writeFile(t, journalPath(dir), in)
		_, err := ReadState(dir)
		if want == "" {
			if err != nil {
				t.Errorf("ReadState(journal %.40q) = %v, want no error", in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ReadState(journal %.40q) = %v, want %q", in, err, want)
		}
	}
}

// FuzzStateJournal: whatever bytes the journal holds, ReadState fails or returns a state that a
// compaction writes and reads back unchanged, with no journal left.
func FuzzStateJournal(f *testing.F) {
	f.Add([]byte("{\"base\":\"e3b0c44298fc1c14\",\"put\":{\"name\":\"Patient.000.ndjson\",\"size\":3}}\n{\"base\":\"e3b0c44298fc1c14\",\"drop\":\"Patient.000.ndjson\"}\n"))
	f.Add([]byte("{\"gen\":1,\"put\":{\"name\":\"a\"}}\n{\"base\":\"e3b0c44298fc1c14\",\"put\":{\"name\":\"b\"}}\n{\"base\":\"e3b0c44298fc1c14\",\"put\""))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, journal []byte) {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, MetaDir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(journalPath(dir), journal, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := ReadState(dir)
		if err != nil {
			return
		}
		j, err := OpenStateJournal(dir)
		if err != nil {
			t.Fatalf("OpenStateJournal after ReadState succeeded: %v", err)
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		got, err := ReadState(dir)
		if err != nil {
			t.Fatal(err)
		}
		// A state with no files may come back as an empty list rather than none: the same state.
		if diff := cmp.Diff(s.Files, got.Files, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("state after compaction differs (-before +after):\n%s", diff)
		}
		if _, err := os.Stat(journalPath(dir)); !os.IsNotExist(err) {
			t.Errorf("journal after Close: %v, want it gone", err)
		}
	})
}
