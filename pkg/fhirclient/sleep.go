package fhirclient

import (
	"context"
	"time"
)

// Sleep waits for d or until ctx ends, whichever comes first, and returns ctx's error in the
// second case. It is the default Options.Sleep, and the one timer wait of every package that
// imports this one (bulk's polling): a test replaces it, never the wall clock.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
