package exportdir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s, err := ReadState(dir)
	if err != nil || len(s.Files) != 0 || s.ExportID != "" {
		t.Fatalf("ReadState(new dir) = %+v, %v, want empty state", s, err)
	}
	s.ExportID = "https://x/status/1"
	s.TransactionTime = "2024-01-01T00:00:00Z"
	s.Put(FileState{Name: "Patient.000.ndjson", ItemType: ItemOutput, ResourceType: "Patient", Size: 10, SHA256: "ab", Lines: 2})
	s.Put(FileState{Name: "deleted/Bundle.000.ndjson", ItemType: ItemDeleted, ResourceType: "Bundle", Size: 5, SHA256: "cd", Lines: 1})
	s.Put(FileState{Name: "Patient.000.ndjson", ItemType: ItemOutput, ResourceType: "Patient", Size: 12, SHA256: "ef", Lines: 2, Inlined: true})
	if err := WriteState(dir, s); err != nil {
		t.Fatal(err)
	}
	got, err := ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(s, got); diff != "" {
		t.Errorf("ReadState(WriteState(s)) mismatch (-want +got):\n%s", diff)
	}
	if f, ok := got.File("Patient.000.ndjson"); !ok || f.SHA256 != "ef" || !f.Inlined {
		t.Errorf("File(Patient.000.ndjson) = %+v, %v, want the replaced entry", f, ok)
	}
	if _, ok := got.File("nope"); ok {
		t.Errorf("File(nope) found, want not")
	}
	b, _ := os.ReadFile(filepath.Join(dir, ".bulkpipe", "state.json"))
	if !strings.Contains(string(b), `"version": 1`) {
		t.Errorf("state.json = %s, want a version field", b)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".bulkpipe", ".*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

func TestReadStateErrors(t *testing.T) {
	for in, want := range map[string]string{
		"{":                        "unexpected end of JSON input",
		`{"version":2,"files":[]}`: "version 2 was written by a newer bulkpipe",
	} {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, ".bulkpipe", "state.json"), in)
		if _, err := ReadState(dir); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ReadState(%s) = %v, want %q", in, err, want)
		}
	}
}

func TestLock(t *testing.T) {
	dir := t.TempDir()
	unlock, err := Lock(dir)
	if err != nil {
		t.Fatalf("Lock = %v", err)
	}
	// flock belongs to the open file, so a second Lock fails even within one process.
	_, err = Lock(dir)
	want := fmt.Sprintf("%s is in use by PID %d", dir, os.Getpid())
	if err == nil || err.Error() != want || !errors.Is(err, ErrLocked) {
		t.Errorf("second Lock = %v, want %q wrapping ErrLocked", err, want)
	}
	if le, ok := errors.AsType[*LockedError](err); !ok || le.PID != os.Getpid() {
		t.Errorf("second Lock = %#v, want *LockedError with our PID", err)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	unlock, err = Lock(dir)
	if err != nil {
		t.Fatalf("Lock after unlock = %v", err)
	}
	unlock()

	// A lock file left by a process that died holds no flock: it does not block.
	dir = t.TempDir()
	writeFile(t, filepath.Join(dir, ".bulkpipe", "lock"), "99999999\n")
	unlock, err = Lock(dir)
	if err != nil {
		t.Fatalf("Lock over a stale lock file = %v", err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, ".bulkpipe", "lock"))
	if got, want := string(b), fmt.Sprintf("%d\n", os.Getpid()); got != want {
		t.Errorf("lock file = %q, want %q", got, want)
	}
	unlock()
}

// TestEncodeStateIsMarshalIndent: state.json written an entry at a time has the bytes
// json.MarshalIndent gives, which earlier versions wrote and which snapshot bases hash. A field
// added to State and not to encodeState shows here.
func TestEncodeStateIsMarshalIndent(t *testing.T) {
	full := FileState{Name: "error/OperationOutcome.001.ndjson.gz", ItemType: ItemError, ResourceType: "OperationOutcome",
		Ordinal: 1, Size: 1 << 40, SHA256: strings.Repeat("0f", 32), Lines: 7, Inlined: true}
	tests := []*State{
		{Version: stateVersion},
		{Version: stateVersion, ExportID: "urn:x", Files: []FileState{}},
		{Version: stateVersion, ExportID: "https://x/status/1?a=1&b=<2>", TransactionTime: "2024-01-01T00:00:00Z",
			Files: []FileState{fileState("Patient.000.ndjson", 3)}},
		{Version: stateVersion, ExportID: "https://ehr.example/fhir/status/\u00e9\u2028", TransactionTime: "2024",
			Files: []FileState{fileState("Patient.000.ndjson", 3), full, fileState("Patient.001.ndjson", 0)}},
	}
	for _, s := range tests {
		c := *s
		if c.Files == nil {
			c.Files = []FileState{}
		}
		want, err := json.MarshalIndent(&c, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, '\n')
		var got bytes.Buffer
		if err := encodeState(&got, s); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(want), got.String()); diff != "" {
			t.Errorf("encodeState(%d files) differs from MarshalIndent (-want +got):\n%s", len(s.Files), diff)
		}
	}
}
