package attachment

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
)

// exportFolder writes an export folder with a state.json that describes each of its files (name
// → content), as bulk-fetch leaves it.
func exportFolder(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	st := &exportdir.State{ExportID: "https://x/status/1"}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		rt, ord, _, _ := exportdir.ParseName(name)
		sum := sha256.Sum256([]byte(content))
		st.Put(exportdir.FileState{Name: name, ItemType: exportdir.ItemOutput, ResourceType: rt, Ordinal: ord,
			Size: int64(len(content)), SHA256: hex.EncodeToString(sum[:]), Lines: strings.Count(content, "\n")})
	}
	if err := exportdir.WriteState(dir, st); err != nil {
		t.Fatal(err)
	}
	return dir
}

// inPlace runs InPlace over paths with an inliner on srv (nil: no FHIR base known), and
// returns the files it reported and its warnings.
func inPlace(t *testing.T, srv *fhirtest.Server, paths ...string) (files, warns []string, st Stats, err error) {
	t.Helper()
	o := &InPlaceOptions{
		Paths: paths,
		Inliner: func(string) (*Inliner, bool, error) {
			if srv == nil {
				in, _ := newInliner(t, newClient(t, "https://unused.invalid/fhir", nil), nil)
				return in, false, nil
			}
			in, _ := newInliner(t, newClient(t, srv.URL(), nil), nil)
			return in, true, nil
		},
		Warn: func(msg string) { warns = append(warns, msg) },
		OnFile: func(path string, _ Stats, changed bool) {
			files = append(files, filepath.Base(path)+map[bool]string{true: " rewritten", false: " unchanged"}[changed])
		},
	}
	st, err = InPlace(t.Context(), o)
	return files, warns, st, err
}

// TestInPlaceExportFolder: the files of the selected types are rewritten, others not read, the
// state follows the rewrite, and a rerun changes nothing.
func TestInPlaceExportFolder(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Patients: 1})
	doc := docRef("1", `{"contentType":"text/plain","url":"Binary/hello-world"}`) + "\n"
	dir := exportFolder(t, map[string]string{"DocumentReference.000.ndjson": doc, "Patient.000.ndjson": `{"resourceType":"Patient","id":"p"}` + "\n"})
	files, warns, st, err := inPlace(t, srv, dir)
	if err != nil || st.Inlined != 1 || !slices.Equal(files, []string{"DocumentReference.000.ndjson rewritten"}) || warns != nil {
		t.Fatalf("InPlace = %q, %q, %+v, %v; want one file rewritten, one attachment inlined", files, warns, st, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "DocumentReference.000.ndjson"))
	if err != nil || !strings.Contains(string(b), `"data":"aGVsbG8gd29ybGQ="`) {
		t.Fatalf("rewritten file = %s, %v; want the data inlined", b, err)
	}
	state, err := exportdir.ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if fs, _ := state.File("DocumentReference.000.ndjson"); fs.SHA256 != hex.EncodeToString(sum[:]) || fs.Size != int64(len(b)) || !fs.Inlined {
		t.Errorf("state entry = %+v, want the rewritten file's size and SHA-256, inlined", fs)
	}
	files, _, _, err = inPlace(t, srv, dir)
	if err != nil || !slices.Equal(files, []string{"DocumentReference.000.ndjson unchanged"}) {
		t.Errorf("rerun = %q, %v; want the file unchanged", files, err)
	}
}

// TestInPlaceNoBase: without a FHIR base a file that needs a download is a *NoBaseError and is
// left as it was; one that needs none is fine.
func TestInPlaceNoBase(t *testing.T) {
	doc := docRef("1", `{"contentType":"text/plain","url":"Binary/hello-world"}`) + "\n"
	dir := exportFolder(t, map[string]string{"DocumentReference.000.ndjson": doc})
	_, _, _, err := inPlace(t, nil, dir)
	if e, ok := errors.AsType[*NoBaseError](err); !ok || e.Dir != dir || filepath.Base(e.Path) != "DocumentReference.000.ndjson" {
		t.Errorf("InPlace without a base = %v, want a *NoBaseError naming the file and %s", err, dir)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "DocumentReference.000.ndjson")); string(b) != doc {
		t.Errorf("the file was changed to %s", b)
	}
	done := docRef("2", `{"contentType":"text/plain","url":"Binary/x","data":"eA=="}`) + "\n"
	dir = exportFolder(t, map[string]string{"DocumentReference.000.ndjson": done})
	if files, _, _, err := inPlace(t, nil, dir); err != nil || len(files) != 1 {
		t.Errorf("InPlace of an inlined file without a base = %q, %v; want it unchanged", files, err)
	}
}

