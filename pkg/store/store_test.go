package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bulkpipe/bulkpipe/pkg/ndjson"
	"github.com/bulkpipe/bulkpipe/pkg/resourcetype"
)

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func TestPlanCompletion(t *testing.T) {
	tests := []struct {
		name              string
		params            map[string]any
		present           []string
		excluded, assumed []string
		unfinished        bool
		want              Completion
	}{{
		name:    "files only, no log",
		present: []string{"Patient", "Encounter", "Patient"},
		want:    Completion{Time: t0, Tables: []string{"encounter", "patient"}},
	}, {
		name:    "requested type with no file is complete",
		params:  map[string]any{"_type": "Patient,Condition, Observation"},
		present: []string{"Patient"},
		want:    Completion{Time: t0, Tables: []string{"condition", "observation", "patient"}},
	}, {
		name:    "garbled types are not tables",
		params:  map[string]any{"_type": "Patient,Pa tient,x\"y", "_typeFilter": "Bad Type?code=1"},
		present: []string{"Patient"},
		want:    Completion{Time: t0, Tables: []string{"patient"}},
	}, {
		name:    "types FHIR does not know make no table",
		params:  map[string]any{"_type": "Condition,Zzz0001,patient"},
		present: []string{"Patient", "SiteThing"},
		want:    Completion{Time: t0, Tables: []string{"condition", "patient"}},
	}, {
		name:    "assumed types are complete without a file or a request",
		params:  map[string]any{"_type": "Condition"},
		present: []string{"Encounter"},
		assumed: []string{"Specimen", "episodeofcare"},
		want:    Completion{Time: t0, Tables: []string{"condition", "encounter", "episodeofcare", "specimen"}},
	}, {
		name:    "_type as a list",
		params:  map[string]any{"_type": []any{"Patient", "MedicationRequest,Specimen"}},
		present: nil,
		want:    Completion{Time: t0, Tables: []string{"medicationrequest", "patient", "specimen"}},
	}, {
		name:    "patient-sliced export",
		params:  map[string]any{"_type": "Condition", "_patientCount": float64(3)},
		present: []string{"Patient"},
		want: Completion{Time: t0, Skipped: []Skip{
			{"condition", "the export was limited to 3 listed patients (patient parameter)"},
			{"patient", "the export was limited to 3 listed patients (patient parameter)"},
		}},
	}, {
		name:    "raw patient parameter",
		params:  map[string]any{"patient": []any{"Patient/1", "Patient/2"}},
		present: []string{"Condition"},
		want:    Completion{Time: t0, Skipped: []Skip{{"condition", "the export was limited to 2 listed patients (patient parameter)"}}},
	}, {
		name:    "_patientCount 0 is no slice",
		params:  map[string]any{"_patientCount": 0},
		present: []string{"Condition"},
		want:    Completion{Time: t0, Tables: []string{"condition"}},
	}, {
		name:    "patient-sliced but assumed complete",
		params:  map[string]any{"_patientCount": "3"},
		present: []string{"Condition", "Patient"},
		assumed: []string{"condition"},
		want: Completion{Time: t0, Tables: []string{"condition"}, Skipped: []Skip{
			{"patient", "the export was limited to 3 listed patients (patient parameter)"}}},
	}, {
		name:    "non-date _typeFilter slices its type only",
		params:  map[string]any{"_typeFilter": "Observation?category=laboratory%2Cvital-signs,Condition?_lastUpdated=gt2020-01-01"},
		present: []string{"Observation", "Condition", "Patient"},
		want: Completion{Time: t0, Tables: []string{"condition", "patient"}, Skipped: []Skip{
			{"observation", "exported with _typeFilter Observation?category=laboratory%2Cvital-signs, which is not only a date window"}}},
	}, {
		name:    "date-only _typeFilters with modifiers",
		params:  map[string]any{"_typeFilter": []any{"Observation?date=ge2020-01-01&date=lt2021-01-01", "Encounter?_lastUpdated:missing=false"}},
		present: []string{"Observation", "Encounter"},
		want:    Completion{Time: t0, Tables: []string{"encounter", "observation"}},
	}, {
		name:    "one date filter and one slicing filter of the same type",
		params:  map[string]any{"_typeFilter": []any{"Observation?date=ge2020", "Observation?code=1234-5"}},
		present: []string{"Observation"},
		want: Completion{Time: t0, Skipped: []Skip{
			{"observation", "exported with _typeFilter Observation?code=1234-5, which is not only a date window"}}},
	}, {
		name:    "filter without a query is ignored",
		params:  map[string]any{"_typeFilter": "Observation"},
		present: []string{"Observation"},
		want:    Completion{Time: t0, Tables: []string{"observation"}},
	}, {
		name:    "_until earlier than the export",
		params:  map[string]any{"_until": "2024-05-01T13:00:00+02:00"},
		present: []string{"Patient"},
		want:    Completion{Time: time.Date(2024, 5, 1, 11, 0, 0, 0, time.UTC), Tables: []string{"patient"}},
	}, {
		name:    "_until later than the export",
		params:  map[string]any{"_until": "2030-01-01"},
		present: []string{"Patient"},
		want:    Completion{Time: t0, Tables: []string{"patient"}},
	}, {
		name:     "excluded types get no row",
		params:   map[string]any{"_type": "Patient,Specimen"},
		present:  []string{"Patient"},
		excluded: []string{"Specimen", "EpisodeOfCare"},
		want:     Completion{Time: t0, Tables: []string{"patient"}, Excluded: []string{"episodeofcare", "specimen"}},
	}, {
		name:       "unfinished download: nothing complete, even when assumed",
		params:     map[string]any{"_type": "Patient,Condition"},
		present:    []string{"Patient"},
		excluded:   []string{"Specimen"},
		assumed:    []string{"Patient"},
		unfinished: true,
		want: Completion{Time: t0, Excluded: []string{"specimen"}, Skipped: []Skip{
			{"condition", ReasonUnfinished}, {"patient", ReasonUnfinished}}},
	}, {
		name:    "Parameters-style values",
		params:  map[string]any{"_type": []any{map[string]any{"name": "_type", "valueString": "Procedure"}}},
		present: nil,
		want:    Completion{Time: t0, Tables: []string{"procedure"}},
	}}
	for _, tt := range tests {
		got, err := planCompletion(Export{Time: t0, RequestParameters: tt.params, Unfinished: tt.unfinished}, tt.present, tt.excluded, tt.assumed, resourcetype.Known)
		if err != nil {
			t.Errorf("%s: planCompletion: %v", tt.name, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: planCompletion(%v, %v) (-want +got):\n%s", tt.name, tt.params, tt.present, diff)
		}
	}
	if _, err := planCompletion(Export{Time: t0, RequestParameters: map[string]any{"_until": "soon"}}, nil, nil, nil, resourcetype.Known); err == nil || !strings.Contains(err.Error(), "_until") {
		t.Errorf("PlanCompletion(_until=soon) = %v, want an error naming _until", err)
	}
}

func TestParseTime(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time
	}{
		{"2024-05-01T12:00:00Z", t0},
		{"2024-05-01T14:00:00+02:00", t0},
		{"2024-05-01T12:00:00.1234567Z", t0.Add(123456 * time.Microsecond)},
		{"2024-05-01 12:00:00+00:00", t0},
		{"2024-05-01T12:00Z", t0},
		{"2024-05-01", time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)},
		{"2024-05", time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)},
		{"2024", time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		got, err := ParseTime(tt.in)
		if err != nil || !got.Equal(tt.want) || got.Location() != time.UTC {
			t.Errorf("ParseTime(%q) = %v, %v, want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "yesterday", "2024-13-01", "2024-05-01T25:00:00Z", "1714564800",
		// No zone: which instant would it be? (fhirtime.Parse, the rule of every tool.)
		"2024-05-01T12:00:00", "2024-05-01 12:00"} {
		if _, err := ParseTime(bad); err == nil {
			t.Errorf("ParseTime(%q) = nil error, want one", bad)
		}
	}
	if got := FormatTime(time.Date(2024, 5, 1, 14, 0, 0, 500000000, time.FixedZone("x", 7200))); got != "2024-05-01T12:00:00.5+00:00" {
		t.Errorf("FormatTime = %q", got)
	}
}

func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"2024-05-01T12:00:00Z", "2024-05-01", "2024-05-01 12:00:00.123+05:30", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTime(s)
		if err != nil {
			return
		}
		if got.Location() != time.UTC || got.Nanosecond()%1000 != 0 {
			t.Errorf("ParseTime(%q) = %v: not UTC microseconds", s, got)
		}
		again, err := ParseTime(got.Format(time.RFC3339Nano))
		if err != nil || !again.Equal(got) {
			t.Errorf("ParseTime(Format(%v)) = %v, %v", got, again, err)
		}
	})
}

