package smartauth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	// assertionLifetime is the longest exp the SMART Backend Services spec allows (≤ 5 min).
	assertionLifetime = 5 * time.Minute
	// defaultTokenLifetime stands in for a missing expires_in (the spec's usual value).
	defaultTokenLifetime = 300 * time.Second
	// minRefreshMargin: refresh at least this long before expiry, so a request that starts with
	// the token does not reach the server after it expired.
	minRefreshMargin = 30 * time.Second
	// tokenAttempts: a bare 400 (no OAuth error in the body) from the token endpoint is tried this
	// many times in all, as Epic
	// answers one now and then to a good request (DESIGN.md §2, Retries).
	tokenAttempts = 3
	// assertionType is the RFC 7523 client assertion type SMART Backend Services uses.
	assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// Config configures a SMART Backend Services token Source.
type Config struct {
	ClientID string   // iss and sub of the assertion
	Key      *Key     // signs the assertion
	TokenURL string   // aud of the assertion and where the token request goes
	Scopes   []string // space-joined into the scope parameter; see Scopes
	HTTP     Doer     // nil → http.DefaultClient; production passes fhirclient's token-route doer
	// Now and Sleep are injected by tests; nil → time.Now and a context-aware timer.
	Now   func() time.Time
	Sleep func(context.Context, time.Duration) error
}

// Source obtains access tokens with the client-credentials grant and a signed JWT assertion
// (SMART Backend Services), caches them and renews them before they expire. It is safe for
// concurrent use: at most one token request is in flight, and concurrent callers share it.
type Source struct {
	cfg Config
	// sem is a one-slot semaphore guarding the fields below and the token request; unlike a
	// sync.Mutex, waiting on it stops when the caller's context is cancelled.
	sem       chan struct{}
	token     string
	refreshAt time.Time
	// refused is the invalid_scope answer once one came: the same scopes get the same answer,
	// so later calls (one per attachment, say) return it instead of asking again.
	refused error
	// gen counts tokens fetched, read without the lock so that Reauthorize calls that saw the
	// same 401 while a renewal was in flight do not each renew again.
	gen atomic.Int64
}

// NewSource returns a Source for cfg. Missing fields are reported by Authorization.
func NewSource(cfg Config) *Source {
	if cfg.HTTP == nil {
		cfg.HTTP = http.DefaultClient
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}
	return &Source{cfg: cfg, sem: make(chan struct{}, 1)}
}

// String keeps the cached token out of logs and %v output.
func (s *Source) String() string {
	return fmt.Sprintf("SMART backend services (client %q, token URL %s)", s.cfg.ClientID, s.cfg.TokenURL)
}

// GoString keeps the cached token out of %#v output.
func (s *Source) GoString() string { return s.String() }

// Authorization returns "Bearer <access token>", requesting a token when none is cached or the
// cached one is near expiry: when less than max(30 s, 10% of expires_in) remains, the margin
// capped at half of expires_in so a short-lived token is still reused for a while.
func (s *Source) Authorization(ctx context.Context) (string, error) {
	if err := s.lock(ctx); err != nil {
		return "", err
	}
	defer s.unlock()
	if s.token == "" || !s.cfg.Now().Before(s.refreshAt) {
		if err := s.renew(ctx); err != nil {
			return "", err
		}
	}
	return "Bearer " + s.token, nil
}

// Reauthorize drops the cached token after a 401 and requests a new one at once, so that a
// token endpoint failure is reported as the reason the retry could not happen. When several
// callers saw the same 401, the ones that arrive after the renewal keep the new token.
func (s *Source) Reauthorize(ctx context.Context) error {
	gen := s.gen.Load()
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.unlock()
	if s.gen.Load() != gen && s.token != "" {
		return nil // renewed by another caller while we waited: that token is newer than our 401
	}
	s.token = ""
	return s.renew(ctx)
}

func (s *Source) lock(ctx context.Context) error {
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for access token: %w", context.Cause(ctx))
	}
}

func (s *Source) unlock() { <-s.sem }

