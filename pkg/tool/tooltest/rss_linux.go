//go:build linux

package tooltest

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// PeakRSS runs cmd to its end, collecting its stdout and stderr together, and returns the most
// memory its own pages took (VmHWM), in bytes. Not the rusage's ru_maxrss: Go starts a child
// with a vfork-style clone, and exec records the resident set of the memory it leaves — the
// test process's — in the child's ru_maxrss, so a test binary grown by other tests (the race
// detector's shadow, a data set built in memory) would be counted as the tool's. VmHWM is read
// every 10 ms until the process exits; it only grows, so what is missed is what the last 10 ms
// added, while peaks come in the middle of a run.
func PeakRSS(cmd *exec.Cmd) ([]byte, int64, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Start returns once the child has exec'd: from then on its status describes its own memory.
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	status := "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/status"
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var peak int64
	for {
		peak = max(peak, vmHWM(status))
		select {
		case err := <-done:
			if err == nil && peak == 0 {
				err = errors.New("no VmHWM read from " + status)
			}
			return out.Bytes(), peak, err
		case <-tick.C:
		}
	}
}

// vmHWM reads the VmHWM line of a /proc/PID/status file, in bytes; 0 when there is none (the
// process has exited).
func vmHWM(status string) int64 {
	f, err := os.Open(status)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kib << 10
		}
	}
	return 0
}
