// Package synth generates the deterministic, realistic FHIR R4 data set that the Bulk Data test
// server serves (DESIGN.md §8), so that passing against the server means something: clinical
// records of N patients with resolvable references, Observations of every category (and some of
// none), attachments inline, relative and on another host, and sizes close to real exports.
//
// The same Options give byte-identical output on every machine and Go version: all randomness
// comes from math/rand/v2's PCG through integer arithmetic, output order never depends on map
// iteration, and resources are written field by field in a fixed order.
package synth

import (
	"runtime"
	"sync"
)

// FilesBasePlaceholder begins the absolute attachment URLs of the data set
// ("{{FILES_BASE}}/Binary/{id}"). The server replaces it with the base URL of the origin that
// serves attachments (its own, or the second files origin) when it writes export files: real
// servers put attachments on another host (Cerner, presigned storage, DESIGN.md §9), and the
// generated data cannot know the port.
const FilesBasePlaceholder = "{{FILES_BASE}}"

// HelloWorldBinaryID names a Binary whose content is exactly "hello world" (text/plain, 11 bytes,
// SHA-1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=), referenced by a DocumentReference of the first patient with
// "url": "Binary/hello-world", so tests can check inlined size and hash. Present when Patients ≥ 1.
const HelloWorldBinaryID = "hello-world"

// DefaultObservationsPerPatient is the average number of Observations per patient when
// Options.ObservationsPerPatient is zero. Observations dominate real exports, and at about
// 1.4 KB each this makes a patient's record about 100 KB.
const DefaultObservationsPerPatient = 60

// Options select the data set.
type Options struct {
	Patients int   // number of patients (at most 2^28); 0 gives an empty data set
	Seed     int64 // the same (Patients, Seed, ObservationsPerPatient) gives the same bytes

	// ObservationsPerPatient is the average; each patient gets 50–150 % of it. Zero means
	// DefaultObservationsPerPatient; values above 2^20 are capped.
	ObservationsPerPatient int

	// LongIDs makes every id longer than FHIR R4's 64 characters (LongIDLength), as Epic's are:
	// tools must keep them whole.
	LongIDs bool
}

// Dataset is a generated data set. Patient i's resources do not depend on Patients, so a larger
// data set extends a smaller one with the same seed (Groups aside).
type Dataset struct {
	Types       []string            // resource types present, in a fixed order (Patient first)
	Resources   map[string][][]byte // type → compact JSON resources without newline, in a fixed order
	Binaries    map[string]Binary   // Binary id → raw attachment content (served at Binary/{id})
	Medications map[string][]byte   // Medication id → resource; referenced by MedicationRequest but NOT in Resources
	Groups      map[string][]string // Group id → member Patient ids, in patient order
}

// Binary is the content of an attachment served at Binary/{id}. ContentType is the attachment's
// contentType exactly, parameters included ("text/plain; charset=utf-8").
type Binary struct {
	ContentType string
	Data        []byte
}

// Group ids of Dataset.Groups: memberships of different sizes for Group-level exports.
const (
	GroupAll     = "all"      // every patient
	GroupCohortA = "cohort-a" // every other patient (the 1st, 3rd, …)
	GroupCohortB = "cohort-b" // the first third of the patients (at least one)
	GroupEmpty   = "empty"    // no members
)

// Generate builds the data set for opts. It uses every CPU; the result does not depend on how
// many there are.
func Generate(opts Options) *Dataset { return generate(opts, runtime.GOMAXPROCS(0)) }

func generate(opts Options, workers int) *Dataset {
	n, perPatient, key := patientCount(opts), observationsPer(opts), datasetKey(opts)

	d := &Dataset{
		Resources:   make(map[string][][]byte),
		Binaries:    make(map[string]Binary),
		Medications: make(map[string][]byte),
	}
	medIDs := medicationCatalog(key, opts.LongIDs, d.Medications)

	// Contiguous patient ranges per worker keep the merge a concatenation in patient order.
	workers = max(1, min(workers, n/16))
	shards := make([]shard, workers)
	var wg sync.WaitGroup
	for w := range shards {
		lo, hi := n*w/workers, n*(w+1)/workers
		wg.Go(func() {
			g := &gen{key: key, long: opts.LongIDs, medIDs: medIDs, obsPer: perPatient, sh: &shards[w]}
			for p := lo; p < hi; p++ {
				g.reset(p)
				g.run()
			}
		})
	}
	wg.Wait()

	for t := range numTypes {
		total := 0
		for i := range shards {
			total += len(shards[i].res[t])
		}
		if total == 0 {
			continue
		}
		lines := make([][]byte, 0, total)
		for i := range shards {
			lines = append(lines, shards[i].res[t]...)
		}
		d.Types = append(d.Types, typeNames[t])
		d.Resources[typeNames[t]] = lines
	}
	for i := range shards {
		for _, b := range shards[i].bins {
			d.Binaries[b.id] = b.bin
		}
	}

	d.Groups = groups(key, opts.LongIDs, n)
	return d
}

// groups returns the Groups of a data set of n patients.
func groups(key uint64, long bool, n int) map[string][]string {
	ids := make([]string, n)
	for p := range ids {
		ids[p] = idOf(key, long, tPatient, p, 0)
	}
	var cohortA []string
	for p := 0; p < n; p += 2 {
		cohortA = append(cohortA, ids[p])
	}
	return map[string][]string{GroupAll: ids, GroupCohortA: cohortA, GroupCohortB: ids[:(n+2)/3],
		GroupEmpty: {}}
}

func (g *gen) reset(p int) {
	*g = gen{key: g.key, long: g.long, medIDs: g.medIDs, obsPer: g.obsPer, sh: g.sh, w: g.w, scratch: g.scratch}
	if g.w.b == nil {
		g.w.b = g.sh.next()
	}
	g.p = p
	g.r = newRNG(g.key, uint64(p))
	g.showcase = p == 0
}

// medicationCatalog writes the Medication catalog into m and returns its ids by catalog index.
// Medications live outside the export on purpose: a MedicationRequest's medicationReference must
// then be fetched from Medication/{id}, as on servers that do not export Medication.
func medicationCatalog(key uint64, long bool, m map[string][]byte) []string {
	g := &gen{key: key, long: long, sh: &shard{}, r: newRNG(key, maxPatients)}
	ids := make([]string, len(meds))
	for i, md := range meds {
		ids[i] = idOf(key, long, tMedication, 0, i)
		w := &g.w
		w.raw(`{"resourceType":"Medication","id":"`)
		w.raw(ids[i])
		w.raw(`","meta":{"versionId":"1","lastUpdated":`)
		w.instant(windowStart+instant(g.r.between64(0, int64(windowEnd-windowStart))), styleMilliZ, 0)
		w.raw(`},"code":`)
		w.cc(coding{sysRxNorm, md.rxnorm, md.display}, md.text)
		w.raw(`,"status":"active","form":`)
		w.cc(md.form, md.form.display)
		w.byte('}')
		m[ids[i]] = g.sh.keep(w.b)
		w.b = w.b[:0]
	}
	return ids
}

// Size is the total size in bytes of Resources (lines without their newlines).
func (d *Dataset) Size() int64 {
	var n int64
	for _, t := range d.Types {
		for _, l := range d.Resources[t] {
			n += int64(len(l))
		}
	}
	return n
}

// Count is the number of resources of type t in Resources.
func (d *Dataset) Count(t string) int { return len(d.Resources[t]) }
