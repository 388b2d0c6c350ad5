package attachment

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tidwall/gjson"

	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/fhirjson"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest/synth"
)

func docRef(id, attachment string) string {
	return `{"resourceType":"DocumentReference","id":"` + id + `","status":"current","content":[{"attachment":` + attachment + `}]}`
}

// TestHelloWorld is DESIGN.md §5's example, as a golden line: a relative URL resolved against a
// base with a path, a wrong size replaced, every other member kept in place.
func TestHelloWorld(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Patients: 1})
	in, ds := newInliner(t, newClient(t, srv.URL(), nil), nil)
	input := docRef("1", `{"contentType":"text/plain","language":"en-US","url":"Binary/hello-world","size":16,"title":"hello.txt"}`) + "\n"
	want := docRef("1", `{"contentType":"text/plain; charset=utf-8","language":"en-US","url":"Binary/hello-world","size":11,"title":"hello.txt","data":"aGVsbG8gd29ybGQ=","hash":"Kq5sNclPz7QV2+lfQIuc6R7oRu0="}`) + "\n"
	got, st := inline(t, in, input)
	if got != want {
		t.Errorf("Stream(hello world) =\n%s\nwant\n%s", got, want)
	}
	if diff := cmp.Diff(Stats{Lines: 1, Changed: 1, Inlined: 1}, st); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
	if len(*ds) != 1 || (*ds)[0].URL != srv.URL()+"/Binary/hello-world" || (*ds)[0].Size != 11 || (*ds)[0].Resource != "DocumentReference/1" {
		t.Errorf("downloads = %+v, want one of Binary/hello-world, 11 bytes, under the base path", *ds)
	}
	for _, r := range srv.Requests() {
		if r.Route == fhirtest.RouteBinary && r.Header.Get("Accept") != "text/plain" {
			t.Errorf("Accept = %q, want text/plain", r.Header.Get("Accept"))
		}
	}
}

