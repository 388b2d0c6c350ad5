package merge

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// kind says what an entry of the sort stands for: a resource line, or a DELETE entry of a deleted/
// Bundle (DESIGN.md §6: deletes travel through the same sort, keyed like the resources they remove).
type kind uint8

const (
	kindResource kind = iota
	kindDelete
)

// instant is a meta.lastUpdated as a point in time. Strings are never compared: "…T10:00:00+02:00" is
// older than "…T09:00:00Z". A missing or unparseable value has ok=false and sorts oldest (DESIGN.md §6;
// Epic leaves meta.lastUpdated out of many resources, §9).
type instant struct {
	sec  int64
	nsec int32
	ok   bool
}

// parseInstant reads a FHIR instant (RFC 3339 with a zone, any number of fraction digits). The second
// result is false when s is not one: the caller treats the value as missing and warns.
func parseInstant(s string) (instant, bool) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return instant{}, false
	}
	return instant{sec: t.Unix(), nsec: int32(t.Nanosecond()), ok: true}, true
}

// compare orders instants with a missing one first.
func (a instant) compare(b instant) int {
	switch {
	case a.ok != b.ok:
		if a.ok {
			return 1
		}
		return -1
	case a.sec != b.sec:
		if a.sec < b.sec {
			return -1
		}
		return 1
	case a.nsec != b.nsec:
		if a.nsec < b.nsec {
			return -1
		}
		return 1
	}
	return 0
}

// entry is one record of the sort. key is resourceType, a NUL byte, then id: NUL sorts below every
// byte a resourceType may hold, so byte order of keys is the order of (resourceType, id) pairs even
// when one type is a prefix of another ("Medication" < "MedicationRequest").
type entry struct {
	kind  kind
	slice uint32  // index of the slice (argument) it came from
	seq   uint64  // position in the whole input, in argument order: the last tie-break
	lu    instant // meta.lastUpdated (resources only)
	key   []byte
	body  []byte // the resource line as read (resources only)
}

// makeKey builds the sort key of resourceType and id into dst.
func makeKey(dst []byte, resourceType, id string) []byte {
	dst = append(dst[:0], resourceType...)
	dst = append(dst, 0)
	return append(dst, id...)
}

// splitKey returns the resourceType and id of a key built by makeKey.
func splitKey(key []byte) (resourceType, id []byte) {
	i := bytes.IndexByte(key, 0)
	if i < 0 {
		return key, nil
	}
	return key[:i], key[i+1:]
}

// Run files hold entries one after another, each a fixed header then the key and the body:
//
//	uint32 key length · uint32 body length · uint32 slice · flags (1 byte: kind | lastUpdated-present<<1)
//	· 3 zero bytes · uint64 seq · int64 lastUpdated seconds · int32 nanoseconds · 4 zero bytes
//
// all little-endian. The merge reads the key and the rules' fields straight from the header: it
// never decodes varints nor parses a line again, and the lengths up front let a reader trust
// nothing: a run is only ever read back by the process that wrote it, but a short read still fails
// loudly instead of yielding half a resource.
const (
	entryHeader     = 40
	flagLastUpdated = 1 << 1
)

// appendEntry appends the run encoding of e to dst.
func appendEntry(dst []byte, e *entry) []byte {
	var h [entryHeader]byte
	putHeader(h[:], e.kind, e.slice, e.seq, e.lu, len(e.key), len(e.body))
	dst = append(dst, h[:]...)
	dst = append(dst, e.key...)
	return append(dst, e.body...)
}

// putHeader writes an entry's fixed header into h (entryHeader bytes).
func putHeader(h []byte, k kind, slice uint32, seq uint64, lu instant, klen, blen int) {
	flags := byte(k)
	if lu.ok {
		flags |= flagLastUpdated
	}
	binary.LittleEndian.PutUint32(h[0:], uint32(klen))
	binary.LittleEndian.PutUint32(h[4:], uint32(blen))
	binary.LittleEndian.PutUint32(h[8:], slice)
	h[12], h[13], h[14], h[15] = flags, 0, 0, 0
	binary.LittleEndian.PutUint64(h[16:], seq)
	binary.LittleEndian.PutUint64(h[24:], uint64(lu.sec))
	binary.LittleEndian.PutUint32(h[32:], uint32(lu.nsec))
	binary.LittleEndian.PutUint32(h[36:], 0)
}

