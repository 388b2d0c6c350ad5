package merge

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirjson"
	"github.com/bulkpipe/bulkpipe/pkg/ndjson"
)

// filterCheck is what a slice's _typeFilter selects of one resource type, and what the slice
// holds that it excludes. Some servers silently ignore _typeFilter (DESIGN.md §9): each slice
// then holds every resource of the type, and only a look at what came back tells.
type filterCheck struct {
	typ     string
	filters []*bulk.TypeFilter // ORed, as the IG says filters of one type are
	total   int64              // resources of typ in the slice
	outside int64              // of which no filter can select
	example string             // the id of the first one outside
}

// FilterMismatch is a slice holding resources its _typeFilter excludes.
type FilterMismatch struct {
	Slice   string // the source as given
	Type    string
	Filter  string // the type's filters as a person reads them, "or" between them
	Outside int64  // resources no filter selects
	Total   int64  // resources of Type in the slice
	Example string // the id of one of them
}

func (f *FilterMismatch) String() string { return f.text(false) }

// text is the report of the mismatch; merged adds what the merge made of the slice.
func (f *FilterMismatch) text(merged bool) string {
	msg := fmt.Sprintf("slice %s: %d of %d %s resources do not match its filter %s (e.g. %s/%s): "+
		"the server ignored _typeFilter (or read it otherwise); ", f.Slice, f.Outside, f.Total, f.Type, f.Filter, f.Type, f.Example)
	if merged {
		msg += "the merge keeps one copy of each resource, so the merged folder holds every " + f.Type +
			" the slices hold, but "
	}
	return msg + "slicing gains nothing on this server: export " + f.Type + " once without --type-filter"
}

// filterChecks reads the _typeFilter of a slice's logged kickoff into one check per filtered
// type. A filter that cannot be read (another client's log that split a filter at its commas,
// say) leaves the whole slice unchecked rather than judged by half its filters.
func filterChecks(e *exportdir.Export) map[string]*filterCheck {
	if e == nil {
		return nil
	}
	checks := map[string]*filterCheck{}
	for _, s := range list(e.RequestParameters["_typeFilter"]) {
		f, err := bulk.ParseTypeFilter(s)
		if err != nil {
			return nil
		}
		fc := checks[f.Type]
		if fc == nil {
			fc = &filterCheck{typ: f.Type}
			checks[f.Type] = fc
		}
		fc.filters = append(fc.filters, f)
	}
	for t, fc := range checks {
		// A type whose filters name no parameter judged here can select anything.
		if !slices.ContainsFunc(fc.filters, checkable) {
			delete(checks, t)
		}
	}
	if len(checks) == 0 {
		return nil
	}
	return checks
}

// checkable reports whether some parameter of f is judged locally: then f can exclude.
func checkable(f *bulk.TypeFilter) bool {
	return slices.ContainsFunc(f.Params, func(p bulk.FilterParam) bool {
		return fhirjson.TokenParam(f.Type, p.Name) && judged(p)
	})
}

// judged reports whether a parameter's modifier is one matched here: none, :missing, or :not
// with one value. Others (:text, :in, :below, :of-type…) need a terminology server.
func judged(p bulk.FilterParam) bool {
	switch p.Modifier {
	case "":
		return true
	case "missing":
		return len(p.Values) == 1 && (strings.EqualFold(p.Values[0], "true") || strings.EqualFold(p.Values[0], "false"))
	case "not":
		return len(p.Values) == 1
	}
	return false
}

// see counts one resource of the check's type.
func (fc *filterCheck) see(res []byte, id string) {
	fc.total++
	for _, f := range fc.filters {
		if mayMatch(f, res) {
			return
		}
	}
	if fc.outside++; fc.example == "" {
		fc.example = id
	}
}

