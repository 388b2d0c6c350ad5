package bulk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
)

// answer is one scripted response.
type answer struct {
	code   int
	header map[string]string
	body   string
}

// script serves a sequence of answers per path; the last answer of a path repeats. These
// protocol corner cases (a page that gains its link, a link loop) are easier to pin with a
// scripted server than with pkg/fhirtest, which the tools' end-to-end tests use.
type script struct {
	mu    sync.Mutex
	paths map[string][]answer
	seen  []string
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.seen = append(s.seen, r.Method+" "+r.URL.Path)
	as := s.paths[r.URL.Path]
	if len(as) == 0 {
		s.mu.Unlock()
		http.NotFound(w, r)
		return
	}
	a := as[0]
	if len(as) > 1 {
		s.paths[r.URL.Path] = as[1:]
	}
	s.mu.Unlock()
	if r.Header.Get("Accept") != "application/json" && r.Method == "GET" {
		http.Error(w, "want Accept: application/json", http.StatusNotAcceptable)
		return
	}
	for k, v := range a.header {
		w.Header().Set(k, strings.ReplaceAll(v, "$URL", "http://"+r.Host))
	}
	w.WriteHeader(a.code)
	w.Write([]byte(strings.ReplaceAll(a.body, "$URL", "http://"+r.Host)))
}

// fakeClock is a clock that sleeping advances.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	slept  []time.Duration
	cancel func() // called at the first sleep, when set
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.slept = append(c.slept, d)
	c.now = c.now.Add(d)
	cancel := c.cancel
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	return ctx.Err()
}

