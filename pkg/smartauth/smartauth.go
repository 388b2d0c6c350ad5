// Package smartauth supplies the Authorization header for FHIR requests: SMART Backend Services
// (client credentials with a signed JWT assertion), a static bearer token, or HTTP Basic auth
// (DESIGN.md §2, Auth).
//
// Source, Bearer and Basic all satisfy fhirclient.Credentials without either package importing
// the other: both are leaves.
package smartauth

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
)

// Doer sends one HTTP request. In production it is fhirclient's token-route doer, which retries
// 5xx, 429 and transport errors; smartauth adds only the token endpoint's bare-400 rule.
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// ErrStatic is returned by Static.Reauthorize: a token read from a file or a user name and
// password cannot be renewed, so a 401 with them is final.
var ErrStatic error = staticError{}

// staticError's Static method lets fhirclient treat a 401 with static credentials as the
// server's final answer (its ErrCannotReauthorize) without either package importing the other.
type staticError struct{}

func (staticError) Error() string { return "static credentials cannot be renewed" }

// Static reports that the credentials cannot be renewed.
func (staticError) Static() bool { return true }

// Static is a fixed Authorization header value: a bearer token or Basic credentials.
// It never prints its secret (String and GoString are redacted).
type Static struct {
	header string
	err    error // why the credentials cannot be used; checked on every Authorization call
}

// Bearer returns credentials that send "Bearer <token>". Surrounding whitespace is trimmed
// because token files usually end with a newline.
func Bearer(token string) *Static {
	token = strings.TrimSpace(token)
	switch {
	case token == "":
		return &Static{err: errors.New("bearer token is empty")}
	case strings.IndexFunc(token, invalidTokenRune) >= 0:
		// A header value with a space or control character would be rejected by net/http with a
		// less helpful message, or split into two headers by a careless proxy.
		return &Static{err: errors.New("bearer token contains whitespace or control characters")}
	}
	return &Static{header: "Bearer " + token}
}

// Basic returns credentials that send HTTP Basic auth as RFC 7617 defines it: base64 of
// "user:password". A colon in the user name cannot be encoded, so it is an error.
func Basic(user, password string) *Static {
	if strings.Contains(user, ":") {
		return &Static{err: errors.New("basic auth user name must not contain a colon (RFC 7617)")}
	}
	return &Static{header: "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))}
}

// Authorization returns the full header value.
func (s *Static) Authorization(ctx context.Context) (string, error) {
	if s.err != nil {
		return "", s.err
	}
	return s.header, nil
}

// Reauthorize always fails with ErrStatic: there is nothing to renew.
func (s *Static) Reauthorize(ctx context.Context) error { return ErrStatic }

// String keeps the secret out of logs and %v output.
func (s *Static) String() string {
	scheme, _, _ := strings.Cut(s.header, " ")
	if scheme == "" {
		scheme = "unusable"
	}
	return scheme + " credentials (redacted)"
}

// GoString keeps the secret out of %#v output.
func (s *Static) GoString() string { return s.String() }

func invalidTokenRune(r rune) bool { return r <= ' ' || r == 0x7f }
