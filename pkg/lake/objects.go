package lake

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// objects is where a lake's files live: a local folder or an object store's bucket and prefix.
// Keys are slash-separated paths relative to the lake's root (patient/load=ID/part-0.parquet).
//
// The operations are the few an object store does well, so that the lake's rules hold for both:
// no rename, no append, no directory — whole objects written once, listed by prefix, and one
// conditional create for commit records.
type objects interface {
	// put stores the local file at path as key, durably, and then removes the local file.
	put(ctx context.Context, key, path string) error
	// create stores b as key unless an object named key exists, which it reports as an error
	// matching fs.ErrExist. Two writers creating one key at once: one succeeds.
	create(ctx context.Context, key string, b []byte) error
	// get reads a small object whole.
	get(ctx context.Context, key string) ([]byte, error)
	// fetch copies an object to the local file path (created or truncated).
	fetch(ctx context.Context, key, path string) error
	// list returns every key under prefix (a folder, ending in "/"; "" for all), sorted.
	list(ctx context.Context, prefix string) ([]string, error)
	// remove deletes keys; a key already gone is not an error.
	remove(ctx context.Context, keys []string) error
	// url is where a reader (DuckDB, Athena) finds key: a local path or an s3:// URL.
	url(key string) string
}

// dirObjects keeps a lake in a local (or mounted) folder.
type dirObjects struct{ root string }

func (d dirObjects) path(key string) string { return filepath.Join(d.root, filepath.FromSlash(key)) }

func (d dirObjects) url(key string) string { return d.path(key) }

// put moves the file into place: the staging folder is inside the lake, so on the same file
// system, and a rename costs nothing. The file's data is synced before the rename and the
// folder after it, so that a commit never names a file a crash could still lose.
func (d dirObjects) put(_ context.Context, key, path string) error {
	if err := syncPath(path); err != nil {
		return err
	}
	dst := d.path(key)
	if err := mkdirSynced(filepath.Dir(dst)); err != nil {
		return err
	}
	if err := os.Rename(path, dst); err != nil {
		return err
	}
	return syncPath(filepath.Dir(dst))
}

// mkdirSynced creates dir and its missing parents, syncing each parent that gained an entry.
func mkdirSynced(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := mkdirSynced(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncPath(filepath.Dir(dir))
}

// create writes the object whole to a temporary name, then links it to its final one: a link,
// unlike a rename, fails when the name is taken, so of two writers one wins and neither
// overwrites the other.
func (d dirObjects) create(_ context.Context, key string, b []byte) error {
	dst := d.path(key)
	if err := mkdirSynced(filepath.Dir(dst)); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if err := errors.Join(err, tmp.Close()); err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), dst); err != nil {
		return err // *os.LinkError wrapping EEXIST matches fs.ErrExist
	}
	return syncPath(filepath.Dir(dst))
}

func (d dirObjects) get(_ context.Context, key string) ([]byte, error) {
	return os.ReadFile(d.path(key))
}

func (d dirObjects) fetch(_ context.Context, key, path string) error {
	src, err := os.Open(d.path(key))
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = dst.ReadFrom(src)
	return errors.Join(err, dst.Close())
}

// list walks the folder below prefix. Names starting with "." (the staging folder, a commit
// record being written) are not objects of the lake.
func (d dirObjects) list(_ context.Context, prefix string) ([]string, error) {
	var keys []string
	start := d.path(prefix)
	err := filepath.WalkDir(start, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path == start {
				return filepath.SkipAll
			}
			return err
		}
		if strings.HasPrefix(e.Name(), ".") && path != start {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if e.Type().IsRegular() {
			rel, err := filepath.Rel(d.root, path)
			if err != nil {
				return err
			}
			keys = append(keys, filepath.ToSlash(rel))
		}
		return nil
	})
	slices.Sort(keys)
	return keys, err
}

// remove deletes the files, then the folders they leave empty (a load's partition), up to the
// table's folder.
func (d dirObjects) remove(_ context.Context, keys []string) error {
	dirs := map[string]bool{}
	for _, k := range keys {
		if err := os.Remove(d.path(k)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		dirs[filepath.Dir(d.path(k))] = true
	}
	for dir := range dirs {
		for dir != d.root && strings.HasPrefix(dir, d.root) {
			if os.Remove(dir) != nil { // not empty: stop
				break
			}
			dir = filepath.Dir(dir)
		}
	}
	return nil
}

// keyOf joins a lake key's parts.
func keyOf(parts ...string) string { return strings.Join(parts, "/") }

// partitionKey is the folder of one load's files of one table (a Hive-style partition).
func partitionKey(table, load string) string { return keyOf(table, "load="+load) + "/" }

// splitKey reads a table file's key: its table and load. ok is false for any other key.
func splitKey(key string) (table, load string, ok bool) {
	parts := strings.Split(key, "/")
	if len(parts) != 3 || !strings.HasSuffix(parts[2], ".parquet") {
		return "", "", false
	}
	load, ok = strings.CutPrefix(parts[1], "load=")
	return parts[0], load, ok && load != ""
}
