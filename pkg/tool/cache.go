package tool

import (
	"os"
	"path/filepath"
)

// RecordDir is where bulk-kickoff keeps each export's record for bulk-poll and bulk-fetch
// (bulk.Record): $BULK_CACHE_DIR/exports, else bulkpipe/exports in the user's cache folder
// ($XDG_CACHE_HOME or ~/.cache on Linux). It is "" when neither is known: the tools then work
// without records.
func RecordDir() string {
	if d := os.Getenv("BULK_CACHE_DIR"); d != "" {
		return filepath.Join(d, "exports")
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "bulkpipe", "exports")
}
