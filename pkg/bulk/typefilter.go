package bulk

import (
	"fmt"
	"net/url"
	"strings"
)

// TypeFilter is one _typeFilter value read back: a resource type and the FHIR search
// parameters that select its resources (Bulk Data IG, _typeFilter; FHIR R4 search §3.1.1).
type TypeFilter struct {
	Type   string
	Query  string        // the decoded search part, as a person reads it: category=laboratory,vital-signs
	Params []FilterParam // ANDed
}

// FilterParam is one search parameter of a TypeFilter.
type FilterParam struct {
	Name     string   // category
	Modifier string   // missing, not, text… ("" for none)
	Values   []string // ORed, with FHIR's search escapes (\, \| \$ \\) undone except \| (see SplitToken)
}

// ParseTypeFilter reads a _typeFilter value as logged or sent: "Type?query", where the query
// is form-encoded (so a comma escaped as %2C inside one filter, EscapeTypeFilter, is back to a
// comma, which ORs values). Parameters repeat as FHIR allows (category=a&category=b is an AND).
func ParseTypeFilter(s string) (*TypeFilter, error) {
	typ, query, ok := strings.Cut(s, "?")
	if !ok {
		return nil, fmt.Errorf("_typeFilter %q: want Type?query", s)
	}
	if !validTypeName(typ) {
		return nil, fmt.Errorf("_typeFilter %q: %q is not a resource type", s, typ)
	}
	f := &TypeFilter{Type: typ}
	var shown []string
	for kv := range strings.SplitSeq(query, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		name, err1 := url.QueryUnescape(k)
		value, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("_typeFilter %q: bad escape in %q", s, kv)
		}
		shown = append(shown, name+"="+value)
		name, mod, _ := strings.Cut(name, ":")
		if name == "" {
			return nil, fmt.Errorf("_typeFilter %q: a parameter without a name", s)
		}
		f.Params = append(f.Params, FilterParam{Name: name, Modifier: mod, Values: splitValues(value)})
	}
	f.Query = strings.Join(shown, "&")
	return f, nil
}

// splitValues splits a search value at the commas that FHIR's search escaping (\,) leaves
// unescaped, and undoes \, \$ and \\; \| stays escaped, for SplitToken to tell from the
// system|code bar.
func splitValues(v string) []string {
	var out []string
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\' && i+1 < len(v) && v[i+1] == '|':
			b.WriteString(`\|`)
			i++
		case c == '\\' && i+1 < len(v):
			b.WriteByte(v[i+1])
			i++
		case c == ',':
			out = append(out, b.String())
			b.Reset()
		default:
			b.WriteByte(c)
		}
	}
	return append(out, b.String())
}

// SplitToken reads a token search value (FHIR R4 search §3.1.1.5.9): "code" (any system),
// "system|code", "|code" (no system), "system|" (any code of the system). hasSystem tells
// "code" (no bar) from "|code".
func SplitToken(v string) (system, code string, hasSystem bool) {
	for i := 0; i < len(v); i++ {
		switch {
		case v[i] == '\\' && i+1 < len(v) && v[i+1] == '|':
			i++
		case v[i] == '|':
			return unescapeBar(v[:i]), unescapeBar(v[i+1:]), true
		}
	}
	return "", unescapeBar(v), false
}

func unescapeBar(s string) string { return strings.ReplaceAll(s, `\|`, "|") }

// validTypeName is the FHIR resource type pattern [A-Z][A-Za-z]*.
func validTypeName(s string) bool {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	return strings.IndexFunc(s, func(c rune) bool { return !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') }) < 0
}
