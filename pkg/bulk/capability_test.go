package bulk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Crafted CapabilityStatements, shaped like what real servers publish.
const (
	// thin: a server that lists its resources and nothing about $export.
	capThin = `{"resourceType":"CapabilityStatement","rest":[{"mode":"server","resource":[{"type":"Patient"}]}]}`
	// full: the three IG operations, system one at rest.operation, the others on their types.
	capFull = `{"resourceType":"CapabilityStatement","rest":[{"mode":"server",
		"operation":[{"name":"export","definition":"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}],
		"resource":[{"type":"Patient","operation":[{"name":"export","definition":"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"}]},
		            {"type":"Group","operation":[{"name":"export","definition":"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"}]}]}]}`
	// groupOnly: Group-level export only, as Epic and Cerner declare it (STU1 definition).
	capGroupOnly = `{"resourceType":"CapabilityStatement","rest":[{"mode":"server",
		"resource":[{"type":"Group","operation":[{"name":"export","definition":"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export|1.0.1"}]}]}]}`
	// allAtSystem: all three listed at rest.operation, told apart by their canonicals.
	capAllAtSystem = `{"resourceType":"CapabilityStatement","rest":[{"operation":[
		{"name":"export","definition":"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export|2.0.0"},
		{"name":"patient-export","definition":"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export|2.0.0"},
		{"name":"group-export","definition":"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export|2.0.0"}]}]}`
	// vendor: the server's own definitions, to be read from [base]/OperationDefinition/ID; HAPI's
	// $export-poll-status beside them is not an export.
	capVendor = `{"resourceType":"CapabilityStatement","rest":[{"operation":[
		{"name":"export","definition":"https://ehr.example/fhir/OperationDefinition/bulk-export|3"},
		{"name":"export-poll-status","definition":"https://ehr.example/fhir/OperationDefinition/-s-export-poll-status"}],
		"resource":[{"type":"Group","operation":[{"name":"export","definition":"OperationDefinition/Group-i-export"}]}]}]}`
	// dstu2: a Conformance whose definition is a Reference.
	capDSTU2 = `{"resourceType":"Conformance","rest":[{"operation":[{"name":"export","definition":{"reference":"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"}}]}]}`
	// unknownLevel: an export whose definition cannot be read and whose name says nothing.
	capUnknown = `{"resourceType":"CapabilityStatement","rest":[{"operation":[
		{"name":"group-export","definition":"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"},
		{"name":"export","definition":"https://elsewhere.example/defs/x"}]}]}`
)

