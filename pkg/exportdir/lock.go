package exportdir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrLocked is wrapped by the error Lock returns when another process holds the folder.
var ErrLocked = errors.New("export folder is locked")

// LockedError says who holds an export folder, so the second bulk-fetch can name the first
// (DESIGN.md §3).
type LockedError struct {
	Dir string
	PID int // 0 when the holder's PID could not be read
}

// Error says "DIR is in use by PID N", the message the second bulk-fetch exits with.
func (e *LockedError) Error() string {
	if e.PID == 0 {
		return fmt.Sprintf("%s is in use by another process", e.Dir)
	}
	return fmt.Sprintf("%s is in use by PID %d", e.Dir, e.PID)
}

// Unwrap makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Unwrap() error { return ErrLocked }

// Lock takes DIR/.bulkpipe/lock for this process and writes its PID there. The lock is an flock on
// the open file, so the kernel drops it when the holder dies: a kill -9 never leaves the folder
// locked, and a stale PID in the file means nothing. A busy folder returns a *LockedError. unlock
// releases it; the file stays (removing it would let a third process lock a new file while a
// second holds the old one).
func Lock(dir string) (unlock func() error, err error) {
	if err := MkdirNoFollow(dir, MetaDir); err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	path := filepath.Join(dir, MetaDir, "lock")
	f, err := OpenNoFollow(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	busy, err := tryLock(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if busy {
		b, _ := os.ReadFile(path)
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		f.Close()
		return nil, &LockedError{Dir: dir, PID: pid}
	}
	if err = f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() error {
		f.Truncate(0)
		return f.Close() // closing the last descriptor releases the flock
	}, nil
}
