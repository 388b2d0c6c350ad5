package bulk

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/atomicfile"
)

// Record is what bulk-kickoff learned about an export that later steps need and the status URL
// does not tell: bulk-poll and bulk-fetch read it, in another shell days later if need be, so
// that SMART auth works without repeating --fhir-url (DESIGN.md §1). It is written only by the
// user's own kickoff, from the URL the user gave and the server at that URL, so its FHIR base
// is a trusted origin (DESIGN.md §2, token safety).
type Record struct {
	StatusURL string   `json:"statusUrl"`
	FHIRBase  string   `json:"fhirBase"`           // the base of the kickoff URL the user gave
	TokenURL  string   `json:"tokenUrl,omitempty"` // the SMART token endpoint kickoff used
	ExportURL string   `json:"exportUrl"`          // the kickoff URL, for the log's Group
	Types     []string `json:"types,omitempty"`    // _type, for SMART scopes
	Created   string   `json:"created"`            // RFC 3339
}

// maxRecord bounds what LoadRecord reads: a record is a few hundred bytes.
const maxRecord = 1 << 20

// RecordPath is the file of statusURL's record in dir: named by the URL's SHA-256, so that a
// URL never becomes a path and a reader needs nothing but the status URL.
func RecordPath(dir, statusURL string) string {
	sum := sha256.Sum256([]byte(statusURL))
	return filepath.Join(dir, hex.EncodeToString(sum[:])+".json")
}

// SaveRecord writes r into dir (created 0700; the file is 0600 and appears complete or not at
// all). A dir that is a symbolic link is refused: the record decides where credentials go.
func SaveRecord(dir string, r Record, now time.Time) error {
	if r.StatusURL == "" || r.FHIRBase == "" {
		return errors.New("export record: no status URL or FHIR base")
	}
	if r.Created == "" {
		r.Created = now.UTC().Format(time.RFC3339)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("export record: %w", err)
	}
	if err := realDir(dir); err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(RecordPath(dir, r.StatusURL), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("export record: %w", err)
	}
	return nil
}

// LoadRecord reads statusURL's record from dir. It returns an error wrapping fs.ErrNotExist
// when there is none, and refuses a record that is a symbolic link or names another status URL.
func LoadRecord(dir, statusURL string) (*Record, error) {
	path := RecordPath(dir, statusURL)
	if err := realDir(dir); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("export record %s: a symbolic link, not read", path)
		}
		return nil, fmt.Errorf("export record: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRecord+1))
	if err != nil {
		return nil, fmt.Errorf("export record %s: %w", path, err)
	}
	if len(b) > maxRecord {
		return nil, fmt.Errorf("export record %s: larger than %d bytes", path, maxRecord)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("export record %s: %w", path, err)
	}
	if r.StatusURL != statusURL {
		return nil, fmt.Errorf("export record %s: it is for another status URL", path)
	}
	return &r, nil
}

// RemoveRecord deletes statusURL's record once the export is gone from the server; a missing
// record is not an error.
func RemoveRecord(dir, statusURL string) error {
	err := os.Remove(RecordPath(dir, statusURL))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("export record: %w", err)
	}
	return nil
}

// realDir refuses a records folder that is a symbolic link; a missing one is fs.ErrNotExist.
func realDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("export record: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("export record folder %s: not a folder (a symbolic link is not followed)", dir)
	}
	return nil
}

// maxRecordsScanned bounds LatestRecord's reading of a records folder that grew very large.
const maxRecordsScanned = 10000

// LatestRecord returns the newest record in dir of an export of Group group at the FHIR base
// base, or nil when there is none: the export a server refusing a new kickoff of that Group
// (Epic's one export per client and Group) most likely means. Unreadable records are skipped.
func LatestRecord(dir, base, group string) *Record {
	if realDir(dir) != nil {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var latest *Record
	for i, e := range entries {
		if i >= maxRecordsScanned {
			break
		}
		if filepath.Ext(e.Name()) != ".json" || !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		var r Record
		if err != nil || len(b) > maxRecord || json.Unmarshal(b, &r) != nil || r.FHIRBase != base {
			continue
		}
		t, _, err := ParseExportURL(r.ExportURL)
		if err != nil || t.Level != LevelGroup || t.Group != group {
			continue
		}
		if latest == nil || r.Created > latest.Created {
			latest = &r
		}
	}
	return latest
}
