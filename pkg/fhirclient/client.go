package fhirclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Credentials supplies the Authorization header for requests to trusted origins.
// smartauth.Source, smartauth.Bearer and smartauth.Basic implement it (no import either way).
type Credentials interface {
	// Authorization returns the full header value: "Bearer x" or "Basic y".
	Authorization(ctx context.Context) (string, error)
	// Reauthorize drops a cached token after a 401; static credentials return ErrCannotReauthorize.
	Reauthorize(ctx context.Context) error
}

// Options configure a Client. Only FHIRBase is required.
type Options struct {
	FHIRBase       string                                           // base URL; its origin is trusted
	Credentials    Credentials                                      // nil = no auth
	Header         http.Header                                      // extra headers from --header; sent on every request to trusted origins only; never logged
	TrustedOrigins []string                                         // from --token-origin (URLs or scheme://host:port)
	MaxAttempts    int                                              // total tries per request; 0 → 6
	MaxWait        map[Route]time.Duration                          // per-route cap on any single wait; missing or ≤0 entries → defaults
	HTTPClient     *http.Client                                     // nil → a tuned default (see Do); its Transport is wrapped, not replaced
	Now            func() time.Time                                 // nil → time.Now
	Sleep          func(ctx context.Context, d time.Duration) error // nil → timer+ctx
	Rand           func() float64                                   // jitter source in [0,1); nil → math/rand/v2
	Version        string                                           // "bulkpipe/<Version>" User-Agent
	ClientID       string                                           // sent as Epic-Client-ID once Metadata() saw an Epic server
	OnRetry        func(RetryEvent)                                 // progress callback (tools print it on stderr); nil = silent
	OnWarn         func(msg string)                                 // a request went from https to plain http (once per origin); nil = silent
	// FailFast makes a refused connection, an unreachable host or an unknown host name an
	// *UnreachableError at once, without retries, as long as no server has answered this Client:
	// a server never reached is most likely a wrong URL, not an outage. Once anything answered,
	// the usual retries apply. For a tool's first contact with a server (bulk-kickoff); not for a
	// status URL polled again days later, where a refused connection is an outage to wait out.
	FailFast bool
}

// RetryEvent describes one retry, for progress lines on stderr (STYLE.md §9).
type RetryEvent struct {
	Method, URL string // URL redacted
	Route       Route
	Attempt     int           // the try that just failed, 1-based (with Request.Progress: in a row without progress)
	Wait        time.Duration // before the next try
	Reason      string        // "503 Service Unavailable", or the transport error
	// Err is the failure retried: a *StatusError, a transport error with the request in front,
	// or a Load consumer's error; nil when the try is repeated after renewing credentials.
	Err error
}

