package bulk

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// ContextMember is the name of the member bulk-poll adds to each manifest line (DESIGN.md §1).
// The leading underscore keeps it clear of any name the IG may define.
const ContextMember = "_bulkpipe"

// Context is what bulk-fetch needs and a manifest lacks, carried in the ContextMember of each
// manifest line from bulk-poll to bulk-fetch (DESIGN.md §1).
type Context struct {
	StatusURL string `json:"statusUrl"`           // to DELETE the export and to refetch expired links
	FHIRBase  string `json:"fhirBase,omitempty"`  // to find the token endpoint and resolve relative URLs
	ExportURL string `json:"exportUrl,omitempty"` // the kickoff URL, for the log's kickoff event
	Expires   string `json:"expires,omitempty"`   // the Expires header of the manifest response
	Page      int    `json:"page"`                // 1-based page number (a merged manifest is page 1)
}

// WithContext returns manifest as one line of compact JSON with ctx in its ContextMember. Every
// other member keeps its bytes (only insignificant whitespace goes); an existing ContextMember is
// replaced.
func WithContext(manifest []byte, ctx Context) ([]byte, error) {
	m, err := compactJSON(manifest)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if !gjson.ParseBytes(m).IsObject() {
		return nil, errors.New("manifest: not a JSON object")
	}
	c, err := json.Marshal(ctx)
	if err != nil {
		return nil, err
	}
	return sjson.SetRawBytes(m, ContextMember, c)
}

// ContextOf reads the ContextMember of a manifest line; ok is false when it has none.
func ContextOf(line []byte) (ctx Context, ok bool) {
	r := gjson.GetBytes(line, ContextMember)
	if !r.IsObject() {
		return Context{}, false
	}
	if err := json.Unmarshal([]byte(r.Raw), &ctx); err != nil {
		return Context{}, false
	}
	return ctx, true
}

// WithoutContext removes the ContextMember, giving back the manifest as the server sent it
// (compacted): bulk-fetch saves that as manifest.json.
func WithoutContext(line []byte) []byte {
	out, err := sjson.DeleteBytes(line, ContextMember)
	if err != nil {
		return line
	}
	return out
}

// MergePages joins the pages of a partial manifest into one manifest: the first page's members
// (the IG requires the other members to be equal on every page), with the output, deleted, error
// and outcome arrays of every page concatenated in page order, and without link or ContextMember.
func MergePages(pages [][]byte) ([]byte, error) {
	if len(pages) == 0 {
		return nil, errors.New("merge manifest pages: no pages")
	}
	out, err := compactJSON(pages[0])
	if err != nil {
		return nil, fmt.Errorf("manifest page 1: %w", err)
	}
	for _, key := range []string{"link", ContextMember} {
		if out, err = sjson.DeleteBytes(out, key); err != nil {
			return nil, err
		}
	}
	for _, arr := range itemArrays {
		key := arr.name
		var items []string
		present := false
		for i, p := range pages {
			r := gjson.GetBytes(p, key)
			if !r.Exists() || r.Type == gjson.Null {
				// null lists nothing, as ParseManifest reads it.
				continue
			}
			if !r.IsArray() {
				return nil, fmt.Errorf("manifest page %d: %s is not an array", i+1, key)
			}
			present = true
			for _, item := range r.Array() {
				c, err := compactJSON([]byte(item.Raw))
				if err != nil {
					return nil, fmt.Errorf("manifest page %d: %s: %w", i+1, key, err)
				}
				items = append(items, string(c))
			}
		}
		if present {
			if out, err = sjson.SetRawBytes(out, key, []byte("["+strings.Join(items, ",")+"]")); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// FileCounts counts a manifest's file items: output, deleted, and error (error and v4's outcome).
func FileCounts(manifest []byte) (output, deleted, errs int) {
	var n [3]int
	for _, arr := range itemArrays {
		n[arr.kind] += int(gjson.GetBytes(manifest, arr.name+".#").Int())
	}
	return n[kindOutput], n[kindDeleted], n[kindError]
}

// ErrNotManifest is wrapped by the error of a 200 answer that is not a Bulk Data manifest: a
// FHIR resource (the URL given was a Group's, or /metadata, not a status URL) or an object
// without transactionTime and output. Taking it for one would make bulk-fetch DELETE that URL.
var ErrNotManifest = errors.New("not a Bulk Data manifest")

// CheckManifest tells a completed export's manifest from any other JSON object: a manifest has a
// transactionTime string and an output array, and no resourceType (IG, "Response - Complete
// Status"). The error names what came back instead.
func CheckManifest(body []byte) error {
	r := gjson.ParseBytes(body)
	if !gjson.ValidBytes(body) || !r.IsObject() {
		return fmt.Errorf("%w: the body is not a JSON object", ErrNotManifest)
	}
	if rt := r.Get("resourceType"); rt.Exists() {
		return fmt.Errorf("%w but a FHIR %s resource (is the URL a status URL, the Content-Location of a kickoff?)",
			ErrNotManifest, quoteShort(rt.String()))
	}
	var missing []string
	if r.Get("transactionTime").Type != gjson.String {
		missing = append(missing, "transactionTime")
	}
	if !r.Get("output").IsArray() {
		missing = append(missing, "output array")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: it has no %s", ErrNotManifest, strings.Join(missing, " and no "))
	}
	return nil
}

// quoteShort keeps a server-chosen name short and printable in a message.
func quoteShort(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	q := fmt.Sprintf("%q", s)
	return q[1 : len(q)-1]
}

// Totals sums the pages of one export's manifest as they arrive, for the closing
// manifest_complete event and summary: the files of each kind, the pages, the first page's
// transactionTime (the IG has every page repeat it) and the earliest Expires, after which some
// file link stops working.
type Totals struct {
	Output, Deleted, Error int
	Pages                  int
	TransactionTime        string
	Expires                string // an HTTP-date; "" when no page had one
}

// Add counts page p and returns its own file counts.
func (t *Totals) Add(p Page) (output, deleted, errs int) {
	if t.TransactionTime == "" {
		t.TransactionTime = p.TransactionTime
	}
	output, deleted, errs = FileCounts(p.Raw)
	t.Output, t.Deleted, t.Error = t.Output+output, t.Deleted+deleted, t.Error+errs
	if p.Expires != "" && (t.Expires == "" || earlier(p.Expires, t.Expires)) {
		t.Expires = p.Expires
	}
	t.Pages = p.Number
	return output, deleted, errs
}

// earlier reports whether HTTP-date a is before b; unparseable dates are never earlier.
func earlier(a, b string) bool {
	ta, err1 := http.ParseTime(a)
	tb, err2 := http.ParseTime(b)
	return err1 == nil && (err2 != nil || ta.Before(tb))
}
