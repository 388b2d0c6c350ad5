package attachment

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"github.com/bulkpipe/bulkpipe/pkg/ndjson"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/bulkpipe/bulkpipe/pkg/fhirjson"
)

const hello = "hello world"

func patchesFor(line []byte, content []byte, contentType string) []patch {
	var ps []patch
	for _, a := range fhirjson.Attachments(line) {
		ps = append(ps, patch{start: a.Start, end: a.End, contentType: contentType, content: content, sum: sha1.Sum(content)})
	}
	return ps
}

func TestSplice(t *testing.T) {
	const ct = "text/plain; charset=utf-8"
	tests := []struct {
		name, in, want string
	}{
		{"seed example",
			`{"resourceType":"DocumentReference","content":[{"attachment":{"url":"https://example.com/Binary/document123","contentType":"text/html"}}]}`,
			`{"resourceType":"DocumentReference","content":[{"attachment":{"url":"https://example.com/Binary/document123","contentType":"text/plain; charset=utf-8","data":"aGVsbG8gd29ybGQ=","size":11,"hash":"Kq5sNclPz7QV2+lfQIuc6R7oRu0="}}]}`},
		{"wrong size and hash replaced in place",
			`{"resourceType":"DocumentReference","content":[{"attachment":{"contentType":"text/plain","size":16,"hash":"x","url":"Binary/1","title":"t"}}]}`,
			`{"resourceType":"DocumentReference","content":[{"attachment":{"contentType":"text/plain; charset=utf-8","size":11,"hash":"Kq5sNclPz7QV2+lfQIuc6R7oRu0=","url":"Binary/1","title":"t","data":"aGVsbG8gd29ybGQ="}}]}`},
		{"whitespace and nesting kept outside, members kept inside",
			`{ "resourceType" : "DocumentReference", "content" : [ { "attachment" : { "url" : "Binary/1" , "contentType" : "text/plain" , "creation" : { "a" : [1, "}"] } } } ] }`,
			`{ "resourceType" : "DocumentReference", "content" : [ { "attachment" : {"url" : "Binary/1","contentType":"text/plain; charset=utf-8","creation" : { "a" : [1, "}"] },"data":"aGVsbG8gd29ybGQ=","size":11,"hash":"Kq5sNclPz7QV2+lfQIuc6R7oRu0="} } ] }`},
		{"duplicate members dropped, data null replaced",
			`{"resourceType":"DocumentReference","content":[{"attachment":{"data":null,"size":1,"url":"u","size":2,"contentType":"text/plain"}}]}`,
			`{"resourceType":"DocumentReference","content":[{"attachment":{"data":"aGVsbG8gd29ybGQ=","size":11,"url":"u","contentType":"text/plain; charset=utf-8","hash":"Kq5sNclPz7QV2+lfQIuc6R7oRu0="}}]}`},
		{"escaped key is the same key",
			`{"resourceType":"DocumentReference","content":[{"attachment":{"url":"u","c\u006fntentType":"text/plain"}}]}`,
			`{"resourceType":"DocumentReference","content":[{"attachment":{"url":"u","contentType":"text/plain; charset=utf-8","data":"aGVsbG8gd29ybGQ=","size":11,"hash":"Kq5sNclPz7QV2+lfQIuc6R7oRu0="}}]}`},
		{"two presentedForms",
			`{"resourceType":"DiagnosticReport","presentedForm":[{"url":"a"},{"url":"b","contentType":"text/plain"}],"x":1}`,
			`{"resourceType":"DiagnosticReport","presentedForm":[{"url":"a","contentType":"text/plain; charset=utf-8","data":"aGVsbG8gd29ybGQ=","size":11,"hash":"Kq5sNclPz7QV2+lfQIuc6R7oRu0="},{"url":"b","contentType":"text/plain; charset=utf-8","data":"aGVsbG8gd29ybGQ=","size":11,"hash":"Kq5sNclPz7QV2+lfQIuc6R7oRu0="}],"x":1}`},
		{"empty object",
			`{"resourceType":"DiagnosticReport","presentedForm":[{}]}`,
			`{"resourceType":"DiagnosticReport","presentedForm":[{"contentType":"text/plain; charset=utf-8","data":"aGVsbG8gd29ybGQ=","size":11,"hash":"Kq5sNclPz7QV2+lfQIuc6R7oRu0="}]}`},
	}
	for _, tt := range tests {
		got, err := splice([]byte(tt.in), patchesFor([]byte(tt.in), []byte(hello), ct))
		if err != nil || string(got) != tt.want {
			t.Errorf("%s: splice(%s) = %s, %v\nwant %s", tt.name, tt.in, got, err, tt.want)
		}
		if !json.Valid(got) {
			t.Errorf("%s: splice gave invalid JSON", tt.name)
		}
	}
}

