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
	"unsafe"
)

// sorter is an external merge sort of entries by key within a memory budget (DESIGN.md §6: inputs
// much larger than RAM). Entries are copied into fixed-size chunks until the budget is used up, then
// sorted, pruned per key (rules.prune) and spilled to a run file; at the end the runs are merged with
// a heap, at most fanIn at a time, and every key's group is handed over, pruned, in key order.
//
// The buffers hold no pointers, so the garbage collector never scans them however large --mem is.
type sorter struct {
	rules  *rules
	budget int64  // bytes for chunks plus headers
	dir    string // where run files go; created by the caller, removed by the caller

	chunkSize int
	chunks    [][]byte // standard chunks, reused after a spill
	big       [][]byte // chunks of one oversized entry each, dropped after a spill
	cur       int      // chunk being filled (index into chunks)
	used      int64    // bytes of chunks allocated plus header capacity
	hdrs      []hdr

	readBuf int // buffer per run while merging
	fanIn   int // runs merged at once

	runs    []string
	nextRun int
	group   []entry // scratch for one key's group

	// resource types seen, numbered as met; sortBuffer ranks them by name
	typeIDs   map[string]uint32
	typeNames []string
	typeRank  []uint32

	// Spilled counts the bytes written to run files, for progress and tests.
	spilled int64
}

// hdr locates one buffered entry; it holds no pointers (see sorter). typ and pfx (the resource
// type's number and the id's first 8 bytes, big-endian) decide most comparisons of the sort without
// reading the key from the chunks, which costs a cache miss per comparison.
type hdr struct {
	pfx   uint64
	typ   uint32
	seq   uint64
	luSec int64
	chunk uint32
	off   uint32
	klen  uint32
	blen  uint32
	slice uint32
	nsec  int32
	kind  kind
	luOK  bool
}

const hdrSize = int64(unsafe.Sizeof(hdr{}))

// newSorter prepares a sort that keeps about mem bytes in memory and spills runs into dir.
func newSorter(r *rules, mem int64, dir string) *sorter {
	s := &sorter{rules: r, budget: mem, dir: dir, typeIDs: map[string]uint32{}}
	s.chunkSize = int(min(max(mem/32, 256), 4<<20))
	s.readBuf = int(min(max(mem/256, 4<<10), 1<<20))
	s.fanIn = int(min(max(mem/2/int64(s.readBuf), 2), 128))
	return s
}

// add copies e into the buffer, spilling a run first when the budget would be exceeded.
func (s *sorter) add(ctx context.Context, e *entry) error {
	n := len(e.key) + len(e.body)
	if len(s.hdrs) == cap(s.hdrs) && !s.growHeaders() {
		if err := s.spill(ctx); err != nil {
			return err
		}
		if !s.growHeaders() {
			s.hdrs = slices.Grow(s.hdrs, 1) // a budget too small for one header: go over it
		}
	}
	chunk, off, ok := s.alloc(n)
	if !ok {
		if err := s.spill(ctx); err != nil {
			return err
		}
		if chunk, off, ok = s.alloc(n); !ok {
			chunk, off = s.allocBig(n) // a line larger than the budget is held whole, alone
		}
	}
	buf := s.chunkBytes(chunk)
	copy(buf[off:], e.key)
	copy(buf[off+len(e.key):], e.body)
	typ, id := splitKey(e.key)
	t, ok := s.typeIDs[string(typ)]
	if !ok {
		t = uint32(len(s.typeNames))
		s.typeIDs[string(typ)] = t
		s.typeNames = append(s.typeNames, string(typ))
	}
	var p [8]byte
	copy(p[:], id)
	s.hdrs = append(s.hdrs, hdr{typ: t, pfx: binary.BigEndian.Uint64(p[:]), seq: e.seq, luSec: e.lu.sec, nsec: e.lu.nsec, luOK: e.lu.ok,
		chunk: chunk, off: uint32(off), klen: uint32(len(e.key)), blen: uint32(len(e.body)),
		slice: e.slice, kind: e.kind})
	return nil
}