// Request is one logical request; Do may send it several times.
type Request struct {
	Method string // "" → GET
	URL    string // absolute, or relative to the FHIR base (see Resolve)
	Header http.Header
	Body   []byte // replayed on every attempt and redirect
	Route  Route
	Auth   Auth
	// MaxAttempts bounds the tries of this request (Do) or of request and body together (Load);
	// 0 = the client's (Options.MaxAttempts). 1 hands the first failure back at once, as a
	// *GiveUpError whose Last is that failure. A caller that must see every answer (bulk-fetch
	// lowers its parallelism on each 429) does it in Settle, not with a retry loop of its own.
	MaxAttempts int
	// Budget bounds the total time spent on this request's retries (kickoff --wait); 0 = none.
	// With a budget, retries the server asks for (429, 503 with Retry-After) are limited by
	// the budget rather than by MaxAttempts.
	Budget time.Duration
	// IdleTimeout bounds every wait for the server: each attempt's wait for response headers,
	// and each read of the returned body. When it passes, the attempt's context is cancelled,
	// which ends the wait at once (HTTP/1 and HTTP/2 alike). Headers late: the attempt fails as
	// a transport error wrapping ErrNoResponse (retried per the table). A body silent: its Read
	// returns an error wrapping ErrStalled. Only time spent inside Read counts, so a slow
	// consumer is never taken for a stalled server. A kept-alive connection the server stopped
	// answering otherwise holds a request until the transport's own, much longer, timeout.
	// 0 = only the transport's.
	IdleTimeout time.Duration
	// Guard refuses to connect to link-local addresses and cloud metadata endpoints
	// (ForbiddenAddress), on every hop, checked on the address dialed: for URLs that come from
	// data, not from the user (attachments). The check is the default HTTP client's; a
	// caller-supplied Options.HTTPClient gets only the check of the URL's host.
	Guard bool
	// Close keeps the connection out of the pool after this request (http.Request.Close): a
	// Connection: close header alone does not stop Go's transport from reusing it.
	Close bool

	// The fields below let a caller that follows one resource over many requests (bulk-fetch's
	// files: resumed with Range, links fetched again, parallelism lowered on 429) keep its
	// per-try work out of the retry loop, so that Do and Load stay the only one.

	// Prepare is called before each try (each request sent, retries included, not the repeat
	// after renewing credentials) with a copy of the request that it may change for that try:
	// URL, Header, Auth. Its error ends the call as it is.
	Prepare func(ctx context.Context, try *Request) error
	// Settle is called once after each try that Prepare let through, before any wait: with nil
	// when the answer is returned (Do) or consumed (Load), else with the try's failure — a
	// *StatusError, a transport error with the request in front, the consumer's error, or the
	// call's final error. With Prepare it brackets a try, e.g. to hold a limiter's slot only
	// while a request is out, never while waiting to retry.
	Settle func(err error)
	// Progress reports how far the call has got (a download: the furthest byte held). A failure
	// after Progress passed its highest value so far starts the attempt count and the backoff
	// again, so a stream of cut bodies that each add bytes never gives up while one that adds
	// nothing does; the *GiveUpError then counts the attempts in a row without progress.
	Progress func() int64
	// Attempts carries the attempt count across calls: a caller that ends a Load to handle an
	// answer itself (fetch new links after a 404) and calls Load again goes on counting where
	// the last call stopped, so a server that alternates the two cannot keep it going forever.
	Attempts *Attempts
	// ConsumeStatus lists error statuses that Load hands to its consumer like a 2xx, instead of
	// ending with a *StatusError: a 416 to a resumed download can mean the copy is whole.
	ConsumeStatus []int
	// OnRetry receives this request's retries instead of Options.OnRetry.
	OnRetry func(RetryEvent)
}

// Client talks to one FHIR server and whatever file and attachment origins its manifests name.
// It is safe for concurrent use.
type Client struct {
	failFast    bool
	answered    atomic.Bool // some response, of any status, has arrived (see Options.FailFast)
	base        *url.URL
	creds       Credentials
	header      http.Header
	maxAttempts int
	maxWait     map[Route]time.Duration
	hc          *http.Client
	now         func() time.Time
	sleep       func(context.Context, time.Duration) error
	rand        func() float64
	userAgent   string
	clientID    string
	onRetry     func(RetryEvent)
	onWarn      func(string)

	mu      sync.RWMutex
	trusted map[string]bool // origins (see origin) that may receive credentials
	// chosen are the trusted origins the user named (the FHIR base, --token-origin): the only
	// plain-http origins trusted on a host that is also trusted over https.
	chosen map[string]bool
	secure map[string]bool // hosts with a trusted https origin
	warned map[string]bool // origins already reported to onWarn

	epic atomic.Bool // set by Metadata
}

