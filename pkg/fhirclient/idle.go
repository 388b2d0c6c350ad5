package fhirclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// ErrNoResponse is the transport error of an attempt whose response headers did not arrive
// within Request.IdleTimeout.
var ErrNoResponse = errors.New("the server did not answer")

// ErrStalled is wrapped by the error of a body Read that received nothing for
// Request.IdleTimeout ("no data for 2m0s").
var ErrStalled = errors.New("no data")

// idleWatch cancels an attempt's context when the server is silent for d while someone waits
// for it. Cancelling the context, not closing the body, is what ends the wait: it is the one
// interruption net/http documents for a Read in progress, for HTTP/1 and HTTP/2 alike.
type idleWatch struct {
	d     time.Duration
	t     *time.Timer
	fired atomic.Bool
}

// newIdleWatch starts watching at once: the wait for the headers is the first wait.
func newIdleWatch(d time.Duration, cancel context.CancelFunc) *idleWatch {
	w := &idleWatch{d: d}
	w.t = time.AfterFunc(d, func() {
		w.fired.Store(true)
		cancel()
	})
	return w
}

func (w *idleWatch) resume() { w.t.Reset(w.d) }
func (w *idleWatch) pause()  { w.t.Stop() }

// idleBody is a response body read under an idleWatch; Close ends the attempt's context.
type idleBody struct {
	rc     io.ReadCloser
	w      *idleWatch
	cancel context.CancelFunc
}

func (b *idleBody) Read(p []byte) (int, error) {
	if b.w.fired.Load() {
		return 0, b.stalled()
	}
	b.w.resume()
	n, err := b.rc.Read(p)
	b.w.pause()
	if err != nil && err != io.EOF && b.w.fired.Load() {
		err = b.stalled()
	}
	return n, err
}

func (b *idleBody) stalled() error { return fmt.Errorf("%w for %v", ErrStalled, b.w.d) }

func (b *idleBody) Close() error {
	b.w.pause()
	err := b.rc.Close()
	b.cancel()
	return err
}