// growHeaders doubles the header slice if the budget allows.
func (s *sorter) growHeaders() bool {
	c := int64(max(cap(s.hdrs)*2, 256))
	extra := (c - int64(cap(s.hdrs))) * hdrSize
	if s.used+extra > s.budget && len(s.hdrs) > 0 {
		return false
	}
	h := make([]hdr, len(s.hdrs), c)
	copy(h, s.hdrs)
	s.hdrs = h
	s.used += extra
	return true
}

// alloc finds n bytes in the standard chunks, allocating a new chunk within the budget.
func (s *sorter) alloc(n int) (chunk uint32, off int, ok bool) {
	if n > s.chunkSize {
		if len(s.hdrs) > 0 && s.used+int64(n) > s.budget {
			return 0, 0, false
		}
		c, o := s.allocBig(n)
		return c, o, true
	}
	for ; s.cur < len(s.chunks); s.cur++ {
		c := s.chunks[s.cur]
		if len(c)+n <= cap(c) {
			s.chunks[s.cur] = c[:len(c)+n]
			return uint32(s.cur), len(c), true
		}
	}
	if len(s.hdrs) > 0 && s.used+int64(s.chunkSize) > s.budget {
		return 0, 0, false
	}
	s.chunks = append(s.chunks, make([]byte, n, s.chunkSize))
	s.used += int64(s.chunkSize)
	return uint32(s.cur), 0, true
}

// allocBig gives an entry larger than a chunk a chunk of its own. Big chunks are numbered after
// the top bit so that standard chunks can be appended to meanwhile.
func (s *sorter) allocBig(n int) (uint32, int) {
	s.big = append(s.big, make([]byte, n))
	s.used += int64(n)
	return bigChunk | uint32(len(s.big)-1), 0
}

const bigChunk = 1 << 31

func (s *sorter) chunkBytes(c uint32) []byte {
	if c&bigChunk != 0 {
		return s.big[c&^bigChunk]
	}
	return s.chunks[c][:cap(s.chunks[c])]
}

// entryAt returns the buffered entry h; key and body alias the buffer.
func (s *sorter) entryAt(h *hdr) entry {
	b := s.chunkBytes(h.chunk)[h.off:]
	return entry{kind: h.kind, slice: h.slice, seq: h.seq,
		lu:  instant{sec: h.luSec, nsec: h.nsec, ok: h.luOK},
		key: b[:h.klen:h.klen], body: b[h.klen : h.klen+h.blen : h.klen+h.blen]}
}

func (s *sorter) key(h *hdr) []byte {
	return s.chunkBytes(h.chunk)[h.off : h.off+h.klen]
}

// sortBuffer orders the buffered headers by key, the byte order of "type NUL id", which is the order
// of (type, id); the order within a key does not matter (prune).
func (s *sorter) sortBuffer() {
	order := make([]uint32, len(s.typeNames))
	for i := range order {
		order[i] = uint32(i)
	}
	slices.SortFunc(order, func(a, b uint32) int { return strings.Compare(s.typeNames[a], s.typeNames[b]) })
	s.typeRank = slices.Grow(s.typeRank[:0], len(order))[:len(order)]
	for rank, t := range order {
		s.typeRank[t] = uint32(rank)
	}
	slices.SortFunc(s.hdrs, func(a, b hdr) int {
		if a.typ != b.typ {
			return cmp.Compare(s.typeRank[a.typ], s.typeRank[b.typ])
		}
		if a.pfx != b.pfx {
			return cmp.Compare(a.pfx, b.pfx)
		}
		return bytes.Compare(s.key(&a), s.key(&b))
	})
}