// New checks opts and returns a Client. Errors never quote a --header value or a password.
func New(opts Options) (*Client, error) {
	base, err := parseBase(opts.FHIRBase)
	if err != nil {
		return nil, err
	}
	if err := checkHeader(opts.Header); err != nil {
		return nil, err
	}
	c := &Client{
		base:        base,
		creds:       opts.Credentials,
		header:      opts.Header.Clone(),
		maxAttempts: opts.MaxAttempts,
		maxWait:     map[Route]time.Duration{},
		now:         opts.Now,
		sleep:       opts.Sleep,
		rand:        opts.Rand,
		userAgent:   "bulkpipe",
		clientID:    opts.ClientID,
		onRetry:     opts.OnRetry,
		onWarn:      opts.OnWarn,
		trusted:     map[string]bool{},
		chosen:      map[string]bool{},
		secure:      map[string]bool{},
		warned:      map[string]bool{},
		failFast:    opts.FailFast,
	}
	if opts.Version != "" {
		c.userAgent += "/" + opts.Version
	}
	if c.maxAttempts <= 0 {
		c.maxAttempts = defaultMaxAttempts
	}
	for r, d := range defaultMaxWait {
		c.maxWait[r] = d
	}
	for r, d := range opts.MaxWait {
		if d > 0 {
			c.maxWait[r] = d
		}
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.sleep == nil {
		c.sleep = Sleep
	}
	if c.rand == nil {
		c.rand = rand.Float64
	}
	o, _ := origin(base)
	c.trust(o)
	c.chosen[o] = true
	for _, t := range opts.TrustedOrigins {
		if err := c.Trust(t); err != nil {
			return nil, err
		}
		u, _ := url.Parse(t)
		o, _ := origin(u)
		c.chosen[o] = true
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = newHTTPClient()
	}
	wrapped := *hc
	rt := hc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	wrapped.Transport = &transport{c: c, base: rt}
	wrapped.CheckRedirect = redirectPolicy(hc.CheckRedirect)
	c.hc = &wrapped
	return c, nil
}

// parseBase checks the FHIR base URL and drops a trailing slash, so Resolve and callers join
// paths one way.
func parseBase(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("no FHIR base URL")
	}
	u, err := ParseHTTPURL(raw)
	if err != nil {
		return nil, fmt.Errorf("FHIR base URL %w", err)
	}
	switch {
	case u.User != nil:
		return nil, fmt.Errorf("FHIR base URL %s: credentials in the URL are not supported (use a credentials file)", Redact(raw))
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, fmt.Errorf("FHIR base URL %s: a base URL has no query or fragment", Redact(raw))
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")
	return u, nil
}

// checkHeader rejects --header entries Go would refuse at request time; the error names the
// header, never its value.
func checkHeader(h http.Header) error {
	for k, vs := range h {
		if k == "" || strings.ContainsFunc(k, func(r rune) bool {
			return r <= ' ' || r >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r)
		}) {
			return fmt.Errorf("header %q: invalid name", k)
		}
		for _, v := range vs {
			if strings.ContainsAny(v, "\r\n\x00") {
				return fmt.Errorf("header %q: invalid value (it holds a line break or NUL)", k)
			}
		}
	}
	return nil
}

// urlErr strips the *url.Error wrapper, whose message repeats the URL unredacted.
func urlErr(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

// Base returns a copy of the FHIR base URL, without a trailing slash.
func (c *Client) Base() *url.URL {
	u := *c.base
	return &u
}

// Trust adds rawURL's origin (scheme, host and port) to those that may receive credentials:
// the status URL's, or one given with --token-origin (DESIGN.md §2).
func (c *Client) Trust(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("trusting origin %s: %w", Redact(rawURL), urlErr(err))
	}
	o, ok := origin(u)
	if !ok {
		return fmt.Errorf("trusting origin %s: want scheme://host[:port] with scheme http or https", Redact(rawURL))
	}
	c.mu.Lock()
	c.trust(o)
	c.mu.Unlock()
	return nil
}

// trust adds origin o; c.mu is held (or c is not yet shared).
func (c *Client) trust(o string) {
	c.trusted[o] = true
	if strings.HasPrefix(o, "https://") {
		c.secure[originHost(o)] = true
	}
}

