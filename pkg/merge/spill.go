package merge

import (
	"bufio"
	"bytes"
	"cmp"
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"unsafe"
)

// sorter is an external merge sort of entries by key within a memory budget (DESIGN.md §6: inputs
// much larger than RAM), using both cores of a small machine:
//
//   - Entries are copied into one of two arenas of half the budget each. When the arena is full the
//     reading goroutine hands it to a spilling goroutine, which sorts it, prunes each key's entries
//     (rules.prune) and writes a run file, while reading goes on into the other arena.
//   - At the end the arena being filled is not spilled: it is sorted in place and merged, as one
//     more run, with the runs on disk (at most fanIn at a time, in passes), and the idle arena's
//     memory becomes the merge's read buffers. A merging goroutine hands each key's winner, in key
//     order and in batches, to the caller's goroutine, which writes the output meanwhile.
//
// Run files hold each entry's key and the rules' fields in a fixed header before the raw line
// (record.go), so merging compares keys and never parses a line again. The arenas hold no pointers,
// so the garbage collector never scans them however large --mem is, and they are allocated once:
// the two arenas plus the run writer's buffer are the budget, and the merge's buffers are carved
// out of that memory.
type sorter struct {
	rules *rules
	dir   string // where run files go; created by the caller, removed by the caller

	arenaSize int
	writeBuf  int // the run writer's buffer
	readBuf   int // buffer per run while merging
	batchSize int // bytes of winners per batch handed from the merging goroutine to the caller
	fanIn     int // runs merged at once

	cur      *arena   // being filled by add
	idle     []*arena // allocated arenas not in use
	arenas   int      // arenas allocated (at most 2)
	jobs     chan spillJob
	back     chan *arena // arenas spilled and emptied by the spiller
	done     chan struct{}
	inFlight int // arenas handed to the spiller and not yet back

	// resource types seen, numbered as met; a spill ranks them by name
	typeIDs   map[string]uint32
	typeNames []string

	w *bufio.Writer // run writer, used by one goroutine at a time

	mu      sync.Mutex // guards the fields below, written by the spiller
	err     error      // the spiller's first error
	runs    []string
	nextRun int
	// spilled counts the bytes written to run files, for tests.
	spilled int64
}

type spillJob struct {
	ctx context.Context
	a   *arena
}

// newSorter prepares a sort that keeps about mem bytes in memory and spills runs into dir.
func newSorter(r *rules, mem int64, dir string) *sorter {
	s := &sorter{rules: r, dir: dir, typeIDs: map[string]uint32{}}
	s.writeBuf = int(min(max(mem/64, 4<<10), 4<<20))
	s.readBuf = int(min(max(mem/256, 4<<10), 1<<20))
	s.batchSize = int(min(max(mem/64, 16<<10), 4<<20))
	s.arenaSize = int(max((mem-int64(s.writeBuf))/2, minArena))
	s.fanIn = min(max((s.arenaSize-2*s.batchSize)/s.readBuf, 2), 128)
	return s
}

// minArena holds a few entries even when --mem is tiny; a budget that small is exceeded.
const minArena = 4 << 10

// runCount returns how many runs were spilled so far (progress reports).
func (s *sorter) runCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextRun
}

func (s *sorter) firstErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// typeID numbers the resource type of key.
func (s *sorter) typeID(key []byte) uint32 {
	typ, _ := splitKey(key)
	t, ok := s.typeIDs[string(typ)]
	if !ok {
		t = uint32(len(s.typeNames))
		s.typeIDs[string(typ)] = t
		s.typeNames = append(s.typeNames, string(typ))
	}
	return t
}

// add copies e into the current arena, handing the arena to the spiller first when it is full.
func (s *sorter) add(ctx context.Context, e *entry) error {
	if s.cur == nil {
		s.cur = s.arena()
	}
	t := s.typeID(e.key)
	if s.cur.put(e, t) {
		return nil
	}
	if s.cur.n > 0 {
		if err := s.handOff(ctx); err != nil {
			return err
		}
		if s.cur.put(e, t) {
			return nil
		}
	}
	// A line larger than an empty arena is written alone, as a run of its own.
	if err := s.wait(); err != nil {
		return err
	}
	return s.writeRun(func(fn func([]entry) error) error { return fn([]entry{*e}) })
}