// eachBuffered hands fn every key's pruned group from the sorted buffer.
func (s *sorter) eachBuffered(ctx context.Context, fn func([]entry) error) error {
	for i := 0; i < len(s.hdrs); {
		if i&0xfff == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		k := s.key(&s.hdrs[i])
		s.group = append(s.group[:0], s.entryAt(&s.hdrs[i]))
		j := i + 1
		for ; j < len(s.hdrs) && s.hdrs[j].typ == s.hdrs[i].typ && s.hdrs[j].pfx == s.hdrs[i].pfx && bytes.Equal(s.key(&s.hdrs[j]), k); j++ {
			s.group = append(s.group, s.entryAt(&s.hdrs[j]))
		}
		if err := fn(s.rules.prune(s.group)); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// spill sorts the buffer and writes it as a run, then empties the buffer (keeping standard chunks).
func (s *sorter) spill(ctx context.Context) error {
	if len(s.hdrs) == 0 {
		return nil
	}
	s.sortBuffer()
	err := s.writeRun(func(fn func([]entry) error) error {
		return s.eachBuffered(ctx, fn)
	})
	if err != nil {
		return err
	}
	s.reset()
	return nil
}

func (s *sorter) reset() {
	s.hdrs = s.hdrs[:0]
	for i := range s.chunks {
		s.chunks[i] = s.chunks[i][:0]
	}
	s.cur = 0
	for _, b := range s.big {
		s.used -= int64(len(b))
	}
	s.big = nil
}

// writeRun writes the groups produced by each to a new run file.
func (s *sorter) writeRun(each func(func([]entry) error) error) error {
	path := filepath.Join(s.dir, fmt.Sprintf("run-%06d", s.nextRun))
	s.nextRun++
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("spilling a sorted run: %w", err)
	}
	w := bufio.NewWriterSize(f, s.readBuf*4)
	var enc []byte
	err = each(func(g []entry) error {
		for i := range g {
			enc = appendEntry(enc[:0], &g[i])
			if _, err := w.Write(enc); err != nil {
				return err
			}
			s.spilled += int64(len(enc))
		}
		return nil
	})
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("spilling a sorted run to %s: %w", path, err)
	}
	s.runs = append(s.runs, path)
	return nil
}

// each hands fn every key's pruned group, in key order, once all entries were added. Without a
// spill the buffer is sorted in place; otherwise the rest is spilled, the buffer freed, and the runs
// merged, in passes of at most fanIn runs.
func (s *sorter) each(ctx context.Context, fn func([]entry) error) error {
	if len(s.runs) == 0 {
		s.sortBuffer()
		return s.eachBuffered(ctx, fn)
	}
	if err := s.spill(ctx); err != nil {
		return err
	}
	s.chunks, s.big, s.hdrs, s.used = nil, nil, nil, 0
	for len(s.runs) > s.fanIn {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch := s.runs[:s.fanIn]
		rest := slices.Clone(s.runs[s.fanIn:])
		s.runs = nil
		err := s.writeRun(func(fn func([]entry) error) error { return s.mergeRuns(ctx, batch, fn) })
		if err != nil {
			return err
		}
		for _, p := range batch {
			os.Remove(p) // disk space: a pass must not double the spill
		}
		s.runs = append(rest, s.runs...)
	}
	return s.mergeRuns(ctx, s.runs, fn)
}

// mergeRuns is a k-way merge of sorted runs with a heap, handing fn each key's pruned group.
func (s *sorter) mergeRuns(ctx context.Context, paths []string, fn func([]entry) error) error {
	h := &runHeap{}
	defer func() {
		for _, r := range h.all {
			r.f.Close()
		}
	}()
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("merging runs: %w", err)
		}
		r := &openRun{f: f, path: p}
		r.runReader = newRunReader(bufio.NewReaderSize(f, s.readBuf))
		h.all = append(h.all, r)
		switch err := r.next(); {
		case errors.Is(err, io.EOF):
		case err != nil:
			return fmt.Errorf("%s: %w", p, err)
		default:
			h.live = append(h.live, r)
		}
	}
	heap.Init(h)
	var gbuf []byte    // the group's keys and bodies, copied out of the run buffers
	var spans [][3]int // per group entry: offset, key length, body length
	count := 0
	for h.Len() > 0 {
		if count++; count&0xfff == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		gbuf, spans = gbuf[:0], spans[:0]
		s.group = s.group[:0]
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
			s.group = append(s.group, e)
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
			s.group[i].key = gbuf[sp[0] : sp[0]+sp[1] : sp[0]+sp[1]]
			s.group[i].body = gbuf[sp[0]+sp[1] : sp[0]+sp[1]+sp[2] : sp[0]+sp[1]+sp[2]]
		}
		if err := fn(s.rules.prune(s.group)); err != nil {
			return err
		}
	}
	return nil
}

type openRun struct {
	*runReader
	f    *os.File
	path string
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
