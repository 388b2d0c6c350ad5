package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/atomicfile"
	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
)

// Defaults of Options.
const (
	DefaultParallel     = 5
	DefaultStallTimeout = 2 * time.Minute
)

// The descriptors a run holds: FixedDescriptors whatever its downloads (12 measured: stdio, the
// runtime's poller, the manifest, the folder's lock, the log, the state journal, the folder it
// syncs; the rest is room), and DescriptorsPerDownload for each download in flight, its socket
// and its .part.
const (
	FixedDescriptors       = 16
	DescriptorsPerDownload = 2
)

// ParallelWithin is the most downloads a run can keep in flight with at most nofile open
// descriptors when each holds perDownload of them (DescriptorsPerDownload, and the connections
// of its attachments while it inlines them); below 1, a run cannot work at all.
func ParallelWithin(nofile, perDownload int) int { return (nofile - FixedDescriptors) / perDownload }

// ErrOtherExport is wrapped by the error Run returns when DIR holds another export's files and
// Options.NewExport is not set (DESIGN.md §3).
var ErrOtherExport = errors.New("the folder holds another export")

// ErrIncomplete is wrapped by the error Run returns when the input ended on a manifest page that
// links to a next one: the export is not all there, so it is neither completed nor deleted.
var ErrIncomplete = errors.New("the manifest is incomplete")

// Options configure Run. Dir and Client are required.
type Options struct {
	Dir    string             // the export folder, created if needed
	Client *fhirclient.Client // talks to the FHIR server and the file origins

	// StatusURL overrides the statusUrl of the _bulkpipe context (--status-url). Without one,
	// expired links cannot be refreshed and the export cannot be deleted.
	StatusURL string

	Parallel     int           // downloads in flight at most (0 = DefaultParallel)
	StallTimeout time.Duration // a body silent this long is abandoned and resumed (0 = DefaultStallTimeout)
	MaxLine      int           // longest NDJSON line accepted (0 = ndjson.DefaultMaxLine)
	Verify       bool          // re-hash files state.json lists before trusting them
	NewExport    bool          // replace another export's files in Dir instead of refusing
	NoDelete     bool          // keep the export on the server when done
	Gzip         bool          // keep files as .ndjson.gz (compressed after verification)
	LogFrom      string        // copy this export's events from this log (--log, BULK_LOG)
	Version      string        // recorded as _clientVersion in a synthesized kickoff event
	// FHIRBase is the FHIR base the user gave, or a tool recorded from what the user gave; a
	// synthesized kickoff event records it, so that readers of the log (ndjson-inline) never
	// take a base from its exportUrl, which may be the manifest's request (DESIGN.md §2). ""
	// when the run knows none.
	FHIRBase string

	// PostVerify, when set, rewrites each verified file on its way to its final name: it reads
	// the decoded, verified NDJSON from r and writes what is to be kept to w (before --gzip
	// compression). It is the seam for `bulk-fetch --inline` (DESIGN.md §5): inlined reports that
	// the file changed, which state.json records so that later runs never fetch over it.
	PostVerify func(ctx context.Context, f FileInfo, r io.Reader, w io.Writer) (inlined bool, err error)

	Now  func() time.Time // nil = time.Now
	Poll bulk.PollOptions // for fetching the manifest again when links expire
	On   Callbacks        // progress and diagnostics; nil members are silent

	flushEvery time.Duration // tests shorten the package's flushEvery
}

// Callbacks report what Run does; tools render them on stderr and stdout (STYLE.md §9). They
// may be called from several goroutines at once.
type Callbacks struct {
	Warn     func(msg string)                                          // something the user should know; the run goes on
	Start    func(f FileInfo)                                          // a response starts filling the .part (resumed when f.Offset > 0)
	Progress func(rel string, bytes, resources int64)                  // bytes and resources received since the last call
	Done     func(rel string, err error)                               // a download ended
	Written  func(path string)                                         // a data file of the export is verified on disk (stdout)
	Limit    func(parallel int, reason string)                         // the number of parallel downloads changed
	Retry    func(rel string, attempt int, wait string, reason string) // a download will be tried again
}

