package exportdir

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFileName(t *testing.T) {
	tests := []struct {
		typ  string
		ord  int
		want string
	}{
		{"Patient", 0, "Patient.000.ndjson"},
		{"Observation", 12, "Observation.012.ndjson"},
		{"Observation", 1234, "Observation.1234.ndjson"},
	}
	for _, tt := range tests {
		if got := FileName(tt.typ, tt.ord); got != tt.want {
			t.Errorf("FileName(%q, %d) = %q, want %q", tt.typ, tt.ord, got, tt.want)
		}
	}
	if got, want := Rel(ItemDeleted, "Bundle", 1), "deleted/Bundle.001.ndjson"; got != want {
		t.Errorf("Rel(deleted, Bundle, 1) = %q, want %q", got, want)
	}
	if got, want := Rel(ItemOutput, "Patient", 0), "Patient.000.ndjson"; got != want {
		t.Errorf("Rel(output, Patient, 0) = %q, want %q", got, want)
	}
}

func TestParseName(t *testing.T) {
	tests := []struct {
		name    string
		typ     string
		ord     int
		gz, ok  bool
		comment string
	}{
		{"Patient.000.ndjson", "Patient", 0, false, true, "ours, Cumulus"},
		{"Observation.012.ndjson", "Observation", 12, false, true, ""},
		{"1.Patient.ndjson", "Patient", 1, false, true, "bulk-data-client"},
		{"10.MedicationRequest.ndjson", "MedicationRequest", 10, false, true, ""},
		{"Patient.ndjson", "Patient", -1, false, true, "plain"},
		{"Patient.001.ndjson.gz", "Patient", 1, true, true, "SMART Fetch"},
		{"Patient.ndjson.gz", "Patient", -1, true, true, ""},
		{"1.Patient.ndjson.gz", "Patient", 1, true, true, ""},
		{"Patient.000.ndjson.part", "", 0, false, false, "download in progress"},
		{".Patient.000.ndjson.tmp-123", "", 0, false, false, "atomicfile temp"},
		{".Patient.000.ndjson", "", 0, false, false, "hidden"},
		{"log.ndjson", "", 0, false, false, "log"},
		{"log.2024.ndjson", "", 0, false, false, "renamed log"},
		{"manifest.json", "", 0, false, false, ""},
		{"patient.ndjson", "", 0, false, false, "not a FHIR type"},
		{"Patient.x.ndjson", "", 0, false, false, ""},
		{"Patient.1.2.ndjson", "", 0, false, false, ""},
		{"1.2.ndjson", "", 0, false, false, ""},
		{"Pat-ient.ndjson", "", 0, false, false, ""},
		{"Patient.ndjson~", "", 0, false, false, "editor backup"},
		{".ndjson", "", 0, false, false, ""},
		{"Patient.9999999999.ndjson", "", 0, false, false, "ordinal too large"},
	}
	for _, tt := range tests {
		typ, ord, gz, ok := ParseName(tt.name)
		if typ != tt.typ || ord != tt.ord || gz != tt.gz || ok != tt.ok {
			t.Errorf("ParseName(%q) = %q, %d, %v, %v, want %q, %d, %v, %v (%s)", tt.name, typ, ord, gz, ok, tt.typ, tt.ord, tt.gz, tt.ok, tt.comment)
		}
	}
}

func touch(t *testing.T, dir string, rels ...string) {
	t.Helper()
	for _, rel := range rels {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("{}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

type found struct {
	Rel, ItemType, Type string
	Ord                 int
	Gzip                bool
}

func discover(t *testing.T, dir string) []found {
	t.Helper()
	files, err := Discover(dir)
	if err != nil {
		t.Fatalf("Discover(%s) = %v", dir, err)
	}
	var got []found
	for _, f := range files {
		if f.Path != filepath.Join(dir, filepath.FromSlash(f.Rel)) {
			t.Errorf("Discover: Path = %q, want DIR + %q", f.Path, f.Rel)
		}
		got = append(got, found{f.Rel, string(f.ItemType), f.ResourceType, f.Ordinal, f.Gzip})
	}
	return got
}

func TestDiscover(t *testing.T) {
	tests := []struct {
		layout string
		files  []string
		want   []found
	}{
		{
			"ours",
			[]string{"Patient.000.ndjson", "Observation.001.ndjson", "Observation.000.ndjson", "Observation.010.ndjson", "Observation.002.ndjson",
				"deleted/Bundle.000.ndjson", "error/OperationOutcome.000.ndjson",
				"manifest.json", "log.ndjson", ".bulkpipe/state.json", ".bulkpipe/Patient.000.ndjson",
				"Observation.003.ndjson.part", ".Observation.004.ndjson.tmp-99"},
			[]found{
				{"Observation.000.ndjson", "output", "Observation", 0, false},
				{"Observation.001.ndjson", "output", "Observation", 1, false},
				{"Observation.002.ndjson", "output", "Observation", 2, false},
				{"Observation.010.ndjson", "output", "Observation", 10, false},
				{"Patient.000.ndjson", "output", "Patient", 0, false},
				{"deleted/Bundle.000.ndjson", "deleted", "Bundle", 0, false},
				{"error/OperationOutcome.000.ndjson", "error", "OperationOutcome", 0, false},
			},
		},
		{
			"bulk-data-client",
			[]string{"1.Patient.ndjson", "2.Observation.ndjson", "10.Observation.ndjson", "3.Observation.ndjson",
				"deleted/1.Bundle.ndjson", "deleted/whatever.ndjson", "error/1.OperationOutcome.ndjson",
				"attachments/x.pdf", "log.ndjson", "manifest.json"},
			[]found{
				{"2.Observation.ndjson", "output", "Observation", 2, false},
				{"3.Observation.ndjson", "output", "Observation", 3, false},
				{"10.Observation.ndjson", "output", "Observation", 10, false},
				{"1.Patient.ndjson", "output", "Patient", 1, false},
				{"deleted/whatever.ndjson", "deleted", "Bundle", -1, false},
				{"deleted/1.Bundle.ndjson", "deleted", "Bundle", 1, false},
				{"error/1.OperationOutcome.ndjson", "error", "OperationOutcome", 1, false},
			},
		},
		{
			"SMART Fetch",
			[]string{"Patient.001.ndjson.gz", "Patient.000.ndjson.gz", "Condition.000.ndjson.gz", "log.export.ndjson", "deleted/Bundle.000.ndjson.gz"},
			[]found{
				{"Condition.000.ndjson.gz", "output", "Condition", 0, true},
				{"Patient.000.ndjson.gz", "output", "Patient", 0, true},
				{"Patient.001.ndjson.gz", "output", "Patient", 1, true},
				{"deleted/Bundle.000.ndjson.gz", "deleted", "Bundle", 0, true},
			},
		},
		{
			"plain names mixed",
			[]string{"Patient.ndjson", "Patient.000.ndjson", "Encounter.ndjson", "notes.txt", "patients.ndjson",
				"deleted/log.ndjson", "deleted/.hidden.ndjson", "deleted/x.json", "error/errors.ndjson"},
			[]found{
				{"Encounter.ndjson", "output", "Encounter", -1, false},
				{"Patient.ndjson", "output", "Patient", -1, false},
				{"Patient.000.ndjson", "output", "Patient", 0, false},
				{"error/errors.ndjson", "error", "OperationOutcome", -1, false},
			},
		},
		{"empty", nil, nil},
	}
	for _, tt := range tests {
		dir := t.TempDir()
		touch(t, dir, tt.files...)
		if diff := cmp.Diff(tt.want, discover(t, dir)); diff != "" {
			t.Errorf("Discover(%s layout) mismatch (-want +got):\n%s", tt.layout, diff)
		}
	}
}

func TestDiscoverSymlinkAndErrors(t *testing.T) {
	dir := t.TempDir()
	other := t.TempDir()
	touch(t, other, "real.ndjson")
	if err := os.Symlink(filepath.Join(other, "real.ndjson"), filepath.Join(dir, "Patient.000.ndjson")); err != nil {
		t.Skip("no symlinks:", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "Patient.002.ndjson"), 0o755); err != nil {
		t.Fatal(err)
	}
	want := []found{{"Patient.000.ndjson", "output", "Patient", 0, false}}
	if diff := cmp.Diff(want, discover(t, dir)); diff != "" {
		t.Errorf("Discover with symlinks mismatch (-want +got):\n%s", diff)
	}
	// A dangling link where a data file should be would make a type look complete without it.
	dangling := filepath.Join(dir, "Patient.001.ndjson")
	if err := os.Symlink(filepath.Join(other, "missing"), dangling); err != nil {
		t.Fatal(err)
	}
	if _, err := Discover(dir); err == nil || !strings.Contains(err.Error(), dangling) {
		t.Errorf("Discover with a dangling data-file link = %v, want an error naming %s", err, dangling)
	}
	if _, err := Discover(filepath.Join(dir, "nope")); err == nil {
		t.Errorf("Discover(missing dir) = nil error, want one")
	}
}

func TestOpenFile(t *testing.T) {
	dir := t.TempDir()
	data := []byte("{\"a\":1}\n{\"b\":2}\n")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(data)
	zw.Close()
	files := map[string][]byte{
		"Patient.000.ndjson":       data,
		"Patient.001.ndjson.gz":    gz.Bytes(),
		"Patient.002.ndjson":       gz.Bytes(), // gzip saved under a plain name
		"Patient.003.ndjson.gz":    nil,        // empty
		"Patient.004.ndjson":       nil,
		"Patient.005.ndjson.gz":    []byte("not gzip"),
		"Patient.006.ndjson.small": []byte("x"),
	}
	want := map[string]string{
		"Patient.000.ndjson":       string(data),
		"Patient.001.ndjson.gz":    string(data),
		"Patient.002.ndjson":       string(data),
		"Patient.003.ndjson.gz":    "",
		"Patient.004.ndjson":       "",
		"Patient.005.ndjson.gz":    "error",
		"Patient.006.ndjson.small": "x",
	}
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		rc, err := OpenFile(p)
		got := "error"
		if err == nil {
			var all []byte
			all, err = io.ReadAll(rc)
			if cerr := rc.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				got = string(all)
			}
		}
		if got != want[name] {
			t.Errorf("OpenFile(%s) read %q (err %v), want %q", name, got, err, want[name])
		}
	}
	if _, err := OpenFile(filepath.Join(dir, "missing")); err == nil {
		t.Errorf("OpenFile(missing) = nil error, want one")
	}
}
