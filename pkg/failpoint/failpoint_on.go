//go:build failpoint

package failpoint

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// Enabled is true in builds whose failpoints work (-tags failpoint); tests that kill a tool at a
// failpoint skip without it.
const Enabled = true

type point struct {
	at   int64
	hits atomic.Int64
}

var (
	once   sync.Once
	armed  atomic.Bool
	points map[string]*point
)

func load() {
	spec := os.Getenv(Env)
	if spec == "" {
		return
	}
	points = map[string]*point{}
	for _, item := range strings.Split(spec, ",") {
		name, n, _ := strings.Cut(strings.TrimSpace(item), ":")
		at, err := strconv.ParseInt(n, 10, 64)
		if err != nil || at < 1 {
			at = 1
		}
		points[name] = &point{at: at}
	}
	armed.Store(len(points) > 0)
}

// Hit marks that execution reached the named point and kills the process, without running
// deferred functions or flushing anything, when BULKPIPE_CRASH selects this hit.
func Hit(name string) {
	once.Do(load)
	if !armed.Load() {
		return
	}
	p := points[name]
	if p == nil {
		return
	}
	if p.hits.Add(1) == p.at {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is delivered asynchronously; never run past the failpoint
	}
}
