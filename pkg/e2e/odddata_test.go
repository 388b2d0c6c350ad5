package e2e

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tidwall/gjson"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
)

// Ids and data that real servers send and the FHIR specification does not expect: Epic's ids
// run past R4's 64 characters, some servers put non-ASCII letters in ids, and clinical
// resources carry contained resources, tags and deeply nested extensions.
var (
	longPatientID    = "eWz7.N1k-" + strings.Repeat("Qx3v9LmP0a", 11) // 119 characters
	longMedicationID = "med-" + strings.Repeat("Z9y8X7w6V5", 9)
	unicodePatient   = "pâtiënt-日本-e\u0301" // a combining accent: no tool may normalize it
)

// deepExtension is an extension nested depth levels, as questionnaire-derived data hold.
func deepExtension(depth int) string {
	s := `{"url":"leaf","valueString":"ü 🩺 \u202eRTL"}`
	for i := depth; i > 0; i-- {
		s = fmt.Sprintf(`{"url":"http://example.org/ext/%d","extension":[%s]}`, i, s)
	}
	return s
}

// oddData writes the data folder bulk-testserver serves: each line is what the pipeline must
// deliver to the database unchanged, keyed by table and id.
func oddData(t *testing.T) (dir string, want map[string]map[string]string) {
	t.Helper()
	dir = t.TempDir()
	updated := `"meta":{"lastUpdated":"2024-03-01T10:00:00Z","tag":[{"system":"urn:oid:1.2.840.114350","code":"epic-tag"},{"system":"http://example.org/tags","code":"ünïcode"}]}`
	lines := map[string][]string{
		"Patient": {
			`{"resourceType":"Patient","id":"` + longPatientID + `",` + updated + `,"name":[{"family":"Ærøskøbing","given":["Zoë"]}],"birthDate":"1970-01-01"}`,
			`{"resourceType":"Patient","id":"` + unicodePatient + `",` + updated + `,"name":[{"text":"王小明"}],"extension":[` + deepExtension(60) + `]}`,
		},
		"Encounter": {
			`{"resourceType":"Encounter","id":"` + longPatientID + `-enc1",` + updated + `,"status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/` + longPatientID + `"},"period":{"start":"2024-02-01T09:00:00Z"}}`,
		},
		"MedicationRequest": {
			`{"resourceType":"MedicationRequest","id":"mr-` + unicodePatient + `",` + updated + `,"status":"active","intent":"order","medicationReference":{"reference":"Medication/` + longMedicationID + `"},"subject":{"reference":"Patient/` + unicodePatient + `"}}`,
		},
		"Medication": {
			`{"resourceType":"Medication","id":"` + longMedicationID + `",` + updated + `,"code":{"text":"Paracétamol 500 mg"}}`,
		},
		"Observation": {
			`{"resourceType":"Observation","id":"obs-` + strings.Repeat("0123456789", 8) + `",` + updated +
				`,"contained":[{"resourceType":"Practitioner","id":"pr1","name":[{"family":"Núñez"}]},{"resourceType":"Specimen","id":"sp1","type":{"text":"blood"}}]` +
				`,"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}]` +
				`,"code":{"text":"Hämoglobin"},"subject":{"reference":"Patient/` + longPatientID + `"},"encounter":{"reference":"Encounter/` + longPatientID + `-enc1"}` +
				`,"performer":[{"reference":"#pr1"}],"specimen":{"reference":"#sp1"},"valueQuantity":{"value":13.5,"unit":"g/dL"},"extension":[` + deepExtension(40) + `]}`,
			`{"resourceType":"Observation","id":"obs-` + unicodePatient + `",` + updated + `,"status":"final","code":{"text":"血圧 \t tab"},"subject":{"reference":"Patient/` + unicodePatient + `"},"valueString":"line1\nline2 \u2028 \"quoted\""}`,
		},
	}
	want = map[string]map[string]string{}
	for typ, ls := range lines {
		table := strings.ToLower(typ)
		want[table] = map[string]string{}
		for _, l := range ls {
			want[table][gjson.Get(l, "id").Str] = l
		}
		biWrite(t, filepath.Join(dir, typ+".ndjson"), strings.Join(ls, "\n")+"\n")
	}
	return dir, want
}

