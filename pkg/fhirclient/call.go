package fhirclient

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// tally counts the attempts of one logical request: one Do, one Load over all its reads, or
// several Loads that share a Request.Attempts.
type tally struct {
	start    time.Time
	tries    int   // requests sent
	counted  int   // tries counted against MaxAttempts
	failures int   // retryable failures so far, for the backoff exponent
	reauthed bool  // the one re-authorization after a 401 is spent
	furthest int64 // the highest Request.Progress seen
	measured bool  // furthest holds a value
}

// Attempts carries the attempt count of one logical request across calls (Request.Attempts). The
// zero value is a fresh count. It is not safe for concurrent use.
type Attempts struct{ t tally }

// call is one logical request on its way through the retry loop, the one loop shared by Do, Load
// and Doer: what the caller asked for and how many tries it has had.
type call struct {
	c       *Client
	req     *Request
	method  string
	t       *tally
	consume func(*http.Response) error // Load's consumer; nil for Do and Doer
	raw     bool                       // Doer: every final answer comes back unread, error statuses too
}

// try is one request sent: the request as prepared for it, and what came of it.
type try struct {
	req   Request // the caller's, after Request.Prepare
	u     *url.URL
	shown string // u redacted
	x     *exchange
}

// failure is a try that another may cure: the table's statuses, transport errors that go away,
// a consumer's error that is not permanent.
type failure struct {
	err    error          // as the caller sees it: a *StatusError, a transport error after "GET url:", the consumer's error
	cause  error          // what a *GiveUpError wraps: err without the request in front
	reason string         // for RetryEvent: the status line, or the cause's text
	detail string         // for GiveUpError: the status with the server's explanation, when it gave one
	resp   *http.Response // a retryable answer not yet made a *StatusError (body unread)
	wait   time.Duration  // Retry-After, when hasRA
	hasRA  bool
	busy   bool // 429, or 503 with Retry-After: bounded by Request.Budget rather than MaxAttempts
}

// run sends req until an answer is final or the attempts run out. Without consume, a 2xx (or 3xx
// not followed) comes back with its body unread; with it, run hands it to consume and retries
// what consume cannot finish. Other final statuses come back as errors (*StatusError and its
// wrappers), or, with raw, as the response.
func (c *Client) run(ctx context.Context, req *Request, consume func(*http.Response) error, raw bool) (*http.Response, error) {
	k := &call{c: c, req: req, method: cmp.Or(req.Method, http.MethodGet), t: c.tally(req), consume: consume, raw: raw}
	for {
		tr, err := k.prepare(ctx)
		if err != nil {
			return nil, err
		}
		resp, f, err := k.once(ctx, tr)
		if f == nil {
			k.settle(err)
			return resp, err
		}
		if resp, err := k.retry(ctx, tr, f); resp != nil || err != nil {
			return resp, err
		}
	}
}

// tally is the attempt count of a new call: req.Attempts' when given, else a fresh one.
func (c *Client) tally(req *Request) *tally {
	t := &tally{}
	if req.Attempts != nil {
		t = &req.Attempts.t
	}
	if t.start.IsZero() {
		t.start = c.now()
	}
	if req.Progress != nil && !t.measured {
		t.furthest, t.measured = req.Progress(), true
	}
	return t
}

// prepare gives the caller's Prepare hook its copy of the request for this try and resolves the
// URL the hook left.
func (k *call) prepare(ctx context.Context) (*try, error) {
	tr := &try{req: *k.req}
	if k.req.Prepare != nil {
		if err := k.req.Prepare(ctx, &tr.req); err != nil {
			return nil, err
		}
	}
	u, err := k.c.Resolve(tr.req.URL)
	if err != nil {
		err = fmt.Errorf("%s %w", k.method, err)
		k.settle(err)
		return nil, err
	}
	tr.u, tr.shown = u, Redact(u.String())
	return tr, nil
}

// settle tells the caller's Settle hook how a try ended.
func (k *call) settle(err error) {
	if k.req.Settle != nil {
		k.req.Settle(err)
	}
}

// once sends a try and sorts what came of it: a final answer or error (f nil), or a failure to
// retry.
func (k *call) once(ctx context.Context, tr *try) (*http.Response, *failure, error) {
	resp, final, err := k.send(ctx, tr)
	switch {
	case final:
		return nil, nil, err
	case err != nil:
		f, err := k.transportFailure(ctx, tr, err)
		return nil, f, err
	}
	return k.answer(ctx, tr, resp)
}

