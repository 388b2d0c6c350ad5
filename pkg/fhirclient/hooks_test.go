package fhirclient

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
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// resumable serves whole with Range, and cuts each answer after step bytes of the range asked
// (step 0: answers in full); stuck makes every answer start over at byte 0 whatever the Range.
func resumable(t *testing.T, whole string, step int, stuck bool) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		off := 0
		if v, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes="); ok && !stuck {
			off, _ = strconv.Atoi(strings.TrimSuffix(v, "-"))
		}
		rest := whole[off:]
		w.Header().Set("Content-Length", strconv.Itoa(len(rest)))
		if off > 0 {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, len(whole)-1, len(whole)))
			w.WriteHeader(http.StatusPartialContent)
		}
		if step == 0 || step >= len(rest) {
			io.WriteString(w, rest)
			return
		}
		io.WriteString(w, rest[:step])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// download is a caller that resumes: Prepare asks for the rest with Range, the consumer appends
// what arrives (a 200 starts over), Progress is the length held.
type download struct {
	mu  sync.Mutex
	got []byte
}

func (d *download) request(extra Request) *Request {
	r := extra
	r.URL, r.Route = "f", RouteFile
	r.Prepare = func(_ context.Context, try *Request) error {
		if n := d.size(); n > 0 {
			try.Header = http.Header{"Range": {"bytes=" + strconv.FormatInt(n, 10) + "-"}}
		}
		if extra.Prepare != nil {
			return extra.Prepare(context.Background(), try)
		}
		return nil
	}
	r.Progress = d.size
	return &r
}

func (d *download) size() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return int64(len(d.got))
}

func (d *download) consume(resp *http.Response) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if resp.StatusCode == http.StatusOK {
		d.got = d.got[:0]
	}
	b, err := io.ReadAll(resp.Body)
	d.got = append(d.got, b...)
	return err
}

// TestLoadProgressResetsAttempts: with Progress, only failures in a row without progress count.
// Cut bodies that each bring more bytes reach the end however many they take; bodies that never
// get further give up after MaxAttempts, saying the attempts were in a row without progress.
func TestLoadProgressResetsAttempts(t *testing.T) {
	const whole = "0123456789abcdefghijklmnopqrstuvwxyz"
	t.Run("each cut adds bytes", func(t *testing.T) {
		srv, n := resumable(t, whole, 4, false)
		c, _ := newTestClient(t, srv.URL, Options{MaxAttempts: 2})
		d := &download{}
		var attempts []int
		req := d.request(Request{OnRetry: func(e RetryEvent) { attempts = append(attempts, e.Attempt) }})
		if err := c.Load(t.Context(), req, d.consume); err != nil || string(d.got) != whole {
			t.Fatalf("Load = %q, %v; want %q", d.got, err, whole)
		}
		if want := int32((len(whole) + 3) / 4); n.Load() != want {
			t.Errorf("Load sent %d requests, want %d (one per 4 bytes)", n.Load(), want)
		}
		// Each retry follows progress: it is the first attempt in a row without any.
		if want := "[" + strings.TrimSpace(strings.Repeat("1 ", len(whole)/4-1)) + "]"; fmt.Sprint(attempts) != want {
			t.Errorf("retry events' attempts %v, want all 1", attempts)
		}
	})
	t.Run("no cut gets further", func(t *testing.T) {
		srv, n := resumable(t, whole, 4, true)
		c, clk := newTestClient(t, srv.URL, Options{MaxAttempts: 3})
		d := &download{}
		var attempts []int
		err := c.Load(t.Context(), d.request(Request{OnRetry: func(e RetryEvent) { attempts = append(attempts, e.Attempt) }}), d.consume)
		if fmt.Sprint(attempts) != "[1 2]" {
			t.Errorf("retry events' attempts %v, want [1 2]", attempts)
		}
		g, ok := errors.AsType[*GiveUpError](err)
		if !ok || g.Attempts() != 3 || !strings.Contains(err.Error(), "giving up after 3 attempts in a row without progress") {
			t.Errorf("Load = %v, want giving up after 3 attempts in a row without progress", err)
		}
		// The first cut brought 4 bytes (progress, counted 1); the next two none.
		if n.Load() != 3 {
			t.Errorf("Load sent %d requests, want 3", n.Load())
		}
		if diff := cmp.Diff([]time.Duration{500 * time.Millisecond, time.Second}, clk.Sleeps()); diff != "" {
			t.Errorf("sleeps (-want +got):\n%s", diff)
		}
	})
}

// TestLoadSettleBeforeWait: Prepare and Settle bracket every try, Settle sees each try's failure
// as the caller would (a *StatusError for a 503, the consumer's error for a cut body), and it
// runs before the wait for the next try, so what Prepare took (a limiter's slot) is never held
// while waiting.
func TestLoadSettleBeforeWait(t *testing.T) {
	var step atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch step.Add(1) {
		case 1:
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(http.StatusServiceUnavailable)
		case 2:
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "01234")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		default:
			io.WriteString(w, "0123456789")
		}
	}))
	t.Cleanup(srv.Close)
	var events []string
	held := 0
	clk := newFakeClock()
	c, _ := newTestClient(t, srv.URL, Options{MaxAttempts: 3, Sleep: func(ctx context.Context, d time.Duration) error {
		events = append(events, fmt.Sprintf("sleep %v holding %d", d, held))
		return clk.Sleep(ctx, d)
	}})
	req := &Request{URL: "f", Route: RouteFile,
		Prepare: func(context.Context, *Request) error { held++; events = append(events, "prepare"); return nil },
		Settle: func(err error) {
			held--
			var what string
			switch se, ok := errors.AsType[*StatusError](err); {
			case ok:
				what = se.Status
			case err != nil:
				what = "consumer: " + err.Error()
			default:
				what = "ok"
			}
			events = append(events, "settle "+what)
		}}
	err := c.Load(t.Context(), req, func(resp *http.Response) error {
		_, err := io.ReadAll(resp.Body)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"prepare", "settle 503 Service Unavailable", "sleep 3s holding 0",
		"prepare", "settle consumer: unexpected EOF", "sleep 1s holding 0",
		"prepare", "settle ok",
	}
	if diff := cmp.Diff(want, events); diff != "" {
		t.Errorf("tries (-want +got):\n%s", diff)
	}
}

