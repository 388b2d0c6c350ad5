package main

import (
	"context"
	"time"
)

// deps are what tests replace: the clock and the sleeps of every retry and poll, so that no test
// waits on the wall clock (STYLE.md convention 7).
type deps struct {
	now         func() time.Time
	sleep       func(ctx context.Context, d time.Duration) error
	readTimeout time.Duration // a stalled response body is abandoned after this (0 = the default)
	terminal    bool          // draw stderr as on a terminal, whatever it is
}

func (d deps) withDefaults() deps {
	if d.now == nil {
		d.now = time.Now
	}
	return d
}
