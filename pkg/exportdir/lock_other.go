//go:build !unix

package exportdir

import "os"

// tryLock has no portable non-blocking file lock to use here: the lock is advisory-only on these
// systems (the PID is still written, so a user can see who else is running).
func tryLock(f *os.File) (busy bool, err error) { return false, nil }
