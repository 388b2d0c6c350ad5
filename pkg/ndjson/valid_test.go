package ndjson

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

func TestValidJSON(t *testing.T) {
	deep := strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth)
	tooDeep := strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1)
	for _, s := range []string{
		`{}`, ` [ ] `, `{"a":[1,-0.5e+3,"x\"\\\/\b\f\n\r\t\u00e9",true,false,null,{}]}`, `"` + strings.Repeat("abcdefgh", 20) + `"`,
		`"é☃ \xff invalid utf-8 is accepted, as json.Valid does"`, `0`, `-0`, `1E9`,
		`{"a":1,}`, `[1,]`, `{"a"}`, `{1:2}`, `01`, `1.`, `.5`, `-`, `1e`, `"\x"`, `"\u12g4"`, `"a` + "\n" + `"`,
		`"unterminated`, `tru`, `nul`, `[1 2]`, `{} {}`, ``, ` `, deep, tooDeep,
		`1e+`, `1E-07`, `-01`, `-a`, `0e`, `0e0`, `1.e5`, `1.5E+10`, `[1e1,0.0,-0]`, `1x`, `-0.0e-0`, `1f`, `1E`, `1.5e`, `+1`,
		`{"a" : 1 , "b":[ 2 , { } ] }`, `{"a":1 }`, `[ 1 ]`, `{"a":1,"b"}`, `{"a":1 "b":2}`, `[1,,2]`, `{,}`, `[,]`,
		`{"resourceType":"DocumentReference","content":[{"attachment":{"data":"` + strings.Repeat("QUJD", 100) + `"}}]}`,
	} {
		if got, want := Valid([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("Valid(%.60q) = %v, want %v (json.Valid)", s, got, want)
		}
	}
}

// FuzzValid checks Valid against json.Valid, the reference it stands in for.
func FuzzValid(f *testing.F) {
	for _, s := range []string{`{"a":[1,2,{"b":"c\"d"}]}`, `"abcdefgh\u0041ijklmnop\\"`, `[-1.5e10, true]`, `{"a":"` + "\x1f" + `"}`, `"12345678"  `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := Valid(b), json.Valid(b); got != want {
			t.Fatalf("Valid(%q) = %v, json.Valid = %v", b, got, want)
		}
	})
}

func BenchmarkValid(b *testing.B) {
	// A 3 MB note line: mostly base64 inside a string, with the usual structure around it.
	data := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("Patient seen for follow-up. "), 3<<20/37))
	line := []byte(`{"resourceType":"DocumentReference","id":"d1","status":"current","content":[{"attachment":{"contentType":"text/plain","data":"` +
		data + `"}}],"subject":{"reference":"Patient/p1"}}`)
	for _, bm := range []struct {
		name string
		f    func([]byte) bool
	}{{"ndjson.Valid", Valid}, {"json.Valid", json.Valid}, {"gjson.ValidBytes", gjson.ValidBytes},
		{"ndjson.CheckText", func(b []byte) bool { return CheckText(b) == nil }}} {
		b.Run(bm.name, func(b *testing.B) {
			b.SetBytes(int64(len(line)))
			for b.Loop() {
				if !bm.f(line) {
					b.Fatal("invalid")
				}
			}
		})
	}
}

// BenchmarkValidStructure measures what BenchmarkValid's note line barely has: members,
// arrays and numbers, as in lab Observations (a component per analyte, each with a
// valueQuantity and a reference range).
func BenchmarkValidStructure(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"resourceType":"Observation","id":"o1","status":"final","component":[`)
	for i := range 200 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"code":{"coding":[{"system":"http://loinc.org","code":"%d-%d"}]},"valueQuantity":{"value":%d.%03d,"unit":"mmol/L"},`+
			`"referenceRange":[{"low":{"value":-%d.5e-3},"high":{"value":%dE+2}}],"interpretation":[]}`, 1000+i, i%10, i*37, i%1000, i, i+1)
	}
	sb.WriteString(`]}`)
	line := []byte(sb.String())
	for _, bm := range []struct {
		name string
		f    func([]byte) bool
	}{{"ndjson.Valid", Valid}, {"json.Valid", json.Valid}} {
		b.Run(bm.name, func(b *testing.B) {
			b.SetBytes(int64(len(line)))
			for b.Loop() {
				if !bm.f(line) {
					b.Fatal("invalid")
				}
			}
		})
	}
}
