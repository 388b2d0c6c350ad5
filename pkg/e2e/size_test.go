package e2e

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The size limits of non-test code: past these a function or a main stops being readable in one
// sitting, and the next fix lands in one branch of it and misses the other.
const (
	maxFuncLines   = 80  // from `func` to its closing brace
	maxCyclomatic  = 25  // counted as gocyclo counts (1 + if, for, case, &&, ||)
	maxCmdFileLine = 400 // a main parses flags, wires and calls a library
)

// funcSize is one function's measure.
type funcSize struct {
	where      string
	name       string
	lines      int
	cyclomatic int
}

// measure lists every function declaration and function literal of one Go source.
func measure(fset *token.FileSet, file string, src any) ([]funcSize, error) {
	f, err := parser.ParseFile(fset, file, src, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	var out []funcSize
	ast.Inspect(f, func(n ast.Node) bool {
		var body *ast.BlockStmt
		var name string
		switch fn := n.(type) {
		case *ast.FuncDecl:
			body, name = fn.Body, fn.Name.Name
		case *ast.FuncLit:
			body, name = fn.Body, "func literal"
		}
		if body == nil {
			return true
		}
		start := fset.Position(n.Pos())
		out = append(out, funcSize{
			where:      fmt.Sprintf("%s:%d", start.Filename, start.Line),
			name:       name,
			lines:      fset.Position(body.Rbrace).Line - start.Line + 1,
			cyclomatic: cyclomatic(n),
		})
		return true
	})
	return out, nil
}

// cyclomatic is gocyclo's count for a function: one, plus one for each if, for, range, non-default
// case or select clause, and && or ||. A function literal inside a declaration counts toward the
// declaration too, as gocyclo counts it.
func cyclomatic(fn ast.Node) int {
	c := 1
	ast.Inspect(fn, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.IfStmt, *ast.ForStmt, *ast.RangeStmt:
			c++
		case *ast.CaseClause:
			if n.List != nil {
				c++
			}
		case *ast.CommClause:
			if n.Comm != nil {
				c++
			}
		case *ast.BinaryExpr:
			if n.Op == token.LAND || n.Op == token.LOR {
				c++
			}
		}
		return true
	})
	return c
}

func TestCyclomatic(t *testing.T) {
	src := `package p
func a() {}
func b(x int, ok bool) int {
	if x > 0 && ok || x < -5 {
		return 1
	}
	for i := range 3 {
		_ = i
	}
	switch x {
	case 1, 2:
	case 3:
	default:
	}
	f := func() {
		if ok {
		}
	}
	f()
	return 0
}
`
	sizes, err := measure(token.NewFileSet(), "p.go", src)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]int{"a": {1, 1}, "b": {19, 8}, "func literal": {4, 2}}
	for _, s := range sizes {
		w := want[s.name]
		if s.lines != w[0] || s.cyclomatic != w[1] {
			t.Errorf("measure(%s) = %d lines, cyclomatic %d, want %d, %d", s.name, s.lines, s.cyclomatic, w[0], w[1])
		}
	}
	if len(sizes) != len(want) {
		t.Errorf("measure found %d functions, want %d", len(sizes), len(want))
	}
}

// TestSizeLimits holds the non-test code of cmd/, pkg/ and scripts/ to the limits above.
func TestSizeLimits(t *testing.T) {
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	for _, dir := range []string{"cmd", "pkg", "scripts"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && d.Name() == "testdata" {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			rel, _ := filepath.Rel(root, path)
			if dir == "cmd" {
				b, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				if n := strings.Count(string(b), "\n"); n > maxCmdFileLine {
					t.Errorf("%s: %d lines, over %d for a file in cmd/: move the work into a library", rel, n, maxCmdFileLine)
				}
			}
			sizes, err := measure(fset, rel, readFile(t, path))
			if err != nil {
				return err
			}
			for _, s := range sizes {
				if s.lines > maxFuncLines {
					t.Errorf("%s: %s is %d lines, over %d", s.where, s.name, s.lines, maxFuncLines)
				}
				if s.cyclomatic > maxCyclomatic {
					t.Errorf("%s: %s has cyclomatic complexity %d, over %d", s.where, s.name, s.cyclomatic, maxCyclomatic)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
