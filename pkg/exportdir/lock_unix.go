//go:build unix

package exportdir

import (
	"errors"
	"os"
	"syscall"
)

// tryLock takes an exclusive flock without waiting; busy reports another holder. flock locks
// belong to the open file description, so a second Lock in the same process is refused too.
func tryLock(f *os.File) (busy bool, err error) {
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return true, nil
	}
	return false, err
}
