package bulk

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/tidwall/gjson"
)

// Manifest is a Bulk Data completion manifest, read leniently across spec versions (DESIGN.md §2,
// §9): STU2/STU3 "error" and v4 "outcome" both land in Error, v4's dropped "request" is simply
// empty, and unknown members are ignored but kept in Raw.
type Manifest struct {
	TransactionTime     string // as written; "" when absent
	Request             string // the kickoff URL; v4 servers leave it out
	RequiresAccessToken bool
	Output, Deleted     []Item
	Error               []Item // "error" then "outcome"
	Next                string // url of the first link with relation "next": a partial manifest (v3)
	Raw                 []byte // the manifest as received, a copy
}

// Item is one file of a manifest.
type Item struct {
	Type, URL string
	Count     int64 // resources in the file, when HasCount
	HasCount  bool
	// ContinuesInFile is the url a server says this file's data continues in (top-level or under
	// "extension"); it may name a file not in the manifest (DESIGN.md §9). Kept raw, not followed.
	ContinuesInFile string
}

// itemKind is which list of a Manifest an item array fills.
type itemKind int

const (
	kindOutput itemKind = iota
	kindDeleted
	kindError
)

// itemArrays are the manifest members that list files, in the order they are read, with the type
// an item without one gets. This is the one place that knows the v4 build renamed STU1–3's
// "error" to "outcome": ParseManifest, FileCounts and MergePages all go by it.
var itemArrays = []struct {
	name    string
	kind    itemKind
	defType string
}{
	{"output", kindOutput, ""},
	{"deleted", kindDeleted, "Bundle"},
	{"error", kindError, "OperationOutcome"},
	{"outcome", kindError, "OperationOutcome"},
}

