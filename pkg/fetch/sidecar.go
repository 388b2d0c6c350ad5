package fetch

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/bulkpipe/bulkpipe/pkg/atomicfile"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
)

// Encodings of the response a .part was started from.
const (
	encIdentity = "identity"
	encGzip     = "gzip"     // Content-Encoding: gzip, decoded on the fly
	encRawGzip  = "raw-gzip" // gzip bytes without Content-Encoding (a stored .gz file), decoded too
)

// sidecar is what a .part needs to resume: the validator of the response it came from, for
// If-Range, and the length of the whole file when the server said it. It lives under
// DIR/.bulkpipe/parts/, beside nothing the user reads.
type sidecar struct {
	TransactionTime string `json:"transactionTime"` // the export the .part belongs to
	ETag            string `json:"etag,omitempty"`
	LastModified    string `json:"lastModified,omitempty"`
	Encoding        string `json:"encoding"`
	Length          int64  `json:"length"` // decoded length of the whole file; -1 when unknown
}

// validator is the If-Range value for a resume, "" when the .part cannot be resumed. Range counts
// bytes of the identity representation, which are the .part's bytes however they came: but a
// gzip response's ETag names the gzip variant, so only its Last-Modified can vouch for the
// identity bytes; weak ETags are not allowed in If-Range (RFC 9110 §13.1.5); and gzip bytes
// served as the file itself have no identity offset at all.
func (s *sidecar) validator() string {
	switch s.Encoding {
	case encIdentity:
		if s.ETag != "" && !strings.HasPrefix(s.ETag, "W/") {
			return s.ETag
		}
		return s.LastModified
	case encGzip:
		return s.LastModified
	}
	return ""
}

func sidecarPath(dir, rel string) string {
	return filepath.Join(dir, exportdir.MetaDir, "parts", filepath.FromSlash(rel)+".json")
}

func readSidecar(dir, rel string) (*sidecar, bool) {
	b, err := os.ReadFile(sidecarPath(dir, rel))
	if err != nil {
		return nil, false
	}
	var s sidecar
	if json.Unmarshal(b, &s) != nil || s.Encoding == "" {
		return nil, false
	}
	return &s, true
}

func writeSidecar(dir, rel string, s *sidecar) error {
	p := sidecarPath(dir, rel)
	sub := path.Dir(path.Join(exportdir.MetaDir, "parts", rel))
	if err := exportdir.MkdirNoFollow(dir, sub); err != nil {
		return err
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(p, append(b, '\n'), 0o644)
}

func removeSidecar(dir, rel string) {
	err := os.Remove(sidecarPath(dir, rel))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return
	}
}

// removePartsDir removes DIR/.bulkpipe/parts when nothing is left in it, so a finished folder
// holds only the state and the lock.
func removePartsDir(dir string) {
	root := filepath.Join(dir, exportdir.MetaDir, "parts")
	for _, sub := range []string{"deleted", "error", ""} {
		os.Remove(filepath.Join(root, sub)) // fails, harmlessly, unless empty
	}
}
