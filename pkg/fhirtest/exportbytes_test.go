package fhirtest

import (
	"bytes"
	"compress/gzip"
	"crypto/sha1"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest/synth"
)

// exportCase is one export whose bytes TestExportBytes pins.
type exportCase struct {
	name   string
	opts   Options
	faults []string
	path   string
	q      url.Values
	want   string
}

var exportCases = []exportCase{
	{name: "system", opts: Options{Patients: 30, Seed: 4, FileLines: 700}, path: "/$export",
		want: "7554fff768508192bba3a8bc5c1337c313198630"},
	{name: "group-since-elements", opts: Options{Patients: 30, Seed: 4, FilesOrigin: true}, path: "/Group/cohort-a/$export",
		q: url.Values{"_since": {"2020-01-01T00:00:00Z"}, "_elements": {"Observation.status,code"},
			"_type": {"Patient,Observation,DocumentReference"}},
		want: "36bb0a7a982e5bc185bf973db687013cd155ac22"},
	{name: "patient-filter-gzip", opts: Options{Patients: 25, Seed: 9, Gzip: true, FileLines: 500}, path: "/Patient/$export",
		q:    url.Values{"_typeFilter": {"Observation?category=laboratory"}, "_type": {"Observation,Condition,MedicationRequest"}},
		want: "36abc548e90ad67d68abc3bc8b03930406a5f30e"},
	{name: "data-faults", opts: Options{Patients: 20, Seed: 1, FileLines: 300},
		faults: []string{"dup-lines:7", "no-final-newline", "b64-size", "no-lastupdated", "error-count"},
		path:   "/$export", want: "5191f94b46364ba4d1af9ca6b4c8f7e79588849d"},
}

// exportHash kicks off c's export on s and hashes its manifest items and every file's bytes
// (its gzip variant must hold the same), with the server's origins replaced by fixed text.
func exportHash(t *testing.T, s *Server, c exportCase) string {
	t.Helper()
	m, _ := poll(t, kickoff(t, s, c.path, c.q, nil), nil)
	h := sha1.New()
	for _, items := range [][]itemT{m.Output, m.Deleted, m.Error} {
		for _, it := range items {
			fmt.Fprintf(h, "%s %d\n", it.Type, it.Count)
			_, body := do(t, "GET", it.URL, nil, nil)
			if resp, gz := do(t, "GET", it.URL, http.Header{"Accept-Encoding": {"gzip"}}, nil); resp.Header.Get("Content-Encoding") == "gzip" {
				zr, err := gzip.NewReader(bytes.NewReader(gz))
				if err != nil {
					t.Fatal(err)
				}
				if plain, err := io.ReadAll(zr); err != nil || !bytes.Equal(plain, body) {
					t.Errorf("GET %s gzipped = %d bytes, %v, want the %d bytes of the plain file", it.URL, len(plain), err, len(body))
				}
			}
			body = bytes.ReplaceAll(body, []byte(s.URL()), []byte("{{BASE}}"))
			if s.FilesURL() != "" {
				body = bytes.ReplaceAll(body, []byte(s.FilesURL()), []byte("{{FILES}}"))
			}
			h.Write(body)
		}
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func startCase(t *testing.T, c exportCase) *Server {
	t.Helper()
	opts := c.opts
	opts.Polls, opts.RetryAfter = 0, 0
	for _, spec := range c.faults {
		f, err := ParseFault(spec)
		if err != nil {
			t.Fatal(err)
		}
		opts.Faults = append(opts.Faults, f)
	}
	return start(t, opts)
}

// TestExportBytes pins the bytes of generated exports, so that generating the data set as each
// export is written (instead of holding it) changes nothing a client sees.
func TestExportBytes(t *testing.T) {
	for _, c := range exportCases {
		t.Run(c.name, func(t *testing.T) {
			s := startCase(t, c)
			got := exportHash(t, s, c)
			if got != c.want {
				t.Errorf("export %s %v of %+v hashes to %s, want %s", c.path, c.q, c.opts, got, c.want)
			}
		})
	}
}

// TestExportStreamedEqualsHeld checks that the generated data set, streamed, exports what the
// same data set held in memory (Options.Data) does.
func TestExportStreamedEqualsHeld(t *testing.T) {
	for _, c := range exportCases {
		t.Run(c.name, func(t *testing.T) {
			streamed := exportHash(t, startCase(t, c), c)
			held := c
			held.opts.Data = synth.Generate(synth.Options{Patients: c.opts.Patients, Seed: c.opts.Seed})
			if got := exportHash(t, startCase(t, held), held); got != streamed {
				t.Errorf("export %s %v of %+v held in memory hashes to %s, streamed to %s", c.path, c.q, c.opts, got, streamed)
			}
		})
	}
}