// TestMediaTypes covers every media type and charset case: what the answer says decides the
// charset, a FHIR Binary answer is decoded, and an answer of another type is refused.
func TestMediaTypes(t *testing.T) {
	binary := func(ct, data string) string {
		return `{"resourceType":"Binary","id":"b","contentType":"` + ct + `","data":"` + data + `"}`
	}
	helloB64 := base64.StdEncoding.EncodeToString([]byte(hello))
	fhirJSON := http.Header{"Content-Type": {"application/fhir+json"}}
	tests := []struct {
		name    string
		attType string // the attachment's contentType
		answer  []byte // the server's whole answer
		mimes   []string
		want    string // contentType after inlining; "" = left as it was
		result  Result
		err     string
	}{
		{"plain, charset from the answer", "text/plain", rawResponse("200 OK", http.Header{"Content-Type": {"text/plain; charset=ISO-8859-1"}}, hello),
			nil, "text/plain; charset=ISO-8859-1", Inlined, ""},
		{"attachment charset ignored for matching, answer without charset is utf-8", "text/plain; charset=utf-16", rawResponse("200 OK", http.Header{"Content-Type": {"text/plain"}}, hello),
			nil, "text/plain; charset=utf-8", Inlined, ""},
		{"case and spaces in types", "Text/HTML ; charset=x", rawResponse("200 OK", http.Header{"Content-Type": {"text/html;charset=UTF-8"}}, "<p>hello</p>"),
			nil, "text/html; charset=UTF-8", Inlined, ""},
		{"xhtml", "application/xhtml+xml", rawResponse("200 OK", http.Header{"Content-Type": {"application/xhtml+xml"}}, "<html/>"),
			nil, "application/xhtml+xml; charset=utf-8", Inlined, ""},
		{"no content type in the answer", "text/plain", rawResponse("200 OK", http.Header{"Content-Type": {""}}, hello),
			nil, "text/plain; charset=utf-8", Inlined, ""},
		{"generic octet-stream", "text/html", rawResponse("200 OK", http.Header{"Content-Type": {"application/octet-stream"}}, hello),
			nil, "text/html; charset=utf-8", Inlined, ""},
		{"malformed answer type still read leniently", "text/plain", rawResponse("200 OK", http.Header{"Content-Type": {"text/plain; charset=latin1; ;="}}, hello),
			nil, "text/plain; charset=latin1", Inlined, ""},
		{"another type is refused", "text/plain", rawResponse("200 OK", http.Header{"Content-Type": {"text/html"}}, "<p>login</p>"),
			nil, "", Failed, "answered text/html, want text/plain"},
		{"Binary resource decoded, its charset used", "text/plain", rawResponse("200 OK", fhirJSON, binary("text/plain; charset=us-ascii", helloB64)),
			nil, "text/plain; charset=us-ascii", Inlined, ""},
		{"Binary as application/json, unpadded base64 with line breaks", "text/plain", rawResponse("200 OK", http.Header{"Content-Type": {"application/json"}}, binary("text/plain", "aGVsbG8g\\nd29ybGQ")),
			nil, "text/plain; charset=utf-8", Inlined, ""},
		{"DSTU2 Binary content", "text/plain", rawResponse("200 OK", http.Header{"Content-Type": {"application/json+fhir"}}, `{"resourceType":"Binary","contentType":"text/plain","content":"`+helloB64+`"}`),
			nil, "text/plain; charset=utf-8", Inlined, ""},
		{"Binary of another type", "text/plain", rawResponse("200 OK", fhirJSON, binary("application/pdf", helloB64)),
			nil, "", Failed, "answered application/pdf, want text/plain"},
		{"Binary without data", "text/plain", rawResponse("200 OK", fhirJSON, `{"resourceType":"Binary","contentType":"text/plain"}`),
			nil, "", Failed, "a Binary without data"},
		{"Binary with bad base64", "text/plain", rawResponse("200 OK", fhirJSON, binary("text/plain", "!!!")),
			nil, "", Failed, "not base64"},
		{"an OperationOutcome with 200", "text/plain", rawResponse("200 OK", fhirJSON, `{"resourceType":"OperationOutcome","issue":[]}`),
			nil, "", Failed, "answered a FHIR OperationOutcome"},
		{"invalid JSON", "text/plain", rawResponse("200 OK", fhirJSON, `{"resourceType":`),
			nil, "", Failed, "not valid JSON"},
		{"PDF not wanted by default", "application/pdf", rawResponse("200 OK", http.Header{"Content-Type": {"application/pdf"}}, "%PDF"),
			nil, "", -1, ""},
		{"PDF when asked for", "application/pdf", rawResponse("200 OK", http.Header{"Content-Type": {"application/pdf"}}, "%PDF"),
			[]string{"Application/PDF"}, "application/pdf; charset=utf-8", Inlined, ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := fmt.Sprintf("/Binary/case%d", i)
			srv := newServer(t, fhirtest.Options{Patients: 1, Override: map[string][]byte{path: tt.answer}})
			in, ds := newInliner(t, newClient(t, srv.URL(), nil), func(o *Options) { o.MIMETypes = tt.mimes })
			input := docRef("x", `{"contentType":"`+tt.attType+`","url":"Binary/case`+fmt.Sprint(i)+`"}`)
			got, st := inline(t, in, input)
			if tt.want == "" {
				if got != input+"\n" {
					t.Errorf("output = %s, want the input unchanged", got)
				}
			} else {
				a := gjson.Get(got, "content.0.attachment")
				if ct := a.Get("contentType").Str; ct != tt.want {
					t.Errorf("contentType = %q, want %q", ct, tt.want)
				}
				data, _ := base64.StdEncoding.DecodeString(a.Get("data").Str)
				sum := sha1.Sum(data)
				if a.Get("size").Int() != int64(len(data)) || a.Get("hash").Str != base64.StdEncoding.EncodeToString(sum[:]) || len(data) == 0 {
					t.Errorf("attachment %s: size or hash do not match data", a.Raw)
				}
			}
			if tt.result < 0 {
				if len(*ds) != 0 || st.Inlined+st.Failed+st.Skipped+st.Already != 0 {
					t.Errorf("an attachment the policy does not select was counted: %+v %+v", st, *ds)
				}
				return
			}
			if len(*ds) != 1 || (*ds)[0].Result != tt.result {
				t.Fatalf("downloads = %+v, want one %v", *ds, tt.result)
			}
			if d := (*ds)[0]; tt.err != "" && (d.Err == nil || !strings.Contains(d.Err.Error(), tt.err)) {
				t.Errorf("error = %v, want one containing %q", d.Err, tt.err)
			}
		})
	}
}

