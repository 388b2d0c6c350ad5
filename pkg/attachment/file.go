package attachment

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"

	"github.com/bulkpipe/bulkpipe/pkg/atomicfile"
	"github.com/bulkpipe/bulkpipe/pkg/fhirjson"
	"github.com/bulkpipe/bulkpipe/pkg/ndjson"
)

// Check reads r as Stream would, without downloading or writing anything, and reports whether
// some line would change. It stops at the first such line, so Stats is complete only when work
// is false. An invalid target line is an *InvalidLineError.
func (in *Inliner) Check(ctx context.Context, name string, r io.Reader) (work bool, st Stats, err error) {
	sc := ndjson.NewScanner(r, in.maxLine)
	for sc.Scan() {
		if st.Lines%4096 == 0 && ctx.Err() != nil {
			return false, st, ctx.Err()
		}
		line := sc.Bytes()
		st.Lines++
		if !in.target(line) {
			continue
		}
		p, err := in.plan(line)
		if err != nil {
			return false, st, &InvalidLineError{Name: name, Line: sc.Line(), ResourceType: fhirjson.ResourceType(line)}
		}
		if len(p.tasks) > 0 {
			return true, st, nil
		}
		st.Add(p.stats)
	}
	if err := sc.Err(); err != nil {
		return false, st, fmt.Errorf("%s: %w", name, err)
	}
	return false, st, nil
}

// Rewrite is an in-place rewrite of one file, ready to be committed. Nothing at Path changes
// before Commit, so a tool can mark the steps of DESIGN.md §8 between it and its state update.
type Rewrite struct {
	Path    string
	Stats   Stats
	Changed bool // false: no line needed a change, the file is left as it is and Commit does nothing
	// Of the new file, when Changed: its size, SHA-256 (hex) and records, what
	// exportdir.FileState records. Lines is also set when not Changed.
	Size   int64
	SHA256 string
	Lines  int64
	Gzip   bool // the file is gzipped (by name or content), and so is its rewrite
	tmp    *atomicfile.File
}

// Commit renames the rewritten file over Path (synced first, then the directory), so a crash
// leaves the old file or the new one. It does nothing when nothing changed.
func (r *Rewrite) Commit() error {
	if r.tmp == nil {
		return nil
	}
	err := r.tmp.Commit()
	r.tmp = nil
	return err
}

// Abort removes the rewritten copy; it does nothing after Commit, so it can always be deferred.
func (r *Rewrite) Abort() error {
	if r.tmp == nil {
		return nil
	}
	err := r.tmp.Abort()
	r.tmp = nil
	return err
}

// InlineFile prepares the in-place rewrite of the NDJSON file at path (gzipped when its name ends
// in .gz or its content starts with the gzip magic). It first checks, without network or writes,
// whether any line needs a download: a file already inlined is read once and never rewritten, so
// a rerun changes nothing. Otherwise the rewrite goes to a temporary file beside path, with the
// mode of the original; the caller commits it (or aborts: path is untouched until Commit).
//
// bulk-fetch --inline calls it on a verified file, commits, and records Size, SHA256 and Lines in
// its state with Inlined set when Stats.Inlined+Stats.Already > 0.
func (in *Inliner) InlineFile(ctx context.Context, path string) (*Rewrite, error) {
	rw := &Rewrite{Path: path}
	r, gz, err := openNDJSON(path)
	if err != nil {
		return nil, err
	}
	work, st, err := in.Check(ctx, path, r)
	r.Close()
	if err != nil {
		return nil, err
	}
	rw.Gzip = gz
	if !work {
		rw.Stats, rw.Lines = st, st.Lines
		return rw, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if r, _, err = openNDJSON(path); err != nil {
		return nil, err
	}
	defer r.Close()
	tmp, err := atomicfile.CreateMode(path, fi.Mode().Perm())
	if err != nil {
		return nil, fmt.Errorf("rewrite %s: %w", path, err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Abort()
		}
	}()
	sum := &summer{h: sha256.New()}
	var w io.Writer = io.MultiWriter(tmp, sum)
	bw := bufio.NewWriterSize(w, 256<<10)
	var zw *gzip.Writer
	out := io.Writer(bw)
	if gz {
		zw = gzip.NewWriter(bw)
		out = zw
	}
	st, err = in.Stream(ctx, path, r, out)
	if err != nil {
		return nil, err
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return nil, fmt.Errorf("rewrite %s: %w", path, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("rewrite %s: %w", path, err)
	}
	ok = true
	rw.tmp = tmp
	rw.Stats, rw.Lines, rw.Changed = st, st.Lines, true
	rw.Size, rw.SHA256 = sum.n, hex.EncodeToString(sum.h.Sum(nil))
	return rw, nil
}

// summer hashes and counts what is written to the file.
type summer struct {
	h hash.Hash
	n int64
}

func (s *summer) Write(p []byte) (int, error) {
	s.n += int64(len(p))
	return s.h.Write(p)
}

// openNDJSON opens a file, gunzipping it when its name ends in .gz or it starts with the gzip
// magic (a server's gzip saved as is), as exportdir.OpenFile does; it also says which.
func openNDJSON(path string) (io.ReadCloser, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	br := bufio.NewReaderSize(f, 256<<10)
	magic, _ := br.Peek(2)
	if !strings.HasSuffix(path, ".gz") && string(magic) != "\x1f\x8b" {
		return readCloser{br, f.Close}, false, nil
	}
	zr, err := gzip.NewReader(br)
	if errors.Is(err, io.EOF) {
		return readCloser{br, f.Close}, true, nil
	}
	if err != nil {
		f.Close()
		return nil, false, fmt.Errorf("open %s: %w", path, err)
	}
	return readCloser{zr, f.Close}, true, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }
