package fetch

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
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/atomicfile"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/failpoint"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
)

// Failpoints (BULKPIPE_CRASH, DESIGN.md §8) between the steps whose crash safety tests prove.
const (
	FailAfterPartWrite = "fetch.after-part-write" // a chunk is in the .part
	FailBeforeRename   = "fetch.before-rename"    // the .part is complete, verified and synced
	FailAfterRename    = "fetch.after-rename"     // the file has its name; state.json does not know it yet
	FailAfterState     = "fetch.after-state"      // state.json records the file
)

// chunk is the unit of reading, writing, hashing and verifying: one buffer per download in
// flight, so memory is parallel × (chunk + longest line), whatever the file sizes.
const chunk = 256 << 10

// fetch downloads one file and hands it to the committer, which records it; a failure is
// reported here. A failure caused by the run's end (an interrupt) is not the file's.
func (e *engine) fetch(ctx context.Context, f *file) {
	fs, size, err := e.download(ctx, f)
	if err == nil {
		e.commit.add(verifiedFile{f: f, fs: fs, size: size})
		return
	}
	if ctx.Err() != nil {
		if e.o.On.Done != nil {
			e.o.On.Done(f.id.rel(), err)
		}
		return
	}
	e.fail(f.id.rel(), err)
}

// download is one file's way from the server to its final name (DESIGN.md §3): NAME.part holds
// the decoded bytes, verified as they arrive; a cut body resumes with Range and If-Range; the
// file is renamed only when complete and verified.
// It returns the state entry and the decoded size.
func (e *engine) download(ctx context.Context, f *file) (exportdir.FileState, int64, error) {
	rel := f.id.rel()
	final := filepath.Join(e.o.Dir, filepath.FromSlash(rel))
	partPath := final + ".part"
	if err := exportdir.MkdirNoFollow(e.o.Dir, f.id.item.Dir()); err != nil {
		return exportdir.FileState{}, 0, err
	}
	pf, err := exportdir.OpenNoFollow(partPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return exportdir.FileState{}, 0, err
	}
	defer pf.Close()
	count, hasCount := f.countBound()
	d := &dl{e: e, f: f, rel: rel, pf: pf, part: partPath,
		v: newVerifier(partPath, f.id.rtype, count, hasCount, e.o.MaxLine)}
	defer d.release()
	if err := d.resumePoint(); err != nil {
		return exportdir.FileState{}, 0, err
	}
	u, _, _ := f.link()
	if err := e.logEvent(exportdir.EventDownloadRequest, exportdir.DownloadRequest{FileURL: fhirclient.Redact(u),
		ItemType: string(f.id.item), ResourceType: f.id.rtype}, false); err != nil {
		return exportdir.FileState{}, 0, err
	}
	err = d.loop(ctx)
	if err == nil {
		err = d.v.finish()
	}
	if err == nil && f.item.HasCount && !hasCount && d.v.lines != f.item.Count {
		e.warn(fmt.Sprintf("%s: %d resources, but the manifest's count is %d: kept anyway (servers copy a failed file's count into its error item)",
			final, d.v.lines, f.item.Count))
	}
	if errors.Is(err, errOverflow) {
		pf.Close()
		os.Remove(partPath)
		removeSidecar(e.o.Dir, rel)
		return exportdir.FileState{}, 0, fmt.Errorf("%w (download stopped there; the .part is deleted)", err)
	}
	if errors.Is(err, ErrVerify) {
		return exportdir.FileState{}, 0, fmt.Errorf("%w (the .part is kept for inspection and never renamed; a rerun downloads it again)", err)
	}
	if err != nil {
		return exportdir.FileState{}, 0, err
	}
	if err := pf.Sync(); err != nil {
		return exportdir.FileState{}, 0, fmt.Errorf("sync %s: %w", partPath, err)
	}
	fs, err := d.finalize(ctx, final)
	return fs, d.v.size, err
}

// dl is the state of one download.
type dl struct {
	e    *engine
	f    *file
	rel  string
	pf   *os.File
	part string
	v    *verifier
	side *sidecar // nil until a response started the .part
	// saved says the sidecar on disk is side. A response's sidecar is written only when the
	// .part is about to hold part of its body: a file that arrives whole in its first chunk,
	// as small files do, never needs one, and skips its two syncs and its descriptors.
	saved bool
	done  bool // the .part holds the whole file
	buf   []byte

	// The try under way (see loop).
	gen       int  // generation of the link it uses
	epoch     int  // limiter epoch its slot was granted in
	refreshed bool // new links were fetched for this file since its last 2xx
}

