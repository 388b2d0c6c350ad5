package tool

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/bulkpipe/bulkpipe/pkg/atomicfile"
	"github.com/urfave/cli/v2"
)

// ErrNoInput is the "no input on stdin" rule of DESIGN.md §1: an empty pipe where a URL or a
// manifest is expected almost always means the previous step of a pipeline failed.
var ErrNoInput = errors.New("no input on stdin (did the previous step fail?)")

// Input opens name, or the app's stdin for "" and "-". Reading a terminal would wait for a
// user who does not know input is expected, and tools never prompt, so an implicit stdin that
// is a terminal is a usage error.
func Input(c *cli.Context, name string) (io.ReadCloser, error) {
	if name != "" && name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		return f, nil
	}
	if name == "" && isTerminal(c.App.Reader) {
		return nil, UsageErrorf("expected %s as an argument or on stdin", c.App.ArgsUsage)
	}
	return io.NopCloser(c.App.Reader), nil
}

// FirstLine returns the first non-blank line of r, trimmed; an empty input is ErrNoInput.
func FirstLine(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		if line := strings.TrimSpace(strings.TrimPrefix(sc.Text(), "\ufeff")); line != "" {
			return line, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read stdin: %w", err)
	}
	return "", ErrNoInput
}

func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// IsTerminal reports whether w is a terminal, for tools that draw progress on stderr only then.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Output is where a tool writes its data: the app's stdout, or with -o FILE a file that appears
// only when the run succeeds, so a Makefile target never holds half an answer.
type Output struct {
	w     *bufio.Writer
	under io.Writer // the app's stdout, itself buffered by Run
	file  *atomicfile.File
}

// CreateOutput opens path ("" or "-" for stdout) for writing.
func CreateOutput(c *cli.Context, path string) (*Output, error) {
	if path == "" || path == "-" {
		return &Output{w: bufio.NewWriterSize(c.App.Writer, 64<<10), under: c.App.Writer}, nil
	}
	f, err := atomicfile.Create(path)
	if err != nil {
		return nil, err
	}
	return &Output{w: bufio.NewWriterSize(f, 64<<10), file: f}, nil
}

// Write buffers p.
func (o *Output) Write(p []byte) (int, error) { return o.w.Write(p) }

// Flush pushes buffered data on to stdout, so that a streaming consumer (bulk-fetch reading
// manifest pages) sees each record as soon as it is complete. With -o FILE nothing becomes
// visible before Commit.
func (o *Output) Flush() error {
	if err := o.w.Flush(); err != nil {
		return err
	}
	if f, ok := o.under.(interface{ Flush() error }); ok {
		return f.Flush()
	}
	return nil
}

// Commit finishes the output: flushes stdout, or syncs and renames the file into place.
func (o *Output) Commit() error {
	if err := o.w.Flush(); err != nil {
		if o.file != nil {
			o.file.Abort()
		}
		return err
	}
	if o.file != nil {
		return o.file.Commit()
	}
	return nil
}

// Abort discards a file output; it is a no-op for stdout and after Commit.
func (o *Output) Abort() {
	if o.file != nil {
		o.file.Abort()
	}
}
