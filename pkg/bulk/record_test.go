package bulk

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRecordRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "exports")
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := Record{StatusURL: "https://ehr.example/fhir/status/1", FHIRBase: "https://ehr.example/fhir",
		TokenURL: "https://ehr.example/token", ExportURL: "https://ehr.example/fhir/Group/g/$export", Types: []string{"Patient"}}
	if err := SaveRecord(dir, r, now); err != nil {
		t.Fatal(err)
	}
	got, err := LoadRecord(dir, r.StatusURL)
	if err != nil {
		t.Fatal(err)
	}
	r.Created = "2026-01-02T03:04:05Z"
	if diff := cmp.Diff(&r, got); diff != "" {
		t.Errorf("LoadRecord(SaveRecord(r)) differs (-want +got):\n%s", diff)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, RecordPath(dir, r.StatusURL): 0o600} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Errorf("mode of %s = %v (%v), want %v", path, fi.Mode().Perm(), err, want)
		}
	}
	if _, err := LoadRecord(dir, r.StatusURL+"2"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadRecord(unknown URL) = %v, want fs.ErrNotExist", err)
	}
	if err := RemoveRecord(dir, r.StatusURL); err != nil {
		t.Fatal(err)
	}
	if err := RemoveRecord(dir, r.StatusURL); err != nil {
		t.Errorf("RemoveRecord twice = %v, want nil", err)
	}
	if _, err := LoadRecord(dir, r.StatusURL); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadRecord after RemoveRecord = %v, want fs.ErrNotExist", err)
	}
}

// TestRecordRefused: a record decides where credentials go, so one that is a symbolic link,
// lives in a linked folder, names another status URL or is too large is not used.
func TestRecordRefused(t *testing.T) {
	const status = "https://ehr.example/fhir/status/1"
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "exports")
	os.Mkdir(dir, 0o700)
	elsewhere := filepath.Join(tmp, "elsewhere.json")
	os.WriteFile(elsewhere, []byte(`{"statusUrl":"`+status+`","fhirBase":"https://evil.example"}`), 0o600)

	if err := os.Symlink(elsewhere, RecordPath(dir, status)); err != nil {
		t.Fatal(err)
	}
	if r, err := LoadRecord(dir, status); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("LoadRecord(symlinked record) = %+v, %v; want a symbolic-link error", r, err)
	}

	linked := filepath.Join(tmp, "linked")
	os.Symlink(dir, linked)
	if r, err := LoadRecord(linked, status); err == nil {
		t.Errorf("LoadRecord(symlinked folder) = %+v, want an error", r)
	}
	if err := SaveRecord(linked, Record{StatusURL: status, FHIRBase: "https://ehr.example/fhir"}, time.Now()); err == nil {
		t.Errorf("SaveRecord(symlinked folder) = nil, want an error")
	}

	other := filepath.Join(tmp, "other")
	os.Mkdir(other, 0o700)
	os.WriteFile(RecordPath(other, status), []byte(`{"statusUrl":"https://evil.example/status/1","fhirBase":"https://evil.example"}`), 0o600)
	if r, err := LoadRecord(other, status); err == nil {
		t.Errorf("LoadRecord(record of another URL) = %+v, want an error", r)
	}

	big := filepath.Join(tmp, "big")
	os.Mkdir(big, 0o700)
	os.WriteFile(RecordPath(big, status), []byte(`{"statusUrl":"`+status+`","x":"`+strings.Repeat("a", maxRecord)+`"}`), 0o600)
	if r, err := LoadRecord(big, status); err == nil {
		t.Errorf("LoadRecord(oversized record) = %+v, want an error", r)
	}
}

func FuzzLoadRecord(f *testing.F) {
	const status = "https://ehr.example/fhir/status/1"
	f.Add([]byte(`{"statusUrl":"` + status + `","fhirBase":"https://ehr.example/fhir","types":["Patient"]}`))
	f.Add([]byte(`{"statusUrl":1}`))
	f.Add([]byte(`[]`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(RecordPath(dir, status), b, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := LoadRecord(dir, status)
		if err == nil && r.StatusURL != status {
			t.Errorf("LoadRecord(%q) = record of %q, want %q or an error", b, r.StatusURL, status)
		}
	})
}