// ParseManifest parses one manifest (one page of a partial manifest). It is an error when the
// manifest is not a JSON object, when a known member has the wrong JSON type, or when an item lacks
// its url (or, in output, its type); the error names the member and index. A member given twice
// counts once, the first time, as everywhere gjson reads a manifest.
func ParseManifest(b []byte) (*Manifest, error) {
	trimmed := bytes.TrimSpace(b)
	if len(trimmed) == 0 {
		return nil, errors.New("manifest: empty")
	}
	// gjson does not validate: the syntax is checked once, here at the edge.
	var syntax json.RawMessage
	if err := json.Unmarshal(b, &syntax); err != nil && trimmed[0] == '{' {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	top := gjson.ParseBytes(b)
	if !top.IsObject() || trimmed[0] != '{' {
		return nil, errors.New("manifest: not a JSON object")
	}
	m := &Manifest{Raw: bytes.Clone(b)}
	var err error
	if m.TransactionTime, err = stringMember(top, "transactionTime"); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if m.Request, err = stringMember(top, "request"); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if m.RequiresAccessToken, err = boolMember(top, "requiresAccessToken"); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	lists := map[itemKind]*[]Item{kindOutput: &m.Output, kindDeleted: &m.Deleted, kindError: &m.Error}
	for _, arr := range itemArrays {
		items, err := parseItems(top, arr.name, arr.defType)
		if err != nil {
			return nil, err
		}
		*lists[arr.kind] = append(*lists[arr.kind], items...)
	}
	if m.Next, err = nextLink(top); err != nil {
		return nil, err
	}
	return m, nil
}

// objects returns the elements of an array member whose elements are all objects or null; ok is
// false when the member is not such an array. An absent or null member is an empty list.
func objects(top gjson.Result, name string) (elems []gjson.Result, ok bool) {
	r := top.Get(gjson.Escape(name))
	if !r.Exists() || r.Type == gjson.Null {
		return nil, true
	}
	if !r.IsArray() {
		return nil, false
	}
	elems = r.Array()
	for _, e := range elems {
		if !e.IsObject() && e.Type != gjson.Null {
			return nil, false
		}
	}
	return elems, true
}

// nextLink is the url of the first link with relation "next" (STU3 partial manifests).
func nextLink(top gjson.Result) (string, error) {
	links, ok := objects(top, "link")
	if !ok {
		return "", errors.New("manifest: link is not an array of objects")
	}
	next := ""
	for i, l := range links {
		rel, err1 := stringMember(l, "relation")
		u, err2 := stringMember(l, "url")
		if err := cmp.Or(err1, err2); err != nil {
			return "", fmt.Errorf("manifest: link[%d]: %w", i, err)
		}
		if rel == "next" && u != "" && next == "" {
			next = u
		}
	}
	return next, nil
}

func parseItems(top gjson.Result, name, defType string) ([]Item, error) {
	objs, ok := objects(top, name)
	if !ok {
		return nil, fmt.Errorf("manifest: %s is not an array of objects", name)
	}
	items := make([]Item, 0, len(objs))
	for i, o := range objs {
		it, err := parseItem(o, defType)
		if err != nil {
			return nil, fmt.Errorf("manifest: %s[%d]: %w", name, i, err)
		}
		items = append(items, it)
	}
	return items, nil
}

func parseItem(o gjson.Result, defType string) (Item, error) {
	if !o.IsObject() {
		return Item{}, errors.New("not an object")
	}
	var it Item
	var err error
	if it.Type, err = stringMember(o, "type"); err != nil {
		return it, err
	}
	if it.URL, err = stringMember(o, "url"); err != nil {
		return it, err
	}
	if it.URL == "" {
		return it, errors.New("no url")
	}
	if it.Type == "" {
		if defType == "" {
			return it, errors.New("no type")
		}
		it.Type = defType
	}
	it.Count, it.HasCount = count(o.Get("count"))
	if it.ContinuesInFile, err = stringMember(o, "continuesInFile"); err != nil {
		return it, err
	}
	if ext := o.Get("extension"); ext.IsObject() && it.ContinuesInFile == "" {
		it.ContinuesInFile, _ = stringMember(ext, "continuesInFile")
	}
	return it, nil
}

// count reads a resource count leniently: a non-negative integer, as a number or a string of
// digits; anything else means no count, so verification skips the line-count check.
func count(r gjson.Result) (int64, bool) {
	switch r.Type {
	case gjson.Number:
		// Parsed as encoding/json would: a number out of float64's range is no count.
		v, err := strconv.ParseFloat(r.Raw, 64)
		if err == nil && v >= 0 && v == math.Trunc(v) && v <= 1<<53 {
			return int64(v), true
		}
	case gjson.String:
		if n, err := strconv.ParseInt(r.Str, 10, 64); err == nil && n >= 0 {
			return n, true
		}
	}
	return 0, false
}

// stringMember returns a string member, "" when absent or null, and an error for another JSON type.
func stringMember(o gjson.Result, name string) (string, error) {
	r := o.Get(gjson.Escape(name))
	switch r.Type {
	case gjson.Null:
		return "", nil
	case gjson.String:
		return r.Str, nil
	}
	return "", fmt.Errorf("%s is not a string", name)
}

// boolMember reads a boolean member, also accepting the strings "true" and "false" that some
// servers send.
func boolMember(o gjson.Result, name string) (bool, error) {
	r := o.Get(gjson.Escape(name))
	switch {
	case r.Type == gjson.Null:
		return false, nil
	case r.Type == gjson.True || (r.Type == gjson.String && r.Str == "true"):
		return true, nil
	case r.Type == gjson.False || (r.Type == gjson.String && r.Str == "false"):
		return false, nil
	}
	return false, fmt.Errorf("%s is not a boolean", name)
}

// wireManifest is a Manifest as MarshalJSON writes it.
type wireManifest struct {
	TransactionTime     string     `json:"transactionTime"`
	Request             string     `json:"request"`
	RequiresAccessToken bool       `json:"requiresAccessToken"`
	Output              []wireItem `json:"output"`
	Deleted             []wireItem `json:"deleted,omitempty"`
	Error               []wireItem `json:"error"`
}

type wireItem struct {
	Type            string `json:"type"`
	URL             string `json:"url"`
	Count           *int64 `json:"count,omitempty"`
	ContinuesInFile string `json:"continuesInFile,omitempty"`
}

// MarshalJSON writes the manifest in the shape every version of the IG reads: transactionTime,
// request, requiresAccessToken, output and error always, deleted when it lists files, count when
// HasCount. Error files go under "error" (STU1–3's name, which readers of v4's "outcome" also
// accept), and Raw and Next are not written: the result describes the files, it does not replay
// a server's answer.
func (m *Manifest) MarshalJSON() ([]byte, error) {
	w := wireManifest{TransactionTime: m.TransactionTime, Request: m.Request, RequiresAccessToken: m.RequiresAccessToken,
		Output: wireItems(m.Output), Deleted: wireItems(m.Deleted), Error: wireItems(m.Error)}
	return json.Marshal(w)
}

func wireItems(items []Item) []wireItem {
	w := make([]wireItem, 0, len(items))
	for _, it := range items {
		wi := wireItem{Type: it.Type, URL: it.URL, ContinuesInFile: it.ContinuesInFile}
		if it.HasCount {
			wi.Count = &it.Count
		}
		w = append(w, wi)
	}
	return w
}
