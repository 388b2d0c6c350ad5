//go:build unix

package tool

import (
	"os/signal"
	"syscall"
)

// ignoreFileSizeLimit makes a write past `ulimit -f` fail with EFBIG instead of raising
// SIGXFSZ. Go threads ignore the signal already, but a thread of a C library (DuckDB's writers)
// gets its default action, which kills the process without a message.
func ignoreFileSizeLimit() { signal.Ignore(syscall.SIGXFSZ) }
