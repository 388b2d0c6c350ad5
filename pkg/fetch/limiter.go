package fetch

import (
	"context"
	"sync"
)

// limiter bounds the downloads in flight and adapts the bound to the server: a 429 halves it
// (multiplicative decrease, as TCP does, so a rate-limited server sees the load drop at once),
// and every limit successful responses in a row raise it by one, up to max (additive increase:
// the load comes back slowly). Waiters are served first come, first served, so files start in
// manifest order.
type limiter struct {
	mu      sync.Mutex
	max     int
	limit   int
	active  int
	good    int // successes since the last change
	epoch   int // bumped by every decrease, so one burst of 429s halves the limit once
	waiters []chan struct{}
}

func newLimiter(n int) *limiter {
	n = max(n, 1)
	return &limiter{max: n, limit: n}
}

// acquire waits for a slot and returns the epoch it was granted in, for throttled.
func (l *limiter) acquire(ctx context.Context) (int, error) {
	l.mu.Lock()
	if l.active < l.limit && len(l.waiters) == 0 {
		l.active++
		e := l.epoch
		l.mu.Unlock()
		return e, nil
	}
	ch := make(chan struct{})
	l.waiters = append(l.waiters, ch)
	l.mu.Unlock()
	select {
	case <-ch:
		l.mu.Lock()
		e := l.epoch
		l.mu.Unlock()
		return e, nil
	case <-ctx.Done():
		l.mu.Lock()
		defer l.mu.Unlock()
		for i, w := range l.waiters {
			if w == ch {
				l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
				return 0, ctx.Err()
			}
		}
		// Granted while we gave up: hand the slot on.
		l.active--
		l.grant()
		return 0, ctx.Err()
	}
}

// release frees a slot.
func (l *limiter) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.active--
	l.grant()
}

// grant wakes waiters while there is room; called with mu held.
func (l *limiter) grant() {
	for l.active < l.limit && len(l.waiters) > 0 {
		ch := l.waiters[0]
		l.waiters = l.waiters[1:]
		l.active++
		close(ch)
	}
}

// throttled records a 429 on a request granted in epoch and returns the new limit. Requests that
// were already in flight when the limit last dropped do not drop it again.
func (l *limiter) throttled(epoch int) (limit int, changed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.good = 0
	if epoch != l.epoch || l.limit == 1 {
		return l.limit, false
	}
	l.limit = max(1, l.limit/2)
	l.epoch++
	return l.limit, true
}

// succeeded records a successful response and returns the new limit.
func (l *limiter) succeeded() (limit int, changed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.limit >= l.max {
		return l.limit, false
	}
	l.good++
	if l.good < l.limit {
		return l.limit, false
	}
	l.good = 0
	l.limit++
	l.grant()
	return l.limit, true
}
