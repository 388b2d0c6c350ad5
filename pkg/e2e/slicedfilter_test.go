package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
)

// TestExportSlicedIgnoredFilterE2E: against a server that silently ignores _typeFilter,
// scripts/export-sliced.sh with PARALLEL=0 checks the first slice as it finishes, stops before
// exporting the next, and says to export the type unsliced; run in parallel, all slices are
// fetched and the merge reports each of them while still completing.
func TestExportSlicedIgnoredFilterE2E(t *testing.T) {
	needBinaries(t, "bulk-kickoff", "bulk-poll", "bulk-fetch", "ndjson-merge")
	srv := fetchServer(t, fhirtest.Options{Patients: 3, Seed: 35, Faults: []fhirtest.Fault{{Kind: fhirtest.FaultIgnoreFilter}}})
	work := t.TempDir()
	script := filepath.Join(moduleRoot(), "scripts", "export-sliced.sh")
	env := []string{"CATEGORIES=laboratory vital-signs", "LOAD=0"}

	r := sh(t, work, append(env, "PARALLEL=0"), "sh '"+script+"' '"+srv.URL()+"/Group/all' seq")
	if r.Code != 1 {
		t.Fatalf("export-sliced.sh PARALLEL=0: exit %d, want 1\n%s", r.Code, r.Stderr)
	}
	for _, want := range []string{
		"ndjson-merge: slice seq/slices/laboratory: ",
		"do not match its filter category=laboratory",
		"stopped after slice laboratory (see above)",
		"export Observation once unsliced instead: bulk-kickoff",
	} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("export-sliced.sh PARALLEL=0: stderr lacks %q:\n%s", want, r.Stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(work, "seq", "state", "vital-signs.status")); err == nil {
		t.Errorf("the vital-signs slice was kicked off after the laboratory slice showed the filter ignored")
	}

	r = sh(t, work, env, "sh '"+script+"' '"+srv.URL()+"/Group/all' par")
	if r.Code != 0 {
		t.Fatalf("export-sliced.sh in parallel: exit %d\n%s", r.Code, r.Stderr)
	}
	if n := strings.Count(r.Stderr, "do not match its filter"); n != 3 {
		t.Errorf("export-sliced.sh in parallel: %d slices reported, want 3 (laboratory, vital-signs, missing):\n%s", n, r.Stderr)
	}
	if _, err := os.Stat(filepath.Join(work, "par", "merged", "Observation.000.ndjson")); err != nil {
		t.Errorf("the merge did not complete: %v", err)
	}
}
