package merge

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/bulkpipe/bulkpipe/pkg/atomicfile"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/ndjson"
)

// outDir writes the merged export folder (DESIGN.md §3) into a staging folder beside --dir, so that
// one rename makes it appear whole; until then --dir is untouched (§6: nothing appears at --dir unless
// the merge completes).
type outDir struct {
	final   string // --dir, absolute
	staging string // ".NAME.ndjson-merge-XXXX" in the same parent: rename(2) is atomic there
	force   bool
	maxFile int64

	cur, del, errs *outFile
	errKeys        map[[sha256.Size]byte]struct{} // error/ lines written (seenError)
	maxErrors      int                            // bound on errKeys; 0 is maxErrorKeys
	ordinals       map[string]int                 // next ordinal per item type and resource type
	files          []*outFile                     // closed, in the order written
	bytes          int64

	// pending DELETE entries of one resource type, written as one transaction Bundle per
	// bundleSize entries
	pendingType string
	pending     []string
	committed   bool
	unlock      func() error // the staging folder's lock, held for the run
}

// bundleSize caps the entries of one output deleted/ Bundle, so a line stays a few hundred KB.
const bundleSize = 1000

// createOutDir checks --dir and creates the staging folder beside it.
func createOutDir(out string, force bool) (*outDir, error) {
	final := absPath(out)
	if fi, err := os.Stat(final); err == nil {
		if !fi.IsDir() {
			return nil, fmt.Errorf("--dir %s exists and is not a folder", out)
		}
		if !force {
			empty, err := isEmptyDir(final)
			if err != nil {
				return nil, err
			}
			if !empty {
				return nil, fmt.Errorf("--dir %s exists and is not empty: use --force to replace it", out)
			}
		}
	}
	parent := filepath.Dir(final)
	if err := os.MkdirAll(parent, 0o777); err != nil {
		return nil, fmt.Errorf("create the parent of --dir: %w", err)
	}
	prefix := "." + filepath.Base(final) + ".ndjson-merge-"
	removeStaleStaging(parent, prefix)
	staging, err := os.MkdirTemp(parent, prefix)
	if err != nil {
		return nil, fmt.Errorf("create a staging folder beside --dir: %w", err)
	}
	// The lock tells a later run that this folder is in use; a run killed with -9 loses it, and
	// the next run removes what it left.
	unlock, err := exportdir.Lock(staging)
	if err == nil {
		err = os.Chmod(staging, 0o755)
	}
	if err != nil {
		os.RemoveAll(staging)
		return nil, err
	}
	return &outDir{final: final, staging: staging, force: force, ordinals: map[string]int{}, unlock: unlock}, nil
}

// removeStaleStaging removes the staging folders of earlier runs into the same --dir that were
// killed before they could clean up: those nobody holds the lock of. A run between creating its
// folder and locking it (microseconds) could lose its folder to a concurrent start; it then fails
// with an error, and nothing at --dir is touched.
func removeStaleStaging(parent, prefix string) {
	dirs, _ := filepath.Glob(filepath.Join(parent, prefix+"*"))
	for _, dir := range dirs {
		if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
			continue
		}
		unlock, err := exportdir.Lock(dir)
		if err != nil {
			continue // in use by a running merge, or not ours to judge
		}
		unlock()
		os.RemoveAll(dir)
	}
}

func isEmptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return false, err
}

// abort removes the staging folder; it is a no-op after commit.
func (d *outDir) abort() {
	if d.committed {
		return
	}
	if d.unlock != nil {
		d.unlock()
	}
	for _, f := range []*outFile{d.cur, d.del, d.errs} {
		if f != nil {
			f.f.Close()
		}
	}
	os.RemoveAll(d.staging)
}

// outFile is one NDJSON file being written, hashed as it goes for .bulkpipe/state.json.
type outFile struct {
	itemType     exportdir.ItemType
	resourceType string
	ordinal      int
	rel          string
	size         int64
	lines        int64
	sum          string

	f *os.File
	w *bufio.Writer
	h hash.Hash
}

// fileWriter writes an output file, hashing it and starting its writeback every writebackEvery bytes.
type fileWriter struct {
	f               *os.File
	h               hash.Hash
	written, synced int64
}

// writebackEvery is how many bytes are written to an output file between two starts of writeback.
const writebackEvery = 8 << 20

// Write hashes a large p in another goroutine while the write(2) copies it, as the two cost about
// the same; the buffer stays untouched until both are done.
func (fw *fileWriter) Write(p []byte) (int, error) {
	var hashed chan struct{}
	if len(p) >= 64<<10 {
		hashed = make(chan struct{})
		go func() {
			fw.h.Write(p)
			close(hashed)
		}()
	} else {
		fw.h.Write(p)
	}
	n, err := fw.f.Write(p)
	if hashed != nil {
		<-hashed
	}
	fw.written += int64(n)
	if fw.written-fw.synced >= writebackEvery {
		startWriteback(fw.f, fw.synced, fw.written-fw.synced)
		fw.synced = fw.written
	}
	return n, err
}

