package fhirjson

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSearchTokens(t *testing.T) {
	tests := []struct {
		res, typ, param string
		want            []Token
		present, ok     bool
	}{
		{`{"category":[{"coding":[{"system":"s","code":"a"},{"code":"b"}]},{"coding":[{"code":"c"}]}]}`, "Observation", "category",
			[]Token{{System: "s", Code: "a"}, {Code: "b"}, {Code: "c"}}, true, true},
		{`{"code":{"coding":[{"system":"http://loinc.org","code":"1"}],"text":"x"}}`, "Observation", "code",
			[]Token{{System: "http://loinc.org", Code: "1"}}, true, true},
		{`{"status":"final"}`, "Observation", "status", []Token{{Code: "final", Implicit: true}}, true, true},
		{`{"class":{"system":"v3","code":"AMB"}}`, "Encounter", "class", []Token{{System: "v3", Code: "AMB"}}, true, true},
		{`{"class":[{"coding":[{"code":"AMB"}]}]}`, "Encounter", "class", []Token{{Code: "AMB"}}, true, true}, // R5
		{`{"category":[{"text":"only text"}]}`, "Observation", "category", nil, true, true},
		{`{"category":[]}`, "Observation", "category", nil, false, true},
		{`{"category":null}`, "Observation", "category", nil, false, true},
		{`{}`, "Observation", "category", nil, false, true},
		{`{"category":[7,"x",{"coding":"bad"}]}`, "Observation", "category", []Token{{Code: "x", Implicit: true}}, true, true},
		{`{"code":{"coding":[{"code":"1"}]}}`, "MedicationRequest", "code", nil, false, false}, // medication[x]: not judged
		{`{"code":{"coding":[{"code":"1"}]}}`, "AllergyIntolerance", "code", nil, false, false},
	}
	for _, tt := range tests {
		got, present, ok := SearchTokens([]byte(tt.res), tt.typ, tt.param)
		if d := cmp.Diff(tt.want, got); d != "" || present != tt.present || ok != tt.ok {
			t.Errorf("SearchTokens(%s, %s, %s) = present %v, ok %v, want %v, %v; tokens (-want +got):\n%s",
				tt.res, tt.typ, tt.param, present, ok, tt.present, tt.ok, d)
		}
		if TokenParam(tt.typ, tt.param) != tt.ok {
			t.Errorf("TokenParam(%s, %s) = %v, want %v", tt.typ, tt.param, !tt.ok, tt.ok)
		}
	}
}
