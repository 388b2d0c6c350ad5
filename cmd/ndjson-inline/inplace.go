package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/bulkpipe/bulkpipe/pkg/attachment"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirjson"
	"github.com/bulkpipe/bulkpipe/pkg/ndjson"
	"github.com/bulkpipe/bulkpipe/pkg/tool"
)

// Failpoints of --in-place (BULKPIPE_CRASH, DESIGN.md §8): a kill at any of them leaves every
// file whole, and a rerun ends as one clean run would.
const (
	failBeforeRename = "inline.before-rename"
	failAfterRename  = "inline.after-rename"
	failAfterState   = "inline.after-state"
)

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

// runInPlace rewrites the files of args, grouped by folder in argument order.
func runInPlace(c *cli.Context, cfg *config, r *reporter, args []string) (attachment.Stats, error) {
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
	resources := cfg.policy.Resources
	if resources == nil {
		resources = attachment.DefaultResources
	}
	for _, arg := range args {
		fi, err := os.Stat(arg)
		if err != nil {
			return attachment.Stats{}, err
		}
		if fi.IsDir() {
			files, err := listFolder(arg, resources)
			if err != nil {
				return attachment.Stats{}, err
			}
			for _, f := range files {
				add(filepath.Clean(arg), f)
			}
			continue
		}
		f, err := resolve(filepath.Dir(arg), arg)
		if err != nil {
			return attachment.Stats{}, err
		}
		add(filepath.Dir(filepath.Clean(arg)), f)
	}
	var total attachment.Stats
	cs := newClients(c, cfg, r.st)
	for _, g := range folders {
		st, err := inlineFolder(c, cfg, r, cs, g)
		total.Add(st)
		if err != nil {
			return total, err
		}
	}
	return total, nil
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
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name := e.Name()
		base := strings.TrimSuffix(name, ".gz")
		if known[name] || !strings.HasSuffix(base, ".ndjson") || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "log") {
			continue
		}
		if _, _, _, ok := exportdir.ParseName(name); ok {
			continue // a name of another type: skipped above on purpose
		}
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		ff, err := resolve(dir, filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		files = append(files, ff)
		data = true
	}
	if !data {
		// Not an export folder (a wrong path, or a download that never happened): saying
		// "0 inlined" would hide it.
		return nil, fmt.Errorf("no NDJSON files in %s", dir)
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

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// inlineFolder rewrites the files of one folder. An export folder (one with .bulkpipe/) is
// locked against bulk-fetch and other ndjson-inline runs, and its state.json follows each
// rewrite.
func inlineFolder(c *cli.Context, cfg *config, r *reporter, cs *clients, g *folder) (attachment.Stats, error) {
	var total attachment.Stats
	var state *exportdir.State
	if isDir(filepath.Join(g.dir, exportdir.MetaDir)) {
		unlock, err := exportdir.Lock(g.dir)
		if err != nil {
			return total, err
		}
		defer unlock()
		if state, err = exportdir.ReadState(g.dir); err != nil {
			return total, err
		}
		// A kill before a rename leaves the temporary file of atomicfile behind; with the lock
		// held nobody else is writing one.
		for _, f := range g.files {
			stale, _ := filepath.Glob(filepath.Join(filepath.Dir(f.path), "."+filepath.Base(f.path)+".tmp-*"))
			for _, s := range stale {
				os.Remove(s)
			}
		}
	}
	base, exportID, err := folderContext(c, g.dir)
	if err != nil {
		return total, err
	}
	var fetcher attachment.Fetcher = noFetcher{}
	if base != "" {
		if fetcher, err = cs.get(base); err != nil {
			return total, err
		}
	}
	in, err := newInliner(cfg, fetcher, r, exportID)
	if err != nil {
		return total, err
	}
	for _, f := range g.files {
		if base == "" {
			// Nothing says where relative URLs point: fine as long as nothing is to be fetched.
			work, err := needsWork(c.Context, in, f.path)
			if err != nil {
				return total, err
			}
			if work {
				return total, tool.UsageErrorf("%s needs downloads but no FHIR base URL is known: give --fhir-url (or BULK_FHIR_URL); %s has no export log naming the server", f.path, g.dir)
			}
		}
		st, err := inlineFile(c.Context, in, r, cfg, g.dir, f, state)
		total.Add(st)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func needsWork(ctx context.Context, in *attachment.Inliner, path string) (bool, error) {
	rc, err := exportdir.OpenFile(path)
	if err != nil {
		return false, err
	}
	defer rc.Close()
	work, _, err := in.Check(ctx, path, rc)
	return work, err
}

// inlineFile rewrites one file and records it in state (nil: the folder has none).
func inlineFile(ctx context.Context, in *attachment.Inliner, r *reporter, cfg *config, dir string, f file, state *exportdir.State) (attachment.Stats, error) {
	rw, err := in.InlineFile(ctx, f.path)
	if err != nil {
		return attachment.Stats{}, err
	}
	defer rw.Abort()
	if rw.Changed {
		tool.Failpoint(failBeforeRename)
		if err := rw.Commit(); err != nil {
			return rw.Stats, err
		}
		tool.Failpoint(failAfterRename)
	}
	note := "unchanged"
	if rw.Changed {
		note = "rewritten"
	}
	if state != nil {
		if fs, ok := state.File(f.rel); ok {
			updated, why, err := updateState(fs, rw, f.path)
			if err != nil {
				return rw.Stats, err
			}
			if updated != fs {
				state.Put(updated)
				if err := exportdir.WriteState(dir, state); err != nil {
					return rw.Stats, err
				}
				tool.Failpoint(failAfterState)
			}
			if why != "" {
				r.say("%s: %s", f.path, why)
			}
		}
	}
	if !cfg.quiet {
		r.say("%s: %s (%s)", f.path, rw.Stats, note)
	}
	return rw.Stats, nil
}

// updateState returns the state entry for a file after its rewrite. A file left unchanged whose
// entry no longer matches it is one a killed run renamed before recording it (failpoint
// inline.after-rename): it is verified as bulk-fetch verifies a download (every line valid JSON
// of the entry's type, the same number of lines) and recorded; why says so. If it does not
// verify, the entry is left for bulk-fetch --verify to judge, and why says that.
func updateState(fs exportdir.FileState, rw *attachment.Rewrite, path string) (exportdir.FileState, string, error) {
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
