package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
)

// TestBadInputErrorCount: a server that copies a failed output file's entry, count included, into
// its error item (bulk-testserver --fault error-count). The README pipeline saves error/ whatever
// its count, prints the server's issue and exits 1 on it, without asking for a rerun that would
// fail the same way.
func TestBadInputErrorCount(t *testing.T) {
	needBinaries(t, "bulk-kickoff", "bulk-poll", "bulk-fetch")
	srv := biServer(t, fhirtest.Options{Patients: 5, Seed: 87, Faults: []fhirtest.Fault{{Kind: fhirtest.FaultErrorCount}}})
	manifest := biManifest(t, srv.URL(), nil)
	if n := gjson.Get(manifest, "error.0.count").Int(); n < 2 {
		t.Fatalf("the manifest's error item has count %d, want the failed file's (>= 2): %s", n, manifest)
	}
	dir := filepath.Join(t.TempDir(), "export")
	r := run(t, nil, manifest, "bulk-fetch", "--dir", dir)
	oo := filepath.Join(dir, "error", "OperationOutcome.000.ndjson")
	b, err := os.ReadFile(oo)
	diag := gjson.GetBytes(b, "issue.0.diagnostics").Str
	if err != nil || diag == "" {
		t.Fatalf("%s: %.200q, %v; want the saved error file", oo, b, err)
	}
	if r.Code != 1 || !strings.Contains(r.Stderr, oo+": error: "+diag) || strings.Contains(r.Stderr, "run again") {
		t.Errorf("bulk-fetch: exit %d, stderr:\n%s\nwant exit 1 printing %q, and no rerun advice", r.Code, r.Stderr, diag)
	}
	if !regexp.MustCompile(`warning: .*OperationOutcome.000.ndjson: 1 resources, but the manifest's count is \d+`).MatchString(r.Stderr) {
		t.Errorf("stderr has no warning about the error file's count:\n%s", r.Stderr)
	}
	if parts, _ := filepath.Glob(filepath.Join(dir, "error", "*.part")); len(parts) > 0 {
		t.Errorf(".part files left in error/: %q", parts)
	}
}

// TestSecurityFetchSymlinks: a symbolic link at a name bulk-fetch creates or appends to in DIR
// (a .part, the lock, the log, the error/ folder) is refused with an error naming it, and the
// file or folder it points to outside DIR is unchanged.
func TestSecurityFetchSymlinks(t *testing.T) {
	needBinaries(t, "bulk-kickoff", "bulk-poll", "bulk-fetch")
	srv := biServer(t, fhirtest.Options{Patients: 3, Seed: 88})
	manifest := biManifest(t, srv.URL(), nil)
	for _, name := range []string{"Patient.000.ndjson.part", ".bulkpipe/lock", exportdir.LogName, "error"} {
		t.Run(strings.ReplaceAll(name, "/", "_"), func(t *testing.T) {
			root := t.TempDir()
			canary := filepath.Join(root, "canary")
			isDir := name == "error"
			if isDir {
				os.Mkdir(canary, 0o755)
			} else {
				biWrite(t, canary, "canary\n")
			}
			dir := filepath.Join(root, "export")
			link := filepath.Join(dir, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(canary, link); err != nil {
				t.Fatal(err)
			}
			r := run(t, nil, manifest, "bulk-fetch", "--dir", dir, "--no-delete")
			biRejected(t, r, "bulk-fetch", link, "symbolic link")
			if isDir {
				if entries, _ := os.ReadDir(canary); len(entries) > 0 {
					t.Errorf("%d entries written into the link's target", len(entries))
				}
			} else if b, err := os.ReadFile(canary); err != nil || string(b) != "canary\n" {
				t.Errorf("the link's target = %q, %v; want it unchanged", b, err)
			}
		})
	}
}
