package store

import (
	"fmt"
	"strings"
	"time"
)

// timeLayouts are the forms --export-timestamp and _until accept: FHIR instants and dateTimes,
// and Python's isoformat with a space (what Cumulus users pass). A time without a zone is UTC.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02T15:04Z07:00",
	"2006-01-02T15:04",
	"2006-01-02",
	"2006-01",
	"2006",
}

// ParseTime parses an export timestamp: an RFC 3339 instant (any offset, any fraction), or a
// date or dateTime without a zone, taken as UTC. The result is in UTC, truncated to
// microseconds: DuckDB's TIMESTAMPTZ precision, so that Go and SQL compare the same instants.
func ParseTime(s string) (time.Time, error) {
	v := strings.TrimSpace(s)
	if len(v) > 10 && v[10] == ' ' {
		v = v[:10] + "T" + v[11:]
	}
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, v); err == nil {
			return Micro(t), nil
		}
	}
	return time.Time{}, fmt.Errorf("malformed time %q (want an RFC 3339 instant such as 2024-05-01T12:00:00Z)", s)
}

// Micro returns t in UTC truncated to microseconds (DuckDB's TIMESTAMPTZ precision).
func Micro(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// FormatTime renders t as Cumulus ETL writes times in its output tables: ISO 8601 with an
// explicit +00:00 offset (Python's isoformat), microseconds only when not zero.
func FormatTime(t time.Time) string {
	return Micro(t).Format("2006-01-02T15:04:05.999999") + "+00:00"
}