// TestOddDataPassesEveryTool: long, non-ASCII ids, contained resources, tags and extensions
// nested 60 deep go through bulk-kickoff | bulk-poll | bulk-fetch, ndjson-inline --in-place,
// ndjson-merge of two slices and etl-load, all in folders with non-ASCII names, and reach the
// database byte for byte; another client's folder of the same lines loads the same.
func TestOddDataPassesEveryTool(t *testing.T) {
	needBinaries(t, "bulk-kickoff", "bulk-poll", "bulk-fetch", "ndjson-inline", "ndjson-merge", "etl-load")
	data, want := oddData(t)
	srv := biServer(t, fhirtest.Options{DataDir: data, Seed: 1})
	work := t.TempDir()
	sliceA := filepath.Join(work, "slice-ä")
	sliceB := filepath.Join(work, "slice-日本")
	mustRun(t, nil, biManifest(t, srv.URL(), nil, "--type", "Patient,Encounter"), "bulk-fetch", "-q", "--dir", sliceA)
	mustRun(t, nil, biManifest(t, srv.URL(), nil, "--type", "Observation,Patient"), "bulk-fetch", "-q", "--dir", sliceB)
	// MedicationRequest alone: etl-load downloads the Medication it references, long id and all.
	sliceC := filepath.Join(work, "slice-c")
	mustRun(t, nil, biManifest(t, srv.URL(), nil, "--type", "MedicationRequest"), "bulk-fetch", "-q", "--dir", sliceC)
	mustRun(t, nil, "", "ndjson-inline", "-q", "--in-place", sliceA)
	mustRun(t, nil, "", "ndjson-inline", "-q", "--in-place", sliceB)
	merged := filepath.Join(work, "mergé")
	mustRun(t, nil, "", "ndjson-merge", "-q", sliceA, sliceB, sliceC, "--dir", merged)

	db := filepath.Join(work, "odd-ü.duckdb")
	mustRun(t, nil, "", "etl-load", "-q", merged, "--db", db, "--fhir-url", srv.URL())
	if diff := cmp.Diff(want, oddTables(t, db, want)); diff != "" {
		t.Errorf("tables after the pipeline (-want +got):\n%s", diff)
	}

	// Another client's folder (bulk-data-client's names) at a path with non-ASCII letters and
	// spaces, as a user's home or share may have.
	other := filepath.Join(work, "Müller export", "другой 日本")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"Patient", "Encounter", "Observation", "MedicationRequest", "Medication"} {
		b, err := os.ReadFile(filepath.Join(data, typ+".ndjson"))
		if err != nil {
			t.Fatal(err)
		}
		biWrite(t, filepath.Join(other, "1."+typ+".ndjson"), string(b))
	}
	db2 := filepath.Join(work, "other.duckdb")
	mustRun(t, nil, "", "etl-load", "-q", other, "--db", db2, "--export-group", "", "--export-timestamp", "2024-03-02T00:00:00Z")
	if diff := cmp.Diff(want, oddTables(t, db2, want)); diff != "" {
		t.Errorf("tables from a folder at a non-ASCII path (-want +got):\n%s", diff)
	}
}

// oddTables reads id → resource of the tables of want from etl-load's database.
func oddTables(t *testing.T, path string, want map[string]map[string]string) map[string]map[string]string {
	t.Helper()
	db, err := sql.Open("duckdb", path+"?access_mode=read_only")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got := map[string]map[string]string{}
	tables := make([]string, 0, len(want))
	for tb := range want {
		tables = append(tables, tb)
	}
	slices.Sort(tables)
	for _, tb := range tables {
		rows, err := db.QueryContext(t.Context(), `SELECT id, resource::VARCHAR FROM "`+tb+`"`)
		if err != nil {
			t.Fatalf("%s: %v", tb, err)
		}
		got[tb] = map[string]string{}
		for rows.Next() {
			var id, res string
			if err := rows.Scan(&id, &res); err != nil {
				t.Fatal(err)
			}
			got[tb][id] = res
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return got
}
