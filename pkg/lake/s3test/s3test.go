// Package s3test starts a real S3-compatible server for tests: Versity's S3 gateway
// (versitygw) serving a temporary folder, a production gateway rather than an in-memory fake, so
// that uploads, multipart uploads, conditional writes and listings meet a real implementation.
//
// The gateway is found at $BULKPIPE_S3_SERVER or as versitygw on PATH (`make test` builds it
// into bin/). Without it a test is skipped — except under CI (CI set), where it fails, so that
// the S3 tests are never skipped unnoticed.
package s3test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Credentials of the gateway's root account: test values, never real ones.
const (
	AccessKey = "bulkpipe-test"
	SecretKey = "bulkpipe-test-secret"
)

// Server is a running gateway.
type Server struct {
	URL  string // http://127.0.0.1:PORT
	Root string // the folder it serves: ROOT/BUCKET/KEY
	cmd  *exec.Cmd
}

// Binary is the gateway's path, or "" when it is not installed.
func Binary() string {
	if p := os.Getenv("BULKPIPE_S3_SERVER"); p != "" {
		return p
	}
	p, _ := exec.LookPath("versitygw")
	return p
}

// Start starts a gateway over a new temporary folder and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary()
	if bin == "" {
		msg := "no S3-compatible server: run `make test`, which builds bin/versitygw, or set BULKPIPE_S3_SERVER"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	root := t.TempDir()
	var lastErr error
	for range 3 { // a free port picked here can be taken before the gateway binds it
		s, err := start(t, bin, root)
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatalf("start %s: %v", bin, lastErr)
	return nil
}

func start(t testing.TB, bin, root string) (*Server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "--port", addr, "--quiet", "posix", root)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+AccessKey, "ROOT_SECRET_KEY="+SecretKey)
	logPath := filepath.Join(t.TempDir(), "versitygw.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); logFile.Close() }()
	s := &Server{URL: "http://" + addr, Root: root, cmd: cmd}
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-done:
			log, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("exited: %v: %s", err, log)
		default:
		}
		if resp, err := http.Get(s.URL + "/"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			return nil, fmt.Errorf("not listening on %s after 20 s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	return s, nil
}

// Env is the environment that points the AWS SDK's standard configuration chain (and so
// etl-load --lake s3://…) at the gateway. HOME points at an empty folder so that no shared
// config or credentials file of the machine takes part.
func (s *Server) Env(t testing.TB) []string {
	return []string{
		"AWS_ENDPOINT_URL=" + s.URL,
		"AWS_ACCESS_KEY_ID=" + AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + SecretKey,
		"AWS_REGION=us-east-1",
		"AWS_CONFIG_FILE=" + filepath.Join(t.TempDir(), "no-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(t.TempDir(), "no-credentials"),
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// Setenv sets Env for the rest of the test (which then cannot be parallel).
func (s *Server) Setenv(t *testing.T) {
	for _, kv := range s.Env(t) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// Client is an S3 client of the gateway's, for tests to look at what a tool wrote.
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint: aws.String(s.URL),
		Region:       "us-east-1",
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, ""),
	})
}

// Bucket creates a bucket and returns its name.
func (s *Server) Bucket(t testing.TB, name string) string {
	t.Helper()
	if _, err := s.Client().CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &name}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
	return name
}

// Mirror copies every object under s3://bucket/prefix/ to the local folder dir, keeping the
// keys' paths, as `aws s3 sync` would: a reader without S3 access (DuckDB without httpfs) can
// then read the lake there.
func (s *Server) Mirror(t testing.TB, bucket, prefix, dir string) {
	t.Helper()
	ctx := context.Background()
	c := s.Client()
	for _, key := range s.Keys(t, bucket, prefix) {
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(key, prefix)))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.ReadFrom(out.Body)
		out.Body.Close()
		if err := errors.Join(err, f.Close()); err != nil {
			t.Fatal(err)
		}
	}
}

// Keys lists every key under s3://bucket/prefix, as the store returns them (sorted).
func (s *Server) Keys(t testing.TB, bucket, prefix string) []string {
	t.Helper()
	var keys []string
	p := s3.NewListObjectsV2Paginator(s.Client(), &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys
}
