package exportdir

import (
	"bufio"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/bulkpipe/bulkpipe/pkg/atomicfile"
)

// MetaDir is the folder's private subfolder (DESIGN.md §3): state and lock. It is part of the archive.
const MetaDir = ".bulkpipe"

// stateVersion is written into state.json so a future format change is detected, not misread.
const stateVersion = 1

// State records what was verified in an export folder (DESIGN.md §3): a rerun trusts it instead of
// downloading again, and ndjson-inline updates it after rewriting a file, so the rewritten file is
// never fetched over.
type State struct {
	Version         int         `json:"version"`
	ExportID        string      `json:"exportId"`
	TransactionTime string      `json:"transactionTime"`
	Files           []FileState `json:"files"`
}

// FileState is the identity and checksum of one verified file. The identity (export transaction
// time, item type, resource type, ordinal) says which manifest entry it is; name, size, SHA-256 and
// lines say what is on disk now.
type FileState struct {
	Name         string   `json:"name"` // relative to DIR, slash-separated: "deleted/Bundle.000.ndjson"
	ItemType     ItemType `json:"itemType"`
	ResourceType string   `json:"resourceType"`
	Ordinal      int      `json:"ordinal"`
	Size         int64    `json:"size"`
	SHA256       string   `json:"sha256"` // hex
	Lines        int      `json:"lines"`
	Inlined      bool     `json:"inlined,omitempty"` // rewritten by ndjson-inline since download
}

// File returns the state of the file named name (relative to DIR).
func (s *State) File(name string) (FileState, bool) {
	for _, f := range s.Files {
		if f.Name == name {
			return f, true
		}
	}
	return FileState{}, false
}

// Put records f, replacing the entry of the same name.
func (s *State) Put(f FileState) {
	for i := range s.Files {
		if s.Files[i].Name == f.Name {
			s.Files[i] = f
			return
		}
	}
	s.Files = append(s.Files, f)
}

func statePath(dir string) string { return filepath.Join(dir, MetaDir, "state.json") }

// ReadState reads DIR/.bulkpipe/state.json and the journal of files recorded since it was written
// (StateJournal). A folder without either has an empty state and no error: nothing is verified yet.
func ReadState(dir string) (*State, error) {
	s, _, err := readState(dir)
	return s, err
}

// readState is ReadState that also returns the base of the snapshot read: what journal lines
// that extend it carry.
func readState(dir string) (*State, string, error) {
	path := statePath(dir)
	b, err := os.ReadFile(path)
	s := &State{Version: stateVersion}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		b = nil
	case err != nil:
		return nil, "", fmt.Errorf("read state: %w", err)
	default:
		if err := json.Unmarshal(b, s); err != nil {
			return nil, "", fmt.Errorf("read state %s: %w", path, err)
		}
		if s.Version > stateVersion {
			return nil, "", fmt.Errorf("read state %s: version %d was written by a newer bulkpipe (this one knows %d)", path, s.Version, stateVersion)
		}
		s.Version = stateVersion
	}
	base := snapshotBase(b)
	if err := s.replay(dir, base); err != nil {
		return nil, "", err
	}
	return s, base, nil
}

// WriteState replaces DIR/.bulkpipe/state.json atomically, so a crash leaves the old state or the
// new one, never a mix, and then removes the journal, whose entries s holds (it was read with
// ReadState). A journal that a crash keeps past this point extends the old snapshot, which
// readers can tell, and is ignored.
func WriteState(dir string, s *State) error {
	_, err := writeState(dir, s)
	return err
}

// writeState is WriteState that returns the base of the snapshot written.
func writeState(dir string, s *State) (string, error) {
	if err := MkdirNoFollow(dir, MetaDir); err != nil {
		return "", fmt.Errorf("write state: %w", err)
	}
	f, err := atomicfile.Create(statePath(dir))
	if err != nil {
		return "", fmt.Errorf("write state: %w", err)
	}
	defer f.Abort()
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 64<<10)
	if err := encodeState(w, s); err != nil {
		return "", fmt.Errorf("write state: %w", err)
	}
	if err := w.Flush(); err != nil {
		return "", fmt.Errorf("write state: %w", err)
	}
	if err := f.Commit(); err != nil {
		return "", err
	}
	// A journal that cannot be removed does no harm: it extends another snapshot, so readers
	// skip it and the next StateJournal truncates it.
	os.Remove(journalPath(dir))
	return baseOfSum(h.Sum(nil)), nil
}

// encodeState writes s as json.MarshalIndent(s, "", "  ") and a newline would, one file entry
// at a time: the state of 50,000 files is about 14 MB, which MarshalIndent would hold two or
// three times over in memory at once, at every compaction.
func encodeState(w io.Writer, s *State) error {
	head, err := json.MarshalIndent(stateHead{Version: stateVersion, ExportID: s.ExportID, TransactionTime: s.TransactionTime}, "", "  ")
	if err != nil {
		return err
	}
	// head ends with the closing "\n}"; the files go before it.
	head = append(head[:len(head)-2], ",\n  \"files\": ["...)
	if _, err := w.Write(head); err != nil {
		return err
	}
	for i := range s.Files {
		b, err := json.MarshalIndent(&s.Files[i], "    ", "  ")
		if err != nil {
			return err
		}
		sep := ",\n    "
		if i == 0 {
			sep = "\n    "
		}
		if _, err := io.WriteString(w, sep); err != nil {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	tail := "]\n}\n"
	if len(s.Files) > 0 {
		tail = "\n  ]\n}\n"
	}
	_, err = io.WriteString(w, tail)
	return err
}

// stateHead is State without its files, in State's field order, for encodeState.
type stateHead struct {
	Version         int    `json:"version"`
	ExportID        string `json:"exportId"`
	TransactionTime string `json:"transactionTime"`
}
