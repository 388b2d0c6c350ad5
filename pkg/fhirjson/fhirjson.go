// Package fhirjson is the one home of FHIR JSON paths: it reads fields of raw resources with gjson
// without decoding them into structs, which would be slow and drop unknown fields and extensions
// (STYLE.md §6). gjson does not validate: callers validate once at the input edge.
package fhirjson

import (
	"bytes"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// ResourceType returns the top-level resourceType, or "" when absent or not a string. It is cheap
// for pass-through lines: gjson stops at the key, which FHIR servers write first.
func ResourceType(res []byte) string {
	if t, ok := leadingType(res); ok {
		return t
	}
	return str(gjson.GetBytes(res, "resourceType"))
}

// leadingType is the fast path for the common shape `{"resourceType":"X",...`; it gives up (ok false)
// on anything else, including escapes, and gjson takes over.
func leadingType(res []byte) (string, bool) {
	const key = `"resourceType"`
	i := skipSpace(res, 0)
	if i >= len(res) || res[i] != '{' {
		return "", false
	}
	i = skipSpace(res, i+1)
	if !bytes.HasPrefix(res[i:], []byte(key)) {
		return "", false
	}
	i = skipSpace(res, i+len(key))
	if i >= len(res) || res[i] != ':' {
		return "", false
	}
	i = skipSpace(res, i+1)
	if i >= len(res) || res[i] != '"' {
		return "", false
	}
	i++
	for j := i; j < len(res); j++ {
		switch c := res[j]; {
		case c == '"':
			return string(res[i:j]), true
		case c == '\\' || c < ' ':
			return "", false
		}
	}
	return "", false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// ID returns the top-level id, or "" when absent or not a string.
func ID(res []byte) string {
	return str(gjson.GetBytes(res, "id"))
}

// ServerID reports whether s can be a resource id as real servers send them, which is wider
// than FHIR's [A-Za-z0-9\-\.]{1,64}: Epic's ids run past 64 characters and some servers use
// non-ASCII letters, and dropping such a resource would lose data. It refuses what would make
// "Type/id" a different path, query or fragment, or no text: "/", "?", "#", "%" (an id is read
// decoded), control characters, spaces and invalid UTF-8, and anything over MaxIDLength.
func ServerID(s string) bool {
	if s == "" || len(s) > MaxIDLength || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || unicode.IsControl(r) || unicode.IsSpace(r) || strings.ContainsRune("/?#%", r) {
			return false
		}
	}
	return true
}

// MaxIDLength bounds ServerID: sixteen times FHIR's limit, far above any server seen (Epic's
// ids are about 100 characters), yet short enough that a runaway value is not taken for an id.
const MaxIDLength = 1024

// Key returns "Type/id", the identity duplicates collapse on (DESIGN.md §6, §7), or "" when either
// part is missing, so a resource without an id is never taken for another one.
func Key(res []byte) string {
	r := gjson.GetManyBytes(res, "resourceType", "id")
	t, id := str(r[0]), str(r[1])
	if t == "" || id == "" {
		return ""
	}
	return t + "/" + id
}

// LastUpdated returns meta.lastUpdated as written, unparsed: merge compares instants itself, and Epic
// leaves it out of many resources (DESIGN.md §9), so ok is false when it is missing or not a string.
func LastUpdated(res []byte) (string, bool) {
	r := gjson.GetBytes(res, "meta.lastUpdated")
	return r.Str, r.Type == gjson.String
}

func str(r gjson.Result) string {
	if r.Type != gjson.String {
		return ""
	}
	return r.Str
}

// Attachment is one Attachment element that ndjson-inline may fill in (DESIGN.md §5).
type Attachment struct {
	// Path is the sjson path of the attachment object in the resource, such as
	// "content.0.attachment" or "presentedForm.1".
	Path string
	// URL and ContentType are the attachment's fields as written ("" when absent).
	URL, ContentType string
	// HasData reports a non-null data field: the attachment is already inlined.
	HasData bool
	// Start and End are the byte offsets of the attachment object in res: res[Start:End] is the
	// object, so an inliner can splice in a rewritten one without re-encoding the rest of the line.
	Start, End int
}

// Attachments lists the attachments ndjson-inline targets (DESIGN.md §5):
// DocumentReference.content[].attachment and DiagnosticReport.presentedForm[]. Other resources,
// and elements that are not JSON objects, give none.
func Attachments(res []byte) []Attachment {
	var as []Attachment
	switch ResourceType(res) {
	case "DocumentReference":
		content := gjson.GetBytes(res, "content")
		if !content.IsArray() {
			return nil
		}
		content.ForEach(func(i, c gjson.Result) bool {
			if c.IsObject() {
				as = appendAttachment(as, res, "content."+strconv.Itoa(int(i.Int()))+".attachment", c.Get("attachment"))
			}
			return true
		})
	case "DiagnosticReport":
		forms := gjson.GetBytes(res, "presentedForm")
		if !forms.IsArray() {
			return nil
		}
		forms.ForEach(func(i, a gjson.Result) bool {
			as = appendAttachment(as, res, "presentedForm."+strconv.Itoa(int(i.Int())), a)
			return true
		})
	}
	return as
}

func appendAttachment(as []Attachment, res []byte, path string, a gjson.Result) []Attachment {
	if !a.IsObject() {
		return as
	}
	start, end := a.Index, a.Index+len(a.Raw)
	// gjson reports Index 0 when it cannot place a value; an attachment is never at offset 0, and on
	// malformed input the offsets must still point at exactly this object or an inliner would
	// corrupt the line. Skip anything that does not check out.
	if start <= 0 || end > len(res) || string(res[start:end]) != a.Raw {
		return as
	}
	data := a.Get("data")
	return append(as, Attachment{
		Path:        path,
		URL:         str(a.Get("url")),
		ContentType: str(a.Get("contentType")),
		HasData:     data.Exists() && data.Type != gjson.Null,
		Start:       start,
		End:         end,
	})
}

// BundleType returns Bundle.type ("transaction", "batch", "collection", …), or "" when res is not a
// Bundle or has none. deleted/ files hold transaction Bundles (DESIGN.md §3).
func BundleType(res []byte) string {
	if ResourceType(res) != "Bundle" {
		return ""
	}
	return str(gjson.GetBytes(res, "type"))
}

// EntryRequest is Bundle.entry[].request: what a transaction asks the server to do.
type EntryRequest struct {
	Method, URL string // as written; "" when absent or not a string
}

// EntryRequests lists the request of each Bundle entry that has one, in order.
func EntryRequests(res []byte) []EntryRequest {
	entries := gjson.GetBytes(res, "entry")
	if ResourceType(res) != "Bundle" || !entries.IsArray() {
		return nil
	}
	var rs []EntryRequest
	entries.ForEach(func(_, e gjson.Result) bool {
		if req := e.Get("request"); req.IsObject() {
			rs = append(rs, EntryRequest{Method: str(req.Get("method")), URL: str(req.Get("url"))})
		}
		return true
	})
	return rs
}