// arena returns an idle arena, allocating one while fewer than two exist.
func (s *sorter) arena() *arena {
	if n := len(s.idle); n > 0 {
		a := s.idle[n-1]
		s.idle = s.idle[:n-1]
		return a
	}
	s.arenas++
	return newArena(s.arenaSize)
}

// handOff gives the full current arena to the spiller and continues in the other one, waiting for
// it when it is still being spilled.
func (s *sorter) handOff(ctx context.Context) error {
	if s.jobs == nil {
		s.jobs = make(chan spillJob, 1)
		s.back = make(chan *arena, 2)
		s.done = make(chan struct{})
		go s.spillLoop()
	}
	s.cur.types = s.typeNames
	s.jobs <- spillJob{ctx: ctx, a: s.cur}
	s.inFlight++
	s.cur = nil
	if len(s.idle) == 0 && s.arenas >= 2 {
		s.idle = append(s.idle, <-s.back)
		s.inFlight--
	}
	s.cur = s.arena()
	return s.firstErr()
}

// spillLoop is the spilling goroutine: it sorts and writes each arena it is given, then gives it
// back empty. After an error it only gives arenas back.
func (s *sorter) spillLoop() {
	defer close(s.done)
	for j := range s.jobs {
		if s.firstErr() == nil {
			if err := s.spill(j.ctx, j.a); err != nil {
				s.mu.Lock()
				s.err = err
				s.mu.Unlock()
			}
		}
		j.a.reset()
		s.back <- j.a
	}
}

// wait waits until the spiller holds no arena and returns its error, if any.
func (s *sorter) wait() error {
	for ; s.inFlight > 0; s.inFlight-- {
		s.idle = append(s.idle, <-s.back)
	}
	return s.firstErr()
}

// close stops the spilling goroutine; the sorter is not used afterwards.
func (s *sorter) close() {
	if s.jobs != nil {
		close(s.jobs)
		<-s.done
		s.jobs = nil
	}
}

// spill sorts an arena and writes it as a run.
func (s *sorter) spill(ctx context.Context, a *arena) error {
	a.sort()
	return s.writeRun(func(fn func([]entry) error) error {
		return a.eachGroup(ctx, func(g []entry) error { return fn(s.rules.prune(g)) })
	})
}

// writeRun writes the groups produced by each to a new run file.
func (s *sorter) writeRun(each func(func([]entry) error) error) error {
	s.mu.Lock()
	path := filepath.Join(s.dir, fmt.Sprintf("run-%06d", s.nextRun))
	s.nextRun++
	s.mu.Unlock()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("spilling a sorted run: %w", err)
	}
	if s.w == nil {
		s.w = bufio.NewWriterSize(f, s.writeBuf)
	} else {
		s.w.Reset(f)
	}
	w := s.w
	var n int64
	var h [entryHeader]byte
	err = each(func(g []entry) error {
		for i := range g {
			e := &g[i]
			putHeader(h[:], e.kind, e.slice, e.seq, e.lu, len(e.key), len(e.body))
			w.Write(h[:])
			w.Write(e.key)
			if _, err := w.Write(e.body); err != nil {
				return err
			}
			n += int64(entryHeader + len(e.key) + len(e.body))
		}
		return nil
	})
	if err == nil {
		err = w.Flush()
	}
	w.Reset(nil)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("spilling a sorted run to %s: %w", path, err)
	}
	s.mu.Lock()
	s.runs = append(s.runs, path)
	s.spilled += n
	s.mu.Unlock()
	return nil
}

