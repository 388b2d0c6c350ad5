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

// Run files hold entries one after another, each as a uvarint length then that many bytes:
//
//	flags (1 byte: kind | lastUpdated-present<<1) · uvarint slice · uvarint seq ·
//	varint lastUpdated seconds · uvarint nanoseconds · uvarint key length · key · body
//
// The length prefix lets a reader skip nothing and trust nothing: a run is only ever read back by
// the process that wrote it, but a short read still fails loudly instead of yielding half a resource.

const flagLastUpdated = 1 << 1

// appendEntry appends the run encoding of e to dst.
func appendEntry(dst []byte, e *entry) []byte {
	var hdr [1 + 5*binary.MaxVarintLen64]byte
	h := hdr[:0]
	flags := byte(e.kind)
	if e.lu.ok {
		flags |= flagLastUpdated
	}
	h = append(h, flags)
	h = binary.AppendUvarint(h, uint64(e.slice))
	h = binary.AppendUvarint(h, e.seq)
	h = binary.AppendVarint(h, e.lu.sec)
	h = binary.AppendUvarint(h, uint64(e.lu.nsec))
	h = binary.AppendUvarint(h, uint64(len(e.key)))
	n := len(h) + len(e.key) + len(e.body)
	dst = binary.AppendUvarint(dst, uint64(n))
	dst = append(dst, h...)
	dst = append(dst, e.key...)
	return append(dst, e.body...)
}

var errCorruptRun = errors.New("corrupt run file")

// decodeEntry fills e from one payload (without its length prefix). key and body alias p.
func decodeEntry(p []byte, e *entry) error {
	if len(p) < 1 {
		return errCorruptRun
	}
	flags := p[0]
	p = p[1:]
	e.kind = kind(flags & 1)
	e.lu.ok = flags&flagLastUpdated != 0
	var vals [5]uint64
	for i := range vals {
		var n int
		if i == 2 {
			var v int64
			v, n = binary.Varint(p)
			vals[i] = uint64(v)
		} else {
			vals[i], n = binary.Uvarint(p)
		}
		if n <= 0 {
			return errCorruptRun
		}
		p = p[n:]
	}
	if vals[4] > uint64(len(p)) {
		return errCorruptRun
	}
	e.slice = uint32(vals[0])
	e.seq = vals[1]
	e.lu.sec = int64(vals[2])
	e.lu.nsec = int32(vals[3])
	e.key = p[:vals[4]]
	e.body = p[vals[4]:]
	return nil
}

// runReader reads back the entries of one run file in order.
type runReader struct {
	r   io.ByteReader
	rd  io.Reader
	buf []byte
	cur entry
}

func newRunReader(r interface {
	io.Reader
	io.ByteReader
}) *runReader {
	return &runReader{r: r, rd: r}
}

// next reads the following entry into rr.cur, valid until the next call; io.EOF at the end.
func (rr *runReader) next() error {
	n, err := binary.ReadUvarint(rr.r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return io.EOF
		}
		return fmt.Errorf("reading run: %w", err)
	}
	if n > uint64(maxEntry) {
		return errCorruptRun
	}
	if uint64(cap(rr.buf)) < n {
		rr.buf = make([]byte, n)
	}
	rr.buf = rr.buf[:n]
	if _, err := io.ReadFull(rr.rd, rr.buf); err != nil {
		return fmt.Errorf("reading run: %w", err)
	}
	return decodeEntry(rr.buf, &rr.cur)
}

// maxEntry bounds one encoded entry: a line is at most --max-line (itself capped below 2 GiB).
const maxEntry = 1<<31 + 1<<20
