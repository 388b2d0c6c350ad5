package main

import (
	"compress/gzip"
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/fhirtest/fhirscript"
	"github.com/bulkpipe/bulkpipe/pkg/store/duckdb"
	"github.com/bulkpipe/bulkpipe/pkg/tool/tooltest"
	"github.com/rogpeppe/go-internal/testscript"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/script")

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"etl-load": main})
}

// TestScript runs the CLI contract in testdata/script. Besides testscript's builtins:
//
//	exits CODE PROG ARGS...  run PROG and require exit status CODE (-9 for killed by a failpoint)
//	dbq DB SQL               print the rows of a query, columns joined by | ($WORK expanded in SQL)
//	dbdump [-nosource] DB    print every table (etl_time left out; -nosource leaves out source_file)
//	gz FILE                  gzip FILE into FILE.gz and remove FILE
//	chop FILE                remove FILE's final newline (txtar cannot express its absence)
//	padded FILE N KIB        write N Patients of about KIB KiB each, too large for a txtar file
func TestScript(t *testing.T) {
	p := fhirscript.ScriptParams("testdata/script", *update) // .fhirserver/ starts a test server
	for name, cmd := range map[string]func(*testscript.TestScript, bool, []string){
		"exits": exits, "dbq": dbq, "lakeq": lakeq, "dbdump": dbdump, "gz": gz, "chop": chop, "padded": padded} {
		p.Cmds[name] = cmd
	}
	testscript.Run(t, p)
}

func exits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits CODE PROG ARGS...")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: bad code %q", args[0])
	}
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		got = ee.ExitCode() // -1 when killed by a signal
		if got == -1 {
			got = -9
		}
	} else if err != nil {
		ts.Fatalf("exits: %v", err)
	}
	if got != want {
		ts.Fatalf("%s exited %d, want %d", args[1], got, want)
	}
}

func openDB(ts *testscript.TestScript, path string) *duckdb.DB {
	d, err := duckdb.Open(context.Background(), ts.MkAbs(path))
	if err != nil {
		ts.Fatalf("open %s: %v", path, err)
	}
	return d
}

// querier is a connection or a database.
type querier interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
}

func printRows(ts *testscript.TestScript, d querier, q string) {
	out := ts.Stdout() // even when no row is printed: clears the previous command's stdout
	rows, err := d.QueryContext(context.Background(), q)
	if err != nil {
		ts.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			ts.Fatalf("%v", err)
		}
		var s []string
		for _, v := range vals {
			switch v := v.(type) {
			case time.Time:
				s = append(s, v.UTC().Format(time.RFC3339Nano))
			case nil:
				s = append(s, "NULL")
			case []byte:
				s = append(s, string(v))
			default:
				s = append(s, fmt.Sprint(v))
			}
		}
		fmt.Fprintln(out, strings.Join(s, "|"))
	}
	if err := rows.Err(); err != nil {
		ts.Fatalf("%v", err)
	}
}

func dbq(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: dbq DB SQL")
	}
	d := openDB(ts, args[0])
	defer d.Close()
	// DuckDB resolves paths against the test's directory, not $WORK: queries say $WORK.
	printRows(ts, d.Conn(), strings.ReplaceAll(args[1], "$WORK", ts.Getenv("WORK")))
}

// lakeq runs the DDL in a file (etl-load --print-ddl's) in a new in-memory DuckDB, as an analyst's
// own DuckDB would, and prints the rows of a query.
func lakeq(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: lakeq DDLFILE SQL")
	}
	d, err := sql.Open("duckdb", "")
	if err != nil {
		ts.Fatalf("%v", err)
	}
	defer d.Close()
	if _, err := d.ExecContext(context.Background(), ts.ReadFile(args[0])); err != nil {
		ts.Fatalf("%s: %v", args[0], err)
	}
	printRows(ts, d, args[1])
}

func dbdump(ts *testscript.TestScript, neg bool, args []string) {
	noSource := len(args) > 0 && args[0] == "-nosource"
	if noSource {
		args = args[1:]
	}
	if neg || len(args) != 1 {
		ts.Fatalf("usage: dbdump [-nosource] DB")
	}
	d := openDB(ts, args[0])
	defer d.Close()
	tables, err := d.Tables(context.Background())
	if err != nil {
		ts.Fatalf("%v", err)
	}
	for _, tb := range tables {
		var drop []string
		if tb == "etl__completion" {
			drop = append(drop, "etl_time")
		}
		if noSource && (tb == "etl__deleted" || !strings.HasPrefix(tb, "etl__")) {
			drop = append(drop, "source_file")
		}
		cols := "*"
		if len(drop) > 0 {
			cols = "* EXCLUDE (" + strings.Join(drop, ", ") + ")"
		}
		if !strings.HasPrefix(tb, "etl__") {
			cols += " REPLACE (resource::VARCHAR AS resource)" // the bytes, not a decoded map
		}
		fmt.Fprintf(ts.Stdout(), "== %s\n", tb)
		printRows(ts, d.Conn(), `SELECT `+cols+` FROM "`+tb+`" ORDER BY ALL`)
	}
}

func gz(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: gz FILE")
	}
	path := ts.MkAbs(args[0])
	data, err := os.ReadFile(path)
	ts.Check(err)
	f, err := os.Create(path + ".gz")
	ts.Check(err)
	w := gzip.NewWriter(f)
	_, err = w.Write(data)
	ts.Check(err)
	ts.Check(w.Close())
	ts.Check(f.Close())
	ts.Check(os.Remove(path))
}

func TestManPage(t *testing.T) {
	tooltest.CheckManPage(t, newApp(), tooltest.ManPage(t, "etl-load"))
}

func chop(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: chop FILE")
	}
	path := ts.MkAbs(args[0])
	data, err := os.ReadFile(path)
	ts.Check(err)
	ts.Check(os.WriteFile(path, []byte(strings.TrimSuffix(string(data), "\n")), 0o644))
}

func padded(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: padded FILE N KIB")
	}
	n, err := strconv.Atoi(args[1])
	ts.Check(err)
	kib, err := strconv.Atoi(args[2])
	ts.Check(err)
	path := ts.MkAbs(args[0])
	ts.Check(os.MkdirAll(filepath.Dir(path), 0o755))
	// Written a line at a time: the test process's memory is not the tools' to spend.
	f, err := os.Create(path)
	ts.Check(err)
	div := strings.Repeat("x", kib<<10)
	for i := range n {
		_, err := fmt.Fprintf(f, `{"resourceType":"Patient","id":"big%d","text":{"status":"generated","div":"%s"}}`+"\n", i, div)
		ts.Check(err)
	}
	ts.Check(f.Close())
}
