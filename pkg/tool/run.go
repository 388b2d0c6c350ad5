// Package tool is the shared entry point of every bulkpipe binary: exit codes, signals, argument
// order, standard streams and the server/auth flags (DESIGN.md §1, STYLE.md conventions 1–4).
// It is the only package that knows urfave/cli.
package tool

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/urfave/cli/v2"
)

// Exit codes shared by every tool (DESIGN.md §1).
const (
	ExitOK          = 0
	ExitFailure     = 1
	ExitUsage       = 2
	ExitInterrupted = 130
)

type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// UsageErrorf reports a usage error: the tool prints it and exits 2.
func UsageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// IsUsageError reports whether err (or an error it wraps) is a usage error.
func IsUsageError(err error) bool {
	_, ok := errors.AsType[usageError](err)
	return ok
}

// Main runs app with the process's arguments and streams, cancelling its context on SIGINT or
// SIGTERM, and returns the exit code for os.Exit.
func Main(app *cli.App) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal the default action is restored, so a second one kills at once.
	context.AfterFunc(ctx, stop)
	// A full quota (`ulimit -f`) is a write error to report, not a silent death (exit 153).
	ignoreFileSizeLimit()
	if path := os.Getenv(CPUProfileEnv); path != "" {
		if f, err := os.Create(path); err == nil && pprof.StartCPUProfile(f) == nil {
			defer f.Close()
			defer pprof.StopCPUProfile()
		}
	}
	return Run(ctx, app, os.Args, os.Stdin, os.Stdout, os.Stderr)
}

// CPUProfileEnv names a file to write a CPU profile of the run to (go tool pprof reads it):
// how the benchmarks' CPU-seconds per GB are taken apart.
const CPUProfileEnv = "BULKPIPE_CPUPROFILE"

// Run runs app with args (args[0] is the program name) and returns the exit code. Stdout is
// buffered; a failed final flush fails the run. Errors are printed as one "name: message" line.
func Run(ctx context.Context, app *cli.App, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	out := bufio.NewWriterSize(stdout, 64<<10)
	app.Reader, app.Writer, app.ErrWriter = stdin, out, stderr
	app.ExitErrHandler = func(*cli.Context, error) {} // we own exit codes
	app.OnUsageError = func(_ *cli.Context, err error, _ bool) error { return usageError{err} }
	app.DisableSliceFlagSeparator = true
	app.HideHelpCommand = true
	if app.CustomAppHelpTemplate == "" {
		app.CustomAppHelpTemplate = helpTemplate
		app.ExtraInfo = func() map[string]string { return map[string]string{"options": helpOptions(app)} }
	}
	if app.Version == "" {
		app.Version = VersionLine()
	}
	args, err := Reorder(app.Flags, args)
	if err == nil {
		err = app.RunContext(ctx, args)
	}
	if ferr := out.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("write stdout: %w", ferr)
	}
	switch {
	case err == nil:
		return ExitOK
	case ctx.Err() != nil:
		fmt.Fprintf(stderr, "%s: interrupted\n", app.Name)
		return ExitInterrupted
	}
	fmt.Fprintf(stderr, "%s: %v\n", app.Name, oneLine(err))
	if IsUsageError(err) {
		return ExitUsage
	}
	if ec, ok := errors.AsType[cli.ExitCoder](err); ok && ec.ExitCode() != 0 {
		return ec.ExitCode()
	}
	return ExitFailure
}

// oneLine keeps the diagnostic to one line, as scripts grep for "tool: message", and Printable:
// server text is escaped where it is captured, and this catches what any other path let through.
func oneLine(err error) string {
	b := []byte(err.Error())
	for i, c := range b {
		if c == '\n' || c == '\r' {
			b[i] = ' '
		}
	}
	return fhirclient.Printable(string(b))
}
