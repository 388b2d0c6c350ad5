package tool

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

// TestCommandApp: the app runs the command with the tests' Deps (the clock filled in when they
// leave it out), and Deps.Terminal draws progress on a writer that is not a terminal.
func TestCommandApp(t *testing.T) {
	fixed := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, d := range []Deps{{}, {Now: func() time.Time { return fixed }, Terminal: true}} {
		var got Deps
		var drawn bool
		cmd := Command{Name: "t", ArgsUsage: "[X]", Flags: []cli.Flag{&cli.BoolFlag{Name: "quiet"}},
			Run: func(c *cli.Context, d Deps) error {
				got, drawn = d, d.Status(c).Terminal()
				return nil
			}}
		app := cmd.App(d)
		if app.UsageText != "t [options] [X]" {
			t.Errorf("App().UsageText = %q, want %q", app.UsageText, "t [options] [X]")
		}
		var out, errb bytes.Buffer
		if code := Run(t.Context(), app, []string{"t"}, strings.NewReader(""), &out, &errb); code != ExitOK {
			t.Fatalf("Run = %d, stderr %q", code, errb.String())
		}
		if got.Now == nil || (d.Now != nil && !got.Now().Equal(fixed)) {
			t.Errorf("Run(Deps{Now set: %v}): the command's clock is not the one given", d.Now != nil)
		}
		if drawn != d.Terminal {
			t.Errorf("Deps{Terminal: %v}.Status(c).Terminal() = %v, want %v", d.Terminal, drawn, d.Terminal)
		}
	}
}
