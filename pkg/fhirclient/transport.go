package fhirclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Auth says whether a request may carry credentials.
type Auth int

// The token goes only where it is both allowed and trusted (DESIGN.md §2, token safety).
const (
	AuthIfTrusted Auth = iota // send Authorization (and --header values) only when the hop's origin is trusted
	AuthNever                 // never (file URLs when requiresAccessToken is false)
)

// exchange follows one attempt of Do through its redirect hops. Do puts it in the request
// context; the transport reads the auth decision from it and records what each hop got, which
// Do needs afterwards: whether the token went out (401 → re-authorize) and whether the request
// was written (kickoff's retry rule).
type exchange struct {
	auth    Auth
	creds   Credentials
	initial string // origin of the first hop: caller-set Authorization stays on it
	guard   bool   // Request.Guard: read by guardControl when a hop dials

	sent atomic.Bool // set by httptrace from the transport's write goroutine

	mu          sync.Mutex
	authz       string // Authorization from creds, fetched once per attempt
	authzErr    error
	fetched     bool
	last        *url.URL // the latest hop
	lastTrusted bool
	credsSent   bool // the latest hop carried the token from creds
}

type exchangeKey struct{}

// authorization asks the credentials once per attempt, so redirect hops share a token and a
// token request happens only when some hop is trusted.
func (x *exchange) authorization(ctx context.Context) (string, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.fetched {
		x.authz, x.authzErr = x.creds.Authorization(ctx)
		x.fetched = true
	}
	return x.authz, x.authzErr
}

func (x *exchange) beginHop(u *url.URL, trusted, credsSent bool) {
	x.sent.Store(false)
	x.mu.Lock()
	x.last, x.lastTrusted, x.credsSent = u, trusted, credsSent
	x.mu.Unlock()
}

// hop returns what the latest hop got.
func (x *exchange) hop() (last *url.URL, trusted, credsSent bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.last, x.lastTrusted, x.credsSent
}

// secrets are the values the attempt sent that must never be echoed back in an error.
func (x *exchange) secrets(extra http.Header) []string {
	x.mu.Lock()
	var s []string
	if x.authz != "" {
		s = append(s, x.authz)
		if _, cred, ok := strings.Cut(x.authz, " "); ok {
			s = append(s, cred)
		}
	}
	x.mu.Unlock()
	for _, vs := range extra {
		s = append(s, vs...)
	}
	return s
}

// transport sets Authorization, --header values, User-Agent and Epic-Client-ID on every hop,
// including redirects. Go's http.Client copies the first request's headers to redirect hops and
// keeps Authorization when only the port changes; setting secrets here, per hop, after checking
// the hop's own origin, is what keeps a token from following a redirect to another server.
type transport struct {
	c    *Client
	base http.RoundTripper
}

// RoundTrip implements http.RoundTripper. It never modifies r; the response points back to r,
// so no caller sees the request that carried the token.
func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	x, _ := r.Context().Value(exchangeKey{}).(*exchange)
	if x == nil {
		x = &exchange{auth: AuthNever}
	}
	if x.guard {
		if err := checkGuardedHost(r.URL.Hostname()); err != nil {
			if r.Body != nil {
				r.Body.Close()
			}
			return nil, err
		}
	}
	hop := r.Clone(r.Context())
	if hop.Header == nil {
		hop.Header = http.Header{}
	}
	o, _ := origin(hop.URL)
	if o != x.initial {
		// A caller's own credentials were meant for the origin it addressed.
		hop.Header.Del("Authorization")
		hop.Header.Del("Cookie")
	}
	hop.Header.Del("Referer") // would tell the next hop the previous URL, presigned query and all
	trusted := t.c.Trusted(hop.URL)
	t.c.warnDowngrade(hop.URL, strings.HasPrefix(x.initial, "https://"))
	credsSent := false
	if trusted {
		for k, vs := range t.c.header {
			if strings.EqualFold(k, "Authorization") && x.auth != AuthIfTrusted {
				continue // an Authorization given with --header is a credential like any other
			}
			if !hasHeader(hop.Header, k) {
				hop.Header[k] = slices.Clone(vs)
			}
		}
		if x.auth == AuthIfTrusted && x.creds != nil && !hasHeader(hop.Header, "Authorization") {
			v, err := x.authorization(r.Context())
			if err != nil {
				if r.Body != nil {
					r.Body.Close() // RoundTrip must close the body, even on errors
				}
				return nil, &credentialsError{err}
			}
			hop.Header.Set("Authorization", v)
			credsSent = true
		}
		if t.c.epic.Load() && t.c.clientID != "" && !hasHeader(hop.Header, "Epic-Client-ID") {
			hop.Header["Epic-Client-ID"] = []string{t.c.clientID} // Epic's spelling, not Go's canonical form
		}
	}
	if !hasHeader(hop.Header, "User-Agent") {
		hop.Header.Set("User-Agent", t.c.userAgent)
	}
	x.beginHop(hop.URL, trusted, credsSent)
	resp, err := t.base.RoundTrip(hop)
	if resp != nil {
		resp.Request = r
	}
	return resp, err
}

// hasHeader looks k up case-insensitively: headers from --header or Epic-Client-ID may be
// stored under a non-canonical key.
func hasHeader(h http.Header, k string) bool {
	if _, ok := h[http.CanonicalHeaderKey(k)]; ok {
		return true
	}
	for key := range h {
		if strings.EqualFold(key, k) {
			return true
		}
	}
	return false
}

// origin is scheme://host:port with the scheme and host lowercased and the default port made
// explicit, so https://X.org and https://x.org:443 compare equal and http://x.org does not.
func origin(u *url.URL) (string, bool) {
	if u == nil {
		return "", false
	}
	scheme := strings.ToLower(u.Scheme)
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "" {
		return "", false
	}
	port := u.Port()
	if port == "" {
		switch scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	if scheme != "http" && scheme != "https" {
		return "", false
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "", false
	}
	return scheme + "://" + net.JoinHostPort(host, strconv.FormatUint(n, 10)), true
}

// redirectPolicy wraps the caller's CheckRedirect (or Go's default limit of 10) so a refused
// redirect is recognised as final rather than retried as a network failure.
func redirectPolicy(next func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		var err error
		if next != nil {
			err = next(req, via)
		} else if len(via) >= 10 {
			err = errors.New("stopped after 10 redirects")
		}
		if err == nil && req.URL.Scheme != "http" && req.URL.Scheme != "https" {
			// Go's transport would fail it as an untyped "unsupported protocol scheme", which
			// the retry table cannot tell from a transient failure.
			err = fmt.Errorf("redirected to a %s URL: only http and https are followed", Printable(req.URL.Scheme))
		}
		if err == nil || err == http.ErrUseLastResponse { // compared by identity in net/http
			return err
		}
		return &redirectError{err}
	}
}

// newHTTPClient is the default Options.HTTPClient. It has no overall timeout (a file download
// may take hours) but bounds each phase that can hang: dial, TLS, and the wait for response
// headers. Compression is left to callers (DisableCompression), so bulk-fetch sees raw gzip and
// can ask for identity when resuming with Range. HTTP/2 is negotiated when offered and can be
// turned off with GODEBUG=http2client=0.
func newHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           newDialer().DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   32, // bulk-fetch and ndjson-inline download in parallel from one host
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   15 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: 5 * time.Minute,
		DisableCompression:    true,
	}}
}

// newDialer is the default client's dialer. Request.Guard is checked in its ControlContext,
// which runs on each address after resolution (guardControl).
func newDialer() *net.Dialer {
	return &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, ControlContext: guardControl}
}
