package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestSummaryStream(t *testing.T) {
	const pkg = `"Package":"example.com/p"`
	tests := []struct {
		name   string
		in     string
		want   string
		failed bool
	}{
		{"pass: only the ok line",
			`{"Action":"start",` + pkg + `}
{"Action":"run",` + pkg + `,"Test":"TestA"}
{"Action":"output",` + pkg + `,"Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"output",` + pkg + `,"Test":"TestA","Output":"    a_test.go:3: log\n"}
{"Action":"output",` + pkg + `,"Test":"TestA","Output":"--- PASS: TestA (0.00s)\n"}
{"Action":"pass",` + pkg + `,"Test":"TestA"}
{"Action":"output",` + pkg + `,"Output":"PASS\n"}
{"Action":"output",` + pkg + `,"Output":"ok  \texample.com/p\t0.01s\n"}
{"Action":"pass",` + pkg + `}
`, "ok  \texample.com/p\t0.01s\n", false},
		{"fail: the test's output without framing, then FAIL lines",
			`{"Action":"run",` + pkg + `,"Test":"TestB"}
{"Action":"output",` + pkg + `,"Test":"TestB","Output":"=== RUN   TestB\n"}
{"Action":"output",` + pkg + `,"Test":"TestB","Output":"    b_test.go:9: boom\n"}
{"Action":"output",` + pkg + `,"Test":"TestB","Output":"--- FAIL: TestB (0.00s)\n"}
{"Action":"fail",` + pkg + `,"Test":"TestB"}
{"Action":"output",` + pkg + `,"Output":"FAIL\n"}
{"Action":"output",` + pkg + `,"Output":"FAIL\texample.com/p\t0.01s\n"}
{"Action":"fail",` + pkg + `}
`, "    b_test.go:9: boom\n--- FAIL: TestB (0.00s)\nFAIL\nFAIL\texample.com/p\t0.01s\n", true},
		{"skip: listed last with its reason",
			`{"Action":"run",` + pkg + `,"Test":"TestC"}
{"Action":"output",` + pkg + `,"Test":"TestC","Output":"=== RUN   TestC\n"}
{"Action":"output",` + pkg + `,"Test":"TestC","Output":"    c_test.go:5: jose is not installed\n"}
{"Action":"output",` + pkg + `,"Test":"TestC","Output":"--- SKIP: TestC (0.00s)\n"}
{"Action":"skip",` + pkg + `,"Test":"TestC"}
{"Action":"output",` + pkg + `,"Output":"ok  \texample.com/p\t0.01s\n"}
{"Action":"pass",` + pkg + `}
`, "ok  \texample.com/p\t0.01s\n\nskipped tests (1):\n  example.com/p TestC: c_test.go:5: jose is not installed\n", false},
		{"a package that dies mid-test shows what the test printed",
			`{"Action":"run",` + pkg + `,"Test":"TestD"}
{"Action":"output",` + pkg + `,"Test":"TestD","Output":"    d_test.go:1: started\n"}
{"Action":"output",` + pkg + `,"Output":"panic: test timed out after 1s\n"}
{"Action":"output",` + pkg + `,"Output":"FAIL\texample.com/p\t1.00s\n"}
{"Action":"fail",` + pkg + `}
`, "panic: test timed out after 1s\nFAIL\texample.com/p\t1.00s\n    d_test.go:1: started\n", true},
		{"build failure",
			`{"ImportPath":"example.com/q","Action":"build-output","Output":"# example.com/q\n"}
{"ImportPath":"example.com/q","Action":"build-output","Output":"q.go:1:1: syntax error\n"}
{"ImportPath":"example.com/q","Action":"build-fail"}
{"Action":"output","Package":"example.com/q","Output":"FAIL\texample.com/q [build failed]\n"}
{"Action":"fail","Package":"example.com/q"}
`, "# example.com/q\nq.go:1:1: syntax error\nFAIL\texample.com/q [build failed]\n", true},
		{"other lines pass through", "go: downloading x v1.0.0\n{not json\n[]\nno newline at the end",
			"go: downloading x v1.0.0\n{not json\n[]\nno newline at the end\n", false},
		{"no test files", `{"Action":"output","Package":"example.com/r","Output":"?   \texample.com/r\t[no test files]\n"}
{"Action":"skip","Package":"example.com/r"}
`, "?   \texample.com/r\t[no test files]\n", false},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		s := newSummary(&out)
		if err := s.read(strings.NewReader(tt.in)); err != nil {
			t.Fatalf("%s: read: %v", tt.name, err)
		}
		s.finish()
		if out.String() != tt.want || s.failed != tt.failed {
			t.Errorf("%s: summary = %q, failed %v; want %q, failed %v", tt.name, out.String(), s.failed, tt.want, tt.failed)
		}
	}
}