// Assertion returns the signed client-assertion JWT (SMART Backend Services, RFC 7523): iss and
// sub are the client ID, aud the token URL, exp five minutes after now (the spec's maximum), a
// random jti so the server can reject replays, and kid and typ in the header.
func (s *Source) Assertion(now time.Time) (string, error) {
	switch {
	case s.cfg.Key == nil:
		return "", errors.New("sign client assertion: no key")
	case s.cfg.ClientID == "":
		return "", errors.New("sign client assertion: no client id")
	case s.cfg.TokenURL == "":
		return "", errors.New("sign client assertion: no token URL")
	}
	k := s.cfg.Key
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.jwk},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("sign client assertion with %s: %w", k.alg, err)
	}
	jti := make([]byte, 16)
	_, _ = rand.Read(jti) // crypto/rand.Read never fails (Go 1.24+)
	claims := jwt.Claims{
		Issuer:   s.cfg.ClientID,
		Subject:  s.cfg.ClientID,
		Audience: jwt.Audience{s.cfg.TokenURL}, // marshalled as a string, which Epic requires
		IssuedAt: jwt.NewNumericDate(now),
		// NumericDate truncates to whole seconds, so exp is never more than 5 min away.
		Expiry: jwt.NewNumericDate(now.Add(assertionLifetime)),
		ID:     hex.EncodeToString(jti),
	}
	a, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("sign client assertion with %s: %w", k.alg, err)
	}
	return a, nil
}

// TokenError is a failed token request: the endpoint's status and, when it sent one, the OAuth
// error (RFC 6749 §5.2). It never holds the assertion or a token.
type TokenError struct {
	URL         string // token endpoint
	Status      string // e.g. "400 Bad Request"
	StatusCode  int
	Code        string // OAuth "error", e.g. invalid_client
	Description string // OAuth "error_description", or the start of a non-JSON body
	Attempts    int
}

// Error reads like "POST https://x/token: 400 Bad Request: invalid_client: unknown key (3 attempts)".
func (e *TokenError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s: %s", e.URL, e.Status)
	if e.Code != "" {
		b.WriteString(": " + e.Code)
	}
	if e.Description != "" {
		b.WriteString(": " + e.Description)
	}
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " (%d attempts)", e.Attempts)
	}
	return b.String()
}

// ScopeError is a token request the server refused with invalid_scope (RFC 6749 §5.2): it will
// not grant some scope asked for, often one for a resource type it does not hold.
type ScopeError struct {
	*TokenError
	Requested []string // the scopes asked for
	// Refused are those of Requested that the server's description names, by the scope or its
	// resource type; empty when it names none, and then any of Requested may be the one.
	Refused []string
}

// Error reads like the TokenError, then which scope was refused (or which were asked for).
func (e *ScopeError) Error() string {
	if len(e.Refused) > 0 {
		return fmt.Sprintf("%v (refused: %s)", e.TokenError, strings.Join(e.Refused, " "))
	}
	return fmt.Sprintf("%v (asked for: %s)", e.TokenError, strings.Join(e.Requested, " "))
}

func (e *ScopeError) Unwrap() error { return e.TokenError }

// refusedScopes picks the scopes that an invalid_scope description names: a scope quoted whole,
// or else one whose resource type appears as a word ("Resources of type "Binary" do not exist on
// this server", from the SMART reference server). This only points the user at a scope; what
// the error is comes from its code, not from this text.
func refusedScopes(requested []string, desc string) []string {
	var whole, byType []string
	for _, sc := range requested {
		if strings.Contains(desc, sc) {
			whole = append(whole, sc)
			continue
		}
		_, rest, ok := strings.Cut(sc, "/")
		typ, _, _ := strings.Cut(rest, ".")
		if ok && typ != "" && typ != "*" && containsWord(desc, typ) {
			byType = append(byType, sc)
		}
	}
	if len(whole) > 0 {
		return whole
	}
	return byType
}

