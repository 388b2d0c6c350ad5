package bulk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/tidwall/gjson"

	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
)

// Defaults of PollOptions.
const (
	DefaultMaxWait = 5 * time.Minute     // cap on one wait between polls (DESIGN.md §2: status 5 min)
	DefaultTimeout = 30 * 24 * time.Hour // Epic exports can take weeks (DESIGN.md §9)
	// minPoll keeps a server that answers Retry-After: 0 (or nothing, many times) from being
	// polled in a tight loop; rate limits count requests per minute (DESIGN.md §9).
	minPoll = time.Second
	// maxManifest bounds the body read from a status URL; a manifest lists files, not data.
	maxManifest = 256 << 20
)

// StatusResponse is one answer of a status URL (or of a manifest's link next) that is not an
// error: 202 while the export runs, 200 when it is complete.
type StatusResponse struct {
	URL        string // the URL that was polled
	StatusCode int    // http.StatusOK or http.StatusAccepted
	Header     http.Header
	XProgress  string // the 202's X-Progress, made Printable; "" when absent
	// Manifest is the manifest page, compacted to one line with every value byte-for-byte as sent:
	// a 200's body, or the partial manifest a 202 may carry with allowPartialManifests (STU3).
	// nil for a 202 without one.
	Manifest []byte
	// Next is the manifest's link next (STU3 paging), resolved against URL; "" when none.
	Next string
}