func (d *dl) info() FileInfo {
	u, _, _ := d.f.link()
	size := int64(-1)
	if d.side != nil {
		size = d.side.Length
	}
	return FileInfo{Rel: d.rel, Path: filepath.Join(d.e.o.Dir, filepath.FromSlash(d.rel)), ItemType: d.f.id.item,
		ResourceType: d.f.id.rtype, Ordinal: d.f.id.ordinal, URL: fhirclient.Redact(u), Size: size, Offset: d.v.size,
		Log: func(id string, detail any) error { return d.e.logEvent(id, detail, false) }}
}

// resumePoint decides where an existing .part continues: it is re-scanned (its lines verified
// and hashed, as if just downloaded) and kept only when its sidecar says which response it came
// from and that response can be resumed; otherwise the download starts over.
func (d *dl) resumePoint() error {
	st, err := d.pf.Stat()
	if err != nil {
		return err
	}
	side, ok := readSidecar(d.e.o.Dir, d.rel)
	if st.Size() == 0 || !ok || side.TransactionTime != d.e.txTime {
		return d.restart()
	}
	if side.Length >= 0 && st.Size() > side.Length {
		d.e.warn(fmt.Sprintf("%s is longer than the file it is part of: starting over", d.part))
		return d.restart()
	}
	if err := d.scanPart(); err != nil {
		if !errors.Is(err, ErrVerify) {
			return err
		}
		d.e.warn(fmt.Sprintf("discarding the partial download: %v", err))
		return d.restart()
	}
	d.side, d.saved = side, true
	if side.Length >= 0 && d.v.size == side.Length {
		// Whole already (killed before the rename): no request at all, if it verifies.
		return d.whole()
	}
	if side.validator() == "" {
		// Nothing to send in If-Range: a resumed body could belong to another version.
		return d.restart()
	}
	return nil
}

// whole marks the .part complete if it passes the end-of-file checks (last line, count);
// otherwise it is downloaded again, as a server may since have fixed what it sent.
func (d *dl) whole() error {
	if err := d.v.finish(); err != nil {
		d.e.warn(fmt.Sprintf("discarding the downloaded file: %v", err))
		return d.restart()
	}
	d.done = true
	return nil
}

