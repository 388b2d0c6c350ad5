package fetch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
)

func TestVerifier(t *testing.T) {
	tests := []struct {
		name, in string
		count    int64 // -1: none
		lines    int64
		err      string
	}{
		{"plain", `{"resourceType":"Patient","id":"1"}` + "\n" + `{"resourceType":"Patient","id":"2"}` + "\n", 2, 2, ""},
		{"CRLF, BOM, blank lines, no final newline", "\xef\xbb\xbf" + `{"resourceType":"Patient"}` + "\r\n\r\n  \n" + `{ "resourceType" : "Patient" }`, 2, 2, ""},
		{"empty", "", 0, 0, ""},
		{"no count", `{"resourceType":"Patient"}` + "\n", -1, 1, ""},
		{"not JSON", `{"resourceType":"Patient"}` + "\n\n" + `{"resourceType":"Patient",}` + "\n", -1, 2, "f.part:3: not valid JSON"},
		{"truncated last line", `{"resourceType":"Patient"}` + "\n" + `{"resourceType":"Pat`, -1, 2, "f.part:2: not valid JSON"},
		{"wrong type", `{"resourceType":"Patient"}` + "\n" + `{"resourceType":"Observation"}` + "\n", -1, 2, `f.part:2: resourceType "Observation", want "Patient"`},
		{"no type", `{"id":"x"}` + "\n", -1, 1, `f.part:1: no resourceType, want "Patient"`},
		{"count", `{"resourceType":"Patient"}` + "\n", 2, 1, "f.part: 1 resources, want 2 (the manifest's count)"},
		{"too long", `{"resourceType":"Patient","x":"` + strings.Repeat("a", 100) + `"}` + "\n", -1, 0, "f.part:1: line longer than 64 bytes"},
		{"over count", `{"resourceType":"Patient"}` + "\n\n" + `{"resourceType":"Patient"}` + "\n" + `{"resourceType":"Patient"}` + "\n" + `{"resourceType":"Patient"}`, 2, 0, "f.part:4: more than 2 resources (the manifest's count)"},
		{"blank flood", "\r\n" + strings.Repeat("\n", 40), -1, 0, "f.part:33: more than 32 bytes of blank lines"},
	}
	for _, tt := range tests {
		// Whole, and split at every byte: the result must not depend on where reads end.
		for _, step := range []int{len(tt.in) + 1, 1, 7} {
			v := newVerifier("f.part", "Patient", tt.count, tt.count >= 0, 64)
			v.maxBlank = 32
			var err error
			for i := 0; i < len(tt.in) && err == nil; i += step {
				err = v.write([]byte(tt.in[i:min(i+step, len(tt.in))]))
			}
			if err == nil {
				err = v.finish()
			}
			switch {
			case tt.err == "" && err != nil:
				t.Errorf("%s (step %d): %v", tt.name, step, err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, ErrVerify)):
				t.Errorf("%s (step %d): err = %v, want %q", tt.name, step, err, tt.err)
			case tt.err == "" && (v.lines != tt.lines || v.size != int64(len(tt.in))):
				t.Errorf("%s (step %d): %d lines, %d bytes; want %d, %d", tt.name, step, v.lines, v.size, tt.lines, len(tt.in))
			}
		}
	}
}

// FuzzVerifier: however the bytes are split into writes, the verdict, line count and hash are
// the same as for one write, including the stops at the count and at too many blank lines.
func FuzzVerifier(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Patient"}`+"\n"+`{"resourceType":"Patient"}`), uint8(3))
	f.Add([]byte("\xef\xbb\xbf{\"resourceType\":\"Patient\"}\r\n\n"), uint8(1))
	f.Add([]byte(`{"resourceType":"Observation"}`+"\n"), uint8(5))
	f.Add([]byte("not json\n"), uint8(2))
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		run := func(step int) (string, int64, string) {
			// A count of 2 and a small blank-line budget: stopping early must not depend on
			// where writes end either.
			v := newVerifier("f", "Patient", 2, true, 1<<10)
			v.maxBlank = 16
			var err error
			for i := 0; i < len(in) && err == nil; i += step {
				err = v.write(in[i:min(i+step, len(in))])
			}
			if err == nil {
				err = v.finish()
			}
			msg := ""
			if err != nil {
				msg = err.Error()
			}
			return msg, v.lines, v.digest()
		}
		e1, l1, d1 := run(len(in) + 1)
		e2, l2, d2 := run(int(step%16) + 1)
		if e1 != e2 || (e1 == "" && (l1 != l2 || d1 != d2)) {
			t.Errorf("one write: %q %d %s; step %d: %q %d %s", e1, l1, d1, step%16+1, e2, l2, d2)
		}
	})
}