func FuzzPlanCompletion(f *testing.F) {
	f.Add("Patient,Condition", "Observation?category=x,Condition?date=gt2020", "2024-01-01", "3")
	f.Add("", "?,Observation?%zz", "bad", "")
	f.Fuzz(func(t *testing.T, types, filters, until, count string) {
		p := map[string]any{"_type": types, "_typeFilter": filters, "_until": until}
		if count != "" {
			p["_patientCount"] = count
		}
		c, err := planCompletion(Export{Time: t0, RequestParameters: p}, []string{"Patient"}, nil, nil, resourcetype.Known)
		if err != nil {
			return
		}
		if c.Time.After(t0) {
			t.Errorf("completion time %v after the export %v", c.Time, t0)
		}
		for _, s := range c.Skipped {
			for _, tb := range c.Tables {
				if s.Table == tb {
					t.Errorf("table %s both complete and skipped", tb)
				}
			}
		}
	})
}

func TestValidResourceType(t *testing.T) {
	for s, want := range map[string]bool{"Patient": true, "MedicationRequest": true, "A1": true, "": false,
		"1A": false, "Pa tient": false, `x"; DROP TABLE patient; --`: false, "etl__completion": false, "Ünicode": false} {
		if got := ValidResourceType(s); got != want {
			t.Errorf("ValidResourceType(%q) = %v, want %v", s, got, want)
		}
	}
}

