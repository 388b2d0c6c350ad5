package duckdb

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/store"
	"github.com/google/go-cmp/cmp"
	"github.com/tidwall/gjson"
)

// folder builds an in-memory export folder: files maps a name ("Patient.000.ndjson",
// "deleted/Bundle.000.ndjson") to its content.
func folder(group, when string, params map[string]any, files ...string) store.Source {
	t, err := store.ParseTime(when)
	if err != nil {
		panic(err)
	}
	src := store.Source{Dir: "dir", Export: store.Export{Group: group, Time: t, URL: "https://x/fhir/Group/" + group + "/$export", RequestParameters: params}}
	for i := 0; i+1 < len(files); i += 2 {
		name, body := files[i], files[i+1]
		typ, _, _ := strings.Cut(filepath.Base(name), ".")
		src.Files = append(src.Files, store.File{
			Path:         name,
			Deleted:      strings.HasPrefix(name, "deleted/"),
			ResourceType: typ,
			Open:         func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil },
		})
	}
	return src
}

// deletions is a stand-in for exportdir.Deletions: only transaction Bundles, DELETE, Type/id.
func deletions(line []byte) []store.Deletion {
	if gjson.GetBytes(line, "type").Str != "transaction" {
		return nil
	}
	var out []store.Deletion
	for _, e := range gjson.GetBytes(line, "entry").Array() {
		typ, id, ok := strings.Cut(e.Get("request.url").Str, "/")
		if e.Get("request.method").Str != "DELETE" || !ok || strings.Contains(id, "/") {
			continue
		}
		out = append(out, store.Deletion{ResourceType: typ, ID: id})
	}
	return out
}