func TestLongLinePassesThrough(t *testing.T) {
	long := strings.Repeat("x", maxLine+10)
	var out bytes.Buffer
	s := newSummary(&out)
	if err := s.read(strings.NewReader(long + "\nafter\n")); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != long+"\nafter\n" {
		t.Errorf("long line: got %d bytes ending %q, want the line and the next unchanged", len(got), got[max(0, len(got)-10):])
	}
}

// TestRunGoTest runs a real `go test -json` on a small module through testsummary.
func TestRunGoTest(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a test binary")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		goCmd = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	dir, err := filepath.Abs("testdata/sample")
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	var out, errb bytes.Buffer
	code := run([]string{goCmd, "test", "-json", "-count=1", "."}, strings.NewReader(""), &out, &errb)
	got := out.String()
	for _, want := range []string{
		"sample_test.go:9: boom: the failure message\n--- FAIL: TestFail (",
		"FAIL\nFAIL\tsample\t",
		"\nskipped tests (2):\n  sample TestSkip: sample_test.go:11: needs a tool that is not installed\n" +
			"  sample TestSub/skipped: sample_test.go:14: subtest skipped for a reason\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("go test with a failure: output lacks %q:\n%s", want, got)
		}
	}
	if code != 1 || strings.Contains(got, "=== RUN") || strings.Contains(got, "passing test's log") {
		t.Errorf("go test with a failure: exit %d (want 1), output:\n%s\nstderr: %s", code, got, errb.String())
	}
	if !strings.HasSuffix(got, "subtest skipped for a reason\n") {
		t.Errorf("the skipped tests are not the last lines:\n%s", got)
	}

	out.Reset()
	code = run([]string{goCmd, "test", "-json", "-count=1", "-run", "TestPass|TestSkip", "."}, strings.NewReader(""), &out, &errb)
	if got := out.String(); code != 0 || !strings.HasPrefix(got, "ok  \tsample\t") ||
		!strings.HasSuffix(got, "\nskipped tests (1):\n  sample TestSkip: sample_test.go:11: needs a tool that is not installed\n") {
		t.Errorf("go test that passes: exit %d (want 0), output:\n%s", code, got)
	}

	// The command's own failure (a bad flag: no events at all) keeps its exit status.
	out.Reset()
	errb.Reset()
	if code := run([]string{goCmd, "test", "-json", "-nosuchflag", "."}, strings.NewReader(""), &out, &errb); code == 0 {
		t.Errorf("go test -nosuchflag: exit 0, want go's failure status; stderr %s", errb.String())
	}
}

func FuzzSummary(f *testing.F) {
	f.Add([]byte(`{"Action":"output","Package":"p","Test":"T","Output":"x\n"}` + "\n" + `{"Action":"skip","Package":"p","Test":"T"}` + "\n"))
	f.Add([]byte(`{"Action":"fail","Package":"p"}` + "\nplain\n"))
	f.Add([]byte("{\"Action\":\"build-output\",\"Output\":\"# p\"}\n{}\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		s := newSummary(&out)
		if err := s.read(bytes.NewReader(in)); err != nil {
			t.Fatal(err)
		}
		s.finish()
		// A line that is not an event comes out unchanged.
		for _, l := range strings.Split(string(in), "\n") {
			if l != "" && !strings.HasPrefix(l, "{") && !strings.Contains(out.String(), l) {
				t.Errorf("line %q lost; output %q", l, out.String())
			}
		}
		if s.failed && !bytes.Contains(in, []byte("fail")) && !bytes.Contains(in, []byte(`\u`)) {
			t.Errorf("failed without a fail event in %q", in)
		}
	})
}
