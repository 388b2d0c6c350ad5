package synth

import (
	"bytes"
	"errors"
	"maps"
	"regexp"
	"slices"
	"testing"
)

// TestStream checks that a Stream gives Generate's data set byte for byte, whatever the number
// of workers.
func TestStream(t *testing.T) {
	for _, opts := range []Options{{Patients: 0}, {Patients: 1}, {Patients: 2, Seed: 3},
		{Patients: 37, Seed: 1}, {Patients: 40, Seed: -9, ObservationsPerPatient: 5}} {
		d := Generate(opts)
		s := NewStream(opts)
		if !slices.Equal(s.Types(), d.Types) {
			t.Errorf("NewStream(%+v).Types() = %v, want %v", opts, s.Types(), d.Types)
		}
		if s.Patients() != len(d.Groups[GroupAll]) {
			t.Errorf("NewStream(%+v).Patients() = %d, want %d", opts, s.Patients(), len(d.Groups[GroupAll]))
		}
		if !maps.EqualFunc(s.Medications(), d.Medications, bytes.Equal) {
			t.Errorf("NewStream(%+v).Medications() differ from Generate's", opts)
		}
		if !maps.EqualFunc(s.Groups(), d.Groups, slices.Equal) {
			t.Errorf("NewStream(%+v).Groups() = %v, want %v", opts, s.Groups(), d.Groups)
		}
		for _, workers := range []int{1, 3} {
			got := map[string][][]byte{}
			err := s.Each(workers, func(b *Batch) error {
				for _, typ := range d.Types {
					got[typ] = append(got[typ], b.Lines(typ)...)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, typ := range d.Types {
				if !slices.EqualFunc(got[typ], d.Resources[typ], bytes.Equal) {
					t.Errorf("NewStream(%+v).Each(%d) %s lines differ from Generate's", opts, workers, typ)
				}
			}
		}
		for id, want := range d.Binaries {
			b, ok := s.Binary(id)
			if !ok || b.ContentType != want.ContentType || !bytes.Equal(b.Data, want.Data) {
				t.Errorf("NewStream(%+v).Binary(%q) = %q, %v, want %q, true", opts, id, b.ContentType, ok, want.ContentType)
			}
		}
	}
}

func TestStreamBinaryUnknown(t *testing.T) {
	opts := Options{Patients: 5, Seed: 1}
	s, d := NewStream(opts), Generate(opts)
	other := Generate(Options{Patients: 5, Seed: 2})
	unknown := []string{"", "nope", "12", "e00000000000", "00000000-0000-4000-8000-000000000000",
		other.Groups[GroupAll][0], d.Groups[GroupAll][1]}
	for id := range other.Binaries {
		// Cerner-like numbers do not depend on the seed: one may name a Binary of both.
		if _, both := d.Binaries[id]; !both {
			unknown = append(unknown, id)
		}
	}
	// A Binary of a patient past the last one.
	unknown = append(unknown, makeID(datasetKey(opts), tBinary, 5, 0))
	for _, id := range unknown {
		if _, ok := s.Binary(id); ok {
			t.Errorf("Binary(%q) = _, true, want false", id)
		}
	}
	if _, ok := NewStream(Options{}).Binary(HelloWorldBinaryID); ok {
		t.Errorf("Binary(%q) of an empty data set = _, true, want false", HelloWorldBinaryID)
	}
}

func TestStreamStops(t *testing.T) {
	s := NewStream(Options{Patients: 200})
	stop := errors.New("stop")
	n := 0
	err := s.Each(2, func(*Batch) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if err != stop || n != 3 {
		t.Errorf("Each stopping at batch 3 = %v after %d batches, want %v after 3", err, n, stop)
	}
}

func TestUnmix64(t *testing.T) {
	for _, x := range []uint64{0, 1, 2, 0x2545f4914f6cdd1d, 1<<63 | 5, ^uint64(0)} {
		if got := unmix64(mix64(x)); got != x {
			t.Errorf("unmix64(mix64(%#x)) = %#x, want %#x", x, got, x)
		}
	}
}

func TestParseID(t *testing.T) {
	key := datasetKey(Options{Seed: 7})
	for _, c := range [][3]int{{tBinary, 0, 0}, {tBinary, 12345, 99}, {tPatient, 3, 0}, {tObservation, 1 << 20, 1 << 27}} {
		for ord := c[2]; ord < c[2]+40; ord++ { // ids of every style
			id := makeID(key, c[0], c[1], ord)
			typ, p, ok := parseID(key, false, id)
			if c[0] == tBinary && (!ok || typ != c[0] || p != c[1]) {
				t.Errorf("parseID(%q) = %d, %d, %v, want %d, %d, true", id, typ, p, ok, c[0], c[1])
			}
			if ok && makeID(key, typ, p, ord) != id {
				t.Errorf("parseID(%q) = %d, %d: makeID gives another id", id, typ, p)
			}
		}
	}
}

func FuzzParseID(f *testing.F) {
	key := datasetKey(Options{Seed: 1})
	for ord := range 8 {
		f.Add(makeID(key, tBinary, 3, ord))
	}
	f.Add("e0000000000z")
	f.Add("10000000")
	f.Fuzz(func(t *testing.T, id string) {
		typ, p, ok := parseID(key, false, id)
		if !ok {
			return
		}
		x, bitsOK := idBits(id)
		if bitsOK && (unmix64(x)^key)>>56 != uint64(typ) {
			t.Errorf("parseID(%q) type %d does not match its bits", id, typ)
		}
		if p < 0 || p >= maxPatients {
			t.Errorf("parseID(%q) patient %d out of range", id, p)
		}
	})
}

// TestLongIDs: with LongIDs every id passes FHIR R4's 64 characters, references carry the same
// long ids, and Binary still finds an attachment by its long id (the id stays invertible).
func TestLongIDs(t *testing.T) {
	opts := Options{Patients: 2, Seed: 3, LongIDs: true}
	d := Generate(opts)
	idRE := regexp.MustCompile(`"id":"([^"]*)"`)
	n := 0
	for typ, lines := range d.Resources {
		for _, line := range lines {
			m := idRE.FindSubmatch(line)
			if m == nil || len(m[1]) != LongIDLength {
				t.Errorf("%s: first id %q, want %d characters", typ, m, LongIDLength)
			}
			n++
		}
	}
	if n == 0 {
		t.Fatal("no resources")
	}
	for id := range d.Medications {
		if len(id) <= 64 {
			t.Errorf("Medication id %q: %d characters, want > 64", id, len(id))
		}
	}
	for _, ids := range d.Groups {
		for _, id := range ids {
			if len(id) != LongIDLength {
				t.Errorf("Group member %q: %d characters, want %d", id, len(id), LongIDLength)
			}
		}
	}
	s := NewStream(opts)
	for id, want := range d.Binaries {
		if id == HelloWorldBinaryID {
			continue
		}
		got, ok := s.Binary(id)
		if !ok || !bytes.Equal(got.Data, want.Data) {
			t.Errorf("Binary(%q) = _, %v, want the attachment", id, ok)
		}
		if _, ok := s.Binary(shorten(id)); ok {
			t.Errorf("Binary(%q) found an attachment by the short id in a long-id data set", shorten(id))
		}
	}
}