// originHost is the host of an origin string, without scheme and port.
func originHost(o string) string {
	_, hostport, _ := strings.Cut(o, "://")
	h, _, _ := net.SplitHostPort(hostport)
	return h
}

// Trusted reports whether u's scheme, host and port equal a trusted origin's (default ports
// normalized, host compared case-insensitively). A plain-http origin on a host that is trusted
// over https is not trusted unless the user named it (FHIR base, --token-origin): a server
// that answers an https kickoff with an http status URL would otherwise get the token in clear
// text (DESIGN.md §2, token safety).
func (c *Client) Trusted(u *url.URL) bool {
	o, ok := origin(u)
	if !ok {
		return false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.trusted[o] && !c.downgraded(o)
}

// downgraded reports whether o is plain http on a host trusted over https, and not named by the
// user; c.mu is held.
func (c *Client) downgraded(o string) bool {
	return strings.HasPrefix(o, "http://") && c.secure[originHost(o)] && !c.chosen[o]
}

// warnDowngrade reports, once per origin, a hop over plain http that follows https: a redirect
// from https, or a host trusted over https.
func (c *Client) warnDowngrade(u *url.URL, fromHTTPS bool) {
	o, ok := origin(u)
	if !ok || !strings.HasPrefix(o, "http://") || c.onWarn == nil {
		return
	}
	c.mu.Lock()
	down := c.downgraded(o)
	report := (fromHTTPS || down) && !c.warned[o]
	if report {
		c.warned[o] = true
	}
	c.mu.Unlock()
	switch {
	case !report:
	case down:
		c.onWarn(fmt.Sprintf("%s is plain http on a host reached over https: no credentials are sent there", o))
	default:
		c.onWarn(fmt.Sprintf("redirected from https to plain http (%s)", o))
	}
}

// Resolve turns a reference from a manifest or resource into a URL: "Binary/1" against
// "https://x/fhir" is "https://x/fhir/Binary/1" (the base path is kept, unlike plain RFC 3986
// resolution against a base without a trailing slash); absolute URLs come back unchanged.
func (c *Client) Resolve(ref string) (*url.URL, error) {
	if ref == "" {
		return nil, errors.New("resolving an empty reference")
	}
	u, err := url.Parse(ref)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", Redact(ref), urlErr(err))
	}
	if !u.IsAbs() {
		b := *c.base
		b.Path += "/"
		if b.RawPath != "" {
			b.RawPath += "/"
		}
		u = b.ResolveReference(u)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("resolving %s: not an http or https URL", Redact(ref))
	}
	return u, nil
}

// Reauthorize drops cached credentials (passthrough to Credentials), for callers driving their
// own 401 handling, such as bulk-fetch's file sequence (DESIGN.md §2). Without credentials it
// returns ErrCannotReauthorize.
func (c *Client) Reauthorize(ctx context.Context) error {
	if c.creds == nil {
		return ErrCannotReauthorize
	}
	return c.creds.Reauthorize(ctx)
}

// Do sends req with the retry table of DESIGN.md §2 and returns the first response that is not
// retried. 2xx (and 3xx not followed) come back with the body unread: the caller closes it.
// Any other status becomes a *StatusError (body read up to 64 KiB, then closed), after:
//   - retries of 408/425/429/500/502/503/504 and transport errors (exponential backoff with
//     jitter, base 1 s, doubling, single wait ≤ MaxWait[route]; Retry-After honoured in every
//     form, capped), up to MaxAttempts tries; the final error says how many and the last failure;
//   - RouteKickoff: retried ONLY after 429, 503 with Retry-After, or a transport failure before
//     the request was written; after sending, a timeout or reset returns an error wrapping
//     ErrMaybeSent ("an export may already exist on the server");
//   - one Reauthorize and retry on a 401 when the token was sent. A 401 from an untrusted origin
//     returns an error that names --token-origin.
//
// Authorization is set per hop, including redirects, and only when the hop's origin is trusted
// and req.Auth allows it. Every body not returned is drained and closed. Every retry calls
// OnRetry (the request's, else the client's). Errors carry the redacted URL and never a token or a --header value.
func (c *Client) Do(ctx context.Context, req *Request) (*http.Response, error) {
	return c.run(ctx, req, nil, false)
}

