package fhirclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrMaybeSent marks a kickoff that failed after the request was written: the server may have
// started an export, so retrying could start a second one (DESIGN.md §2).
var ErrMaybeSent = errors.New("the request may have reached the server")

// ErrCannotReauthorize is returned by Credentials.Reauthorize when the credentials are static
// (a bearer token from a file, basic auth): a 401 then ends the request.
var ErrCannotReauthorize = errors.New("credentials cannot be renewed")

// cannotReauthorize recognizes ErrCannotReauthorize, and the errors of credential packages that
// cannot import this one (smartauth is a leaf) by their Static() bool method.
func cannotReauthorize(err error) bool {
	if errors.Is(err, ErrCannotReauthorize) {
		return true
	}
	s, ok := errors.AsType[interface {
		error
		Static() bool
	}](err)
	return ok && s.Static()
}

// maxErrorBody bounds what a StatusError keeps of a response body: enough for any
// OperationOutcome a server sends, not a whole NDJSON file served with an error status.
const maxErrorBody = 64 << 10

// redacted replaces secrets in URLs and error text.
const redacted = "REDACTED"

// StatusError is a response whose status is not 2xx or 3xx, after the retries of DESIGN.md §2.
// Its Body and Outcome have the token and --header values sent with the request scrubbed out,
// because servers sometimes echo what they rejected.
type StatusError struct {
	Method     string
	URL        string // redacted (see Redact)
	StatusCode int
	Status     string // "404 Not Found"
	Header     http.Header
	Body       []byte            // at most 64 KiB
	Outcome    *OperationOutcome // nil when the body is not one
}

// Error reads "GET https://x/fhir/status/1: 404 Not Found: <issue text>".
func (e *StatusError) Error() string {
	return e.Method + " " + e.URL + ": " + e.detail()
}

// detail is the error without the request: the status, then the OperationOutcome's text, or a
// short excerpt of a JSON or plain-text body (gateways answer with their own JSON errors).
func (e *StatusError) detail() string {
	s := e.Status
	if s == "" {
		s = statusLine(e.StatusCode, "")
	}
	if e.Outcome != nil {
		if t := e.Outcome.text(); t != "" {
			return s + ": " + t
		}
		return s
	}
	if x := excerpt(e.Header, e.Body); x != "" {
		s += ": " + x
	}
	return s
}

// Unwrap gives errors.As access to the OperationOutcome.
func (e *StatusError) Unwrap() error {
	if e.Outcome == nil {
		return nil
	}
	return e.Outcome
}

// newStatusError reads up to 64 KiB of resp's body, closes it, and scrubs secrets from it.
func newStatusError(method, shownURL string, resp *http.Response, secrets []string) *StatusError {
	body, _ := readAtMost(resp.Body, maxErrorBody) // a partial body still explains the error
	resp.Body.Close()
	body = scrub(body, secrets)
	e := &StatusError{
		Method:     method,
		URL:        shownURL,
		StatusCode: resp.StatusCode,
		Status:     statusLine(resp.StatusCode, resp.Status),
		Header:     resp.Header,
		Body:       body,
	}
	if o, ok := ParseOperationOutcome(body); ok {
		e.Outcome = o
	}
	return e
}

// statusLine normalizes a status to "503 Service Unavailable" whatever the server or the HTTP
// version put in the reason phrase, which is kept only made printable.
func statusLine(code int, status string) string {
	if status != "" && strings.HasPrefix(status, strconv.Itoa(code)+" ") && len(status) > 4 {
		return Printable(status)
	}
	if t := http.StatusText(code); t != "" {
		return strconv.Itoa(code) + " " + t
	}
	return strconv.Itoa(code)
}

// excerpt returns the start of a text or JSON body on one line, or "" for HTML and binary
// bodies, which would only add noise to a one-line error.
func excerpt(h http.Header, body []byte) string {
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	if !(strings.HasPrefix(mt, "text/plain") || strings.Contains(mt, "json")) || !utf8.Valid(body) {
		return ""
	}
	s := Printable(strings.Join(strings.Fields(string(body)), " "))
	const limit = 200
	if utf8.RuneCountInString(s) > limit {
		s = strings.TrimRight(string([]rune(s)[:limit]), " ") + "…"
	}
	return s
}