func TestSpliceRefusesBadPatches(t *testing.T) {
	line := []byte(`{"a":{"b":1},"c":{"d":2}}`)
	tests := []struct {
		name string
		ps   []patch
	}{
		{"overlap", []patch{{start: 5, end: 12}, {start: 10, end: 24}}},
		{"out of range", []patch{{start: 18, end: 40}}},
		{"not an object", []patch{{start: 10, end: 11}}},
		{"cut object", []patch{{start: 5, end: 11}}},
	}
	for _, tt := range tests {
		if got, err := splice(line, tt.ps); !errors.Is(err, errSplice) {
			t.Errorf("%s: splice = %s, %v; want errSplice", tt.name, got, err)
		}
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"text/plain; charset=utf-8", `a"b\c`, "tab\there\x01", "caf\u00e9 ☃", "bad\xffutf8"} {
		got := appendJSONString(nil, s)
		want, _ := json.Marshal(s)
		var a, b string
		if err := json.Unmarshal(got, &a); err != nil {
			t.Errorf("appendJSONString(%q) = %s: invalid JSON: %v", s, got, err)
			continue
		}
		json.Unmarshal(want, &b)
		if a != b {
			t.Errorf("appendJSONString(%q) decodes to %q, want %q", s, a, b)
		}
	}
}

// reference inlines with encoding/json: decode the whole line, set the four members of each
// attachment the splicer patched, encode. It is slow and loses member order and number spelling,
// which is why the splicer exists; the two must agree on what the line means.
func reference(t *testing.T, line []byte, atts []fhirjson.Attachment, ps []patch) any {
	t.Helper()
	doc := decode(t, line)
	for i, a := range atts {
		obj := doc
		for _, step := range strings.Split(a.Path, ".") {
			switch o := obj.(type) {
			case map[string]any:
				obj = o[step]
			case []any:
				n, _ := strconv.Atoi(step)
				obj = o[n]
			}
		}
		m, ok := obj.(map[string]any)
		if !ok {
			t.Fatalf("reference: %s is not an object in %s", a.Path, line)
		}
		p := ps[i]
		m["contentType"] = p.contentType
		m["data"] = base64.StdEncoding.EncodeToString(p.content)
		m["size"] = json.Number(strconv.Itoa(len(p.content)))
		m["hash"] = base64.StdEncoding.EncodeToString(p.sum[:])
	}
	b, err := json.Marshal(doc) // invalid UTF-8 in contentType becomes U+FFFD, as in the splicer
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, b)
}