// scanPart feeds the .part's bytes to the verifier, leaving the file offset at its end.
func (d *dl) scanPart() error {
	if _, err := d.pf.Seek(0, io.SeekStart); err != nil {
		return err
	}
	buf := d.buffer()
	for {
		n, err := d.pf.Read(buf)
		if n > 0 {
			if verr := d.v.write(buf[:n]); verr != nil {
				return verr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", d.part, err)
		}
	}
}

// buffer is the download's chunk buffer, taken from the engine's pool on first use and given
// back by release: a manifest of tiny files would otherwise allocate (and clear, and collect)
// a chunk per file.
func (d *dl) buffer() []byte {
	if d.buf == nil {
		if b, ok := d.e.bufs.Get().(*[]byte); ok {
			d.buf = *b
		} else {
			d.buf = make([]byte, chunk)
		}
	}
	return d.buf
}

// release gives the buffer back; the download must not use it afterwards.
func (d *dl) release() {
	if d.buf != nil {
		buf := d.buf
		d.buf = nil
		d.e.bufs.Put(&buf)
	}
}

// restart empties the .part and forgets its sidecar.
func (d *dl) restart() error {
	d.v.reset()
	d.side, d.done, d.saved = nil, false, false
	removeSidecar(d.e.o.Dir, d.rel)
	if err := d.pf.Truncate(0); err != nil {
		return fmt.Errorf("truncate %s: %w", d.part, err)
	}
	_, err := d.pf.Seek(0, io.SeekStart)
	return err
}

// errRestarted marks an attempt that ended by throwing the .part away (a 206 for another range
// than asked, a 416): the file starts over, and the attempt counts as a failure, so a server that
// always does this cannot keep the download going round forever.
var errRestarted = errors.New("the server answered for another range: starting over")

// receive is the download's Load consumer: it streams one answer into the .part. A body that
// stalls ends in a Read error (Request.IdleTimeout), which Load retries like a cut one.
func (d *dl) receive(resp *http.Response) error {
	if resp.StatusCode == http.StatusRequestedRangeNotSatisfiable {
		return consumerError(d.unsatisfiable(resp))
	}
	d.answered()
	r, err := d.begin(resp)
	if err == nil {
		err = d.copy(r)
	}
	if err == nil && d.side.Length >= 0 && d.v.size != d.side.Length {
		err = fmt.Errorf("body ended at %d of %d bytes", d.v.size, d.side.Length)
	}
	d.done = err == nil
	return consumerError(err)
}

// consumerError is how Load is to take a failure of receive: verification failures and errors
// of the local disk end the download (another try would only repeat them); anything else is
// retried.
func consumerError(err error) error {
	if errors.Is(err, ErrVerify) || isLocal(err) {
		return fhirclient.Permanent(err)
	}
	return err
}

// answered notes a 2xx: the link works, so a later expiry may fetch new links again, and the
// server keeps up, which may raise the parallelism.
func (d *dl) answered() {
	d.refreshed = false
	if n, changed := d.e.lim.succeeded(); changed && d.e.o.On.Limit != nil {
		d.e.o.On.Limit(n, "the server keeps up")
	}
}

// unsatisfiable takes a 416: the .part was whole already when the length the server gives is its
// size (killed before the rename); otherwise the file starts over, and that is one more failed
// attempt, not a free one: a server that answers 416 to everything must not keep the download
// going round forever.
func (d *dl) unsatisfiable(resp *http.Response) error {
	if total, ok := unsatisfiedLength(resp.Header); ok && total == d.v.size && d.v.size > 0 {
		if err := d.whole(); err != nil {
			return localError{err}
		}
		return nil
	}
	if err := d.restart(); err != nil {
		return localError{err}
	}
	return fmt.Errorf("GET %s: %s: %w", fhirclient.Redact(resp.Request.URL.String()), resp.Status, errRestarted)
}

// begin checks that an answer continues the .part (206 for the range asked) or replaces it
// (200), records which response the .part comes from, and returns the reader of its decoded
// bytes.
func (d *dl) begin(resp *http.Response) (io.Reader, error) {
	enc := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding")))
	start, total, ranged := contentRange(resp.Header.Get("Content-Range"))
	switch {
	case resp.StatusCode == http.StatusPartialContent && ranged && start == 0 && d.v.size == 0:
		// Some servers answer every GET with 206 and the whole range: that is a fresh start.
		if total >= 0 && (enc == "" || enc == encIdentity) {
			resp.ContentLength = total
		}
		return d.fresh(resp, enc)
	case resp.StatusCode == http.StatusPartialContent:
		return resp.Body, d.resume(enc, start, total, ranged)
	case resp.StatusCode == http.StatusOK:
		return d.fresh(resp, enc)
	}
	return nil, fmt.Errorf("GET %s: unexpected %s", fhirclient.Redact(resp.Request.URL.String()), resp.Status)
}

// resume checks a 206: it must start where the .part ends, in identity encoding; the sidecar
// learns the total length when the server gives it.
func (d *dl) resume(enc string, start, total int64, ranged bool) error {
	if !ranged || start != d.v.size || d.v.size == 0 || (enc != "" && enc != encIdentity) {
		if err := d.restart(); err != nil {
			return err
		}
		return errRestarted
	}
	if total >= 0 && d.side.Length != total {
		d.side.Length, d.saved = total, false
		if err := d.save(); err != nil {
			return err
		}
	}
	d.started()
	return nil
}

// fresh starts the .part over with a whole file's answer and writes the sidecar that lets a cut
// body resume. It returns the reader of the decoded bytes.
func (d *dl) fresh(resp *http.Response, enc string) (io.Reader, error) {
	if d.v.size > 0 {
		// A 200 to a Range request: the server ignores Range, or the file changed since
		// (If-Range). Either way this body is the whole file.
		d.e.warn(fmt.Sprintf("%s: the server sent the whole file instead of the rest: starting it over", d.rel))
		if err := d.restart(); err != nil {
			return nil, localError{err}
		}
	}
	d.side = &sidecar{TransactionTime: d.e.txTime, ETag: resp.Header.Get("ETag"),
		LastModified: resp.Header.Get("Last-Modified"), Encoding: encIdentity, Length: -1}
	switch enc {
	case "", encIdentity:
		d.side.Length = resp.ContentLength
	case "gzip", "x-gzip":
		d.side.Encoding = encGzip
	default:
		return nil, fmt.Errorf("GET %s: unsupported Content-Encoding %q", fhirclient.Redact(resp.Request.URL.String()), enc)
	}
	var r io.Reader = resp.Body
	if d.side.Encoding == encIdentity {
		// Some stores serve a .ndjson.gz as is, without Content-Encoding; JSON never starts with 0x1f.
		br := bufio.NewReaderSize(resp.Body, 512)
		if magic, _ := br.Peek(2); string(magic) == "\x1f\x8b" {
			d.side.Encoding, d.side.Length = encRawGzip, -1
		}
		r = br
	}
	d.saved = false
	d.started()
	if d.side.Encoding == encIdentity {
		return r, nil
	}
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	return zr, nil
}

// save writes the sidecar unless it is on disk already: the .part is about to hold bytes that a
// later run could resume from.
func (d *dl) save() error {
	if d.saved {
		return nil
	}
	if err := writeSidecar(d.e.o.Dir, d.rel, d.side); err != nil {
		return localError{err}
	}
	d.saved = true
	return nil
}

// started reports a response that starts filling the .part.
func (d *dl) started() {
	if d.e.o.On.Start != nil {
		d.e.o.On.Start(d.info())
	}
}

// flushEvery is how long received bytes may wait in the buffer for it to fill before they are
// written to the .part anyway: a slow body reaches the disk within seconds, so a kill -9 loses
// little of it (DESIGN.md §8).
const flushEvery = time.Second

// copy moves r into the .part a chunk at a time: write, then verify and hash the same bytes. A
// chunk is written when full, or when flushEvery has passed since it was started.
func (d *dl) copy(r io.Reader) error {
	buf := d.buffer()
	every := d.e.o.flushEvery
	if every <= 0 {
		every = flushEvery
	}
	for {
		n, rerr := fillFor(r, buf, every)
		if n > 0 && rerr != io.EOF {
			// More is to come (or the body was cut): a later run resumes after these bytes
			// only with the sidecar.
			if err := d.save(); err != nil {
				return err
			}
		}
		if n > 0 {
			if _, err := d.pf.Write(buf[:n]); err != nil {
				return localError{fmt.Errorf("write %s: %w", d.part, err)}
			}
			failpoint.Hit(FailAfterPartWrite)
			lines := d.v.lines
			verr := d.v.write(buf[:n])
			if d.e.o.On.Progress != nil {
				d.e.o.On.Progress(d.rel, int64(n), d.v.lines-lines)
			}
			if verr != nil {
				return verr
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// fill reads until buf is full or the reader fails; io.EOF means a clean end.
func fill(r io.Reader, buf []byte) (int, error) {
	return fillFor(r, buf, 0)
}

// fillFor is fill that also returns what it has once every has passed (0: never), checked after
// each read.
func fillFor(r io.Reader, buf []byte, every time.Duration) (int, error) {
	n := 0
	var start time.Time
	if every > 0 {
		start = time.Now()
	}
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
		if every > 0 && n > 0 && time.Since(start) >= every {
			return n, nil
		}
	}
	return n, nil
}

// localError is a failure of the local disk, which retrying the download does not cure.
type localError struct{ err error }

func (e localError) Error() string { return e.err.Error() }
func (e localError) Unwrap() error { return e.err }

func isLocal(err error) bool {
	_, ok := errors.AsType[localError](err)
	return ok
}

// finalize gives a verified .part its name: a rename, or, with --gzip or a PostVerify hook, a
// rewrite through a temporary file that replaces the .part. It returns the state entry.
func (d *dl) finalize(ctx context.Context, final string) (exportdir.FileState, error) {
	e := d.e
	fs := exportdir.FileState{Name: d.rel, ItemType: d.f.id.item, ResourceType: d.f.id.rtype, Ordinal: d.f.id.ordinal,
		Size: d.v.size, SHA256: d.v.digest(), Lines: int(d.v.lines)}
	if e.o.PostVerify == nil && !e.o.Gzip {
		d.pf.Close()
		failpoint.Hit(FailBeforeRename)
		// The committer syncs the folder, once for the files renamed meanwhile.
		if err := os.Rename(d.part, final); err != nil {
			return fs, localError{err}
		}
		failpoint.Hit(FailAfterRename)
		removeSidecar(e.o.Dir, d.rel)
		return fs, nil
	}
	if e.o.Gzip {
		final += ".gz"
		fs.Name += ".gz"
	}
	if _, err := d.pf.Seek(0, io.SeekStart); err != nil {
		return fs, err
	}
	out, err := atomicfile.Create(final)
	if err != nil {
		return fs, localError{err}
	}
	defer out.Abort()
	cw := &countingHash{w: bufio.NewWriterSize(out, chunk), h: sha256.New()}
	var w io.Writer = cw
	var zw *gzip.Writer
	if e.o.Gzip {
		zw = gzip.NewWriter(cw)
		w = zw
	}
	in := bufio.NewReaderSize(d.pf, chunk)
	if e.o.PostVerify != nil {
		inlined, err := e.o.PostVerify(ctx, d.info(), in, w)
		if err != nil {
			return fs, fmt.Errorf("%s: %w", d.part, err)
		}
		fs.Inlined = inlined
	} else if _, err := io.Copy(w, in); err != nil {
		return fs, localError{err}
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return fs, localError{err}
		}
	}
	if err := cw.w.(*bufio.Writer).Flush(); err != nil {
		return fs, localError{err}
	}
	fs.Size, fs.SHA256 = cw.n, hex.EncodeToString(cw.h.Sum(nil))
	failpoint.Hit(FailBeforeRename)
	if err := out.CommitNoDirSync(); err != nil {
		return fs, localError{err}
	}
	failpoint.Hit(FailAfterRename)
	d.pf.Close()
	os.Remove(d.part)
	removeSidecar(e.o.Dir, d.rel)
	return fs, nil
}

// countingHash hashes and counts what it writes.
type countingHash struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (c *countingHash) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	return n, err
}

// contentRange parses "bytes START-END/TOTAL" (TOTAL may be "*": -1).
func contentRange(v string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimSpace(v), "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	s, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(s, 10, 64)
	if err != nil || start < 0 {
		return 0, 0, false
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil || total < 0 {
			return 0, 0, false
		}
	}
	return start, total, true
}

// unsatisfiedLength reads the "bytes */TOTAL" of a 416.
func unsatisfiedLength(h http.Header) (int64, bool) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(h.Get("Content-Range")), "bytes */")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(rest, 10, 64)
	return n, err == nil && n >= 0
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// hashFile returns the hex SHA-256 and size of a file.
func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// checkFile verifies a file already at its final name (decoding .gz) against its manifest entry
// and returns its state entry: size and SHA-256 of the bytes on disk, as state.json records them.
func checkFile(path, name string, f *file, maxLine int) (exportdir.FileState, error) {
	fs := exportdir.FileState{Name: name, ItemType: f.id.item, ResourceType: f.id.rtype, Ordinal: f.id.ordinal}
	fh, err := os.Open(path)
	if err != nil {
		return fs, err
	}
	defer fh.Close()
	raw := &countingHash{w: io.Discard, h: sha256.New()}
	var r io.Reader = io.TeeReader(fh, raw)
	if strings.HasSuffix(name, ".gz") {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return fs, fmt.Errorf("%s: %w", path, err)
		}
		r = zr
	}
	count, hasCount := f.countBound()
	v := newVerifier(path, f.id.rtype, count, hasCount, maxLine)
	buf := make([]byte, chunk)
	for {
		n, err := fill(r, buf)
		if n > 0 {
			if verr := v.write(buf[:n]); verr != nil {
				return fs, verr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fs, fmt.Errorf("read %s: %w", path, err)
		}
	}
	if err := v.finish(); err != nil {
		return fs, err
	}
	io.Copy(raw, fh) // a gzip member may end before the file does
	fs.Size, fs.SHA256, fs.Lines = raw.n, hex.EncodeToString(raw.h.Sum(nil)), int(v.lines)
	return fs, nil
}
