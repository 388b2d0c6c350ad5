package store

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// countingBackend stages nothing: BenchmarkLoadReader measures Load's own reading,
// validating and routing, without a database's cost.
type countingBackend struct{ rows int }

func (c *countingBackend) Begin(context.Context) (Batch, error)     { return c, nil }
func (c *countingBackend) Add(string, string, []byte, string) error { c.rows++; return nil }
func (c *countingBackend) Delete(string, string, string) error      { return nil }
func (c *countingBackend) Commit(context.Context, Plan) error       { return nil }
func (c *countingBackend) Rollback() error                          { return nil }
func (c *countingBackend) Existing(context.Context, string, []string) ([]string, error) {
	return nil, nil
}

// BenchmarkLoadReader loads 8 MiB of small Observation lines, the common case per line.
func BenchmarkLoadReader(b *testing.B) {
	var sb strings.Builder
	for i := 0; sb.Len() < 8<<20; i++ {
		fmt.Fprintf(&sb, `{"resourceType":"Observation","id":"o%d","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]},"subject":{"reference":"Patient/p%d"},"valueQuantity":{"value":%d.5,"unit":"mg/dL"}}`+"\n", i, i%500, i%300)
	}
	body := sb.String()
	src := Source{Dir: "bench", Export: Export{Group: "g", Time: time.Unix(0, 0)},
		Files: []File{{Path: "Observation.000.ndjson", ResourceType: "Observation",
			Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }}}}
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		be := &countingBackend{}
		if _, err := Load(b.Context(), be, src, Options{}); err != nil || be.rows == 0 {
			b.Fatalf("Load = %d rows, %v", be.rows, err)
		}
	}
}