// mayMatch reports whether the server could have selected res with f: every parameter (ANDed)
// judged here matches, and those not judged are given the benefit of the doubt.
func mayMatch(f *bulk.TypeFilter, res []byte) bool {
	for _, p := range f.Params {
		if !fhirjson.TokenParam(f.Type, p.Name) || !judged(p) {
			continue
		}
		tokens, present, _ := fhirjson.SearchTokens(res, f.Type, p.Name)
		var ok bool
		switch p.Modifier {
		case "missing":
			ok = present != strings.EqualFold(p.Values[0], "true")
		case "not": // includes resources without the element (FHIR R4 search §3.1.1.5.9)
			ok = !slices.ContainsFunc(tokens, func(t fhirjson.Token) bool { return tokenMatches(p.Values[0], t) })
		default:
			ok = slices.ContainsFunc(p.Values, func(v string) bool {
				return slices.ContainsFunc(tokens, func(t fhirjson.Token) bool { return tokenMatches(v, t) })
			})
		}
		if !ok {
			return false
		}
	}
	return true
}

// tokenMatches matches one token search value against one token. Codes compare without case:
// servers differ there, and a false "does not match" would accuse a server wrongly. A code
// element's system is implicit, so only its code is compared.
func tokenMatches(value string, t fhirjson.Token) bool {
	system, code, hasSystem := bulk.SplitToken(value)
	sameCode := strings.EqualFold(code, t.Code)
	switch {
	case t.Implicit:
		return code == "" || sameCode
	case !hasSystem:
		return sameCode
	case system == "":
		return t.System == "" && sameCode
	case code == "":
		return t.System == system
	}
	return t.System == system && sameCode
}

// mismatches lists the checks of src that found resources outside their filters.
func (src *source) mismatches() []FilterMismatch {
	var out []FilterMismatch
	for _, t := range slices.Sorted(maps.Keys(src.checks)) {
		fc := src.checks[t]
		if fc.outside == 0 {
			continue
		}
		var qs []string
		for _, f := range fc.filters {
			qs = append(qs, f.Query)
		}
		out = append(out, FilterMismatch{Slice: src.name(), Type: t, Filter: strings.Join(qs, " or "),
			Outside: fc.outside, Total: fc.total, Example: fc.example})
	}
	return out
}

// CheckFilters reads each source folder's log and the files of the types its _typeFilter
// restricts, and returns the slices that hold resources their filter excludes, without merging
// anything. Sources without a log, or whose filters name nothing judged locally, pass.
func CheckFilters(ctx context.Context, o *Options) ([]FilterMismatch, error) {
	var out []FilterMismatch
	for i, arg := range o.Sources {
		src := &source{arg: arg, index: i}
		if arg == "-" {
			continue // no log, nothing to check against
		}
		switch fi, err := os.Stat(arg); {
		case err != nil:
			return nil, fmt.Errorf("source %s: %w", arg, unwrapPathError(err))
		case !fi.IsDir():
			continue // an NDJSON file has no log, so no filter to check against
		}
		if err := src.openFolder(); err != nil {
			return nil, err
		}
		for _, f := range src.files {
			fc := src.checks[f.ResourceType]
			if f.ItemType != exportdir.ItemOutput || fc == nil {
				continue
			}
			if err := checkFile(ctx, o, f, fc); err != nil {
				return nil, err
			}
		}
		out = append(out, src.mismatches()...)
	}
	return out, nil
}

// checkFile feeds the resources of fc's type in one output file to fc.
func checkFile(ctx context.Context, o *Options, f exportdir.File, fc *filterCheck) error {
	r, err := o.open(f)
	if err != nil {
		return fmt.Errorf("read %s: %w", f.Path, unwrapPathError(err))
	}
	defer r.Close()
	sc := ndjson.NewScanner(r, o.MaxLine)
	for sc.Scan() {
		line := sc.Bytes()
		if !ndjson.Valid(line) {
			return fmt.Errorf("%s:%d: invalid JSON", f.Path, sc.Line())
		}
		if fhirjson.ResourceType(line) == fc.typ {
			fc.see(line, fhirjson.ID(line))
		}
		if sc.Line()&0x3ff == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", f.Path, err)
	}
	return nil
}