// containsWord reports whether w occurs in s with no letter or digit right before or after it.
func containsWord(s, w string) bool {
	alnum := func(b byte) bool { return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' }
	for i := 0; ; {
		j := strings.Index(s[i:], w)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(w)
		if (start == 0 || !alnum(s[start-1])) && (end == len(s) || !alnum(s[end])) {
			return true
		}
		i = start + 1
	}
}

// renew requests a new token; the caller holds the lock.
func (s *Source) renew(ctx context.Context) error {
	if s.cfg.TokenURL == "" {
		return errors.New("request access token: no token URL")
	}
	if s.refused != nil {
		return s.refused
	}
	for attempt := 1; ; attempt++ {
		start := s.cfg.Now()
		tok, ttl, err := s.request(ctx, start, attempt)
		if err != nil {
			te, ok := errors.AsType[*TokenError](err)
			// Only a bare 400 is Epic's hiccup; an OAuth error (invalid_client, a wrong key) is the
			// server's answer, and retrying it only delays the message the user needs.
			if ok && te.StatusCode == http.StatusBadRequest && te.Code == "" && attempt < tokenAttempts {
				if err := s.cfg.Sleep(ctx, time.Duration(attempt)*time.Second); err != nil {
					return fmt.Errorf("request access token: %w; retry abandoned: %w", te, err)
				}
				continue
			}
			err = fmt.Errorf("request access token: %w", err)
			if _, ok := errors.AsType[*ScopeError](err); ok {
				s.refused = err
			}
			return err
		}
		margin := min(max(minRefreshMargin, ttl/10), ttl/2)
		s.token, s.refreshAt = tok, start.Add(ttl-margin)
		s.gen.Add(1)
		return nil
	}
}

// request makes one token request. Every attempt gets a fresh assertion: servers remember jti
// values and reject a replay.
func (s *Source) request(ctx context.Context, now time.Time, attempt int) (string, time.Duration, error) {
	assertion, err := s.Assertion(now)
	if err != nil {
		return "", 0, err
	}
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {assertionType},
		"client_assertion":      {assertion},
	}
	if len(s.cfg.Scopes) > 0 {
		form.Set("scope", strings.Join(s.cfg.Scopes, " "))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, fmt.Errorf("POST %s: %w", s.cfg.TokenURL, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := s.cfg.HTTP.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("POST %s: %w", s.cfg.TokenURL, redactErr(err, assertion))
	}
	defer drainClose(resp.Body)
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return "", 0, fmt.Errorf("POST %s: read response: %w", s.cfg.TokenURL, err)
	}
	tr, perr := parseToken(body)
	if resp.StatusCode < 200 || resp.StatusCode > 299 || tr.AccessToken == "" {
		te := &TokenError{URL: s.cfg.TokenURL, Status: resp.Status, StatusCode: resp.StatusCode, Attempts: attempt}
		switch {
		case perr == nil && tr.Error != "":
			te.Code, te.Description = tr.Error, tr.ErrorDescription
		case resp.StatusCode < 200 || resp.StatusCode > 299:
			te.Description = snippet(redact(redact(string(body), assertion), tr.AccessToken))
		case perr != nil:
			// A 2xx body may hold a token we could not parse: describe it, never quote it.
			te.Description = "response is not JSON: " + perr.Error()
		default:
			te.Description = "response has no access_token"
		}
		for _, secret := range []string{assertion, tr.AccessToken} {
			te.Code, te.Description = redact(te.Code, secret), redact(te.Description, secret)
		}
		if te.Code == "invalid_scope" {
			return "", 0, &ScopeError{TokenError: te, Requested: s.cfg.Scopes, Refused: refusedScopes(s.cfg.Scopes, te.Description)}
		}
		return "", 0, te
	}
	return tr.AccessToken, tr.lifetime(), nil
}

// tokenResponse is RFC 6749 §5.1 and §5.2 in one: servers differ in what they send with which status.
type tokenResponse struct {
	AccessToken      string          `json:"access_token"`
	TokenType        string          `json:"token_type"`
	ExpiresIn        json.RawMessage `json:"expires_in"`
	Error            string          `json:"error"`
	ErrorDescription string          `json:"error_description"`
}

// parseToken reads a token endpoint response body. Fields of the wrong JSON type are errors,
// except expires_in, which some servers send as a string.
func parseToken(body []byte) (tokenResponse, error) {
	var tr tokenResponse
	err := json.Unmarshal(body, &tr)
	return tr, err
}

// lifetime reads expires_in as a number or a numeric string; missing, zero, negative or
// unreadable means the default.
func (tr tokenResponse) lifetime() time.Duration {
	v := strings.Trim(string(tr.ExpiresIn), `"`)
	n, err := strconv.ParseFloat(v, 64)
	if err != nil || n <= 0 || n > 1e9 {
		return defaultTokenLifetime
	}
	return time.Duration(n * float64(time.Second))
}

// snippet describes a non-JSON error body (an HTML error page, a proxy's text) in one line.
func snippet(body string) string {
	s := strings.Join(strings.Fields(body), " ")
	const limit = 200
	if len(s) > limit {
		s = strings.ToValidUTF8(s[:limit], "") + "…"
	}
	return s
}

// redact removes secret from s: a server that echoes the request in its error must not put the
// assertion in ours.
func redact(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "REDACTED")
}

// redactErr keeps err's chain (for errors.Is) unless its text holds the secret.
func redactErr(err error, secret string) error {
	if msg := err.Error(); strings.Contains(msg, secret) {
		return errors.New(redact(msg, secret))
	}
	return err
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
