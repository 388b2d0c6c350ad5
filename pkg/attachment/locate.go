package attachment

import (
	"strconv"

	"github.com/tidwall/gjson"

	"github.com/bulkpipe/bulkpipe/pkg/fhirjson"
)

// attachments returns what fhirjson.Attachments returns for a valid JSON line, in one pass over
// each level instead of gjson's repeated lookups: on 3 MB DocumentReference lines, whose bulk is
// base64 inside strings, fhirjson.Attachments took about three quarters of the time of inlining
// a line. fhirjson stays the definition of the paths: FuzzAttachments checks that both agree on
// every valid JSON line, including where readers could differ (first of duplicate keys, escaped
// keys and values), and this belongs in fhirjson.Attachments itself when its owner takes it.
func attachments(line []byte) []fhirjson.Attachment {
	top, err := objectMembers(line)
	if err != nil {
		return nil
	}
	var as []fhirjson.Attachment
	switch stringValue(line, first(top, "resourceType")) {
	case "DocumentReference":
		content := first(top, "content")
		for i, e := range arrayElements(line, content) {
			if line[e.start] != '{' {
				continue
			}
			ms, err := objectMembers(line[e.start:e.end])
			if err != nil {
				return nil
			}
			if a := first(ms, "attachment"); a != nil {
				as = appendAttachment(as, line, "content."+strconv.Itoa(i)+".attachment", e.start+a.valStart, e.start+a.end)
			}
		}
	case "DiagnosticReport":
		for i, e := range arrayElements(line, first(top, "presentedForm")) {
			as = appendAttachment(as, line, "presentedForm."+strconv.Itoa(i), e.start, e.end)
		}
	}
	return as
}

// first returns the first member named key (gjson's choice among duplicates), or nil.
func first(ms []member, key string) *member {
	for i := range ms {
		if ms[i].key == key {
			return &ms[i]
		}
	}
	return nil
}

// stringValue returns the decoded value of a string member, "" for anything else, as fhirjson
// does; escapes are decoded by gjson, so both give the same string.
func stringValue(b []byte, m *member) string {
	if m == nil || b[m.valStart] != '"' {
		return ""
	}
	raw := b[m.valStart:m.end]
	if !m.escVal {
		return string(raw[1 : len(raw)-1])
	}
	return gjson.ParseBytes(raw).Str
}

type span struct{ start, end int }

// arrayElements returns the elements of an array member's value (none for another value).
func arrayElements(b []byte, m *member) []span {
	if m == nil || b[m.valStart] != '[' {
		return nil
	}
	var es []span
	i := skipWS(b, m.valStart+1)
	if i < m.end && b[i] == ']' {
		return nil
	}
	for i < m.end {
		end, ok := skipValue(b, i)
		if !ok {
			return nil
		}
		es = append(es, span{i, end})
		i = skipWS(b, end)
		if i >= m.end || b[i] != ',' {
			break
		}
		i = skipWS(b, i+1)
	}
	return es
}

// appendAttachment adds the object line[start:end] as fhirjson does: objects only.
func appendAttachment(as []fhirjson.Attachment, line []byte, path string, start, end int) []fhirjson.Attachment {
	if line[start] != '{' {
		return as
	}
	obj := line[start:end]
	ms, err := objectMembers(obj)
	if err != nil {
		return as
	}
	data := first(ms, "data")
	return append(as, fhirjson.Attachment{
		Path:        path,
		URL:         stringValue(obj, first(ms, "url")),
		ContentType: stringValue(obj, first(ms, "contentType")),
		HasData:     data != nil && string(obj[data.valStart:data.end]) != "null",
		Start:       start,
		End:         end,
	})
}
