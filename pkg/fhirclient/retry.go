package fhirclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Route selects the retry caps and rules of a request (DESIGN.md §2).
type Route string

// Routes of the Bulk Data protocol. Kickoff has the narrow retry rule; status, file and
// attachment have longer caps because servers ask for long waits there.
const (
	RouteMetadata   Route = "metadata"
	RouteKickoff    Route = "kickoff"    // not idempotent: see DESIGN §2
	RouteStatus     Route = "status"     // Retry-After cap default 5 min
	RouteFile       Route = "file"       // cap default 2 min
	RouteAttachment Route = "attachment" // cap default 2 min
	RouteToken      Route = "token"      // also retries a bare 400 twice (done in smartauth)
	RouteOther      Route = "other"
)

// defaultMaxWait caps any single wait per route (DESIGN.md §2: status 5 min, files 2 min).
var defaultMaxWait = map[Route]time.Duration{
	RouteStatus:     5 * time.Minute,
	RouteFile:       2 * time.Minute,
	RouteAttachment: 2 * time.Minute,
}

const (
	defaultMaxAttempts = 6
	otherMaxWait       = time.Minute     // routes not in defaultMaxWait
	backoffBase        = time.Second     // first backoff; doubles per failure
	drainLimit         = int64(64 << 10) // read this much of a discarded body to keep the connection
)

// Retryable reports whether a status is in the retry table: 408 425 429 500 502 503 504.
func Retryable(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusTooEarly, http.StatusTooManyRequests,
		http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable,
		http.StatusGatewayTimeout:
		return true
	}
	return false
}

// retryStatus applies the table, narrowed for kickoff: a kickoff is not idempotent, so it is
// repeated only when the server says it did not start anything — 429, or 503 with Retry-After.
func retryStatus(route Route, status int, hasRetryAfter bool) bool {
	if !Retryable(status) {
		return false
	}
	if route == RouteKickoff {
		return status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable && hasRetryAfter
	}
	return true
}

// busy reports a server asking us to come back later. With a Request.Budget these retries are
// bounded by the budget instead of MaxAttempts (kickoff --wait against Epic's one-export limit).
func busy(status int, hasRetryAfter bool) bool {
	return status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable && hasRetryAfter
}

// retryableTransport reports whether a transport error may go away on retry. Certificate and
// DNS-name failures, refused redirects and missing credentials will not.
func retryableTransport(err error) bool {
	if _, ok := errors.AsType[*credentialsError](err); ok {
		return false
	}
	if _, ok := errors.AsType[*redirectError](err); ok {
		return false
	}
	if _, ok := errors.AsType[*ForbiddenAddressError](err); ok {
		return false
	}
	if dns, ok := errors.AsType[*net.DNSError](err); ok && dns.IsNotFound {
		return false
	}
	if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		return false
	}
	if _, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		return false
	}
	if _, ok := errors.AsType[x509.HostnameError](err); ok {
		return false
	}
	if _, ok := errors.AsType[x509.CertificateInvalidError](err); ok {
		return false
	}
	return !errors.Is(err, http.ErrSchemeMismatch)
}

// IsPermanent reports whether repeating a failed request cannot help: a status outside the retry
// table (408 425 429 500 502 503 504), a transport error that will not go away — a certificate or
// host-name failure, a refused redirect, missing credentials, an https URL answered in plain
// http — or an error marked with Permanent. It classifies by type, so callers that retry by
// themselves (a body cut mid-stream) apply the table's rule without repeating it. A nil error, a cancelled context and errors it does not
// know are not permanent: the caller decides about those.
func IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	if _, ok := errors.AsType[*permanentError](err); ok {
		return true
	}
	if se, ok := errors.AsType[*StatusError](err); ok {
		return !Retryable(se.StatusCode)
	}
	return !retryableTransport(err)
}

// RetryAfter parses Retry-After as delta seconds, an HTTP-date, or — as one reference server
// sends — an epoch timestamp: a number above 1e12 is milliseconds, above 1e9 seconds. A negative
// number or a time in the past means "now" (0, true). ok is false when the header is absent or
// unparseable. The caller caps the result (Wait and Do use the route's MaxWait).
func RetryAfter(h http.Header, now time.Time) (d time.Duration, ok bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		switch {
		case n > 1e12:
			return max(time.UnixMilli(n).Sub(now), 0), true
		case n > 1e9:
			return max(time.Unix(n, 0).Sub(now), 0), true
		case n < 0:
			return 0, true
		}
		return time.Duration(n) * time.Second, true
	}
	// Fractional seconds are not in RFC 9110, but some servers send them; honour them rather
	// than fall back to blind backoff.
	if f, err := strconv.ParseFloat(v, 64); err == nil && !strings.ContainsAny(v, "eEnNxXpP") {
		if f <= 0 {
			return 0, true
		}
		if f < 1e9 {
			return time.Duration(f * float64(time.Second)), true
		}
		return 0, false
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// maxWaitFor is the cap on any single wait of a route.
func (c *Client) maxWaitFor(route Route) time.Duration {
	if d, ok := c.maxWait[route]; ok {
		return d
	}
	return otherMaxWait
}

// delay is the wait before retry number n (1-based): Retry-After when the server gave one,
// else exponential backoff; both capped by the route's MaxWait.
func (c *Client) delay(route Route, n int, retryAfter time.Duration, hasRetryAfter bool) time.Duration {
	limit := c.maxWaitFor(route)
	if hasRetryAfter {
		return min(retryAfter, limit)
	}
	return c.backoff(n, limit)
}

// backoff doubles from 1 s per failure, capped, with equal jitter: a wait in [d/2, d). Equal
// rather than full jitter keeps a floor, so a struggling server is never hammered at once, while
// the spread still keeps parallel downloads from retrying in lockstep.
func (c *Client) backoff(n int, limit time.Duration) time.Duration {
	return Backoff(n, limit, c.rand())
}

// Backoff is the wait before retry number n (1-based) of the project's retry rule, for clients
// other than this one (the lake's S3 uploads): from 1 s, doubling per failure, capped at limit,
// with equal jitter — r in [0, 1] picks the wait within [d/2, d).
func Backoff(n int, limit time.Duration, r float64) time.Duration {
	d := backoffBase << min(max(n, 1)-1, 30)
	if d > limit || d <= 0 {
		d = limit
	}
	half := d / 2
	r = min(max(r, 0), 1)
	return half + time.Duration(r*float64(d-half))
}

// Wait is the same backoff the retry loop uses, for callers that wait between requests that are
// not retries (a 202 from a status URL); a body cut mid-stream is Load's to retry. It honours
// Retry-After in h (capped by the route's MaxWait), else backs off exponentially with jitter for
// the attempt number (1-based). It returns ctx.Err() if cancelled.
func (c *Client) Wait(ctx context.Context, route Route, attempt int, h http.Header) error {
	d, ok := RetryAfter(h, c.now())
	return c.sleep(ctx, c.delay(route, attempt, d, ok))
}

// MaxAttempts is the number of tries per request (Options.MaxAttempts, default 6), for callers
// that retry by themselves.
func (c *Client) MaxAttempts() int { return c.maxAttempts }

// drain reads a little of a body we discard, so its connection can be reused, then closes it.
func drain(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, drainLimit)
	resp.Body.Close()
}

// readAtMost reads up to n bytes of r.
func readAtMost(r io.Reader, n int64) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r, n))
}
