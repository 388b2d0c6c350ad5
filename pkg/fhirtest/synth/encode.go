package synth

import (
	"strconv"
	"unicode/utf8"
)

// jw appends compact JSON. Resources are written field by field in a fixed order, so the output
// is byte-identical on every run without reflection (encoding/json would cost most of the time of
// a gigabyte-sized data set).
type jw struct{ b []byte }

func (w *jw) raw(s string) { w.b = append(w.b, s...) }

func (w *jw) byte(c byte) { w.b = append(w.b, c) }

func (w *jw) int(n int64) { w.b = strconv.AppendInt(w.b, n, 10) }

// fixed writes the fixed-point value v with dec decimals ("0.93", "104", "-1.5").
func (w *jw) fixed(v int64, dec int) { w.b = appendFixed(w.b, v, dec) }

func appendFixed(b []byte, v int64, dec int) []byte {
	if v < 0 {
		b = append(b, '-')
		v = -v
	}
	if dec == 0 {
		return strconv.AppendInt(b, v, 10)
	}
	p := int64(1)
	for range dec {
		p *= 10
	}
	b = strconv.AppendInt(b, v/p, 10)
	b = append(b, '.')
	frac := v % p
	for d := p / 10; d > 0; d /= 10 {
		b = append(b, byte('0'+frac/d%10))
	}
	return b
}