// open starts the next file of a type.
func (d *outDir) open(t exportdir.ItemType, resourceType string) (*outFile, error) {
	k := string(t) + "/" + resourceType
	ord := d.ordinals[k]
	d.ordinals[k] = ord + 1
	rel := exportdir.Rel(t, resourceType, ord)
	path := filepath.Join(d.staging, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(path), 0o777); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
	if err != nil {
		return nil, err
	}
	of := &outFile{itemType: t, resourceType: resourceType, ordinal: ord, rel: rel, f: f, h: sha256.New()}
	of.w = bufio.NewWriterSize(&fileWriter{f: f, h: of.h}, 1<<20)
	return of, nil
}

// write appends one line, starting the type's next file first when this one would pass --max-file-size.
func (d *outDir) write(of **outFile, t exportdir.ItemType, resourceType string, line []byte) error {
	f := *of
	if f != nil && (f.resourceType != resourceType || f.lines > 0 && f.size+int64(len(line))+1 > d.maxFile) {
		if err := d.closeFile(f); err != nil {
			return err
		}
		f, *of = nil, nil
	}
	if f == nil {
		var err error
		if f, err = d.open(t, resourceType); err != nil {
			return fmt.Errorf("write merged export: %w", err)
		}
		*of = f
	}
	if _, err := f.w.Write(line); err != nil {
		return fmt.Errorf("write %s: %w", f.rel, err)
	}
	if err := f.w.WriteByte('\n'); err != nil {
		return fmt.Errorf("write %s: %w", f.rel, err)
	}
	f.size += int64(len(line)) + 1
	f.lines++
	d.bytes += int64(len(line)) + 1
	return nil
}

// closeFile flushes and syncs a file: the rename that publishes the folder must not publish a file
// whose bytes are still in the page cache only.
func (d *outDir) closeFile(f *outFile) error {
	err := f.w.Flush()
	if err == nil {
		err = f.f.Sync()
	}
	if cerr := f.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", f.rel, err)
	}
	f.sum = hex.EncodeToString(f.h.Sum(nil))
	d.files = append(d.files, f)
	return nil
}

// resource writes the winning copy of a resource.
func (d *outDir) resource(typ, body []byte) error {
	return d.write(&d.cur, exportdir.ItemOutput, string(typ), body)
}

// deletion records a delete that no output resource contradicts. Deletes arrive in key order, so a
// Bundle holds deletes of one resource type, in id order.
func (d *outDir) deletion(typ, id []byte) error {
	if string(typ) != d.pendingType || len(d.pending) == bundleSize {
		if err := d.flushBundle(); err != nil {
			return err
		}
		d.pendingType = string(typ)
	}
	d.pending = append(d.pending, string(typ)+"/"+string(id))
	return nil
}

type bundleEntry struct {
	Request struct {
		Method string `json:"method"`
		URL    string `json:"url"`
	} `json:"request"`
}

// flushBundle writes the pending deletes as one transaction Bundle (the Bulk Data deleted format).
func (d *outDir) flushBundle() error {
	if len(d.pending) == 0 {
		return nil
	}
	b := struct {
		ResourceType string        `json:"resourceType"`
		Type         string        `json:"type"`
		Entry        []bundleEntry `json:"entry"`
	}{ResourceType: "Bundle", Type: "transaction", Entry: make([]bundleEntry, len(d.pending))}
	for i, url := range d.pending {
		b.Entry[i].Request.Method, b.Entry[i].Request.URL = "DELETE", url
	}
	line, err := json.Marshal(b)
	if err != nil {
		return err
	}
	d.pending = d.pending[:0]
	return d.write(&d.del, exportdir.ItemDeleted, "Bundle", line)
}

// endResources closes the resource and deleted files once the sort is drained.
func (d *outDir) endResources() error {
	if err := d.flushBundle(); err != nil {
		return err
	}
	for _, f := range []**outFile{&d.cur, &d.del} {
		if *f != nil {
			if err := d.closeFile(*f); err != nil {
				return err
			}
			*f = nil
		}
	}
	return nil
}

// maxErrorKeys bounds the set copyErrors remembers lines by: 32 bytes and a map entry each, about
// 20 MiB in all. Past it, further lines are kept even when they repeat one.
const maxErrorKeys = 1 << 18

