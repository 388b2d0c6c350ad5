package lake

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/logging"

	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
)

// s3Objects keeps a lake under a prefix of an S3 bucket (AWS, or a compatible store).
type s3Objects struct {
	client *s3.Client
	bucket string
	prefix string // "" or ending in "/"
}

// S3 tuning. A part is what one request uploads: large enough that a 256 MB file takes eight,
// small enough that a failed part is cheap to send again. S3 allows 10,000 parts.
const (
	s3PartSize     = 32 << 20
	s3PartParallel = 4
	s3MaxWait      = time.Minute // cap of one backoff wait
	s3DeleteBatch  = 1000        // DeleteObjects' limit
)

// parseS3URL reads s3://bucket/prefix.
func parseS3URL(u string) (bucket, prefix string, err error) {
	rest, ok := strings.CutPrefix(u, "s3://")
	if !ok {
		return "", "", fmt.Errorf("%s: not an s3:// URL", u)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	prefix = strings.Trim(prefix, "/")
	if bucket == "" {
		return "", "", fmt.Errorf("%s: no bucket: want s3://bucket/prefix", u)
	}
	if prefix != "" {
		prefix += "/"
	}
	return bucket, prefix, nil
}

// newS3Objects connects to the bucket with the standard AWS configuration chain (environment,
// shared config and credentials files, SSO, container and instance roles): no credential is
// ever taken from the command line. AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL points it at a
// compatible store, which is then addressed path-style (bucket in the path, not the host name),
// as such stores on a private host name need.
func newS3Objects(ctx context.Context, u string, attempts int) (*s3Objects, error) {
	bucket, prefix, err := parseS3URL(u)
	if err != nil {
		return nil, err
	}
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRetryer(func() aws.Retryer { return s3Retryer(attempts) }),
		config.WithLogger(logging.Nop{})) // the SDK's own warnings (IMDS fallbacks) are not the user's concern
	if err != nil {
		return nil, fmt.Errorf("AWS configuration: %w", err)
	}
	if _, err := cfg.Credentials.Retrieve(ctx); err != nil {
		return nil, fmt.Errorf("no AWS credentials found (environment, AWS_PROFILE and the shared config files, SSO, " +
			"container or instance role): the lake is written with them")
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1" // compatible stores ignore it; AWS redirects nothing without it
	}
	pathStyle := os.Getenv("AWS_ENDPOINT_URL_S3") != "" || os.Getenv("AWS_ENDPOINT_URL") != ""
	client := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = pathStyle })
	if _, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &bucket}); err != nil {
		return nil, bucketError(bucket, err)
	}
	return &s3Objects{client: client, bucket: bucket, prefix: prefix}, nil
}

// bucketError says what is wrong with the bucket in terms of what to do about it; HeadBucket's
// answers have no body, so the status is all there is.
func bucketError(bucket string, err error) error {
	switch st := httpStatus(err); st {
	case http.StatusNotFound:
		return fmt.Errorf("no such bucket %q (HTTP 404): create it, or check the name", bucket)
	case http.StatusForbidden:
		return fmt.Errorf("access to bucket %q denied (HTTP 403): check the credentials and that they may write the bucket", bucket)
	case http.StatusMovedPermanently, http.StatusBadRequest:
		return fmt.Errorf("bucket %q: HTTP %d: it is likely in another region: set AWS_REGION to its region", bucket, st)
	default:
		return fmt.Errorf("bucket %q: %w", bucket, err)
	}
}

// s3Retryer applies the project's retry rule to S3 requests: the SDK's own transient errors plus
// the statuses every tool retries (408 425 429 500 502 503 504), backoff from 1 s doubling with
// equal jitter. The SDK's retry token bucket is off: a long load must not stop retrying because
// earlier requests failed.
func s3Retryer(attempts int) aws.Retryer {
	if attempts <= 0 {
		attempts = 6
	}
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = attempts
		o.RateLimiter = ratelimit.None
		o.Backoff = retry.BackoffDelayerFunc(func(n int, _ error) (time.Duration, error) {
			return fhirclient.Backoff(n, s3MaxWait, rand.Float64()), nil
		})
		o.Retryables = append(o.Retryables, retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
			if fhirclient.Retryable(httpStatus(err)) {
				return aws.TrueTernary
			}
			return aws.UnknownTernary
		}))
	})
}

// httpStatus is the HTTP status of a failed request, 0 when it got no response.
func httpStatus(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func (s *s3Objects) key(k string) string { return s.prefix + k }

func (s *s3Objects) url(k string) string { return "s3://" + s.bucket + "/" + s.key(k) }

// put uploads the file: in one request when small, else as a multipart upload of parts sent a
// few at a time. A PUT is atomic in S3: no reader ever sees part of an object.
func (s *s3Objects) put(ctx context.Context, key, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() <= s3PartSize {
		_, err = s.client.PutObject(ctx, &s3.PutObjectInput{Bucket: &s.bucket, Key: aws.String(s.key(key)),
			Body: io.NewSectionReader(f, 0, st.Size()), ContentLength: aws.Int64(st.Size())})
	} else {
		err = s.multipart(ctx, s.key(key), f, st.Size())
	}
	if err != nil {
		return fmt.Errorf("upload %s: %w", s.url(key), err)
	}
	return os.Remove(path)
}

func (s *s3Objects) multipart(ctx context.Context, key string, f *os.File, size int64) error {
	// CRC32 per part, checked by the store, and combined into the object's checksum.
	up, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &s.bucket, Key: &key,
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32})
	if err != nil {
		return err
	}
	parts, err := s.uploadParts(ctx, key, *up.UploadId, f, size)
	if err == nil {
		_, err = s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &s.bucket, Key: &key,
			UploadId: up.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	}
	if err != nil {
		// Not left for a lifecycle rule to find: an incomplete upload's parts are billed.
		abort, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		s.client.AbortMultipartUpload(abort, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &key, UploadId: up.UploadId})
	}
	return err
}

// uploadParts sends the file's parts, s3PartParallel at a time, and returns them in order.
func (s *s3Objects) uploadParts(ctx context.Context, key, uploadID string, f *os.File, size int64) ([]types.CompletedPart, error) {
	n := int((size + s3PartSize - 1) / s3PartSize)
	parts := make([]types.CompletedPart, n)
	errs := make([]error, n)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, s3PartParallel)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			off := int64(i) * s3PartSize
			length := min(s3PartSize, size-off)
			num := int32(i + 1)
			out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{Bucket: &s.bucket, Key: &key, UploadId: &uploadID,
				PartNumber: &num, Body: io.NewSectionReader(f, off, length), ContentLength: &length,
				ChecksumAlgorithm: types.ChecksumAlgorithmCrc32})
			if err != nil {
				errs[i] = fmt.Errorf("part %d: %w", num, err)
				cancel()
				return
			}
			parts[i] = types.CompletedPart{ETag: out.ETag, PartNumber: &num, ChecksumCRC32: out.ChecksumCRC32}
		})
	}
	wg.Wait()
	return parts, errors.Join(errs...)
}

// create uses S3's conditional write (If-None-Match: *): 412 when the key exists, 409 when
// another writer's create of it is in flight — either way, the other writer has the key.
func (s *s3Objects) create(ctx context.Context, key string, b []byte) error {
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{Bucket: &s.bucket, Key: aws.String(s.key(key)),
		Body: bytes.NewReader(b), ContentLength: aws.Int64(int64(len(b))), IfNoneMatch: aws.String("*")})
	switch httpStatus(err) {
	case 0:
		if err != nil {
			return fmt.Errorf("write %s: %w", s.url(key), err)
		}
		return nil
	case http.StatusPreconditionFailed, http.StatusConflict:
		return fmt.Errorf("%s: %w", s.url(key), fs.ErrExist)
	default:
		return fmt.Errorf("write %s: %w", s.url(key), err)
	}
}

func (s *s3Objects) get(ctx context.Context, key string) ([]byte, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(s.key(key))})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.url(key), err)
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

func (s *s3Objects) fetch(ctx context.Context, key, path string) error {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(s.key(key))})
	if err != nil {
		return fmt.Errorf("read %s: %w", s.url(key), err)
	}
	defer out.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = f.ReadFrom(out.Body)
	if err != nil {
		err = fmt.Errorf("read %s: %w", s.url(key), err)
	}
	return errors.Join(err, f.Close())
}

// list pages through the keys under prefix. Keys with a part starting with "." are skipped, as
// in a local lake.
func (s *s3Objects) list(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(s.key(prefix))})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", s.url(prefix), err)
		}
		for _, o := range page.Contents {
			k := strings.TrimPrefix(aws.ToString(o.Key), s.prefix)
			if !strings.HasPrefix(k, ".") && !strings.Contains(k, "/.") {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	return keys, nil
}

func (s *s3Objects) remove(ctx context.Context, keys []string) error {
	for batch := range slices.Chunk(keys, s3DeleteBatch) {
		ids := make([]types.ObjectIdentifier, len(batch))
		for i, k := range batch {
			ids[i] = types.ObjectIdentifier{Key: aws.String(s.key(k))}
		}
		out, err := s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: &s.bucket, Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)}})
		if err != nil {
			return fmt.Errorf("delete from s3://%s/%s: %w", s.bucket, s.prefix, err)
		}
		if len(out.Errors) > 0 {
			e := out.Errors[0]
			return fmt.Errorf("delete s3://%s/%s: %s: %s (and %d more)", s.bucket, aws.ToString(e.Key), aws.ToString(e.Code), aws.ToString(e.Message), len(out.Errors)-1)
		}
	}
	return nil
}

// abortUploads aborts the multipart uploads under the lake's prefix started before a time: those
// of loads killed mid-upload, whose parts S3 keeps, and bills, until aborted.
func (s *s3Objects) abortUploads(ctx context.Context, before time.Time) (int, error) {
	n := 0
	in := &s3.ListMultipartUploadsInput{Bucket: &s.bucket, Prefix: aws.String(s.prefix)}
	for {
		out, err := s.client.ListMultipartUploads(ctx, in)
		if err != nil {
			return n, fmt.Errorf("list uploads under s3://%s/%s: %w", s.bucket, s.prefix, err)
		}
		for _, u := range out.Uploads {
			if u.Initiated == nil || !u.Initiated.Before(before) {
				continue
			}
			if _, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: u.Key, UploadId: u.UploadId}); err != nil {
				return n, fmt.Errorf("abort upload of s3://%s/%s: %w", s.bucket, aws.ToString(u.Key), err)
			}
			n++
		}
		if !aws.ToBool(out.IsTruncated) {
			return n, nil
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}
