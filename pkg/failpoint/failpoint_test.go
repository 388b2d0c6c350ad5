package failpoint

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// TestHit re-runs this test binary as a child that hits "step", "other" and "step" again,
// writing a line after the first and the second "step", under several values of BULKPIPE_CRASH.
// With -tags failpoint the child dies of SIGKILL at the selected hit and writes nothing after it;
// in a release build (no tag) every value is ignored and the child runs to the end.
func TestHit(t *testing.T) {
	if os.Getenv("FAILPOINT_CHILD") == "1" {
		Hit("step")
		os.Stdout.WriteString("after-1\n")
		Hit("other")
		Hit("step")
		os.Stdout.WriteString("after-2\n")
		os.Exit(0)
	}
	const all = "after-1\nafter-2\n"
	tests := []struct {
		crash      string
		wantKilled bool
		wantOut    string
	}{
		{"", false, all},
		{"elsewhere", false, all},
		{"step:3", false, all},
		{"step", true, ""},
		{"step:2", true, "after-1\n"},
		{"elsewhere, other", true, "after-1\n"},
	}
	for _, tt := range tests {
		if !Enabled {
			tt.wantKilled, tt.wantOut = false, all
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestHit$")
		cmd.Env = append(os.Environ(), "FAILPOINT_CHILD=1", Env+"="+tt.crash)
		out, err := cmd.Output()
		killed := false
		if err != nil {
			ee, ok := errors.AsType[*exec.ExitError](err)
			if !ok {
				t.Fatalf("child: %v", err)
			}
			ws := ee.Sys().(syscall.WaitStatus)
			killed = ws.Signaled() && ws.Signal() == syscall.SIGKILL
			if !killed {
				t.Errorf("%s=%q: child %v, want exit 0 or SIGKILL", Env, tt.crash, err)
				continue
			}
		}
		if killed != tt.wantKilled || string(out) != tt.wantOut {
			t.Errorf("%s=%q (Enabled %v): child killed %v, output %q; want killed %v, output %q",
				Env, tt.crash, Enabled, killed, out, tt.wantKilled, tt.wantOut)
		}
	}
}