// fakeBackend records what Load stages.
type fakeBackend struct {
	existing       []string
	added, deleted []string
	plan           *Plan
	rolledBack     bool
	failCommit     error
}

func (f *fakeBackend) Begin(context.Context) (Batch, error) { return f, nil }
func (f *fakeBackend) Add(table, id string, res []byte, src string) error {
	f.added = append(f.added, fmt.Sprintf("%s/%s %s %s", table, id, res, src))
	return nil
}
func (f *fakeBackend) Delete(table, id, src string) error {
	f.deleted = append(f.deleted, table+"/"+id)
	return nil
}
func (f *fakeBackend) Commit(_ context.Context, p Plan) error {
	if f.failCommit != nil {
		return f.failCommit
	}
	f.plan = &p
	return nil
}
func (f *fakeBackend) Rollback() error { f.rolledBack = true; return nil }
func (f *fakeBackend) Existing(_ context.Context, table string, ids []string) ([]string, error) {
	var out []string
	for _, id := range ids {
		if slices.Contains(f.existing, table+"/"+id) {
			out = append(out, id)
		}
	}
	return out, nil
}

func file(path, typ, body string) File {
	return File{Path: path, ResourceType: typ, Deleted: strings.HasPrefix(path, "deleted/"),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }}
}

func TestLoadRoutesLines(t *testing.T) {
	var warnings []string
	fb := &fakeBackend{}
	src := Source{Dir: "d", Export: Export{Group: "g", Time: t0, RequestParameters: map[string]any{"_type": "Patient,Specimen"}}, Files: []File{
		file("Patient.000.ndjson", "Patient", "\ufeff{\"resourceType\":\"Patient\",\"id\":\"p1\"}\r\n\n{\"id\":\"o1\",\"resourceType\":\"Observation\"}\n{\"resourceType\":\"Specimen\",\"id\":\"s1\"}"),
		file("deleted/Bundle.000.ndjson", "Bundle", `{"resourceType":"Bundle","type":"transaction"}`+"\n"),
	}}
	st, err := Load(t.Context(), fb, src, Options{
		Exclude: []string{"Specimen"},
		Deletions: func([]byte) []Deletion {
			return []Deletion{{"Patient", "p0"}, {"Specimen", "s0"}, {"Bad Type", "x"}, {"Patient", ""}}
		},
		Warn:    func(s string) { warnings = append(warnings, s) },
		Now:     func() time.Time { return t0.Add(time.Hour) },
		Version: "v1",
	})
	if err != nil {
		t.Fatal(err)
	}
	wantAdded := []string{
		`patient/p1 {"resourceType":"Patient","id":"p1"} Patient.000.ndjson`,
		`observation/o1 {"id":"o1","resourceType":"Observation"} Patient.000.ndjson`,
	}
	if diff := cmp.Diff(wantAdded, fb.added); diff != "" {
		t.Errorf("added (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"patient/p0"}, fb.deleted); diff != "" {
		t.Errorf("deleted (-want +got):\n%s", diff)
	}
	wantWarn := []string{"Patient.000.ndjson: 2 resources are not Patient (first at line 3: Observation); loaded by their resourceType"}
	if diff := cmp.Diff(wantWarn, warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	wantPlan := &Plan{Group: "g", ExportTime: t0, Tables: []string{"observation", "patient"}, Completion: []string{"patient"},
		CompletionTime: t0, Excluded: "specimen", ETLVersion: "v1", ETLTime: t0.Add(time.Hour)}
	if diff := cmp.Diff(wantPlan, fb.plan); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	if st.Rows != 2 || st.Deletes != 1 || st.Files != 2 {
		t.Errorf("stats = %+v", st)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct{ body, want string }{
		{`{"resourceType":"Patient","id":"p1"}` + "\n[1,2]\n", "f.ndjson:2: missing resourceType"},
		{`{"resourceType":"Patient","id":7}`, "f.ndjson:1: missing id"},
		{`{"resourceType":"Patient","id":"p1"`, "f.ndjson:1: invalid JSON"},
		{"\n\n" + `{"resourceType":"Patient","id":""}`, "f.ndjson:3: missing id"},
		{"{\"resourceType\":\"Patient\",\"id\":\"p\xff\"}", "f.ndjson:1: invalid UTF-8 at byte 34"},
		{`{"resourceType":"Patient","id":"p1","x":"\udfff"}`, `f.ndjson:1: lone surrogate \udfff at byte 42`},
		{`{"resourceType":"patient","id":"p1"}`, `f.ndjson:1: unknown resourceType "patient" (did you mean "Patient"?)`},
		{`{"resourceType":"Zzz","id":"p1"}`, `f.ndjson:1: unknown resourceType "Zzz"`},
	}
	for _, tt := range tests {
		fb := &fakeBackend{}
		_, err := Load(t.Context(), fb, Source{Export: Export{Time: t0}, Files: []File{file("f.ndjson", "Patient", tt.body)}}, Options{})
		if err == nil || err.Error() != tt.want || !errors.Is(err, ErrInvalid) {
			t.Errorf("Load(%q) = %v, want %q", tt.body, err, tt.want)
		}
		_, text := errors.AsType[*ndjson.TextError](err)
		if want := strings.Contains(tt.want, "UTF-8") || strings.Contains(tt.want, "surrogate"); text != want {
			t.Errorf("Load(%q) = %v: a *ndjson.TextError is %v, want %v", tt.body, err, text, want)
		}
		if got, want := errors.Is(err, ErrUnknownType), strings.Contains(tt.want, "unknown"); got != want {
			t.Errorf("Load(%q) = %v: errors.Is ErrUnknownType = %v, want %v", tt.body, err, got, want)
		}
		if !fb.rolledBack || fb.plan != nil {
			t.Errorf("Load(%q): rolled back %v, committed %v", tt.body, fb.rolledBack, fb.plan != nil)
		}
	}
	fb := &fakeBackend{failCommit: errors.New("disk full")}
	if _, err := Load(t.Context(), fb, Source{Export: Export{Time: t0}}, Options{}); err == nil || !fb.rolledBack {
		t.Errorf("Load with a failing commit = %v, rolled back %v", err, fb.rolledBack)
	}
}

func TestMedicationID(t *testing.T) {
	for ref, want := range map[string]string{
		"Medication/m1":                           "m1",
		"Medication/m1/_history/3":                "m1",
		"https://x/fhir/Medication/m.2":           "m.2",
		"https://x/fhir/Medication/m2/_history/1": "m2",
		"#med":                               "",
		"urn:uuid:1234":                      "",
		"Substance/s1":                       "",
		"Medication/":                        "",
		"Medication":                         "",
		"https://x/fhir/Medication?code=123": "",
		"https://x/fhir/Medication/a%2Fb":    "",
		// Epic's ids pass FHIR R4's 64 characters; they must not be lost.
		"Medication/" + strings.Repeat("eA1.", 20): strings.Repeat("eA1.", 20),
		"": "",
	} {
		if got := MedicationID(ref); got != want {
			t.Errorf("MedicationID(%q) = %q, want %q", ref, got, want)
		}
	}
}

type fakeMeds map[string]string // ref → resource, or "!" + error

func (f fakeMeds) Medication(_ context.Context, ref string) ([]byte, string, error) {
	r, ok := f[ref]
	if !ok || strings.HasPrefix(r, "!") {
		return nil, "", errors.New("GET " + ref + ": 404 Not Found")
	}
	return []byte(r), "https://x/fhir/" + ref, nil
}

func TestLoadMedications(t *testing.T) {
	mr := func(id, ref string) string {
		return fmt.Sprintf(`{"resourceType":"MedicationRequest","id":%q,"medicationReference":{"reference":%q}}`+"\n", id, ref)
	}
	fb := &fakeBackend{existing: []string{"medication/m3"}}
	var warnings []string
	src := Source{Export: Export{Time: t0}, Files: []File{
		file("MedicationRequest.000.ndjson", "MedicationRequest",
			mr("r1", "Medication/m1")+mr("r2", "#contained")+mr("r3", "Medication/m2")+mr("r4", "Medication/m3")+
				mr("r5", "https://x/fhir/Medication/m4/_history/2")+mr("r6", "Medication/m5")+mr("r7", "Medication/m1")+
				mr("r8", "Medication/m6")+`{"resourceType":"MedicationRequest","id":"r9","medicationCodeableConcept":{"text":"x"}}`+"\n"+
				mr("r10", "Medication/m7")),
		file("Medication.000.ndjson", "Medication", `{"resourceType":"Medication","id":"m2"}`+"\n"),
	}}
	meds := fakeMeds{
		"Medication/m1": `{"resourceType":"Medication","id":"m1"}`,
		"https://x/fhir/Medication/m4/_history/2": `{"resourceType":"Medication","id":"m4"}`,
		"Medication/m6": `{"resourceType":"Patient","id":"m6"}`,
		"Medication/m7": "{\"resourceType\":\"Medication\",\"id\":\"m7\",\"code\":{\"text\":\"\xe9\"}}",
	}
	st, err := Load(t.Context(), fb, src, Options{Medications: meds, Warn: func(s string) { warnings = append(warnings, s) }})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range fb.added {
		if strings.HasPrefix(a, "medication/") {
			got = append(got, a)
		}
	}
	want := []string{
		`medication/m2 {"resourceType":"Medication","id":"m2"} Medication.000.ndjson`,
		`medication/m1 {"resourceType":"Medication","id":"m1"} https://x/fhir/Medication/m1`,
		`medication/m4 {"resourceType":"Medication","id":"m4"} https://x/fhir/https://x/fhir/Medication/m4/_history/2`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("medications staged (-want +got):\n%s", diff)
	}
	wantWarn := []string{
		"Medication/m5 (referenced by MedicationRequests): GET Medication/m5: 404 Not Found",
		"Medication/m6 (referenced by MedicationRequests): the answer is not Medication/m6",
		"Medication/m7 (referenced by MedicationRequests): the answer is not Unicode text: invalid UTF-8 at byte 56",
	}
	if diff := cmp.Diff(wantWarn, warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	if st.MedicationsFetched != 2 || st.MedicationsFailed != 3 || st.Tables["medication"] != 3 {
		t.Errorf("stats = %+v", st)
	}
	if !slices.Contains(fb.plan.Tables, "medication") {
		t.Errorf("plan tables %v lack medication", fb.plan.Tables)
	}
}

func FuzzMedicationID(f *testing.F) {
	for _, s := range []string{"Medication/m1", "https://x/fhir/Medication/m1/_history/2", "#m", "urn:uuid:1", "a/Medication/b/c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		id := MedicationID(ref)
		// The id may be percent-encoded in the reference (Medication/%70 names Medication/p).
		decoded, _ := url.PathUnescape(ref)
		if id != "" && (!isFHIRID(id) || !strings.Contains(ref, id) && !strings.Contains(decoded, id)) {
			t.Errorf("MedicationID(%q) = %q", ref, id)
		}
	})
}

func TestLoadCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	fb := &fakeBackend{}
	src := Source{Export: Export{Time: t0}, Files: []File{
		file("a.ndjson", "Patient", `{"resourceType":"Patient","id":"p1"}`),
		{Path: "b.ndjson", ResourceType: "Patient", Open: func() (io.ReadCloser, error) {
			cancel()
			return io.NopCloser(strings.NewReader(`{"resourceType":"Patient","id":"p2"}`)), nil
		}},
		file("c.ndjson", "Patient", `{"resourceType":"Patient","id":"p3"}`),
	}}
	_, err := Load(ctx, fb, src, Options{})
	if !errors.Is(err, context.Canceled) || !fb.rolledBack || fb.plan != nil {
		t.Errorf("Load after cancel = %v (rolled back %v, committed %v), want context.Canceled and a rollback", err, fb.rolledBack, fb.plan != nil)
	}
}
