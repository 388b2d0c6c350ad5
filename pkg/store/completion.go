package store

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/resourcetype"
)

// LinkedTables are the Encounter-linked tables whose completion an encounter waits for
// ("Encounters first", DESIGN.md §7; the same ten as Cumulus Library's core study).
var LinkedTables = []string{
	"allergyintolerance", "condition", "diagnosticreport", "documentreference", "episodeofcare",
	"medicationrequest", "observation", "procedure", "servicerequest", "specimen",
}

// dateParams are the search parameters of a _typeFilter that only window a type in time. A filter
// made of these (with any modifier or prefix) still returns every resource of the Group inside
// the window, which the completion time already bounds, so it does not slice the table: the
// Cumulus "No Partial Group Exports" rule allows _since and date-oriented _typeFilters.
var dateParams = map[string]bool{
	"_lastUpdated": true, "date": true, "onset-date": true, "abatement-date": true,
	"recorded-date": true, "authoredon": true, "authored": true, "issued": true, "period": true,
	"occurrence": true, "collected": true, "last-date": true, "effective": true,
}

// Export is what a folder says about the export that produced it (DESIGN.md §4): the Group, the
// time, and the kickoff's request parameters.
type Export struct {
	Group             string
	Time              time.Time      // transactionTime, or --export-timestamp
	URL               string         // the kickoff URL, "" when unknown
	RequestParameters map[string]any // as logged by the kickoff event; nil without a log
	// Unfinished says the folder's download did not finish (the user loads it anyway): its rows
	// load, but no table of it is complete, whatever --assume-complete says.
	Unfinished bool
}

// Skip says why a table loaded from a folder gets no completion row.
type Skip struct {
	Table  string
	Reason string
}

// Completion is what a folder contributes to completion tracking.
type Completion struct {
	// Time is the completion time: the export time, or _until when that is earlier (a resource
	// changed after _until is not in the export, so the folder proves nothing after it).
	Time time.Time
	// Tables get a completion row, sorted.
	Tables []string
	// Skipped tables are loaded without a completion row, sorted by table.
	Skipped []Skip
	// Excluded is the sorted list of tables the user excluded (--exclude-resources).
	Excluded []string
}

// ReasonUnfinished is the Skip reason of every table of an unfinished download.
const ReasonUnfinished = "the download did not finish"

// planCompletion decides which tables a folder marks complete (DESIGN.md §7). present lists the
// resource types that have output files; excluded and assume are resource types or table names
// from --exclude-resources and --assume-complete.
//
// Rules: every present type and every type requested in _type (an empty answer proves there are
// none) gets a row, unless excluded; a `patient`-sliced export (_patientCount logged) and a type
// filtered by a _typeFilter that is not only a date window get none, unless the user vouches for
// them with --assume-complete. A type given to --assume-complete is complete even when the folder
// has no file of it and did not request it: the user says the server holds none. An unfinished
// download marks nothing complete.
//
// Only FHIR's resource types count (resourcetype.Known): a file name or a logged _type of another
// type makes no table; known says which types count (resourcetype.Known, plus Options.ExtraTypes).
func planCompletion(e Export, present, excluded, assume []string, known func(string) bool) (Completion, error) {
	c := Completion{Time: Micro(e.Time), Excluded: tableSet(excluded)}
	if until, ok := param(e.RequestParameters, "_until"); ok && until != "" {
		t, err := ParseTime(until)
		if err != nil {
			return Completion{}, fmt.Errorf("requestParameters _until: %w", err)
		}
		if t.Before(c.Time) {
			c.Time = Micro(t)
		}
	}
	// A type the user vouches for gets its row even when the folder neither has nor requested it:
	// that is how a type the server never exports (the reference server's Specimen, say) stops
	// holding every encounter incomplete.
	var types []string
	for _, t := range slices.Concat(present, list(e.RequestParameters, "_type"), assume) {
		if s := resourcetype.Suggest(t); strings.EqualFold(s, t) {
			t = s // a table name, such as --assume-complete specimen
		}
		if known(t) {
			types = append(types, t)
		}
	}
	tables := tableSet(types)

	sliced := map[string]string{}
	if n, ok := patientCount(e.RequestParameters); ok {
		for _, t := range tables {
			sliced[t] = fmt.Sprintf("the export was limited to %s listed patients (patient parameter)", n)
		}
	}
	for _, f := range list(e.RequestParameters, "_typeFilter") {
		typ, query, ok := strings.Cut(f, "?")
		if !ok || typ == "" {
			continue
		}
		t := TableName(typ)
		if _, done := sliced[t]; done || !ValidResourceType(typ) || onlyDates(query) {
			continue
		}
		sliced[t] = fmt.Sprintf("exported with _typeFilter %s, which is not only a date window", f)
	}
	assumed := tableSet(assume)
	for _, t := range tables {
		switch {
		case slices.Contains(c.Excluded, t):
		case e.Unfinished:
			c.Skipped = append(c.Skipped, Skip{Table: t, Reason: ReasonUnfinished})
		case sliced[t] != "" && !slices.Contains(assumed, t):
			c.Skipped = append(c.Skipped, Skip{Table: t, Reason: sliced[t]})
		default:
			c.Tables = append(c.Tables, t)
		}
	}
	return c, nil
}

