//go:build unix

package exportdir

import "syscall"

// oNoFollow makes open fail on a symbolic link at the last component of the path.
const oNoFollow = syscall.O_NOFOLLOW