// send sends the try, and sends it again once after renewing the credentials when they were sent
// and refused with a 401: a token that expired is no failure of the request (DESIGN.md §2). A 2xx
// shows the credentials work, so a later 401 of the same Load (a token that expired during an
// hour-long download) may renew them again; a 401 right after a renewal may not. final marks an
// error no try can cure (renewing failed).
func (k *call) send(ctx context.Context, tr *try) (resp *http.Response, final bool, err error) {
	for {
		k.t.tries++
		resp, tr.x, err = k.c.attempt(ctx, k.method, tr.u.String(), &tr.req)
		if err == nil && resp.StatusCode/100 == 2 {
			k.t.reauthed = false
		}
		if err != nil || resp.StatusCode != http.StatusUnauthorized || k.t.reauthed {
			return resp, false, err
		}
		if _, _, credsSent := tr.x.hop(); !credsSent {
			return resp, false, nil
		}
		k.t.reauthed = true
		rerr := k.c.creds.Reauthorize(ctx)
		if cannotReauthorize(rerr) {
			return resp, false, nil
		}
		drain(resp)
		if rerr != nil {
			return nil, true, fmt.Errorf("%s %s: %s; renewing credentials: %w", k.method, tr.shown, resp.Status, rerr)
		}
		k.retried(RetryEvent{Method: k.method, URL: tr.shown, Route: k.req.Route, Attempt: k.attempt(),
			Reason: resp.Status + ": credentials renewed"})
	}
}

// transportFailure sorts a request that got no answer: final (a kickoff that may have reached
// the server, an address never reachable, an error that will not go away), or a failure to retry.
func (k *call) transportFailure(ctx context.Context, tr *try, err error) (*failure, error) {
	inner := hopError(tr.x, tr.u.String(), urlErr(err))
	if k.req.Route == RouteKickoff && tr.x.sent.Load() && (ctx.Err() != nil || retryableTransport(err)) {
		// Cut off once sent, by the network or by the user: say an export may exist.
		return nil, &maybeSentError{method: k.method, url: tr.shown, err: inner}
	}
	if k.c.failFast && !k.c.answered.Load() && ctx.Err() == nil {
		if ue := unreachable(tr.x, tr.u, err); ue != nil {
			return nil, ue
		}
	}
	if ctx.Err() != nil || !retryableTransport(err) {
		return nil, fmt.Errorf("%s %s: %w", k.method, tr.shown, inner)
	}
	return &failure{err: fmt.Errorf("%s %s: %w", k.method, tr.shown, inner), cause: inner, reason: inner.Error()}, nil
}

// answer sorts a response: a success (returned, or consumed), a final error status, or a failure
// to retry.
func (k *call) answer(ctx context.Context, tr *try, resp *http.Response) (*http.Response, *failure, error) {
	last, trusted, _ := tr.x.hop()
	status := resp.StatusCode
	if status == http.StatusUnauthorized && !trusted && k.req.Auth == AuthIfTrusted && k.c.creds != nil {
		if k.raw {
			return resp, nil, nil
		}
		o, _ := origin(last)
		k.c.mu.RLock()
		down := k.c.downgraded(o)
		k.c.mu.RUnlock()
		return nil, nil, &untrustedError{StatusError: k.statusError(tr, resp), origin: o, downgrade: down}
	}
	if k.consume != nil && (status < 400 || slices.Contains(k.req.ConsumeStatus, status)) {
		// A body that fails is the last hop's: retries and the final error name that URL.
		tr.shown = Redact(resp.Request.URL.String())
		f, err := k.consumed(ctx, resp)
		return nil, f, err
	}
	ra, hasRA := RetryAfter(resp.Header, k.c.now())
	switch {
	case retryStatus(k.req.Route, status, hasRA):
		return nil, &failure{resp: resp, reason: statusLine(status, resp.Status), wait: ra, hasRA: hasRA, busy: busy(status, hasRA)}, nil
	case status < 400 || k.raw:
		return resp, nil, nil
	}
	return nil, nil, k.statusError(tr, resp)
}

// consumed runs Load's consumer on an answer: a permanent error (marked with Permanent, or
// IsPermanent) or a cancelled context ends the call, any other error is a failure to retry.
func (k *call) consumed(ctx context.Context, resp *http.Response) (*failure, error) {
	err := k.consume(resp)
	drain(resp)
	if p, ok := errors.AsType[*permanentError](err); ok && p == err {
		return nil, p.err
	}
	if err == nil || ctx.Err() != nil || IsPermanent(err) {
		return nil, err
	}
	return &failure{err: err, cause: err, reason: Printable(err.Error())}, nil
}

