package fhirtest

import (
	"io"
	"os"
	"sync"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest/synth"
)

// binStore keeps the Binaries of a generated data set in a file, filled by the first export that
// generates the whole data set, so that reading an attachment afterwards is a read from disk, not
// the generation of a patient's record again. Until then, Binaries are generated on demand.
type binStore struct {
	path string

	mu       sync.Mutex
	state    int // binEmpty, binFilling, binComplete
	f        *os.File
	size     int64
	index    map[string]binLoc
	ctypes   map[string]string // content types, interned
	failures int
}

const (
	binEmpty = iota
	binFilling
	binComplete
)

// binLoc is where a Binary's content lies in the store's file.
type binLoc struct {
	off         int64
	n           int
	contentType string
}

// maxBinFillFailures bounds how often a failed fill starts again: a full disk is not retried forever.
const maxBinFillFailures = 3

// claim reports whether the caller is to fill the store (then it must call fill and done).
func (st *binStore) claim() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.state != binEmpty || st.failures >= maxBinFillFailures {
		return false
	}
	f, err := os.Create(st.path)
	if err != nil {
		st.failures++
		return false
	}
	st.f, st.size, st.state = f, 0, binFilling
	st.index, st.ctypes = map[string]binLoc{}, map[string]string{}
	return true
}

// fill appends the Binaries of one batch.
func (st *binStore) fill(b *synth.Batch) error {
	var err error
	b.Binaries(func(id string, bin synth.Binary) {
		if err != nil {
			return
		}
		ct, ok := st.ctypes[bin.ContentType]
		if !ok {
			ct = bin.ContentType
			st.ctypes[ct] = ct
		}
		if _, err = st.f.WriteAt(bin.Data, st.size); err == nil {
			st.index[id] = binLoc{off: st.size, n: len(bin.Data), contentType: ct}
			st.size += int64(len(bin.Data))
		}
	})
	return err
}

// done ends a fill: the store serves Binaries from now on when the pass that filled it was
// whole (ok), and is emptied otherwise.
func (st *binStore) done(ok bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if ok {
		st.state = binComplete
		return
	}
	st.f.Close()
	os.Remove(st.path)
	st.f, st.index, st.ctypes, st.state = nil, nil, nil, binEmpty
	st.failures++
}

// get returns Binary id; complete is false while the store cannot answer (not filled yet).
func (st *binStore) get(id string) (b synth.Binary, found, complete bool) {
	st.mu.Lock()
	if st.state != binComplete {
		st.mu.Unlock()
		return synth.Binary{}, false, false
	}
	loc, ok := st.index[id]
	f := st.f
	st.mu.Unlock()
	if !ok {
		return synth.Binary{}, false, true
	}
	data := make([]byte, loc.n)
	if _, err := f.ReadAt(data, loc.off); err != nil && err != io.EOF {
		return synth.Binary{}, false, false // let the caller generate it instead
	}
	return synth.Binary{ContentType: loc.contentType, Data: data}, true, true
}

// close closes the file (Close removes the server's folder, the file with it).
func (st *binStore) close() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.f != nil {
		st.f.Close()
	}
}
