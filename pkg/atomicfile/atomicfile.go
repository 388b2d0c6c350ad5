// Package atomicfile writes files that appear complete or not at all: data goes to a temporary file
// in the destination's directory, which is synced and renamed over the destination on Commit.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// File is a pending replacement of a destination path. It is not safe for concurrent use.
type File struct {
	*os.File
	path string
	perm os.FileMode
	done bool
}

// Create starts writing a replacement for path with mode 0644. Nothing is visible at path
// until Commit; Abort (or a crash) leaves whatever was there before.
func Create(path string) (*File, error) {
	return CreateMode(path, 0o644)
}

// CreateMode is Create with an explicit permission for the final file.
func CreateMode(path string, perm os.FileMode) (*File, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	// The leading dot keeps readers that glob *.ndjson from picking up a half-written file.
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, err
	}
	return &File{File: f, path: path, perm: perm}, nil
}

// Path is the destination the file will be renamed to.
func (f *File) Path() string { return f.path }

// Commit flushes the data to stable storage, renames the temporary file over the destination
// and syncs the directory, so that after a crash the destination holds either the old or the
// new contents.
func (f *File) Commit() error {
	if err := f.CommitNoDirSync(); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(f.path))
}

// CommitNoDirSync is Commit without the sync of the directory: the data is on stable storage
// and the destination holds it, but a crash may still undo the rename until the caller syncs
// the directory (Dir.Sync), which it can do once for many files (a group commit).
func (f *File) CommitNoDirSync() error {
	if f.done {
		return errors.New("atomicfile: commit after commit or abort")
	}
	f.done = true
	tmp := f.Name()
	err := f.Chmod(f.perm)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, f.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	return nil
}

// Abort discards the temporary file. It is a no-op after Commit, so it can always be deferred.
func (f *File) Abort() error {
	if f.done {
		return nil
	}
	f.done = true
	f.Close()
	return os.Remove(f.Name())
}

// WriteFile atomically replaces path with data.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	f, err := CreateMode(path, perm)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Commit()
}

// Rename renames oldpath to newpath and syncs the target directory, for callers that manage
// their own temporary files (a verified download's .part, a merged folder).
func Rename(oldpath, newpath string) error {
	if err := os.Rename(oldpath, newpath); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(newpath))
}

// SyncDir makes a rename or create in dir durable. Directories that cannot be synced (some
// network file systems answer EINVAL) are not an error: the rename itself already happened.
func SyncDir(dir string) error {
	d, err := OpenDir(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Dir is an open directory kept for syncing it again and again: a writer that renames many
// files into one directory holds one descriptor for it instead of opening one per rename.
type Dir struct {
	f    *os.File
	path string
}

// OpenDir opens dir for Sync.
func OpenDir(dir string) (*Dir, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	return &Dir{f: f, path: dir}, nil
}

// Sync makes every rename and create in the directory so far durable, as SyncDir does.
func (d *Dir) Sync() error {
	if err := d.f.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) && !isUnsupported(err) {
		return fmt.Errorf("sync %s: %w", d.path, err)
	}
	return nil
}

// Close releases the directory's descriptor.
func (d *Dir) Close() error { return d.f.Close() }
