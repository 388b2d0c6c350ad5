package merge

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
)

// source is one SRC argument: a slice of a sliced export. A folder brings its files and, usually,
// its log; NDJSON files (and "-") bring only resources and take their Group and time from
// --export-group and --export-timestamp (DESIGN.md §6).
type source struct {
	arg    string
	index  int                     // argument position: the tie-break after the slice time
	files  []exportdir.File        // for a file argument, one output file
	stdin  bool                    // "-"
	export *exportdir.Export       // from the folder's log; nil without one
	group  string                  // Group id, "" for a system- or Patient-level export
	time   time.Time               // the slice's transactionTime
	checks map[string]*filterCheck // per resource type its _typeFilter restricts (from the log)
}

// name is how messages refer to the source.
func (s *source) name() string {
	if s.stdin {
		return "stdin"
	}
	return s.arg
}

// openSources resolves the arguments: folders are discovered and their logs read, the Group and time
// of each slice settled, and slices of different Groups refused.
func openSources(o *Options) ([]*source, error) {
	var srcs []*source
	sawStdin := false
	for i, arg := range o.Sources {
		src := &source{arg: arg, index: i}
		switch fi, err := os.Stat(arg); {
		case arg == "-":
			if sawStdin {
				return nil, optionsErrorf("stdin (-) given twice")
			}
			sawStdin, src.stdin = true, true
			src.files = []exportdir.File{{Path: "-", Rel: "-", ItemType: exportdir.ItemOutput}}
		case err != nil:
			return nil, fmt.Errorf("source %s: %w", arg, unwrapPathError(err))
		case fi.IsDir():
			if err := src.openFolder(); err != nil {
				return nil, err
			}
		default:
			src.files = []exportdir.File{{Path: arg, Rel: filepath.Base(arg), ItemType: exportdir.ItemOutput}}
		}
		if err := src.settle(o); err != nil {
			return nil, err
		}
		srcs = append(srcs, src)
	}
	for _, s := range srcs[1:] {
		if s.group != srcs[0].group {
			hint := ""
			if s.export == nil || srcs[0].export == nil {
				hint = "; --export-group sets the Group of sources without a log"
			}
			return nil, fmt.Errorf("%s and %s are exports of different Groups (%s and %s): a merged folder holds one Group%s",
				srcs[0].name(), s.name(), groupName(srcs[0].group), groupName(s.group), hint)
		}
	}
	return srcs, nil
}

// openFolder lists an export folder's files and reads its log, refusing a download in progress:
// a slice with files missing would silently drop resources from the "complete" merged folder.
func (s *source) openFolder() error {
	files, err := exportdir.Discover(s.arg)
	if err != nil {
		return fmt.Errorf("source %s: %w", s.arg, err)
	}
	s.files = files
	for _, sub := range []string{"", "deleted", "error"} {
		parts, _ := filepath.Glob(filepath.Join(s.arg, sub, "*.part"))
		if len(parts) > 0 {
			return fmt.Errorf("source %s: %s is still downloading: finish bulk-fetch (or remove the .part file) before merging", s.arg, parts[0])
		}
	}
	logPath, err := exportdir.FindLog(s.arg)
	switch {
	case errors.Is(err, exportdir.ErrNoLog):
		return nil
	case err != nil:
		return fmt.Errorf("source %s: %w", s.arg, err)
	}
	s.export, err = exportdir.ReadLog(logPath)
	if err != nil {
		return fmt.Errorf("source %s: %w", s.arg, err)
	}
	s.checks = filterChecks(s.export)
	return nil
}

// settle picks the slice's Group and transactionTime: from its log, else from the flags.
func (s *source) settle(o *Options) error {
	switch {
	case s.export != nil && s.export.HasTime:
		s.time = s.export.TransactionTime
	case o.HasTime:
		s.time = o.Timestamp
	case s.export != nil:
		return optionsErrorf("%s: its log has no transactionTime (export not complete?): give --export-timestamp", s.name())
	default:
		return optionsErrorf("%s has no export log: give --export-timestamp (and --export-group for a Group export)", s.name())
	}
	if s.export != nil {
		s.group = s.export.Group
	} else {
		s.group = o.Group
	}
	return nil
}

func groupName(g string) string {
	if g == "" {
		return "no Group (system or Patient level)"
	}
	return "Group " + g
}

// open opens one of the source's files; "-" is the tool's stdin.
func (o *Options) open(f exportdir.File) (io.ReadCloser, error) {
	if f.Path == "-" {
		return io.NopCloser(o.Stdin), nil
	}
	return exportdir.OpenFile(f.Path)
}

func unwrapPathError(err error) error {
	if pe, ok := errors.AsType[*os.PathError](err); ok {
		return pe.Err
	}
	return err
}

// validTypeName is the FHIR resource type pattern [A-Z][A-Za-z]* (exportdir.ParseName agrees).
// The type becomes a file name, so nothing else may pass ("../x", "a/b").
func validTypeName(s string) bool {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	return strings.IndexFunc(s, func(c rune) bool { return !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') }) < 0
}
