package tool

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/bulkpipe/bulkpipe/pkg/atomicfile"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"
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
	if name == "" && IsTerminal(c.App.Reader) {
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

// IsTerminal reports whether the stream (an *os.File) is a terminal: tools draw progress on
// stderr only then, and refuse to wait on a terminal for implicit stdin. It asks the terminal
// driver, because a character device is not necessarily a terminal: /dev/null is one, and it is
// the stdin of cron jobs, systemd units and `ssh -n`, which must get "no input on stdin".
func IsTerminal(stream any) bool {
	// SyscallConn rather than Fd, which would switch a non-blocking descriptor to blocking.
	sc, ok := stream.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	tty := false
	if err := rc.Control(func(fd uintptr) { tty = term.IsTerminal(int(fd)) }); err != nil {
		return false
	}
	return tty
}

// Output is where a tool writes its data: the app's stdout, or with -o FILE a file that appears
// only when the run succeeds, so a Makefile target never holds half an answer.
type Output struct {
	w     *bufio.Writer
	under io.Writer // the app's stdout, itself buffered by Run
	file  *lazyFile
}

// CreateOutput opens path ("" or "-" for stdout) for writing. A file's folder is checked now, so
// a mistyped -o fails before a wait that can last weeks; the file itself is only opened when the
// first byte is written, so a run killed while waiting leaves nothing behind.
//
// A regular file (or a new one) is replaced atomically. A symlink is followed and its target
// replaced, so the link stays a link. Anything else (a device such as /dev/null, a FIFO) is
// written in place: renaming over it would replace /dev/null itself for everyone.
func CreateOutput(c *cli.Context, path string) (*Output, error) {
	if path == "" || path == "-" {
		return &Output{w: bufio.NewWriterSize(c.App.Writer, 64<<10), under: c.App.Writer}, nil
	}
	target, fi, err := outputTarget(path)
	if err != nil {
		return nil, fmt.Errorf("-o %s: %w", path, err)
	}
	lf := &lazyFile{path: target, perm: 0o644}
	switch {
	case fi == nil || fi.Mode().IsRegular():
		if fi != nil {
			lf.perm = fi.Mode().Perm()
		}
		dir := filepath.Dir(target)
		if fi, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("-o %s: %w", path, err)
		} else if !fi.IsDir() {
			return nil, fmt.Errorf("-o %s: %s is not a folder", path, dir)
		}
	case fi.IsDir():
		return nil, fmt.Errorf("-o %s: is a folder", path)
	default:
		lf.direct = true
	}
	return &Output{w: bufio.NewWriterSize(lf, 64<<10), file: lf}, nil
}

// maxSymlinks bounds how many links outputTarget follows, as the kernel's ELOOP does.
const maxSymlinks = 40

// outputTarget follows the symlinks at path to what they name, with its FileInfo (nil when it
// does not exist yet: a dangling link names the file to create).
func outputTarget(path string) (string, os.FileInfo, error) {
	for range maxSymlinks {
		fi, err := os.Lstat(path)
		if errors.Is(err, fs.ErrNotExist) {
			return path, nil, nil
		}
		if err != nil {
			return "", nil, err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			return path, fi, nil
		}
		link, err := os.Readlink(path)
		if err != nil {
			return "", nil, err
		}
		if !filepath.IsAbs(link) {
			// The link's folder is resolved first, so that ".." in the link means what the
			// kernel takes it to mean when that folder is itself reached through a link.
			dir, err := filepath.EvalSymlinks(filepath.Dir(path))
			if err != nil {
				return "", nil, err
			}
			link = filepath.Join(dir, link)
		}
		path = link
	}
	return "", nil, syscall.ELOOP
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
			o.file.abort()
		}
		return err
	}
	if o.file != nil {
		return o.file.commit()
	}
	return nil
}

// Abort discards a file output; it is a no-op for stdout and after Commit.
func (o *Output) Abort() {
	if o.file != nil {
		o.file.abort()
	}
}

// lazyFile is an output file opened on first write: an atomic replacement of a regular file, or
// with direct set a device or FIFO written in place (opening a FIFO waits for its reader, which
// must not happen before there is something to say).
type lazyFile struct {
	path   string
	perm   os.FileMode
	direct bool
	f      *atomicfile.File
	w      *os.File // when direct
	done   bool
}

func (l *lazyFile) Write(p []byte) (int, error) {
	if l.direct {
		if l.w == nil {
			w, err := os.OpenFile(l.path, os.O_WRONLY, 0)
			if err != nil {
				return 0, err
			}
			l.w = w
		}
		return l.w.Write(p)
	}
	if l.f == nil {
		f, err := atomicfile.CreateMode(l.path, l.perm)
		if err != nil {
			return 0, err
		}
		l.f = f
	}
	return l.f.Write(p)
}

func (l *lazyFile) commit() error {
	if l.done {
		return nil
	}
	if l.f == nil && l.w == nil { // an empty answer is still an answer
		if _, err := l.Write(nil); err != nil {
			return err
		}
	}
	l.done = true
	if l.direct {
		if err := l.w.Close(); err != nil {
			return fmt.Errorf("write %s: %w", l.path, err)
		}
		return nil
	}
	if err := l.f.Commit(); err != nil {
		return err
	}
	// Runs killed with -9 before their Commit left their temporaries; this run's answer
	// replaces theirs, so they are of no use to anyone.
	stale, _ := filepath.Glob(filepath.Join(filepath.Dir(l.path), "."+filepath.Base(l.path)+".tmp-*"))
	for _, s := range stale {
		os.Remove(s)
	}
	return nil
}

// abort discards a pending replacement. What was already written to a device or FIFO cannot be
// taken back; it is only closed.
func (l *lazyFile) abort() {
	if l.done {
		return
	}
	l.done = true
	if l.f != nil {
		l.f.Abort()
	}
	if l.w != nil {
		l.w.Close()
	}
}
