package fhirtest

import (
	"bytes"
	"maps"
	"net/http"
	"slices"
	"testing"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest/synth"
)

// TestGeneratedBinaries reads every Binary of a generated data set before any export (generated
// again on demand) and after one (from the store the export filled): both give Generate's bytes.
func TestGeneratedBinaries(t *testing.T) {
	s := start(t, Options{Patients: 6, Seed: 3})
	d := synth.Generate(synth.Options{Patients: 6, Seed: 3})
	ids := slices.Sorted(maps.Keys(d.Binaries))
	check := func(when string) {
		t.Helper()
		for _, id := range ids {
			resp, body := do(t, "GET", s.URL()+"/Binary/"+id, nil, nil)
			want := d.Binaries[id]
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != want.ContentType || !bytes.Equal(body, want.Data) {
				t.Errorf("%s: GET Binary/%s = %s %q, %d bytes, want 200 %q, %d bytes", when, id, resp.Status,
					resp.Header.Get("Content-Type"), len(body), want.ContentType, len(want.Data))
			}
		}
		if resp, _ := do(t, "GET", s.URL()+"/Binary/nope", nil, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: GET Binary/nope = %s, want 404", when, resp.Status)
		}
	}
	check("before an export")
	if _, _, complete := s.data.bins.get(ids[0]); complete {
		t.Fatalf("the Binary store is complete before any export")
	}
	export(t, s, "/Patient/$export", nil)
	if _, _, complete := s.data.bins.get(ids[0]); !complete {
		t.Fatalf("the Binary store is not complete after an export")
	}
	check("after an export")
}
