package attachment

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/fhirjson"
	"github.com/bulkpipe/bulkpipe/pkg/ndjson"
)

// Defaults of Options fields whose zero value means "default".
const (
	DefaultParallel     = 5                // downloads at once (issue 5, as bulk-fetch's files)
	DefaultWindowLines  = 512              // lines between the oldest unwritten one and the newest read
	DefaultWindowBytes  = 64 << 20         // bytes of lines and downloaded content held in that window
	DefaultStallTimeout = 60 * time.Second // a download that receives nothing this long is retried
)

// Options configure an Inliner.
type Options struct {
	Policy
	// Fetcher downloads; *fhirclient.Client satisfies it. Required.
	Fetcher Fetcher
	// Parallel is the number of downloads at once; 0 means DefaultParallel.
	Parallel int
	// WindowLines and WindowBytes bound the lines read ahead of the oldest line still waiting for
	// a download, and the bytes they and their downloaded content hold. Output keeps input order,
	// so a slow attachment holds back the lines after it; the window lets downloads go on
	// meanwhile without letting memory grow with the file. 0 means the defaults. A single line
	// larger than WindowBytes is still processed, alone.
	WindowLines int
	WindowBytes int64
	// StallTimeout ends a download whose server sends nothing for this long, before the headers
	// or in the body (then retried, as a transport error or a cut-off body); 0 means
	// DefaultStallTimeout, negative means none.
	StallTimeout time.Duration
	// MaxLine caps input lines (ndjson.Scanner); 0 means ndjson.DefaultMaxLine.
	MaxLine int
	// AllowLinkLocal lets attachment URLs reach link-local addresses and cloud metadata
	// endpoints. By default the requests are sent with fhirclient.Request.Guard: an attachment
	// url comes from the data, and what it answers is stored in the output, so a url at
	// 169.254.169.254 would copy the machine's cloud credentials into the notes (issue 11.14).
	AllowLinkLocal bool
	// OnDownload, when set, is called for every attachment that was downloaded or tried, in
	// output order, from the goroutine running Stream: tools print failures and write the
	// download_complete and download_error events of DESIGN.md §4 from it (see Download.Event).
	// Streams running at once (bulk-fetch inlines files as they are verified) call it at once.
	OnDownload func(Download)
}

// Download reports one attempted attachment download.
type Download struct {
	Name     string // the input's name, as given to Stream
	Line     int    // its 1-based line number
	Resource string // "DocumentReference/123" ("" when the line has no id)
	Path     string // of the attachment in the resource: "content.0.attachment", "presentedForm.1"
	URL      string // as resolved, redacted (fhirclient.Redact): presigned signatures never appear
	Result   Result // Inlined, Skipped or Failed
	Size     int64  // bytes inlined
	Err      error  // why it was skipped or failed
}

// Stats counts what a run did. The four attachment counts cover the attachments the policy
// selected (resource type and media type); others are not counted.
type Stats struct {
	Lines   int64 // records read
	Changed int64 // records rewritten
	Inlined int64
	Already int64 // had data already
	Skipped int64 // no url, or larger than Policy.MaxSize
	Failed  int64
}

// Add adds o's counts to s.
func (s *Stats) Add(o Stats) {
	s.Lines += o.Lines
	s.Changed += o.Changed
	s.Inlined += o.Inlined
	s.Already += o.Already
	s.Skipped += o.Skipped
	s.Failed += o.Failed
}

// String reads "3 inlined, 1 already inlined, 0 skipped, 2 failed".
func (s Stats) String() string {
	return fmt.Sprintf("%d inlined, %d already inlined, %d skipped, %d failed", s.Inlined, s.Already, s.Skipped, s.Failed)
}

func (s *Stats) count(r Result) {
	switch r {
	case Inlined:
		s.Inlined++
	case Already:
		s.Already++
	case Skipped:
		s.Skipped++
	default:
		s.Failed++
	}
}

// Inliner inlines attachments. It is safe for concurrent use: each Stream runs its own workers.
type Inliner struct {
	policy      *policy
	fetcher     Fetcher
	parallel    int
	windowLines int
	windowBytes int64
	stall       time.Duration
	maxLine     int
	allowLL     bool
	onDownload  func(Download)
}

