package exportdir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
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
	Next                string // url of the link with relation "next": a partial manifest (v3)
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

// ParseManifest parses one manifest (one page of a partial manifest). It is an error when the
// manifest is not a JSON object, when a known member has the wrong JSON type, or when an item lacks
// its url (or, in output, its type); the error names the member and index.
func ParseManifest(b []byte) (*Manifest, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, errors.New("manifest: empty")
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil || top == nil {
		if err == nil || bytes.TrimSpace(b)[0] != '{' {
			return nil, errors.New("manifest: not a JSON object")
		}
		return nil, fmt.Errorf("manifest: %w", err)
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
	for _, arr := range []struct {
		name string
		dst  *[]Item
		def  string // type when an item has none
	}{
		{"output", &m.Output, ""},
		{"deleted", &m.Deleted, "Bundle"},
		{"error", &m.Error, "OperationOutcome"},
		{"outcome", &m.Error, "OperationOutcome"},
	} {
		items, err := parseItems(top, arr.name, arr.def)
		if err != nil {
			return nil, err
		}
		*arr.dst = append(*arr.dst, items...)
	}
	if raw, ok := top["link"]; ok && !isNull(raw) {
		var links []map[string]json.RawMessage
		if err := json.Unmarshal(raw, &links); err != nil {
			return nil, errors.New("manifest: link is not an array of objects")
		}
		for i, l := range links {
			rel, err1 := stringMember(l, "relation")
			u, err2 := stringMember(l, "url")
			if err := errors.Join(err1, err2); err != nil {
				return nil, fmt.Errorf("manifest: link[%d]: %w", i, err)
			}
			if rel == "next" && u != "" {
				m.Next = u
			}
		}
	}
	return m, nil
}

func parseItems(top map[string]json.RawMessage, name, defType string) ([]Item, error) {
	raw, ok := top[name]
	if !ok || isNull(raw) {
		return nil, nil
	}
	var objs []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &objs); err != nil {
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

func parseItem(o map[string]json.RawMessage, defType string) (Item, error) {
	if o == nil {
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
	it.Count, it.HasCount = count(o["count"])
	if it.ContinuesInFile, err = stringMember(o, "continuesInFile"); err != nil {
		return it, err
	}
	if ext, ok := o["extension"]; ok && it.ContinuesInFile == "" {
		var e map[string]json.RawMessage
		if json.Unmarshal(ext, &e) == nil {
			it.ContinuesInFile, _ = stringMember(e, "continuesInFile")
		}
	}
	return it, nil
}

// count reads a resource count leniently: a non-negative integer, as a number or a string of
// digits; anything else means no count, so verification skips the line-count check.
func count(raw json.RawMessage) (int64, bool) {
	if len(raw) == 0 {
		return 0, false
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return 0, false
	}
	switch v := v.(type) {
	case float64:
		if v >= 0 && v == math.Trunc(v) && v <= 1<<53 {
			return int64(v), true
		}
	case string:
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			return n, true
		}
	}
	return 0, false
}

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

// stringMember returns a string member, "" when absent or null, and an error for another JSON type.
func stringMember(o map[string]json.RawMessage, name string) (string, error) {
	raw, ok := o[name]
	if !ok || isNull(raw) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%s is not a string", name)
	}
	return s, nil
}

// boolMember reads a boolean member, also accepting the strings "true" and "false" that some
// servers send.
func boolMember(o map[string]json.RawMessage, name string) (bool, error) {
	raw, ok := o[name]
	if !ok || isNull(raw) {
		return false, nil
	}
	var v any
	json.Unmarshal(raw, &v)
	switch v {
	case true, "true":
		return true, nil
	case false, "false":
		return false, nil
	}
	return false, fmt.Errorf("%s is not a boolean", name)
}