// scrub replaces every occurrence of a secret in b. Very short values are left alone: they cannot
// be told apart from ordinary text and are not secrets worth the name.
func scrub(b []byte, secrets []string) []byte {
	for _, s := range secrets {
		if len(s) >= 6 && bytes.Contains(b, []byte(s)) {
			b = bytes.ReplaceAll(b, []byte(s), []byte(redacted))
		}
	}
	return b
}

// OperationOutcome is the FHIR error resource, kept so that tools print the server's own words.
type OperationOutcome struct {
	Issues []Issue
}

// Issue is one OperationOutcome.issue. Its texts are the server's, made Printable.
type Issue struct {
	Severity, Code, Diagnostics, DetailsText string
}

// Error joins the issues with "; ", each as its diagnostics, else details.text, else code.
func (o *OperationOutcome) Error() string {
	if t := o.text(); t != "" {
		return t
	}
	return "OperationOutcome without issues"
}

func (o *OperationOutcome) text() string {
	var parts []string
	for _, is := range o.Issues {
		switch {
		case is.Diagnostics != "":
			parts = append(parts, is.Diagnostics)
		case is.DetailsText != "":
			parts = append(parts, is.DetailsText)
		case is.Code != "":
			parts = append(parts, is.Code)
		}
	}
	return strings.Join(parts, "; ")
}

// Transient reports an issue with code "transient": the Bulk Data spec's signal that a failed
// status request should be retried (DESIGN.md §2, polling).
func (o *OperationOutcome) Transient() bool {
	for _, is := range o.Issues {
		if is.Code == "transient" {
			return true
		}
	}
	return false
}

// Fatal reports an issue of severity fatal or error.
func (o *OperationOutcome) Fatal() bool {
	for _, is := range o.Issues {
		if is.Severity == "fatal" || is.Severity == "error" {
			return true
		}
	}
	return false
}

// ParseOperationOutcome reads b as an OperationOutcome. Fields of the wrong JSON type are
// skipped rather than failing the parse: an error report should survive a sloppy server.
func ParseOperationOutcome(b []byte) (*OperationOutcome, bool) {
	var raw struct {
		ResourceType json.RawMessage   `json:"resourceType"`
		Issue        []json.RawMessage `json:"issue"`
	}
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	if err := json.Unmarshal(b, &raw); err != nil || jsonString(raw.ResourceType) != "OperationOutcome" {
		return nil, false
	}
	o := &OperationOutcome{}
	for _, ri := range raw.Issue {
		var f struct {
			Severity, Code, Diagnostics, Details json.RawMessage
		}
		if json.Unmarshal(ri, &f) != nil {
			continue
		}
		var details struct{ Text json.RawMessage }
		_ = json.Unmarshal(f.Details, &details) // not an object: no details.text
		// Escaped here, where the text enters the program, as every tool prints it.
		o.Issues = append(o.Issues, Issue{
			Severity:    Printable(jsonString(f.Severity)),
			Code:        Printable(jsonString(f.Code)),
			Diagnostics: Printable(jsonString(f.Diagnostics)),
			DetailsText: Printable(jsonString(details.Text)),
		})
	}
	return o, true
}

// jsonString is the value of a JSON string, or "" for anything else.
func jsonString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// secretParams are query parameters that carry credentials: presigned storage URLs (S3, GCS,
// Azure SAS, CloudFront) and OAuth parameters. Compared case-insensitively.
var secretParams = map[string]bool{
	"x-amz-signature": true, "x-amz-credential": true, "x-amz-security-token": true,
	"x-goog-signature": true, "x-goog-credential": true,
	"sig": true, "signature": true, "key-pair-id": true, "policy": true,
	"token": true, "access_token": true, "id_token": true, "refresh_token": true, "code": true,
	"client_secret": true, "client_assertion": true, "password": true,
	"key": true, "api_key": true, "apikey": true,
}

// Redact returns rawURL with the values of secret query parameters (presigned URLs:
// X-Amz-Signature, X-Amz-Credential, X-Amz-Security-Token, sig, signature, token, access_token,
// code, Signature, Key-Pair-Id, Policy, and a few more) and any userinfo password replaced by
// "REDACTED", so URLs can appear in errors and progress lines. Other parts are kept as written,
// made Printable: URLs come from servers (Content-Location, manifests, links).
func Redact(rawURL string) string {
	return Printable(redact(rawURL))
}

func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return redactUnparsed(rawURL)
	}
	changed := false
	if u.User != nil {
		if p, ok := u.User.Password(); ok && p != redacted {
			u.User = url.UserPassword(u.User.Username(), redacted)
			changed = true
		}
	}
	if q, ok := redactQuery(u.RawQuery); ok {
		u.RawQuery = q
		changed = true
	}
	if !changed {
		return rawURL
	}
	return u.String()
}

