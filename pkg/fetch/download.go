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

// fetch downloads one file and records the outcome.
func (e *engine) fetch(ctx context.Context, f *file) {
	rel := f.id.rel()
	fs, size, err := e.download(ctx, f)
	if err == nil {
		e.mu.Lock()
		err = e.putState(fs)
		if err == nil {
			e.downloaded++
		}
		e.mu.Unlock()
	}
	if err == nil {
		failpoint.Hit(FailAfterState)
		u, _, _ := f.link()
		err = e.logEvent(exportdir.EventDownloadComplete, exportdir.DownloadComplete{FileURL: fhirclient.Redact(u),
			FileSize: size, ResourceCount: fs.Lines}, false)
	}
	if e.o.On.Done != nil {
		e.o.On.Done(rel, err)
	}
	if err != nil {
		if ctx.Err() == nil {
			e.mu.Lock()
			e.failed = append(e.failed, err)
			e.mu.Unlock()
		}
		return
	}
	e.written(filepath.Join(e.o.Dir, filepath.FromSlash(fs.Name)))
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
	done bool     // the .part holds the whole file
	buf  []byte
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
	d.side = side
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

func (d *dl) buffer() []byte {
	if d.buf == nil {
		d.buf = make([]byte, chunk)
	}
	return d.buf
}

// restart empties the .part and forgets its sidecar.
func (d *dl) restart() error {
	d.v.reset()
	d.side, d.done = nil, false
	removeSidecar(d.e.o.Dir, d.rel)
	if err := d.pf.Truncate(0); err != nil {
		return fmt.Errorf("truncate %s: %w", d.part, err)
	}
	_, err := d.pf.Seek(0, io.SeekStart)
	return err
}

// errRestarted marks an attempt that ended by throwing the .part away (a 206 for another range
// than asked): the file starts over, and the attempt counts as a failure, so a server that
// always does this cannot keep the download going round forever.
var errRestarted = errors.New("the server answered for another range: starting over")

// loop requests the file until the .part holds all of it, or the failure is final.
func (d *dl) loop(ctx context.Context) error {
	e := d.e
	failures, refreshed := 0, false
	// furthest is the most of the file any attempt has had. Progress is measured against it, not
	// against the start of the attempt: a .part that cannot be resumed (no validator) restarts
	// at 0, and a body cut at the same point each time must not count as progress each time.
	furthest := d.v.size
	var last error
	for !d.done {
		if err := e.refreshIfExpired(ctx); err != nil {
			return d.fail(err)
		}
		u, gen, missing := d.f.link()
		if missing {
			return d.fail(fmt.Errorf("not in the manifest fetched again from %s", fhirclient.Redact(e.statusURL)))
		}
		if d.v.size > 0 && (d.side == nil || d.side.validator() == "") {
			// Nothing to put in If-Range: a resumed body could belong to another version.
			if err := d.restart(); err != nil {
				return err
			}
		}
		epoch, err := e.lim.acquire(ctx)
		if err != nil {
			return err
		}
		resp, err := d.request(ctx, u)
		err = stallError(attemptError(err))
		if err == nil {
			refreshed = false // the link works: a later expiry may refresh again
			if n, changed := e.lim.succeeded(); changed && e.o.On.Limit != nil {
				e.o.On.Limit(n, "the server keeps up")
			}
			err = stallError(d.receive(resp))
			e.lim.release()
			switch {
			case err == nil:
				continue
			case ctx.Err() != nil:
				return ctx.Err()
			case errors.Is(err, ErrVerify), isLocal(err):
				return err
			}
			if d.v.size > furthest {
				furthest = d.v.size
				failures = 0 // progress: a link that keeps breaking still gets the file
			}
			e.logError(u, err)
			last = err
		} else {
			e.lim.release()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			se, _ := errors.AsType[*fhirclient.StatusError](err)
			code := 0
			status := ""
			if se != nil {
				code, status = se.StatusCode, se.Status
			}
			e.logError(u, err)
			switch {
			case code == http.StatusRequestedRangeNotSatisfiable:
				if total, ok := unsatisfiedLength(se.Header); ok && total == d.v.size && d.v.size > 0 {
					// The .part was already whole (killed before the rename).
					if err := d.whole(); err != nil {
						return err
					}
					continue
				}
				// Starting over is one more attempt, not a free one: a server that answers 416 to
				// everything must not keep the download going round forever.
				if err := d.restart(); err != nil {
					return err
				}
			case code == http.StatusUnauthorized || code == http.StatusForbidden || code == http.StatusNotFound || code == http.StatusGone:
				// Expired links (DESIGN.md §2): fetch the manifest again, once per file; a 401
				// reaches here after fhirclient's one re-authorization.
				if e.generation() > gen {
					continue // another download already fetched new links
				}
				if refreshed || e.statusURL == "" {
					return d.fail(explainExpired(err, refreshed, e.statusURL))
				}
				refreshed = true
				if rerr := e.refresh(ctx, gen, fmt.Sprintf("%s answered %s", d.rel, status)); rerr != nil {
					return d.fail(fmt.Errorf("%w; then %w", err, rerr))
				}
				continue
			case code == http.StatusTooManyRequests:
				if n, changed := e.lim.throttled(epoch); changed && e.o.On.Limit != nil {
					e.o.On.Limit(n, "the server answered 429 Too Many Requests")
				}
			case code != 0 && !fhirclient.Retryable(code):
				return d.fail(err)
			case code == 0 && fhirclient.IsPermanent(err):
				return d.fail(err)
			}
			last = err
		}
		failures++
		if failures >= e.c.MaxAttempts() {
			return d.fail(fmt.Errorf("giving up after %d attempts in a row without progress (raise --retries): %w", failures, last))
		}
		var h http.Header
		if se, ok := errors.AsType[*fhirclient.StatusError](last); ok {
			h = se.Header
		}
		if e.o.On.Retry != nil {
			wait := "backoff"
			if ra := h.Get("Retry-After"); ra != "" {
				wait = "Retry-After " + ra
			}
			e.o.On.Retry(d.rel, failures, wait, oneLine(last.Error()))
		}
		if err := e.c.Wait(ctx, fhirclient.RouteFile, failures, h); err != nil {
			return err
		}
	}
	return nil
}

// attemptError is the error of one request as bulk-fetch reports it. File requests are sent one
// attempt at a time (Request.MaxAttempts 1: bulk-fetch sees every 429, to lower its parallelism,
// and waits through Client.Wait itself), so fhirclient's "giving up" wrapper would only mislead:
// the status error, or the transport error with the request, is what happened. Any other error
// (the --token-origin advice of a 401 from an untrusted origin, a refused redirect) is kept whole.
func attemptError(err error) error {
	if g, ok := errors.AsType[*fhirclient.GiveUpError](err); ok {
		return g.Last()
	}
	return err
}

// stallError names the flag that set the limit on an error of fhirclient's idle timeout.
func stallError(err error) error {
	if errors.Is(err, fhirclient.ErrStalled) || errors.Is(err, fhirclient.ErrNoResponse) {
		return fmt.Errorf("%w (--stall-timeout)", err)
	}
	return err
}

// fail names the file in a final error.
func (d *dl) fail(err error) error {
	return fmt.Errorf("%s: %w", filepath.Join(d.e.o.Dir, filepath.FromSlash(d.rel)), err)
}

// explainExpired says what was tried before giving up on a file link.
func explainExpired(err error, refreshed bool, statusURL string) error {
	switch {
	case refreshed:
		return fmt.Errorf("%w (still failing with the links of the manifest fetched again)", err)
	case statusURL == "":
		return fmt.Errorf("%w (links may have expired; without a status URL bulk-fetch cannot fetch new ones: give --status-url)", err)
	}
	return err
}

// request sends one GET for the file: a fresh one asking for gzip, or a resume with Range,
// If-Range and identity encoding (byte ranges count identity bytes, which the .part holds).
// The token goes along only when the manifest requires it, and fhirclient then checks the
// origin of every hop (DESIGN.md §2, token safety).
func (d *dl) request(ctx context.Context, u string) (*http.Response, error) {
	h := http.Header{"Accept": {"application/fhir+ndjson"}}
	if off := d.v.size; off > 0 && d.side != nil {
		h.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-")
		h.Set("If-Range", d.side.validator())
		h.Set("Accept-Encoding", "identity")
	} else {
		h.Set("Accept-Encoding", "gzip")
	}
	auth := fhirclient.AuthNever
	d.e.mu.Lock()
	if d.e.requiresToken {
		auth = fhirclient.AuthIfTrusted
	}
	d.e.mu.Unlock()
	// Close keeps a file's connection out of the pool once the file is done. A server or
	// middlebox that goes silent on a kept-alive connection after a complete answer would
	// otherwise hold whichever request reuses it (the next file, the final DELETE) for a whole
	// timeout; a download is long enough that a new connection per request costs nothing.
	return d.e.c.Do(ctx, &fhirclient.Request{Method: http.MethodGet, URL: u, Header: h,
		Route: fhirclient.RouteFile, Auth: auth, MaxAttempts: 1, Close: true, IdleTimeout: d.e.o.StallTimeout})
}

// receive streams one response into the .part. A body that stalls ends in a Read error
// (Request.IdleTimeout), which is retried like a cut one.
func (d *dl) receive(resp *http.Response) error {
	defer resp.Body.Close()
	enc := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding")))
	status := resp.StatusCode
	start, total, ranged := contentRange(resp.Header.Get("Content-Range"))
	if status == http.StatusPartialContent && ranged && start == 0 && d.v.size == 0 {
		// Some servers answer every GET with 206 and the whole range: that is a fresh start.
		status = http.StatusOK
		if total >= 0 && (enc == "" || enc == encIdentity) {
			resp.ContentLength = total
		}
	}
	switch status {
	case http.StatusPartialContent:
		if !ranged || start != d.v.size || d.v.size == 0 || (enc != "" && enc != encIdentity) {
			if err := d.restart(); err != nil {
				return err
			}
			return errRestarted
		}
		if total >= 0 && d.side.Length != total {
			d.side.Length = total
			if err := writeSidecar(d.e.o.Dir, d.rel, d.side); err != nil {
				return localError{err}
			}
		}
		if d.e.o.On.Start != nil {
			d.e.o.On.Start(d.info())
		}
	case http.StatusOK:
		if d.v.size > 0 {
			// A 200 to a Range request: the server ignores Range, or the file changed since
			// (If-Range). Either way this body is the whole file.
			d.e.warn(fmt.Sprintf("%s: the server sent the whole file instead of the rest: starting it over", d.rel))
			if err := d.restart(); err != nil {
				return localError{err}
			}
		}
		side := &sidecar{TransactionTime: d.e.txTime, ETag: resp.Header.Get("ETag"),
			LastModified: resp.Header.Get("Last-Modified"), Encoding: encIdentity, Length: -1}
		switch enc {
		case "", encIdentity:
			side.Length = resp.ContentLength
		case "gzip", "x-gzip":
			side.Encoding = encGzip
		default:
			return fmt.Errorf("GET %s: unsupported Content-Encoding %q", fhirclient.Redact(resp.Request.URL.String()), enc)
		}
		d.side = side
	default:
		return fmt.Errorf("GET %s: unexpected %s", fhirclient.Redact(resp.Request.URL.String()), resp.Status)
	}
	var r io.Reader = resp.Body
	if d.side.Encoding == encIdentity && d.v.size == 0 {
		// Some stores serve a .ndjson.gz as is, without Content-Encoding; JSON never starts with 0x1f.
		br := bufio.NewReaderSize(resp.Body, 512)
		if magic, _ := br.Peek(2); string(magic) == "\x1f\x8b" {
			d.side.Encoding, d.side.Length = encRawGzip, -1
		}
		r = br
	}
	if status == http.StatusOK {
		if err := writeSidecar(d.e.o.Dir, d.rel, d.side); err != nil {
			return localError{err}
		}
		if d.e.o.On.Start != nil {
			d.e.o.On.Start(d.info())
		}
	}
	if d.side.Encoding != encIdentity && status == http.StatusOK {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		r = zr
	}
	if err := d.copy(r); err != nil {
		return err
	}
	if d.side.Length >= 0 && d.v.size != d.side.Length {
		return fmt.Errorf("body ended at %d of %d bytes", d.v.size, d.side.Length)
	}
	d.done = true
	return nil
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
		if err := atomicfile.Rename(d.part, final); err != nil {
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
	if err := out.Commit(); err != nil {
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
