package store

import (
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtime"
)

// ParseTime parses an export timestamp (--export-timestamp, a logged _until) by the one rule of
// fhirtime.Parse: a FHIR date, or a dateTime with a zone. The result is in UTC, truncated to
// microseconds: DuckDB's TIMESTAMPTZ precision, so that Go and SQL compare the same instants.
func ParseTime(s string) (time.Time, error) {
	t, err := fhirtime.Parse(s)
	if err != nil {
		return time.Time{}, err
	}
	return Micro(t), nil
}

// Micro returns t in UTC truncated to microseconds (DuckDB's TIMESTAMPTZ precision).
func Micro(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// FormatTime renders t as Cumulus ETL writes times in its output tables: ISO 8601 with an
// explicit +00:00 offset (Python's isoformat), microseconds only when not zero.
func FormatTime(t time.Time) string {
	return Micro(t).Format("2006-01-02T15:04:05.999999") + "+00:00"
}
