package fetch

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
)

// TestFetchReportsOnlyRecorded: with many tiny files finishing at once, every file bulk-fetch
// reports (Written, which is stdout, and Done) is in the state a reader sees at that moment, and
// its download_complete is in the log: a report never runs ahead of the group commit.
func TestFetchReportsOnlyRecorded(t *testing.T) {
	const files = 300
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"resourceType":"Patient","id":%q}`+"\n", strings.TrimPrefix(r.URL.Path, "/f/"))
	}))
	t.Cleanup(srv.Close)
	manifest := tinyPatientManifest(t, srv.URL, files)
	dir := t.TempDir()
	c := newClient(t, srv.URL, fhirclient.Options{})
	var mu sync.Mutex
	var early []string
	reported := 0
	check := func(path string) {
		rel, _ := filepath.Rel(dir, path)
		s, err := exportdir.ReadState(dir)
		mu.Lock()
		defer mu.Unlock()
		reported++
		if _, ok := s.File(filepath.ToSlash(rel)); err != nil || !ok {
			early = append(early, rel)
		}
	}
	_, _, err := fetchInto(t, dir, c, manifest, func(o *Options) {
		o.NoDelete, o.Parallel = true, 8
		o.On.Written = check
	})
	if err != nil {
		t.Fatal(err)
	}
	if reported != files || len(early) > 0 {
		t.Errorf("%d files reported, %d of them before the state recorded them (%.5q); want %d, none early", reported, len(early), early, files)
	}
	log, _ := os.ReadFile(filepath.Join(dir, exportdir.LogName))
	if n := bytes.Count(log, []byte(`"eventId":"download_complete"`)); n != files {
		t.Errorf("download_complete events: %d, want %d", n, files)
	}
}

// TestCommitterGroups: files that wait for the committer together are synced and recorded
// together, as one journal line, and each is reported only after that line is on disk.
func TestCommitterGroups(t *testing.T) {
	dir := t.TempDir()
	state, err := exportdir.OpenStateJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	var reported []string
	e := &engine{o: Options{Dir: dir}, state: state, byID: map[identity]string{}}
	e.o.On.Written = func(path string) {
		rel, _ := filepath.Rel(dir, path)
		if st, err := exportdir.ReadState(dir); err != nil || !slices.ContainsFunc(st.Files, func(f exportdir.FileState) bool { return f.Name == rel }) {
			t.Errorf("%s reported before the state recorded it (%v)", rel, err)
		}
		reported = append(reported, rel)
	}
	c := newCommitter(e)
	const n = 50
	for i := range n {
		f := &file{id: identity{exportdir.ItemOutput, "Patient", i}, url: "https://x/f/" + strconv.Itoa(i)}
		rel := f.id.rel()
		if err := os.WriteFile(filepath.Join(dir, rel), []byte(patients), 0o644); err != nil {
			t.Fatal(err)
		}
		c.in <- verifiedFile{f: f, fs: exportdir.FileState{Name: rel, ItemType: exportdir.ItemOutput, ResourceType: "Patient",
			Ordinal: i, Size: int64(len(patients)), Lines: 3}, size: int64(len(patients))}
	}
	close(c.in)
	c.run()
	journal, err := os.ReadFile(filepath.Join(dir, exportdir.MetaDir, "state.journal"))
	if err != nil {
		t.Fatal(err)
	}
	if lines := bytes.Count(journal, []byte("\n")); lines != 1 || len(reported) != n || e.downloaded != n {
		t.Errorf("%d files waiting: %d journal lines, %d reported, %d downloaded; want 1 line and %d of each", n, lines, len(reported), e.downloaded, n)
	}
}