// New checks opts and returns an Inliner.
func New(opts Options) (*Inliner, error) {
	p, err := opts.Policy.compile()
	if err != nil {
		return nil, err
	}
	if opts.Fetcher == nil {
		return nil, errors.New("attachment: no Fetcher")
	}
	in := &Inliner{policy: p, fetcher: opts.Fetcher, parallel: opts.Parallel, windowLines: opts.WindowLines,
		windowBytes: opts.WindowBytes, stall: opts.StallTimeout, maxLine: opts.MaxLine, allowLL: opts.AllowLinkLocal,
		onDownload: opts.OnDownload}
	if in.parallel <= 0 {
		in.parallel = DefaultParallel
	}
	if in.windowLines <= 0 {
		in.windowLines = DefaultWindowLines
	}
	if in.windowBytes <= 0 {
		in.windowBytes = DefaultWindowBytes
	}
	switch {
	case in.stall == 0:
		in.stall = DefaultStallTimeout
	case in.stall < 0:
		in.stall = 0
	}
	return in, nil
}

// InvalidLineError is a target line that is not valid JSON: inlining validates what it rewrites
// (bulk-fetch and etl-load validate the rest). It reads "NAME:LINE: invalid JSON".
type InvalidLineError struct {
	Name         string
	Line         int
	ResourceType string
}

func (e *InvalidLineError) Error() string {
	return fmt.Sprintf("%s:%d: invalid JSON (a %s line)", e.Name, e.Line, e.ResourceType)
}

// task is one attachment to download.
type task struct {
	att  fhirjson.Attachment
	mime string
	res  fetched
}

// item is one line in the window.
type item struct {
	line   []byte // owned copy; nil once out is built
	lineNo int
	target bool // goes through a worker: validated, maybe rewritten
	key    string
	tasks  []*task
	stats  Stats // Already and Skipped, found by the worker
	err    error
	done   chan struct{}
	out    []byte
	cost   int64 // bytes it holds, for the window
}

// plan is what a target line needs: nothing (pass through), or these downloads.
type plan struct {
	tasks []*task
	stats Stats // Already and Skipped found without downloading
}

// target reports a line of a resource type whose attachments are inlined: the one check every
// line gets, a cheap read of the leading resourceType.
func (in *Inliner) target(line []byte) bool {
	return in.policy.resources[fhirjson.ResourceType(line)]
}

// Targets reports whether lines of resourceType are rewritten under the policy, so that a caller
// with typed files (bulk-fetch's FileInfo.ResourceType) can copy the others without reading them.
func (in *Inliner) Targets(resourceType string) bool { return in.policy.resources[resourceType] }

// plan validates a target line and lists the downloads it needs.
func (in *Inliner) plan(line []byte) (plan, error) {
	var p plan
	if !ndjson.Valid(line) {
		return p, errInvalid
	}
	for _, a := range attachments(line) {
		mt, _ := mediaType(a.ContentType)
		switch {
		case !in.policy.mimes[mt]:
		case a.HasData:
			p.stats.Already++
		case a.URL == "":
			p.stats.Skipped++
		default:
			p.tasks = append(p.tasks, &task{att: a, mime: mt})
		}
	}
	return p, nil
}

var errInvalid = errors.New("invalid JSON")

// Stream copies the NDJSON of r to w with attachments inlined, in input order. Lines that are not
// targets, or need no change, are written byte for byte (without their line end, which becomes
// "\n": ndjson.Scanner strips CRLF, a BOM and blank lines). An invalid target line stops the
// stream with an *InvalidLineError; a failed download does not (it is counted, reported through
// OnDownload, and its attachment left as it was). name labels errors and Downloads.
//
// Target lines go to Parallel workers, each of which validates its line, downloads what it needs
// one attachment after the other, and splices it: at most Parallel downloads run at once, and the
// CPU work of validating and encoding is spread over the cores too.
func (in *Inliner) Stream(ctx context.Context, name string, r io.Reader, w io.Writer) (Stats, error) {
	s := &stream{in: in, name: name, out: ndjson.NewWriter(w)}
	err := s.run(ctx, ndjson.NewScanner(r, in.maxLine))
	if ferr := s.out.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("write: %w", ferr)
	}
	return s.stats, err
}

// stream is one Stream call: the window of lines and the workers for it.
type stream struct {
	in    *Inliner
	name  string
	out   *ndjson.Writer
	stats Stats
	win   []*item // oldest first, from head
	head  int
	bytes atomic.Int64 // held by the window
}