// notes returns the DocumentReference and DiagnosticReport lines of a generated data set with
// absolute URLs pointing at base, and the content each selected attachment must get.
func notes(ds *synth.Dataset, filesBase string) (lines []string, want map[string]synth.Binary) {
	want = map[string]synth.Binary{}
	for _, typ := range DefaultResources {
		for _, l := range ds.Resources[typ] {
			s := strings.ReplaceAll(string(l), synth.FilesBasePlaceholder, filesBase)
			lines = append(lines, s)
			for _, a := range fhirjson.Attachments([]byte(s)) {
				_, id, ok := strings.Cut(a.URL, "Binary/")
				if ok && !a.HasData {
					want[fhirjson.Key([]byte(s))+" "+a.Path] = ds.Binaries[id]
				}
			}
		}
	}
	return lines, want
}

// TestTokenSafety runs a generated data set whose absolute attachment URLs live on another
// origin (presigned storage that rejects any Authorization): relative URLs get the token and the
// --header values, the other origin never sees either, and every text attachment is inlined
// with the right content (DESIGN.md §2, §5).
func TestTokenSafety(t *testing.T) {
	ds := synth.Generate(synth.Options{Patients: 4, Seed: 7})
	srv := newServer(t, fhirtest.Options{Data: ds, FilesOrigin: true, FilesRejectAuth: true})
	client := newClient(t, srv.URL(), func(o *fhirclient.Options) {
		o.Credentials = bearer("s3cret-token")
		o.Header = http.Header{"X-Api-Key": {"k3y-value"}}
	})
	in, downloads := newInliner(t, client, func(o *Options) { o.Parallel = 3 })
	lines, want := notes(ds, srv.FilesURL())
	got, st := inline(t, in, strings.Join(lines, "\n")+"\n")

	var main, files int
	for _, r := range srv.Requests() {
		switch r.Origin {
		case "files":
			files++
			if r.Authorization != "" || r.Header.Get("X-Api-Key") != "" {
				t.Errorf("%s %s got credentials on another origin: Authorization %q, X-Api-Key %q", r.Method, r.URL, r.Authorization, r.Header.Get("X-Api-Key"))
			}
		case "main":
			main++
			if r.Authorization != "Bearer s3cret-token" || r.Header.Get("X-Api-Key") != "k3y-value" {
				t.Errorf("%s %s on the FHIR origin: Authorization %q, X-Api-Key %q; want the token and header", r.Method, r.URL, r.Authorization, r.Header.Get("X-Api-Key"))
			}
		}
	}
	if main == 0 || files == 0 {
		t.Fatalf("requests: %d to the FHIR origin, %d to the files origin; want both (the data set has relative and absolute URLs)", main, files)
	}

	outLines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(outLines) != len(lines) {
		t.Fatalf("%d lines out, want %d", len(outLines), len(lines))
	}
	inlined := 0
	for i, l := range outLines {
		if fhirjson.Key([]byte(l)) != fhirjson.Key([]byte(lines[i])) {
			t.Fatalf("line %d is %s, want %s: order not kept", i+1, fhirjson.Key([]byte(l)), fhirjson.Key([]byte(lines[i])))
		}
		for _, a := range fhirjson.Attachments([]byte(l)) {
			b, ok := want[fhirjson.Key([]byte(l))+" "+a.Path]
			mt, _ := mediaType(a.ContentType)
			if !ok || !in.policy.mimes[mt] {
				continue
			}
			obj := gjson.Parse(l[a.Start:a.End])
			data, _ := base64.StdEncoding.DecodeString(obj.Get("data").Str)
			if !bytes.Equal(data, b.Data) {
				t.Errorf("%s %s: data is not the Binary's content", fhirjson.Key([]byte(l)), a.Path)
			}
			if obj.Get("url").Str == "" {
				t.Errorf("%s %s: url dropped", fhirjson.Key([]byte(l)), a.Path)
			}
			bt, bcs := mediaType(b.ContentType)
			if bcs == "" {
				bcs = "utf-8"
			}
			if ct := obj.Get("contentType").Str; ct != bt+"; charset="+bcs {
				t.Errorf("%s %s: contentType %q, want %q", fhirjson.Key([]byte(l)), a.Path, ct, bt+"; charset="+bcs)
			}
			inlined++
		}
	}
	if st.Inlined != int64(inlined) || st.Failed != 0 || inlined == 0 || int64(len(*downloads)) != st.Inlined {
		t.Errorf("Stats %+v, %d downloads reported; want %d inlined, none failed", st, len(*downloads), inlined)
	}
}

// TestFailuresLeftUntouched: whatever goes wrong, the attachment stays as it was, the line is
// written unchanged, and the failure is counted and reported with what was tried.
func TestFailuresLeftUntouched(t *testing.T) {
	tests := []struct {
		name   string
		url    string
		faults []string
		mod    func(*fhirclient.Options)
		stall  time.Duration
		err    string
		code   int
	}{
		{"404", "Binary/nope", nil, nil, 0, "404 Not Found: Binary/nope is not known", 404},
		{"500 every time", "Binary/hello-world", []string{"500@binary*10"}, nil, 0, "500 Internal Server Error", 500},
		// 300 ms, not less: the headers must beat the stall timeout even on a loaded machine.
		{"body stalls every time", "Binary/hello-world", []string{"stall:2@binary*10"}, nil, 300 * time.Millisecond, "no data for 300ms", 0},
		{"headers later than the stall timeout", "Binary/hello-world", []string{"slow:400@binary*10"}, nil, 50 * time.Millisecond, "no response within 50ms", 0},
		{"headers too slow", "Binary/hello-world", []string{"slow:400@binary*10"}, func(o *fhirclient.Options) {
			o.HTTPClient = &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 40 * time.Millisecond}}
		}, 0, "timeout awaiting response headers", 0},
		{"connection refused", "http://127.0.0.1:1/fhir/Binary/x", nil, nil, 0, "connection refused", 0},
		{"not http", "urn:uuid:1234", nil, nil, 0, "not an http or https URL", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var faults []fhirtest.Fault
			for _, spec := range tt.faults {
				f, err := fhirtest.ParseFault(spec)
				if err != nil {
					t.Fatal(err)
				}
				faults = append(faults, f)
			}
			srv := newServer(t, fhirtest.Options{Patients: 1, Faults: faults})
			in, ds := newInliner(t, newClient(t, srv.URL(), tt.mod), func(o *Options) { o.StallTimeout = tt.stall })
			input := docRef("f", `{"contentType":"text/plain","url":"`+tt.url+`","size":3}`) + "\n" + `{"resourceType":"Patient","id":"p"}` + "\n"
			got, st := inline(t, in, input)
			if got != input {
				t.Errorf("output = %s, want the input unchanged", got)
			}
			if st.Failed != 1 || st.Inlined != 0 || st.Changed != 0 {
				t.Errorf("Stats = %+v, want 1 failed", st)
			}
			if len(*ds) != 1 || (*ds)[0].Err == nil || !strings.Contains((*ds)[0].Err.Error(), tt.err) {
				t.Fatalf("downloads = %+v, want a failure containing %q", *ds, tt.err)
			}
			id, d := (*ds)[0].Event()
			detail, _ := d.(exportdir.DownloadError)
			if id != "download_error" || detail.Code != anyCode(tt.code) || detail.ItemType != "attachment" || detail.ResourceType != "DocumentReference" {
				t.Errorf("Event() = %s %v, want download_error with code %d", id, detail, tt.code)
			}
		})
	}
}

func anyCode(c int) any {
	if c == 0 {
		return nil
	}
	return c
}