func del(refs ...string) string {
	var es []string
	for _, r := range refs {
		es = append(es, fmt.Sprintf(`{"request":{"method":"DELETE","url":%q}}`, r))
	}
	return `{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(es, ",") + `]}` + "\n"
}

func res(typ, id string, extra ...string) string {
	s := fmt.Sprintf(`{"resourceType":%q,"id":%q`, typ, id)
	for _, e := range extra {
		s += "," + e
	}
	return s + "}\n"
}

var etlTime = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func openDB(t *testing.T) *DB {
	t.Helper()
	d, err := Open(t.Context(), filepath.Join(t.TempDir(), "test.duckdb"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func load(t *testing.T, d *DB, src store.Source, opts ...func(*store.Options)) (store.Stats, error) {
	t.Helper()
	o := store.Options{Deletions: deletions, Version: "test", Now: func() time.Time { return etlTime }}
	for _, f := range opts {
		f(&o)
	}
	return store.Load(t.Context(), d, src, o)
}

func mustLoad(t *testing.T, d *DB, src store.Source, opts ...func(*store.Options)) store.Stats {
	t.Helper()
	st, err := load(t, d, src, opts...)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return st
}

// query returns the rows of q as strings, one per row, columns joined by "|".
func query(t *testing.T, d *DB, q string) []string {
	t.Helper()
	rows, err := d.Conn().QueryContext(t.Context(), q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, v := range vals {
			switch v := v.(type) {
			case time.Time:
				s = append(s, v.UTC().Format(time.RFC3339Nano))
			case nil:
				s = append(s, "NULL")
			case []byte:
				s = append(s, string(v))
			default:
				s = append(s, fmt.Sprint(v))
			}
		}
		out = append(out, strings.Join(s, "|"))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestLoadBasics(t *testing.T) {
	d := openDB(t)
	src := folder("g1", "2024-01-01T00:00:00Z", map[string]any{"_type": "Patient,Condition"},
		"Patient.000.ndjson", res("Patient", "p1", `"v":1`)+res("Patient", "p2")+res("Patient", "p1", `"v":2`),
		"Patient.001.ndjson", res("Observation", "o1"),
		"Group.000.ndjson", res("Group", "g1"), // a reserved word as a table name
	)
	st := mustLoad(t, d, src)
	if st.Rows != 5 {
		t.Errorf("Rows = %d, want 5", st.Rows)
	}
	if got := query(t, d, `SELECT id FROM "group"`); !slices.Equal(got, []string{"g1"}) {
		t.Errorf(`"group" = %v, want [g1]`, got)
	}
	got := query(t, d, `SELECT id, resource->>'v', export_group, export_time, source_file FROM patient ORDER BY id`)
	want := []string{"p1|2|g1|2024-01-01T00:00:00Z|Patient.000.ndjson", "p2|NULL|g1|2024-01-01T00:00:00Z|Patient.000.ndjson"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("patient (-want +got):\n%s", diff)
	}
	if got := query(t, d, `SELECT id FROM observation`); !slices.Equal(got, []string{"o1"}) {
		t.Errorf("observation = %v, want [o1]", got)
	}
	if got := query(t, d, `SELECT count(*) FROM condition`); !slices.Equal(got, []string{"0"}) {
		t.Errorf("condition rows = %v, want an empty table", got)
	}
	got = query(t, d, `SELECT table_name, group_name, export_time, export_url, etl_version, etl_time, excluded_resources FROM etl__completion ORDER BY 1`)
	want = []string{
		"condition|g1|2024-01-01T00:00:00Z|https://x/fhir/Group/g1/$export|test|2030-01-01T00:00:00Z|NULL",
		"group|g1|2024-01-01T00:00:00Z|https://x/fhir/Group/g1/$export|test|2030-01-01T00:00:00Z|NULL",
		"patient|g1|2024-01-01T00:00:00Z|https://x/fhir/Group/g1/$export|test|2030-01-01T00:00:00Z|NULL",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("etl__completion (-want +got):\n%s", diff)
	}
	tables, err := d.Tables(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	wantTables := []string{"condition", "encounter", "etl__completion", "etl__completion_encounters", "etl__deleted", "group", "observation", "patient"}
	if diff := cmp.Diff(wantTables, tables); diff != "" {
		t.Errorf("Tables (-want +got):\n%s", diff)
	}
}

func TestBadInputLeavesDBUnchanged(t *testing.T) {
	d := openDB(t)
	mustLoad(t, d, folder("g", "2024-01-01T00:00:00Z", nil, "Patient.000.ndjson", res("Patient", "p1")))
	before := dump(t, d)
	for _, tc := range []struct{ body, want string }{
		{res("Patient", "p2") + "{not json\n", "Patient.000.ndjson:2: invalid JSON"},
		{res("Patient", "p2") + "\n" + `{"resourceType":"Patient"}` + "\n", "Patient.000.ndjson:3: missing id"},
		{`{"id":"x"}` + "\n", "Patient.000.ndjson:1: missing resourceType"},
		{`{"resourceType":"Pa tient","id":"x"}` + "\n", "Patient.000.ndjson:1: invalid resourceType"},
	} {
		_, err := load(t, d, folder("g", "2025-01-01T00:00:00Z", nil, "Encounter.000.ndjson", res("Encounter", "e1"), "Patient.000.ndjson", tc.body))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Load(%q) = %v, want %q", tc.body, err, tc.want)
		}
		if diff := cmp.Diff(before, dump(t, d)); diff != "" {
			t.Errorf("after Load(%q) the database changed (-before +after):\n%s", tc.body, diff)
		}
	}
	// The connection is usable after a failed load.
	mustLoad(t, d, folder("g", "2025-01-01T00:00:00Z", nil, "Patient.000.ndjson", res("Patient", "p9")))
}

// dump is every table's content, etl_time excluded (it is the wall clock of the load).
func dump(t *testing.T, d *DB) map[string][]string {
	t.Helper()
	tables, err := d.Tables(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, tb := range tables {
		q := `SELECT * FROM ` + ident(tb) + ` ORDER BY ALL`
		if tb == "etl__completion" {
			q = `SELECT * EXCLUDE (etl_time) FROM etl__completion ORDER BY ALL`
		} else if !strings.HasPrefix(tb, "etl__") {
			q = `SELECT * REPLACE (resource::VARCHAR AS resource) FROM ` + ident(tb) + ` ORDER BY ALL`
		}
		out[tb] = query(t, d, q)
	}
	return out
}

func TestLaterExportWins(t *testing.T) {
	const (
		t0 = "2023-06-01T00:00:00Z"
		t1 = "2024-01-01T00:00:00Z"
		t2 = "2024-02-01T00:00:00+01:00" // 2024-01-31T23:00:00Z
		t3 = "2024-03-01T00:00:00Z"
	)
	folders := []store.Source{
		folder("g", t1, nil, "Patient.000.ndjson", res("Patient", "p1", `"v":1`)+res("Patient", "p2", `"v":1`)+res("Patient", "p4", `"v":1`)),
		folder("g", t2, nil,
			"Patient.000.ndjson", res("Patient", "p1", `"v":2`)+res("Patient", "p4", `"v":2`),
			"deleted/Bundle.000.ndjson", del("Patient/p2", "Patient/p3", "Patient/p4", "Patient/a/b")+
				`{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"DELETE","url":"Patient/p1"}}]}`+"\n"),
		folder("g", t0, nil, "Patient.000.ndjson", res("Patient", "p3", `"v":0`)+res("Patient", "p2", `"v":0`)),
		folder("g", t1, nil, "deleted/Bundle.000.ndjson", del("Patient/p1")),
		folder("g", t3, nil, "Patient.000.ndjson", res("Patient", "p2", `"v":3`)),
	}
	want := []string{
		"p1|2|2024-01-31T23:00:00Z", // t1's delete is older than the row
		"p2|3|2024-03-01T00:00:00Z", // deleted at t2, not resurrected by t0, re-created at t3
		"p4|2|2024-01-31T23:00:00Z", // exported and deleted in one folder: kept
	}
	wantDeleted := []string{"patient|p2|g|2024-01-31T23:00:00Z", "patient|p3|g|2024-01-31T23:00:00Z"}
	for _, order := range [][]int{{0, 1, 2, 3, 4}, {4, 3, 2, 1, 0}, {2, 4, 0, 3, 1}} {
		d := openDB(t)
		for _, i := range order {
			mustLoad(t, d, folders[i])
		}
		got := query(t, d, `SELECT id, resource->>'v', export_time FROM patient ORDER BY id`)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("order %v: patient (-want +got):\n%s", order, diff)
		}
		got = query(t, d, `SELECT table_name, id, export_group, export_time FROM etl__deleted WHERE export_time > '2024-01-02' ORDER BY ALL`)
		if diff := cmp.Diff(wantDeleted, got); diff != "" {
			t.Errorf("order %v: etl__deleted (-want +got):\n%s", order, diff)
		}
	}
}

func TestReloadChangesNothing(t *testing.T) {
	d := openDB(t)
	enc := folder("g", "2024-01-01T00:00:00Z", map[string]any{"_type": "Encounter,Condition"},
		"Encounter.000.ndjson", res("Encounter", "e1")+res("Encounter", "e2")+res("Encounter", "e1", `"v":2`),
		"Condition.000.ndjson", res("Condition", "c1"),
		"deleted/Bundle.000.ndjson", del("Condition/c0"))
	mustLoad(t, d, enc)
	once := dump(t, d)
	for range 2 {
		mustLoad(t, d, enc, func(o *store.Options) { o.Now = func() time.Time { return etlTime.Add(time.Hour) } })
		if diff := cmp.Diff(once, dump(t, d)); diff != "" {
			t.Errorf("reload changed the database (-once +twice):\n%s", diff)
		}
	}
	if got := query(t, d, `SELECT count(*) FROM etl__completion`); !slices.Equal(got, []string{"2"}) {
		t.Errorf("etl__completion rows after reloads = %v, want 2", got)
	}
	if got := query(t, d, `SELECT encounter_id, group_name FROM etl__completion_encounters ORDER BY 1`); !slices.Equal(got, []string{"e1|g", "e2|g"}) {
		t.Errorf("etl__completion_encounters = %v", got)
	}
}

// linked is a folder that exports the ten linked types of group at when (all empty: requested
// types with no file are complete), minus the types in skip.
func linked(group, when string, params map[string]any, skip ...string) store.Source {
	var types []string
	for _, t := range []string{"AllergyIntolerance", "Condition", "DiagnosticReport", "DocumentReference",
		"EpisodeOfCare", "MedicationRequest", "Observation", "Procedure", "ServiceRequest", "Specimen"} {
		if !slices.Contains(skip, t) {
			types = append(types, t)
		}
	}
	p := map[string]any{"_type": strings.Join(types, ",")}
	for k, v := range params {
		p[k] = v
	}
	return folder(group, when, p, "Condition.000.ndjson", res("Condition", "c-"+group+"-"+when))
}

func encounters(group, when string, params map[string]any, ids ...string) store.Source {
	var body string
	for _, id := range ids {
		body += res("Encounter", id)
	}
	return folder(group, when, params, "Encounter.000.ndjson", body)
}

type step struct {
	src  store.Source
	opts func(*store.Options)
}

func TestEncountersFirst(t *testing.T) {
	const (
		t1 = "2024-01-01T00:00:00Z"
		t2 = "2024-02-01T00:00:00Z"
		t3 = "2024-03-01T00:00:00Z"
	)
	exclude := func(types ...string) func(*store.Options) {
		return func(o *store.Options) { o.Exclude = types }
	}
	assume := func(types ...string) func(*store.Options) {
		return func(o *store.Options) { o.AssumeComplete = types }
	}
	tests := []struct {
		name       string
		steps      []step
		complete   []string
		incomplete []string // "id:missing tables"
	}{{
		name:     "everything in one export",
		steps:    []step{{src: encounters("g", t1, nil, "e1")}, {src: linked("g", t1, nil)}},
		complete: []string{"e1"},
	}, {
		name:       "missing table",
		steps:      []step{{src: encounters("g", t1, nil, "e1")}, {src: linked("g", t1, nil, "Specimen")}},
		incomplete: []string{"e1:specimen"},
	}, {
		name:     "empty requested type",
		steps:    []step{{src: folder("g", t1, map[string]any{"_type": "Encounter,Specimen"}, "Encounter.000.ndjson", res("Encounter", "e1"))}, {src: linked("g", t1, nil, "Specimen")}},
		complete: []string{"e1"},
	}, {
		name:       "patient-sliced export",
		steps:      []step{{src: encounters("g", t1, nil, "e1")}, {src: linked("g", t1, map[string]any{"_patientCount": 2})}},
		incomplete: []string{"e1:allergyintolerance,condition,diagnosticreport,documentreference,episodeofcare,medicationrequest,observation,procedure,servicerequest,specimen"},
	}, {
		name:     "patient-sliced export assumed complete",
		steps:    []step{{src: encounters("g", t1, nil, "e1")}, {src: linked("g", t1, map[string]any{"_patientCount": 2}), opts: assume(store.LinkedTables...)}},
		complete: []string{"e1"},
	}, {
		name:       "non-date _typeFilter",
		steps:      []step{{src: encounters("g", t1, nil, "e1")}, {src: linked("g", t1, map[string]any{"_typeFilter": "Observation?category=laboratory,Condition?_lastUpdated=gt2020-01-01"})}},
		incomplete: []string{"e1:observation"},
	}, {
		name:     "date _typeFilter",
		steps:    []step{{src: encounters("g", t1, nil, "e1")}, {src: linked("g", t1, map[string]any{"_typeFilter": []any{"Observation?date=ge2020-01-01&_lastUpdated=lt2024-01-01"}})}},
		complete: []string{"e1"},
	}, {
		name:  "loose encounters",
		steps: []step{{src: linked("g", t1, nil)}, {src: folder("g", t1, nil, "Condition.000.ndjson", res("Condition", "c9", `"encounter":{"reference":"Encounter/e9"}`))}},
		// e0 is inserted below without tracking, as from a legacy load.
		complete: []string{"e0"},
	}, {
		name:       "encounter exported after its conditions",
		steps:      []step{{src: linked("g", t1, nil)}, {src: encounters("g", t2, nil, "e1")}},
		incomplete: []string{"e1:allergyintolerance,condition,diagnosticreport,documentreference,episodeofcare,medicationrequest,observation,procedure,servicerequest,specimen"},
	}, {
		name:     "encounter exported after its conditions, then conditions again",
		steps:    []step{{src: linked("g", t1, nil)}, {src: encounters("g", t2, nil, "e1")}, {src: linked("g", t3, nil)}},
		complete: []string{"e1"},
	}, {
		name: "several groups",
		steps: []step{
			{src: encounters("g1", t1, nil, "e1", "e2")},
			{src: encounters("g2", t2, nil, "e1", "e3")},
			{src: linked("g2", t2, nil)},
		},
		// e1's earliest time is t1 (g1), and g2's rows at t2 ≥ t1 count: any of its groups.
		complete:   []string{"e1", "e3"},
		incomplete: []string{"e2:allergyintolerance,condition,diagnosticreport,documentreference,episodeofcare,medicationrequest,observation,procedure,servicerequest,specimen"},
	}, {
		name:     "equal instants in different zones",
		steps:    []step{{src: encounters("g", "2024-01-01T10:00:00+02:00", nil, "e1")}, {src: linked("g", "2024-01-01T08:00:00Z", nil)}},
		complete: []string{"e1"},
	}, {
		name: "fractional seconds",
		steps: []step{
			{src: encounters("g", "2024-01-01T08:00:00.5Z", nil, "e1")},
			{src: encounters("g", "2024-01-01T08:00:00.250001Z", nil, "e2")},
			{src: linked("g", "2024-01-01T08:00:00.250001Z", nil)},
		},
		complete:   []string{"e2"},
		incomplete: []string{"e1:allergyintolerance,condition,diagnosticreport,documentreference,episodeofcare,medicationrequest,observation,procedure,servicerequest,specimen"},
	}, {
		name: "a new encounter in a re-export",
		steps: []step{
			{src: encounters("g", t1, nil, "e1")}, {src: linked("g", t1, nil)},
			{src: encounters("g", t2, nil, "e1", "e2")},
		},
		complete:   []string{"e1"},
		incomplete: []string{"e2:allergyintolerance,condition,diagnosticreport,documentreference,episodeofcare,medicationrequest,observation,procedure,servicerequest,specimen"},
	}, {
		name: "_until bounds the completion time",
		steps: []step{
			{src: encounters("g", t1, nil, "e1")},
			{src: linked("g", t3, map[string]any{"_until": "2023-12-31T23:59:59Z"})},
		},
		incomplete: []string{"e1:allergyintolerance,condition,diagnosticreport,documentreference,episodeofcare,medicationrequest,observation,procedure,servicerequest,specimen"},
	}, {
		name: "excluded resources are not waited for",
		steps: []step{
			{src: encounters("g", t1, nil, "e1"), opts: exclude("Specimen", "episodeofcare")},
			{src: linked("g", t1, nil, "Specimen", "EpisodeOfCare"), opts: exclude("Specimen", "episodeofcare")},
		},
		complete: []string{"e1"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := openDB(t)
			for _, s := range tt.steps {
				opts := []func(*store.Options){}
				if s.opts != nil {
					opts = append(opts, s.opts)
				}
				mustLoad(t, d, s.src, opts...)
			}
			if tt.name == "loose encounters" {
				if err := d.exec(t.Context(), `INSERT INTO encounter VALUES ('e0', '{"resourceType":"Encounter","id":"e0"}', 'g', '2020-01-01', 'legacy')`); err != nil {
					t.Fatal(err)
				}
			}
			got := query(t, d, `SELECT id FROM complete_encounter ORDER BY id`)
			if diff := cmp.Diff(tt.complete, got); diff != "" {
				t.Errorf("complete_encounter (-want +got):\n%s", diff)
			}
			got = query(t, d, `SELECT e.id || ':' || c.missing_tables FROM incomplete_encounter AS e
				JOIN etl__encounter_completion AS c ON c.encounter_id = e.id ORDER BY 1`)
			if diff := cmp.Diff(tt.incomplete, got); diff != "" {
				t.Errorf("incomplete_encounter (-want +got):\n%s", diff)
			}
			checkGaps(t, d)
		})
	}
}

func TestExports(t *testing.T) {
	d := openDB(t)
	mustLoad(t, d, encounters("g", "2024-01-01T10:00:00+02:00", nil, "e1", "e2"))
	mustLoad(t, d, linked("g", "2024-01-01T08:00:00.5Z", nil, "Specimen"))
	mustLoad(t, d, folder("g", "2024-02-01T00:00:00Z", map[string]any{"_type": "Encounter,Specimen"},
		"Encounter.000.ndjson", res("Encounter", "e3", `"note":"a \"quoted\" line"`),
		"deleted/Bundle.000.ndjson", del("Encounter/e2")))
	mustLoad(t, d, linked("g", "2024-03-01T00:00:00Z", nil))
	mustLoad(t, d, linked("h", "2024-03-01T00:00:00Z", nil))
	mustLoad(t, d, encounters("h", "2024-04-01T00:00:00Z", nil, "e4"))
	out := t.TempDir()
	tables, err := d.Tables(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	t.Run("parquet", func(t *testing.T) {
		for range 2 { // the second export replaces the first
			if err := d.ExportParquet(t.Context(), filepath.Join(out, "pq")); err != nil {
				t.Fatal(err)
			}
		}
		for _, tb := range tables {
			path := filepath.Join(out, "pq", tb, tb+".parquet")
			got := query(t, d, `SELECT * FROM read_parquet('`+path+`') ORDER BY ALL`)
			want := query(t, d, `SELECT * FROM `+ident(tb)+` ORDER BY ALL`)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s read back (-want +got):\n%s", path, diff)
			}
		}
		if got := query(t, d, `SELECT typeof(resource) FROM read_parquet('`+filepath.Join(out, "pq", "encounter", "encounter.parquet")+`') LIMIT 1`); !slices.Equal(got, []string{"JSON"}) {
			t.Errorf("resource column read back as %v, want JSON", got)
		}
	})

	t.Run("ndjson", func(t *testing.T) {
		dir := filepath.Join(out, "cumulus")
		if err := d.ExportNDJSON(t.Context(), dir); err != nil {
			t.Fatal(err)
		}
		for _, tb := range tables {
			glob := filepath.Join(dir, tb, "*.ndjson")
			var got, want []string
			if strings.HasPrefix(tb, "etl__") {
				got = query(t, d, `SELECT count(*) FROM read_json_objects('`+glob+`')`)
				want = query(t, d, `SELECT count(*) FROM `+ident(tb))
			} else {
				got = query(t, d, `SELECT j->>'id', j::VARCHAR FROM read_json_objects('`+glob+`') AS r(j) ORDER BY 1`)
				want = query(t, d, `SELECT id, resource::VARCHAR FROM `+ident(tb)+` ORDER BY 1`)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s read back (-want +got):\n%s", glob, diff)
			}
		}
		got := query(t, d, `SELECT export_time FROM read_json('`+filepath.Join(dir, "etl__completion_encounters", "*.ndjson")+`', columns={export_time: 'VARCHAR'}) ORDER BY 1`)
		want := []string{"2024-01-01T08:00:00+00:00", "2024-01-01T08:00:00+00:00", "2024-02-01T00:00:00+00:00", "2024-04-01T00:00:00+00:00"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("export_time strings (-want +got):\n%s", diff)
		}
		// Cumulus Library's completion rule, re-expressed on the Cumulus layout, agrees with our view.
		var checks []string
		for _, tb := range store.LinkedTables {
			checks = append(checks, "bool_or(ec.table_name = '"+tb+"')")
		}
		ece := `read_json('` + filepath.Join(dir, "etl__completion_encounters", "*.ndjson") + `', columns={encounter_id: 'VARCHAR', group_name: 'VARCHAR', export_time: 'VARCHAR'})`
		ec := `read_json('` + filepath.Join(dir, "etl__completion", "*.ndjson") + `', columns={table_name: 'VARCHAR', group_name: 'VARCHAR', export_time: 'VARCHAR'})`
		library := `WITH ece AS (SELECT * FROM ` + ece + `), ec AS (SELECT * FROM ` + ec + `),
		times AS (SELECT encounter_id, min(CAST(export_time AS TIMESTAMPTZ)) AS earliest FROM ece GROUP BY 1),
		done AS (SELECT ece.encounter_id, (` + strings.Join(checks, " AND ") + `) AS is_complete
			FROM ece JOIN times AS t ON t.encounter_id = ece.encounter_id
			JOIN ec ON ec.group_name = ece.group_name
			WHERE t.earliest <= CAST(ec.export_time AS TIMESTAMPTZ) GROUP BY 1)
		SELECT DISTINCT ece.encounter_id, coalesce(done.is_complete, false) FROM ece LEFT JOIN done USING (encounter_id) ORDER BY 1`
		got = query(t, d, library)
		want = query(t, d, `SELECT encounter_id, is_complete FROM etl__encounter_completion ORDER BY 1`)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Library rule on the Cumulus layout disagrees with etl__encounter_completion (-ours +library):\n%s", diff)
		}
		if !slices.Equal(got, []string{"e1|true", "e2|true", "e3|true", "e4|false"}) {
			t.Errorf("completion = %v: the fixture should exercise both answers", got)
		}
	})
}

func TestExisting(t *testing.T) {
	d := openDB(t)
	mustLoad(t, d, folder("g", "2024-01-01T00:00:00Z", nil, "Medication.000.ndjson", res("Medication", "m1")+res("Medication", "m'3")))
	b, err := d.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Rollback()
	if err := b.Add("medication", "m2", []byte(res("Medication", "m2")), "x"); err != nil {
		t.Fatal(err)
	}
	got, err := b.Existing(t.Context(), "medication", []string{"m1", "m2", "m'3", "m4"})
	if err != nil || !slices.Equal(got, []string{"m'3", "m1"}) {
		t.Errorf("Existing(medication) = %v, %v, want [m'3 m1]", got, err)
	}
	got, err = b.Existing(t.Context(), "specimen", []string{"s1"})
	if err != nil || got != nil {
		t.Errorf("Existing(specimen) = %v, %v, want none", got, err)
	}
}

func TestGaps(t *testing.T) {
	d := openDB(t)
	if got, err := d.Gaps(t.Context()); err != nil || got != nil {
		t.Fatalf("Gaps(empty database) = %v, %v, want none", got, err)
	}
	// Group g: two encounters, the linked tables without three the server never exports, then
	// a newer encounter export, so that g's condition rows are older than e3. Group h: nothing linked.
	mustLoad(t, d, encounters("g", "2024-01-01T00:00:00Z", nil, "e1", "e2"))
	mustLoad(t, d, linked("g", "2024-01-01T00:00:00Z", nil, "EpisodeOfCare", "ServiceRequest", "Specimen"))
	mustLoad(t, d, encounters("g", "2024-02-01T00:00:00Z", nil, "e3"))
	mustLoad(t, d, encounters("h", "2024-01-01T00:00:00Z", nil, "e9"))
	got, err := d.Gaps(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var want []Gap
	for _, tb := range store.LinkedTables {
		exported := !slices.Contains([]string{"episodeofcare", "servicerequest", "specimen"}, tb)
		n := int64(1)
		if !exported {
			n = 3
		}
		want = append(want, Gap{Group: "g", Table: tb, Encounters: n, Exported: exported})
	}
	for _, tb := range store.LinkedTables {
		want = append(want, Gap{Group: "h", Table: tb, Encounters: 1})
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Gaps (-want +got):\n%s", diff)
	}
	checkGaps(t, d)
	// Newer exports of every linked table complete g: only h's gaps remain, and the views are
	// not read for g.
	mustLoad(t, d, linked("g", "2024-03-01T00:00:00Z", nil))
	if got, err := d.mayBeIncomplete(t.Context(), []string{"g", "h"}); err != nil || !slices.Equal(got, []string{"h"}) {
		t.Errorf("mayBeIncomplete(g, h) = %v, %v, want [h]", got, err)
	}
	if got, err := d.Gaps(t.Context(), "g"); err != nil || got != nil {
		t.Errorf("Gaps(g) = %v, %v, want none", got, err)
	}
	checkGaps(t, d)
}

// checkGaps checks that Gaps, which skips the views for groups it proves complete, agrees with
// the views, for every group and for each group alone.
func checkGaps(t *testing.T, d *DB) {
	t.Helper()
	groups := query(t, d, `SELECT DISTINCT group_name FROM etl__completion_encounters ORDER BY 1`)
	want, err := d.viewGaps(t.Context(), groups)
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.Gaps(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Gaps() disagrees with the views (-views +Gaps):\n%s", diff)
	}
	for _, g := range append(groups, "no such group") {
		want, err := d.viewGaps(t.Context(), []string{g})
		if err != nil {
			t.Fatal(err)
		}
		got, err := d.Gaps(t.Context(), g)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Gaps(%q) disagrees with the views (-views +Gaps):\n%s", g, diff)
		}
	}
}
