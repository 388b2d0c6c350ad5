package merge

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtime"
)

// mergeParams computes the requestParameters of the merged kickoff from the slices' own (DESIGN.md §6:
// the merged log records the slices' filters). The merged export is the union of the slices, so:
//
//   - _typeFilter lists every slice's filters (filters of one type are ORed by the spec, which is what
//     a union is), except that a type some slice exported unfiltered needs no filter at all;
//   - _type is the union of the slices' types, or absent when some slice had none (all types);
//   - _since/_until span the slices' ranges when they join into one (date slices); with gaps, the
//     range reaching the latest end is kept, which claims less rather than more;
//   - any other parameter keeps its value when every slice sent the same one, else becomes the list of
//     the distinct values sent (still present, so a reader never mistakes a restricted slice for a
//     full export), with a note;
//   - _bulkpipeSlices records each slice as it was: exportId, exportUrl, transactionTime and
//     requestParameters, and the source path of a slice without a log.
//
// Slices without a log contribute only their _bulkpipeSlices record: their parameters are unknown.
func mergeParams(srcs []*source) (map[string]any, []string) {
	var notes []string
	out := map[string]any{}
	var logged []map[string]any
	for _, s := range srcs {
		if s.export != nil {
			p := s.export.RequestParameters
			if p == nil {
				p = map[string]any{}
			}
			logged = append(logged, p)
		}
	}
	if len(logged) > 0 {
		var keys []string
		for _, p := range logged {
			for k := range p {
				if !slices.Contains(keys, k) {
					keys = append(keys, k)
				}
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			switch k {
			case "_type", "_typeFilter", "_since", "_until", "_bulkpipeSlices":
				continue
			}
			var vals []any
			inAll := true
			for _, p := range logged {
				v, ok := p[k]
				if !ok {
					inAll = false
					continue
				}
				if !slices.ContainsFunc(vals, func(x any) bool { return reflect.DeepEqual(x, v) }) {
					vals = append(vals, v)
				}
			}
			if inAll && len(vals) == 1 {
				out[k] = vals[0]
				continue
			}
			out[k] = vals
			notes = append(notes, fmt.Sprintf("requestParameters %s differs between slices: the merged log lists the values sent", k))
		}
		if types, ok := unionTypes(logged); ok {
			out["_type"] = strings.Join(types, ",")
		}
		if f := unionFilters(logged); len(f) > 0 {
			out["_typeFilter"] = f
		}
		since, until, note := spanDates(logged)
		if since != "" {
			out["_since"] = since
		}
		if until != "" {
			out["_until"] = until
		}
		if note != "" {
			notes = append(notes, note)
		}
	}
	recs := make([]any, len(srcs))
	for i, s := range srcs {
		r := map[string]any{"transactionTime": s.time.Format(time.RFC3339Nano)}
		if s.export != nil {
			r["exportId"], r["exportUrl"], r["requestParameters"] = s.export.ExportID, s.export.ExportURL, s.export.RequestParameters
		} else {
			r["source"] = s.name()
		}
		recs[i] = r
	}
	out["_bulkpipeSlices"] = recs
	return out, notes
}

// list reads a parameter logged as one comma-separated string (how GET sends it) or as an array of
// strings (one per POST parameter); either way a string may hold several comma-separated values.
// Commas inside one _typeFilter are %2C-escaped (DESIGN.md §2), so splitting at commas is safe.
func list(v any) []string {
	var out []string
	add := func(s string) {
		for part := range strings.SplitSeq(s, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
	}
	switch v := v.(type) {
	case string:
		add(v)
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok {
				add(s)
			}
		}
	case []string:
		for _, s := range v {
			add(s)
		}
	}
	return out
}

func unionTypes(ps []map[string]any) ([]string, bool) {
	var types []string
	for _, p := range ps {
		v, ok := p["_type"]
		if !ok || len(list(v)) == 0 {
			return nil, false
		}
		for _, t := range list(v) {
			if !slices.Contains(types, t) {
				types = append(types, t)
			}
		}
	}
	return types, true
}

// unionFilters lists the slices' _typeFilters, dropping those of a type that some slice exported
// without a filter: the union of "all Observations" and "lab Observations" is all Observations.
func unionFilters(ps []map[string]any) []string {
	filterType := func(f string) string { t, _, _ := strings.Cut(f, "?"); return t }
	var all []string
	filtered := make([]map[string]bool, len(ps)) // per slice: types it filtered
	for i, p := range ps {
		filtered[i] = map[string]bool{}
		for _, f := range list(p["_typeFilter"]) {
			filtered[i][filterType(f)] = true
			if !slices.Contains(all, f) {
				all = append(all, f)
			}
		}
	}
	whole := func(t string) bool { // some slice exported every resource of type t
		for i, p := range ps {
			types := list(p["_type"])
			if !filtered[i][t] && (len(types) == 0 || slices.Contains(types, t)) {
				return true
			}
		}
		return false
	}
	return slices.DeleteFunc(all, func(f string) bool { return whole(filterType(f)) })
}

// spanDates joins the slices' [_since, _until) ranges. A slice without _since starts at the
// beginning, one without _until runs to its transactionTime; "" means unbounded.
func spanDates(ps []map[string]any) (since, until, note string) {
	type span struct {
		from, to     time.Time
		fromS, toS   string
		noFrom, noTo bool
	}
	var spans []span
	for _, p := range ps {
		var s span
		s.fromS, _ = p["_since"].(string)
		s.toS, _ = p["_until"].(string)
		s.noFrom, s.noTo = s.fromS == "", s.toS == ""
		var err error
		if !s.noFrom {
			if s.from, err = parseParamTime(s.fromS); err != nil {
				return "", "", fmt.Sprintf("requestParameters _since %q: %v: left out of the merged log", s.fromS, err)
			}
		}
		if !s.noTo {
			if s.to, err = parseParamTime(s.toS); err != nil {
				return "", "", fmt.Sprintf("requestParameters _until %q: %v: left out of the merged log", s.toS, err)
			}
		}
		spans = append(spans, s)
	}
	// order by start (unbounded first), then join overlapping or touching ranges
	slices.SortStableFunc(spans, func(a, b span) int {
		switch {
		case a.noFrom && b.noFrom:
			return 0
		case a.noFrom:
			return -1
		case b.noFrom:
			return 1
		}
		return a.from.Compare(b.from)
	})
	joined := []span{spans[0]}
	for _, s := range spans[1:] {
		last := &joined[len(joined)-1]
		if last.noTo || !s.from.After(last.to) {
			if !last.noTo && (s.noTo || s.to.After(last.to)) {
				last.to, last.toS, last.noTo = s.to, s.toS, s.noTo
			}
			continue
		}
		joined = append(joined, s)
	}
	best := joined[len(joined)-1]
	if len(joined) > 1 {
		note = "the slices' _since/_until ranges leave gaps: the merged log keeps the latest range only"
	}
	if !best.noFrom {
		since = best.fromS
	}
	if !best.noTo {
		until = best.toS
	}
	return since, until, note
}

// parseParamTime reads _since/_until as logged: bulk-kickoff normalizes them to an instant, other
// clients may log a date; both are read as the server reads them.
func parseParamTime(s string) (time.Time, error) { return fhirtime.Parse(s) }

// rawDetail decodes a logged event detail, or returns nil.
func rawDetail(b json.RawMessage) map[string]any {
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	return m
}