// each hands fn every key's winner — the first entry of its pruned group: the surviving copy, or
// the delete when none survives — in key order, once all entries were added. fn runs in the
// caller's goroutine while the next winners are being merged.
func (s *sorter) each(ctx context.Context, fn func(*entry) error) error {
	// The last arena is sorted while the spiller may still be writing the one before.
	mem := s.cur
	s.cur = nil
	if mem != nil {
		mem.types = s.typeNames
		mem.sort()
	}
	if err := s.wait(); err != nil {
		return err
	}
	s.close()
	// The idle arena's memory becomes the merge's buffers.
	var pool []byte
	if len(s.idle) > 0 {
		pool = s.idle[0].data
	}
	s.idle = nil
	carve := func(n int) []byte {
		if len(pool) >= n {
			b := pool[:n:n]
			pool = pool[n:]
			return b
		}
		return make([]byte, n)
	}
	batches := [2]*batch{{data: carve(s.batchSize)[:0]}, {data: carve(s.batchSize)[:0]}}
	readBufs := make([][]byte, 0, s.fanIn)
	for range s.fanIn {
		readBufs = append(readBufs, carve(s.readBuf))
	}
	slots := s.fanIn
	if mem != nil && mem.n > 0 {
		slots-- // the arena is one more input of the last merge
	}
	for len(s.runs) > slots {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch := s.runs[:s.fanIn]
		rest := slices.Clone(s.runs[s.fanIn:])
		s.runs = nil
		err := s.writeRun(func(fn func([]entry) error) error {
			return s.mergeRuns(ctx, batch, readBufs, nil, fn)
		})
		if err != nil {
			return err
		}
		for _, p := range batch {
			os.Remove(p) // disk space: a pass must not double the spill
		}
		s.runs = append(rest, s.runs...)
	}
	return s.deliver(ctx, batches, fn, func(emit func([]entry) error) error {
		if len(s.runs) == 0 {
			if mem == nil {
				return nil
			}
			return mem.eachGroup(ctx, func(g []entry) error { return emit(s.rules.prune(g)) })
		}
		return s.mergeRuns(ctx, s.runs, readBufs, mem, emit)
	})
}

// batch holds winners copied out of the merge, on their way to the caller's goroutine.
type batch struct {
	data []byte
	ents []batchEntry
}

type batchEntry struct {
	e          entry // key and body nil: they are at off in data
	off        int
	klen, blen int
}

