// Package exportdir owns the export folder (DESIGN.md §3, §4) for every tool: how files are named,
// how other tools' folders are read, the export log, deleted Bundles, the state of
// verified files and the lock that keeps two writers out.
package exportdir

import (
	"bufio"
	"cmp"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ItemType says which manifest array a file came from; it picks the subfolder.
type ItemType string

// The manifest arrays of the Bulk Data spec (v4's "outcome" is ItemError).
const (
	ItemOutput  ItemType = "output"
	ItemDeleted ItemType = "deleted"
	ItemError   ItemType = "error"
)

// Dir returns the subfolder of DIR that holds files of this type: "" for output, "deleted" or
// "error" (DESIGN.md §3, and where bulk-data-client puts them too).
func (t ItemType) Dir() string {
	if t == ItemOutput {
		return ""
	}
	return string(t)
}

// FileName returns our name for the ordinal-th file (0-based) of a resource type, such as
// "Patient.000.ndjson". Names come from the manifest type and a per-type counter, never from URLs
// (DESIGN.md §3), and the zero padding keeps `ls` in download order for the first thousand.
func FileName(resourceType string, ordinal int) string {
	return fmt.Sprintf("%s.%03d.ndjson", resourceType, ordinal)
}

// Rel returns the slash-separated path of a file inside DIR, such as "deleted/Bundle.000.ndjson".
func Rel(t ItemType, resourceType string, ordinal int) string {
	return joinRel(t.Dir(), FileName(resourceType, ordinal))
}

func joinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// File is one NDJSON file found in an export folder.
type File struct {
	Path         string   // DIR joined with Rel
	Rel          string   // slash-separated, relative to DIR: "Patient.000.ndjson", "deleted/1.Bundle.ndjson"
	ItemType     ItemType // from the subfolder
	ResourceType string   // from the name; always "Bundle" in deleted/ and "OperationOutcome" in error/
	Ordinal      int      // the number in the name, -1 when it has none ("Patient.ndjson")
	Gzip         bool     // name ends in .gz
}

// Discover lists the NDJSON files of an export folder in a deterministic order: output, then
// deleted/, then error/; within each by resource type, then ordinal, then name. It accepts the names
// of the tools users have (DESIGN.md §9): ours and Cumulus's "Patient.000.ndjson", bulk-data-client's
// "1.Patient.ndjson", a plain "Patient.ndjson", and SMART Fetch's "Patient.001.ndjson.gz". In deleted/
// and error/ any *.ndjson[.gz] is taken, since the folder alone says what it holds. It skips what is
// not data: hidden and temporary files, downloads in progress (*.part), log*.ndjson, manifest.json,
// .bulkpipe/ and names whose type does not look like a FHIR resource type.
func Discover(dir string) ([]File, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("read export folder: %w", err)
	}
	var files []File
	for _, t := range []ItemType{ItemOutput, ItemDeleted, ItemError} {
		sub := filepath.Join(dir, t.Dir())
		entries, err := os.ReadDir(sub)
		if err != nil {
			if t != ItemOutput && os.IsNotExist(err) {
				continue
			}
			return nil, fmt.Errorf("read export folder: %w", err)
		}
		for _, e := range entries {
			name := e.Name()
			rt, ord, gz, ok := ParseName(name)
			if t != ItemOutput {
				// The folder says what the lines are, whatever the name (spec: deleted items are
				// Bundles, error items OperationOutcomes).
				if !ok && !isNDJSON(name) {
					continue
				}
				if !ok {
					ord, gz = -1, strings.HasSuffix(name, ".gz")
				}
				rt = lineType(t)
			} else if !ok {
				continue
			}
			path := filepath.Join(sub, name)
			regular, err := isRegular(e, path)
			if err != nil {
				// A data file that cannot be read must not silently go missing: its readers
				// would claim the whole type complete without it.
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			if !regular {
				continue
			}
			files = append(files, File{Path: path, Rel: joinRel(t.Dir(), name), ItemType: t,
				ResourceType: rt, Ordinal: ord, Gzip: gz})
		}
	}
	order := map[ItemType]int{ItemOutput: 0, ItemDeleted: 1, ItemError: 2}
	slices.SortFunc(files, func(a, b File) int {
		return cmp.Or(cmp.Compare(order[a.ItemType], order[b.ItemType]),
			cmp.Compare(a.ResourceType, b.ResourceType),
			cmp.Compare(a.Ordinal, b.Ordinal),
			cmp.Compare(a.Rel, b.Rel))
	})
	return files, nil
}

// lineType is the resourceType of every line in a deleted/ or error/ file.
func lineType(t ItemType) string {
	if t == ItemDeleted {
		return "Bundle"
	}
	return "OperationOutcome"
}

// isNDJSON reports a data file name that is not one of the folder's own files.
func isNDJSON(name string) bool {
	base := strings.TrimSuffix(name, ".gz")
	return strings.HasSuffix(base, ".ndjson") && !strings.HasPrefix(name, ".") && !strings.HasPrefix(name, "log")
}

// isRegular follows symlinks: users link exports together. A data-file name whose link is
// dangling is an error, not a file to skip.
func isRegular(e os.DirEntry, path string) (bool, error) {
	if e.Type().IsRegular() {
		return true, nil
	}
	if e.Type()&os.ModeSymlink == 0 {
		return false, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	return fi.Mode().IsRegular(), nil
}

// ParseName reads a data file name: "Patient.000.ndjson", "1.Patient.ndjson", "Patient.ndjson", each
// optionally gzipped. ordinal is -1 when the name has no number. ok is false for anything else,
// including log files, hidden files and types that are not FHIR-shaped (capitalized letters only).
func ParseName(name string) (resourceType string, ordinal int, gzip, ok bool) {
	if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "log") {
		return "", 0, false, false
	}
	base, gzip := strings.CutSuffix(name, ".gz")
	base, found := strings.CutSuffix(base, ".ndjson")
	if !found {
		return "", 0, false, false
	}
	parts := strings.Split(base, ".")
	switch {
	case len(parts) == 1 && isTypeName(parts[0]):
		return parts[0], -1, gzip, true
	case len(parts) == 2 && isTypeName(parts[0]):
		if n, ok := parseOrdinal(parts[1]); ok {
			return parts[0], n, gzip, true
		}
	case len(parts) == 2 && isTypeName(parts[1]):
		if n, ok := parseOrdinal(parts[0]); ok {
			return parts[1], n, gzip, true
		}
	}
	return "", 0, false, false
}

// isTypeName matches the FHIR resource type pattern [A-Z][A-Za-z]*.
func isTypeName(s string) bool {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

func parseOrdinal(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// OpenFile opens an NDJSON file, gunzipping it when its name ends in .gz or its content starts with
// the gzip magic (a server's gzip saved as is: JSON never starts with byte 0x1f).
func OpenFile(path string) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(f, 64<<10)
	magic, _ := br.Peek(2)
	if !strings.HasSuffix(path, ".gz") && string(magic) != "\x1f\x8b" {
		return readCloser{br, f.Close}, nil
	}
	zr, err := gzip.NewReader(br)
	if err == io.EOF {
		return readCloser{br, f.Close}, nil // an empty file holds no records, gzipped or not
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return readCloser{zr, func() error {
		zerr := zr.Close()
		if err := f.Close(); err != nil {
			return err
		}
		return zerr
	}}, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }
