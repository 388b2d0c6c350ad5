package fhirclient

import (
	"context"
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
// (and 3xx not followed) responses and those in req.ConsumeStatus; other statuses end as Do's
// errors. Request's Prepare, Settle, Progress and Attempts let a caller that resumes a download
// do its part of each try without a retry loop of its own.
func (c *Client) Load(ctx context.Context, req *Request, consume func(*http.Response) error) error {
	_, err := c.run(ctx, req, consume, false)
	return err
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
