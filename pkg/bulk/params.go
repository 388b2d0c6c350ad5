package bulk

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
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

// timeRE matches the FHIR date and dateTime forms at any precision: YYYY, YYYY-MM, YYYY-MM-DD,
// then optionally Thh:mm[:ss[.fraction]] and a zone (Z, ±hh:mm or ±hhmm).
var timeRE = regexp.MustCompile(`^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:[Tt](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?([Zz]|[+-]\d{2}:?\d{2})?)?)?)?$`)

// NormalizeTime turns a FHIR date or dateTime into the instant that _since and _until require
// (DESIGN.md §2), in UTC, RFC 3339, keeping any fractional seconds. A partial date means its first
// instant ("2024" is 2024-01-01T00:00:00Z), the same on every machine; the caller echoes the result
// so the user sees which instant was sent. A time without a zone offset is refused, as FHIR
// refuses it: reading it as UTC would silently shift the export by the user's own offset.
func NormalizeTime(s string) (string, error) {
	t, err := parseTime(strings.TrimSpace(s))
	if err != nil {
		return "", err
	}
	return t.UTC().Format(time.RFC3339Nano), nil
}

func parseTime(s string) (time.Time, error) {
	m := timeRE.FindStringSubmatch(s)
	if m == nil {
		return time.Time{}, fmt.Errorf("%q is not a FHIR date or dateTime (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss[.sss][Z|±hh:mm])", s)
	}
	num := func(i, def int) int {
		if m[i] == "" {
			return def
		}
		n, _ := strconv.Atoi(m[i])
		return n
	}
	year, month, day := num(1, 0), num(2, 1), num(3, 1)
	hour, minute, sec := num(4, 0), num(5, 0), num(6, 0)
	nsec := 0
	if f := m[7]; f != "" {
		f = (f + "000000000")[:9] // precision beyond nanoseconds cannot be sent anyway
		nsec, _ = strconv.Atoi(f)
	}
	if m[4] != "" && m[8] == "" {
		return time.Time{}, fmt.Errorf("%q: a time needs a zone offset (Z or ±hh:mm, e.g. %sZ), which FHIR requires", s, s)
	}
	loc := time.UTC
	if z := m[8]; z != "" && z != "Z" && z != "z" {
		digits := strings.ReplaceAll(z[1:], ":", "")
		oh, _ := strconv.Atoi(digits[:2])
		om, _ := strconv.Atoi(digits[2:])
		if oh > 14 || om > 59 {
			return time.Time{}, fmt.Errorf("%q: time zone offset %s out of range", s, z)
		}
		off := oh*3600 + om*60
		if z[0] == '-' {
			off = -off
		}
		loc = time.FixedZone(z, off)
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc)
	// time.Date normalizes overflow (February 30 becomes March 2); a round trip catches it.
	if t.Year() != year || int(t.Month()) != month || t.Day() != day || t.Hour() != hour ||
		t.Minute() != minute || t.Second() != sec {
		return time.Time{}, fmt.Errorf("%q is not a valid date or time", s)
	}
	return t, nil
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