// copyErrors appends the lines of a source's error/ file to error/OperationOutcome.NNN.ndjson and
// returns how many it wrote. OperationOutcomes have no identity to merge by, so they are kept as
// they are, but a line identical to one already written is written once: each slice of an export
// carries the server's same warning, and the merged folder would repeat it once per slice (issue
// 12.17).
func (d *outDir) copyErrors(ctx context.Context, f exportdir.File, maxLine int) (int64, error) {
	r, err := exportdir.OpenFile(f.Path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", f.Path, unwrapPathError(err))
	}
	defer r.Close()
	sc := ndjson.NewScanner(r, maxLine)
	var n int64
	for sc.Scan() {
		if !ndjson.Valid(sc.Bytes()) {
			return n, fmt.Errorf("%s:%d: invalid JSON", f.Path, sc.Line())
		}
		if d.seenError(sc.Bytes()) {
			continue
		}
		if err := d.write(&d.errs, exportdir.ItemError, "OperationOutcome", sc.Bytes()); err != nil {
			return n, err
		}
		if n++; n&0x3ff == 0 {
			if err := ctx.Err(); err != nil {
				return n, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return n, fmt.Errorf("%s: %w", f.Path, err)
	}
	return n, nil
}

// seenError reports a line already written to error/, and remembers it otherwise, while there is
// room (maxErrors, 0 meaning maxErrorKeys).
func (d *outDir) seenError(line []byte) bool {
	sum := sha256.Sum256(line)
	if _, ok := d.errKeys[sum]; ok {
		return true
	}
	limit := d.maxErrors
	if limit == 0 {
		limit = maxErrorKeys
	}
	if len(d.errKeys) < limit {
		if d.errKeys == nil {
			d.errKeys = map[[sha256.Size]byte]struct{}{}
		}
		d.errKeys[sum] = struct{}{}
	}
	return false
}

func (d *outDir) endErrors() error {
	if d.errs == nil {
		return nil
	}
	err := d.closeFile(d.errs)
	d.errs = nil
	return err
}

// commit publishes the staging folder as --dir. An empty --dir is replaced; a non-empty one
// (--force) is first moved aside, then removed once the new folder is in place.
func (d *outDir) commit() error {
	for _, sub := range []string{"", "deleted", "error", ".bulkpipe"} {
		if err := atomicfile.SyncDir(filepath.Join(d.staging, sub)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("sync the merged folder: %w", err)
		}
	}
	var old string
	if fi, err := os.Stat(d.final); err == nil && fi.IsDir() {
		empty, err := isEmptyDir(d.final)
		if err != nil {
			return err
		}
		switch {
		case empty:
			// os.Rename refuses an existing folder, even an empty one that rename(2) would replace;
			// Remove fails if the folder gained a file meanwhile.
			if err := os.Remove(d.final); err != nil {
				return fmt.Errorf("replace the empty --dir: %w", err)
			}
		case !d.force:
			return fmt.Errorf("--dir %s is no longer empty: use --force to replace it", d.final)
		default:
			old = d.staging + ".old"
			if err := os.Rename(d.final, old); err != nil {
				return fmt.Errorf("move the old --dir aside: %w", err)
			}
		}
	}
	if err := os.Rename(d.staging, d.final); err != nil {
		if old != "" {
			os.Rename(old, d.final)
		}
		return fmt.Errorf("move the merged folder into place: %w", err)
	}
	d.committed = true
	if d.unlock != nil {
		d.unlock() // the lock file stays in .bulkpipe/, empty, as bulk-fetch leaves it
	}
	if err := atomicfile.SyncDir(filepath.Dir(d.final)); err != nil {
		return fmt.Errorf("sync the parent of --dir: %w", err)
	}
	if old != "" {
		if err := os.RemoveAll(old); err != nil {
			return fmt.Errorf("merged into %s, but could not remove the old folder %s: %w", d.final, old, err)
		}
	}
	return nil
}

// checkOutOutsideSources refuses an --dir that is a source, holds one, or is inside one (issue
// 11.14): with --force the merged folder replaces --dir, and the sources would go with it; a
// folder inside a source would be read back as part of that source by the next merge. Paths are
// compared with symbolic links resolved, so another spelling of the same folder is caught too.
func checkOutOutsideSources(out string, sources []string) error {
	o := resolvePath(out)
	for _, src := range sources {
		if src == "-" {
			continue
		}
		s := resolvePath(src)
		switch {
		case o == s:
			return fmt.Errorf("--dir %s is the source %s: choose a folder outside the sources", out, src)
		case within(s, o):
			return fmt.Errorf("--dir %s holds the source %s, which replacing it would delete: choose a folder outside the sources", out, src)
		case within(o, s):
			return fmt.Errorf("--dir %s is inside the source %s: choose a folder outside the sources", out, src)
		}
	}
	return nil
}

// within reports whether path is inside dir (both absolute and clean).
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// resolvePath is p made absolute with symbolic links resolved as far as it exists: --dir
// usually does not exist yet, its parent does.
func resolvePath(p string) string {
	p = absPath(p)
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	parent := filepath.Dir(p)
	if parent == p {
		return p
	}
	return filepath.Join(resolvePath(parent), filepath.Base(p))
}