// plainJSON marks the bytes that stand for themselves inside a JSON string: printable ASCII
// except '"' and '\\'.
var plainJSON = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str writes s as a JSON string. Valid UTF-8 passes through; quotes, backslashes and control
// characters are escaped, invalid bytes become U+FFFD.
func (w *jw) str(s string) {
	w.b = append(w.b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if plainJSON[c] {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				w.b = append(w.b, s[start:i]...)
				w.b = append(w.b, `\ufffd`...)
				i++
				start = i
				continue
			}
			i += size
			continue
		}
		w.b = append(w.b, s[start:i]...)
		switch c {
		case '"', '\\':
			w.b = append(w.b, '\\', c)
		case '\n':
			w.b = append(w.b, '\\', 'n')
		case '\r':
			w.b = append(w.b, '\\', 'r')
		case '\t':
			w.b = append(w.b, '\\', 't')
		default:
			w.b = append(w.b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	w.b = append(w.b, s[start:]...)
	w.b = append(w.b, '"')
}

// field writes `,"name":` (the leading comma because every resource opens with resourceType).
func (w *jw) field(name string) {
	w.b = append(w.b, ',', '"')
	w.b = append(w.b, name...)
	w.b = append(w.b, '"', ':')
}

func (w *jw) strField(name, v string) {
	w.field(name)
	w.str(v)
}

func (w *jw) coding(c coding) {
	w.raw(`{"system":`)
	w.str(c.system)
	w.raw(`,"code":`)
	w.str(c.code)
	if c.display != "" {
		w.raw(`,"display":`)
		w.str(c.display)
	}
	w.byte('}')
}

// cc writes a CodeableConcept with one coding and, when text is not empty, text.
func (w *jw) cc(c coding, text string) {
	w.raw(`{"coding":[`)
	w.coding(c)
	w.byte(']')
	if text != "" {
		w.raw(`,"text":`)
		w.str(text)
	}
	w.byte('}')
}

// ref writes a Reference to typ/id, with a display when it is not empty.
func (w *jw) ref(typ, id, display string) {
	w.raw(`{"reference":"`)
	w.raw(typ)
	w.byte('/')
	w.raw(id) // ids are [A-Za-z0-9-]: no escaping needed
	w.byte('"')
	if display != "" {
		w.raw(`,"display":`)
		w.str(display)
	}
	w.byte('}')
}

// display writes a Reference that has only a display: practitioners and organizations are not part
// of the data set, and a display-only Reference keeps every literal reference resolvable.
func (w *jw) display(s string) {
	w.raw(`{"display":`)
	w.str(s)
	w.byte('}')
}

// quantity writes a Quantity with a UCUM unit.
func (w *jw) quantity(v int64, dec int, unit string) {
	w.raw(`{"value":`)
	w.fixed(v, dec)
	w.raw(`,"unit":`)
	w.str(unit)
	w.raw(`,"system":"` + sysUCUM + `","code":`)
	w.str(unit)
	w.byte('}')
}

// Time. Instants are microseconds since the Unix epoch (UTC); dates are days since it. Formatting is
// done by hand from integers so the text cannot depend on the machine's zone database.

type instant int64

const (
	second instant = 1_000_000
	minute         = 60 * second
	hour           = 60 * minute
	day            = 24 * hour
)

// Time styles of meta.lastUpdated and other instants. Servers differ: HAPI sends milliseconds
// with an offset, Epic whole seconds in Z, others microseconds.
const (
	styleZ      = iota // 2022-03-14T15:09:26Z
	styleMilliZ        // 2022-03-14T15:09:26.535Z
	styleOffset        // 2022-03-14T11:09:26-04:00
	styleMicro         // 2022-03-14T11:09:26.535123-04:00
	numStyles
)

// civil converts days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
// civil_from_days).
func civil(days int64) (y, m, d int) {
	z := days + 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	yy := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = int(doy - (153*mp+2)/5 + 1)
	if mp < 10 {
		m = int(mp + 3)
	} else {
		m = int(mp - 9)
	}
	if m <= 2 {
		yy++
	}
	return int(yy), m, d
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func append2(b []byte, n int) []byte { return append(b, byte('0'+n/10), byte('0'+n%10)) }

func appendDate(b []byte, days int64) []byte {
	y, m, d := civil(days)
	b = append(b, byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-')
	b = append2(b, m)
	b = append(b, '-')
	return append2(b, d)
}

// appendInstant formats t in the given style; offset (minutes east of UTC) is used by the offset
// styles only.
func appendInstant(b []byte, t instant, style, offset int) []byte {
	if style == styleZ || style == styleMilliZ {
		offset = 0
	}
	local := int64(t) + int64(offset)*int64(minute)
	days := floorDiv(local, int64(day))
	rem := local - days*int64(day)
	b = appendDate(b, days)
	secs := int(rem / int64(second))
	b = append(b, 'T')
	b = append2(b, secs/3600)
	b = append(b, ':')
	b = append2(b, secs/60%60)
	b = append(b, ':')
	b = append2(b, secs%60)
	micro := rem % int64(second)
	switch style {
	case styleMilliZ:
		ms := int(micro / 1000)
		b = append(b, '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10))
	case styleMicro:
		b = append(b, '.')
		for d := int64(100000); d > 0; d /= 10 {
			b = append(b, byte('0'+micro/d%10))
		}
	}
	if style == styleZ || style == styleMilliZ {
		return append(b, 'Z')
	}
	if offset < 0 {
		b = append(b, '-')
		offset = -offset
	} else {
		b = append(b, '+')
	}
	b = append2(b, offset/60)
	b = append(b, ':')
	return append2(b, offset%60)
}

// month returns the month (1–12) of t in UTC.
func month(t instant) int {
	_, m, _ := civil(floorDiv(int64(t), int64(day)))
	return m
}

// offsetAt approximates the zone's offset at t: summer time from April to October. Real rules
// differ by a few weeks; the data only needs offsets that vary the way real ones do.
func (z zone) offsetAt(t instant) int {
	if m := month(t); m >= 4 && m <= 10 {
		return z.dst
	}
	return z.std
}

func (w *jw) instant(t instant, style, offset int) {
	w.b = append(w.b, '"')
	w.b = appendInstant(w.b, t, style, offset)
	w.b = append(w.b, '"')
}

func (w *jw) date(days int64) {
	w.b = append(w.b, '"')
	w.b = appendDate(w.b, days)
	w.b = append(w.b, '"')
}