func TestReadCapabilities(t *testing.T) {
	stu3 := []string{"_outputFormat", "_since", "_type", "_typeFilter", "_elements", "patient", "includeAssociatedData",
		"_until", "organizeOutputBy", "allowPartialManifests"}
	noPatient := slices.DeleteFunc(slices.Clone(stu3), func(s string) bool { return s == "patient" })
	stu2 := stu3[:7]
	tests := []struct {
		name, statement string
		want            []ExportOperation
	}{
		{"thin", capThin, nil},
		{"not JSON", `{"rest":`, nil},
		{"wrong types", `{"rest":[{"operation":"export","resource":[{"type":1,"operation":{"name":7}}]}]}`, nil},
		{"full", capFull, []ExportOperation{
			{Level: LevelSystem, Definition: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export", Params: noPatient},
			{Level: LevelPatient, Definition: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export", Params: stu3},
			{Level: LevelGroup, Definition: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export", Params: stu3},
		}},
		{"group only, STU1", capGroupOnly, []ExportOperation{
			{Level: LevelGroup, Definition: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export|1.0.1",
				Params: []string{"_outputFormat", "_since", "_type", "_typeFilter"}},
		}},
		{"all at system, STU2", capAllAtSystem, []ExportOperation{
			{Level: LevelSystem, Definition: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export|2.0.0",
				Params: slices.DeleteFunc(slices.Clone(stu2), func(s string) bool { return s == "patient" })},
			{Level: LevelPatient, Definition: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export|2.0.0", Params: stu2},
			{Level: LevelGroup, Definition: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export|2.0.0", Params: stu2},
		}},
		{"vendor definitions", capVendor, []ExportOperation{
			{Definition: "https://ehr.example/fhir/OperationDefinition/bulk-export|3", defID: "bulk-export", atSystem: true},
			{Level: LevelGroup, Definition: "OperationDefinition/Group-i-export", defID: "Group-i-export"},
		}},
		{"DSTU2 reference", capDSTU2, []ExportOperation{
			{Level: LevelGroup, Definition: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export", Params: stu3},
		}},
		{"the IG's system definition listed under Patient is Patient-level, with patient", `{"rest":[{"resource":[{"type":"Patient",
			"operation":[{"name":"export","definition":"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}]}]}]}`,
			[]ExportOperation{{Level: LevelPatient, Definition: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export", Params: stu3}}},
		{"export on another type is ignored", `{"rest":[{"resource":[{"type":"Observation","operation":[{"name":"export"}]}]}]}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ReadCapabilities([]byte(tt.statement))
			if d := cmp.Diff(tt.want, got.Operations, cmp.AllowUnexported(ExportOperation{})); d != "" {
				t.Errorf("ReadCapabilities(%s) operations (-want +got):\n%s", tt.name, d)
			}
		})
	}
}

// opDef is a vendor OperationDefinition with the given flags and input parameters.
func opDef(system, typ, instance bool, resource string, params ...string) string {
	var ps []string
	for _, p := range params {
		ps = append(ps, fmt.Sprintf(`{"name":%q,"use":"in","min":0,"max":"1"}`, p))
	}
	ps = append(ps, `{"name":"return","use":"out","min":0,"max":"1"}`)
	return fmt.Sprintf(`{"resourceType":"OperationDefinition","code":"export","system":%t,"type":%t,"instance":%t,"resource":[%q],"parameter":[%s]}`,
		system, typ, instance, resource, strings.Join(ps, ","))
}

func TestResolve(t *testing.T) {
	defs := map[string]string{
		"bulk-export":    opDef(true, false, false, "Patient", "_type", "_since", "_outputFormat"),
		"Group-i-export": opDef(false, false, true, "Group", "_type", "_since", "_typeFilter"),
	}
	var asked []string
	read := func(_ context.Context, id string) ([]byte, error) {
		asked = append(asked, id)
		d, ok := defs[id]
		if !ok {
			return nil, errors.New("404 Not Found")
		}
		return []byte(d), nil
	}
	c := ReadCapabilities([]byte(capVendor))
	if err := c.Resolve(t.Context(), read); err != nil {
		t.Fatal(err)
	}
	want := []ExportOperation{
		{Level: LevelSystem, Definition: "https://ehr.example/fhir/OperationDefinition/bulk-export|3", defID: "bulk-export",
			atSystem: true, Params: []string{"_type", "_since", "_outputFormat"}},
		{Level: LevelGroup, Definition: "OperationDefinition/Group-i-export", defID: "Group-i-export",
			Params: []string{"_type", "_since", "_typeFilter"}},
	}
	if d := cmp.Diff(want, c.Operations, cmp.AllowUnexported(ExportOperation{})); d != "" {
		t.Errorf("Resolve: operations (-want +got):\n%s", d)
	}
	if !slices.Equal(asked, []string{"bulk-export", "Group-i-export"}) || len(c.Notes) != 0 {
		t.Errorf("Resolve read %q with notes %q, want each definition once and no notes", asked, c.Notes)
	}

	// A system-placed export whose definition says it runs on a Group instance is Group-level.
	defs["bulk-export"] = opDef(false, false, true, "Group", "_type")
	c = ReadCapabilities([]byte(capVendor))
	_ = c.Resolve(t.Context(), read)
	if c.Operations[0].Level != LevelGroup {
		t.Errorf("Resolve: a definition with system=false, instance=true on Group gives level %q, want group", c.Operations[0].Level)
	}

	// A definition that cannot be read leaves the parameters unknown, with a note.
	delete(defs, "Group-i-export")
	c = ReadCapabilities([]byte(capVendor))
	_ = c.Resolve(t.Context(), read)
	if c.Operations[1].Params != nil || len(c.Notes) != 1 || !strings.Contains(c.Notes[0], "Group-level export (OperationDefinition/Group-i-export) could not be read: 404") {
		t.Errorf("Resolve with a missing definition: params %q, notes %q; want nil params and one note", c.Operations[1].Params, c.Notes)
	}

	// A cancelled context ends it.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := ReadCapabilities([]byte(capVendor)).Resolve(ctx, read); !errors.Is(err, context.Canceled) {
		t.Errorf("Resolve(cancelled) = %v, want context.Canceled", err)
	}
}

func TestResolveBounded(t *testing.T) {
	var ops []string
	for i := range 50 {
		ops = append(ops, fmt.Sprintf(`{"name":"export","definition":"OperationDefinition/d%d"}`, i))
	}
	c := ReadCapabilities([]byte(`{"rest":[{"operation":[` + strings.Join(ops, ",") + `]}]}`))
	n := 0
	_ = c.Resolve(t.Context(), func(context.Context, string) ([]byte, error) {
		n++
		return []byte(opDef(true, false, false, "Patient", "_type")), nil
	})
	if n != maxDefinitions {
		t.Errorf("Resolve read %d definitions of 50 listed, want %d", n, maxDefinitions)
	}
}

func TestCheck(t *testing.T) {
	prep := func(u string, r KickoffRequest) *PreparedKickoff {
		t.Helper()
		r.URL = u
		pk, err := r.Prepare()
		if err != nil {
			t.Fatal(err)
		}
		return pk
	}
	const base = "https://ehr.example/fhir"
	filter := KickoffRequest{Types: []string{"Observation"}, TypeFilters: []string{"Observation?category=laboratory"}}
	tests := []struct {
		name, statement string
		pk              *PreparedKickoff
		undeclared      []string
		err             string
	}{
		{"thin statement: nothing said, nothing checked", capThin, prep(base, KickoffRequest{Elements: []string{"id"}, Until: "2024-01-01"}), nil, ""},
		{"full, all declared", capFull, prep(base+"/Group/g", KickoffRequest{Types: []string{"Patient"}, Until: "2024-01-01",
			Patients: []string{"1"}, TypeFilters: []string{"Patient?active=true"}}), nil, ""},
		{"full: a vendor parameter is undeclared", capFull, prep(base, KickoffRequest{Params: [][2]string{{"_count", "5"}}}), []string{"_count"}, ""},
		{"full: patient at system level is undeclared", capFull, prep(base+"/$export?patient=Patient/1", KickoffRequest{}), []string{"patient"}, ""},
		{"group only: system export refused", capGroupOnly, prep(base, KickoffRequest{}), nil,
			"https://ehr.example/fhir declares only Group-level export in its CapabilityStatement: a system-level export would be refused; export a Group instead (https://ehr.example/fhir/Group/ID)"},
		{"group only: Patient export refused", capGroupOnly, prep(base+"/Patient", KickoffRequest{}), nil, "a Patient-level export would be refused"},
		{"group only, STU1: _elements and _until undeclared", capGroupOnly, prep(base+"/Group/g",
			KickoffRequest{Types: []string{"Patient"}, Elements: []string{"id"}, Until: "2024-01-01"}), []string{"_until", "_elements"}, ""},
		{"group only, STU1: _typeFilter declared", capGroupOnly, prep(base+"/Group/g", filter), nil, ""},
		{"only the system-level export declared: a Group export is not refused", `{"resourceType":"CapabilityStatement","rest":[{"operation":[
			{"name":"export","definition":"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}]}]}`,
			prep(base+"/Group/g", KickoffRequest{}), nil, ""},
		{"Patient and Group declared: system export refused", `{"resourceType":"CapabilityStatement","rest":[{"resource":[
			{"type":"Patient","operation":[{"name":"export"}]},{"type":"Group","operation":[{"name":"export"}]}]}]}`,
			prep(base, KickoffRequest{}), nil, "declares only Patient-level and Group-level export"},
		{"an export of unknown level: no refusal", capUnknown, prep(base+"/Patient", KickoffRequest{}), nil, ""},
		{"vendor, unresolved: a Group export is not refused", capVendor, prep(base+"/Group/g", KickoffRequest{}), nil, ""},
		{"vendor, unresolved: parameters unknown", capVendor, prep(base+"/Group/g", filter), nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadCapabilities([]byte(tt.statement)).Check(tt.pk)
			if tt.err != "" {
				if _, ok := errors.AsType[*UnsupportedLevelError](err); !ok || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("Check = %v, want an *UnsupportedLevelError containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			var names []string
			for _, u := range got {
				names = append(names, u.Param)
			}
			if !slices.Equal(names, tt.undeclared) {
				t.Errorf("Check: undeclared %q, want %q", names, tt.undeclared)
			}
		})
	}
}

func TestParseOperationDefinition(t *testing.T) {
	tests := []struct {
		in   string
		want *OperationDefinition
		err  string
	}{
		{opDef(false, true, false, "Patient", "_type", "_type", "patient"),
			&OperationDefinition{Code: "export", Type: true, Resource: []string{"Patient"}, Params: []string{"_type", "patient"}}, ""},
		{`{"resourceType":"OperationDefinition","type":["Group"],"instance":true,"parameter":[{"name":"x","use":"out"}]}`,
			&OperationDefinition{Type: true, Instance: true, Resource: []string{"Group"}, Params: []string{}}, ""},
		{`{"resourceType":"OperationDefinition","system":"yes","resource":"Group","parameter":{"name":"_type","use":"in"}}`,
			&OperationDefinition{Resource: []string{"Group"}, Params: []string{"_type"}}, ""},
		{`{"resourceType":"Parameters"}`, nil, `got resourceType "Parameters"`},
		{`[]`, nil, "not a JSON object"},
		{`<html>`, nil, "not a JSON object"},
	}
	for _, tt := range tests {
		got, err := ParseOperationDefinition([]byte(tt.in))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseOperationDefinition(%s) = %v, want an error containing %q", tt.in, err, tt.err)
			}
			continue
		}
		if d := cmp.Diff(tt.want, got); err != nil || d != "" {
			t.Errorf("ParseOperationDefinition(%s): %v (-want +got):\n%s", tt.in, err, d)
		}
	}
}

func FuzzReadCapabilities(f *testing.F) {
	for _, s := range []string{capThin, capFull, capGroupOnly, capAllAtSystem, capVendor, capDSTU2, capUnknown, `{}`, `[]`} {
		f.Add([]byte(s))
	}
	pk, err := KickoffRequest{URL: "https://x/fhir/Patient", Types: []string{"Patient"}}.Prepare()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c := ReadCapabilities(b)
		for _, op := range c.Operations {
			if !slices.Contains([]Level{"", LevelSystem, LevelPatient, LevelGroup}, op.Level) {
				t.Fatalf("ReadCapabilities(%q): level %q", b, op.Level)
			}
			if op.defID != "" && !fhirID.MatchString(op.defID) {
				t.Fatalf("ReadCapabilities(%q): definition id %q is not a FHIR id", b, op.defID)
			}
		}
		_ = c.Resolve(t.Context(), func(context.Context, string) ([]byte, error) { return b, nil })
		if _, err := c.Check(pk); err != nil {
			if _, ok := errors.AsType[*UnsupportedLevelError](err); !ok {
				t.Fatalf("Check: %v, want nil or an *UnsupportedLevelError", err)
			}
		}
	})
}

func FuzzParseOperationDefinition(f *testing.F) {
	f.Add([]byte(opDef(true, false, false, "Patient", "_type")))
	f.Add([]byte(`{"resourceType":"OperationDefinition","type":["Group"],"parameter":[{"name":"a","use":"in"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseOperationDefinition(b)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, p := range d.Params {
			if p == "" || seen[p] {
				t.Fatalf("ParseOperationDefinition(%q): params %q hold an empty or repeated name", b, d.Params)
			}
			seen[p] = true
		}
	})
}

func TestParseTypeFilter(t *testing.T) {
	tests := []struct {
		in    string
		want  *TypeFilter
		error string
	}{
		{"Observation?category=laboratory%2Cvital-signs&status=final", &TypeFilter{Type: "Observation",
			Query: "category=laboratory,vital-signs&status=final",
			Params: []FilterParam{{Name: "category", Values: []string{"laboratory", "vital-signs"}},
				{Name: "status", Values: []string{"final"}}}}, ""},
		{"Observation?category:missing=true", &TypeFilter{Type: "Observation", Query: "category:missing=true",
			Params: []FilterParam{{Name: "category", Modifier: "missing", Values: []string{"true"}}}}, ""},
		{`Observation?code=a\,b,c\|d|e`, &TypeFilter{Type: "Observation", Query: `code=a\,b,c\|d|e`,
			Params: []FilterParam{{Name: "code", Values: []string{"a,b", `c\|d|e`}}}}, ""},
		{"Patient?", &TypeFilter{Type: "Patient"}, ""},
		{"Observation", nil, "want Type?query"},
		{"observation?x=1", nil, "not a resource type"},
		{"Observation?x=%zz", nil, "bad escape"},
		{"Observation?:missing=true", nil, "without a name"},
	}
	for _, tt := range tests {
		got, err := ParseTypeFilter(tt.in)
		if tt.error != "" {
			if err == nil || !strings.Contains(err.Error(), tt.error) {
				t.Errorf("ParseTypeFilter(%q) = %+v, %v; want an error containing %q", tt.in, got, err, tt.error)
			}
			continue
		}
		if d := cmp.Diff(tt.want, got); err != nil || d != "" {
			t.Errorf("ParseTypeFilter(%q): %v (-want +got):\n%s", tt.in, err, d)
		}
	}
}

func TestSplitToken(t *testing.T) {
	tests := []struct {
		in, system, code string
		hasSystem        bool
	}{
		{"laboratory", "", "laboratory", false},
		{"http://loinc.org|2345-7", "http://loinc.org", "2345-7", true},
		{"|x", "", "x", true},
		{"http://s|", "http://s", "", true},
		{`a\|b|c`, "a|b", "c", true},
		{`a\|b`, "", "a|b", false},
	}
	for _, tt := range tests {
		s, c, h := SplitToken(tt.in)
		if s != tt.system || c != tt.code || h != tt.hasSystem {
			t.Errorf("SplitToken(%q) = %q, %q, %v; want %q, %q, %v", tt.in, s, c, h, tt.system, tt.code, tt.hasSystem)
		}
	}
}

func FuzzParseTypeFilter(f *testing.F) {
	for _, s := range []string{"Observation?category=laboratory%2Cvital-signs&status=final", "Observation?category:missing=true",
		`Observation?code=a\,b,c\|d|e`, "Patient?", "x", "Observation?a=%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tf, err := ParseTypeFilter(s)
		if err != nil {
			return
		}
		if !validTypeName(tf.Type) {
			t.Fatalf("ParseTypeFilter(%q): type %q", s, tf.Type)
		}
		for _, p := range tf.Params {
			if p.Name == "" || len(p.Values) == 0 {
				t.Fatalf("ParseTypeFilter(%q): parameter %+v without a name or a value", s, p)
			}
			for _, v := range p.Values {
				if system, code, has := SplitToken(v); !has && system != "" {
					t.Fatalf("SplitToken(%q) = %q, %q: a system without a bar", v, system, code)
				}
			}
		}
		if len(tf.Params) > 0 && tf.Query == "" {
			t.Fatalf("ParseTypeFilter(%q): %d parameters shown as nothing", s, len(tf.Params))
		}
	})
}

// TestServerCapabilities: through a real client against an httptest server, each definition the
// statement names is read once, from [base]/OperationDefinition/ID, whatever host its URL names.
func TestServerCapabilities(t *testing.T) {
	var mu sync.Mutex
	asked := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked[r.URL.Path]++
		mu.Unlock()
		switch r.URL.Path {
		case "/fhir/OperationDefinition/group-x":
			io.WriteString(w, opDef(false, false, true, "Group", "_type", "_since"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	statement := `{"resourceType":"CapabilityStatement","rest":[{"resource":[
		{"type":"Group","operation":[{"name":"export","definition":"https://elsewhere.example/OperationDefinition/group-x"}]},
		{"type":"Patient","operation":[{"name":"export","definition":"https://elsewhere.example/OperationDefinition/group-x|2"}]}]}]}`
	caps, err := ServerCapabilities(t.Context(), newClient(t, srv.URL+"/fhir"), []byte(statement))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"/fhir/OperationDefinition/group-x": 1}; !cmp.Equal(asked, want) {
		t.Errorf("requests %v, want %v", asked, want)
	}
	for _, op := range caps.Operations {
		if !slices.Equal(op.Params, []string{"_type", "_since"}) {
			t.Errorf("%s export: params %q, want the definition's", op.Level, op.Params)
		}
	}
	pk, _ := KickoffRequest{URL: srv.URL + "/fhir/Group/g", Types: []string{"Patient"}, Until: "2024"}.Prepare()
	if u, err := caps.Check(pk); err != nil || len(u) != 1 || u[0].Param != "_until" {
		t.Errorf("Check = %+v, %v; want _until undeclared", u, err)
	}
}