// TestRecovers: faults the retry table or the body retry get past end in the same line as a
// clean run.
func TestRecovers(t *testing.T) {
	input := docRef("1", `{"contentType":"text/plain","url":"Binary/hello-world"}`)
	clean := docRef("1", `{"contentType":"text/plain; charset=utf-8","url":"Binary/hello-world","data":"aGVsbG8gd29ybGQ=","size":11,"hash":"Kq5sNclPz7QV2+lfQIuc6R7oRu0="}`) + "\n"
	for _, spec := range []string{"500@binary*2", "429:1@binary", "503@binary", "reset:3@binary*2", "truncate@binary*2", "stall:3@binary"} {
		t.Run(spec, func(t *testing.T) {
			f, err := fhirtest.ParseFault(spec)
			if err != nil {
				t.Fatal(err)
			}
			srv := newServer(t, fhirtest.Options{Patients: 1, Faults: []fhirtest.Fault{f}})
			in, _ := newInliner(t, newClient(t, srv.URL(), nil), func(o *Options) { o.StallTimeout = 500 * time.Millisecond })
			got, st := inline(t, in, input)
			if got != clean || st.Inlined != 1 {
				t.Errorf("under %s: %s (%+v), want\n%s", spec, got, st, clean)
			}
		})
	}
}

// TestAlreadyInlinedAndNotSelected: lines that need nothing pass through byte for byte (CRLF
// and blank lines aside) and nothing is downloaded.
func TestAlreadyInlinedAndNotSelected(t *testing.T) {
	srv := newServer(t, fhirtest.Options{Patients: 1})
	in, ds := newInliner(t, newClient(t, srv.URL(), nil), func(o *Options) { o.Resources = []string{"DocumentReference"} })
	lines := []string{
		docRef("a", `{"contentType":"text/plain","data":"aGk=","url":"Binary/hello-world","size":99}`),
		docRef("b", `{"contentType":"text/plain","title":"no url"}`),
		docRef("c", `{"contentType":"image/png","url":"Binary/hello-world"}`),
		`{"resourceType":"DiagnosticReport","presentedForm":[{"contentType":"text/plain","url":"Binary/hello-world"}]}`,
		`{"resourceType":"Patient","id":"p", "name" : [ ] }`,
		`{"resourceType":"Observation",` + "\t" + `"bad json"`, // not a target: not validated
	}
	input := "\xEF\xBB\xBF" + strings.Join(lines, "\r\n") + "\r\n\r\n"
	got, st := inline(t, in, input)
	if want := strings.Join(lines, "\n") + "\n"; got != want {
		t.Errorf("output =\n%s\nwant\n%s", got, want)
	}
	if diff := cmp.Diff(Stats{Lines: 6, Already: 1, Skipped: 1}, st); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
	if len(*ds) != 0 || len(srv.Requests()) != 0 {
		t.Errorf("%d downloads, %d requests; want none", len(*ds), len(srv.Requests()))
	}
}

func TestInvalidTargetLine(t *testing.T) {
	in, _ := newInliner(t, &fakeFetcher{}, nil)
	input := docRef("a", `{"contentType":"text/plain","data":"aGk="}`) + "\n\n" + `{"resourceType":"DocumentReference","content":[}` + "\n"
	_, err := in.Stream(t.Context(), "notes.ndjson", strings.NewReader(input), io.Discard)
	if e, ok := errors.AsType[*InvalidLineError](err); !ok || err.Error() != "notes.ndjson:3: invalid JSON (a DocumentReference line)" || e.Line != 3 {
		t.Errorf("Stream(invalid line 3) = %v, want notes.ndjson:3: invalid JSON", err)
	}
	work, _, err := in.Check(t.Context(), "notes.ndjson", strings.NewReader(input))
	if _, ok := errors.AsType[*InvalidLineError](err); !ok || work {
		t.Errorf("Check(invalid line 3) = %v, %v; want an InvalidLineError", work, err)
	}
}

