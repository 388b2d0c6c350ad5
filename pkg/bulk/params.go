package bulk

import (
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtime"
)

// Kickoff parameter names of the Bulk Data IG (OperationDefinition export, group-export,
// patient-export).
const (
	ParamOutputFormat          = "_outputFormat"
	ParamSince                 = "_since"
	ParamUntil                 = "_until"
	ParamType                  = "_type"
	ParamElements              = "_elements"
	ParamTypeFilter            = "_typeFilter"
	ParamPatient               = "patient"
	ParamIncludeAssociatedData = "includeAssociatedData"
	ParamOrganizeOutputBy      = "organizeOutputBy"
	ParamAllowPartialManifests = "allowPartialManifests"
)

// listParams may carry several values (max "*" in the OperationDefinitions). On GET their values
// travel as one comma list; in a POST body each value is its own parameter.
var listParams = []string{ParamType, ParamElements, ParamTypeFilter, ParamPatient, ParamIncludeAssociatedData}

// IsListParam reports whether the kickoff parameter name takes a comma list of values.
func IsListParam(name string) bool { return slices.Contains(listParams, name) }

// valueType is the FHIR type of a kickoff parameter in a POST Parameters body, from the
// OperationDefinitions (STU2 onwards); names not listed are sent as valueString.
func valueType(name string) string {
	switch name {
	case ParamSince, ParamUntil:
		return "valueInstant"
	case ParamIncludeAssociatedData:
		return "valueCode"
	case ParamAllowPartialManifests:
		return "valueBoolean"
	case ParamPatient:
		return "valueReference"
	}
	return "valueString"
}

// NormalizeTime turns a FHIR date or dateTime into the instant that _since and _until require
// (DESIGN.md §2), in UTC, RFC 3339, keeping any fractional seconds. A partial date means its first
// instant ("2024" is 2024-01-01T00:00:00Z); the caller echoes the result so the user sees which
// instant was sent. A time without a zone offset is refused (fhirtime.Parse).
func NormalizeTime(s string) (string, error) {
	t, err := fhirtime.Parse(s)
	if err != nil {
		return "", err
	}
	return t.UTC().Format(time.RFC3339Nano), nil
}

// EscapeTypeFilter prepares one _typeFilter value. On GET the filters of a request are joined with
// commas, so a comma inside one filter's search values must not look like a separator: it is
// escaped as %2C in the filter's decoded value (DESIGN.md §2). The server decodes the query once
// to split the filters, then parses each filter as a query string, which turns %2C back into the
// comma of a FHIR "or". So `Observation?category=laboratory,vital-signs` becomes the value
// `Observation?category=laboratory%2Cvital-signs`, and
// `Observation%3Fcategory%3Dlaboratory%252Cvital-signs` on the wire.
func EscapeTypeFilter(f string) string { return strings.ReplaceAll(f, ",", "%2C") }

// SplitList splits comma lists and drops blanks and repeats, keeping the first occurrence's order:
// the --type and --elements flags accept "Patient,Condition" as well as repetition.
func SplitList(values ...string) []string {
	var out []string
	for _, v := range values {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" && !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// queryEscape escapes a value for the query string, leaving commas literal: on GET a comma
// separates the values of a list parameter, and a comma inside a value has already been escaped
// where the protocol needs it (EscapeTypeFilter).
func queryEscape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "%2C", ",")
}

// PatientReference turns a --patient value ("123" or "Patient/123") into the reference that the
// patient parameter carries.
func PatientReference(v string) string {
	v = strings.TrimSpace(v)
	if strings.Contains(v, "/") {
		return v
	}
	return "Patient/" + v
}