// status GETs a status URL once, with Accept: application/json (Bulk Data IG, status request).
// Errors come from fhirclient (a *fhirclient.StatusError keeps the code, headers, body and
// OperationOutcome) after its retries; a 200 without a JSON object is an error naming the URL. A
// body that stops for idle (0: DefaultReadTimeout) is abandoned.
func status(ctx context.Context, c *fhirclient.Client, statusURL string, idle time.Duration) (*StatusResponse, error) {
	if idle <= 0 {
		idle = DefaultReadTimeout
	}
	// A status answer is small and quick; a server silent for the read timeout before its
	// headers is as stalled as one silent in the middle of its body. A body cut short or stalled
	// is asked for again within the client's attempts (Load), like a 503.
	var st *StatusResponse
	err := c.Load(ctx, &fhirclient.Request{Method: http.MethodGet, URL: statusURL,
		Header: http.Header{"Accept": {"application/json"}}, Route: fhirclient.RouteStatus, IdleTimeout: idle},
		func(resp *http.Response) error {
			body, err := io.ReadAll(io.LimitReader(resp.Body, maxManifest+1))
			if err != nil {
				return fmt.Errorf("%s: %w: %w", resp.Status, errBody, err)
			}
			var perr error
			st, perr = parseStatus(resp, statusURL, body)
			return fhirclient.Permanent(perr)
		})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// parseStatus reads one status answer whose body came whole.
func parseStatus(resp *http.Response, statusURL string, body []byte) (*StatusResponse, error) {
	what := "GET " + fhirclient.Redact(statusURL)
	if len(body) > maxManifest {
		return nil, fmt.Errorf("%s: %s: body larger than %d MiB", what, resp.Status, maxManifest>>20)
	}
	st := &StatusResponse{URL: statusURL, StatusCode: resp.StatusCode, Header: resp.Header,
		XProgress: fhirclient.Printable(resp.Header.Get("X-Progress"))}
	switch resp.StatusCode {
	case http.StatusOK:
		if err := CheckManifest(body); err != nil {
			return nil, fmt.Errorf("%s: %s: %w: %s", what, resp.Status, err, snippet(body))
		}
	case http.StatusAccepted:
		// A 202 body is a partial manifest (STU3 allowPartialManifests), or an OperationOutcome
		// or nothing, which carry no files.
		if !isManifest(body) || gjson.GetBytes(body, "resourceType").Exists() {
			return st, nil
		}
	default:
		return nil, fmt.Errorf("%s: %s: expected 200 (complete) or 202 (in progress)", what, resp.Status)
	}
	var err error
	if st.Manifest, err = compactJSON(body); err != nil {
		return nil, fmt.Errorf("%s: %s: manifest: %w", what, resp.Status, err)
	}
	if next, _ := nextLink(gjson.ParseBytes(st.Manifest)); next != "" {
		u, err := responseURL(resp, statusURL).Parse(next)
		if err != nil {
			return nil, fmt.Errorf("%s: manifest link next %q: %w", what, next, err)
		}
		st.Next = u.String()
	}
	return st, nil
}

// isManifest reports whether b is a JSON object (a manifest is validated further downstream).
func isManifest(b []byte) bool {
	return gjson.ValidBytes(b) && gjson.ParseBytes(b).IsObject()
}

// snippet shortens a body for an error message.
func snippet(b []byte) string {
	const n = 200
	if len(b) > n {
		return fmt.Sprintf("%q…", b[:n])
	}
	return fmt.Sprintf("%q", b)
}

// Page is one manifest page as it arrived. Without allowPartialManifests there is one page.
type Page struct {
	Raw             []byte // the page, compact JSON, as the server sent it (link included)
	Number          int    // 1-based, in link order
	URL             string // where it came from: the status URL, or the previous page's link next
	Next            string // its link next, resolved; "" on the last page
	Expires         string // the Expires header of the response: when the file links stop working
	TransactionTime string
	Header          http.Header
	Partial         bool // it came with a 202: the export is still running, more pages will follow
}

// Progress reports one wait of Poll: after a 202, or after a transient error that will be retried.
type Progress struct {
	URL        string // the URL being polled
	Page       int    // the page being waited for (1 until a link next is followed)
	Attempt    int    // answers without a (new) page so far for this URL, 1-based
	XProgress  string // the server's X-Progress, "" when absent
	RetryAfter string // the raw Retry-After header, "" when absent
	Wait       time.Duration
	Elapsed    time.Duration // since Poll started
	Err        error         // the transient error being retried; nil after a 202
}

// PollOptions tunes Poll. The zero value polls with the defaults and reports nothing.
type PollOptions struct {
	MaxWait  time.Duration  // cap on one wait (0 = DefaultMaxWait); Retry-After is honoured up to it
	Timeout  time.Duration  // total budget (0 = none; the tools default to DefaultTimeout)
	Progress func(Progress) // called before each wait; nil = silent
	// ReadTimeout abandons (and retries) a status body that sends nothing for this long
	// (0 = DefaultReadTimeout).
	ReadTimeout time.Duration

	Now   func() time.Time                                 // nil = time.Now
	Sleep func(ctx context.Context, d time.Duration) error // nil = a timer that ctx cancels
	Rand  func() float64                                   // jitter source in [0,1); nil = math/rand/v2
}

// ErrTimeout is wrapped by Poll's error when PollOptions.Timeout runs out.
var ErrTimeout = errors.New("export still in progress when the time budget ran out")

// Poll waits on a status URL until the export completes, calling page for each manifest page as
// soon as it arrives: with partial manifests (STU3) a page can come with a 202 while the export
// runs, and link next is followed to the last page. A page is handed over once, even when the
// server repeats it on later polls (the IG allows it to change only its link and expired URLs).
//
// Between polls Poll waits Retry-After (any form fhirclient.RetryAfter reads) or, without it, an
// exponential backoff from 1 s, in both cases capped by MaxWait. Errors after fhirclient's own
// retries (which cover a body cut short or stalled) end the poll, except an OperationOutcome with
// a transient issue (the IG's way of saying "the export is fine, ask again"), retried up to the
// client's attempt limit in a row. An error returned by page ends the poll with that error. Poll
// prints nothing; resuming is calling it again with the same URL, which hands over the same pages.
func Poll(ctx context.Context, c *fhirclient.Client, statusURL string, opts PollOptions, page func(Page) error) error {
	o := opts.withDefaults()
	start := o.Now()
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	cur, number := statusURL, 1
	emitted := false
	visited := map[string]bool{cur: true}
	attempt, transient := 0, 0
	for {
		st, err := status(ctx, c, cur, o.ReadTimeout)
		if err != nil {
			if h, ok := retryable(err); ok && transient < c.MaxAttempts()-1 && ctx.Err() == nil {
				// MaxAttempts-1: as many retries as --retries, after the first poll.
				transient++
				attempt++
				if err := o.wait(ctx, start, Progress{URL: cur, Page: number, Attempt: attempt, Err: err,
					RetryAfter: h.Get("Retry-After")}, h); err != nil {
					return err
				}
				continue
			}
			return o.budgetError(ctx, start, cur, err)
		}
		transient = 0
		if st.Manifest != nil && !emitted {
			p := Page{Raw: st.Manifest, Number: number, URL: cur, Next: st.Next,
				Expires: st.Header.Get("Expires"), Header: st.Header,
				TransactionTime: gjson.GetBytes(st.Manifest, "transactionTime").String(),
				Partial:         st.StatusCode == http.StatusAccepted}
			if err := page(p); err != nil {
				return err
			}
			emitted = true
		}
		if st.Next != "" {
			if visited[st.Next] {
				return fmt.Errorf("GET %s: manifest link next %s points back to an earlier page",
					fhirclient.Redact(cur), fhirclient.Redact(st.Next))
			}
			visited[st.Next] = true
			cur, number, emitted, attempt = st.Next, number+1, false, 0
			continue
		}
		if st.StatusCode == http.StatusOK {
			return nil
		}
		attempt++
		if err := o.wait(ctx, start, Progress{URL: cur, Page: number, Attempt: attempt, XProgress: st.XProgress,
			RetryAfter: st.Header.Get("Retry-After")}, st.Header); err != nil {
			return err
		}
	}
}

// retryable reports whether Poll asks again after err: an OperationOutcome with a transient
// issue (the IG's "the export is fine, the status request failed"). A body cut short is retried
// by fhirclient's Load already. h holds the response's headers, for a Retry-After.
func retryable(err error) (h http.Header, ok bool) {
	if se, ok := errors.AsType[*fhirclient.StatusError](err); ok && se.Outcome != nil && se.Outcome.Transient() {
		return se.Header, true
	}
	return http.Header{}, false
}

func (o PollOptions) withDefaults() PollOptions {
	if o.MaxWait <= 0 {
		o.MaxWait = DefaultMaxWait
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sleep == nil {
		o.Sleep = fhirclient.Sleep
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	return o
}

// delay is the wait before the next poll: Retry-After, else 1 s doubling per attempt; plus up to
// 10% jitter, so that many clients (or one client's polls and a per-minute rate limit) do not
// fall into step; at least min(1 s, MaxWait); at most MaxWait.
func (o PollOptions) delay(h http.Header, attempt int) time.Duration {
	d, ok := fhirclient.RetryAfter(h, o.Now())
	if !ok {
		d = time.Second << min(attempt-1, 20)
	}
	d += time.Duration(float64(d) * 0.1 * o.Rand())
	return min(max(d, min(minPoll, o.MaxWait)), o.MaxWait)
}

// wait reports p and sleeps for the delay that h asks, unless that would overrun the budget.
func (o PollOptions) wait(ctx context.Context, start time.Time, p Progress, h http.Header) error {
	p.Wait = o.delay(h, p.Attempt)
	p.Elapsed = o.Now().Sub(start)
	if o.Timeout > 0 && p.Elapsed+p.Wait > o.Timeout {
		return fmt.Errorf("GET %s: %w (%v)", fhirclient.Redact(p.URL), ErrTimeout, o.Timeout)
	}
	if o.Progress != nil {
		o.Progress(p)
	}
	if err := o.Sleep(ctx, p.Wait); err != nil {
		return o.budgetError(ctx, start, p.URL, err)
	}
	return nil
}

// budgetError turns the context deadline that Timeout set into ErrTimeout; an outer cancellation
// (the user's Ctrl-C) stays what it is.
func (o PollOptions) budgetError(ctx context.Context, start time.Time, u string, err error) error {
	if o.Timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) && errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("GET %s: %w (%v)", fhirclient.Redact(u), ErrTimeout, o.Timeout)
	}
	return err
}

// Cancel DELETEs an export at its status URL (Bulk Data IG, delete request). 202 is success, and
// so is 404: the export is already gone (cancelled, cleaned up or expired), which is what the
// caller wants.
func Cancel(ctx context.Context, c *fhirclient.Client, statusURL string) error {
	return CancelWithin(ctx, c, statusURL, DefaultReadTimeout)
}

// CancelWithin is Cancel with each attempt's wait for an answer bounded by idle
// (0 = DefaultReadTimeout): bulk-fetch bounds its DELETE like its downloads (--stall-timeout),
// so a connection the server stopped answering costs that, not a minute.
func CancelWithin(ctx context.Context, c *fhirclient.Client, statusURL string, idle time.Duration) error {
	if idle <= 0 {
		idle = DefaultReadTimeout
	}
	resp, err := c.Do(ctx, &fhirclient.Request{Method: http.MethodDelete, URL: statusURL,
		Header: http.Header{"Accept": {"application/fhir+json"}}, Route: fhirclient.RouteStatus,
		IdleTimeout: idle})
	if err != nil {
		if se, ok := errors.AsType[*fhirclient.StatusError](err); ok && se.StatusCode == http.StatusNotFound {
			return nil
		}
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return nil
}
