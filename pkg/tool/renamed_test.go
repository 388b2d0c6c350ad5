package tool

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestRenamed: the old name of a renamed flag still takes its value, wherever it stands on the
// command line, with a warning naming the new one; both names at once are a usage error, and the
// old name stays out of --help.
func TestRenamed(t *testing.T) {
	tests := []struct {
		args         []string
		code         int
		out, errWant string
	}{
		{[]string{"--dir", "d1", "A"}, ExitOK, "d1", ""},
		{[]string{"A", "-d", "d1"}, ExitOK, "d1", ""},
		{[]string{"A", "--out", "d2"}, ExitOK, "d2", "t: warning: --out is now --dir\n"},
		{[]string{"-o", "d2", "A"}, ExitOK, "d2", "t: warning: --out is now --dir\n"},
		{[]string{"A", "--out=d2"}, ExitOK, "d2", "t: warning: --out is now --dir\n"},
		{[]string{"A", "--out", "-"}, ExitOK, "-", "t: warning: --out is now --dir\n"},
		{[]string{"A", "--out", "d2", "--dir", "d1"}, ExitUsage, "", "t: --out is the old name of --dir: give only --dir\n"},
		{[]string{"A", "--out"}, ExitUsage, "", "t: flag needs an argument: --out\n"},
		{[]string{"A"}, ExitOK, "", ""},
	}
	for _, tt := range tests {
		app := &cli.App{Name: "t", Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Aliases: []string{"d"}, Usage: "the `DIR`"},
			OldFlag("dir", "out", "o"),
		}, Action: func(c *cli.Context) error {
			d, err := Renamed(c, "dir", "out")
			if err != nil {
				return err
			}
			_, err = c.App.Writer.Write([]byte(d))
			return err
		}}
		var out, errb bytes.Buffer
		code := Run(context.Background(), app, append([]string{"t"}, tt.args...), strings.NewReader(""), &out, &errb)
		if code != tt.code || out.String() != tt.out || errb.String() != tt.errWant {
			t.Errorf("t %q = %d, stdout %q, stderr %q, want %d, %q, %q", tt.args, code, out.String(), errb.String(), tt.code, tt.out, tt.errWant)
		}
	}
	app := &cli.App{Name: "t", Flags: []cli.Flag{&cli.StringFlag{Name: "dir", Usage: "the `DIR`"}, OldFlag("dir", "out", "o")}}
	var out bytes.Buffer
	Run(context.Background(), app, []string{"t", "--help"}, strings.NewReader(""), &out, &out)
	if strings.Contains(out.String(), "out") || !strings.Contains(out.String(), "--dir") {
		t.Errorf("t --help = %q, want --dir and no --out", out.String())
	}
}
