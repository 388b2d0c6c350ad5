package exportdir

import (
	"strings"

	"github.com/bulkpipe/bulkpipe/pkg/fhirjson"
)

// Deletion is one resource a deleted/ Bundle says the server removed since _since.
type Deletion struct {
	ResourceType, ID string
}

// Deletions reads one line of a deleted/ file. The spec says each line is a transaction Bundle whose
// entries are DELETE requests with a relative "Type/id" url; anything else (another Bundle type,
// another method, an absolute or search url) is ignored rather than guessed at, since a wrong guess
// deletes data (DESIGN.md §7).
func Deletions(bundleLine []byte) []Deletion {
	if fhirjson.BundleType(bundleLine) != "transaction" {
		return nil
	}
	var ds []Deletion
	for _, r := range fhirjson.EntryRequests(bundleLine) {
		if r.Method != "DELETE" {
			continue
		}
		if t, id, ok := strings.Cut(r.URL, "/"); ok && isTypeName(t) && fhirjson.ServerID(id) {
			ds = append(ds, Deletion{t, id})
		}
	}
	return ds
}