// statusError reads a final error answer into a *StatusError, with what the try sent scrubbed
// out of it.
func (k *call) statusError(tr *try, resp *http.Response) *StatusError {
	return newStatusError(k.method, tr.shown, resp, tr.x.secrets(k.c.header))
}

// retry counts a failure and waits for the next try. It returns a final answer or error when
// the attempts or the budget ran out, or when the wait was cut short; nil, nil to try again.
func (k *call) retry(ctx context.Context, tr *try, f *failure) (*http.Response, error) {
	t, req := k.t, k.req
	if req.Progress != nil {
		if p := req.Progress(); p > t.furthest {
			t.furthest = p
			t.counted, t.failures = 0, 0 // progress: a link that keeps breaking still gets there
		}
	}
	t.failures++
	if !(f.busy && req.Budget > 0) {
		t.counted++
	}
	wait := k.c.delay(req.Route, t.failures, f.wait, f.hasRA)
	if f.busy && req.Budget > 0 && wait == 0 {
		// "Retry-After: 0" with a long budget would otherwise become a tight loop.
		wait = k.c.backoff(t.failures, k.c.maxWaitFor(req.Route))
	}
	if note, stop := k.exhausted(wait); stop {
		return k.giveUp(tr, f, note)
	}
	k.report(tr, f)
	k.settle(f.err)
	if err := ctx.Err(); err != nil {
		// Settle ended the call (or the caller stopped): no retry to announce.
		return nil, fmt.Errorf("%s %s: not retrying after %s: %w", k.method, tr.shown, f.reason, err)
	}
	k.retried(RetryEvent{Method: k.method, URL: tr.shown, Route: req.Route, Attempt: k.attempt(), Wait: wait, Reason: f.reason, Err: f.err})
	if err := k.c.sleep(ctx, wait); err != nil {
		return nil, fmt.Errorf("%s %s: waiting to retry after %s: %w", k.method, tr.shown, f.reason, err)
	}
	return nil, nil
}

// exhausted reports whether the attempts or the budget rule out another try, waiting wait first,
// and says why when it is the budget.
func (k *call) exhausted(wait time.Duration) (note string, stop bool) {
	if k.t.counted >= k.c.attempts(k.req) {
		return "", true
	}
	if b := k.req.Budget; b > 0 && k.c.now().Add(wait).Sub(k.t.start) > b {
		return fmt.Sprintf(" (the next try, in %v, would pass the %v budget)", wait.Round(time.Millisecond), b), true
	}
	return "", false
}

// report makes a retryable answer the *StatusError the caller sees of it (reading and closing its
// body, as a drain would).
func (k *call) report(tr *try, f *failure) {
	if f.resp == nil {
		return
	}
	se := k.statusError(tr, f.resp)
	// The retry line keeps to the status line, as it always has; the server's explanation is in
	// f.err for callers and in the give-up error.
	f.err, f.cause, f.detail, f.resp = se, se, se.detail(), nil
}

// giveUp ends a call whose attempts or budget ran out on failure f: a *GiveUpError, or for raw
// calls the last answer itself.
func (k *call) giveUp(tr *try, f *failure, note string) (*http.Response, error) {
	if k.raw && f.resp != nil {
		return f.resp, nil
	}
	k.report(tr, f)
	if k.req.Progress != nil {
		note = " in a row without progress" + note
	}
	err := &GiveUpError{method: k.method, url: tr.shown, attempts: k.attempt(), note: note, detail: cmp.Or(f.detail, f.reason), err: f.cause}
	k.settle(f.err)
	return nil, err
}

// attempt is the number of the try under way as retries and errors report it: of all the tries,
// or with Request.Progress of those in a row without progress, which are what MaxAttempts bounds.
func (k *call) attempt() int {
	if k.req.Progress != nil {
		return k.t.counted
	}
	return k.t.tries
}

// retried reports a retry to the request's OnRetry, else the client's.
func (k *call) retried(e RetryEvent) {
	if k.req.OnRetry != nil {
		k.req.OnRetry(e)
		return
	}
	k.c.retried(e)
}

// attempts is the number of tries req may take.
func (c *Client) attempts(req *Request) int {
	if req.MaxAttempts > 0 {
		return req.MaxAttempts
	}
	return c.maxAttempts
}
