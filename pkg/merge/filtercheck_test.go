package merge

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
)

func TestMayMatch(t *testing.T) {
	const (
		lab     = `{"resourceType":"Observation","id":"a","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]}}`
		vital   = `{"resourceType":"Observation","id":"b","status":"amended","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}]}`
		nocat   = `{"resourceType":"Observation","id":"c","status":"final"}`
		textcat = `{"resourceType":"Observation","id":"d","category":[{"text":"lab-ish"}]}`
		local   = `{"resourceType":"Observation","id":"e","category":[{"coding":[{"code":"laboratory"}]}]}`
		enc     = `{"resourceType":"Encounter","id":"f","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"}}`
	)
	tests := []struct {
		filter string
		res    string
		want   bool
	}{
		{"Observation?category=laboratory", lab, true},
		{"Observation?category=laboratory", vital, false},
		{"Observation?category=laboratory", nocat, false},
		{"Observation?category=LABORATORY", lab, true}, // servers differ on case: never accuse one for it
		{"Observation?category=laboratory%2Cvital-signs", vital, true},
		{"Observation?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory", lab, true},
		{"Observation?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory", local, false},
		{"Observation?category=|laboratory", local, true},
		{"Observation?category=|laboratory", lab, false},
		{"Observation?category=http://terminology.hl7.org/CodeSystem/observation-category|", vital, true},
		{"Observation?category:missing=true", nocat, true},
		{"Observation?category:missing=true", lab, false},
		{"Observation?category:missing=true", textcat, false}, // present, though it has no coding
		{"Observation?category:missing=false", nocat, false},
		{"Observation?category:not=laboratory", vital, true},
		{"Observation?category:not=laboratory", nocat, true},
		{"Observation?category:not=laboratory", lab, false},
		{"Observation?status=final", lab, true},
		{"Observation?status=final", vital, false},
		{"Observation?status=http://hl7.org/fhir/observation-status|final", lab, true}, // a code's system is implicit
		{"Observation?status=final&category=laboratory", nocat, false},                 // ANDed
		{"Observation?status=final&category=laboratory", lab, true},
		{"Observation?category=laboratory&category=vital-signs", lab, false},
		{"Observation?code=http://loinc.org|2345-7", lab, true},
		{"Observation?code=http://loinc.org|2345-7", vital, false},
		// Not judged here, so never a reason to report: the benefit of the doubt.
		{"Observation?date=ge2024-01-01", nocat, true},
		{"Observation?category:text=lab", vital, true},
		{"Observation?category:in=http://example.org/vs", vital, true},
		{"Observation?category:not=laboratory,exam", lab, true},
		{"Observation?category:missing=maybe", lab, true},
		{"Observation?date=ge2024&category=laboratory", vital, false}, // the judged half decides
		{"Encounter?class=AMB", enc, true},
		{"Encounter?class=IMP", enc, false},
	}
	for _, tt := range tests {
		f, err := bulk.ParseTypeFilter(tt.filter)
		if err != nil {
			t.Fatalf("ParseTypeFilter(%q): %v", tt.filter, err)
		}
		if got := mayMatch(f, []byte(tt.res)); got != tt.want {
			t.Errorf("mayMatch(%q, %s) = %v, want %v", tt.filter, tt.res, got, tt.want)
		}
	}
}

func TestFilterChecks(t *testing.T) {
	tests := []struct {
		name    string
		filters any
		types   string // checked types, sorted, space-separated
	}{
		{"none", nil, ""},
		{"one", "Observation?category=laboratory", "Observation"},
		{"two types, POST-logged list", []any{"Observation?category=laboratory", "Condition?clinical-status=active"}, "Condition Observation"},
		{"a type filtered only by what is not judged", "Observation?date=ge2024", ""},
		{"one judged filter of two makes the type checked", "Observation?date=ge2024,Observation?status=final", "Observation"},
		// Another client logged the filter with its inner comma unescaped: split at it, the parts
		// are not filters, and the slice is left unchecked rather than judged by half its filter.
		{"split by a client", "Observation?category=laboratory,vital-signs", ""},
		{"no type", "?category=laboratory", ""},
	}
	for _, tt := range tests {
		params := map[string]any{}
		if tt.filters != nil {
			params["_typeFilter"] = tt.filters
		}
		checks := filterChecks(&exportdir.Export{RequestParameters: params})
		var types []string
		for _, t := range []string{"Condition", "Observation"} {
			if checks[t] != nil {
				types = append(types, t)
			}
		}
		if got := strings.Join(types, " "); got != tt.types {
			t.Errorf("%s: filterChecks(%v) checks %q, want %q", tt.name, tt.filters, got, tt.types)
		}
	}
}

// TestCheckFiltersFolders: CheckFilters reads only the folders' logs and the files of the
// filtered types, and reports each slice with what it holds outside its filter.
func TestCheckFiltersFolders(t *testing.T) {
	dir := t.TempDir()
	cat := func(id, code string) string {
		return `{"resourceType":"Observation","id":"` + id + `","category":[{"coding":[{"code":"` + code + `"}]}]}`
	}
	writeSlice(t, filepath.Join(dir, "lab"), slice{group: "g1", time: "2024-05-02T00:00:00Z",
		params: map[string]any{"_type": "Observation,Patient", "_typeFilter": "Observation?category=laboratory"},
		files: map[string]string{
			"Observation.000.ndjson": lines(cat("1", "laboratory"), cat("2", "vital-signs"), cat("3", "exam")),
			"Patient.000.ndjson":     lines(`{"resourceType":"Patient","id":"p"}`),
		}})
	writeSlice(t, filepath.Join(dir, "vitals"), slice{group: "g1", time: "2024-05-02T00:00:00Z",
		params: map[string]any{"_type": "Observation", "_typeFilter": "Observation?category=vital-signs"},
		files:  map[string]string{"Observation.000.ndjson": lines(cat("2", "vital-signs"))}})
	writeSlice(t, filepath.Join(dir, "nolog"), slice{noLog: true,
		files: map[string]string{"Observation.000.ndjson": lines(cat("9", "exam"))}})
	o, _ := testOptions(t, "-", filepath.Join(dir, "lab"), filepath.Join(dir, "vitals"), filepath.Join(dir, "nolog"),
		filepath.Join(dir, "nolog", "Observation.000.ndjson"))
	got, err := CheckFilters(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("CheckFilters = %v, want the lab slice only", got)
	}
	want := FilterMismatch{Slice: filepath.Join(dir, "lab"), Type: "Observation", Filter: "category=laboratory", Outside: 2, Total: 3, Example: "2"}
	if got[0] != want {
		t.Errorf("CheckFilters = %+v, want %+v", got[0], want)
	}
	msg := got[0].String()
	if !strings.HasPrefix(msg, "slice "+filepath.Join(dir, "lab")+": 2 of 3 Observation resources do not match its filter category=laboratory (e.g. Observation/2): the server ignored _typeFilter") ||
		!strings.HasSuffix(msg, "export Observation once without --type-filter") {
		t.Errorf("message = %q", msg)
	}

	// A slice still downloading is refused, as the merge refuses it.
	writeSlice(t, filepath.Join(dir, "lab"), slice{noLog: true, files: map[string]string{"Observation.001.ndjson.part": "{"}})
	if _, err := CheckFilters(t.Context(), o); err == nil || !strings.Contains(err.Error(), "still downloading") {
		t.Errorf("CheckFilters with a .part file = %v, want the still-downloading error", err)
	}
}
