package exportdir

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bulkpipe/bulkpipe/pkg/atomicfile"
)

// The state of a folder being downloaded is a snapshot (state.json) plus a journal beside it:
// one line per verified file, appended and synced, so that recording a file costs its own line
// rather than a rewrite of every file before it (50,000 rewrites of a growing state.json are
// O(n²) bytes). The journal is folded into the snapshot (compacted) when it has grown as long as
// the snapshot, which keeps the bytes written per file O(1) amortized, and when a run ends.
//
// Each line names the snapshot it extends by a hash of its bytes (its base); a compaction writes
// the new snapshot first and removes the journal after. A crash between the two leaves a journal
// whose base is the old snapshot, which readers ignore: its entries are in the new snapshot
// already, and replaying them could undo a later rewrite (ndjson-inline's) of the same file. A
// hash rather than a counter in state.json keeps state.json a function of the files it lists,
// so two runs that end with the same files leave the same bytes.
const journalName = "state.journal"

func journalPath(dir string) string { return filepath.Join(dir, MetaDir, journalName) }

// maxJournalLine bounds a journal line: a file's entry is a few hundred bytes, so a longer
// line is damage, not data.
const maxJournalLine = 64 << 10

// minCompact is the fewest journal lines that trigger a compaction: below it, folding a small
// journal into a small snapshot would cost more syncs than it saves bytes.
const minCompact = 1024

// snapshotBase names the bytes of a state.json (nil: none): the first 64 bits of their SHA-256,
// in hex, plenty to tell the snapshots of one folder apart.
func snapshotBase(b []byte) string {
	sum := sha256.Sum256(b)
	return baseOfSum(sum[:])
}

// baseOfSum is snapshotBase of the bytes whose SHA-256 is sum.
func baseOfSum(sum []byte) string { return hex.EncodeToString(sum[:8]) }

// journalEntry is one line of the journal: a file recorded (Put), files recorded together (Puts),
// or a file forgotten (Drop), extending the snapshot named Base. A group of files shares one line
// rather than taking one each because a crash can tear only the last write, and a write is a
// line: lines of one write could be torn anywhere, the first as well as the last.
type journalEntry struct {
	Base string      `json:"base"`
	Put  *FileState  `json:"put,omitempty"`
	Puts []FileState `json:"puts,omitempty"`
	Drop string      `json:"drop,omitempty"`
}

// valid reports whether the entry does exactly one thing.
func (e *journalEntry) valid() bool {
	n := 0
	for _, set := range []bool{e.Put != nil, len(e.Puts) > 0, e.Drop != ""} {
		if set {
			n++
		}
	}
	return n == 1
}

// replay applies the journal of dir to s, which was just read from the snapshot. Lines of
// another generation are skipped, and so is a last line without its newline: the write a crash
// cut short, whose file a rerun finds verified on disk and records again.
func (s *State) replay(dir, base string) error {
	path := journalPath(dir)
	f, err := OpenNoFollow(path, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrSymlink) {
		// Not a journal bulkpipe wrote: the next compaction replaces the link.
		return nil
	}
	if err != nil {
		return fmt.Errorf("read state: %w", err)
	}
	defer f.Close()
	index := make(map[string]int, len(s.Files))
	for i, fs := range s.Files {
		index[fs.Name] = i
	}
	dropped := false
	applied := false
	r := bufio.NewReaderSize(f, maxJournalLine)
	for line := 1; ; line++ {
		b, err := r.ReadSlice('\n')
		if errors.Is(err, io.EOF) {
			break // a torn last line (or none)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			return fmt.Errorf("read state %s:%d: line longer than %d bytes", path, line, maxJournalLine)
		}
		if err != nil {
			return fmt.Errorf("read state %s: %w", path, err)
		}
		var e journalEntry
		if err := json.Unmarshal(b, &e); err != nil || !e.valid() {
			if err == nil {
				err = errors.New("want one of put, puts and drop")
			}
			return fmt.Errorf("read state %s:%d: %w", path, line, err)
		}
		if e.Base != base {
			continue
		}
		applied = true
		if e.Put != nil {
			e.Puts = []FileState{*e.Put}
		}
		for _, f := range e.Puts {
			if i, ok := index[f.Name]; ok {
				s.Files[i] = f
			} else {
				index[f.Name] = len(s.Files)
				s.Files = append(s.Files, f)
			}
		}
		if e.Drop != "" {
			if i, ok := index[e.Drop]; ok {
				s.Files[i].Name = "" // removed below, in one pass
				delete(index, e.Drop)
				dropped = true
			}
		}
	}
	if dropped {
		s.Files = slices.DeleteFunc(s.Files, func(f FileState) bool { return f.Name == "" })
	}
	if applied {
		sortFiles(s.Files)
	}
	return nil
}

