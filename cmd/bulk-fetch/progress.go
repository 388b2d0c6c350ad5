package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/bulkpipe/bulkpipe/pkg/fetch"
)

// progress draws one bar per download in flight and a total (bytes, resources, rate) on a
// terminal (DESIGN.md §1: progress only when stderr is a TTY). Lines written to it while bars
// are up appear above them.
type progress struct {
	p         *mpb.Progress
	total     *mpb.Bar
	resources atomic.Int64
	files     atomic.Int64

	mu   sync.Mutex
	bars map[string]*mpb.Bar
}

func newProgress(ctx context.Context, w io.Writer) *progress {
	pr := &progress{bars: map[string]*mpb.Bar{}}
	pr.p = mpb.NewWithContext(ctx, mpb.WithOutput(w), mpb.WithWidth(32), mpb.WithRefreshRate(200*time.Millisecond))
	pr.total = pr.p.New(0, mpb.BarStyle().Lbound("[").Rbound("]"),
		mpb.BarPriority(1<<30), // the total stays at the bottom
		mpb.PrependDecorators(decor.Name("total", decor.WC{C: decor.DindentRight | decor.DextraSpace, W: 34})),
		mpb.AppendDecorators(
			decor.CurrentKibiByte("% .1f"),
			decor.Any(func(decor.Statistics) string {
				return fmt.Sprintf(" · %d files · %d resources · ", pr.files.Load(), pr.resources.Load())
			}),
			decor.AverageSpeed(decor.SizeB1024(0), "% .1f"),
		))
	return pr
}

// Write prints lines above the bars.
func (pr *progress) Write(b []byte) (int, error) { return pr.p.Write(b) }

// attach routes the engine's file events to the bars.
func (pr *progress) attach(on *fetch.Callbacks) {
	on.Start = pr.start
	on.Progress = pr.progress
	on.Done = pr.done
}

func (pr *progress) start(f fetch.FileInfo) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	total := max(f.Size, 0)
	if b := pr.bars[f.Rel]; b != nil {
		b.SetTotal(total, false)
		b.SetCurrent(f.Offset)
		return
	}
	b := pr.p.New(total, mpb.BarStyle().Lbound("[").Rbound("]"),
		mpb.BarRemoveOnComplete(),
		mpb.PrependDecorators(decor.Name(f.Rel, decor.WC{C: decor.DindentRight | decor.DextraSpace, W: 34})),
		mpb.AppendDecorators(decor.CountersKibiByte("% .1f / % .1f"), decor.Name(" "), decor.AverageSpeed(decor.SizeB1024(0), "% .1f")))
	b.SetCurrent(f.Offset)
	pr.bars[f.Rel] = b
}

func (pr *progress) progress(rel string, n, resources int64) {
	pr.resources.Add(resources)
	pr.total.IncrInt64(n)
	pr.mu.Lock()
	b := pr.bars[rel]
	pr.mu.Unlock()
	if b != nil {
		b.IncrInt64(n)
	}
}

func (pr *progress) done(rel string, err error) {
	pr.mu.Lock()
	b := pr.bars[rel]
	delete(pr.bars, rel)
	pr.mu.Unlock()
	if err == nil {
		pr.files.Add(1)
	}
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