// deliver runs produce in a goroutine of its own and hands the first entry of each group it emits
// to fn in this one, two batches being filled and drained in turn.
func (s *sorter) deliver(ctx context.Context, batches [2]*batch, fn func(*entry) error, produce func(emit func([]entry) error) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	full := make(chan *batch, 1)
	free := make(chan *batch, 2)
	free <- batches[1]
	var perr error
	go func() {
		defer close(full)
		b := batches[0]
		send := func() error {
			select {
			case full <- b:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case b = <-free:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		perr = produce(func(g []entry) error {
			w := &g[0]
			n := len(w.key) + len(w.body)
			if len(b.ents) > 0 && len(b.data)+n > cap(b.data) {
				if err := send(); err != nil {
					return err
				}
			}
			be := batchEntry{e: *w, off: len(b.data), klen: len(w.key), blen: len(w.body)}
			be.e.key, be.e.body = nil, nil
			b.data = append(b.data, w.key...)
			b.data = append(b.data, w.body...)
			b.ents = append(b.ents, be)
			return nil
		})
		if perr == nil && len(b.ents) > 0 {
			select {
			case full <- b:
			case <-ctx.Done():
				perr = ctx.Err()
			}
		}
	}()
	var cerr error
	for b := range full {
		for i := range b.ents {
			if cerr != nil {
				break
			}
			be := &b.ents[i]
			e := be.e
			e.key = b.data[be.off : be.off+be.klen : be.off+be.klen]
			e.body = b.data[be.off+be.klen : be.off+be.klen+be.blen : be.off+be.klen+be.blen]
			if cerr = fn(&e); cerr != nil {
				cancel()
			}
		}
		b.data, b.ents = b.data[:0], b.ents[:0]
		free <- b
	}
	if cerr != nil {
		return cerr
	}
	return perr
}

// mergeRuns is a k-way merge of sorted runs (and of the sorted arena mem, if not nil) with a heap,
// handing fn each key's pruned group. Run i is read through bufs[i].
func (s *sorter) mergeRuns(ctx context.Context, paths []string, bufs [][]byte, mem *arena, fn func([]entry) error) error {
	h := &runHeap{}
	defer func() {
		for _, r := range h.all {
			if r.f != nil {
				r.f.Close()
			}
		}
	}()
	for i, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("merging runs: %w", err)
		}
		r := &openRun{f: f, path: p}
		r.rr = newRunReader(f, bufs[i])
		h.all = append(h.all, r)
	}
	if mem != nil && mem.n > 0 {
		h.all = append(h.all, &openRun{mem: mem, path: "the sort buffer"})
	}
	for _, r := range h.all {
		switch err := r.next(); {
		case errors.Is(err, io.EOF):
		case err != nil:
			return fmt.Errorf("%s: %w", r.path, err)
		default:
			h.live = append(h.live, r)
		}
	}
	heap.Init(h)
	var gbuf []byte    // the group's keys and bodies, copied out of the run buffers
	var spans [][3]int // per group entry: offset, key length, body length
	var group []entry
	count := 0
	for h.Len() > 0 {
		if count++; count&0xfff == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		gbuf, spans = gbuf[:0], spans[:0]
		group = group[:0]
		top := h.live[0]
		klen := len(top.cur.key)
		gbuf = append(gbuf, top.cur.key...)
		for h.Len() > 0 && bytes.Equal(h.live[0].cur.key, gbuf[:klen]) {
			r := h.live[0]
			spans = append(spans, [3]int{len(gbuf), len(r.cur.key), len(r.cur.body)})
			gbuf = append(gbuf, r.cur.key...)
			gbuf = append(gbuf, r.cur.body...)
			e := r.cur
			e.key, e.body = nil, nil
			group = append(group, e)
			switch err := r.next(); {
			case errors.Is(err, io.EOF):
				heap.Pop(h)
			case err != nil:
				return fmt.Errorf("%s: %w", r.path, err)
			default:
				heap.Fix(h, 0)
			}
		}
		for i, sp := range spans {
			group[i].key = gbuf[sp[0] : sp[0]+sp[1] : sp[0]+sp[1]]
			group[i].body = gbuf[sp[0]+sp[1] : sp[0]+sp[1]+sp[2] : sp[0]+sp[1]+sp[2]]
		}
		if err := fn(s.rules.prune(group)); err != nil {
			return err
		}
	}
	return nil
}

// openRun is one input of a merge: a run file, or the sorted arena.
type openRun struct {
	rr   *runReader
	f    *os.File
	mem  *arena
	i    int // next header of mem
	path string
	cur  entry
}

func (r *openRun) next() error {
	if r.mem != nil {
		if r.i == r.mem.n {
			return io.EOF
		}
		r.cur = r.mem.entryAt(&r.mem.hdrs()[r.i])
		r.i++
		return nil
	}
	if err := r.rr.next(); err != nil {
		return err
	}
	r.cur = r.rr.cur
	return nil
}

// runHeap orders open runs by their current key.
type runHeap struct {
	all  []*openRun
	live []*openRun
}

func (h *runHeap) Len() int           { return len(h.live) }
func (h *runHeap) Less(i, j int) bool { return bytes.Compare(h.live[i].cur.key, h.live[j].cur.key) < 0 }
func (h *runHeap) Swap(i, j int)      { h.live[i], h.live[j] = h.live[j], h.live[i] }
func (h *runHeap) Push(x any)         { h.live = append(h.live, x.(*openRun)) }
func (h *runHeap) Pop() any {
	r := h.live[len(h.live)-1]
	h.live = h.live[:len(h.live)-1]
	return r
}

// arena is one fixed buffer of the sort: keys and bodies are appended from its start, their
// headers from its end, and it is full when the two meet. It is one pointer-free allocation.
type arena struct {
	mem   []uint64 // the allocation, 8-byte aligned for the headers
	data  []byte   // mem as bytes
	front int      // bytes of keys and bodies
	n     int      // headers, the last one at the lowest address
	types []string // the sorter's type names when the arena was handed over
	rank  []uint32 // per type number: rank of its name
}

