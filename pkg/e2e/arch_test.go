package e2e

import (
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// module is the import path prefix of this repository's packages.
const module = "github.com/bulkpipe/bulkpipe/"

// layers is the package graph of docs/architecture.md as data: each library under pkg/ and the
// project packages its non-test code may import. A package missing here fails the test, so a new
// package, like a new arrow, is placed on purpose (and in the picture) rather than by accident.
var layers = map[string][]string{
	// Leaves: no project imports.
	"pkg/atomicfile":     nil,
	"pkg/failpoint":      nil,
	"pkg/fhirclient":     nil,
	"pkg/fhirjson":       nil,
	"pkg/ndjson":         nil,
	"pkg/resourcetype":   nil,
	"pkg/fhirtime":       nil,
	"pkg/smartauth":      nil,
	"pkg/fhirtest/synth": nil,

	// Domain packages, each over leaves only.
	"pkg/bulk":  {"pkg/atomicfile", "pkg/fhirclient", "pkg/fhirtime", "pkg/resourcetype"},
	"pkg/store": {"pkg/fhirjson", "pkg/fhirtime", "pkg/ndjson", "pkg/resourcetype"},

	// The folder and its log: the folder keeps what the protocol produced (an export URL's Group,
	// a server's error as a log event), so it reads both through bulk and fhirclient.
	"pkg/exportdir":  {"pkg/atomicfile", "pkg/bulk", "pkg/fhirclient", "pkg/fhirjson", "pkg/fhirtime", "pkg/ndjson"},
	"pkg/attachment": {"pkg/atomicfile", "pkg/exportdir", "pkg/failpoint", "pkg/fhirclient", "pkg/fhirjson", "pkg/ndjson"},

	// Engines and backends: one tool's work, over the domain packages.
	"pkg/store/duckdb": {"pkg/failpoint", "pkg/store"},
	"pkg/fetch":        {"pkg/atomicfile", "pkg/bulk", "pkg/exportdir", "pkg/failpoint", "pkg/fhirclient", "pkg/fhirjson", "pkg/ndjson"},
	"pkg/merge":        {"pkg/atomicfile", "pkg/bulk", "pkg/exportdir", "pkg/failpoint", "pkg/fhirjson", "pkg/fhirtime", "pkg/ndjson"},
	// bulk-kickoff --since auto: an earlier export, read as etl-load would load it (store's
	// completion rule); the database itself is read by store/duckdb, wired in the main.
	"pkg/incremental": {"pkg/bulk", "pkg/exportdir", "pkg/fhirclient", "pkg/resourcetype", "pkg/store"},
	"pkg/lake":        {"pkg/failpoint", "pkg/fhirclient", "pkg/store", "pkg/store/duckdb"},
	"pkg/load":        {"pkg/attachment", "pkg/bulk", "pkg/exportdir", "pkg/fhirclient", "pkg/lake", "pkg/ndjson", "pkg/resourcetype", "pkg/store", "pkg/store/duckdb"},

	// What every main shares: flags, exit codes, and the one place that wires credentials to a client.
	"pkg/tool": {"pkg/atomicfile", "pkg/failpoint", "pkg/fhirclient", "pkg/smartauth"},

	// For tests (and cmd/bulk-testserver) only.
	"pkg/fhirtest":            {"pkg/fhirtest/synth"},
	"pkg/fhirtest/fhirscript": {"pkg/failpoint", "pkg/fhirtest"},
	"pkg/tool/tooltest":       {"pkg/tool"},
	"pkg/lake/s3test":         nil, // starts a real S3-compatible server; the AWS SDK only
	"pkg/e2e":                 nil,
}

// testOnly are packages that production code (cmd/ and pkg/, tests aside) never imports.
// cmd/bulk-testserver is the one main allowed pkg/fhirtest: it is that server's command line.
var testOnly = []string{"pkg/fhirtest", "pkg/fhirtest/fhirscript", "pkg/fhirtest/synth", "pkg/tool/tooltest", "pkg/lake/s3test", "pkg/e2e"}

// viaTool are libraries whose only production importer is pkg/tool, so that every main gets
// credentials the same way (tool.NewClient) and none wires SMART by hand.
var viaTool = []string{"pkg/smartauth"}

// benchAllowed are the packages the benchmark programs under scripts/bench may use: they
// generate data sets and read export folders, as the tools' users would, and read the sizes
// given to the tools (--memory-limit, --mem) with the tools' own parser (pkg/tool's ParseSize).
var benchAllowed = []string{"pkg/exportdir", "pkg/fhirjson", "pkg/fhirtest/synth", "pkg/tool"}

// allowed reports why pkg may not import dep, or "" when it may. test says the import is in a
// _test.go file: tests may use any library, the test-only helpers included, but never pkg/e2e.
func allowed(pkg, dep string, test bool) string {
	if !strings.HasPrefix(dep, "pkg/") {
		return "" // cmd/ mains cannot be imported; the compiler says so
	}
	if _, ok := layers[dep]; !ok {
		return dep + " is not in the package graph (docs/architecture.md and layers in pkg/e2e/arch_test.go)"
	}
	if test {
		if dep == "pkg/e2e" {
			return "pkg/e2e is a test package of its own"
		}
		return ""
	}
	switch {
	case strings.HasPrefix(pkg, "pkg/"):
		deps, ok := layers[pkg]
		if !ok {
			return pkg + " is not in the package graph (docs/architecture.md and layers in pkg/e2e/arch_test.go)"
		}
		if !slices.Contains(deps, dep) {
			return "the package graph has no arrow " + pkg + " → " + dep
		}
	case strings.HasPrefix(pkg, "cmd/"):
		if slices.Contains(testOnly, dep) && (pkg != "cmd/bulk-testserver" || dep != "pkg/fhirtest") {
			return dep + " is for tests (and cmd/bulk-testserver) only"
		}
		if slices.Contains(viaTool, dep) {
			return dep + " is wired by pkg/tool only (tool.NewClient)"
		}
	case strings.HasPrefix(pkg, "scripts/bench/"):
		if !slices.Contains(benchAllowed, dep) {
			return "the benchmark programs may use only " + strings.Join(benchAllowed, ", ")
		}
	default:
		return pkg + " is outside cmd/, pkg/ and scripts/bench/ and may not import " + dep
	}
	return ""
}

// imports maps each package directory under root (relative, slash-separated) to the project
// packages its files import, split into non-test and test imports. It parses every .go file,
// whatever its build tags, so an import behind a tag cannot hide from the check.
func imports(root string) (prod, test map[string]map[string]bool, err error) {
	prod, test = map[string]map[string]bool{}, map[string]map[string]bool{}
	fset := token.NewFileSet()
	for _, top := range []string{"cmd", "pkg", "scripts"} {
		err = filepath.WalkDir(filepath.Join(root, top), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			name := d.Name()
			if d.IsDir() {
				if name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(name, ".go") {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(root, filepath.Dir(path))
			if err != nil {
				return err
			}
			pkg := filepath.ToSlash(rel)
			m := prod
			if strings.HasSuffix(name, "_test.go") {
				m = test
			}
			if m[pkg] == nil {
				m[pkg] = map[string]bool{}
			}
			for _, imp := range f.Imports {
				p, err := strconv.Unquote(imp.Path.Value)
				if err != nil {
					return fmt.Errorf("%s: %v", path, err)
				}
				if dep, ok := strings.CutPrefix(p, module); ok && dep != pkg {
					m[pkg][dep] = true
				}
			}
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
	}
	return prod, test, nil
}

// TestArchitecture fails on any import that docs/architecture.md's package graph forbids,
// naming the importer and the import.
func TestArchitecture(t *testing.T) {
	root := moduleRoot()
	prod, test, err := imports(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(prod) < len(layers)/2 {
		t.Fatalf("found %d packages under %s, want at least %d: is the walk reading the module?", len(prod), root, len(layers)/2)
	}
	for _, side := range []struct {
		m    map[string]map[string]bool
		test bool
		what string
	}{{prod, false, "imports"}, {test, true, "imports in its tests"}} {
		pkgs := make([]string, 0, len(side.m))
		for p := range side.m {
			pkgs = append(pkgs, p)
		}
		sort.Strings(pkgs)
		for _, pkg := range pkgs {
			deps := make([]string, 0, len(side.m[pkg]))
			for d := range side.m[pkg] {
				deps = append(deps, d)
			}
			sort.Strings(deps)
			for _, dep := range deps {
				if why := allowed(pkg, dep, side.test); why != "" {
					t.Errorf("%s %s %s: %s", pkg, side.what, dep, why)
				}
			}
		}
	}
	// Every library in the table has a directory, and every library directory is in the table.
	for pkg := range layers {
		if _, err := os.Stat(filepath.Join(root, pkg)); err != nil {
			t.Errorf("layers names %s, which does not exist: %v", pkg, err)
		}
	}
	for pkg := range prod {
		if _, ok := layers[pkg]; strings.HasPrefix(pkg, "pkg/") && !ok {
			t.Errorf("%s is not in the package graph: give it a layer in docs/architecture.md and in layers", pkg)
		}
	}
}

// TestArchitectureDoc: the picture names every package the test knows, so the two cannot drift apart.
func TestArchitectureDoc(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(moduleRoot(), "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	for pkg := range layers {
		if !strings.Contains(string(doc), pkg) {
			t.Errorf("docs/architecture.md does not mention %s", pkg)
		}
	}
}

// TestAllowed pins the rules on imports the code does not have today, so that the check is
// known to fail when one appears.
func TestAllowed(t *testing.T) {
	tests := []struct {
		pkg, dep string
		test     bool
		ok       bool
	}{
		{"pkg/fhirclient", "pkg/smartauth", false, false}, // credentials are an interface
		{"pkg/smartauth", "pkg/fhirclient", false, false},
		{"pkg/tool", "pkg/attachment", false, false},  // sizes are parsed in pkg/tool itself
		{"pkg/attachment", "pkg/tool", false, false},  // libraries never see urfave/cli
		{"pkg/fetch", "pkg/attachment", false, false}, // bulk-fetch --inline is wired in its main
		{"pkg/merge", "pkg/tool", false, false},       // usage errors are an *OptionsError
		{"pkg/merge", "pkg/fhirclient", false, false}, // a merge reads files only
		{"pkg/load", "pkg/tool", false, false},        // usage errors are an *OptionsError
		{"pkg/load", "pkg/fetch", false, false},       // a load reads folders; bulk-fetch writes them
		{"pkg/store", "pkg/load", false, false},       // the engine drives store, not the reverse
		{"pkg/ndjson", "pkg/fhirjson", false, false},  // the scanner knows nothing of FHIR
		{"pkg/store", "pkg/store/duckdb", false, false},
		{"pkg/exportdir", "pkg/fhirtest", false, false},
		{"pkg/exportdir", "pkg/fhirtest", true, true},
		{"pkg/fetch", "pkg/smartauth", true, true},
		{"pkg/fetch", "pkg/e2e", true, false},
		{"pkg/newthing", "pkg/ndjson", false, false}, // not placed in the graph yet
		{"pkg/bulk", "pkg/newthing", false, false},
		{"cmd/bulk-fetch", "pkg/fhirtest", false, false},
		{"cmd/bulk-testserver", "pkg/fhirtest", false, true},
		{"cmd/bulk-testserver", "pkg/fhirtest/synth", false, false},
		{"cmd/bulk-poll", "pkg/smartauth", false, false},
		{"cmd/bulk-poll", "pkg/smartauth", true, true},
		{"cmd/etl-load", "pkg/store/duckdb", false, true},
		{"cmd/bulk-fetch", "pkg/fetch", false, true},
		{"pkg/attachment", "pkg/fhirclient", false, true},
		{"pkg/tool", "pkg/smartauth", false, true},
		{"scripts/bench/benchtool", "pkg/fhirtest/synth", false, true},
		{"scripts/bench/benchtool", "pkg/fetch", false, false},
		{"scripts/testsummary", "pkg/ndjson", false, false},
	}
	for _, tt := range tests {
		why := allowed(tt.pkg, tt.dep, tt.test)
		if got := why == ""; got != tt.ok {
			t.Errorf("allowed(%s, %s, test=%v) = %q, want allowed=%v", tt.pkg, tt.dep, tt.test, why, tt.ok)
		}
	}
}