func pollServer(t *testing.T, paths map[string][]answer) (*httptest.Server, *script, *fhirclient.Client, *fakeClock) {
	t.Helper()
	s := &script{paths: paths}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	clock := &fakeClock{now: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
	c, err := fhirclient.New(fhirclient.Options{FHIRBase: srv.URL + "/fhir", MaxAttempts: 3, Now: clock.Now, Sleep: clock.Sleep,
		Rand: func() float64 { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	return srv, s, c, clock
}

const (
	manifest1 = `{"transactionTime":"2024-01-01T00:00:00Z","request":"$URL/fhir/$export","requiresAccessToken":true,
  "output":[{"type":"Patient","url":"$URL/files/1"}],"error":[],"extension":{"x":  1.50}}`
	manifest1Linked = `{"transactionTime":"2024-01-01T00:00:00Z","request":"$URL/fhir/$export","requiresAccessToken":true,
  "output":[{"type":"Patient","url":"$URL/files/1"}],"error":[],"extension":{"x":  1.50},"link":[{"relation":"next","url":"page/2"}]}`
	manifest2 = `{"transactionTime":"2024-01-01T00:00:00Z","request":"$URL/fhir/$export","requiresAccessToken":true,
  "output":[{"type":"Condition","url":"$URL/files/2"}],"error":[{"type":"OperationOutcome","url":"$URL/files/e"}]}`
	transientOO = `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"transient","diagnostics":"database busy"}]}`
	goneOO      = `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found","diagnostics":"job expired"}]}`
)

func collect(t *testing.T, c *fhirclient.Client, url string, opts PollOptions) ([]Page, []Progress, error) {
	t.Helper()
	var pages []Page
	var progress []Progress
	opts.Progress = func(p Progress) { progress = append(progress, p) }
	err := Poll(t.Context(), c, url, opts, func(p Page) error {
		pages = append(pages, p)
		return nil
	})
	return pages, progress, err
}

func TestPollWaitsOut202s(t *testing.T) {
	epochMs := strconv.FormatInt(time.Date(2024, 1, 1, 0, 0, 7, 0, time.UTC).UnixMilli(), 10)
	srv, _, c, clock := pollServer(t, map[string][]answer{"/fhir/status/1": {
		{202, map[string]string{"X-Progress": "10%", "Retry-After": "3"}, ""},
		{202, map[string]string{"X-Progress": "20%", "Retry-After": epochMs}, ""},
		{202, map[string]string{"X-Progress": "30%", "Retry-After": "Mon, 01 Jan 2024 00:00:30 GMT"}, ""},
		{202, map[string]string{"Retry-After": "99999"}, ""},
		{202, nil, `{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"informational"}]}`},
		{202, nil, ""},
		{200, map[string]string{"Expires": "Tue, 02 Jan 2024 00:00:00 GMT"}, manifest1},
	}})
	opts := PollOptions{MaxWait: time.Minute, Now: clock.Now, Sleep: clock.Sleep, Rand: func() float64 { return 0 }}
	pages, progress, err := collect(t, c, srv.URL+"/fhir/status/1", opts)
	if err != nil {
		t.Fatal(err)
	}
	// 3 s; epoch-ms 7 s after the start, 3 s in: 4 s; the date, 7 s in: 23 s; 99999 s capped: 1 min;
	// no Retry-After: backoff 1 s, 2 s for the 5th and 6th attempt... from attempt 5: 16 s, 32 s.
	wantWaits := []time.Duration{3 * time.Second, 4 * time.Second, 23 * time.Second, time.Minute, 16 * time.Second, 32 * time.Second}
	if !cmp.Equal(clock.slept, wantWaits) {
		t.Errorf("waits = %v, want %v", clock.slept, wantWaits)
	}
	if len(progress) != 6 || progress[0].XProgress != "10%" || progress[2].XProgress != "30%" || progress[5].Attempt != 6 ||
		progress[1].Elapsed != 3*time.Second || progress[1].RetryAfter != epochMs || progress[3].Wait != time.Minute {
		t.Errorf("progress = %+v", progress)
	}
	if len(pages) != 1 {
		t.Fatalf("got %d pages, want 1", len(pages))
	}
	p := pages[0]
	if p.Number != 1 || p.Next != "" || p.Partial || p.Expires != "Tue, 02 Jan 2024 00:00:00 GMT" ||
		p.TransactionTime != "2024-01-01T00:00:00Z" || p.URL != srv.URL+"/fhir/status/1" {
		t.Errorf("page = %+v", p)
	}
	if strings.Contains(string(p.Raw), "\n") || !strings.Contains(string(p.Raw), `"extension":{"x":1.50}`) {
		t.Errorf("page.Raw = %s, want one line with values as sent", p.Raw)
	}
}

func TestPollPartialManifests(t *testing.T) {
	srv, s, c, clock := pollServer(t, map[string][]answer{
		"/fhir/status/1": {
			{202, map[string]string{"X-Progress": "page 1 ready"}, manifest1},
			{202, nil, manifest1},
			{202, nil, manifest1Linked},
		},
		"/fhir/status/page/2": {
			{202, nil, ""},
			{200, map[string]string{"Expires": "soon"}, manifest2},
		},
	})
	opts := PollOptions{Now: clock.Now, Sleep: clock.Sleep, Rand: func() float64 { return 0 }}
	pages, progress, err := collect(t, c, srv.URL+"/fhir/status/1", opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(pages) != 2 {
		t.Fatalf("got %d pages, want 2: %+v", len(pages), pages)
	}
	if p := pages[0]; p.Number != 1 || !p.Partial || p.Next != "" || strings.Contains(string(p.Raw), "link") {
		t.Errorf("page 1 = %+v, want the first 202's manifest", p)
	}
	if p := pages[1]; p.Number != 2 || p.Partial || p.URL != srv.URL+"/fhir/status/page/2" || p.Expires != "soon" ||
		!strings.Contains(string(p.Raw), "Condition") {
		t.Errorf("page 2 = %+v", p)
	}
	if len(progress) != 3 || progress[2].Page != 2 || progress[2].Attempt != 1 {
		t.Errorf("progress = %+v, want 2 waits for page 1 and 1 for page 2", progress)
	}
	want := []string{"GET /fhir/status/1", "GET /fhir/status/1", "GET /fhir/status/1", "GET /fhir/status/page/2", "GET /fhir/status/page/2"}
	if !cmp.Equal(s.seen, want) {
		t.Errorf("requests = %q, want %q", s.seen, want)
	}
	merged, err := MergePages([][]byte{pages[0].Raw, pages[1].Raw})
	if err != nil {
		t.Fatal(err)
	}
	wantMerged := `{"transactionTime":"2024-01-01T00:00:00Z","request":"URL/fhir/$export","requiresAccessToken":true,` +
		`"output":[{"type":"Patient","url":"URL/files/1"},{"type":"Condition","url":"URL/files/2"}],` +
		`"error":[{"type":"OperationOutcome","url":"URL/files/e"}],"extension":{"x":1.50}}`
	if got := strings.ReplaceAll(string(merged), srv.URL, "URL"); got != wantMerged {
		t.Errorf("MergePages =\n%s\nwant\n%s", got, wantMerged)
	}
}

func TestPollTransientAndErrors(t *testing.T) {
	t.Run("transient retried", func(t *testing.T) {
		srv, _, c, clock := pollServer(t, map[string][]answer{"/fhir/status/1": {
			{400, map[string]string{"Content-Type": "application/fhir+json"}, transientOO},
			{404, map[string]string{"Retry-After": "5"}, transientOO},
			{200, nil, manifest1},
		}})
		pages, progress, err := collect(t, c, srv.URL+"/fhir/status/1", PollOptions{Now: clock.Now, Sleep: clock.Sleep,
			Rand: func() float64 { return 0 }})
		if err != nil || len(pages) != 1 {
			t.Fatalf("Poll = %v with %d pages, want the manifest after 2 transient errors", err, len(pages))
		}
		if len(progress) != 2 || progress[0].Err == nil || !strings.Contains(progress[0].Err.Error(), "database busy") ||
			progress[1].Wait != 5*time.Second {
			t.Errorf("progress = %+v", progress)
		}
	})
	t.Run("transient forever", func(t *testing.T) {
		srv, _, c, clock := pollServer(t, map[string][]answer{"/fhir/status/1": {{400, nil, transientOO}}})
		_, progress, err := collect(t, c, srv.URL+"/fhir/status/1", PollOptions{Now: clock.Now, Sleep: clock.Sleep})
		// MaxAttempts tries: the first poll and MaxAttempts-1 retries.
		if err == nil || !strings.Contains(err.Error(), "database busy") || len(progress) != c.MaxAttempts()-1 {
			t.Errorf("Poll = %v after %d retries, want the transient error after %d", err, len(progress), c.MaxAttempts()-1)
		}
	})
	t.Run("4xx ends", func(t *testing.T) {
		srv, _, c, clock := pollServer(t, map[string][]answer{"/fhir/status/1": {{202, nil, ""}, {404, nil, goneOO}}})
		_, _, err := collect(t, c, srv.URL+"/fhir/status/1", PollOptions{Now: clock.Now, Sleep: clock.Sleep})
		want := "GET " + srv.URL + "/fhir/status/1: 404 Not Found: job expired"
		if err == nil || err.Error() != want {
			t.Errorf("Poll = %v, want %q", err, want)
		}
		if se, ok := errors.AsType[*fhirclient.StatusError](err); !ok || se.StatusCode != 404 {
			t.Errorf("Poll error %v is not a *fhirclient.StatusError", err)
		}
	})
	t.Run("200 not JSON", func(t *testing.T) {
		srv, _, c, clock := pollServer(t, map[string][]answer{"/fhir/status/1": {{200, nil, "<html>ok</html>"}}})
		_, _, err := collect(t, c, srv.URL+"/fhir/status/1", PollOptions{Now: clock.Now, Sleep: clock.Sleep})
		if !errors.Is(err, ErrNotManifest) || !strings.Contains(err.Error(), "200 OK: not a Bulk Data manifest: the body is not a JSON object") {
			t.Errorf("Poll = %v, want ErrNotManifest", err)
		}
	})
	t.Run("200 a FHIR resource", func(t *testing.T) {
		srv, _, c, clock := pollServer(t, map[string][]answer{"/fhir/Group/cohort-b": {{200, nil, `{"resourceType":"Group","id":"cohort-b","type":"person"}`}}})
		_, _, err := collect(t, c, srv.URL+"/fhir/Group/cohort-b", PollOptions{Now: clock.Now, Sleep: clock.Sleep})
		if !errors.Is(err, ErrNotManifest) || !strings.Contains(err.Error(), "a FHIR Group resource") {
			t.Errorf("Poll = %v, want ErrNotManifest naming the Group", err)
		}
	})
	t.Run("link loop", func(t *testing.T) {
		srv, _, c, clock := pollServer(t, map[string][]answer{
			"/fhir/status/1": {{200, nil, strings.Replace(manifest1Linked, "page/2", "/fhir/status/2", 1)}},
			"/fhir/status/2": {{200, nil, strings.Replace(manifest1Linked, "page/2", "1", 1)}},
		})
		pages, _, err := collect(t, c, srv.URL+"/fhir/status/1", PollOptions{Now: clock.Now, Sleep: clock.Sleep})
		if err == nil || !strings.Contains(err.Error(), "points back to an earlier page") || len(pages) != 2 {
			t.Errorf("Poll = %v with %d pages", err, len(pages))
		}
	})
	t.Run("page callback error", func(t *testing.T) {
		srv, _, c, clock := pollServer(t, map[string][]answer{"/fhir/status/1": {{200, nil, manifest1}}})
		stop := errors.New("disk full")
		err := Poll(t.Context(), c, srv.URL+"/fhir/status/1", PollOptions{Now: clock.Now, Sleep: clock.Sleep},
			func(Page) error { return stop })
		if !errors.Is(err, stop) {
			t.Errorf("Poll = %v, want the callback's error", err)
		}
	})
}

func TestPollTimeout(t *testing.T) {
	srv, _, c, clock := pollServer(t, map[string][]answer{"/fhir/status/1": {{202, map[string]string{"Retry-After": "60"}, ""}}})
	_, progress, err := collect(t, c, srv.URL+"/fhir/status/1", PollOptions{Timeout: 5 * time.Minute, MaxWait: time.Hour,
		Now: clock.Now, Sleep: clock.Sleep, Rand: func() float64 { return 0 }})
	if !errors.Is(err, ErrTimeout) || len(progress) != 5 {
		t.Errorf("Poll = %v after %d waits, want ErrTimeout after 5 (the 6th would end past 5 min)", err, len(progress))
	}
}

func TestPollCancelled(t *testing.T) {
	srv, _, c, clock := pollServer(t, map[string][]answer{"/fhir/status/1": {{202, nil, ""}}})
	ctx, cancel := context.WithCancel(t.Context())
	clock.cancel = cancel
	err := Poll(ctx, c, srv.URL+"/fhir/status/1", PollOptions{Now: clock.Now, Sleep: clock.Sleep}, func(Page) error { return nil })
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
		t.Errorf("Poll = %v, want context.Canceled", err)
	}
}

func TestPollDelay(t *testing.T) {
	now := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	o := PollOptions{MaxWait: 10 * time.Second, Now: func() time.Time { return now }, Rand: func() float64 { return 1 }}.withDefaults()
	tests := []struct {
		ra      string
		attempt int
		want    time.Duration
	}{
		{"", 1, 1100 * time.Millisecond},
		{"", 3, 4400 * time.Millisecond},
		{"", 30, 10 * time.Second},
		{"0", 1, time.Second},
		{"2", 1, 2200 * time.Millisecond},
		{"1000", 1, 10 * time.Second},
		{strconv.FormatInt(now.Add(5*time.Second).UnixMilli(), 10), 1, 5500 * time.Millisecond},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.ra != "" {
			h.Set("Retry-After", tt.ra)
		}
		if got := o.delay(h, tt.attempt); got != tt.want {
			t.Errorf("delay(Retry-After %q, attempt %d) = %v, want %v", tt.ra, tt.attempt, got, tt.want)
		}
	}
	tiny := PollOptions{MaxWait: 10 * time.Millisecond, Now: o.Now, Rand: o.Rand}.withDefaults()
	if got := tiny.delay(http.Header{"Retry-After": {"0"}}, 1); got != 10*time.Millisecond {
		t.Errorf("delay with MaxWait 10ms = %v, want 10ms (the floor never passes the cap)", got)
	}
}

func TestCancel(t *testing.T) {
	srv, s, c, _ := pollServer(t, map[string][]answer{
		"/fhir/status/ok":   {{202, nil, ""}},
		"/fhir/status/bad":  {{400, nil, goneOO}},
		"/fhir/status/busy": {{503, nil, ""}, {202, nil, ""}},
	})
	for path, wantErr := range map[string]bool{"/fhir/status/ok": false, "/fhir/status/gone": false,
		"/fhir/status/bad": true, "/fhir/status/busy": false} {
		err := Cancel(t.Context(), c, srv.URL+path)
		if (err != nil) != wantErr {
			t.Errorf("Cancel(%s) = %v, want error: %v", path, err, wantErr)
		}
	}
	for _, r := range s.seen {
		if !strings.HasPrefix(r, "DELETE ") {
			t.Errorf("Cancel sent %s", r)
		}
	}
}

func TestWithContext(t *testing.T) {
	in := []byte("{\n  \"transactionTime\": \"2024-01-01T00:00:00Z\",\n  \"x\": [1, 2.0, \"\\u00e9\"],\n  \"_bulkpipe\": {\"old\": true}\n}\n")
	got, err := WithContext(in, Context{StatusURL: "https://x/status/1", FHIRBase: "https://x/fhir", Page: 2})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"transactionTime":"2024-01-01T00:00:00Z","x":[1,2.0,"\u00e9"],"_bulkpipe":{"statusUrl":"https://x/status/1","fhirBase":"https://x/fhir","page":2}}`
	if string(got) != want {
		t.Errorf("WithContext =\n%s\nwant\n%s", got, want)
	}
	ctx, ok := ContextOf(got)
	if !ok || ctx.Page != 2 || ctx.StatusURL != "https://x/status/1" {
		t.Errorf("ContextOf = %+v, %v", ctx, ok)
	}
	if back := WithoutContext(got); string(back) != `{"transactionTime":"2024-01-01T00:00:00Z","x":[1,2.0,"\u00e9"]}` {
		t.Errorf("WithoutContext = %s", back)
	}
	if _, err := WithContext([]byte(`[1]`), Context{}); err == nil {
		t.Error("WithContext([1]) = nil error, want one")
	}
	if _, ok := ContextOf([]byte(`{"output":[]}`)); ok {
		t.Error("ContextOf(no member) = ok")
	}
}

func TestMergePagesV4AndCounts(t *testing.T) {
	p1 := []byte(`{"transactionTime":"t","output":[{"type":"A","url":"u1","count":3}],"outcome":[],"link":[{"relation":"next","url":"n"}]}`)
	p2 := []byte(`{"transactionTime":"t","output":[{"type":"B","url":"u2"}],"deleted":[{"type":"Bundle","url":"d"}],"outcome":[{"type":"OperationOutcome","url":"o"}]}`)
	got, err := MergePages([][]byte{p1, p2})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"transactionTime":"t","output":[{"type":"A","url":"u1","count":3},{"type":"B","url":"u2"}],"outcome":[{"type":"OperationOutcome","url":"o"}],"deleted":[{"type":"Bundle","url":"d"}]}`
	if string(got) != want {
		t.Errorf("MergePages =\n%s\nwant\n%s", got, want)
	}
	if o, d, e := FileCounts(got); o != 2 || d != 1 || e != 1 {
		t.Errorf("FileCounts = %d %d %d, want 2 1 1", o, d, e)
	}
	if _, err := MergePages([][]byte{[]byte(`{"output":{}}`)}); err == nil {
		t.Error("MergePages(output object) = nil error")
	}
	if _, err := MergePages(nil); err == nil {
		t.Error("MergePages(nil) = nil error")
	}
}

func FuzzWithContext(f *testing.F) {
	f.Add([]byte(`{"output":[{"url":"a"}],"link":[{"relation":"next","url":"b"}]}`), 1)
	f.Add([]byte("{\n \"a\" : \"\\n\" }"), 3)
	f.Add([]byte(`[]`), 0)
	f.Fuzz(func(t *testing.T, b []byte, page int) {
		out, err := WithContext(b, Context{StatusURL: "s", Page: page})
		if err != nil {
			return
		}
		if strings.ContainsAny(string(out), "\n\r") {
			t.Fatalf("WithContext(%q) = %q, not one line", b, out)
		}
		if ctx, ok := ContextOf(out); !ok || ctx.Page != page {
			t.Fatalf("ContextOf(WithContext(%q)) = %+v, %v", b, ctx, ok)
		}
		if _, err := MergePages([][]byte{out, b}); err != nil && !strings.Contains(err.Error(), "not an array") {
			t.Fatalf("MergePages(%q): %v", b, err)
		}
	})
}

func FuzzParseExportURL(f *testing.F) {
	for _, s := range []string{"https://x/fhir/Group/g/$export?_type=A", "http://h:1/Patient", "https://x", "::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, _, err := ParseExportURL(s)
		if err != nil {
			return
		}
		again, _, err := ParseExportURL(tg.Export.String())
		if err != nil {
			t.Fatalf("ParseExportURL(%q).Export = %s, which does not parse: %v", s, tg.Export, err)
		}
		if fmt.Sprint(again.Level, again.Group, again.Base) != fmt.Sprint(tg.Level, tg.Group, tg.Base) {
			t.Fatalf("ParseExportURL(%q) = %+v, but its Export URL gives %+v", s, tg, again)
		}
	})
}

// TestPollBodyStalls: a status body that stops mid-way is abandoned after ReadTimeout and the
// status requested again by the client's own retries (Load), like a 503.
func TestPollBodyStalls(t *testing.T) {
	var n sync.Mutex
	requests := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Lock()
		requests++
		first := requests == 1
		n.Unlock()
		body := strings.ReplaceAll(manifest1, "$URL", "http://"+r.Host)
		if first {
			io.WriteString(w, body[:20])
			w.(http.Flusher).Flush()
			<-r.Context().Done() // silent until the client gives up
			return
		}
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	clock := &fakeClock{now: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
	var retries []string
	c, err := fhirclient.New(fhirclient.Options{FHIRBase: srv.URL + "/fhir", MaxAttempts: 3, Now: clock.Now, Sleep: clock.Sleep,
		OnRetry: func(e fhirclient.RetryEvent) { retries = append(retries, e.Reason) }})
	if err != nil {
		t.Fatal(err)
	}
	pages, progress, err := collect(t, c, srv.URL+"/fhir/status/1", PollOptions{ReadTimeout: 50 * time.Millisecond})
	if err != nil || len(pages) != 1 || requests != 2 || len(progress) != 0 || len(retries) != 1 || retries[0] != "200 OK: reading the response body: no data for 50ms" {
		t.Errorf("Poll with a stalled body = %d pages, %v after %d requests, progress %+v, retries %q; want the manifest on the second request after one retry for the stall",
			len(pages), err, requests, progress, retries)
	}
}

// TestPollAttemptsBounded: the client's attempts bound the status requests whatever mix of
// failures the server sends; 503s and cut bodies alternate here.
func TestPollAttemptsBounded(t *testing.T) {
	var n sync.Mutex
	requests := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Lock()
		requests++
		odd := requests%2 == 1
		n.Unlock()
		if odd {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Length", "1000")
		io.WriteString(w, `{"transactionTime":`)
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}))
	t.Cleanup(srv.Close)
	clock := &fakeClock{now: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
	c, err := fhirclient.New(fhirclient.Options{FHIRBase: srv.URL + "/fhir", MaxAttempts: 3, Now: clock.Now, Sleep: clock.Sleep})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = collect(t, c, srv.URL+"/fhir/status/1", PollOptions{})
	if se, ok := errors.AsType[*fhirclient.StatusError](err); !ok || se.StatusCode != 503 || requests != 3 {
		t.Errorf("Poll with 503s and cut bodies alternating = %v after %d requests, want the third request's 503 after 3 (MaxAttempts)", err, requests)
	}
}
