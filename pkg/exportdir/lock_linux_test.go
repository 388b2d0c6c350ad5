package exportdir

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// TestLockPIDWriteFails checks that Lock fails when it cannot record its PID: a lock taken without
// it would make the next bulk-fetch say "in use by another process" instead of naming this one.
// A child of this test binary runs Lock under a file size limit of 0 bytes (RLIMIT_FSIZE: Go
// ignores SIGXFSZ, so the write fails with EFBIG), which lets the lock file be created but not
// written.
func TestLockPIDWriteFails(t *testing.T) {
	if dir := os.Getenv("LOCK_CHILD_DIR"); dir != "" {
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: 0, Max: 0}); err != nil {
			os.Stdout.WriteString("setrlimit: " + err.Error() + "\n")
			os.Exit(3)
		}
		_, err := Lock(dir)
		switch {
		case errors.Is(err, syscall.EFBIG):
			os.Exit(1)
		case err != nil:
			os.Stdout.WriteString(err.Error() + "\n")
			os.Exit(2)
		}
		os.Exit(0)
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockPIDWriteFails$")
	cmd.Env = append(os.Environ(), "LOCK_CHILD_DIR="+dir)
	out, err := cmd.Output()
	code := cmd.ProcessState.ExitCode()
	switch code {
	case 0:
		t.Errorf("Lock(%s) with the PID write failing = nil error, want one wrapping EFBIG", dir)
	case 1:
	default:
		t.Errorf("Lock(%s) with the PID write failing: child %v: %s; want an error wrapping EFBIG", dir, err, out)
	}
}
