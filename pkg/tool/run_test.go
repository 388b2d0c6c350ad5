package tool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/urfave/cli/v2"
)

func testFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}},
		&cli.StringSliceFlag{Name: "type-filter"},
		&cli.IntFlag{Name: "parallel"},
	}
}

func TestReorder(t *testing.T) {
	tests := []struct {
		in, want []string
	}{
		{[]string{"t"}, []string{"t"}},
		{[]string{"t", "URL"}, []string{"t", "--", "URL"}},
		{[]string{"t", "URL", "--output", "x"}, []string{"t", "--output", "x", "--", "URL"}},
		{[]string{"t", "URL", "-o", "x", "--quiet", "B"}, []string{"t", "-o", "x", "--quiet", "--", "URL", "B"}},
		{[]string{"t", "--quiet", "URL", "--parallel=3"}, []string{"t", "--quiet", "--parallel=3", "--", "URL"}},
		{[]string{"t", "-", "--quiet"}, []string{"t", "--quiet", "--", "-"}},
		{[]string{"t", "--", "--quiet", "-o"}, []string{"t", "--", "--quiet", "-o"}},
		{[]string{"t", "A", "--type-filter", "a?b=c,d", "B"}, []string{"t", "--type-filter", "a?b=c,d", "--", "A", "B"}},
		{[]string{"t", "A", "--help"}, []string{"t", "--help", "--", "A"}},
		{[]string{"t", "--quiet"}, []string{"t", "--quiet"}},
	}
	for _, tt := range tests {
		if got, err := Reorder(testFlags(), tt.in); err != nil || !cmp.Equal(got, tt.want) {
			t.Errorf("Reorder(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
		}
	}
}

// TestReorderMissingValue: a value flag at the very end would otherwise take the "--" that
// reordering inserts before the positionals as its value.
func TestReorderErrors(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{[]string{"t", "--output"}, "flag needs an argument: --output"},
		{[]string{"t", "URL", "--output"}, "flag needs an argument: --output"},
		{[]string{"t", "URL", "-o"}, "flag needs an argument: -o"},
		{[]string{"t", "A", "--quiet", "B", "--parallel"}, "flag needs an argument: --parallel"},
		{[]string{"t", "--bogus", "A"}, "unknown flag --bogus (see --help)"},
		{[]string{"t", "A", "-bogus=1"}, "unknown flag -bogus (see --help)"},
		{[]string{"t", "A", "--output=x", "--typo-flag"}, "unknown flag --typo-flag (see --help)"},
	}
	for _, tt := range tests {
		got, err := Reorder(testFlags(), tt.in)
		if err == nil || err.Error() != tt.want || !IsUsageError(err) {
			t.Errorf("Reorder(%q) = %q, %v, want usage error %q", tt.in, got, err, tt.want)
		}
	}
}

func run(t *testing.T, action cli.ActionFunc, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	app := &cli.App{Name: "t", ArgsUsage: "[URL]", Flags: testFlags(), Action: action}
	var out, errb bytes.Buffer
	code = Run(context.Background(), app, append([]string{"t"}, args...), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestRunExitCodes(t *testing.T) {
	tests := []struct {
		name     string
		action   cli.ActionFunc
		args     []string
		code     int
		stdout   string
		stderrRE string
	}{
		{"ok", func(c *cli.Context) error { fmt.Fprint(c.App.Writer, c.Args().First()); return nil }, []string{"x"}, 0, "x", "^$"},
		{"failure", func(*cli.Context) error { return errors.New("GET u: 500 boom") }, nil, 1, "", "^t: GET u: 500 boom\n$"},
		{"usage", func(*cli.Context) error { return UsageErrorf("--since: bad date") }, nil, 2, "", "^t: --since: bad date\n$"},
		{"unknown flag", func(*cli.Context) error { return nil }, []string{"--bogus"}, 2, "", "^t: unknown flag --bogus \\(see --help\\)\n$"},
		{"missing value", func(*cli.Context) error { return nil }, []string{"--parallel", "x"}, 2, "", "^t: invalid value"},
		{"value forgotten at the end", func(c *cli.Context) error {
			fmt.Fprintf(c.App.Writer, "output=%q", c.String("output"))
			return nil
		}, []string{"URL", "--output"}, 2, "", "^t: flag needs an argument: --output\n$"},
		{"multi-line error", func(*cli.Context) error { return errors.New("a\nb") }, nil, 1, "", "^t: a b\n$"},
		{"flags after args", func(c *cli.Context) error {
			fmt.Fprintf(c.App.Writer, "%s %s %v", c.Args().First(), c.String("output"), c.Bool("quiet"))
			return nil
		}, []string{"URL", "-o", "f", "-q"}, 0, "URL f true", "^$"},
		{"slice not split on commas", func(c *cli.Context) error {
			fmt.Fprintf(c.App.Writer, "%q", c.StringSlice("type-filter"))
			return nil
		}, []string{"URL", "--type-filter", "Observation?category=a,b", "--type-filter", "x"}, 0, `["Observation?category=a,b" "x"]`, "^$"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := run(t, tt.action, tt.args...)
			if code != tt.code {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tt.code, stderr)
			}
			if stdout != tt.stdout {
				t.Errorf("stdout = %q, want %q", stdout, tt.stdout)
			}
			if !regexpMatch(tt.stderrRE, stderr) {
				t.Errorf("stderr = %q, want match %q", stderr, tt.stderrRE)
			}
		})
	}
}

func TestRunInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	app := &cli.App{Name: "t", Action: func(c *cli.Context) error {
		cancel()
		<-c.Context.Done()
		return c.Context.Err()
	}}
	var out, errb bytes.Buffer
	if code := Run(ctx, app, []string{"t"}, strings.NewReader(""), &out, &errb); code != ExitInterrupted {
		t.Errorf("Run after cancel = %d, want %d", code, ExitInterrupted)
	}
	if errb.String() != "t: interrupted\n" {
		t.Errorf("stderr = %q, want %q", errb.String(), "t: interrupted\n")
	}
}

func TestFirstLine(t *testing.T) {
	tests := []struct {
		in   string
		want string
		err  error
	}{
		{"", "", ErrNoInput},
		{"\n  \n", "", ErrNoInput},
		{"https://x/status/1\n", "https://x/status/1", nil},
		{"\ufeff  https://x/status/1\r\nmore\n", "https://x/status/1", nil},
	}
	for _, tt := range tests {
		got, err := FirstLine(strings.NewReader(tt.in))
		if got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("FirstLine(%q) = %q, %v, want %q, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestOutputFileIsAtomic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status.txt")
	action := func(fail bool) cli.ActionFunc {
		return func(c *cli.Context) error {
			o, err := CreateOutput(c, c.String("output"))
			if err != nil {
				return err
			}
			defer o.Abort()
			fmt.Fprintln(o, "https://x/status/1")
			if err := o.Flush(); err != nil {
				return err
			}
			if _, err := os.Stat(path); err == nil {
				return errors.New("output visible before Commit")
			}
			if fail {
				return errors.New("failed")
			}
			return o.Commit()
		}
	}
	if code, _, stderr := run(t, action(true), "-o", path); code != 1 || stderr != "t: failed\n" {
		t.Fatalf("failing run = %d %q", code, stderr)
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 0 {
		t.Errorf("failed run left %d files, want none", len(ents))
	}
	if code, _, stderr := run(t, action(false), "-o", path); code != 0 {
		t.Fatalf("run = %d %q", code, stderr)
	}
	if got, _ := os.ReadFile(path); string(got) != "https://x/status/1\n" {
		t.Errorf("%s = %q", path, got)
	}
}

func TestOutputStdoutStreams(t *testing.T) {
	var seen string
	var out bytes.Buffer
	app := &cli.App{Name: "t", Action: func(c *cli.Context) error {
		o, _ := CreateOutput(c, "-")
		fmt.Fprintln(o, "page1")
		if err := o.Flush(); err != nil {
			return err
		}
		seen = out.String()
		return o.Commit()
	}}
	Run(context.Background(), app, []string{"t"}, strings.NewReader(""), &out, &bytes.Buffer{})
	if seen != "page1\n" {
		t.Errorf("stdout after Flush = %q, want %q", seen, "page1\n")
	}
}