// sortFiles puts files in name order, so a folder's state does not depend on which download
// finished first.
func sortFiles(files []FileState) {
	slices.SortFunc(files, func(a, b FileState) int { return strings.Compare(a.Name, b.Name) })
}

// StateJournal keeps a folder's state on disk file by file while a tool records verified files
// (bulk-fetch): each Put appends one synced line to the journal, and the journal is folded into
// state.json when it has grown as long as the snapshot, and by Close. ReadState reads both, so
// readers see every file a Put returned for, whenever they read. Not safe for concurrent use;
// the folder's lock keeps other writers out.
type StateJournal struct {
	dir   string
	s     *State
	index map[string]int // name → position in s.Files
	f     *os.File       // the journal, open for appending; nil until the first entry
	base  string         // of the snapshot on disk, which the journal extends
	lines int            // entries appended since the last compaction
	snap  int            // files in state.json as last compacted (or read)
	stale bool           // a journal not written by this StateJournal may be on disk
	min   int            // minCompact; tests lower it
}

// OpenStateJournal reads the state of dir (snapshot and journal) for recording more files. It
// writes nothing until the first change.
func OpenStateJournal(dir string) (*StateJournal, error) {
	s, base, err := readState(dir)
	if err != nil {
		return nil, err
	}
	j := &StateJournal{dir: dir, s: s, base: base, snap: len(s.Files), min: minCompact}
	j.reindex()
	if _, err := os.Lstat(journalPath(dir)); err == nil {
		j.stale = true
	}
	return j, nil
}

func (j *StateJournal) reindex() {
	j.index = make(map[string]int, len(j.s.Files))
	for i, f := range j.s.Files {
		j.index[f.Name] = i
	}
}

// State is the state as recorded so far. Its Files are in no particular order until the next
// compaction; callers read it and change it only through the StateJournal.
func (j *StateJournal) State() *State { return j.s }

// File returns the entry of the file named name (relative to DIR).
func (j *StateJournal) File(name string) (FileState, bool) {
	i, ok := j.index[name]
	if !ok {
		return FileState{}, false
	}
	return j.s.Files[i], true
}

// Put records f, replacing the entry of the same name, durably: when Put returns, a crash does
// not lose it.
func (j *StateJournal) Put(f FileState) error {
	return j.PutAll([]FileState{f})
}

// maxGroupLine is the longest line PutAll writes for a group of files: a larger group takes
// several lines, each synced, so that no line a reader meets is longer than maxJournalLine.
const maxGroupLine = maxJournalLine / 2

// PutAll records files as Put does, with one synced write for all of them (a group commit): a
// writer that verifies many small files shares one sync among those finished at about the same
// time. When PutAll returns, a crash loses none of them; before, it may lose any of them.
func (j *StateJournal) PutAll(files []FileState) error {
	if len(files) == 0 {
		return nil
	}
	for _, f := range files {
		if i, ok := j.index[f.Name]; ok {
			j.s.Files[i] = f
		} else {
			j.index[f.Name] = len(j.s.Files)
			j.s.Files = append(j.s.Files, f)
		}
	}
	if err := j.appendGroup(files); err != nil {
		return err
	}
	// Compacting when the journal is as long as the snapshot doubles the snapshot between
	// compactions at most, so each file is written O(1) times on average.
	if j.lines >= max(j.min, j.snap) {
		return j.Compact()
	}
	return nil
}

