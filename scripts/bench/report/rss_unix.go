//go:build unix

package main

import (
	"os"
	"runtime"
	"syscall"
)

// maxRSS is the peak resident set of the child in KiB, from the rusage wait4(2) returned: the
// largest of the child and every descendant it waited for (not their sum).
func maxRSS(ps *os.ProcessState) int64 {
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok || ru == nil {
		return 0
	}
	if runtime.GOOS == "darwin" {
		return int64(ru.Maxrss) / 1024 // bytes there
	}
	return int64(ru.Maxrss)
}

// written is what the child and the descendants it waited for wrote to storage, from the
// rusage wait4(2) returned: Linux counts ru_oublock in 512-byte units from its task I/O
// accounting (write_bytes less cancelled_write_bytes); elsewhere it is unknown, reported as 0.
func written(ps *os.ProcessState) int64 {
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok || ru == nil || runtime.GOOS != "linux" {
		return 0
	}
	return int64(ru.Oublock) * 512
}
