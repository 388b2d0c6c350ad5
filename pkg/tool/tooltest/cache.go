package tooltest

import (
	"fmt"
	"os"
)

// PrivateCache wraps a package's *testing.M for testscript.Main so that the tools its tests run
// in-process keep bulk-kickoff's export records (BULK_CACHE_DIR) in a temporary folder, removed
// afterwards, never in the user's cache.
func PrivateCache(m interface{ Run() int }) interface{ Run() int } { return privateCache{m} }

type privateCache struct{ m interface{ Run() int } }

func (p privateCache) Run() int {
	dir, err := os.MkdirTemp("", "bulkpipe-test-cache-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	os.Setenv("BULK_CACHE_DIR", dir)
	return p.m.Run()
}