// FileInfo describes one file of the export.
type FileInfo struct {
	Rel          string             // path inside Dir: "Patient.000.ndjson", "deleted/Bundle.000.ndjson"
	Path         string             // Dir joined with Rel (without .gz)
	ItemType     exportdir.ItemType // output, deleted or error
	ResourceType string             // of every line
	Ordinal      int
	URL          string // redacted
	Size         int64  // the whole file's decoded size when known, else -1
	Offset       int64  // bytes already in the .part when the download (re)starts
	// Log appends an event of this export to DIR/log.ndjson, for a PostVerify step that has its
	// own events (the attachment downloads of --inline). Safe for concurrent use.
	Log func(eventID string, detail any) error
}

// Issue is one issue of an OperationOutcome the server put in error/.
type Issue struct {
	File string // path of the error file
	fhirclient.Issue
}

// Text is the issue as tools print it: diagnostics, else details.text, else code.
func (i Issue) Text() string {
	switch {
	case i.Diagnostics != "":
		return i.Diagnostics
	case i.DetailsText != "":
		return i.DetailsText
	}
	return i.Code
}

// Fatal reports severity fatal or error.
func (i Issue) Fatal() bool { return i.Severity == "fatal" || i.Severity == "error" }

// Result is what a complete run leaves.
type Result struct {
	ExportID   string
	Files      int   // data files of the export, all verified
	Resources  int64 // lines in them
	Bytes      int64 // bytes on disk (compressed with Gzip)
	Downloaded int   // files fetched by this run (the rest were verified by earlier runs)
	Issues     []Issue
	Deleted    bool // the export was deleted on the server
}

// file is one manifest entry to download. Its URL changes when expired links are refreshed.
type file struct {
	id   identity
	item bulk.Item

	mu      sync.Mutex
	url     string
	gen     int  // link generation of url
	missing bool // not in the manifest fetched again
}

// countBound is the line count the file is verified against, if any. An error file's count is
// only reported: a reference server copies a failed output file's entry, count included, into
// its error item, and the reference client checks counts of output files only. Refusing the file
// would hide the server's account of the failure, and every rerun would fail the same way.
func (f *file) countBound() (int64, bool) {
	if f.id.item == exportdir.ItemError {
		return 0, false
	}
	return f.item.Count, f.item.HasCount
}

func (f *file) link() (string, int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.url, f.gen, f.missing
}

// engine is one run of Run.
type engine struct {
	o   Options
	c   *fhirclient.Client
	lim *limiter
	now func() time.Time
	t0  time.Time

	// Set by the first page.
	exportID, statusURL, txTime, exportURL string
	base                                   *url.URL // for relative file URLs
	log                                    *exportdir.LogWriter
	commit                                 *committer // records what the workers verified
	bufs                                   sync.Pool  // chunk buffers: at most Parallel in use

	mu sync.Mutex // guards what follows
	// state is state.json and its journal: a verified file costs one synced line, not a
	// rewrite of the whole state (O(n²) bytes over a manifest of n files).
	state         *exportdir.StateJournal
	byID          map[identity]string // the name state records for each identity
	pages         [][]byte
	num           numberer
	files         []*file
	failed        []error
	next          string // link next of the last page read
	requiresToken bool
	downloaded    int

	rmu     sync.Mutex // serializes refreshes
	gen     int        // link generation
	expires time.Time  // when the current links stop working; zero = unknown
}

