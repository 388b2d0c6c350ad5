package fhirtest

import (
	"context"
	"sync"
	"time"
)

// Clock is the fake time of a test: Sleep advances it at once, so a client's waits of seconds or
// hours cost nothing, and a Server given the same clock (Options.Now) sees them pass — a token
// expires mid-poll without the test waiting for it. It is safe for concurrent use.
type Clock struct {
	mu    sync.Mutex
	now   time.Time
	slept []time.Duration
}

// NewClock starts a clock at the current time.
func NewClock() *Clock { return &Clock{now: time.Now()} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Sleep advances the clock by d and records the wait; it fails only when ctx is done.
func (c *Clock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.now = c.now.Add(max(d, 0))
	c.slept = append(c.slept, d)
	c.mu.Unlock()
	return ctx.Err()
}

// Slept lists the waits asked for so far.
func (c *Clock) Slept() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.slept...)
}