func (s *stream) run(ctx context.Context, sc *ndjson.Scanner) error {
	ctx, cancel := context.WithCancel(ctx)
	jobs := make(chan *item)
	var wg sync.WaitGroup
	for range s.in.parallel {
		wg.Go(func() {
			for it := range jobs {
				s.process(ctx, it)
			}
		})
	}
	defer func() {
		cancel()
		close(jobs)
		wg.Wait()
	}()
	for sc.Scan() {
		if err := ctx.Err(); err != nil {
			return err
		}
		line := sc.Bytes()
		s.stats.Lines++
		if !s.in.target(line) {
			if s.empty() {
				// The common case, and the one that must run at disk speed: nothing waits
				// ahead of this line, so it goes out without a copy.
				if err := s.out.WriteRecord(line); err != nil {
					return fmt.Errorf("write: %w", err)
				}
				continue
			}
			it := &item{out: clone(line), done: closed}
			s.push(it, int64(len(it.out)))
		} else {
			it := &item{line: clone(line), lineNo: sc.Line(), target: true, done: make(chan struct{})}
			s.push(it, int64(len(it.line)))
			select {
			case jobs <- it:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err := s.drain(ctx, false); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	return s.drain(ctx, true)
}

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func clone(b []byte) []byte { return append(make([]byte, 0, len(b)), b...) }

func (s *stream) empty() bool { return s.head == len(s.win) }

func (s *stream) push(it *item, cost int64) {
	if s.head > 0 && s.head == len(s.win) {
		clear(s.win)
		s.win, s.head = s.win[:0], 0
	}
	it.cost = cost
	s.bytes.Add(cost)
	s.win = append(s.win, it)
}

// drain writes the lines at the head of the window that are done, and waits for more while the
// window is over its bounds (for all of them with all set).
func (s *stream) drain(ctx context.Context, all bool) error {
	for !s.empty() {
		it := s.win[s.head]
		if all || len(s.win)-s.head > s.in.windowLines || s.bytes.Load() > s.in.windowBytes {
			select {
			case <-it.done:
			case <-ctx.Done():
				return ctx.Err()
			}
		} else {
			select {
			case <-it.done:
			default:
				return nil
			}
		}
		s.win[s.head] = nil
		s.head++
		if err := s.emit(it); err != nil {
			return err
		}
	}
	return nil
}

// emit writes a finished line and reports its downloads.
func (s *stream) emit(it *item) error {
	s.bytes.Add(-it.cost)
	if it.err != nil {
		return it.err
	}
	if err := s.out.WriteRecord(it.out); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	s.stats.Add(it.stats)
	changed := false
	for _, t := range it.tasks {
		s.stats.count(t.res.result)
		changed = changed || t.res.result == Inlined
		if s.in.onDownload != nil {
			d := Download{Name: s.name, Line: it.lineNo, Resource: it.key, Path: t.att.Path, URL: t.res.url,
				Result: t.res.result, Err: t.res.err}
			if t.res.result == Inlined {
				d.Size = t.res.size
			}
			s.in.onDownload(d)
		}
	}
	if changed {
		s.stats.Changed++
	}
	return nil
}

// process runs in a worker: it validates a target line, downloads its attachments and splices
// them in.
func (s *stream) process(ctx context.Context, it *item) {
	defer close(it.done)
	p, err := s.in.plan(it.line)
	if err != nil {
		it.err = &InvalidLineError{Name: s.name, Line: it.lineNo, ResourceType: fhirjson.ResourceType(it.line)}
		return
	}
	it.stats, it.tasks, it.out = p.stats, p.tasks, it.line
	if len(p.tasks) == 0 {
		return
	}
	it.key = fhirjson.Key(it.line)
	var ps []patch
	held := int64(0)
	for _, t := range p.tasks {
		t.res = s.in.fetch(ctx, t.att.URL, t.mime)
		n := int64(len(t.res.content))
		s.bytes.Add(n)
		held += n
		if t.res.result == Inlined {
			ps = append(ps, patch{start: t.att.Start, end: t.att.End, contentType: t.res.contentType,
				content: t.res.content, sum: t.res.sum})
		}
	}
	if len(ps) > 0 {
		out, err := splice(it.line, ps)
		if err != nil {
			// attachments placed the objects and the line is valid JSON, so this is a bug; fail the
			// attachments rather than corrupt the line.
			for _, t := range p.tasks {
				if t.res.result == Inlined {
					t.res.result, t.res.err = Failed, fmt.Errorf("%s: %w", t.att.Path, err)
				}
			}
		} else {
			it.out = out
		}
	}
	for _, t := range p.tasks {
		t.res.content = nil
	}
	// The window now holds the output line instead of the input and the downloads. cost is
	// read by the main goroutine only after done is closed.
	s.bytes.Add(int64(len(it.out)) - it.cost - held)
	it.cost = int64(len(it.out))
	it.line = nil
}
