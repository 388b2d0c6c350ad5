package bulk

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"
)

// DefaultReadTimeout is how long a status or kickoff body may stay silent before the read is
// abandoned: a server that sends headers and then stalls (DESIGN.md §8) must not hang a poll that
// Retry-After and the retry table would otherwise keep alive.
const DefaultReadTimeout = time.Minute

// errStalled is the error of a body read abandoned by readBody.
var errStalled = errors.New("no data for too long")

// errBody marks a response whose body could not be read whole (cut, reset, stalled): the request
// is worth repeating, as fhirclient repeats a transport error.
var errBody = errors.New("reading the response body")

// readBody reads at most limit bytes of rc, calling cancel (which must cancel the request's
// context) when no byte arrives for idle. Closing the body would not do: net/http's Close waits
// for the Read it should interrupt.
func readBody(rc io.Reader, limit int64, idle time.Duration, cancel context.CancelFunc) ([]byte, error) {
	if idle <= 0 {
		idle = DefaultReadTimeout
	}
	var stalled atomic.Bool
	t := time.AfterFunc(idle, func() {
		stalled.Store(true)
		cancel()
	})
	b, err := io.ReadAll(io.LimitReader(&idleReader{r: rc, t: t, idle: idle}, limit))
	t.Stop()
	if err != nil && stalled.Load() {
		err = errStalled
	}
	return b, err
}

// idleReader re-arms its timer before every read.
type idleReader struct {
	r    io.Reader
	t    *time.Timer
	idle time.Duration
}

func (r *idleReader) Read(p []byte) (int, error) {
	r.t.Reset(r.idle)
	return r.r.Read(p)
}
