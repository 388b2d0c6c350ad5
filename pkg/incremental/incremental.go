// Package incremental chooses the _since of an incremental export (bulk-kickoff --since auto):
// the time up to which an earlier export, complete and of the same Group and types, already holds
// the data. The Bulk Data IG has a client pass the transactionTime of its previous export as
// _since: a time on the server's clock, never the client's, so clock skew cannot open a gap
// between two exports. The earlier export is read from its folder (the log, as etl-load would
// load it) or from the etl__completion table of an etl-load database.
package incremental

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/store"
)

// Want is the export about to start.
type Want struct {
	Level bulk.Level
	Group string   // the Group id at group level, else ""
	Types []string // its _type; empty asks for every type the server has
}

// WantOf reads the scope and types of a prepared kickoff. A kickoff that already names a
// _since (in a full $export URL, or --param) cannot take another one.
func WantOf(pk *bulk.PreparedKickoff) (Want, error) {
	if v, ok := pk.Parameters[bulk.ParamSince]; ok {
		return Want{}, fmt.Errorf("the kickoff already has _since=%v: --since auto chooses it", v)
	}
	w := Want{Level: pk.Level, Group: pk.Group}
	if v, ok := pk.Parameters[bulk.ParamType].(string); ok {
		w.Types = bulk.SplitList(v)
	}
	return w, nil
}

// Choice is the _since chosen, and why (for the one line bulk-kickoff prints).
type Choice struct {
	Since  time.Time
	Reason string
}

// UnusableError says why a source holds no export that an incremental one can follow, and what
// to do instead.
type UnusableError struct {
	Source string
	Reason string
	Hint   string
}

func (e *UnusableError) Error() string {
	return fmt.Sprintf("--since auto: %s holds no export to follow: %s; %s", e.Source, e.Reason, e.Hint)
}

// hintFull is what to do when nothing in a source can be followed.
const hintFull = "run a full export first (the same kickoff without --since), load it, and use --since auto from then on"

// DatabaseReader returns the etl__completion rows of a DuckDB database file
// (duckdb.ReadCompletion). It is passed in so that this package links no cgo.
type DatabaseReader func(ctx context.Context, path string) ([]store.CompletionRow, error)

// Choose picks the _since of want from source: an export folder, or a DuckDB database etl-load
// wrote (read with readDB). A source that holds no usable export is an *UnusableError.
func Choose(ctx context.Context, source string, want Want, readDB DatabaseReader) (Choice, error) {
	fi, err := os.Stat(source)
	if err != nil {
		return Choice{}, fmt.Errorf("--since-from: %w", err)
	}
	if fi.IsDir() {
		return FromFolder(source, want)
	}
	db, err := isDuckDB(source)
	if err != nil {
		return Choice{}, fmt.Errorf("--since-from: %w", err)
	}
	if !db {
		return Choice{}, fmt.Errorf("--since-from %s: neither an export folder nor a DuckDB database (etl-load's)", source)
	}
	rows, err := readDB(ctx, source)
	if err != nil {
		return Choice{}, fmt.Errorf("--since-from: %w", err)
	}
	return FromRows(source, rows, want)
}

// duckMagic is where a DuckDB database file says what it is: after an 8-byte checksum, "DUCK".
const duckMagic = "DUCK"

func isDuckDB(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	head := make([]byte, 12)
	if _, err := io.ReadFull(f, head); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return false, nil
		}
		return false, err
	}
	return bytes.Equal(head[8:12], []byte(duckMagic)), nil
}

// scopeOf is the level and Group of a logged kickoff URL. A Group's Patient-level URL
// (…/Group/ID/Patient/$export, which some clients log) counts as that Group's.
func scopeOf(exportURL string) (bulk.Level, string) {
	if g := exportdir.GroupFromURL(exportURL); g != "" {
		return bulk.LevelGroup, g
	}
	p, _, _ := strings.Cut(exportURL, "?")
	if u, err := url.Parse(exportURL); err == nil {
		p = u.EscapedPath()
	}
	return bulk.SplitExportPath(p).Level, ""
}

// scopeName names a scope in messages: `Group "cohort"`, "system level", "Patient level".
func scopeName(level bulk.Level, group string) string {
	switch level {
	case bulk.LevelGroup:
		return fmt.Sprintf("Group %q", group)
	case bulk.LevelPatient:
		return "Patient level"
	}
	return "system level"
}

// typesText lists types for messages; none means every type.
func typesText(types []string) string {
	if len(types) == 0 {
		return "all types"
	}
	return "types " + strings.Join(types, ",")
}

// instant formats a _since as bulk-kickoff sends it.
func instant(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