// TestMaxSize: the download decides, never the size already in the attachment (servers put the
// base64 length there, DESIGN.md §9, b64-size fault).
func TestMaxSize(t *testing.T) {
	f, _ := fhirtest.ParseFault("b64-size")
	srv := newServer(t, fhirtest.Options{Patients: 1, Faults: []fhirtest.Fault{f},
		Override: map[string][]byte{
			"/Binary/json":    rawResponse("200 OK", http.Header{"Content-Type": {"application/fhir+json"}}, `{"resourceType":"Binary","contentType":"text/plain","data":"aGVsbG8gd29ybGQ="}`),
			"/Binary/chunked": rawResponse("200 OK", http.Header{"Content-Type": {"text/plain"}, "Transfer-Encoding": {"chunked"}}, "b\r\nhello world\r\n0\r\n\r\n"),
		}})
	tests := []struct {
		max     int64
		url     string
		result  Result
		oldSize string
	}{
		{11, "Binary/hello-world", Inlined, "16"}, // the size says 16 (base64): not trusted
		{10, "Binary/hello-world", Skipped, "1"},
		{10, "Binary/json", Skipped, "1"},
		{11, "Binary/json", Inlined, "1"},
		{10, "Binary/chunked", Skipped, "1"},
	}
	for _, tt := range tests {
		in, ds := newInliner(t, newClient(t, srv.URL(), nil), func(o *Options) { o.MaxSize = tt.max })
		input := docRef("m", `{"contentType":"text/plain","url":"`+tt.url+`","size":`+tt.oldSize+`}`)
		got, _ := inline(t, in, input)
		if len(*ds) != 1 || (*ds)[0].Result != tt.result {
			t.Errorf("max %d, %s: downloads %+v, want %v", tt.max, tt.url, *ds, tt.result)
			continue
		}
		if tt.result == Skipped && (got != input+"\n" || !errors.Is((*ds)[0].Err, ErrTooLarge)) {
			t.Errorf("max %d, %s: %s, %v; want the line unchanged and ErrTooLarge", tt.max, tt.url, got, (*ds)[0].Err)
		}
		if id, _ := (*ds)[0].Event(); tt.result == Skipped && id != "" {
			t.Errorf("a skipped attachment logs %s, want no event", id)
		}
	}
}

// fakeFetcher serves attachments from memory: url "slow/N" waits until released, others answer
// at once, with the URL as content.
type fakeFetcher struct {
	mu      sync.Mutex
	calls   int
	release chan struct{}
	active  atomic.Int32
	peak    atomic.Int32
}

func (f *fakeFetcher) Resolve(ref string) (*url.URL, error) {
	return url.Parse("http://fake/fhir/" + ref)
}

func (f *fakeFetcher) Do(ctx context.Context, req *fhirclient.Request) (*http.Response, error) {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	n := f.active.Add(1)
	defer f.active.Add(-1)
	for p := f.peak.Load(); n > p && !f.peak.CompareAndSwap(p, n); p = f.peak.Load() {
	}
	if strings.Contains(req.URL, "/slow/") {
		select {
		case <-f.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	body := req.URL
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {mime.FormatMediaType("text/plain", nil)}},
		Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body))}, nil
}

// Load answers once: the fake's answers are whole, so there is nothing to retry.
func (f *fakeFetcher) Load(ctx context.Context, req *fhirclient.Request, consume func(*http.Response) error) error {
	resp, err := f.Do(ctx, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return consume(resp)
}

func (f *fakeFetcher) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// TestWindowKeepsOrderAndBoundsMemory: while the first line's download hangs, later downloads go
// on, but no further than the window; output order is input order. It runs in a synctest bubble,
// so "the reader is stuck on the window" is a state synctest.Wait reaches, not a guess in
// milliseconds.
func TestWindowKeepsOrderAndBoundsMemory(t *testing.T) {
	synctest.Test(t, testWindowKeepsOrderAndBoundsMemory)
}

func testWindowKeepsOrderAndBoundsMemory(t *testing.T) {
	f := &fakeFetcher{release: make(chan struct{})}
	in, _ := newInliner(t, f, func(o *Options) { o.WindowLines, o.Parallel = 8, 3 })
	var input strings.Builder
	input.WriteString(docRef("0", `{"contentType":"text/plain","url":"slow/0"}`) + "\n")
	const n = 200
	for i := 1; i < n; i++ {
		input.WriteString(`{"resourceType":"Patient","id":"p` + fmt.Sprint(i) + `"}` + "\n")
		input.WriteString(docRef(fmt.Sprint(i), `{"contentType":"text/plain","url":"fast/`+fmt.Sprint(i)+`"}`) + "\n")
	}
	pr, pw := io.Pipe()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		_, err := in.Stream(t.Context(), "in", pr, &out)
		done <- err
	}()
	go func() {
		io.Copy(pw, strings.NewReader(input.String()))
		pw.Close()
	}()
	// Every goroutine is blocked: line 1's download on release, the reader on the window.
	synctest.Wait()
	if c := f.Calls(); c < 2 || c > 8 {
		t.Errorf("%d downloads started while line 1 hangs, want later lines' (2 or more) but at most the window (8 lines, half of them Patients)", c)
	}
	close(f.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if p := f.peak.Load(); p > 3 {
		t.Errorf("%d downloads at once, want at most --parallel 3", p)
	}
	outLines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	inLines := strings.Split(strings.TrimSuffix(input.String(), "\n"), "\n")
	if len(outLines) != len(inLines) {
		t.Fatalf("%d lines out, want %d", len(outLines), len(inLines))
	}
	for i := range inLines {
		if fhirjson.Key([]byte(outLines[i])) != fhirjson.Key([]byte(inLines[i])) {
			t.Fatalf("line %d is %s, want %s", i+1, fhirjson.Key([]byte(outLines[i])), fhirjson.Key([]byte(inLines[i])))
		}
	}
	if !strings.Contains(outLines[0], base64.StdEncoding.EncodeToString([]byte("http://fake/fhir/slow/0"))) {
		t.Errorf("line 1 not inlined: %s", outLines[0])
	}
}

// TestBigLines: a 50 MB line to rewrite, and one to pass through.
func TestBigLines(t *testing.T) {
	if testing.Short() {
		t.Skip("50 MB lines")
	}
	big, _ := bigLine(50 << 20)
	other := append([]byte(`{"resourceType":"Observation","note":"`), bytes.Repeat([]byte("x"), 50<<20)...)
	other = append(other, `"}`...)
	input := string(big) + "\n" + string(other) + "\n"
	in, ds := newInliner(t, &fakeFetcher{}, nil)
	got, st := inline(t, in, input)
	if st.Inlined != 1 || len(*ds) != 1 {
		t.Fatalf("Stats = %+v, want 1 inlined", st)
	}
	first, second, _ := strings.Cut(got, "\n")
	if second != string(other)+"\n" {
		t.Errorf("the 50 MB Observation did not pass through unchanged")
	}
	if !gjson.Valid(first) || len(first) <= len(big) || len(big) < 50e6 {
		t.Fatalf("the rewritten 50 MB line is invalid or short (%d bytes)", len(first))
	}
	atts := fhirjson.Attachments([]byte(first))
	last := gjson.Parse(first[atts[len(atts)-1].Start:atts[len(atts)-1].End])
	if last.Get("data").Str != base64.StdEncoding.EncodeToString([]byte("http://fake/fhir/Binary/x")) || last.Get("size").Int() != 25 {
		t.Errorf("last attachment = %.300s, want it inlined", last.Raw)
	}
}

func TestCancel(t *testing.T) { synctest.Test(t, testCancel) }

func testCancel(t *testing.T) {
	f := &fakeFetcher{release: make(chan struct{})}
	in, _ := newInliner(t, f, nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := in.Stream(ctx, "in", strings.NewReader(docRef("0", `{"contentType":"text/plain","url":"slow/0"}`)), io.Discard)
		done <- err
	}()
	synctest.Wait() // the download hangs on release
	if f.Calls() != 1 {
		t.Fatalf("%d downloads started, want 1", f.Calls())
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Stream after cancel = %v, want context.Canceled", err)
	}
}

func TestPolicy(t *testing.T) {
	tests := []struct {
		p   Policy
		err string
	}{
		{Policy{}, ""},
		{Policy{Resources: []string{"Observation"}}, `resource type "Observation": attachments are inlined in DocumentReference and DiagnosticReport only`},
		{Policy{MIMETypes: []string{"text"}}, `media type "text": want type/subtype`},
		{Policy{MIMETypes: []string{}}, "no resource types or no media types"},
		{Policy{MaxSize: -1}, "want at most 1GiB (0 means 1GiB)"},
		{Policy{MaxSize: HardMaxSize + 1}, "want at most 1GiB (0 means 1GiB)"},
	}
	for _, tt := range tests {
		_, err := New(Options{Policy: tt.p, Fetcher: &fakeFetcher{}})
		if (tt.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.err) {
			t.Errorf("New(%+v) = %v, want %q", tt.p, err, tt.err)
		}
	}
	for in, want := range map[string]string{"Text/Plain; charset=utf-8": "text/plain", "application/xhtml+xml": "application/xhtml+xml"} {
		if got, err := ParseMIMEType(in); got != want || err != nil {
			t.Errorf("ParseMIMEType(%q) = %q, %v, want %q", in, got, err, want)
		}
	}
}

func TestEvent(t *testing.T) {
	se := &fhirclient.StatusError{Method: "GET", URL: "http://x/Binary/2", StatusCode: 410, Status: "410 Gone",
		Header: http.Header{"Content-Type": {"text/plain"}, "Set-Cookie": {"s=1"}, "Authorization": {"Bearer echoed"}}, Body: []byte("gone")}
	tests := []struct {
		d        Download
		id, want string
	}{
		{Download{Resource: "DiagnosticReport/1", URL: "http://x/Binary/1", Result: Inlined, Size: 11}, "download_complete",
			`{"fileSize":11,"fileUrl":"http://x/Binary/1","itemType":"attachment","resourceCount":null,"resourceType":"DiagnosticReport"}`},
		// Credential headers an answer echoes stay out of the log (exportdir.ResponseHeaders).
		{Download{Resource: "DocumentReference/2", URL: "http://x/Binary/2", Result: Failed, Err: se}, "download_error",
			`{"body":"gone","code":410,"fileUrl":"http://x/Binary/2","itemType":"attachment","message":"GET http://x/Binary/2: 410 Gone: gone","resourceType":"DocumentReference","responseHeaders":{"content-type":"text/plain"}}`},
		// No answer: headers {} as in every other tool's error events, not null.
		{Download{Resource: "DocumentReference/3", URL: "http://x/Binary/3", Result: Failed, Err: errors.New("connection reset")}, "download_error",
			`{"body":null,"code":null,"fileUrl":"http://x/Binary/3","itemType":"attachment","message":"connection reset","resourceType":"DocumentReference","responseHeaders":{}}`},
	}
	for _, tt := range tests {
		id, d := tt.d.Event()
		ev, err := exportdir.NewEvent("x", id, d, time.Unix(0, 0))
		if got := string(ev.EventDetail); id != tt.id || err != nil || got != tt.want {
			t.Errorf("%+v.Event() = %s %s, %v, want %s %s", tt.d, id, got, err, tt.id, tt.want)
		}
	}
}

// BenchmarkStream is the engine on 3 MB DocumentReference lines (validation, attachments,
// download from memory, splice), the whole per-line cost of issue 5's measurement.
func BenchmarkStream(b *testing.B) {
	line, _ := bigLine(3 << 20)
	input := bytes.Repeat(append(line, '\n'), 16)
	for _, parallel := range []int{1, DefaultParallel} {
		b.Run(fmt.Sprintf("parallel=%d", parallel), func(b *testing.B) {
			in, err := New(Options{Fetcher: &fakeFetcher{}, Parallel: parallel})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(input)))
			for b.Loop() {
				if _, err := in.Stream(context.Background(), "bench", bytes.NewReader(input), io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPassThrough is a file of lines that are not targets: the cheap resourceType read.
func BenchmarkPassThrough(b *testing.B) {
	ds := synth.Generate(synth.Options{Patients: 2})
	var input []byte
	for len(input) < 32<<20 {
		for _, l := range ds.Resources["Observation"] {
			input = append(append(input, l...), '\n')
		}
	}
	in, err := New(Options{Fetcher: &fakeFetcher{}})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(input)))
	for b.Loop() {
		if _, err := in.Stream(context.Background(), "bench", bytes.NewReader(input), io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}
