package lake

import (
	"bytes"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/bulkpipe/bulkpipe/pkg/lake/s3test"
)

func TestParseS3URL(t *testing.T) {
	for _, tc := range []struct{ in, bucket, prefix string }{
		{"s3://b", "b", ""},
		{"s3://b/", "b", ""},
		{"s3://b/p", "b", "p/"},
		{"s3://b/p/q/", "b", "p/q/"},
		{"s3://b//p//", "b", "p/"},
	} {
		bucket, prefix, err := parseS3URL(tc.in)
		if err != nil || bucket != tc.bucket || prefix != tc.prefix {
			t.Errorf("parseS3URL(%q) = %q, %q, %v; want %q, %q", tc.in, bucket, prefix, err, tc.bucket, tc.prefix)
		}
	}
	for _, bad := range []string{"s3://", "s3:///p", "http://b/p"} {
		if _, _, err := parseS3URL(bad); err == nil {
			t.Errorf("parseS3URL(%q): no error", bad)
		}
	}
}

// TestS3MultipartUpload: a file larger than a part goes up in parts, comes back byte for byte,
// leaves no multipart upload open and no local copy.
func TestS3MultipartUpload(t *testing.T) {
	gw := s3test.Start(t)
	gw.Setenv(t)
	bucket := gw.Bucket(t, "big")
	objs, err := newS3Objects(t.Context(), "s3://"+bucket+"/lake", 6)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 2*s3PartSize+12345) // three parts, the last short
	rand.Read(data)
	path := filepath.Join(t.TempDir(), "part-0.parquet")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := objs.put(t.Context(), "observation/load=x/part-0.parquet", path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the local file is still there after its upload: %v", err)
	}
	back := filepath.Join(t.TempDir(), "back")
	if err := objs.fetch(t.Context(), "observation/load=x/part-0.parquet", back); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(back); !bytes.Equal(got, data) {
		t.Errorf("the object read back differs from the file uploaded (%d bytes, want %d)", len(got), len(data))
	}
	ups, err := gw.Client().ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	if len(ups.Uploads) != 0 {
		t.Errorf("%d multipart uploads left open", len(ups.Uploads))
	}
}

// faultyProxy stands in front of the gateway and answers status instead of forwarding, for the
// first request of each method and path whose method is in methods (every one, when always).
type faultyProxy struct {
	status  int
	always  bool
	methods []string
	mu      sync.Mutex
	seen    map[string]bool
	faults  int
}

func startFaultyProxy(t *testing.T, gw *s3test.Server, status int, always bool, methods ...string) (*faultyProxy, string) {
	target, err := url.Parse(gw.URL)
	if err != nil {
		t.Fatal(err)
	}
	p := &faultyProxy{status: status, always: always, methods: methods, seen: map[string]bool{}}
	forward := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		key := r.Method + " " + r.URL.Path
		fail := slices.Contains(p.methods, r.Method) && (p.always || !p.seen[key])
		p.seen[key] = true
		if fail {
			p.faults++
		}
		p.mu.Unlock()
		if fail {
			http.Error(w, "injected", p.status)
			return
		}
		forward.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return p, srv.URL
}

// TestS3RetriesTransientErrors: a 503 on every object's first PUT (a store shedding load) is
// retried by the project's rule and the load commits; a 403 is not retried.
func TestS3RetriesTransientErrors(t *testing.T) {
	gw := s3test.Start(t)
	gw.Setenv(t)
	bucket := gw.Bucket(t, "flaky")
	proxy, proxyURL := startFaultyProxy(t, gw, http.StatusServiceUnavailable, false, http.MethodPut)
	t.Setenv("AWS_ENDPOINT_URL", proxyURL)
	l, err := Open(t.Context(), "s3://"+bucket+"/lake", Options{Scratch: t.TempDir(), Attempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	c, err := l.Append(t.Context(), Folder{DB: staging(t, "a", "b"), Source: "one"})
	if err != nil {
		t.Fatalf("append through a store answering 503 once per object: %v", err)
	}
	if proxy.faults < 2 || c.Seq != 1 {
		t.Errorf("%d injected 503s, commit %d: want the Parquet file's and the commit's PUT to fail once each", proxy.faults, c.Seq)
	}

	denied, deniedURL := startFaultyProxy(t, gw, http.StatusForbidden, true, http.MethodPut)
	t.Setenv("AWS_ENDPOINT_URL", deniedURL)
	l, err = Open(t.Context(), "s3://"+bucket+"/lake", Options{Scratch: t.TempDir(), Attempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.Append(t.Context(), Folder{DB: staging(t, "c"), Source: "two"})
	if err == nil || !strings.Contains(err.Error(), "s3://"+bucket+"/lake/patient/load=") || httpStatus(err) != http.StatusForbidden {
		t.Errorf("append through a store answering 403: %v, want the object's URL and status 403", err)
	}
	if denied.faults != 1 {
		t.Errorf("the 403 was answered %d times: want no retry", denied.faults)
	}
}

// FuzzParseS3URL: a URL that parses names a bucket without slashes and a prefix that is empty or
// a clean folder, and writing them back parses the same.
func FuzzParseS3URL(f *testing.F) {
	for _, s := range []string{"s3://b", "s3://b/p/q/", "s3://b//p", "s3:///", "s3://b/../x", "http://b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, u string) {
		bucket, prefix, err := parseS3URL(u)
		if err != nil {
			return
		}
		if bucket == "" || strings.Contains(bucket, "/") || strings.HasPrefix(prefix, "/") || (prefix != "" && !strings.HasSuffix(prefix, "/")) {
			t.Fatalf("parseS3URL(%q) = %q, %q", u, bucket, prefix)
		}
		b2, p2, err := parseS3URL("s3://" + bucket + "/" + prefix)
		if err != nil || b2 != bucket || p2 != prefix {
			t.Fatalf("%q → %q, %q → %q, %q, %v", u, bucket, prefix, b2, p2, err)
		}
	})
}

// FuzzSplitKey: a key read as a table file's is exactly the partition key of its table and load
// plus a Parquet file name.
func FuzzSplitKey(f *testing.F) {
	for _, s := range []string{"patient/load=20240101T000000Z-ab/part-0.parquet", "etl__commits/000000000001.json", "a/load=/x.parquet", "a/b/load=x/y.parquet"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		table, load, ok := splitKey(key)
		if !ok {
			return
		}
		file := key[strings.LastIndex(key, "/")+1:]
		if load == "" || partitionKey(table, load)+file != key || !strings.HasSuffix(file, ".parquet") {
			t.Fatalf("splitKey(%q) = %q, %q", key, table, load)
		}
	})
}
