// Package fhirtime is the one parser of FHIR times that bulkpipe reads from users and logs:
// --since/--until, --export-timestamp, a logged _since/_until and transactionTime.
package fhirtime

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// timeRE matches the FHIR date and dateTime forms at any precision: YYYY, YYYY-MM, YYYY-MM-DD,
// then optionally Thh:mm[:ss[.fraction]] and a zone (Z, ±hh:mm or ±hhmm). A space may stand for
// the T: Python's isoformat(" ") writes one, and Cumulus users paste its output.
var timeRE = regexp.MustCompile(`^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?([Zz]|[+-]\d{2}:?\d{2})?)?)?)?$`)

// Parse reads a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD) or a dateTime with a zone offset, with
// surrounding spaces ignored. A partial date means its first instant in UTC ("2024" is
// 2024-01-01T00:00:00Z), the same on every machine. A time without a zone offset is refused, as
// FHIR refuses it: it names no instant, and reading it as UTC would silently shift an export or a
// completion time by the user's own offset. Fractions beyond nanoseconds are cut.
func Parse(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	m := timeRE.FindStringSubmatch(s)
	if m == nil {
		return time.Time{}, fmt.Errorf("%q is not a FHIR date or dateTime (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss[.sss][Z|±hh:mm])", s)
	}
	num := func(i, def int) int {
		if m[i] == "" {
			return def
		}
		n, _ := strconv.Atoi(m[i])
		return n
	}
	year, month, day := num(1, 0), num(2, 1), num(3, 1)
	hour, minute, sec := num(4, 0), num(5, 0), num(6, 0)
	nsec := 0
	if f := m[7]; f != "" {
		f = (f + "000000000")[:9]
		nsec, _ = strconv.Atoi(f)
	}
	if m[4] != "" && m[8] == "" {
		return time.Time{}, fmt.Errorf("%q: a time needs a zone offset (Z or ±hh:mm, e.g. %sZ), which FHIR requires", s, s)
	}
	loc := time.UTC
	if z := m[8]; z != "" && z != "Z" && z != "z" {
		digits := strings.ReplaceAll(z[1:], ":", "")
		oh, _ := strconv.Atoi(digits[:2])
		om, _ := strconv.Atoi(digits[2:])
		if oh > 14 || om > 59 {
			return time.Time{}, fmt.Errorf("%q: time zone offset %s out of range", s, z)
		}
		off := oh*3600 + om*60
		if z[0] == '-' {
			off = -off
		}
		loc = time.FixedZone(z, off)
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc)
	// time.Date normalizes overflow (February 30 becomes March 2); a round trip catches it.
	if t.Year() != year || int(t.Month()) != month || t.Day() != day || t.Hour() != hour ||
		t.Minute() != minute || t.Second() != sec {
		return time.Time{}, fmt.Errorf("%q is not a valid date or time", s)
	}
	// FHIR's years run 0001 to 9999. An offset can carry an instant at either end over into
	// year 0 or 10000 in UTC, which no FHIR time (and no RFC 3339 time) can write back.
	if year == 0 {
		return time.Time{}, fmt.Errorf("%q: year 0000 is not a FHIR year (0001 to 9999)", s)
	}
	if u := t.UTC().Year(); u < 1 || u > 9999 {
		return time.Time{}, fmt.Errorf("%q is outside the years 0001 to 9999 in UTC", s)
	}
	return t, nil
}
