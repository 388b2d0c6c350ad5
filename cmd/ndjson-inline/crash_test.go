package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/bulkpipe/bulkpipe/pkg/attachment"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/failpoint"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest/synth"
)

// exportFolder writes an export folder as bulk-fetch leaves it: data files of generated notes
// (absolute attachment URLs on the server), a log whose kickoff names the server, a state.json
// describing every file. It returns the folder's files by name.
func exportFolder(t *testing.T, dir string, srv *fhirtest.Server, ds *synth.Dataset) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	add := func(rt string, ordinal int, lines [][]byte) {
		var b bytes.Buffer
		for _, l := range lines {
			b.Write(bytes.ReplaceAll(l, []byte(synth.FilesBasePlaceholder), []byte(srv.URL())))
			b.WriteByte('\n')
		}
		files[exportdir.FileName(rt, ordinal)] = b.Bytes()
	}
	docs := ds.Resources["DocumentReference"]
	add("DocumentReference", 0, docs[:len(docs)/2])
	add("DocumentReference", 1, docs[len(docs)/2:])
	add("DiagnosticReport", 0, ds.Resources["DiagnosticReport"])
	add("Patient", 0, ds.Resources["Patient"])
	st := &exportdir.State{ExportID: srv.URL() + "/status/job1", TransactionTime: "2024-05-01T00:00:00Z"}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		b := files[name]
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		rt, ord, _, _ := exportdir.ParseName(name)
		sum := sha256.Sum256(b)
		st.Put(exportdir.FileState{Name: name, ItemType: exportdir.ItemOutput, ResourceType: rt, Ordinal: ord,
			Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:]), Lines: bytes.Count(b, []byte("\n"))})
	}
	if err := exportdir.WriteState(dir, st); err != nil {
		t.Fatal(err)
	}
	log := `{"exportId":"` + srv.URL() + `/status/job1","timestamp":"2024-05-01T00:00:00.000Z","eventId":"kickoff","eventDetail":{"exportUrl":"` + srv.URL() + `/$export","errorCode":null}}` + "\n"
	if err := os.WriteFile(filepath.Join(dir, exportdir.LogName), []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	return files
}

// runInline runs this test binary as ndjson-inline (see TestMain) with extra environment.
func runInline(t *testing.T, env []string, args ...string) (*os.ProcessState, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), append([]string{runMainEnv + "=1", "BULK_FHIR_URL="}, env...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if _, ok := errors.AsType[*exec.ExitError](err); err != nil && !ok {
		t.Fatal(err)
	}
	return cmd.ProcessState, stderr.String()
}

// snapshot reads the data files and state.json of a folder.
func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || e.Name() == exportdir.LogName {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	b, err := os.ReadFile(filepath.Join(dir, exportdir.MetaDir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	out["state.json"] = b
	return out
}

// TestCrashInPlace kills ndjson-inline (kill -9, by failpoint) before a rename, after a rename
// and after the state update, on each file it rewrites: every file is always whole (the old one
// or the new one), and a rerun ends exactly as one clean run does, state.json included
// (DESIGN.md §8).
func TestCrashInPlace(t *testing.T) {
	if !failpoint.Enabled {
		t.Skip("failpoints need go test -tags failpoint (make test)")
	}
	ds := synth.Generate(synth.Options{Patients: 3, Seed: 11})
	srv, err := fhirtest.NewServer(fhirtest.Options{Data: ds})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	cleanDir := t.TempDir()
	orig := exportFolder(t, cleanDir, srv, ds)
	if st, stderr := runInline(t, nil, "--in-place", cleanDir); !st.Success() {
		t.Fatalf("clean run: %v\n%s", st, stderr)
	}
	clean := snapshot(t, cleanDir)
	rewritten := 0
	for name, b := range orig {
		if !bytes.Equal(b, clean[name]) {
			rewritten++
		}
	}
	if rewritten != 3 {
		t.Fatalf("the clean run rewrote %d files, want 3 (two DocumentReference files, one DiagnosticReport)", rewritten)
	}

	for _, point := range []string{attachment.FailBeforeRename, attachment.FailAfterRename, attachment.FailAfterState} {
		for hit := 1; hit <= rewritten; hit++ {
			t.Run(fmt.Sprintf("%s:%d", point, hit), func(t *testing.T) {
				dir := t.TempDir()
				exportFolder(t, dir, srv, ds)
				st, stderr := runInline(t, []string{"BULKPIPE_CRASH=" + fmt.Sprintf("%s:%d", point, hit)}, "--in-place", dir)
				if ws, ok := st.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
					t.Fatalf("ndjson-inline was not killed at %s:%d: %v\n%s", point, hit, st, stderr)
				}
				after := snapshot(t, dir)
				for name, b := range after {
					if name == "state.json" || strings.HasPrefix(name, ".") {
						continue
					}
					if !bytes.Equal(b, orig[name]) && !bytes.Equal(b, clean[name]) {
						t.Errorf("after the kill, %s is neither the old file nor the new one", name)
					}
				}
				if st, stderr := runInline(t, nil, "--in-place", dir); !st.Success() {
					t.Fatalf("rerun: %v\n%s", st, stderr)
				}
				again := snapshot(t, dir)
				if len(again) != len(clean) {
					t.Errorf("after the rerun the folder holds %d files, want %d (a temporary file left?)", len(again), len(clean))
				}
				for name, b := range clean {
					if !bytes.Equal(again[name], b) {
						t.Errorf("after the rerun %s differs from the clean run's", name)
					}
				}
			})
		}
	}
}