// redactQuery replaces secret values in a raw query, keeping the order and spelling of the rest.
func redactQuery(raw string) (string, bool) {
	if raw == "" {
		return raw, false
	}
	parts := strings.Split(raw, "&")
	changed := false
	for i, p := range parts {
		k, v, found := strings.Cut(p, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			name = k
		}
		if found && v != redacted && secretParams[strings.ToLower(name)] {
			parts[i] = k + "=" + redacted
			changed = true
		}
	}
	return strings.Join(parts, "&"), changed
}

// redactUnparsed handles a string url.Parse rejects: without a parse we cannot tell secret
// parameters from others, so the whole query and fragment go, and any userinfo.
func redactUnparsed(s string) string {
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i] + "?" + redacted
	}
	if i := strings.Index(s, "://"); i >= 0 {
		rest := s[i+3:]
		end := strings.IndexAny(rest, "/?")
		if end < 0 {
			end = len(rest)
		}
		if at := strings.LastIndex(rest[:end], "@"); at >= 0 {
			s = s[:i+3] + redacted + rest[at:]
		}
	}
	return s
}

// GiveUpError ends a request whose retries ran out (attempts or budget). It unwraps to the last
// failure, so errors.As finds a *StatusError after a run of 503s; Last returns that failure
// without the "giving up" wrapper, for callers that do their own retrying and report each try.
type GiveUpError struct {
	method, url string
	attempts    int
	note        string // why we stopped early, e.g. the budget; "" when attempts ran out
	detail      string // the last failure without the request prefix
	err         error
}

func (e *GiveUpError) Error() string {
	tries := "1 attempt"
	if e.attempts != 1 {
		tries = strconv.Itoa(e.attempts) + " attempts"
	}
	return fmt.Sprintf("%s %s: giving up after %s%s: %s", e.method, e.url, tries, e.note, e.detail)
}

func (e *GiveUpError) Unwrap() error { return e.err }

// Attempts is the number of requests sent before giving up.
func (e *GiveUpError) Attempts() int { return e.attempts }

// Last is the failure of the last attempt: a *StatusError, or the transport error with the
// request ("GET URL: …") in front.
func (e *GiveUpError) Last() error {
	if _, ok := errors.AsType[*StatusError](e.err); ok {
		return e.err
	}
	return fmt.Errorf("%s %s: %w", e.method, e.url, e.err)
}

// maybeSentError is a kickoff cut off after the request was written (DESIGN.md §2).
type maybeSentError struct {
	method, url string
	err         error
}

func (e *maybeSentError) Error() string {
	return fmt.Sprintf("%s %s: %v after the request was sent: an export may already exist on the server", e.method, e.url, e.err)
}

func (e *maybeSentError) Unwrap() []error { return []error{ErrMaybeSent, e.err} }

// untrustedError is a 401 from an origin that got no token because it is not trusted: the fix
// is --token-origin, not new credentials (DESIGN.md §2, token safety).
type untrustedError struct {
	*StatusError
	origin    string
	downgrade bool // plain http on a host reached over https
}

func (e *untrustedError) Error() string {
	if e.downgrade {
		return fmt.Sprintf("%s (no token was sent: %s is plain http on a host reached over https, and credentials never go "+
			"over plain http there; use the server's https URL, or add --token-origin %s to send them anyway)",
			e.StatusError.Error(), e.origin, e.origin)
	}
	return fmt.Sprintf("%s (no token was sent: %s is not a trusted origin; add --token-origin %s if it should get the token)",
		e.StatusError.Error(), e.origin, e.origin)
}

func (e *untrustedError) Unwrap() error { return e.StatusError }

// credentialsError is a failure to get an Authorization value; retrying the FHIR request would
// only repeat the token requests, which smartauth already retries.
type credentialsError struct{ err error }

// Error makes the cause Printable: it can quote a token endpoint's answer.
func (e *credentialsError) Error() string { return "getting credentials: " + Printable(e.err.Error()) }
func (e *credentialsError) Unwrap() error { return e.err }

// redirectError is a redirect refused by the redirect policy; it is not retried.
type redirectError struct{ err error }

func (e *redirectError) Error() string { return e.err.Error() }
func (e *redirectError) Unwrap() error { return e.err }
