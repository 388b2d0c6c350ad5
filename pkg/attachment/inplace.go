package attachment

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/failpoint"
	"github.com/bulkpipe/bulkpipe/pkg/fhirjson"
	"github.com/bulkpipe/bulkpipe/pkg/ndjson"
)

// Failpoints of an in-place rewrite (BULKPIPE_CRASH, DESIGN.md §8): a kill at any of them leaves
// every file whole, and a rerun ends as one clean run would.
const (
	FailBeforeRename = "inline.before-rename"
	FailAfterRename  = "inline.after-rename"
	FailAfterState   = "inline.after-state"
)

// InPlaceOptions are the files and folders of InPlace, and how it reports.
type InPlaceOptions struct {
	// Paths are NDJSON files and folders, rewritten grouped by folder in argument order. A
	// folder contributes its files that may hold Resources (NDJSON of other tools' names
	// included), not deleted/ or error/.
	Paths     []string
	Resources []string // resource types inlined (the policy's); nil = DefaultResources
	// Inliner returns the engine for the files of dir, and whether it may download: false when
	// no FHIR base is known for dir, so that only files needing no download can be rewritten
	// (a file that needs one is a *NoBaseError). It is called once per folder, under its lock.
	Inliner func(dir string) (in *Inliner, canFetch bool, err error)
	// Warn reports a file whose state.json entry was repaired or could not be (the run goes on).
	Warn func(msg string)
	// OnFile is called after each file, rewritten (changed) or left as it was.
	OnFile func(path string, st Stats, changed bool)
}

// NoBaseError is a file that needs downloads in a folder for which no FHIR base is known
// (InPlaceOptions.Inliner said it may not download): nothing says where its relative URLs point.
type NoBaseError struct {
	Path string // the file
	Dir  string // its folder, which has no export log naming the server
}

func (e *NoBaseError) Error() string {
	return fmt.Sprintf("%s needs downloads but no FHIR base URL is known", e.Path)
}

