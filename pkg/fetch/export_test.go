package fetch

import "slices"

// Fatal reports whether any issue in error/ is fatal or an error; bulk-fetch decides this per
// issue as it prints them.
func (r *Result) Fatal() bool { return slices.ContainsFunc(r.Issues, Issue.Fatal) }

// current returns the limit.
func (l *limiter) current() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limit
}