func decode(t *testing.T, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

// duplicateKeys reports an object with a key twice anywhere. Readers disagree on which one
// counts (gjson the first, encoding/json the last), FHIR forbids it, and the reference cannot
// stand in for the splicer there; TestSplice pins what the splicer does.
func duplicateKeys(b []byte) bool {
	d := json.NewDecoder(bytes.NewReader(b))
	type frame struct {
		obj  bool
		keys map[string]bool
		key  bool // next token in this object is a key
	}
	var stack []*frame
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return false
		}
		if err != nil {
			return true
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.obj && top.key {
			if k, ok := tok.(string); ok {
				if top.keys[k] {
					return true
				}
				top.keys[k] = true
				top.key = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{obj: true, keys: map[string]bool{}, key: true})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 && stack[len(stack)-1].obj {
			stack[len(stack)-1].key = true
		}
	}
}

// FuzzSplice checks the splicer against the encoding/json reference on any valid JSON line.
func FuzzSplice(f *testing.F) {
	f.Add(`{"resourceType":"DocumentReference","content":[{"attachment":{"contentType":"text/plain","url":"Binary/1"}}]}`, []byte(hello), "utf-8")
	f.Add(`{"resourceType":"DocumentReference","content":[{"attachment":{"size":16,"url":"Binary/1","hash":"x"}},{"attachment":{}}, 3]}`, []byte{}, "")
	f.Add(`{"resourceType":"DiagnosticReport","presentedForm":[ {"url":"a" , "x":[{"}":"]"}]} ,{"data":null}]}`, []byte("\x00\xff"), `"\`)
	f.Add(`{"presentedForm":[{"url":"a"}],"resourceType":"DiagnosticReport"}`, []byte("<p>é</p>"), "iso-8859-1\xff")
	f.Add(`{"resourceType":"DocumentReference","content":[{"attachment":{"c\u006fntentType":"text/plain","\u0064ata":1}}]}`, []byte("x"), "x")
	f.Fuzz(func(t *testing.T, line string, content []byte, charset string) {
		b := []byte(line)
		if !json.Valid(b) || !gjson.ValidBytes(b) || duplicateKeys(b) {
			return
		}
		atts := fhirjson.Attachments(b)
		if len(atts) == 0 {
			return
		}
		ps := patchesFor(b, content, "text/plain; charset="+charset)
		got, err := splice(b, append([]patch(nil), ps...))
		if err != nil {
			t.Fatalf("splice(%s) = %v", b, err)
		}
		if !json.Valid(got) {
			t.Fatalf("splice(%s) = %s: invalid JSON", b, got)
		}
		if diff := cmp.Diff(reference(t, b, atts, ps), decode(t, got)); diff != "" {
			t.Fatalf("splice(%s) = %s\ndiffers from encoding/json (-want +got):\n%s", b, got, diff)
		}
	})
}

// bigLine is a DocumentReference line of about size bytes: attachments already inlined (the
// bulk of real 3 MB lines) and one text attachment to inline, as in issue 5's measurement.
func bigLine(size int) ([]byte, []byte) {
	note := bytes.Repeat([]byte("Patient seen today for follow-up. Stable. "), 4000) // ~170 KB
	data := base64.StdEncoding.EncodeToString(note)
	var b strings.Builder
	b.WriteString(`{"resourceType":"DocumentReference","id":"big","status":"current","content":[`)
	for i := 0; b.Len() < size-len(data); i++ {
		b.WriteString(`{"attachment":{"contentType":"text/plain","language":"en-US","data":"` + data + `","title":"note ` + strconv.Itoa(i) + `"}},`)
	}
	b.WriteString(`{"attachment":{"contentType":"text/plain","url":"Binary/x","size":999,"title":"last"}}]}`)
	return []byte(b.String()), note
}

// BenchmarkRewriteLine is issue 5's comparison on 3 MB DocumentReference lines: the whole work on
// a line (validate, find the attachment, hash, set the four members) with the members set by
// sjson one leaf at a time, by one sjson set of the re-encoded attachment, or by splicing.
func BenchmarkRewriteLine(b *testing.B) {
	line, note := bigLine(3 << 20)
	set := map[string]func(line []byte, a fhirjson.Attachment, sum [20]byte) ([]byte, error){
		"sjson-leaf-sets": func(line []byte, a fhirjson.Attachment, sum [20]byte) ([]byte, error) {
			out, _ := sjson.SetBytes(line, a.Path+".data", base64.StdEncoding.EncodeToString(note))
			out, _ = sjson.SetBytes(out, a.Path+".size", len(note))
			out, _ = sjson.SetBytes(out, a.Path+".hash", base64.StdEncoding.EncodeToString(sum[:]))
			return sjson.SetBytes(out, a.Path+".contentType", "text/plain; charset=utf-8")
		},
		"sjson-per-attachment": func(line []byte, a fhirjson.Attachment, sum [20]byte) ([]byte, error) {
			obj := map[string]any{}
			if err := json.Unmarshal(line[a.Start:a.End], &obj); err != nil {
				return nil, err
			}
			obj["data"], obj["size"] = base64.StdEncoding.EncodeToString(note), len(note)
			obj["hash"], obj["contentType"] = base64.StdEncoding.EncodeToString(sum[:]), "text/plain; charset=utf-8"
			raw, _ := json.Marshal(obj)
			return sjson.SetRawBytes(line, a.Path, raw)
		},
		"splice": func(line []byte, a fhirjson.Attachment, sum [20]byte) ([]byte, error) {
			return splice(line, []patch{{start: a.Start, end: a.End, contentType: "text/plain; charset=utf-8", content: note, sum: sum}})
		},
	}
	for _, name := range []string{"sjson-leaf-sets", "sjson-per-attachment", "splice"} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(line)))
			for b.Loop() {
				if !ndjson.Valid(line) {
					b.Fatal("invalid")
				}
				atts := attachments(line)
				sum := sha1.Sum(note)
				if _, err := set[name](line, atts[len(atts)-1], sum); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
