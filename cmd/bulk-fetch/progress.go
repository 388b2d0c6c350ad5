package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/bulkpipe/bulkpipe/pkg/fetch"
	"github.com/bulkpipe/bulkpipe/pkg/tool"
)

// progress draws one bar per download in flight and a total on a terminal (tool.Status: progress
// only when stderr is a terminal). Lines written to it while bars are up appear above them.
type progress struct {
	p     *mpb.Progress
	total *mpb.Bar
	start time.Time
	now   func() time.Time

	// mu guards the bars and the per-file maps, and is held while calling mpb. tmu guards t
	// alone: the total bar's decorator takes it while mpb renders, so it is never held while
	// calling mpb (which waits for the renderer: a deadlock).
	mu   sync.Mutex
	bars map[string]*mpb.Bar
	have map[string]int64 // bytes of each file started: on disk before, and received since
	size map[string]int64 // each file's size, -1 when the server did not say
	tmu  sync.Mutex
	t    totals
}

// totals is what the total bar shows.
type totals struct {
	files     int   // files of the export known so far (the manifest's, or more as pages arrive)
	verified  int   // files verified, by earlier runs or this one
	resources int64 // resources received by this run
	received  int64 // bytes received by this run
	have      int64 // bytes of the files started, received now or before
	known     int64 // sizes of the files started whose size the server gave
	haveKnown int64 // bytes of those files already on disk
}

// text is the total bar's line. The ETA counts only the files whose size is known so far (the
// Content-Length of those started), at the average rate of this run; without both, no ETA.
func (t totals) text(elapsed time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s", tool.FormatBytes(t.have))
	if t.known > 0 {
		fmt.Fprintf(&b, " of %s", tool.FormatBytes(t.known+t.have-t.haveKnown))
	}
	fmt.Fprintf(&b, " · %d of %d files · %d resources · %s", t.verified, t.files, t.resources, tool.FormatRate(t.received, elapsed))
	if left := t.known - t.haveKnown; left > 0 && t.received > 0 && elapsed > 0 {
		eta := time.Duration(float64(left) / float64(t.received) * float64(elapsed))
		fmt.Fprintf(&b, " · ETA %v", eta.Round(time.Second))
	}
	return b.String()
}

// newProgress draws on w. files is the number of files the first manifest page lists, and
// verified how many of them earlier runs verified.
func newProgress(ctx context.Context, w io.Writer, files, verified int, opts ...mpb.ContainerOption) *progress {
	pr := &progress{bars: map[string]*mpb.Bar{}, have: map[string]int64{}, size: map[string]int64{},
		start: time.Now(), now: time.Now}
	pr.t.files, pr.t.verified = files, verified
	opts = append([]mpb.ContainerOption{mpb.WithOutput(w), mpb.WithWidth(32), mpb.WithRefreshRate(200 * time.Millisecond)}, opts...)
	pr.p = mpb.NewWithContext(ctx, opts...)
	pr.total = pr.p.New(0, mpb.BarStyle().Lbound("[").Rbound("]"),
		mpb.BarPriority(1<<30), // the total stays at the bottom
		mpb.PrependDecorators(decor.Name("total", decor.WC{C: decor.DindentRight | decor.DextraSpace, W: 34})),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
			pr.tmu.Lock()
			defer pr.tmu.Unlock()
			return pr.t.text(pr.now().Sub(pr.start))
		})))
	return pr
}

// Write prints lines above the bars.
func (pr *progress) Write(b []byte) (int, error) { return pr.p.Write(b) }

// attach routes the engine's file events to the bars.
func (pr *progress) attach(on *fetch.Callbacks) {
	on.Start = pr.started
	on.Progress = pr.progress
	on.Done = pr.done
}

func (pr *progress) started(f fetch.FileInfo) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.tmu.Lock()
	if _, seen := pr.have[f.Rel]; !seen {
		// A file of a later manifest page, or of a page the count did not include.
		pr.t.files = max(pr.t.files, pr.t.verified+len(pr.bars)+1)
	}
	pr.forget(f.Rel)
	pr.have[f.Rel], pr.size[f.Rel] = f.Offset, f.Size
	pr.t.have += f.Offset
	if f.Size >= 0 {
		pr.t.known += f.Size
		pr.t.haveKnown += f.Offset
	}
	sum, current := max(pr.t.known+pr.t.have-pr.t.haveKnown, pr.t.have), pr.t.have
	pr.tmu.Unlock()
	pr.total.SetTotal(sum, false)
	pr.total.SetCurrent(current)

	total := max(f.Size, 0)
	if b := pr.bars[f.Rel]; b != nil {
		b.SetTotal(total, false)
		b.SetCurrent(f.Offset)
		return
	}
	b := pr.p.New(total, mpb.BarStyle().Lbound("[").Rbound("]"),
		mpb.BarRemoveOnComplete(),
		mpb.PrependDecorators(decor.Name(f.Rel, decor.WC{C: decor.DindentRight | decor.DextraSpace, W: 34})),
		mpb.AppendDecorators(decor.Any(func(s decor.Statistics) string {
			text := tool.FormatBytes(s.Current)
			if s.Total > 0 {
				text += " / " + tool.FormatBytes(s.Total)
			}
			return text
		})))
	b.SetCurrent(f.Offset)
	pr.bars[f.Rel] = b
}

// forget takes a file's bytes out of the totals, when its download restarts (from its offset,
// which a 200 instead of a 206 resets to 0). The caller holds mu and tmu.
func (pr *progress) forget(rel string) {
	have, ok := pr.have[rel]
	if !ok {
		return
	}
	pr.t.have -= have
	if size := pr.size[rel]; size >= 0 {
		pr.t.known -= size
		pr.t.haveKnown -= have
	}
}

func (pr *progress) progress(rel string, n, resources int64) {
	pr.mu.Lock()
	pr.tmu.Lock()
	pr.t.resources += resources
	pr.t.received += n
	pr.t.have += n
	if _, ok := pr.have[rel]; ok {
		pr.have[rel] += n
		if pr.size[rel] >= 0 {
			pr.t.haveKnown += n
		}
	}
	pr.tmu.Unlock()
	b := pr.bars[rel]
	pr.mu.Unlock()
	pr.total.IncrInt64(n)
	if b != nil {
		b.IncrInt64(n)
	}
}

func (pr *progress) done(rel string, err error) {
	pr.mu.Lock()
	b := pr.bars[rel]
	delete(pr.bars, rel)
	if err == nil {
		pr.tmu.Lock()
		pr.t.verified++
		pr.tmu.Unlock()
	}
	pr.mu.Unlock()
	if b == nil {
		return
	}
	if err != nil {
		b.Abort(true)
		return
	}
	b.SetTotal(-1, true)
}

// wait removes the bars and returns when they are gone from the screen.
func (pr *progress) wait() {
	pr.mu.Lock()
	for _, b := range pr.bars {
		b.Abort(true)
	}
	pr.bars = map[string]*mpb.Bar{}
	pr.mu.Unlock()
	pr.total.SetTotal(-1, true)
	pr.p.Wait()
}
