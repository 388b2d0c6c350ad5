//go:build unix

package tool

import "syscall"

// OpenFileLimit returns how many descriptors the process may hold open (RLIMIT_NOFILE's soft
// limit, which Go raises to the hard limit at start), and false when there is no limit.
func OpenFileLimit() (int, bool) {
	var rl syscall.Rlimit
	// RLIM_INFINITY is all ones; anything past a billion is no limit in practice.
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<30 {
		return 0, false
	}
	return int(rl.Cur), true
}
