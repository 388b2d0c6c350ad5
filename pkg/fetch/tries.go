package fetch

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"

	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
)

// loop requests the file until the .part holds all of it, or the failure is final. The retries
// are fhirclient's Load, the one retry loop of the codebase, with its backoff, its table of what
// is worth another try and its attempt count; the download adds its part of each try through
// the request's hooks (prepare, settle, receive). loop itself steps in only where a file answers
// as an expired link does, and then calls Load again with the same attempt count.
func (d *dl) loop(ctx context.Context) error {
	tries := &fhirclient.Attempts{}
	for !d.done {
		err := d.e.c.Load(ctx, d.request(ctx, tries), d.receive)
		if fe, ok := errors.AsType[finalError](err); ok {
			return fe.err
		}
		switch {
		case err == nil:
			// Done, or a .part a 416 called whole failed its checks and starts over (unsatisfiable).
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, ErrVerify), isLocal(err):
			return err
		default:
			if err := d.relink(ctx, err); err != nil {
				return err
			}
		}
	}
	return nil
}

// request is the file's request for Load. The token goes along only when the manifest requires
// it, and fhirclient then checks the origin of every hop (DESIGN.md §2, token safety). Close
// keeps a file's connection out of the pool once the file is done: a server or middlebox that
// goes silent on a kept-alive connection after a complete answer would otherwise hold whichever
// request reuses it (the next file, the final DELETE) for a whole timeout; a download is long
// enough that a new connection per request costs nothing.
func (d *dl) request(ctx context.Context, tries *fhirclient.Attempts) *fhirclient.Request {
	return &fhirclient.Request{Method: http.MethodGet, Route: fhirclient.RouteFile, Close: true,
		IdleTimeout: d.e.o.StallTimeout, Attempts: tries,
		Prepare:       d.prepare,
		Settle:        func(err error) { d.settle(ctx, err) },
		Progress:      func() int64 { return d.v.size },
		ConsumeStatus: []int{http.StatusRequestedRangeNotSatisfiable},
		OnRetry:       d.retrying,
	}
}

// finalError ends a download as it is: Prepare's errors, which already name the file or are the
// context's.
type finalError struct{ err error }

func (e finalError) Error() string { return e.err.Error() }
func (e finalError) Unwrap() error { return e.err }

// prepare readies one try (Request.Prepare): links past the manifest's Expires are fetched again
// first, the URL is the file's current link, a .part that cannot be resumed starts over, and the
// try waits for a slot of the adaptive limiter, which settle gives back.
func (d *dl) prepare(ctx context.Context, try *fhirclient.Request) error {
	e := d.e
	if err := e.refreshIfExpired(ctx); err != nil {
		return finalError{d.fail(err)}
	}
	u, gen, missing := d.f.link()
	if missing {
		return finalError{d.fail(fmt.Errorf("not in the manifest fetched again from %s", fhirclient.Redact(e.statusURL)))}
	}
	if d.v.size > 0 && (d.side == nil || d.side.validator() == "") {
		// Nothing to put in If-Range: a resumed body could belong to another version.
		if err := d.restart(); err != nil {
			return finalError{err}
		}
	}
	d.gen = gen
	try.URL, try.Header, try.Auth = u, d.header(), fhirclient.AuthNever
	e.mu.Lock()
	if e.requiresToken {
		try.Auth = fhirclient.AuthIfTrusted
	}
	e.mu.Unlock()
	epoch, err := e.lim.acquire(ctx)
	if err != nil {
		return finalError{err}
	}
	d.epoch = epoch
	return nil
}

// header asks for a fresh file in gzip, or for the rest of the .part with Range, If-Range and
// identity encoding (byte ranges count identity bytes, which the .part holds).
func (d *dl) header() http.Header {
	h := http.Header{"Accept": {"application/fhir+ndjson"}}
	if off := d.v.size; off > 0 && d.side != nil {
		h.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-")
		h.Set("If-Range", d.side.validator())
		h.Set("Accept-Encoding", "identity")
	} else {
		h.Set("Accept-Encoding", "gzip")
	}
	return h
}

