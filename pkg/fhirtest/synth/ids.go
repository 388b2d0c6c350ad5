package synth

import (
	"math/bits"
	"math/rand/v2"
	"strconv"
	"strings"
)

// rng draws everything from a PCG source through integer arithmetic only. PCG's output is fixed
// by its specification; the methods of rand.Rand (IntN, Float64, …) carry no such promise across
// Go versions, so the data set never calls them.
type rng struct{ pcg rand.PCG }

func newRNG(a, b uint64) *rng {
	r := &rng{}
	r.pcg.Seed(mix64(a), mix64(b^0x9e3779b97f4a7c15))
	return r
}

func (r *rng) u64() uint64 { return r.pcg.Uint64() }

// intn returns a value in [0, n) by multiply-shift (Lemire without rejection: the bias, below
// n/2^64, does not matter here, and no rejection loop keeps the stream length fixed).
func (r *rng) intn(n int) int {
	if n <= 1 {
		return 0
	}
	hi, _ := bits.Mul64(r.u64(), uint64(n))
	return int(hi)
}

// between returns a value in [lo, hi].
func (r *rng) between(lo, hi int) int { return lo + r.intn(hi-lo+1) }

func (r *rng) between64(lo, hi int64) int64 {
	if hi <= lo {
		return lo
	}
	h, _ := bits.Mul64(r.u64(), uint64(hi-lo+1))
	return lo + int64(h)
}

// percent is true pct times in 100.
func (r *rng) percent(pct int) bool { return r.intn(100) < pct }

func pick[T any](r *rng, xs []T) T { return xs[r.intn(len(xs))] }

// weighted returns an index of ws with probability proportional to its weight.
func (r *rng) weighted(ws []int) int {
	total := 0
	for _, w := range ws {
		total += w
	}
	n := r.intn(total)
	for i, w := range ws {
		if n < w {
			return i
		}
		n -= w
	}
	return len(ws) - 1
}

// mix64 is the splitmix64 finalizer. It is a bijection on uint64, so distinct inputs give
// distinct outputs: ids built from it are unique without a set to check them against.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Resource type indexes, in the order of Dataset.Types.
const (
	tPatient = iota
	tEncounter
	tCondition
	tObservation
	tMedicationRequest
	tDocumentReference
	tDiagnosticReport
	tAllergyIntolerance
	tProcedure
	tServiceRequest
	tSpecimen
	tEpisodeOfCare
	tImmunization
	numTypes
	tMedication = numTypes     // Dataset.Medications, not a Resources type
	tBinary     = numTypes + 1 // Dataset.Binaries
)

var typeNames = [numTypes]string{
	"Patient", "Encounter", "Condition", "Observation", "MedicationRequest", "DocumentReference",
	"DiagnosticReport", "AllergyIntolerance", "Procedure", "ServiceRequest", "Specimen", "EpisodeOfCare",
	"Immunization",
}

// Limits that keep the (type, patient, ordinal) triple inside the 64 bits fed to mix64.
const (
	maxPatients = 1 << 28
	maxOrdinal  = 1 << 28
)

const hexDigits = "0123456789abcdef"
const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// makeID names the ord-th resource of type t for patient p. Servers name resources differently —
// UUIDs (HAPI, Cerner's newer APIs), Epic's long alphanumerics, Cerner's numbers — so each
// resource takes one of these styles. Within a style the id is a one-to-one function of
// (t, p, ord), and the styles cannot collide (dashes; a leading "e"; digits only), so ids are
// unique within a type.
func makeID(key uint64, t, p, ord int) string {
	in := uint64(t)<<56 | uint64(p)<<28 | uint64(ord)
	x := mix64(in ^ key)
	switch x >> 61 {
	case 0, 1, 2, 3: // UUID v4 layout; all 64 bits of x survive in it
		lo := mix64(x ^ 0x5851f42d4c957f2d)
		var u [16]byte
		u[0], u[1], u[2], u[3] = byte(x>>56), byte(x>>48), byte(x>>40), byte(x>>32)
		u[4], u[5] = byte(x>>24), byte(x>>16)
		u[6], u[7] = 0x40|byte(lo&0x0f), byte(x>>8)
		u[8], u[9] = 0x80|byte(lo>>4&0x3f), byte(x)
		for i := 10; i < 16; i++ {
			u[i] = byte(lo >> (8 * (i - 10)))
		}
		b := make([]byte, 0, 36)
		for i, c := range u {
			if i == 4 || i == 6 || i == 8 || i == 10 {
				b = append(b, '-')
			}
			b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
		}
		return string(b)
	case 4, 5: // Epic-like: "e" and 11 base-62 digits of x
		var b [12]byte
		b[0] = 'e'
		for i := 11; i >= 1; i-- {
			b[i] = base62[x%62]
			x /= 62
		}
		return string(b[:])
	default: // Cerner-like number
		return strconv.FormatUint(10_000_000+(in&(1<<56-1)), 10)
	}
}

// LongIDLength is the length of every id of a data set made with Options.LongIDs: past the 64
// characters FHIR R4 allows, as Epic's ids are.
const LongIDLength = 80

// idOf is makeID, lengthened to LongIDLength when long is set.
func idOf(key uint64, long bool, t, p, ord int) string {
	id := makeID(key, t, p, ord)
	if !long {
		return id
	}
	// "." cannot occur in a short id, so shorten finds where the padding starts; the padding is a
	// function of the id, so the long id stays one-to-one.
	b := make([]byte, 0, LongIDLength)
	b = append(append(b, id...), '.')
	x := mix64(key ^ uint64(len(id)))
	for i := 0; i < len(id); i++ {
		x = mix64(x ^ uint64(id[i]))
	}
	for len(b) < LongIDLength {
		b = append(b, base62[x%62])
		x = x/62 ^ mix64(x)
	}
	return string(b)
}

// shorten is the id a long id was made from.
func shorten(id string) string {
	if i := strings.IndexByte(id, '.'); i >= 0 {
		return id[:i]
	}
	return id
}
