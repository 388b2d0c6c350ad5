package merge

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing n bytes of f from off to disk, without waiting:
// the disk then works while the merge goes on, and the fsync that closes the file (before the
// rename publishes the folder) waits only for the last stretch instead of the whole file. It is
// advice: an error changes nothing, since the fsync still decides.
func startWriteback(f *os.File, off, n int64) {
	if c, err := f.SyscallConn(); err == nil {
		c.Control(func(fd uintptr) { unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE) })
	}
}
