package fhirjson

import "github.com/tidwall/gjson"

// Token is one value a token search parameter is matched against (FHIR R4 search §3.1.1.5.9):
// a Coding's system and code, or a code element's value (Implicit: its system is the element's
// own value set, which the resource does not carry).
type Token struct {
	System, Code string
	Implicit     bool
}

// tokenElements maps the token search parameters whose FHIRPath is exactly one element of the
// resource (R4 and R5 agree) to that element. Only these are checked locally (ndjson-merge's
// check of a slice against its _typeFilter); a parameter whose expression reaches further
// (AllergyIntolerance code also searches reaction.substance, MedicationRequest code is
// medication[x]) is left out, so it is never judged by half its definition.
var tokenElements = map[string]map[string]string{
	"Observation":       {"category": "category", "code": "code", "status": "status"},
	"Condition":         {"category": "category", "code": "code", "clinical-status": "clinicalStatus", "verification-status": "verificationStatus"},
	"DiagnosticReport":  {"category": "category", "code": "code", "status": "status"},
	"DocumentReference": {"category": "category", "type": "type", "status": "status"},
	"Encounter":         {"class": "class", "type": "type", "status": "status"},
	"MedicationRequest": {"category": "category", "intent": "intent", "status": "status"},
	"Procedure":         {"category": "category", "code": "code", "status": "status"},
	"ServiceRequest":    {"category": "category", "code": "code", "status": "status"},
	"Immunization":      {"status": "status", "vaccine-code": "vaccineCode"},
	"AllergyIntolerance": {"category": "category", "clinical-status": "clinicalStatus",
		"verification-status": "verificationStatus"},
}

// TokenParam reports whether the token search parameter param of resource type typ can be
// matched locally (SearchTokens).
func TokenParam(typ, param string) bool {
	_, ok := tokenElements[typ][param]
	return ok
}

// SearchTokens returns the values the token search parameter param matches in res, a resource
// of type typ: every coding of a CodeableConcept (or of a list of them), a Coding, or a code
// element's value; present tells whether the element is there at all (what :missing tests),
// which a CodeableConcept holding only text is. ok is false when TokenParam does not know param.
func SearchTokens(res []byte, typ, param string) (tokens []Token, present, ok bool) {
	elem, ok := tokenElements[typ][param]
	if !ok {
		return nil, false, false
	}
	v := gjson.GetBytes(res, elem)
	if v.IsArray() {
		v.ForEach(func(_, e gjson.Result) bool {
			present = true
			tokens = appendTokens(tokens, e)
			return true
		})
		return tokens, present, true
	}
	return appendTokens(tokens, v), v.Exists() && v.Type != gjson.Null, true
}

// appendTokens appends the tokens of one element value: a code, a Coding, a CodeableConcept.
func appendTokens(tokens []Token, v gjson.Result) []Token {
	switch {
	case v.Type == gjson.String:
		return append(tokens, Token{Code: v.Str, Implicit: true})
	case !v.IsObject():
		return tokens
	case v.Get("coding").Exists():
		v.Get("coding").ForEach(func(_, c gjson.Result) bool {
			if c.IsObject() {
				tokens = append(tokens, Token{System: c.Get("system").String(), Code: c.Get("code").String()})
			}
			return true
		})
		return tokens
	case v.Get("code").Exists() || v.Get("system").Exists(): // a Coding (R4 Encounter.class)
		return append(tokens, Token{System: v.Get("system").String(), Code: v.Get("code").String()})
	}
	return tokens
}
