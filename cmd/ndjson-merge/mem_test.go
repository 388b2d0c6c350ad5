//go:build linux

package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkpipe/bulkpipe/pkg/tool/tooltest"
)

// TestMemBound runs ndjson-merge as a process on input four times --mem and checks that its peak
// RSS (tooltest.PeakRSS) stays within --mem + 64 MiB (issue 14): the sort's buffers, the merge's
// buffers and the garbage of parsing all fit the budget.
func TestMemBound(t *testing.T) {
	const mem = 8 << 20
	dir := t.TempDir()
	var srcs []string
	ids := map[string]bool{}
	pad := strings.Repeat("x", 900)
	for s := range 4 {
		p := filepath.Join(dir, fmt.Sprintf("slice%d.ndjson", s))
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		w := bufio.NewWriter(f)
		// 8 MiB per slice; every fifth id repeats one of the previous slice
		for i := range 8 << 10 {
			id := fmt.Sprintf("o%d-%d", s, i*7919%(8<<10))
			if s > 0 && i%5 == 0 {
				id = fmt.Sprintf("o%d-%d", s-1, i*7919%(8<<10))
			}
			ids[id] = true
			fmt.Fprintf(w, `{"resourceType":"Observation","id":%q,"meta":{"lastUpdated":"2024-01-0%dT00:00:00Z"},"note":%q}`+"\n", id, 1+s, pad)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		srcs = append(srcs, p)
	}
	// Built here rather than run as the test binary: under make test's -race, the detector's
	// shadow memory would be most of the peak.
	tool := filepath.Join(dir, "ndjson-merge")
	if b, err := exec.Command("go", "build", "-o", tool, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	out := filepath.Join(dir, "merged")
	args := append(srcs, "--dir", out, "--mem", fmt.Sprint(mem), "--export-timestamp", "2024-02-01T00:00:00Z", "--quiet")
	output, rss, err := tooltest.PeakRSS(exec.Command(tool, args...))
	if err != nil {
		t.Fatalf("ndjson-merge: %v\n%s", err, output)
	}
	t.Logf("--mem %d MiB: peak RSS %d MiB", mem>>20, rss>>20)
	if got, want := rss, int64(mem+64<<20); got > want {
		t.Errorf("ndjson-merge --mem %d: peak RSS %d MiB, want at most %d MiB", mem, got>>20, want>>20)
	}
	b, err := os.ReadFile(filepath.Join(out, "Observation.000.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Count(string(b), "\n"), len(ids); got != want {
		t.Errorf("merged %d Observations, want %d", got, want)
	}
}
