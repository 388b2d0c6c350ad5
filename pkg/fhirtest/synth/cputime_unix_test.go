//go:build unix

package synth

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time (user + system, all threads, GC included) the process has used: on a
// shared machine it measures generation cost where wall time does not.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