// settle ends one try (Request.Settle), before any wait: the limiter's slot goes back, a 429
// halves the parallelism, and a failure is logged as download_error.
func (d *dl) settle(ctx context.Context, err error) {
	e := d.e
	e.lim.release()
	if se, ok := errors.AsType[*fhirclient.StatusError](err); ok && se.StatusCode == http.StatusTooManyRequests {
		if n, changed := e.lim.throttled(d.epoch); changed && e.o.On.Limit != nil {
			e.o.On.Limit(n, "the server answered 429 Too Many Requests")
		}
	}
	if err == nil || ctx.Err() != nil || errors.Is(err, ErrVerify) || isLocal(err) {
		return
	}
	u, _, _ := d.f.link()
	e.logError(u, stallError(err))
}

// retrying reports a retry of the file (Request.OnRetry).
func (d *dl) retrying(ev fhirclient.RetryEvent) {
	if d.e.o.On.Retry == nil {
		return
	}
	if ev.Err == nil {
		d.e.o.On.Retry(d.rel, ev.Attempt, "at once", ev.Reason) // credentials renewed
		return
	}
	wait := "backoff"
	if se, ok := errors.AsType[*fhirclient.StatusError](ev.Err); ok && se.Header.Get("Retry-After") != "" {
		wait = "Retry-After " + se.Header.Get("Retry-After")
	}
	d.e.o.On.Retry(d.rel, ev.Attempt, wait, oneLine(stallError(ev.Err).Error()))
}

// relink takes a final error of Load. Expired links (DESIGN.md §2) answer 401 (after
// fhirclient's one renewal of credentials), 403, 404 or 410: the manifest is fetched again, once
// per file, unless another download already did; nil means try the new link. Any other error
// ends the download, naming the file.
func (d *dl) relink(ctx context.Context, err error) error {
	e := d.e
	se, ok := errors.AsType[*fhirclient.StatusError](err)
	if !ok || !expired(se.StatusCode) {
		if _, ok := errors.AsType[*fhirclient.GiveUpError](err); ok {
			err = fmt.Errorf("%w (raise --retries)", err)
		}
		return d.fail(stallError(err))
	}
	if e.generation() > d.gen {
		return nil // another download already fetched new links
	}
	if d.refreshed || e.statusURL == "" {
		return d.fail(explainExpired(err, d.refreshed, e.statusURL))
	}
	d.refreshed = true
	if rerr := e.refresh(ctx, d.gen, fmt.Sprintf("%s answered %s", d.rel, se.Status)); rerr != nil {
		return d.fail(fmt.Errorf("%w; then %w", err, rerr))
	}
	return nil
}

// expired reports the statuses of a file link that may have expired.
func expired(status int) bool {
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusGone:
		return true
	}
	return false
}

// stallError names the flag that set the limit on an error of fhirclient's idle timeout.
func stallError(err error) error {
	if errors.Is(err, fhirclient.ErrStalled) || errors.Is(err, fhirclient.ErrNoResponse) {
		return fmt.Errorf("%w (--stall-timeout)", err)
	}
	return err
}

// fail names the file in a final error.
func (d *dl) fail(err error) error {
	return fmt.Errorf("%s: %w", filepath.Join(d.e.o.Dir, filepath.FromSlash(d.rel)), err)
}

// explainExpired says what was tried before giving up on a file link.
func explainExpired(err error, refreshed bool, statusURL string) error {
	switch {
	case refreshed:
		return fmt.Errorf("%w (still failing with the links of the manifest fetched again)", err)
	case statusURL == "":
		return fmt.Errorf("%w (links may have expired; without a status URL bulk-fetch cannot fetch new ones: give --status-url)", err)
	}
	return err
}
