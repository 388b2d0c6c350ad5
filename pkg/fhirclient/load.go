package fhirclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// Load sends req and hands the response to consume, which reads what it needs of the body; Load
// closes the body afterwards. Unlike Do, its retries cover the whole request, body included (as
// restic's backend Load does): when consume fails, the request is sent again with the same
// backoff and the same attempt count as a 503 or a reset, so MaxAttempts bounds the requests
// whatever mix of failures the server produces. The retry table (see Do) applies to the request.
// A consume error is retried unless it is permanent — wrapped with Permanent, or IsPermanent —
// or the context is done; a permanent error comes back unwrapped from its Permanent marker,
// anything else as a *GiveUpError once the attempts run out. consume is called only for 2xx
// (and 3xx not followed) responses; other statuses end as Do's errors.
func (c *Client) Load(ctx context.Context, req *Request, consume func(*http.Response) error) error {
	t := &tally{start: c.now()}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	for {
		resp, err := c.do(ctx, req, t)
		if err != nil {
			return err
		}
		err = consume(resp)
		drain(resp)
		if err == nil {
			return nil
		}
		if p, ok := errors.AsType[*permanentError](err); ok && p == err {
			return p.err
		}
		if ctx.Err() != nil || IsPermanent(err) {
			return err
		}
		shown := Redact(resp.Request.URL.String())
		reason := Printable(err.Error())
		t.failures++
		t.counted++
		if t.counted >= c.attempts(req) {
			return &GiveUpError{method: method, url: shown, attempts: t.tries, detail: reason, err: err}
		}
		wait := c.backoff(t.failures, c.maxWaitFor(req.Route))
		c.retried(RetryEvent{Method: method, URL: shown, Route: req.Route, Attempt: t.tries, Wait: wait, Reason: reason})
		if serr := c.sleep(ctx, wait); serr != nil {
			return fmt.Errorf("%s %s: waiting to retry after %s: %w", method, shown, reason, serr)
		}
	}
}

// Permanent marks an error of a Load consumer that another try would only repeat (an answer too
// large, an encoding that cannot be decoded): Load returns it at once.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }
