package synth

import (
	"strconv"
	"strings"
	"sync"
)

// Stream generates a data set a few patients at a time, so that a consumer that writes each batch
// away (the test server's export files) handles a data set of any size in bounded memory. Its
// resources, Binaries, Medications and Groups are byte for byte those of Generate with the same
// Options: patient i's record depends on nothing but i and the Options.
type Stream struct {
	n      int
	key    uint64
	long   bool // Options.LongIDs
	obsPer int
	medIDs []string
	meds   map[string][]byte
	types  []string
}

// NewStream prepares the data set of opts without generating it. It generates the first patients
// only to learn which resource types the data set holds (all of them after a few patients).
func NewStream(opts Options) *Stream {
	s := &Stream{n: patientCount(opts), key: datasetKey(opts), obsPer: observationsPer(opts),
		meds: map[string][]byte{}, long: opts.LongIDs}
	s.medIDs = medicationCatalog(s.key, s.long, s.meds)
	s.types = s.presentTypes()
	return s
}

func patientCount(opts Options) int { return min(max(opts.Patients, 0), maxPatients-1) }

func datasetKey(opts Options) uint64 { return mix64(uint64(opts.Seed) ^ 0x2545f4914f6cdd1d) }

func observationsPer(opts Options) int {
	perPatient := opts.ObservationsPerPatient
	if perPatient <= 0 {
		perPatient = DefaultObservationsPerPatient
	}
	return min(perPatient, 1<<20)
}

// presentTypes generates patients in order until every type has a resource or none is left.
func (s *Stream) presentTypes() []string {
	var seen [numTypes]bool
	left := numTypes
	for p := 0; p < s.n && left > 0; p++ {
		sh := s.patient(p)
		for t := range numTypes {
			if !seen[t] && len(sh.res[t]) > 0 {
				seen[t] = true
				left--
			}
		}
	}
	var types []string
	for t := range numTypes {
		if seen[t] {
			types = append(types, typeNames[t])
		}
	}
	return types
}

// patient generates patient p's record into a shard of its own.
func (s *Stream) patient(p int) *shard {
	sh := &shard{}
	g := &gen{key: s.key, long: s.long, medIDs: s.medIDs, obsPer: s.obsPer, sh: sh}
	g.reset(p)
	g.run()
	return sh
}

// Patients is the number of patients.
func (s *Stream) Patients() int { return s.n }

// Types are the resource types present, as Dataset.Types.
func (s *Stream) Types() []string { return s.types }

// Medications are Dataset.Medications (a small catalog, held in memory); read-only.
func (s *Stream) Medications() map[string][]byte { return s.meds }

// Groups are Dataset.Groups.
func (s *Stream) Groups() map[string][]string { return groups(s.key, s.long, s.n) }

// Batch holds the resources of consecutive patients, in the order Generate gives them.
type Batch struct{ sh *shard }

// Lines returns the batch's resources of type typ (nil for a type the data set lacks). The
// slices stay valid after the batch: nothing reuses their memory.
func (b *Batch) Lines(typ string) [][]byte {
	for t, name := range typeNames {
		if name == typ {
			return b.sh.res[t]
		}
	}
	return nil
}

// Binaries calls fn with each Binary of the batch's patients, as Dataset.Binaries holds them.
func (b *Batch) Binaries(fn func(id string, bin Binary)) {
	for _, e := range b.sh.bins {
		fn(e.id, e.bin)
	}
}

// batchPatients is the number of patients of a Batch: a few MB, enough to keep workers busy.
const batchPatients = 16

// Each calls fn with the whole data set, batch after batch in patient order, generating ahead on
// up to workers goroutines; it stops at the first error fn returns, and returns it. At most
// 2×workers batches are held at a time.
func (s *Stream) Each(workers int, fn func(*Batch) error) error {
	workers = max(workers, 1)
	futures := make(chan chan *shard, workers)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)
	sem := make(chan struct{}, workers)
	wg.Go(func() {
		defer close(futures)
		for lo := 0; lo < s.n; lo += batchPatients {
			f := make(chan *shard, 1)
			select {
			case futures <- f:
			case <-stop:
				return
			}
			sem <- struct{}{}
			hi := min(lo+batchPatients, s.n)
			wg.Go(func() {
				defer func() { <-sem }()
				f <- s.batch(lo, hi)
			})
		}
	})
	for f := range futures {
		if err := fn(&Batch{<-f}); err != nil {
			return err
		}
	}
	return nil
}

// batch generates patients lo to hi-1 into one shard.
func (s *Stream) batch(lo, hi int) *shard {
	sh := &shard{}
	g := &gen{key: s.key, long: s.long, medIDs: s.medIDs, obsPer: s.obsPer, sh: sh}
	for p := lo; p < hi; p++ {
		g.reset(p)
		g.run()
	}
	return sh
}

// Binary returns the Binary with this id, as Dataset.Binaries holds it. An id names the patient
// whose record holds it (makeID is invertible), so only that patient is generated again.
func (s *Stream) Binary(id string) (Binary, bool) {
	p := 0
	if id != HelloWorldBinaryID {
		t, pp, ok := parseID(s.key, s.long, id)
		if !ok || t != tBinary {
			return Binary{}, false
		}
		p = pp
	}
	if p >= s.n {
		return Binary{}, false
	}
	for _, b := range s.patient(p).bins {
		if b.id == id {
			return b.bin, true
		}
	}
	return Binary{}, false
}

// parseID inverts makeID: it returns the type and patient of an id made with key.
func parseID(key uint64, long bool, id string) (t, p int, ok bool) {
	full := id
	if long {
		id = shorten(id)
	}
	var in uint64
	if x, ok := idBits(id); ok {
		in = unmix64(x) ^ key
	} else if n, err := strconv.ParseUint(id, 10, 64); err == nil && n >= 10_000_000 {
		// A Cerner-like number keeps the patient and ordinal but not the type.
		in = uint64(tBinary)<<56 | (n - 10_000_000)
	} else {
		return 0, 0, false
	}
	t, p, ord := int(in>>56), int(in>>28&(maxPatients-1)), int(in&(maxOrdinal-1))
	if t > tBinary || idOf(key, long, t, p, ord) != full {
		return 0, 0, false
	}
	return t, p, true
}

// idBits recovers the 64 bits of mix64 that a UUID-style or Epic-style id was made from.
func idBits(id string) (uint64, bool) {
	switch {
	case len(id) == 36 && strings.Count(id, "-") == 4:
		h := strings.ReplaceAll(id, "-", "")
		var u [16]byte
		for i := range u {
			v, err := strconv.ParseUint(h[2*i:2*i+2], 16, 8)
			if err != nil {
				return 0, false
			}
			u[i] = byte(v)
		}
		return uint64(u[0])<<56 | uint64(u[1])<<48 | uint64(u[2])<<40 | uint64(u[3])<<32 |
			uint64(u[4])<<24 | uint64(u[5])<<16 | uint64(u[7])<<8 | uint64(u[9]), true
	case len(id) == 12 && id[0] == 'e':
		var x uint64
		for _, c := range []byte(id[1:]) {
			d := strings.IndexByte(base62, c)
			if d < 0 {
				return 0, false
			}
			x = x*62 + uint64(d)
		}
		return x, true
	}
	return 0, false
}

// unmix64 inverts mix64.
func unmix64(x uint64) uint64 {
	x ^= x>>31 ^ x>>62
	x *= 0x319642b2d24d8ec3
	x ^= x>>27 ^ x>>54
	x *= 0x96de1b173f119089
	x ^= x>>30 ^ x>>60
	return x
}
