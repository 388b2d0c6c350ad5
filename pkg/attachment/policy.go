package attachment

import (
	"fmt"
	"mime"
	"slices"
	"strings"
)

// DefaultResources are the resource types whose attachments are inlined by default: the two that
// carry clinical notes (DESIGN.md §5), and the only two fhirjson.Attachments knows.
var DefaultResources = []string{"DocumentReference", "DiagnosticReport"}

// DefaultMIMETypes are the media types inlined by default: the text renderings NLP reads
// (DESIGN.md §5). PDFs and images are left as links unless asked for.
var DefaultMIMETypes = []string{"text/plain", "text/html", "application/xhtml+xml"}

// Policy says which attachments are inlined.
type Policy struct {
	// Resources are the resource types to rewrite; nil means DefaultResources. Only
	// DocumentReference and DiagnosticReport have attachments this package knows.
	Resources []string
	// MIMETypes are media types without parameters ("text/plain"); nil means DefaultMIMETypes.
	// An attachment matches when its contentType, parameters such as charset ignored, is one of
	// them (case-insensitively).
	MIMETypes []string
	// MaxSize skips attachments whose content is larger, in bytes; 0 means HardMaxSize, the
	// most there is. A size field already in the attachment is not trusted for this (some
	// servers put the base64 length there, DESIGN.md §9): the download itself decides.
	MaxSize int64
}

// HardMaxSize is the largest attachment ever inlined, whatever Policy.MaxSize says: a download
// is held in memory until it is spliced into its line, and its base64 (4/3 of it) must fit in
// a line other tools can read (ndjson.Scanner takes lines up to 2047 MiB at most).
const HardMaxSize = 1 << 30

// policy is a checked Policy with sets for matching.
type policy struct {
	resources map[string]bool
	mimes     map[string]bool
	maxSize   int64
}

func (p Policy) compile() (*policy, error) {
	c := &policy{resources: map[string]bool{}, mimes: map[string]bool{}, maxSize: p.MaxSize}
	rs, ms := p.Resources, p.MIMETypes
	if rs == nil {
		rs = DefaultResources
	}
	if ms == nil {
		ms = DefaultMIMETypes
	}
	for _, r := range rs {
		if !slices.Contains(DefaultResources, r) {
			return nil, fmt.Errorf("resource type %q: attachments are inlined in %s only", r, strings.Join(DefaultResources, " and "))
		}
		c.resources[r] = true
	}
	for _, m := range ms {
		mt, err := ParseMIMEType(m)
		if err != nil {
			return nil, err
		}
		c.mimes[mt] = true
	}
	if len(c.resources) == 0 || len(c.mimes) == 0 {
		return nil, fmt.Errorf("no resource types or no media types to inline")
	}
	switch {
	case p.MaxSize < 0 || p.MaxSize > HardMaxSize:
		return nil, fmt.Errorf("maximum attachment size %d: want at most 1GiB (0 means 1GiB)", p.MaxSize)
	case p.MaxSize == 0:
		c.maxSize = HardMaxSize
	}
	return c, nil
}

// ParseMIMEType checks a media type given by a user (--mimetype) and returns it lowercased without
// parameters: "Text/Plain; charset=utf-8" gives "text/plain".
func ParseMIMEType(s string) (string, error) {
	mt, _, err := mime.ParseMediaType(s)
	if err != nil || !strings.Contains(mt, "/") || strings.HasPrefix(mt, "/") || strings.HasSuffix(mt, "/") {
		return "", fmt.Errorf("media type %q: want type/subtype, such as text/plain", s)
	}
	return mt, nil
}

// mediaType splits a contentType as found in data or an HTTP header into its lowercased type and
// charset. It is lenient, as servers are (DESIGN.md: lenient in what we accept): a value
// mime.ParseMediaType rejects still gives the part before the first ';'.
func mediaType(s string) (mt, charset string) {
	if s == "" {
		return "", ""
	}
	if t, params, err := mime.ParseMediaType(s); err == nil {
		return t, params["charset"]
	}
	t, rest, _ := strings.Cut(s, ";")
	for p := range strings.SplitSeq(rest, ";") {
		k, v, ok := strings.Cut(p, "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), "charset") {
			charset = strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	return strings.ToLower(strings.TrimSpace(t)), charset
}

// SplitList splits the values of a repeatable flag on commas as well (--resource, --mimetype,
// --inline-resource, ...), dropping empty items, so "a,b" and "a" "b" mean the same; nil when
// there is nothing, so Policy takes its default.
func SplitList(values []string) []string {
	var out []string
	for _, v := range values {
		for item := range strings.SplitSeq(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				out = append(out, item)
			}
		}
	}
	return out
}
