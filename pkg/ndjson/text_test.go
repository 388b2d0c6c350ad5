package ndjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

func TestCheckText(t *testing.T) {
	tests := []struct {
		line string
		want string // the error, "" for none
	}{
		{`{"a":"plain"}`, ""},
		{`{"a":"é☃ 😀"}`, ""},
		{`{"a":"\u00e9\ufffd\uD83D\uDE00"}`, ""},
		{`{"a":"\\ud800 is text, not an escape"}`, ""},
		{`{"a":"\\\ud800"}`, `lone surrogate \ud800 at byte 9`},
		{`{"a":"x\ud800y"}`, `lone surrogate \ud800 at byte 8`},
		{`{"a":"\udc00"}`, `lone surrogate \udc00 at byte 7`},
		{`{"a":"\ud800\u0041"}`, `lone surrogate \ud800 at byte 7`},
		{`{"a":"\uDE00\uD83D"}`, `lone surrogate \uDE00 at byte 7`},
		{`{"a":"\ud83d\ude00\ud83d"}`, `lone surrogate \ud83d at byte 19`},
		{"{\"a\":\"Ren\xe9e\"}", "invalid UTF-8 at byte 10"},
		{"{\"a\":\"\xed\xa0\x80\"}", "invalid UTF-8 at byte 7"}, // a surrogate written as UTF-8
		{"{\"a\":\"ok\"}\xff", "invalid UTF-8 at byte 11"},
	}
	for _, tt := range tests {
		err := CheckText([]byte(tt.line))
		got := ""
		if err != nil {
			got = err.Error()
			if _, ok := errors.AsType[*TextError](err); !ok {
				t.Errorf("CheckText(%q) = %T, want a *TextError", tt.line, err)
			}
		}
		if got != tt.want {
			t.Errorf("CheckText(%q) = %q, want %q", tt.line, got, tt.want)
		}
	}
}

func TestFixText(t *testing.T) {
	tests := []struct {
		line, want string
		n          int
	}{
		{`{"a":"plain \u00e9"}`, `{"a":"plain \u00e9"}`, 0},
		{"{\"a\":\"Ren\xe9e\"}", "{\"a\":\"Ren\uFFFDe\"}", 1},
		{"{\"a\":\"\xed\xa0\x80\"}", "{\"a\":\"\uFFFD\uFFFD\uFFFD\"}", 3}, // one per byte, as json.Unmarshal
		{`{"a":"x\ud800y\uDC00\\ud800"}`, `{"a":"x\ufffdy\ufffd\\ud800"}`, 2},
		{`{"a":"\ud800\ud83d\ude00"}`, `{"a":"\ufffd\ud83d\ude00"}`, 1},
	}
	for _, tt := range tests {
		got, n := FixText([]byte(tt.line))
		if string(got) != tt.want || n != tt.n {
			t.Errorf("FixText(%q) = %q, %d, want %q, %d", tt.line, got, n, tt.want, tt.n)
		}
	}
}

// FuzzCheckText checks CheckText against a reference written the slow way (each string's UTF-16
// code units, paired up), and FixText against json.Unmarshal, whose replacements it copies.
func FuzzCheckText(f *testing.F) {
	for _, s := range []string{`{"a":"x\ud800y"}`, `["\uD83D\uDE00","\\ud800"]`, "\"Ren\xe9e\"", `"\ud800\u0041"`, `{"\u00e9":"\udc00\ud800"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !Valid(b) {
			return
		}
		err := CheckText(b)
		if want := referenceText(b); (err == nil) != want {
			t.Fatalf("CheckText(%q) = %v, reference says valid = %v", b, err, want)
		}
		fixed, n := FixText(b)
		if (n == 0) != (err == nil) {
			t.Fatalf("FixText(%q) made %d replacements, but CheckText = %v", b, n, err)
		}
		if !Valid(fixed) || CheckText(fixed) != nil {
			t.Fatalf("FixText(%q) = %q: not valid JSON text (%v)", b, fixed, CheckText(fixed))
		}
		// Numbers as json.Number: FixText is about text, and a number Valid accepts may be out
		// of float64's range ("1E700", found by this fuzz test), which Unmarshal would refuse.
		want, werr := decodeNumbers(b)
		got, gerr := decodeNumbers(fixed)
		if werr != nil || gerr != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("json.Unmarshal(FixText(%q) = %q) = %v, want %v (as json.Unmarshal(input))", b, fixed, got, want)
		}
	})
}

// decodeNumbers is json.Unmarshal into any, with numbers kept as json.Number.
func decodeNumbers(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}

// referenceText reports whether valid JSON b is valid UTF-8 whose strings decode to whole UTF-16
// surrogate pairs.
func referenceText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	var units []uint16
	in := false
	for i := 0; i < len(b); i++ {
		switch {
		case !in && b[i] == '"':
			in, units = true, units[:0]
		case in && b[i] == '"':
			in = false
			high := false
			for _, u := range units {
				switch {
				case 0xd800 <= u && u < 0xdc00:
					if high {
						return false
					}
					high = true
				case 0xdc00 <= u && u < 0xe000:
					if !high {
						return false
					}
					high = false
				default:
					if high {
						return false
					}
				}
			}
			if high {
				return false
			}
		case in && b[i] == '\\' && b[i+1] == 'u':
			u, _ := strconv.ParseUint(string(b[i+2:i+6]), 16, 16)
			units = append(units, uint16(u))
			i += 5
		case in && b[i] == '\\':
			units = append(units, uint16(b[i+1]))
			i++
		case in:
			r, size := utf8.DecodeRune(b[i:])
			units = append(units, utf16.Encode([]rune{r})...)
			i += size - 1
		}
	}
	return true
}
