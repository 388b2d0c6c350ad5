package fhirclient

import (
	"fmt"
	"net/url"
	"strings"
)

// NotHTTPURLError is a URL given by a user (a FHIR base, an export or status URL, a token
// endpoint) that is not an absolute http or https URL with a host.
type NotHTTPURLError struct {
	URL string // as given, redacted
}

func (e *NotHTTPURLError) Error() string {
	msg := fmt.Sprintf("%q: want an absolute http or https URL", e.URL)
	if !strings.Contains(e.URL, "://") && !strings.HasPrefix(e.URL, "/") {
		// "ehr.example/fhir" or "localhost:8080/fhir": the scheme was left out.
		msg += " (did you mean https://" + e.URL + "?)"
	}
	return msg
}

// ParseHTTPURL parses a URL a user gave, which must be absolute http or https with a host. Every
// malformed or relative URL, and one whose scheme was left out, gets the same *NotHTTPURLError,
// rather than the parser's own words ("first path segment in URL cannot contain colon" for
// "localhost:8080/fhir", which parses as a relative path).
func ParseHTTPURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &NotHTTPURLError{URL: Redact(raw)}
	}
	return u, nil
}