// TestLoadAttemptsCarried: a caller that ends a Load to handle an answer itself and calls Load
// again with the same Attempts goes on counting, so a server that alternates a retryable failure
// with such an answer still meets MaxAttempts.
func TestLoadAttemptsCarried(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%2 == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNotFound)
	}))
	t.Cleanup(srv.Close)
	c, _ := newTestClient(t, srv.URL, Options{MaxAttempts: 3})
	tries := &Attempts{}
	var err error
	for range 10 {
		err = c.Load(t.Context(), &Request{URL: "f", Route: RouteFile, Attempts: tries}, func(*http.Response) error { return nil })
		if se, ok := errors.AsType[*StatusError](err); !ok || se.StatusCode != http.StatusNotFound {
			break // not the answer the caller handles: the call is over
		}
	}
	if g, ok := errors.AsType[*GiveUpError](err); !ok || n.Load() != 5 {
		t.Errorf("Load after %d requests = %v (GiveUpError %v), want giving up at the 5th (3 503s counted, 2 404s between)", n.Load(), err, g != nil)
	}
}

// TestLoadConsumeStatus: a status listed in ConsumeStatus reaches the consumer, whose verdict
// counts like any other: nil ends Load well, an error is retried.
func TestLoadConsumeStatus(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Content-Range", "bytes */10")
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
	}))
	t.Cleanup(srv.Close)
	c, _ := newTestClient(t, srv.URL, Options{MaxAttempts: 2})
	var statuses []int
	errAgain := errors.New("starting over")
	err := c.Load(t.Context(), &Request{URL: "f", Route: RouteFile, ConsumeStatus: []int{http.StatusRequestedRangeNotSatisfiable}},
		func(resp *http.Response) error {
			statuses = append(statuses, resp.StatusCode)
			if len(statuses) == 1 {
				return errAgain
			}
			return nil
		})
	if err != nil || fmt.Sprint(statuses) != "[416 416]" {
		t.Errorf("Load = %v after consuming %v, want nil after [416 416]", err, statuses)
	}
	// Without ConsumeStatus a 416 is a final *StatusError, as before.
	err = c.Load(t.Context(), &Request{URL: "f", Route: RouteFile}, func(*http.Response) error { return nil })
	if se, ok := errors.AsType[*StatusError](err); !ok || se.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("Load without ConsumeStatus = %v, want the 416's *StatusError", err)
	}
}

// TestRequestOnRetry: a request's own OnRetry replaces the client's, for every retry of that
// request, and carries the failure retried.
func TestRequestOnRetry(t *testing.T) {
	srv, _ := serve(t, status(503, "2"), respond("{}"))
	var client, own []RetryEvent
	c, _ := newTestClient(t, srv.URL+"/fhir", Options{OnRetry: func(e RetryEvent) { client = append(client, e) }})
	err := c.Load(t.Context(), &Request{URL: "x", OnRetry: func(e RetryEvent) { own = append(own, e) }},
		func(*http.Response) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(client) != 0 || len(own) != 1 {
		t.Fatalf("client OnRetry got %d events, the request's %d; want 0 and 1", len(client), len(own))
	}
	if se, ok := errors.AsType[*StatusError](own[0].Err); !ok || se.StatusCode != 503 || own[0].Wait != 2*time.Second {
		t.Errorf("event = %+v, want the 503's *StatusError and a 2s wait", own[0])
	}
}

// TestLoadRenewsAgainAfterSuccess: within one Load, a 401 after the credentials worked (a token
// that expired during a long download) renews them again; a 401 right after a renewal does not.
func TestLoadRenewsAgainAfterSuccess(t *testing.T) {
	cut := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		io.WriteString(w, "01234")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	srv, rec := serve(t, cut, status(401, ""), cut, status(401, ""), respond("0123456789"))
	creds := &fakeCreds{}
	c, _ := newTestClient(t, srv.URL+"/fhir", Options{Credentials: creds, MaxAttempts: 6})
	err := c.Load(t.Context(), &Request{URL: "f", Route: RouteFile}, func(resp *http.Response) error {
		_, err := io.ReadAll(resp.Body)
		return err
	})
	if _, reauths := creds.counts(); err != nil || reauths != 2 || len(rec.Requests()) != 5 {
		t.Errorf("Load = %v after %d requests and %d renewals, want success after 5 and 2", err, len(rec.Requests()), reauths)
	}
	srv, rec = serve(t, cut, status(401, ""))
	creds = &fakeCreds{}
	c, _ = newTestClient(t, srv.URL+"/fhir", Options{Credentials: creds, MaxAttempts: 6})
	err = c.Load(t.Context(), &Request{URL: "f", Route: RouteFile}, func(resp *http.Response) error {
		_, err := io.ReadAll(resp.Body)
		return err
	})
	if se, ok := errors.AsType[*StatusError](err); !ok || se.StatusCode != 401 || len(rec.Requests()) != 3 {
		t.Errorf("Load = %v after %d requests, want the 401 after 3 (cut, 401, 401 after the renewal)", err, len(rec.Requests()))
	}
}
