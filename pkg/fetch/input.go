package fetch

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/ndjson"
)

// ErrNoInput is returned by PageReader when the input holds no manifest at all: in a pipeline
// this almost always means the previous step failed (DESIGN.md §1).
var ErrNoInput = errors.New("no input on stdin (did the previous step fail?)")

// Page is one manifest page as bulk-fetch reads it: one line of the input.
type Page struct {
	// Raw is the page as the server sent it: the line without the _bulkpipe member.
	Raw      []byte
	Manifest *bulk.Manifest
	// Context is the _bulkpipe member bulk-poll adds (DESIGN.md §1); HasContext is false for a
	// manifest saved by another tool.
	Context    bulk.Context
	HasContext bool
	Input      string // input name ("stdin" or the file), for errors
	Line       int    // input line number, for errors
}

// where prefixes errors about this page with its input and line, as every bad-input error names
// the file and line.
func (p *Page) where() string {
	if p.Input == "" {
		return fmt.Sprintf("manifest line %d", p.Line)
	}
	return fmt.Sprintf("%s:%d", p.Input, p.Line)
}

// PageReader reads manifest pages, one a line, until EOF. Pages are handed over as soon as their
// line is complete, so that downloads of a partial manifest start while the export still runs.
type PageReader struct {
	sc    *ndjson.Scanner
	name  string
	first *Page
	peek  error
	read  int
}

// NewPageReader reads pages from r; name prefixes errors ("-" for stdin).
func NewPageReader(r io.Reader, name string, maxLine int) *PageReader {
	if name == "" || name == "-" {
		name = "stdin"
	}
	return &PageReader{sc: ndjson.NewScanner(r, maxLine), name: name}
}

// Peek returns the first page without consuming it: the tool needs its context (the FHIR base
// and the status URL) to build the client before downloading. An input without any page is
// ErrNoInput.
func (pr *PageReader) Peek() (*Page, error) {
	if pr.first == nil && pr.peek == nil && pr.read == 0 {
		pr.first, pr.peek = pr.next()
		if errors.Is(pr.peek, io.EOF) {
			pr.peek = ErrNoInput
		}
	}
	return pr.first, pr.peek
}

// Next returns the next page, or io.EOF after the last.
func (pr *PageReader) Next() (*Page, error) {
	if pr.read == 0 {
		if _, err := pr.Peek(); err != nil {
			pr.read++
			return nil, err
		}
	}
	if pr.first != nil {
		p := pr.first
		pr.first = nil
		pr.read++
		return p, nil
	}
	pr.read++
	return pr.next()
}

func (pr *PageReader) next() (*Page, error) {
	if !pr.sc.Scan() {
		if err := pr.sc.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", pr.name, err)
		}
		return nil, io.EOF
	}
	line := bytes.Clone(pr.sc.Bytes())
	p, err := ParsePage(line)
	if err != nil {
		return nil, fmt.Errorf("%s:%d: %w", pr.name, pr.sc.Line(), err)
	}
	p.Input, p.Line = pr.name, pr.sc.Line()
	return p, nil
}

// ParsePage reads one manifest line: the manifest, and the _bulkpipe context when present.
func ParsePage(line []byte) (*Page, error) {
	ctx, has := bulk.ContextOf(line)
	raw := line
	if has {
		raw = bulk.WithoutContext(line)
	}
	m, err := bulk.ParseManifest(raw)
	if err != nil {
		return nil, err
	}
	// Every page, not only the first: a Group resource or a CapabilityStatement in a manifest
	// file must never make its URL the export that bulk-fetch DELETEs when done.
	if err := bulk.CheckManifest(raw); err != nil {
		return nil, err
	}
	return &Page{Raw: raw, Manifest: m, Context: ctx, HasContext: has}, nil
}

// manifestID is the exportId of an export known only by its manifest (DESIGN.md §4).
func manifestID(raw []byte) string {
	s := sha256.Sum256(raw)
	return "urn:bulkpipe:manifest:" + hex.EncodeToString(s[:])
}

// identity says which manifest entry a file is, whatever its URL: the export's transaction time
// (held once, by the engine), the array, the resource type of its lines, and its number among the
// files of that type across all pages (DESIGN.md §3: names never come from URLs).
type identity struct {
	item    exportdir.ItemType
	rtype   string
	ordinal int
}

// rel is the file's path inside DIR, such as "deleted/Bundle.000.ndjson".
func (id identity) rel() string { return exportdir.Rel(id.item, id.rtype, id.ordinal) }

// entry is one file of a manifest page, with its identity.
type entry struct {
	id   identity
	item bulk.Item
	url  string // absolute
}

// numberer gives files their ordinals: per array and type, in manifest order across pages.
type numberer map[[2]string]int

// entries lists a page's files in manifest order (output, deleted, error) with their identities,
// URLs resolved against base (relative URLs are reported through rel). Types that could name a
// path outside DIR are refused.
func (n numberer) entries(m *bulk.Manifest, base *url.URL, rel func(string)) ([]entry, error) {
	var out []entry
	for _, arr := range []struct {
		t     exportdir.ItemType
		items []bulk.Item
	}{{exportdir.ItemOutput, m.Output}, {exportdir.ItemDeleted, m.Deleted}, {exportdir.ItemError, m.Error}} {
		for i, it := range arr.items {
			rtype := it.Type
			switch arr.t {
			case exportdir.ItemDeleted:
				rtype = "Bundle" // the IG: deleted items are transaction Bundles
			case exportdir.ItemError:
				rtype = "OperationOutcome"
			default:
				if !isTypeName(rtype) {
					return nil, fmt.Errorf("manifest output[%d]: type %q is not a FHIR resource type (refusing a name that could lead outside the folder)", i, rtype)
				}
			}
			u, err := url.Parse(it.URL)
			if err != nil {
				return nil, fmt.Errorf("manifest %s[%d]: url: %w", arr.t, i, err)
			}
			if !u.IsAbs() {
				if base == nil {
					return nil, fmt.Errorf("manifest %s[%d]: relative url %q and no status URL or FHIR base to resolve it against", arr.t, i, it.URL)
				}
				u = base.ResolveReference(u)
				if rel != nil {
					rel(it.URL)
				}
			}
			if u.Scheme != "http" && u.Scheme != "https" {
				return nil, fmt.Errorf("manifest %s[%d]: url %q is not http or https", arr.t, i, it.URL)
			}
			key := [2]string{string(arr.t), rtype}
			id := identity{arr.t, rtype, n[key]}
			n[key]++
			out = append(out, entry{id: id, item: it, url: u.String()})
		}
	}
	return out, nil
}

// isTypeName matches FHIR resource type names, [A-Z][A-Za-z]*, the names exportdir.Discover
// reads back. Anything else ("../x", "a/b", "/etc") would be a path, not a type.
func isTypeName(s string) bool {
	if s == "" || s[0] < 'A' || s[0] > 'Z' || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}
