package failpoint

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// TestHitKills re-runs this test binary as a child that hits a point three times with the
// point armed for its second hit, and checks the child died of SIGKILL after the first.
func TestHitKills(t *testing.T) {
	if os.Getenv("FAILPOINT_CHILD") == "1" {
		Hit("step")
		os.Stdout.WriteString("after-1\n")
		Hit("other")
		Hit("step")
		os.Stdout.WriteString("after-2\n")
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHitKills$")
	cmd.Env = append(os.Environ(), "FAILPOINT_CHILD=1", Env+"=step:2")
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("child err = %v, want killed", err)
	}
	ws := ee.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("child status = %v, want killed by SIGKILL", ws)
	}
	if string(out) != "after-1\n" {
		t.Errorf("child output = %q, want %q", out, "after-1\n")
	}
}

func TestUnarmedIsNoop(t *testing.T) {
	Hit("anything") // BULKPIPE_CRASH is unset in tests
}
