package tooltest

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// developerDocs matches references to the developers' design contract and style guide, which are
// not in the repository: users who follow one find nothing. What users need of them is in docs/.
var developerDocs = regexp.MustCompile(`DESIGN\.md|STYLE\.md|DESIGN §`)

// moduleRoot is the folder of go.mod above this file.
func moduleRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate this source file")
	}
	for dir := filepath.Dir(file); ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("no go.mod above %s", file)
		}
		dir = parent
	}
}

// TestNoDeveloperDocsInUserText: man pages, docs, scripts, the README and every string literal
// of the programs (messages, --help) never send users to DESIGN.md or STYLE.md. Code comments
// may cite them: developers have them.
func TestNoDeveloperDocsInUserText(t *testing.T) {
	root := moduleRoot(t)
	check := func(rel string, text []byte) {
		for i, line := range bytes.Split(text, []byte("\n")) {
			if m := developerDocs.Find(line); m != nil {
				t.Errorf("%s:%d mentions %s, which users do not have (point to docs/ instead): %s",
					rel, i+1, m, strings.TrimSpace(string(line)))
			}
		}
	}
	for _, top := range []string{"man", "docs", "scripts", "README.md"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, path)
			check(filepath.ToSlash(rel), b)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	fset := token.NewFileSet()
	var files int
	for _, top := range []string{"cmd", "pkg"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(path string, d fs.DirEntry, err error) error {
			switch {
			case err != nil:
				return err
			case d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")):
				return filepath.SkipDir
			case d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go"):
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			files++
			rel, _ := filepath.Rel(root, path)
			ast.Inspect(f, func(n ast.Node) bool {
				lit, ok := n.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					return true
				}
				s, err := strconv.Unquote(lit.Value)
				if err != nil {
					s = lit.Value
				}
				if m := developerDocs.FindString(s); m != "" {
					t.Errorf("%s:%d: a string mentions %s, which users do not have (point to docs/ instead): %s",
						filepath.ToSlash(rel), fset.Position(lit.Pos()).Line, m, lit.Value)
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if files < 50 {
		t.Errorf("checked only %d Go files under cmd/ and pkg/: is the module root %s right?", files, root)
	}
}
