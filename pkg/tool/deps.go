package tool

import (
	"context"
	"time"

	"github.com/urfave/cli/v2"
)

// Deps are what a tool's tests replace, so that no test waits on the wall clock or needs a
// pseudo-terminal: the clock and the sleeps of every retry and poll, how long a stalled response
// body is waited for, and whether stderr is drawn as a terminal. The zero value is the real
// thing: the system clock, timer sleeps, the libraries' default stall timeout, and a terminal
// only when stderr is one.
type Deps struct {
	Now         func() time.Time
	Sleep       func(ctx context.Context, d time.Duration) error // nil: the client's and poller's own
	ReadTimeout time.Duration                                    // 0: the library's default
	Terminal    bool                                             // draw stderr as on a terminal, whatever it is
}

// WithDefaults fills in the clock, which the tools read directly (log timestamps, records).
func (d Deps) WithDefaults() Deps {
	if d.Now == nil {
		d.Now = time.Now
	}
	return d
}

// Status is the tool's Status (NewStatus), drawn as on a terminal when d.Terminal is set.
func (d Deps) Status(c *cli.Context) *Status {
	if d.Terminal {
		return NewStatusTo(c.App.Name, c.App.ErrWriter, true, quiet(c))
	}
	return NewStatus(c)
}

// Command is what one tool's cli.App has of its own; App builds the rest the same way for
// every tool.
type Command struct {
	Name        string
	Usage       string // one line, for --help's NAME
	ArgsUsage   string // the positional arguments, e.g. "[STATUS_URL|-]"
	Description string // the --help text, with its examples
	Flags       []cli.Flag
	Run         func(c *cli.Context, d Deps) error
}

// App is the tool's cli.App, running cmd.Run with d (defaults filled in). Tools call
// cmd.App(Deps{}); tests pass their clock and sleeps.
func (cmd Command) App(d Deps) *cli.App {
	return &cli.App{
		Name:        cmd.Name,
		Usage:       cmd.Usage,
		UsageText:   cmd.Name + " [options] " + cmd.ArgsUsage,
		ArgsUsage:   cmd.ArgsUsage,
		Description: cmd.Description,
		Flags:       cmd.Flags,
		Action:      func(c *cli.Context) error { return cmd.Run(c, d.WithDefaults()) },
	}
}