// hdr locates one buffered entry; it holds no pointers (see sorter). typ and pfx (the resource
// type's number and the id's first 8 bytes, big-endian) decide most comparisons of the sort without
// reading the key, which costs a cache miss per comparison.
type hdr struct {
	pfx   uint64
	seq   uint64
	luSec int64
	off   uint64
	typ   uint32
	klen  uint32
	blen  uint32
	slice uint32
	nsec  int32
	kind  kind
	luOK  bool
}

const hdrSize = int(unsafe.Sizeof(hdr{}))

func newArena(size int) *arena {
	size = max(size, minArena) &^ 7
	mem := make([]uint64, size/8)
	a := &arena{mem: mem, data: unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(mem))), size)}
	adviseHugePages(a.data)
	return a
}

// hdrs returns the arena's headers as a slice over its end.
func (a *arena) hdrs() []hdr {
	if a.n == 0 {
		return nil
	}
	return unsafe.Slice((*hdr)(unsafe.Pointer(&a.data[len(a.data)-a.n*hdrSize])), a.n)
}

// put copies e into the arena; false when it does not fit.
func (a *arena) put(e *entry, typ uint32) bool {
	n := len(e.key) + len(e.body)
	if a.front+n+(a.n+1)*hdrSize > len(a.data) {
		return false
	}
	off := a.front
	copy(a.data[off:], e.key)
	copy(a.data[off+len(e.key):], e.body)
	a.front += n
	_, id := splitKey(e.key)
	var p [8]byte
	copy(p[:], id)
	a.n++
	a.hdrs()[0] = hdr{typ: typ, pfx: binary.BigEndian.Uint64(p[:]), seq: e.seq, luSec: e.lu.sec, nsec: e.lu.nsec, luOK: e.lu.ok,
		off: uint64(off), klen: uint32(len(e.key)), blen: uint32(len(e.body)), slice: e.slice, kind: e.kind}
	return true
}

func (a *arena) reset() {
	a.front, a.n, a.types = 0, 0, nil
}

// entryAt returns the buffered entry h; key and body alias the arena.
func (a *arena) entryAt(h *hdr) entry {
	b := a.data[h.off:]
	return entry{kind: h.kind, slice: h.slice, seq: h.seq,
		lu:  instant{sec: h.luSec, nsec: h.nsec, ok: h.luOK},
		key: b[:h.klen:h.klen], body: b[h.klen : h.klen+h.blen : h.klen+h.blen]}
}

func (a *arena) key(h *hdr) []byte {
	return a.data[h.off : h.off+uint64(h.klen)]
}

// sort orders the headers by key, the byte order of "type NUL id", which is the order of
// (type, id); the order within a key does not matter (prune).
func (a *arena) sort() {
	order := make([]uint32, len(a.types))
	for i := range order {
		order[i] = uint32(i)
	}
	slices.SortFunc(order, func(x, y uint32) int { return strings.Compare(a.types[x], a.types[y]) })
	a.rank = slices.Grow(a.rank[:0], len(order))[:len(order)]
	for rank, t := range order {
		a.rank[t] = uint32(rank)
	}
	slices.SortFunc(a.hdrs(), func(x, y hdr) int {
		if x.typ != y.typ {
			return cmp.Compare(a.rank[x.typ], a.rank[y.typ])
		}
		if x.pfx != y.pfx {
			return cmp.Compare(x.pfx, y.pfx)
		}
		return bytes.Compare(a.key(&x), a.key(&y))
	})
}

// eachGroup hands fn the entries of each key of the sorted arena, in key order. The slice is
// reused between calls, and fn may reorder it.
func (a *arena) eachGroup(ctx context.Context, fn func([]entry) error) error {
	hs := a.hdrs()
	var group []entry
	for i := 0; i < len(hs); {
		if i&0xfff == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		k := a.key(&hs[i])
		group = append(group[:0], a.entryAt(&hs[i]))
		j := i + 1
		for ; j < len(hs) && hs[j].typ == hs[i].typ && hs[j].pfx == hs[i].pfx && bytes.Equal(a.key(&hs[j]), k); j++ {
			group = append(group, a.entryAt(&hs[j]))
		}
		if err := fn(group); err != nil {
			return err
		}
		i = j
	}
	return nil
}
