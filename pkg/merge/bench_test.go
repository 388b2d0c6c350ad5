package merge

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest/synth"
)

// BenchmarkMerge merges 10 slices of realistic Observations (about 20 % duplicates), in memory and
// with spilled runs; MB/s is of input bytes. scripts/bench/merge.sh compares the binary with cat and
// sort -u at sizes that do not fit a unit test.
func BenchmarkMerge(b *testing.B) {
	dir := b.TempDir()
	obs := synth.Generate(synth.Options{Patients: 60, Seed: 1}).Resources["Observation"]
	var srcs []string
	var size int64
	for s := range 10 {
		var sb strings.Builder
		for i, o := range obs {
			// slice s holds every 10th Observation, plus every 50th of the next slice's: 20 % copies
			if i%10 == s || (i%10 == (s+1)%10 && i%50 < 10) {
				sb.Write(o)
				sb.WriteByte('\n')
			}
		}
		p := filepath.Join(dir, fmt.Sprint("slice", s))
		writeSlice(b, p, slice{group: "g", time: fmt.Sprintf("2024-01-01T00:%02d:00Z", s),
			files: map[string]string{"Observation.000.ndjson": sb.String()}})
		srcs = append(srcs, p)
		size += int64(sb.Len())
	}
	for _, bm := range []struct {
		name string
		mem  int64
	}{{"memory", 512 << 20}, {"spill", 1 << 20}} {
		b.Run(bm.name, func(b *testing.B) {
			b.SetBytes(size)
			for i := 0; b.Loop(); i++ {
				out := filepath.Join(dir, fmt.Sprint(bm.name, i))
				o, _ := testOptions(b, out, srcs...)
				o.Mem = bm.mem
				if _, err := Run(b.Context(), o); err != nil {
					b.Fatal(err)
				}
				os.RemoveAll(out)
			}
		})
	}
}