// attempt sends req once, following redirects, with a fresh exchange for the transport.
func (c *Client) attempt(ctx context.Context, method, target string, req *Request) (*http.Response, *exchange, error) {
	x := &exchange{auth: req.Auth, creds: c.creds, guard: req.Guard}
	if u, err := url.Parse(target); err == nil {
		x.initial, _ = origin(u)
	}
	ctx = context.WithValue(ctx, exchangeKey{}, x)
	// Kickoff's rule needs to know whether the server could have seen the request. Headers
	// written count as seen: a GET kickoff is complete once its headers are out.
	mark := func() { x.sent.Store(true) }
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteHeaders: mark,
		WroteRequest: func(httptrace.WroteRequestInfo) { mark() },
	})
	var body io.Reader
	if req.Body != nil {
		body = bytes.NewReader(req.Body) // NewRequest sets GetBody, so 307/308 redirects replay it
	}
	hr, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, x, err
	}
	for k, vs := range req.Header {
		hr.Header[k] = append([]string(nil), vs...)
	}
	hr.Close = req.Close
	if req.IdleTimeout <= 0 {
		resp, err := c.hc.Do(hr)
		if err != nil {
			return nil, x, err
		}
		return c.heard(resp), x, nil
	}
	actx, cancel := context.WithCancel(hr.Context())
	w := newIdleWatch(req.IdleTimeout, cancel)
	resp, err := c.hc.Do(hr.WithContext(actx))
	w.pause()
	if err != nil || w.fired.Load() && ctx.Err() == nil {
		cancel()
		if resp != nil {
			resp.Body.Close()
		}
		if w.fired.Load() && ctx.Err() == nil {
			return nil, x, fmt.Errorf("no response within %s: %w", req.IdleTimeout, ErrNoResponse)
		}
		return nil, x, err
	}
	resp.Body = &idleBody{rc: resp.Body, w: w, cancel: cancel} // read under the attempt's context
	return c.heard(resp), x, nil
}

// heard notes that a server answered (Options.FailFast) and makes the reason phrase, server text
// that callers print, Printable here, once.
func (c *Client) heard(resp *http.Response) *http.Response {
	resp.Status = statusLine(resp.StatusCode, resp.Status)
	c.answered.Store(true)
	return resp
}

// hopError names the redirect target when a later hop failed, since the address in the error
// is then not the one the user gave.
func hopError(x *exchange, target string, err error) error {
	if last, _, _ := x.hop(); last != nil && last.String() != target {
		return fmt.Errorf("redirected to %s: %w", Redact(last.String()), err)
	}
	return err
}

func (c *Client) retried(e RetryEvent) {
	if c.onRetry != nil {
		c.onRetry(e)
	}
}

// Doer returns an http-client-like value for smartauth's token requests: Do(*http.Request)
// retries per the table on the given route, sends no credentials, sets User-Agent, and — like
// http.Client — returns every final response, error statuses included, with its body unread.
func (c *Client) Doer(route Route) interface {
	Do(*http.Request) (*http.Response, error)
} {
	return doer{c: c, route: route}
}

type doer struct {
	c     *Client
	route Route
}

func (d doer) Do(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil && r.Body != http.NoBody {
		b, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("%s %s: reading the request body: %w", r.Method, Redact(r.URL.String()), err)
		}
		body = b
	}
	return d.c.run(r.Context(), &Request{Method: r.Method, URL: r.URL.String(), Header: r.Header,
		Body: body, Route: d.route, Auth: AuthNever}, nil, true)
}