// TestInPlaceRecordsRenamedFile: a file an earlier run renamed but did not record (killed at
// inline.after-rename) is verified and recorded, and said so; one that does not verify is left
// for bulk-fetch --verify.
func TestInPlaceRecordsRenamedFile(t *testing.T) {
	done := docRef("2", `{"contentType":"text/plain","url":"Binary/x","data":"eA=="}`) + "\n"
	for _, tt := range []struct {
		content, want string
		recorded      bool
	}{
		{done, "recorded in .bulkpipe/state.json", true},
		{`{"resourceType":"Patient","id":"p"}` + "\n", "does not verify", false},
	} {
		dir := exportFolder(t, map[string]string{"DocumentReference.000.ndjson": "{}\n"})
		path := filepath.Join(dir, "DocumentReference.000.ndjson")
		if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
			t.Fatal(err)
		}
		_, warns, _, err := inPlace(t, nil, dir)
		if err != nil || len(warns) != 1 || !strings.Contains(warns[0], tt.want) || !strings.HasPrefix(warns[0], path+": ") {
			t.Errorf("InPlace(%q) = %q, %v; want one warning about %s saying %q", tt.content, warns, err, path, tt.want)
		}
		state, _ := exportdir.ReadState(dir)
		if fs, _ := state.File("DocumentReference.000.ndjson"); fs.Inlined != tt.recorded || fs.Size == int64(len(tt.content)) != tt.recorded {
			t.Errorf("InPlace(%q): state entry = %+v, want recorded %v", tt.content, fs, tt.recorded)
		}
	}
}

// TestInPlaceStateCostPerFile: recording the rewrites of many files appends to the folder's
// journal; state.json is rewritten a logarithmic number of times (compactions), not once per
// file, which over 50,000 files wrote O(n²) bytes.
func TestInPlaceStateCostPerFile(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Patients: 1})
	const n = 300
	files := map[string]string{}
	for i := range n {
		files[fmt.Sprintf("DocumentReference.%03d.ndjson", i)] = docRef(strconv.Itoa(i), `{"contentType":"text/plain","url":"Binary/hello-world"}`) + "\n"
	}
	dir := exportFolder(t, files)
	statePath := filepath.Join(dir, exportdir.MetaDir, "state.json")
	last, err := os.Stat(statePath)
	if err != nil {
		t.Fatal(err)
	}
	rewrites := 0
	o := &InPlaceOptions{
		Paths: []string{dir},
		Inliner: func(string) (*Inliner, bool, error) {
			in, _ := newInliner(t, newClient(t, srv.URL(), nil), nil)
			return in, true, nil
		},
		OnFile: func(string, Stats, bool) {
			// atomicfile renames a new file into place: a rewrite is a new inode.
			if fi, err := os.Stat(statePath); err == nil && !os.SameFile(fi, last) {
				rewrites++
				last = fi
			}
		},
	}
	st, err := InPlace(t.Context(), o)
	if err != nil || st.Inlined != n {
		t.Fatalf("InPlace = %+v, %v; want %d attachments inlined", st, err, n)
	}
	if limit := 2 * bits.Len(n); rewrites > limit {
		t.Errorf("state.json rewritten %d times while recording %d files, want at most %d", rewrites, n, limit)
	}
	state, err := exportdir.ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	inlined := 0
	for _, fs := range state.Files {
		if fs.Inlined {
			inlined++
		}
	}
	if inlined != n {
		t.Errorf("state.json after the run records %d files inlined, want %d", inlined, n)
	}
	if _, err := os.Stat(filepath.Join(dir, exportdir.MetaDir, "state.journal")); !os.IsNotExist(err) {
		t.Errorf("state.journal after the run: %v, want it folded into state.json", err)
	}
}