// appendGroup writes files as one synced line, or, when that line would be too long, each half
// as one.
func (j *StateJournal) appendGroup(files []FileState) error {
	e := journalEntry{Puts: files}
	if len(files) == 1 {
		// The form of a single file that older readers know.
		e = journalEntry{Put: &files[0]}
	}
	b, err := j.encode(e)
	if err != nil {
		return err
	}
	if len(b) > maxGroupLine && len(files) > 1 {
		half := len(files) / 2
		if err := j.appendGroup(files[:half]); err != nil {
			return err
		}
		return j.appendGroup(files[half:])
	}
	if err := j.write(b, true); err != nil {
		return err
	}
	j.lines += len(files) - 1 // write counted the line as one entry
	return nil
}

// Drop forgets the file named name. It is not synced on its own: until the next synced Put or
// compaction, a crash may keep the entry, which names a file that a rerun checks anyway.
func (j *StateJournal) Drop(name string) error {
	i, ok := j.index[name]
	if !ok {
		return nil
	}
	last := len(j.s.Files) - 1
	if i != last {
		j.s.Files[i] = j.s.Files[last]
		j.index[j.s.Files[i].Name] = i
	}
	j.s.Files = j.s.Files[:last]
	delete(j.index, name)
	return j.append(journalEntry{Drop: name}, false)
}

// SetExport records which export the folder holds, forgetting every file when clear is set
// (another export replaces the folder's), and compacts.
func (j *StateJournal) SetExport(exportID, transactionTime string, clear bool) error {
	j.s.ExportID, j.s.TransactionTime = exportID, transactionTime
	if clear {
		j.s.Files = nil
		j.reindex()
	}
	return j.Compact()
}

// Compact writes the state to state.json and empties the journal.
func (j *StateJournal) Compact() error {
	sortFiles(j.s.Files)
	j.reindex()
	if j.f != nil {
		j.f.Close()
		j.f = nil
	}
	base, err := writeState(j.dir, j.s)
	if err != nil {
		j.stale = true // the journal may still hold lines of the snapshot on disk
		return err
	}
	j.base = base
	j.lines, j.stale, j.snap = 0, false, len(j.s.Files)
	return nil
}

// Close compacts when the journal holds anything, so a folder at rest has its whole state in
// state.json, and releases the journal.
func (j *StateJournal) Close() error {
	if j.lines == 0 && !j.stale {
		return nil
	}
	return j.Compact()
}

// append writes one entry to the journal.
func (j *StateJournal) append(e journalEntry, sync bool) error {
	b, err := j.encode(e)
	if err != nil {
		return err
	}
	return j.write(b, sync)
}

// encode is the line of an entry, opening the journal first, since an entry names the snapshot
// that the journal extends, which opening it may change.
func (j *StateJournal) encode(e journalEntry) ([]byte, error) {
	if err := j.open(); err != nil {
		return nil, err
	}
	e.Base = j.base
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("write state: %w", err)
	}
	return append(b, '\n'), nil
}

// open opens the journal for appending. A journal that was on disk before (a crashed run's, or
// one whose last write failed) is compacted away first: appending after its torn last line
// would glue two entries into one damaged line.
func (j *StateJournal) open() error {
	if j.f == nil {
		if j.stale {
			if err := j.Compact(); err != nil {
				return err
			}
		}
		if err := MkdirNoFollow(j.dir, MetaDir); err != nil {
			return fmt.Errorf("write state: %w", err)
		}
		// Truncated: after a compaction anything there extends an older snapshot.
		f, err := OpenNoFollow(journalPath(j.dir), os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("write state: %w", err)
		}
		if err := atomicfile.SyncDir(filepath.Join(j.dir, MetaDir)); err != nil {
			f.Close()
			return fmt.Errorf("write state: %w", err)
		}
		j.f = f
	}
	return nil
}

// write appends one line (b ends with its newline) to the open journal, syncing it when asked.
func (j *StateJournal) write(b []byte, sync bool) error {
	if _, err := j.f.Write(b); err != nil {
		j.broken()
		return fmt.Errorf("write state: %w", err)
	}
	if sync {
		if err := j.f.Sync(); err != nil {
			j.broken()
			return fmt.Errorf("write state: sync %s: %w", journalPath(j.dir), err)
		}
	}
	j.lines++
	return nil
}

// broken closes a journal whose last write may be torn; the next entry compacts first.
func (j *StateJournal) broken() {
	j.f.Close()
	j.f = nil
	j.stale = true
}