// Run downloads every file of the manifest pages pr yields into o.Dir, verified and resumable
// (DESIGN.md §3), starting each page's files as soon as the page arrives. When every file is on
// disk it logs export_complete, reads the issues of error/ into the Result and deletes the export
// on the server (unless o.NoDelete). A file that cannot be downloaded or verified does not stop
// the others: Run waits for them and then returns an error naming the first failure, with a
// Result of what is on disk, the issues of error/ included, for the tool to print.
func Run(ctx context.Context, o Options, pr *PageReader) (*Result, error) {
	if o.Dir == "" || o.Client == nil {
		return nil, errors.New("fetch: Options.Dir and Options.Client are required")
	}
	if o.Parallel <= 0 {
		o.Parallel = DefaultParallel
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = DefaultStallTimeout
	}
	if o.Poll.ReadTimeout <= 0 {
		// A manifest refresh mid-download is bounded like a file: a status URL that stops
		// answering must not hold the downloads waiting on it.
		o.Poll.ReadTimeout = o.StallTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	// A manifest that will be refused is refused before the folder is created or claimed, so
	// the next, correct export into it needs no --new-export.
	first, err := pr.Peek()
	if err != nil {
		return nil, err
	}
	if err := checkPage(first, o.StatusURL, o.Client); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create export folder: %w", err)
	}
	unlock, err := exportdir.Lock(o.Dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	removeTemps(o.Dir)
	state, err := exportdir.OpenStateJournal(o.Dir)
	if err != nil {
		return nil, err
	}
	e := &engine{o: o, c: o.Client, lim: newLimiter(o.Parallel), now: o.Now, state: state, num: numberer{}}
	e.indexState()
	e.t0 = e.now()
	defer func() {
		// After a failure or an interruption too: the files recorded so far are in the
		// journal already, and the snapshot gathers them for readers that only know it.
		state.Close()
		if e.log != nil {
			e.log.Close()
		}
	}()
	return e.run(ctx, pr)
}

type pageOrErr struct {
	p   *Page
	err error
}

func (e *engine) run(ctx context.Context, pr *PageReader) (*Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pages := make(chan pageOrErr)
	go func() {
		for {
			p, err := pr.Next()
			select {
			case pages <- pageOrErr{p, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	// A fixed pool of workers takes the files in manifest order (STYLE.md §17): a file's .part
	// is opened and its download_request logged only when a worker starts it, so open files stay
	// at Parallel whatever the manifest holds. The limiter still bounds the requests in flight
	// below that, halving on a 429.
	q := newQueue()
	defer context.AfterFunc(ctx, q.abort)()
	// The committer outlives the workers: what they verified is recorded even when the run
	// is interrupted. Deferred calls run after wg.Wait on every return below.
	e.commit = e.startCommitter()
	defer e.commit.close()
	var wg sync.WaitGroup
	for range e.o.Parallel {
		wg.Go(func() {
			for f, ok := q.pop(); ok && ctx.Err() == nil; f, ok = q.pop() {
				e.fetch(ctx, f)
			}
		})
	}
	abort := func(err error) (*Result, error) {
		cancel()
		wg.Wait()
		return nil, err
	}
	for first := true; ; first = false {
		var pe pageOrErr
		select {
		case pe = <-pages:
		case <-ctx.Done():
			return abort(ctx.Err())
		}
		if errors.Is(pe.err, io.EOF) {
			break
		}
		if pe.err != nil {
			return abort(pe.err)
		}
		todo, err := e.addPage(pe.p, first)
		if err != nil {
			return abort(err)
		}
		q.push(todo)
	}
	q.close()
	wg.Wait()
	e.commit.close()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return e.finish(ctx)
}

// addPage takes one manifest page: the first establishes the export; each lists files, of which
// those not yet verified are returned for download.
func (e *engine) addPage(p *Page, first bool) ([]*file, error) {
	statusURL := pageStatusURL(p, e.o.StatusURL)
	m := p.Manifest
	if first {
		if err := e.begin(p, statusURL); err != nil {
			return nil, err
		}
	} else {
		if m.TransactionTime != e.txTime {
			return nil, fmt.Errorf("%s: manifest page has transactionTime %q, but the first page had %q: pages of two exports in one input", p.where(), m.TransactionTime, e.txTime)
		}
		if statusURL != "" && e.statusURL != "" && statusURL != e.statusURL {
			return nil, fmt.Errorf("%s: manifest page is from %s, but the first page was from %s", p.where(), fhirclient.Redact(statusURL), fhirclient.Redact(e.statusURL))
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, raw := range e.pages {
		if bytes.Equal(raw, p.Raw) {
			return nil, nil // the same page twice (bulk-poll run again into the same file)
		}
	}
	warned := false
	entries, err := e.num.entries(m, e.base, func(ref string) {
		if !warned {
			e.warn(fmt.Sprintf("manifest has relative file URLs (such as %q): resolving them against %s", ref, fhirclient.Redact(e.base.String())))
			warned = true
		}
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.where(), err)
	}
	e.pages = append(e.pages, p.Raw)
	merged, err := bulk.MergePages(e.pages)
	if err != nil {
		return nil, err
	}
	if err := writeIfChanged(filepath.Join(e.o.Dir, "manifest.json"), append(merged, '\n')); err != nil {
		return nil, err
	}
	e.next = m.Next
	e.requiresToken = e.requiresToken || m.RequiresAccessToken
	if t, err := http.ParseTime(p.Context.Expires); err == nil && (e.expires.IsZero() || t.Before(e.expires)) {
		e.expires = t
	}
	var todo []*file
	for _, en := range entries {
		f := &file{id: en.id, item: en.item, url: en.url, gen: e.gen}
		e.files = append(e.files, f)
		done, err := e.verified(f)
		if err != nil {
			return nil, err
		}
		if !done {
			todo = append(todo, f)
		}
	}
	return todo, nil
}

// pageStatusURL is the status URL a page is read with: --status-url, else its context's.
func pageStatusURL(p *Page, override string) string {
	if override != "" {
		return override
	}
	return p.Context.StatusURL
}

// fileBase is what relative file URLs resolve against: the status URL, else the FHIR base.
func fileBase(statusURL string, c *fhirclient.Client) (*url.URL, error) {
	if statusURL == "" {
		b := c.Base()
		b.Path += "/"
		return b, nil
	}
	u, err := url.Parse(statusURL)
	if err != nil || !u.IsAbs() {
		return nil, fmt.Errorf("status URL %q: want an absolute http or https URL", fhirclient.Redact(statusURL))
	}
	return u, nil
}

// checkPage refuses a first page that addPage would refuse, without touching the folder.
func checkPage(p *Page, statusOverride string, c *fhirclient.Client) error {
	base, err := fileBase(pageStatusURL(p, statusOverride), c)
	if err != nil {
		return fmt.Errorf("%s: %w", p.where(), err)
	}
	if _, err := (numberer{}).entries(p.Manifest, base, nil); err != nil {
		return fmt.Errorf("%s: %w", p.where(), err)
	}
	return nil
}

// begin establishes the export from its first page: its identity, the folder's claim on it,
// the trusted status origin and the log.
func (e *engine) begin(p *Page, statusURL string) error {
	e.statusURL = statusURL
	e.txTime = p.Manifest.TransactionTime
	e.exportURL = p.Context.ExportURL
	if e.exportURL == "" {
		e.exportURL = p.Manifest.Request
	}
	e.exportID = statusURL
	base, err := fileBase(statusURL, e.c)
	if err != nil {
		return err
	}
	e.base = base
	if statusURL == "" {
		e.exportID = manifestID(p.Raw)
		e.warn("no status URL (give --status-url, or pipe bulk-poll's output): cannot refresh expired file links or delete the export on the server")
	} else if err := e.c.Trust(statusURL); err != nil {
		// The status URL's origin is trusted (DESIGN.md §2, token safety): it came from the server.
		return err
	}
	if err := e.claim(); err != nil {
		return err
	}
	return e.openLog()
}

// claim checks that the folder holds nothing of another export, replacing it with NewExport,
// and records this export in state.json.
func (e *engine) claim() error {
	s := e.state.State()
	fresh := s.ExportID == "" && s.TransactionTime == "" && len(s.Files) == 0
	clear := false
	if !fresh && !e.sameExport(s) {
		if !e.o.NewExport {
			return fmt.Errorf("%w: %s holds the export of %s (transactionTime %s), not this one of %s (transactionTime %s); "+
				"give --new-export to replace it, or choose another --dir", ErrOtherExport, e.o.Dir, fhirclient.Redact(s.ExportID),
				orNone(s.TransactionTime), fhirclient.Redact(e.exportID), orNone(e.txTime))
		}
		if err := e.clear(); err != nil {
			return err
		}
		e.warn(fmt.Sprintf("--new-export: removed the files of the previous export (%s) from %s", orNone(s.TransactionTime), e.o.Dir))
		clear = true
	} else if s.ExportID == e.exportID && s.TransactionTime == e.txTime && !fresh {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.state.SetExport(e.exportID, e.txTime, clear); err != nil {
		return err
	}
	e.indexState()
	return nil
}

// indexState maps identities to the names state.json records for them. Entries whose name is not
// one bulk-fetch would write (a hand-edited state.json) are left out; of two entries for one
// identity, the first in name order counts.
func (e *engine) indexState() {
	e.byID = map[identity]string{}
	for _, fs := range e.state.State().Files {
		id := identity{fs.ItemType, fs.ResourceType, fs.Ordinal}
		if _, dup := e.byID[id]; !dup && safeRel(fs.Name) {
			e.byID[id] = fs.Name
		}
	}
}

// sameExport compares by transaction time, and by status URL when both runs knew one; a manifest
// without context is named by its hash, which changes with every new set of links.
func (e *engine) sameExport(s *exportdir.State) bool {
	if s.TransactionTime != "" && e.txTime != "" && s.TransactionTime != e.txTime {
		return false
	}
	isURN := func(id string) bool { return strings.HasPrefix(id, "urn:") }
	if s.ExportID != "" && !isURN(s.ExportID) && !isURN(e.exportID) && s.ExportID != e.exportID {
		return false
	}
	if s.TransactionTime == "" || e.txTime == "" {
		return s.ExportID == e.exportID
	}
	return true
}

// clear removes the previous export's files, partial downloads and manifest (--new-export). The
// log stays: it may hold several exports, and readers take the last kickoff (DESIGN.md §4).
func (e *engine) clear() error {
	for _, f := range e.state.State().Files {
		if !safeRel(f.Name) {
			continue // not a name bulk-fetch writes: never delete what it names
		}
		p := filepath.Join(e.o.Dir, filepath.FromSlash(f.Name))
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("--new-export: %w", err)
		}
	}
	for _, sub := range []string{"", "deleted", "error"} {
		parts, _ := filepath.Glob(filepath.Join(e.o.Dir, sub, "*.ndjson.part"))
		for _, p := range parts {
			os.Remove(p)
		}
	}
	os.RemoveAll(filepath.Join(e.o.Dir, exportdir.MetaDir, "parts"))
	os.Remove(filepath.Join(e.o.Dir, "manifest.json"))
	return nil
}

// removeTemps removes the temporary files of atomic writes that a killed run left behind
// (atomicfile names them .NAME.tmp-*). Only a lock holder may: no one else writes here now.
func removeTemps(dir string) {
	for _, pattern := range []string{
		".manifest.json.tmp-*",
		".*.ndjson.tmp-*", ".*.ndjson.gz.tmp-*",
		"deleted/.*.ndjson.tmp-*", "deleted/.*.ndjson.gz.tmp-*",
		"error/.*.ndjson.tmp-*", "error/.*.ndjson.gz.tmp-*",
		exportdir.MetaDir + "/.state.json.tmp-*",
		exportdir.MetaDir + "/parts/.*.json.tmp-*",
		exportdir.MetaDir + "/parts/deleted/.*.json.tmp-*",
		exportdir.MetaDir + "/parts/error/.*.json.tmp-*",
	} {
		matches, _ := filepath.Glob(filepath.Join(dir, filepath.FromSlash(pattern)))
		for _, m := range matches {
			os.Remove(m)
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// verified reports whether f is already on disk and verified: listed in state.json (trusted, or
// re-hashed with Verify), or renamed into place by a run killed before it could update the
// state, which is then checked and adopted. Called with e.mu held.
func (e *engine) verified(f *file) (bool, error) {
	rel := f.id.rel()
	if fs, ok := e.stateFile(f.id); ok {
		path := filepath.Join(e.o.Dir, filepath.FromSlash(fs.Name))
		st, err := os.Stat(path)
		switch {
		case err != nil:
			e.warn(fmt.Sprintf("%s is in %s/state.json but not on disk: downloading it again", path, exportdir.MetaDir))
			return false, e.forget(f.id)
		case e.o.Verify:
			sum, size, err := hashFile(path)
			if err != nil {
				return false, err
			}
			if sum != fs.SHA256 || size != fs.Size {
				e.warn(fmt.Sprintf("%s does not match its SHA-256 in %s/state.json: downloading it again", path, exportdir.MetaDir))
				return false, e.forget(f.id)
			}
		case st.Size() != fs.Size:
			e.warn(fmt.Sprintf("%s is %d bytes, but %s/state.json says %d: keeping it (run with --verify to check it and download it again)",
				path, st.Size(), exportdir.MetaDir, fs.Size))
		}
		e.cleanPart(rel)
		e.written(path)
		return true, nil
	}
	for _, name := range []string{rel, rel + ".gz"} {
		path := filepath.Join(e.o.Dir, filepath.FromSlash(name))
		if _, err := os.Stat(path); err != nil {
			continue
		}
		fs, err := checkFile(path, name, f, e.o.MaxLine)
		if err != nil {
			if e.o.NewExport {
				os.Remove(path)
				continue
			}
			return false, fmt.Errorf("%s is not in %s/state.json and is not this export's file (%w): move it away, or give --new-export", path, exportdir.MetaDir, err)
		}
		// Verified, then renamed by a run that died before recording it (DESIGN.md §8).
		if err := e.putState(fs); err != nil {
			return false, err
		}
		e.cleanPart(rel)
		e.written(path)
		return true, nil
	}
	return false, nil
}

// cleanPart removes what a finished download may have left behind.
func (e *engine) cleanPart(rel string) {
	os.Remove(filepath.Join(e.o.Dir, filepath.FromSlash(rel)) + ".part")
	removeSidecar(e.o.Dir, rel)
}

// stateFile finds a file of the state by identity, in O(1) whatever the manifest's size; called
// with e.mu held.
func (e *engine) stateFile(id identity) (exportdir.FileState, bool) {
	name, ok := e.byID[id]
	if !ok {
		return exportdir.FileState{}, false
	}
	return e.state.File(name)
}

// forget drops a file from the state: it is to be downloaded again. Called with e.mu held.
func (e *engine) forget(id identity) error {
	name, ok := e.byID[id]
	if !ok {
		return nil
	}
	delete(e.byID, id)
	return e.state.Drop(name)
}

// safeRel reports whether a state entry's name is a data file name inside DIR: "Type.NNN.ndjson"
// (optionally .gz), at the top or in deleted/ or error/.
func safeRel(name string) bool {
	dir, base, found := strings.Cut(name, "/")
	if !found {
		dir, base = "", name
	}
	if dir != "" && dir != "deleted" && dir != "error" {
		return false
	}
	_, ord, _, ok := exportdir.ParseName(base)
	return ok && ord >= 0
}

// putState records a verified file durably (one journal line); called with e.mu held.
func (e *engine) putState(fs exportdir.FileState) error {
	if err := e.claimName(fs); err != nil {
		return err
	}
	return e.state.Put(fs)
}

// claimName makes fs's name the one its identity has, before fs is recorded: an entry of the
// same identity under another name (the file was kept with --gzip before) is dropped. Called
// with e.mu held.
func (e *engine) claimName(fs exportdir.FileState) error {
	id := identity{fs.ItemType, fs.ResourceType, fs.Ordinal}
	if old, ok := e.byID[id]; ok && old != fs.Name {
		if err := e.state.Drop(old); err != nil {
			return err
		}
	}
	e.byID[id] = fs.Name
	return nil
}

func (e *engine) warn(msg string) {
	if e.o.On.Warn != nil {
		e.o.On.Warn(msg)
	}
}

// fail reports a file that could not be downloaded or recorded; Run's error names the first.
func (e *engine) fail(rel string, err error) {
	if e.o.On.Done != nil {
		e.o.On.Done(rel, err)
	}
	e.mu.Lock()
	e.failed = append(e.failed, err)
	e.mu.Unlock()
}

func (e *engine) written(path string) {
	if e.o.On.Written != nil {
		e.o.On.Written(path)
	}
}

// finish runs when every download has ended: it reports failures, or completes the export.
// Issues of the error files on disk are read either way: a server's own account of what went
// wrong is worth printing most when the run fails.
func (e *engine) finish(ctx context.Context) (*Result, error) {
	e.mu.Lock()
	failed, next := e.failed, e.next
	res := &Result{ExportID: e.exportID, Downloaded: e.downloaded}
	var errorFiles []string
	for _, f := range e.files {
		fs, ok := e.stateFile(f.id)
		if !ok {
			continue
		}
		res.Files++
		res.Resources += int64(fs.Lines)
		res.Bytes += fs.Size
		if f.id.item == exportdir.ItemError {
			errorFiles = append(errorFiles, filepath.Join(e.o.Dir, filepath.FromSlash(fs.Name)))
		}
	}
	e.mu.Unlock()
	issues, ierr := readIssues(errorFiles, e.o.MaxLine)
	res.Issues = issues
	if len(failed) > 0 {
		err := failed[0]
		if len(failed) > 1 {
			err = fmt.Errorf("%w (and %d more files failed)", err, len(failed)-1)
		}
		if !slices.ContainsFunc(failed, func(err error) bool { return errors.Is(err, ErrVerify) }) {
			// A cut connection or a server error may pass; a file that fails verification
			// comes back the same from the same server, so a rerun is not promised to help.
			err = fmt.Errorf("%w; run again to resume", err)
		}
		return res, err
	}
	if next != "" {
		return res, fmt.Errorf("%w: its last page links to a next page (%s) that never came; the files so far are kept: run the pipeline again to get the rest",
			ErrIncomplete, fhirclient.Redact(next))
	}
	if ierr != nil {
		return nil, ierr
	}
	// The whole state goes into state.json before the export is declared complete.
	e.mu.Lock()
	err := e.state.Close()
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := e.logEvent(exportdir.EventExportComplete, exportdir.ExportComplete{Files: res.Files, Resources: res.Resources,
		Bytes: res.Bytes, Duration: e.now().Sub(e.t0).Milliseconds()}, true); err != nil {
		return nil, err
	}
	if e.statusURL != "" && !e.o.NoDelete {
		// The DELETE waits for an answer no longer than a download would (nor than bulk-poll's
		// DELETE does): a connection the server went silent on must not hold the run.
		if err := bulk.CancelWithin(ctx, e.c, e.statusURL, min(e.o.StallTimeout, bulk.DefaultReadTimeout)); err != nil {
			e.warn(fmt.Sprintf("the files are safe, but deleting the export on the server failed (run `bulk-poll --cancel %s` later): %v",
				fhirclient.Redact(e.statusURL), err))
		} else {
			res.Deleted = true
		}
	}
	removePartsDir(e.o.Dir)
	return res, nil
}

// writeIfChanged replaces path atomically unless it already holds data: a rerun on a finished
// folder then writes nothing but its log, so a folder another run only reads stays as it was.
// Only a regular file of the same size is read: a link (to /dev/zero, say) is replaced unread.
func writeIfChanged(path string, data []byte) error {
	if fi, err := os.Lstat(path); err == nil && fi.Mode().IsRegular() && fi.Size() == int64(len(data)) {
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
			return nil
		}
	}
	return atomicfile.WriteFile(path, data, 0o644)
}