// onlyDates reports whether every parameter of a _typeFilter query is a date window.
func onlyDates(query string) bool {
	v, err := url.ParseQuery(query)
	if err != nil || len(v) == 0 {
		return false
	}
	for k := range v {
		name, _, _ := strings.Cut(k, ":") // date:missing, _lastUpdated:above …
		if !dateParams[name] {
			return false
		}
	}
	return true
}

// patientCount reports whether the kickoff named patients: bulk-data-client logs `patient` as
// _patientCount (DESIGN.md §4); a raw `patient` is accepted too.
func patientCount(p map[string]any) (string, bool) {
	if v, ok := p["_patientCount"]; ok && v != nil {
		s := fmt.Sprint(v)
		if n, err := strconv.ParseFloat(s, 64); err == nil && n == 0 {
			return "", false
		}
		return s, true
	}
	if v, ok := p["patient"]; ok && v != nil {
		return strconv.Itoa(max(len(listOf(v)), 1)), true
	}
	return "", false
}

// param returns a request parameter given as a string (or a one-element list).
func param(p map[string]any, name string) (string, bool) {
	vs := listOf(p[name])
	if len(vs) == 0 {
		return "", false
	}
	return vs[0], true
}

// list returns a comma-separated or repeated request parameter as a flat list. Splitting on
// commas is safe for _typeFilter: a comma inside one filter is escaped as %2C (DESIGN.md §2).
func list(p map[string]any, name string) []string {
	var out []string
	for _, v := range listOf(p[name]) {
		for s := range strings.SplitSeq(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// listOf reads a logged parameter value: a string, a list of strings, or (from a Parameters body)
// a list of objects with a value[x] member.
func listOf(v any) []string {
	switch v := v.(type) {
	case nil:
		return nil
	case string:
		return []string{v}
	case []string:
		return v
	case []any:
		var out []string
		for _, e := range v {
			out = append(out, listOf(e)...)
		}
		return out
	case map[string]any:
		for k, x := range v {
			if strings.HasPrefix(k, "value") {
				return listOf(x)
			}
		}
		return nil
	default:
		return []string{fmt.Sprint(v)}
	}
}

// TableName is the table that holds a resource type: its lower-case name (`MedicationRequest`
// → `medicationrequest`), as in Cumulus.
func TableName(resourceType string) string { return strings.ToLower(resourceType) }

// ValidResourceType reports whether s can name a resource type, and so a table: letters and
// digits, starting with a letter. Everything that reaches SQL as an identifier passes this.
func ValidResourceType(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// tableSet turns resource types or table names into sorted, unique table names. What cannot name
// a resource type (a garbled _type in a log) is dropped: it would never name a table.
func tableSet(types []string) []string {
	var out []string
	for _, t := range types {
		if t = strings.TrimSpace(t); ValidResourceType(t) {
			out = append(out, TableName(t))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ExcludedString is how etl__completion and etl__completion_encounters record excluded tables:
// a comma-separated, sorted list of table names, or "" for none.
func ExcludedString(tables []string) string { return strings.Join(tableSet(tables), ",") }

// PlanCompletion is what a load of a folder would record in etl__completion, without excluded
// or vouched-for tables: the rule of DESIGN.md §7 applied to the export e whose output files
// hold the resource types present. bulk-kickoff --since auto reads an export folder with it, so
// that a folder counts as complete for the same tables, at the same time, as once loaded.
func PlanCompletion(e Export, present []string) (Completion, error) {
	return planCompletion(e, present, nil, nil, resourcetype.Known)
}

// CompletionRow is one row of etl__completion, as a reader of a store sees it.
type CompletionRow struct {
	Table      string
	Group      string
	ExportTime time.Time
	ExportURL  string // "" when the load did not know it
}