var errCorruptRun = errors.New("corrupt run file")

// entryLen returns the encoded length of the entry whose header starts p, or an error when p is
// shorter than a header or the header claims more than an entry may hold.
func entryLen(p []byte) (int, error) {
	if len(p) < entryHeader {
		return 0, errCorruptRun
	}
	klen := uint64(binary.LittleEndian.Uint32(p[0:]))
	blen := uint64(binary.LittleEndian.Uint32(p[4:]))
	if klen+blen > maxEntry || p[12]&^(1|flagLastUpdated) != 0 {
		return 0, errCorruptRun
	}
	return entryHeader + int(klen+blen), nil
}

// decodeEntry fills e from one encoded entry, which must be all of p. key and body alias p.
func decodeEntry(p []byte, e *entry) error {
	n, err := entryLen(p)
	if err != nil {
		return err
	}
	if n != len(p) {
		return errCorruptRun
	}
	klen := int(binary.LittleEndian.Uint32(p[0:]))
	flags := p[12]
	e.kind = kind(flags & 1)
	e.slice = binary.LittleEndian.Uint32(p[8:])
	e.seq = binary.LittleEndian.Uint64(p[16:])
	e.lu = instant{sec: int64(binary.LittleEndian.Uint64(p[24:])), nsec: int32(binary.LittleEndian.Uint32(p[32:])),
		ok: flags&flagLastUpdated != 0}
	e.key = p[entryHeader : entryHeader+klen : entryHeader+klen]
	e.body = p[entryHeader+klen:]
	return nil
}

// runReader reads back the entries of one run file in order, through a buffer it is given (so that
// the merge's buffers come out of the sort's budget). An entry larger than the buffer gets a buffer
// of its own, bounded by maxEntry.
type runReader struct {
	r        io.Reader
	buf      []byte
	pos, end int
	eof      bool
	cur      entry
}

func newRunReader(r io.Reader, buf []byte) *runReader {
	if len(buf) < entryHeader {
		buf = make([]byte, 4<<10)
	}
	return &runReader{r: r, buf: buf}
}

// fill makes at least n bytes available from rr.pos, moving what is left to the front and growing
// the buffer when n exceeds it. It returns false at the end of the file with fewer than n bytes.
func (rr *runReader) fill(n int) (bool, error) {
	if rr.end-rr.pos >= n {
		return true, nil
	}
	if n > len(rr.buf) {
		b := make([]byte, n)
		rr.end = copy(b, rr.buf[rr.pos:rr.end])
		rr.buf, rr.pos = b, 0
	} else if rr.pos > 0 {
		rr.end = copy(rr.buf, rr.buf[rr.pos:rr.end])
		rr.pos = 0
	}
	for rr.end < n && !rr.eof {
		m, err := rr.r.Read(rr.buf[rr.end:])
		rr.end += m
		switch {
		case errors.Is(err, io.EOF):
			rr.eof = true
		case err != nil:
			return false, fmt.Errorf("reading run: %w", err)
		}
	}
	return rr.end-rr.pos >= n, nil
}

// next reads the following entry into rr.cur, valid until the next call; io.EOF at the end.
func (rr *runReader) next() error {
	ok, err := rr.fill(entryHeader)
	if err != nil {
		return err
	}
	if !ok {
		if rr.end == rr.pos {
			return io.EOF
		}
		return fmt.Errorf("reading run: %w", io.ErrUnexpectedEOF)
	}
	n, err := entryLen(rr.buf[rr.pos:rr.end])
	if err != nil {
		return err
	}
	if ok, err = rr.fill(n); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("reading run: %w", io.ErrUnexpectedEOF)
	}
	p := rr.buf[rr.pos : rr.pos+n : rr.pos+n]
	rr.pos += n
	return decodeEntry(p, &rr.cur)
}

// maxEntry bounds one encoded entry: a line is at most --max-line (itself capped below 2 GiB).
const maxEntry = 1<<31 + 1<<20
