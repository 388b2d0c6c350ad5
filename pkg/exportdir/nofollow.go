package exportdir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrSymlink is wrapped by the errors of OpenNoFollow and MkdirNoFollow when a name the tools
// write to is a symbolic link.
var ErrSymlink = errors.New("is a symbolic link")

// SymlinkError names a symbolic link found where a tool creates or appends to a file or folder of
// an export folder. Writing through it would overwrite, truncate or append to its target, wherever
// that is, so the tools refuse instead.
type SymlinkError struct {
	Path string
}

// Error says which path is a link and what to do about it.
func (e *SymlinkError) Error() string {
	return e.Path + " is a symbolic link: refusing to write through it (remove it, or choose another folder)"
}

// Unwrap makes errors.Is(err, ErrSymlink) true.
func (e *SymlinkError) Unwrap() error { return ErrSymlink }

// OpenNoFollow is os.OpenFile for files the tools create or append to inside an export folder
// (a .part, the lock, log.ndjson): a symbolic link at path is refused with a *SymlinkError, never
// followed. The final component is opened with O_NOFOLLOW where the system has it, so there is no
// window between a check and the open.
func OpenNoFollow(path string, flag int, perm os.FileMode) (*os.File, error) {
	if oNoFollow == 0 && isSymlink(path) {
		return nil, &SymlinkError{Path: path}
	}
	f, err := os.OpenFile(path, flag|oNoFollow, perm)
	if err != nil {
		// O_NOFOLLOW fails with ELOOP on Linux, EMLINK or EFTYPE elsewhere: ask the file system
		// what is there rather than decoding the errno.
		if isSymlink(path) {
			return nil, &SymlinkError{Path: path}
		}
		return nil, err
	}
	if oNoFollow == 0 && isSymlink(path) {
		f.Close()
		return nil, &SymlinkError{Path: path}
	}
	return f, nil
}

// MkdirNoFollow creates the folder rel (slash-separated, such as ".bulkpipe/parts/error") inside
// dir, and every folder on the way, refusing any component that is a symbolic link or not a
// folder: a link at DIR/error or DIR/.bulkpipe would send every file written below it elsewhere.
// dir itself is the user's choice and may be a link.
func MkdirNoFollow(dir, rel string) error {
	p := dir
	for _, name := range strings.Split(filepath.ToSlash(rel), "/") {
		if name == "" || name == "." {
			continue
		}
		p = filepath.Join(p, name)
		err := os.Mkdir(p, 0o755)
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		fi, err := os.Lstat(p)
		switch {
		case err != nil:
			return err
		case fi.Mode()&fs.ModeSymlink != 0:
			return &SymlinkError{Path: p}
		case !fi.IsDir():
			return fmt.Errorf("%s: not a directory", p)
		}
	}
	return nil
}

func isSymlink(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode()&fs.ModeSymlink != 0
}
