package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest/synth"
)

// TestFetchInline: `bulk-fetch --inline` gives the folder that bulk-fetch followed by
// `ndjson-inline --in-place` gives (same data bytes, state.json marking the notes inlined), with
// attachment faults on, the token kept from the presigned origin, and download events in the log.
func TestFetchInline(t *testing.T) {
	needBinaries(t, "bulk-kickoff", "bulk-poll", "bulk-fetch", "ndjson-inline")
	ds := synth.Generate(synth.Options{Patients: 8, Seed: 11})
	srv, err := fhirtest.NewServer(fhirtest.Options{Data: ds, FilesOrigin: true, FilesRejectAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	work := t.TempDir()
	env := []string{"BULK_BEARER_TOKEN=fetch-inline-s3cret", "BULK_FHIR_URL="}
	status := mustRun(t, env, "", "bulk-kickoff", srv.URL(), "--type", "DocumentReference,DiagnosticReport,Patient").Stdout
	manifest := filepath.Join(work, "manifest.ndjson")
	if err := os.WriteFile(manifest, []byte(mustRun(t, env, status, "bulk-poll").Stdout), 0o644); err != nil {
		t.Fatal(err)
	}

	twoStep := filepath.Join(work, "two-step")
	mustRun(t, env, "", "bulk-fetch", "--dir", twoStep, "--no-delete", manifest)
	mustRun(t, env, "", "ndjson-inline", "--in-place", twoStep)

	for _, spec := range []string{"500@binary*3", "reset@binary*2", "429:0@binary*2"} {
		f, err := fhirtest.ParseFault(spec)
		if err != nil {
			t.Fatal(err)
		}
		srv.AddFault(f)
	}
	before := len(srv.Requests())
	oneStep := filepath.Join(work, "one-step")
	r := mustRun(t, env, "", "bulk-fetch", "--dir", oneStep, "--no-delete", "--inline", manifest)
	if !strings.Contains(r.Stderr, "attachments: ") || !strings.Contains(r.Stderr, " 0 failed") {
		t.Errorf("bulk-fetch --inline stderr has no clean attachment count:\n%s", r.Stderr)
	}
	for _, req := range srv.Requests()[before:] {
		if req.Origin == "files" && req.Authorization != "" {
			t.Errorf("%s %s: the presigned origin got the token", req.Method, req.URL)
		}
	}

	data := func(dir string) map[string]string {
		d := folderDigest(t, dir)
		for k := range d {
			if strings.HasPrefix(k, exportdir.MetaDir+"/") {
				delete(d, k)
			}
		}
		return d
	}
	if diff := cmp.Diff(data(twoStep), data(oneStep)); diff != "" {
		t.Errorf("bulk-fetch --inline differs from bulk-fetch + ndjson-inline (-two-step +one-step):\n%s", diff)
	}
	st, err := exportdir.ReadState(oneStep)
	if err != nil {
		t.Fatal(err)
	}
	inlined := 0
	for _, f := range st.Files {
		if f.Inlined {
			inlined++
			if f.ResourceType != "DocumentReference" && f.ResourceType != "DiagnosticReport" {
				t.Errorf("state marks %s inlined", f.Name)
			}
		}
	}
	if inlined == 0 {
		t.Error("state.json marks no file inlined")
	}
	events, err := exportdir.LogEvents(filepath.Join(oneStep, exportdir.LogName))
	if err != nil {
		t.Fatal(err)
	}
	attachments := 0
	for _, e := range events {
		if e.EventID == "download_complete" && strings.Contains(string(e.EventDetail), `"itemType":"attachment"`) {
			attachments++
		}
	}
	if attachments == 0 {
		t.Error("log.ndjson has no attachment download_complete event")
	}

	// A rerun trusts the inlined files: nothing is fetched again.
	before = len(srv.Requests())
	mustRun(t, env, "", "bulk-fetch", "--dir", oneStep, "--no-delete", "--inline", manifest)
	for _, req := range srv.Requests()[before:] {
		if req.Route == fhirtest.RouteFile || req.Route == fhirtest.RouteBinary {
			t.Errorf("rerun fetched %s %s again", req.Method, req.URL)
		}
	}
}
