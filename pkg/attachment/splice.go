package attachment

import (
	"bytes"
	"cmp"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"unicode/utf8"
)

// patch is what one downloaded attachment becomes: the object line[start:end] is rewritten with
// these values for data, size, hash and contentType, every other member kept as written.
type patch struct {
	start, end  int
	contentType string // "text/plain; charset=utf-8"
	content     []byte // raw bytes; data is their base64
	sum         [sha1.Size]byte
}

// The members a patch sets, in the order missing ones are appended: the order of the seed
// document's example and of Cumulus ETL's inliner (contentType first, as it is always present).
const (
	fieldContentType = iota
	fieldData
	fieldSize
	fieldHash
	nFields
)

var fieldNames = [nFields]string{"contentType", "data", "size", "hash"}

func fieldIndex(key string) int {
	for i, n := range fieldNames {
		if n == key {
			return i
		}
	}
	return -1
}

// errSplice means an attachment object did not scan as the JSON object fhirjson located; the line
// is left as it was rather than corrupted.
var errSplice = errors.New("attachment object does not scan as JSON")

// splice returns a new line with each patch applied. The line is copied once: bytes outside the
// patched objects are copied as they are, and inside them only the four members change. This is
// the fast path of issue 5 (about 220 MB/s on 3 MB lines against about 70 for one sjson.Set per
// attachment), since sjson re-scans and re-copies the whole line for every path it sets.
//
// Patches must lie inside line and not overlap; they are applied in offset order. A duplicate
// of one of the four members inside an object (invalid FHIR, legal JSON) is dropped, so that
// readers taking the first or the last occurrence see the same new value.
func splice(line []byte, ps []patch) ([]byte, error) {
	slices.SortFunc(ps, func(a, b patch) int { return cmp.Compare(a.start, b.start) })
	size := len(line)
	for i, p := range ps {
		if p.start < 0 || p.end > len(line) || p.start >= p.end || (i > 0 && p.start < ps[i-1].end) {
			return nil, errSplice
		}
		size += patchOverhead(&p)
	}
	out := make([]byte, 0, size)
	prev := 0
	for i := range ps {
		p := &ps[i]
		out = append(out, line[prev:p.start]...)
		var err error
		if out, err = appendPatched(out, line[p.start:p.end], p); err != nil {
			return nil, err
		}
		prev = p.end
	}
	return append(out, line[prev:]...), nil
}

// patchOverhead bounds how many bytes a patch adds to its object, so splice allocates once.
func patchOverhead(p *patch) int {
	return base64.StdEncoding.EncodedLen(len(p.content)) + // data
		2*len(p.contentType) + 6*countControl(p.contentType) + // escaped contentType, worst case
		base64.StdEncoding.EncodedLen(sha1.Size) + 20 + // hash, size digits
		64 // member names, quotes, colons and commas
}

func countControl(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 {
			n++
		}
	}
	return n
}

// member is one `"key": value` of an object: obj[start:end], the value from valStart, with the
// key decoded and escVal set when the value is a string holding escapes.
type member struct {
	start, valStart, end int
	key                  string
	escVal               bool
}

// appendPatched appends obj with the patch's members replaced in place (the first occurrence of
// each) and the missing ones appended before the closing brace.
func appendPatched(dst, obj []byte, p *patch) ([]byte, error) {
	ms, err := objectMembers(obj)
	if err != nil {
		return nil, err
	}
	var wrote [nFields]bool
	dst = append(dst, '{')
	n := 0
	for _, m := range ms {
		k := fieldIndex(m.key)
		switch {
		case k >= 0 && wrote[k]:
			continue
		case k >= 0:
			wrote[k] = true
			dst = appendField(appendComma(dst, n), k, p)
		default:
			dst = append(appendComma(dst, n), obj[m.start:m.end]...)
		}
		n++
	}
	for k := range nFields {
		if !wrote[k] {
			dst = appendField(appendComma(dst, n), k, p)
			n++
		}
	}
	return append(dst, '}'), nil
}

func appendComma(dst []byte, n int) []byte {
	if n > 0 {
		return append(dst, ',')
	}
	return dst
}

func appendField(dst []byte, k int, p *patch) []byte {
	dst = append(dst, '"')
	dst = append(dst, fieldNames[k]...)
	dst = append(dst, '"', ':')
	switch k {
	case fieldContentType:
		return appendJSONString(dst, p.contentType)
	case fieldData:
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, p.content)
		return append(dst, '"')
	case fieldSize:
		return strconv.AppendInt(dst, int64(len(p.content)), 10)
	default:
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, p.sum[:])
		return append(dst, '"')
	}
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 (a charset parameter is server
// input) becomes U+FFFD, as encoding/json does, so the line stays valid JSON.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			dst = append(dst, "\ufffd"...)
		} else {
			dst = append(dst, s[i:i+n]...)
		}
		i += n
	}
	return append(dst, '"')
}

// objectMembers lists the members of a JSON object. The line was validated before, so this is a
// scanner, not a parser: it finds where each member starts and ends, decoding only keys that
// hold escapes ("d\u0061ta" is "data" to every JSON reader, so it must be to the splicer).
func objectMembers(obj []byte) ([]member, error) {
	i := skipWS(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil, errSplice
	}
	var ms []member
	i = skipWS(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		if skipWS(obj, i+1) != len(obj) {
			return nil, errSplice
		}
		return ms, nil
	}
	for {
		if i >= len(obj) || obj[i] != '"' {
			return nil, errSplice
		}
		ks := i
		ke, esc, ok := scanString(obj, i)
		if !ok {
			return nil, errSplice
		}
		key := string(obj[ks+1 : ke-1])
		if esc {
			if err := json.Unmarshal(obj[ks:ke], &key); err != nil {
				return nil, errSplice
			}
		}
		i = skipWS(obj, ke)
		if i >= len(obj) || obj[i] != ':' {
			return nil, errSplice
		}
		vs := skipWS(obj, i+1)
		var ve int
		esc = false
		if vs < len(obj) && obj[vs] == '"' {
			ve, esc, ok = scanString(obj, vs)
		} else {
			ve, ok = skipValue(obj, vs)
		}
		if !ok {
			return nil, errSplice
		}
		ms = append(ms, member{start: ks, valStart: vs, end: ve, key: key, escVal: esc})
		i = skipWS(obj, ve)
		if i >= len(obj) {
			return nil, errSplice
		}
		switch obj[i] {
		case ',':
			i = skipWS(obj, i+1)
		case '}':
			if skipWS(obj, i+1) != len(obj) {
				return nil, errSplice
			}
			return ms, nil
		default:
			return nil, errSplice
		}
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString returns the index after the string starting at b[i] (a quote) and whether it holds
// escapes. It jumps from quote to quote with bytes.IndexByte (vectorized), checking the stretch
// between for a backslash: base64 data, the bulk of a note line, has neither.
func scanString(b []byte, i int) (end int, esc, ok bool) {
	j := i + 1
	for j < len(b) {
		q := bytes.IndexByte(b[j:], '"')
		if q < 0 {
			break
		}
		bs := bytes.IndexByte(b[j:j+q], '\\')
		if bs < 0 {
			return j + q + 1, esc, true
		}
		esc = true
		j += bs + 2 // the escaped byte, which may be a quote
	}
	return 0, false, false
}

// skipValue returns the index after the value starting at b[i].
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		end, _, ok := scanString(b, i)
		return end, ok
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, _, ok := scanString(b, j)
				if !ok {
					return 0, false
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
		}
		return 0, false
	}
	j := i
	for j < len(b) {
		switch b[j] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return j, j > i
		}
		j++
	}
	return j, j > i
}