// InPlace rewrites files and export folders in place (DESIGN.md §5, ndjson-inline --in-place):
// each file that needs a download goes through a temporary file and a rename, so a crash leaves
// the old file or the new one, and a file that needs nothing is not touched. An export folder
// (one with .bulkpipe/) is locked against bulk-fetch and other rewrites while its files are
// rewritten, and its state.json follows each rewrite, so that bulk-fetch never fetches over it.
// The Stats are the sum over every file, also when an error stops the run.
func InPlace(ctx context.Context, o *InPlaceOptions) (Stats, error) {
	resources := o.Resources
	if resources == nil {
		resources = DefaultResources
	}
	folders, err := groupFolders(o.Paths, resources)
	if err != nil {
		return Stats{}, err
	}
	var total Stats
	for _, g := range folders {
		st, err := g.rewrite(ctx, o)
		total.Add(st)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// file is one file to rewrite in place.
type file struct {
	path string // what is read and replaced (symlinks resolved, so a link stays a link)
	rel  string // its name in the folder's state.json, slash-separated
}

// folder is a directory whose files are rewritten together, under its lock and state.
type folder struct {
	dir   string
	files []file
}

// groupFolders lists the files of paths, grouped by folder in argument order, each file once.
func groupFolders(paths, resources []string) ([]*folder, error) {
	var folders []*folder
	add := func(dir string, f file) {
		i := slices.IndexFunc(folders, func(g *folder) bool { return g.dir == dir })
		if i < 0 {
			folders = append(folders, &folder{dir: dir})
			i = len(folders) - 1
		}
		if !slices.ContainsFunc(folders[i].files, func(g file) bool { return g.path == f.path }) {
			folders[i].files = append(folders[i].files, f)
		}
	}
	for _, arg := range paths {
		fi, err := os.Stat(arg)
		if err != nil {
			return nil, err
		}
		if fi.IsDir() {
			files, err := listFolder(arg, resources)
			if err != nil {
				return nil, err
			}
			for _, f := range files {
				add(filepath.Clean(arg), f)
			}
			continue
		}
		f, err := resolve(filepath.Dir(arg), arg)
		if err != nil {
			return nil, err
		}
		add(filepath.Dir(filepath.Clean(arg)), f)
	}
	return folders, nil
}

// listFolder returns the NDJSON files of dir that may hold selected resources: exportdir's
// discovery of every tool's names, minus deleted/ and error/ and names of other types (a folder
// of one type per file, as every exporter writes, is read only where it can matter), plus any
// other *.ndjson[.gz] whose name says nothing of its type.
func listFolder(dir string, resources []string) ([]file, error) {
	found, err := exportdir.Discover(dir)
	if err != nil {
		return nil, err
	}
	var files []file
	known := map[string]bool{}
	data := false
	for _, f := range found {
		known[f.Rel] = true
		data = data || f.ItemType != exportdir.ItemError
		if f.ItemType != exportdir.ItemOutput || !slices.Contains(resources, f.ResourceType) {
			continue
		}
		ff, err := resolve(dir, f.Path)
		if err != nil {
			return nil, err
		}
		files = append(files, ff)
	}
	others, err := unnamedFiles(dir, known)
	if err != nil {
		return nil, err
	}
	files = append(files, others...)
	if !data && len(others) == 0 {
		// Not an export folder (a wrong path, or a download that never happened): saying
		// "0 inlined" would hide it.
		return nil, fmt.Errorf("no NDJSON files in %s", dir)
	}
	return files, nil
}

// unnamedFiles returns the regular *.ndjson[.gz] files of dir that discovery did not list
// (known) and whose name says nothing of their type: they may hold anything, so they are read.
func unnamedFiles(dir string, known map[string]bool) ([]file, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []file
	for _, e := range entries {
		name := e.Name()
		base := strings.TrimSuffix(name, ".gz")
		if known[name] || !strings.HasSuffix(base, ".ndjson") || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "log") {
			continue
		}
		if _, _, _, ok := exportdir.ParseName(name); ok {
			continue // a name of another type: skipped by listFolder on purpose
		}
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		ff, err := resolve(dir, filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		files = append(files, ff)
	}
	return files, nil
}

// resolve names a file for rewriting: the real path behind symlinks, and its name in dir.
func resolve(dir, path string) (file, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return file{}, err
	}
	rel, err := filepath.Rel(dir, path)
	if err != nil {
		rel = filepath.Base(path)
	}
	return file{path: real, rel: filepath.ToSlash(rel)}, nil
}

// rewrite rewrites the files of one folder. An export folder (one with .bulkpipe/) is locked
// against bulk-fetch and other ndjson-inline runs, and its state (journal) follows each rewrite.
func (g *folder) rewrite(ctx context.Context, o *InPlaceOptions) (Stats, error) {
	var total Stats
	fr := &folderRewrite{o: o, dir: g.dir}
	if fi, err := os.Stat(filepath.Join(g.dir, exportdir.MetaDir)); err == nil && fi.IsDir() {
		unlock, err := exportdir.Lock(g.dir)
		if err != nil {
			return total, err
		}
		defer unlock()
		// A journal, as bulk-fetch keeps: recording a rewritten file appends its line rather than
		// rewriting state.json, which for 50,000 files would write O(n²) bytes.
		if fr.journal, err = exportdir.OpenStateJournal(g.dir); err != nil {
			return total, err
		}
		g.removeStale()
	}
	total, err := fr.all(ctx, g.files)
	if fr.journal != nil {
		err = errors.Join(err, fr.journal.Close())
	}
	return total, err
}

// all rewrites files in order, stopping at the first error.
func (fr *folderRewrite) all(ctx context.Context, files []file) (Stats, error) {
	var total Stats
	var err error
	if fr.in, fr.canFetch, err = fr.o.Inliner(fr.dir); err != nil {
		return total, err
	}
	for _, f := range files {
		st, err := fr.file(ctx, f)
		total.Add(st)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// removeStale removes the temporary files a kill before a rename left behind (atomicfile's);
// with the folder's lock held nobody else is writing one.
func (g *folder) removeStale() {
	for _, f := range g.files {
		stale, _ := filepath.Glob(filepath.Join(filepath.Dir(f.path), "."+filepath.Base(f.path)+".tmp-*"))
		for _, s := range stale {
			os.Remove(s)
		}
	}
}

// folderRewrite is the rewrite of one folder's files: its engine and its state (nil: the
// folder has none).
type folderRewrite struct {
	o        *InPlaceOptions
	dir      string
	in       *Inliner
	canFetch bool
	journal  *exportdir.StateJournal
}

// file rewrites one file and records it in the folder's state.
func (fr *folderRewrite) file(ctx context.Context, f file) (Stats, error) {
	if !fr.canFetch {
		// Nothing says where relative URLs point: fine as long as nothing is to be fetched.
		work, err := fr.needsWork(ctx, f.path)
		if err != nil {
			return Stats{}, err
		}
		if work {
			return Stats{}, &NoBaseError{Path: f.path, Dir: fr.dir}
		}
	}
	rw, err := fr.in.InlineFile(ctx, f.path)
	if err != nil {
		return Stats{}, err
	}
	defer rw.Abort()
	if rw.Changed {
		failpoint.Hit(FailBeforeRename)
		if err := rw.Commit(); err != nil {
			return rw.Stats, err
		}
		failpoint.Hit(FailAfterRename)
	}
	if err := fr.record(f, rw); err != nil {
		return rw.Stats, err
	}
	if fr.o.OnFile != nil {
		fr.o.OnFile(f.path, rw.Stats, rw.Changed)
	}
	return rw.Stats, nil
}

func (fr *folderRewrite) needsWork(ctx context.Context, path string) (bool, error) {
	rc, err := exportdir.OpenFile(path)
	if err != nil {
		return false, err
	}
	defer rc.Close()
	work, _, err := fr.in.Check(ctx, path, rc)
	return work, err
}

// record updates the file's entry in the folder's state.json, when it has one.
func (fr *folderRewrite) record(f file, rw *Rewrite) error {
	if fr.journal == nil {
		return nil
	}
	fs, ok := fr.journal.File(f.rel)
	if !ok {
		return nil
	}
	updated, why, err := updateState(fs, rw, f.path)
	if err != nil {
		return err
	}
	if updated != fs {
		if err := fr.journal.Put(updated); err != nil {
			return err
		}
		failpoint.Hit(FailAfterState)
	}
	if why != "" && fr.o.Warn != nil {
		fr.o.Warn(f.path + ": " + why)
	}
	return nil
}

// updateState returns the state entry for a file after its rewrite. A file left unchanged whose
// entry no longer matches it is one a killed run renamed before recording it (failpoint
// inline.after-rename): it is verified as bulk-fetch verifies a download (every line valid JSON
// of the entry's type, the same number of lines) and recorded; why says so. If it does not
// verify, the entry is left for bulk-fetch --verify to judge, and why says that.
func updateState(fs exportdir.FileState, rw *Rewrite, path string) (exportdir.FileState, string, error) {
	if rw.Changed {
		fs.Size, fs.SHA256, fs.Lines, fs.Inlined = rw.Size, rw.SHA256, int(rw.Lines), true
		return fs, "", nil
	}
	size, sum, err := fileSum(path)
	if err != nil {
		return fs, "", err
	}
	if size == fs.Size && sum == fs.SHA256 {
		return fs, "", nil
	}
	lines, err := verify(path, fs.ResourceType)
	if err != nil || lines != fs.Lines {
		return fs, fmt.Sprintf("warning: does not match .bulkpipe/state.json and does not verify (%v, %d lines, state says %d); left for bulk-fetch --verify", err, lines, fs.Lines), nil
	}
	fs.Size, fs.SHA256, fs.Inlined = size, sum, true
	return fs, "recorded in .bulkpipe/state.json (an earlier run was stopped after rewriting it)", nil
}

func fileSum(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// verify checks every line of a file as bulk-fetch checks a download, and counts them.
func verify(path, resourceType string) (int, error) {
	rc, err := exportdir.OpenFile(path)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	sc := ndjson.NewScanner(rc, 0)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		if rt := fhirjson.ResourceType(line); rt != resourceType {
			return n, fmt.Errorf("line %d: resourceType %q, want %q", sc.Line(), rt, resourceType)
		}
		if !ndjson.Valid(line) {
			return n, fmt.Errorf("line %d: invalid JSON", sc.Line())
		}
	}
	return n, sc.Err()
}
