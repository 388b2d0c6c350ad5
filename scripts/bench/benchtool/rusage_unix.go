//go:build unix

package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"
)

// rusage runs a command and writes "SECONDS MAXRSS_KB" to the -o file, as GNU time -f '%e %M' -o
// does, for systems without GNU time. The command's exit status becomes benchtool's.
func rusage(args []string) error {
	if len(args) < 3 || args[0] != "-o" {
		return fmt.Errorf("usage: benchtool rusage -o FILE CMD [ARG...]")
	}
	out := args[1]
	cmd := exec.Command(args[2], args[3:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if cmd.ProcessState == nil {
		return err
	}
	var rss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru != nil {
		rss = int64(ru.Maxrss) // KiB on Linux; bytes on macOS
		if runtime.GOOS == "darwin" {
			rss /= 1024
		}
	}
	if werr := os.WriteFile(out, fmt.Appendf(nil, "%.2f %d\n", wall.Seconds(), rss), 0o666); werr != nil {
		return werr
	}
	return err
}
