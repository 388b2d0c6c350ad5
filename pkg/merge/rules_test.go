package merge

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// in is one input entry of a rules test: a copy ("lu" may be "" for missing) or a delete of key.
type in struct {
	slice int
	del   bool
	key   string // "Type/id"
	lu    string
	tag   string // identifies the copy in the result
}

// runSort feeds ins to a sorter with the given budget and returns, per key, the tag of the surviving
// copy or "DELETE" when the key's delete is kept.
func runSort(t *testing.T, times []time.Time, ins []in, mem int64) (map[string]string, *sorter) {
	t.Helper()
	s := newSorter(newRules(times), mem, t.TempDir())
	for i, x := range ins {
		typ, id, _ := strings.Cut(x.key, "/")
		e := entry{slice: uint32(x.slice), seq: uint64(i), key: makeKey(nil, typ, id)}
		if x.del {
			e.kind = kindDelete
		} else {
			e.body = []byte(x.tag)
			if x.lu != "" {
				var ok bool
				if e.lu, ok = parseInstant(x.lu); !ok {
					t.Fatalf("bad instant %q in test", x.lu)
				}
			}
		}
		if err := s.add(t.Context(), &e); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]string{}
	var last []byte
	err := s.each(t.Context(), func(e *entry) error {
		if last != nil && bytes.Compare(last, e.key) >= 0 {
			t.Errorf("keys out of order: %q then %q", last, e.key)
		}
		last = bytes.Clone(e.key)
		typ, id := splitKey(e.key)
		k := string(typ) + "/" + string(id)
		if e.kind == kindDelete {
			got[k] = "DELETE"
		} else {
			got[k] = string(e.body)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got, s
}

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestRules(t *testing.T) {
	t1, t2, t3 := ts("2024-01-01T00:00:00Z"), ts("2024-02-01T00:00:00Z"), ts("2024-03-01T00:00:00Z")
	tests := []struct {
		name  string
		times []time.Time
		ins   []in
		want  map[string]string
	}{
		{"newest lastUpdated wins", []time.Time{t1, t2},
			[]in{{0, false, "Observation/1", "2023-05-01T00:00:00Z", "a"}, {1, false, "Observation/1", "2023-04-01T00:00:00Z", "b"}},
			map[string]string{"Observation/1": "a"}},
		{"instants, not strings", []time.Time{t1, t1},
			// 10:00+02:00 is 08:00Z: older than 09:00Z although it sorts later as a string
			[]in{{0, false, "Observation/1", "2023-05-01T10:00:00+02:00", "a"}, {1, false, "Observation/1", "2023-05-01T09:00:00Z", "b"}},
			map[string]string{"Observation/1": "b"}},
		{"fraction digits compared as time", []time.Time{t1, t1},
			[]in{{0, false, "Observation/1", "2023-05-01T09:00:00.5Z", "a"}, {1, false, "Observation/1", "2023-05-01T09:00:00.123Z", "b"}},
			map[string]string{"Observation/1": "a"}},
		{"missing lastUpdated sorts oldest", []time.Time{t1, t2},
			[]in{{0, false, "Observation/1", "2000-01-01T00:00:00Z", "a"}, {1, false, "Observation/1", "", "b"}},
			map[string]string{"Observation/1": "a"}},
		{"tie goes to the later slice time", []time.Time{t2, t1},
			[]in{{0, false, "Observation/1", "2023-05-01T00:00:00Z", "a"}, {1, false, "Observation/1", "2023-05-01T00:00:00Z", "b"}},
			map[string]string{"Observation/1": "a"}},
		{"both missing: later slice time", []time.Time{t1, t2},
			[]in{{0, false, "Observation/1", "", "a"}, {1, false, "Observation/1", "", "b"}},
			map[string]string{"Observation/1": "b"}},
		{"same time: later argument", []time.Time{t1, t1},
			[]in{{0, false, "Observation/1", "2023-05-01T00:00:00Z", "a"}, {1, false, "Observation/1", "2023-05-01T00:00:00Z", "b"}},
			map[string]string{"Observation/1": "b"}},
		{"same slice: later line", []time.Time{t1},
			[]in{{0, false, "Observation/1", "", "a"}, {0, false, "Observation/1", "", "b"}},
			map[string]string{"Observation/1": "b"}},
		{"types and ids are separate", []time.Time{t1},
			[]in{{0, false, "Observation/1", "", "o"}, {0, false, "Patient/1", "", "p"}},
			map[string]string{"Observation/1": "o", "Patient/1": "p"}},
		{"delete removes a copy from an earlier slice", []time.Time{t1, t2},
			[]in{{0, false, "Observation/1", "2023-05-01T00:00:00Z", "a"}, {1, true, "Observation/1", "", ""}},
			map[string]string{"Observation/1": "DELETE"}},
		{"delete spares a later slice", []time.Time{t2, t1},
			[]in{{0, false, "Observation/1", "2023-05-01T00:00:00Z", "a"}, {1, true, "Observation/1", "", ""}},
			map[string]string{"Observation/1": "a"}},
		{"delete spares its own slice", []time.Time{t1},
			[]in{{0, false, "Observation/1", "", "a"}, {0, true, "Observation/1", "", ""}},
			map[string]string{"Observation/1": "a"}},
		{"delete spares a slice of the same time", []time.Time{t1, t1},
			[]in{{0, false, "Observation/1", "", "a"}, {1, true, "Observation/1", "", ""}},
			map[string]string{"Observation/1": "a"}},
		{"delete applies before the newest copy is chosen", []time.Time{t1, t2, t3},
			// slice 0 has the newer lastUpdated but was deleted at t2; slice 2 re-created it
			[]in{{0, false, "Observation/1", "2023-06-01T00:00:00Z", "old"}, {1, true, "Observation/1", "", ""},
				{2, false, "Observation/1", "2023-05-01T00:00:00Z", "recreated"}},
			map[string]string{"Observation/1": "recreated"}},
		{"latest delete counts", []time.Time{t1, t2, t3},
			[]in{{1, false, "Observation/1", "", "a"}, {0, true, "Observation/1", "", ""}, {2, true, "Observation/1", "", ""}},
			map[string]string{"Observation/1": "DELETE"}},
		{"delete of a key absent from every slice is kept", []time.Time{t1},
			[]in{{0, true, "Observation/9", "", ""}},
			map[string]string{"Observation/9": "DELETE"}},
		{"delete of another type leaves this one", []time.Time{t1, t2},
			[]in{{0, false, "Observation/1", "", "a"}, {1, true, "Patient/1", "", ""}},
			map[string]string{"Observation/1": "a", "Patient/1": "DELETE"}},
	}
	for _, tt := range tests {
		for _, mem := range []int64{64 << 20, 1} {
			got, _ := runSort(t, tt.times, tt.ins, mem)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("%s (mem %d): merge (-want +got):\n%s", tt.name, mem, diff)
			}
		}
	}
}

// reference applies the rules of DESIGN.md §6 directly, with no pruning and no sort.
func reference(times []time.Time, ins []in) map[string]string {
	byKey := map[string][]int{}
	for i, x := range ins {
		byKey[x.key] = append(byKey[x.key], i)
	}
	out := map[string]string{}
	for k, idx := range byKey {
		var delTime time.Time
		hasDel := false
		for _, i := range idx {
			if ins[i].del && (!hasDel || times[ins[i].slice].After(delTime)) {
				delTime, hasDel = times[ins[i].slice], true
			}
		}
		best := -1
		for _, i := range idx {
			x := ins[i]
			if x.del || (hasDel && times[x.slice].Before(delTime)) {
				continue
			}
			if best < 0 || newer(times, x, i, ins[best], best) {
				best = i
			}
		}
		switch {
		case best >= 0:
			out[k] = ins[best].tag
		case hasDel:
			out[k] = "DELETE"
		}
	}
	return out
}

func newer(times []time.Time, a in, ai int, b in, bi int) bool {
	la, oka := parseInstant(a.lu)
	lb, okb := parseInstant(b.lu)
	_, _ = oka, okb
	if c := la.compare(lb); c != 0 {
		return c > 0
	}
	if c := times[a.slice].Compare(times[b.slice]); c != 0 {
		return c > 0
	}
	if a.slice != b.slice {
		return a.slice > b.slice
	}
	return ai > bi
}

// TestSpillMatchesMemory forces the spill path with a tiny budget (and several merge passes) and
// checks it against the in-memory path and the reference.
func TestSpillMatchesMemory(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	times := []time.Time{ts("2024-01-01T00:00:00Z"), ts("2024-01-02T00:00:00Z"), ts("2024-01-01T00:00:00Z"), ts("2023-12-01T00:00:00Z")}
	var ins []in
	for i := range 1200 {
		x := in{slice: rng.IntN(len(times)), key: fmt.Sprintf("%s/%d", []string{"Observation", "Patient", "Medication", "MedicationRequest"}[rng.IntN(4)], rng.IntN(800))}
		if rng.IntN(10) == 0 {
			x.del = true
		} else {
			x.tag = fmt.Sprintf(`{"n":%d,"pad":%q}`, i, strings.Repeat("x", rng.IntN(300)))
			if rng.IntN(5) > 0 {
				x.lu = fmt.Sprintf("2023-01-%02dT00:00:00Z", 1+rng.IntN(5))
			}
		}
		ins = append(ins, x)
	}
	want := reference(times, ins)
	mem, _ := runSort(t, times, ins, 64<<20)
	if diff := cmp.Diff(want, mem); diff != "" {
		t.Errorf("in-memory merge differs from the reference (-want +got):\n%s", diff)
	}
	spilled, s := runSort(t, times, ins, 16<<10)
	if s.spilled == 0 || s.nextRun <= s.fanIn {
		t.Errorf("16 KiB budget: spilled %d bytes in %d runs (fan-in %d), want several merge passes", s.spilled, s.nextRun, s.fanIn)
	}
	if diff := cmp.Diff(want, spilled); diff != "" {
		t.Errorf("spilled merge differs from the reference (-want +got):\n%s", diff)
	}
}

func TestEntryRoundTrip(t *testing.T) {
	es := []entry{
		{kind: kindResource, slice: 3, seq: 1 << 40, lu: instant{sec: -5, nsec: 999999999, ok: true}, key: []byte("Patient\x00a"), body: []byte(`{"x":1}`)},
		{kind: kindDelete, slice: 0, seq: 0, key: []byte("Observation\x00b")},
	}
	var buf []byte
	for i := range es {
		buf = appendEntry(buf, &es[i])
	}
	rr := newRunReader(bytes.NewReader(buf), make([]byte, entryHeader+8)) // smaller than the first entry: the reader grows it
	for i, want := range es {
		if err := rr.next(); err != nil {
			t.Fatalf("next() #%d = %v", i, err)
		}
		got := rr.cur
		got.key, got.body = slices.Clone(got.key), slices.Clone(got.body)
		if want.body == nil {
			want.body = []byte{}
		}
		if diff := cmp.Diff(want, got, cmp.AllowUnexported(entry{}, instant{})); diff != "" {
			t.Errorf("entry %d round trip (-want +got):\n%s", i, diff)
		}
	}
	if err := rr.next(); err == nil {
		t.Errorf("next() at the end = nil, want io.EOF")
	}
}

func FuzzDecodeEntry(f *testing.F) {
	e := entry{kind: kindResource, slice: 1, seq: 2, lu: instant{sec: 3, ok: true}, key: []byte("A\x00b"), body: []byte("{}")}
	f.Add(appendEntry(nil, &e))
	f.Add([]byte{})
	f.Add([]byte{3, 0xff})
	f.Fuzz(func(t *testing.T, p []byte) {
		var e entry
		if err := decodeEntry(p, &e); err != nil {
			return
		}
		e.kind &= 1
		rr := newRunReader(bytes.NewReader(appendEntry(nil, &e)), nil)
		if err := rr.next(); err != nil {
			t.Fatalf("decodeEntry(%q) gave %+v, which does not read back: %v", p, e, err)
		}
		if !bytes.Equal(rr.cur.key, e.key) || !bytes.Equal(rr.cur.body, e.body) || rr.cur.lu != e.lu || rr.cur.seq != e.seq {
			t.Fatalf("decodeEntry(%q) = %+v, read back as %+v", p, e, rr.cur)
		}
	})
}

// TestSpillOversized mixes entries larger than a whole arena (each written as a run of its own, and
// read back through a run buffer smaller than it) with small ones, and checks the reference.
func TestSpillOversized(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	times := []time.Time{ts("2024-01-01T00:00:00Z"), ts("2024-01-02T00:00:00Z")}
	var ins []in
	for i := range 300 {
		x := in{slice: rng.IntN(len(times)), key: fmt.Sprintf("Patient/%d", rng.IntN(100))}
		size := rng.IntN(200)
		if i%25 == 0 {
			size = 3 * minArena
		}
		x.tag = fmt.Sprintf(`{"n":%d,"pad":%q}`, i, strings.Repeat("y", size))
		x.lu = fmt.Sprintf("2023-01-%02dT00:00:00Z", 1+rng.IntN(5))
		ins = append(ins, x)
	}
	got, s := runSort(t, times, ins, 1<<10)
	if s.nextRun < 12 {
		t.Errorf("1 KiB budget: %d runs, want one per oversized entry at least", s.nextRun)
	}
	if diff := cmp.Diff(reference(times, ins), got); diff != "" {
		t.Errorf("merge with oversized entries differs from the reference (-want +got):\n%s", diff)
	}
}

// TestSorterErrors checks that a failing spill (its folder gone) and a failing consumer both end
// the sort with their error, with the spilling and merging goroutines stopped.
func TestSorterErrors(t *testing.T) {
	entries := func(s *sorter) error {
		for i := range 2000 {
			e := entry{seq: uint64(i), key: makeKey(nil, "Patient", fmt.Sprint(i%700)), body: []byte(strings.Repeat("z", 100))}
			if err := s.add(t.Context(), &e); err != nil {
				return err
			}
		}
		return nil
	}
	t.Run("spill", func(t *testing.T) {
		s := newSorter(newRules([]time.Time{ts("2024-01-01T00:00:00Z")}), 32<<10, filepath.Join(t.TempDir(), "gone"))
		defer s.close()
		err := entries(s)
		if err == nil {
			err = s.each(t.Context(), func(*entry) error { return nil })
		}
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("sort into a missing folder = %v, want an error wrapping fs.ErrNotExist", err)
		}
	})
	t.Run("consumer", func(t *testing.T) {
		s := newSorter(newRules([]time.Time{ts("2024-01-01T00:00:00Z")}), 32<<10, t.TempDir())
		defer s.close()
		if err := entries(s); err != nil {
			t.Fatal(err)
		}
		stop := errors.New("stop")
		n := 0
		err := s.each(t.Context(), func(*entry) error {
			if n++; n == 10 {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) || n != 10 {
			t.Errorf("each after its fn failed at the 10th key = %v after %d calls, want the fn's error after 10", err, n)
		}
	})
}