func TestContentRange(t *testing.T) {
	tests := []struct {
		in           string
		start, total int64
		ok           bool
	}{
		{"bytes 100-199/200", 100, 200, true},
		{"bytes 0-0/*", 0, -1, true},
		{"bytes */200", 0, 0, false},
		{"items 1-2/3", 0, 0, false},
		{"bytes -5-10/20", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tt := range tests {
		start, total, ok := contentRange(tt.in)
		if ok != tt.ok || ok && (start != tt.start || total != tt.total) {
			t.Errorf("contentRange(%q) = %d, %d, %v; want %d, %d, %v", tt.in, start, total, ok, tt.start, tt.total, tt.ok)
		}
	}
	if n, ok := unsatisfiedLength(http.Header{"Content-Range": {"bytes */4096"}}); !ok || n != 4096 {
		t.Errorf("unsatisfiedLength(bytes */4096) = %d, %v", n, ok)
	}
}

func FuzzContentRange(f *testing.F) {
	for _, s := range []string{"bytes 100-199/200", "bytes 0-0/*", "bytes */1", "bytes 1-/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, total, ok := contentRange(s)
		if ok && (start < 0 || total < -1) {
			t.Errorf("contentRange(%q) = %d, %d: negative", s, start, total)
		}
	})
}

// FuzzParsePage: any line is either refused or gives a manifest; the context never leaks into
// the page as saved.
func FuzzParsePage(f *testing.F) {
	f.Add([]byte(`{"transactionTime":"2024-01-01T00:00:00Z","output":[{"type":"Patient","url":"http://x/1"}],"_bulkpipe":{"statusUrl":"http://x/s","page":1}}`))
	f.Add([]byte(`{"output":[{"type":"../x","url":"a"}],"error":[]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, line []byte) {
		p, err := ParsePage(line)
		if err != nil {
			return
		}
		if bytes.Contains(p.Raw, []byte(`"_bulkpipe"`)) && p.HasContext {
			t.Errorf("ParsePage(%q).Raw keeps the context", line)
		}
		base, _ := url.Parse("http://x/fhir/status/1")
		entries, err := numberer{}.entries(p.Manifest, base, nil)
		for _, e := range entries {
			if !isTypeName(e.id.rtype) || strings.ContainsAny(e.id.rel(), `\`) || strings.Contains(e.id.rel(), "..") {
				t.Errorf("entry %+v names an unsafe path", e.id)
			}
		}
		_ = err
	})
}

func TestEntries(t *testing.T) {
	base, _ := url.Parse("http://x/fhir/status/1")
	page := func(s string) *bulk.Manifest {
		m, err := bulk.ParseManifest([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	n := numberer{}
	var rels []string
	var warned []string
	for _, p := range []string{
		`{"output":[{"type":"Patient","url":"http://f/a"},{"type":"Observation","url":"http://f/b"},{"type":"Patient","url":"../files/c"}],"deleted":[{"type":"Bundle","url":"http://f/d"}]}`,
		`{"output":[{"type":"Patient","url":"http://f/e"}],"error":[{"type":"OperationOutcome","url":"http://f/g"}],"outcome":[{"url":"http://f/h"}]}`,
	} {
		es, err := n.entries(page(p), base, func(r string) { warned = append(warned, r) })
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			rels = append(rels, e.id.rel()+" "+e.url)
		}
	}
	want := []string{
		"Patient.000.ndjson http://f/a", "Observation.000.ndjson http://f/b", "Patient.001.ndjson http://x/fhir/files/c",
		"deleted/Bundle.000.ndjson http://f/d", "Patient.002.ndjson http://f/e",
		"error/OperationOutcome.000.ndjson http://f/g", "error/OperationOutcome.001.ndjson http://f/h",
	}
	if strings.Join(rels, "\n") != strings.Join(want, "\n") {
		t.Errorf("entries =\n%s\nwant\n%s", strings.Join(rels, "\n"), strings.Join(want, "\n"))
	}
	if len(warned) != 1 || warned[0] != "../files/c" {
		t.Errorf("relative URLs reported: %q, want [../files/c]", warned)
	}
	for _, typ := range []string{"../evil", "a/b", "/etc/passwd", "Patient..x", "", "patient", "Pa tient", `Pa\x`} {
		m := &bulk.Manifest{Output: []bulk.Item{{Type: typ, URL: "http://f/a"}}}
		if _, err := (numberer{}).entries(m, base, nil); err == nil || !strings.Contains(err.Error(), "not a FHIR resource type") {
			t.Errorf("type %q: err = %v, want a refusal", typ, err)
		}
	}
	m := &bulk.Manifest{Output: []bulk.Item{{Type: "Patient", URL: "file:///etc/passwd"}}}
	if _, err := (numberer{}).entries(m, base, nil); err == nil {
		t.Errorf("a file: URL was accepted")
	}
}

func TestLimiter(t *testing.T) {
	ctx := context.Background()
	l := newLimiter(4)
	var epochs []int
	for range 4 {
		e, err := l.acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		epochs = append(epochs, e)
	}
	if n, changed := l.throttled(epochs[0]); n != 2 || !changed {
		t.Errorf("throttled = %d, %v; want 2, true", n, changed)
	}
	// The other requests of the same burst do not halve it again.
	if n, changed := l.throttled(epochs[1]); n != 2 || changed {
		t.Errorf("second throttled of one burst = %d, %v; want 2, false", n, changed)
	}
	for range 4 {
		l.release()
	}
	// Slow recovery: limit successes in a row raise the limit by one.
	for i := range 2 {
		if n, changed := l.succeeded(); changed != (i == 1) || (changed && n != 3) {
			t.Errorf("succeeded #%d = %d, %v", i+1, n, changed)
		}
	}
	// FIFO: waiters are served in order, and a cancelled waiter gives its turn away.
	l = newLimiter(1)
	l.acquire(ctx)
	cctx, cancel := context.WithCancel(ctx)
	got := make(chan int, 3)
	var wg sync.WaitGroup
	start := func(i int, ctx context.Context) {
		ready := make(chan struct{})
		wg.Go(func() {
			close(ready)
			if _, err := l.acquire(ctx); err == nil {
				got <- i
				l.release()
			}
		})
		<-ready
		for {
			l.mu.Lock()
			n := len(l.waiters)
			l.mu.Unlock()
			if n >= i {
				return
			}
			time.Sleep(time.Millisecond) // wait for the goroutine to queue, not to make a point
		}
	}
	start(1, cctx)
	start(2, ctx)
	cancel()
	l.release()
	wg.Wait()
	close(got)
	var order []int
	for i := range got {
		order = append(order, i)
	}
	if fmt.Sprint(order) != "[2]" {
		t.Errorf("served %v, want [2] (1 was cancelled)", order)
	}
	if l.current() != 1 || l.active != 0 {
		t.Errorf("limit %d, active %d after all released", l.current(), l.active)
	}
}

// fileServer serves NDJSON files for hand-made manifests; it can ignore Range and cut the
// first answer to a path after some bytes.
type fileServer struct {
	*httptest.Server
	mu          sync.Mutex
	files       map[string]string
	ignoreRange bool
	cut         map[string]int // path → bytes sent before the first answer is cut
	ranges      []string
}

func newFileServer(t *testing.T, files map[string]string) *fileServer {
	fs := &fileServer{files: files, cut: map[string]int{}}
	fs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.URL.Path = path.Clean(r.URL.Path)
		fs.mu.Lock()
		body, ok := fs.files[r.URL.Path]
		cut, cutting := fs.cut[r.URL.Path]
		delete(fs.cut, r.URL.Path)
		fs.ranges = append(fs.ranges, r.Header.Get("Range"))
		ignore := fs.ignoreRange
		fs.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("ETag", `"v1"`)
		if cutting {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(http.StatusOK)
			w.Write([]byte(body[:cut]))
			panic(http.ErrAbortHandler)
		}
		if ignore {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Write([]byte(body))
			return
		}
		http.ServeContent(w, r, "", time.Unix(1e9, 0), strings.NewReader(body))
	}))
	t.Cleanup(fs.Close)
	return fs
}

// manifestLine builds one input line; statusURL "" leaves the context out.
func manifestLine(t *testing.T, statusURL string, m map[string]any) []byte {
	t.Helper()
	if _, ok := m["transactionTime"]; !ok {
		m["transactionTime"] = "2024-01-01T00:00:00Z"
	}
	b, _ := json.Marshal(m)
	if statusURL != "" {
		b, _ = bulk.WithContext(b, bulk.Context{StatusURL: statusURL, Page: 1})
	}
	return append(b, '\n')
}

func items(base string, kv ...string) []map[string]any {
	var out []map[string]any
	for i := 0; i < len(kv); i += 2 {
		out = append(out, map[string]any{"type": kv[i], "url": base + kv[i+1]})
	}
	return out
}

const patients = `{"resourceType":"Patient","id":"1"}` + "\n" + `{"resourceType":"Patient","id":"2"}` + "\n" + `{"resourceType":"Patient","id":"3"}` + "\n"

// TestFetchVerification: a file that is not what the manifest says is never renamed; the error
// names the .part, the line and the expectation, and the .part stays for inspection.
func TestFetchVerification(t *testing.T) {
	tests := []struct {
		name, body string
		count      int
		err        string
	}{
		{"wrong type", patients + `{"resourceType":"Observation","id":"4"}` + "\n", 0, `Patient.000.ndjson.part:4: resourceType "Observation", want "Patient"`},
		{"not JSON", `{"resourceType":"Patient"}` + "\n<html>oops</html>\n", 0, "Patient.000.ndjson.part:2: not valid JSON"},
		{"count", patients, 4, "Patient.000.ndjson.part: 3 resources, want 4 (the manifest's count)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFileServer(t, map[string]string{"/f/p": tt.body})
			it := items(srv.URL, "Patient", "/f/p")
			if tt.count > 0 {
				it[0]["count"] = tt.count
			}
			c := newClient(t, srv.URL, fhirclient.Options{})
			dir := filepath.Join(t.TempDir(), "export")
			_, rec, err := fetchInto(t, dir, c, manifestLine(t, "", map[string]any{"output": it}), nil)
			if !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), filepath.Join(dir, tt.err)) {
				t.Fatalf("err = %v, want %q", err, filepath.Join(dir, tt.err))
			}
			if b, err := os.ReadFile(filepath.Join(dir, "Patient.000.ndjson.part")); err != nil || string(b) != tt.body {
				t.Errorf(".part = %q, %v; want the body kept", b, err)
			}
			if _, err := os.Stat(filepath.Join(dir, "Patient.000.ndjson")); err == nil {
				t.Errorf("an unverified file was renamed")
			}
			if !rec.warned("no status URL") {
				t.Errorf("no warning about the missing status URL: %q", rec.warnings)
			}
			// A rerun discards the bad .part and tries again (the server may have been fixed).
			srv.mu.Lock()
			srv.files["/f/p"] = patients
			srv.mu.Unlock()
			if tt.count > 0 {
				srv.files["/f/p"] = patients + `{"resourceType":"Patient","id":"4"}` + "\n"
			}
			if _, _, err := fetchInto(t, dir, c, manifestLine(t, "", map[string]any{"output": it}), nil); err != nil {
				t.Fatalf("rerun: %v", err)
			}
		})
	}
}

// TestFetchRangeResume: a body cut mid-stream continues with Range from the .part's length; a
// server that ignores Range (answers 200) restarts the file; both give the same bytes.
func TestFetchRangeResume(t *testing.T) {
	body := strings.Repeat(`{"resourceType":"Patient","id":"x"}`+"\n", 5000)
	for _, ignore := range []bool{false, true} {
		t.Run(fmt.Sprintf("ignoreRange=%v", ignore), func(t *testing.T) {
			srv := newFileServer(t, map[string]string{"/f/p": body})
			srv.ignoreRange = ignore
			srv.cut["/f/p"] = 70000
			c := newClient(t, srv.URL, fhirclient.Options{})
			dir := t.TempDir()
			_, rec, err := fetchInto(t, dir, c, manifestLine(t, "", map[string]any{"output": items(srv.URL, "Patient", "/f/p")}), nil)
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "Patient.000.ndjson")); string(b) != body {
				t.Errorf("file differs from the body (%d vs %d bytes)", len(b), len(body))
			}
			if len(srv.ranges) != 2 || !strings.HasPrefix(srv.ranges[1], "bytes=") || srv.ranges[1] == "bytes=0-" {
				t.Errorf("requests' Range: %q, want a fresh one, then a resume", srv.ranges)
			}
			if restarted := rec.warned("whole file instead of the rest"); restarted != ignore {
				t.Errorf("warned about a restart: %v, want %v (%q)", restarted, ignore, rec.warnings)
			}
		})
	}
}

// TestFetchResumePart: a .part and its sidecar left by a killed run continue with Range; a .part
// already whole (killed before the rename) costs no download at all.
func TestFetchResumePart(t *testing.T) {
	body := strings.Repeat(`{"resourceType":"Patient","id":"x"}`+"\n", 100)
	srv := newFileServer(t, map[string]string{"/f/p": body})
	c := newClient(t, srv.URL, fhirclient.Options{})
	line := manifestLine(t, srv.URL+"/status/1", map[string]any{"output": items(srv.URL, "Patient", "/f/p")})
	for _, have := range []int{1000, len(body)} {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, exportdir.MetaDir), 0o755)
		exportdir.WriteState(dir, &exportdir.State{ExportID: srv.URL + "/status/1", TransactionTime: "2024-01-01T00:00:00Z"})
		os.WriteFile(filepath.Join(dir, "Patient.000.ndjson.part"), []byte(body[:have]), 0o644)
		length := int64(-1)
		if have == len(body) {
			length = int64(len(body))
		}
		writeSidecar(dir, "Patient.000.ndjson", &sidecar{TransactionTime: "2024-01-01T00:00:00Z", ETag: `"v1"`, Encoding: encIdentity, Length: length})
		srv.mu.Lock()
		srv.ranges = nil
		srv.mu.Unlock()
		if _, _, err := fetchInto(t, dir, c, line, func(o *Options) { o.NoDelete = true }); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "Patient.000.ndjson")); string(b) != body {
			t.Errorf("have %d: file differs from the body", have)
		}
		want := []string{"bytes=1000-"}
		if have == len(body) {
			want = nil
		}
		if fmt.Sprint(srv.ranges) != fmt.Sprint(want) {
			t.Errorf("have %d: requests' Range %q, want %q", have, srv.ranges, want)
		}
		if _, err := os.Stat(sidecarPath(dir, "Patient.000.ndjson")); err == nil {
			t.Errorf("sidecar left behind")
		}
	}
}

// TestFetchServerErrors: issues in error/ are read after the download; fatal or error ones
// make Result.Fatal true.
func TestFetchServerErrors(t *testing.T) {
	oo := `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing","diagnostics":"Observation export failed"},{"severity":"warning","code":"informational","details":{"text":"partial data"}}]}` + "\n"
	srv := newFileServer(t, map[string]string{"/f/p": patients, "/f/e": oo})
	c := newClient(t, srv.URL, fhirclient.Options{})
	line := manifestLine(t, "", map[string]any{"output": items(srv.URL, "Patient", "/f/p"),
		"error": items(srv.URL, "OperationOutcome", "/f/e")})
	res, _, err := fetchInto(t, t.TempDir(), c, line, nil)
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, is := range res.Issues {
		texts = append(texts, is.Severity+": "+is.Text())
	}
	if want := "error: Observation export failed|warning: partial data"; strings.Join(texts, "|") != want || !res.Fatal() {
		t.Errorf("issues %q (fatal %v), want %q and fatal", texts, res.Fatal(), want)
	}
}

// TestFetchRelativeURLs: relative file URLs resolve against the status URL, with a warning.
func TestFetchRelativeURLs(t *testing.T) {
	srv := newFileServer(t, map[string]string{"/fhir/files/p": patients, "/fhir/status/1": "{}"})
	c := newClient(t, srv.URL+"/fhir", fhirclient.Options{})
	line := manifestLine(t, srv.URL+"/fhir/status/1", map[string]any{"output": []map[string]any{{"type": "Patient", "url": "../files/p"}}})
	_, rec, err := fetchInto(t, t.TempDir(), c, line, func(o *Options) { o.NoDelete = true })
	if err != nil {
		t.Fatal(err)
	}
	if !rec.warned("relative file URLs") {
		t.Errorf("warnings %q, want one about relative URLs", rec.warnings)
	}
}

// TestFetchUnsafeType: a type that would lead outside DIR fails the run and writes nothing at all.
func TestFetchUnsafeType(t *testing.T) {
	srv := newFileServer(t, map[string]string{"/f/p": patients})
	c := newClient(t, srv.URL, fhirclient.Options{})
	root := t.TempDir()
	dir := filepath.Join(root, "export")
	_, _, err := fetchInto(t, dir, c, manifestLine(t, "", map[string]any{"output": items(srv.URL, "../../evil", "/f/p")}), nil)
	if err == nil || !strings.Contains(err.Error(), `type "../../evil" is not a FHIR resource type`) {
		t.Fatalf("err = %v, want a refusal of the type", err)
	}
	entries, _ := os.ReadDir(root)
	if len(entries) != 0 {
		t.Errorf("wrote outside the export folder, or created it: %v", entries)
	}
	// A "../" in a URL is harmless: names never come from URLs.
	dir = t.TempDir()
	if _, _, err := fetchInto(t, dir, c, manifestLine(t, "", map[string]any{"output": items(srv.URL, "Patient", "/x/../f/p")}), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "Patient.000.ndjson")); err != nil {
		t.Error(err)
	}
}

// TestPageReader: empty input is ErrNoInput; pages are numbered by input line in errors.
func TestPageReader(t *testing.T) {
	if _, err := NewPageReader(strings.NewReader("\n \n"), "-", 0).Peek(); !errors.Is(err, ErrNoInput) {
		t.Errorf("Peek(blank input) = %v, want ErrNoInput", err)
	}
	pr := NewPageReader(strings.NewReader(`{"transactionTime":"2024-01-01T00:00:00Z","output":[]}`+"\n\n"+`{"output":`+"\n"+
		`{"resourceType":"Group","id":"g"}`+"\n"), "m.ndjson", 0)
	if _, err := pr.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := pr.Next(); err == nil || !strings.HasPrefix(err.Error(), "m.ndjson:3: manifest") {
		t.Errorf("Next() = %v, want an error at m.ndjson:3", err)
	}
	// A later page is checked like the first: a FHIR resource is never taken for a manifest.
	if _, err := pr.Next(); !errors.Is(err, bulk.ErrNotManifest) || !strings.HasPrefix(err.Error(), "m.ndjson:4: ") {
		t.Errorf("Next() = %v, want ErrNotManifest at m.ndjson:4", err)
	}
}

func TestSafeRel(t *testing.T) {
	for name, want := range map[string]bool{
		"Patient.000.ndjson": true, "Patient.000.ndjson.gz": true, "deleted/Bundle.001.ndjson": true,
		"error/OperationOutcome.000.ndjson": true, "../Patient.000.ndjson": false, "x/Patient.000.ndjson": false,
		"/etc/passwd": false, "Patient.ndjson": false, "deleted/../../x": false, "log.ndjson": false, "": false,
	} {
		if got := safeRel(name); got != want {
			t.Errorf("safeRel(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestFetchRefusedManifestClaimsNothing: a manifest that is refused leaves the folder as it was
// (not created, or still empty), so the next, correct export into it needs no --new-export.
func TestFetchRefusedManifestClaimsNothing(t *testing.T) {
	srv := newFileServer(t, map[string]string{"/f/p": patients})
	c := newClient(t, srv.URL, fhirclient.Options{})
	status := srv.URL + "/status/1"
	tests := []struct {
		name string
		line []byte
		err  string
	}{
		{"path type", manifestLine(t, status, map[string]any{"output": items(srv.URL, "../evil", "/f/p")}), `type "../evil"`},
		{"not http", manifestLine(t, status, map[string]any{"output": items("file://", "Patient", "/etc/passwd")}), "is not http or https"},
		{"relative status URL", manifestLine(t, "status/1", map[string]any{"output": items(srv.URL, "Patient", "/f/p")}), "want an absolute http or https URL"},
	}
	// Another export: into a folder the refused one had claimed, it would need --new-export.
	good := manifestLine(t, srv.URL+"/status/2", map[string]any{"transactionTime": "2024-02-02T00:00:00Z",
		"output": items(srv.URL, "Patient", "/f/p")})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, exists := range []bool{false, true} {
				dir := filepath.Join(t.TempDir(), "export")
				if exists {
					os.Mkdir(dir, 0o755)
				}
				_, _, err := fetchInto(t, dir, c, tt.line, func(o *Options) { o.NoDelete = true })
				if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.HasPrefix(err.Error(), "manifest:1: ") {
					t.Fatalf("err = %v, want manifest:1: … %s", err, tt.err)
				}
				entries, statErr := os.ReadDir(dir)
				if exists && (statErr != nil || len(entries) > 0) || !exists && statErr == nil {
					t.Errorf("folder (existed %v) after the refusal: %v, %v; want it as it was", exists, entries, statErr)
				}
				if _, _, err := fetchInto(t, dir, c, good, func(o *Options) { o.NoDelete = true }); err != nil {
					t.Errorf("the correct export after the refusal: %v", err)
				}
			}
		})
	}
}

// TestFetchIssuesWhenFilesFail: when a file fails, the issues of the error files on disk still
// come back with the error, since they may say why; a failure that a rerun cannot cure (a file
// that fails verification) does not promise one.
func TestFetchIssuesWhenFilesFail(t *testing.T) {
	oo := `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing","diagnostics":"Observation export failed"}]}` + "\n"
	srv := newFileServer(t, map[string]string{"/f/p": patients, "/f/e": oo})
	c := newClient(t, srv.URL, fhirclient.Options{})
	out := items(srv.URL, "Patient", "/f/p")
	out[0]["count"] = 4 // the file has 3
	// The error item's count is wrong too, as a reference server copies it from the failed file.
	errs := items(srv.URL, "OperationOutcome", "/f/e")
	errs[0]["count"] = 4
	res, rec, err := fetchInto(t, t.TempDir(), c, manifestLine(t, "", map[string]any{"output": out, "error": errs}), nil)
	if !errors.Is(err, ErrVerify) || strings.Contains(err.Error(), "run again") {
		t.Errorf("err = %v, want the verification failure without a promise that a rerun helps", err)
	}
	if res == nil || len(res.Issues) != 1 || res.Issues[0].Text() != "Observation export failed" {
		t.Errorf("Result = %+v, want the error file's issue", res)
	}
	if !rec.warned("1 resources, but the manifest's count is 4: kept anyway") {
		t.Errorf("warnings %q, want one about the error file's count", rec.warnings)
	}
}
