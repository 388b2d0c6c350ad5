package attachment

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/bulkpipe/bulkpipe/pkg/ndjson"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
)

// Fetcher downloads attachments. *fhirclient.Client satisfies it: Resolve keeps the FHIR base's
// path for relative URLs ("Binary/1" against ".../fhir" is ".../fhir/Binary/1"), Load applies the
// retry table to the request and its body together (a body cut off mid-stream is sent again with
// the same backoff and attempt count as a 503), and sends the token (and --header values) only
// to trusted origins, hop by hop (DESIGN.md §2).
type Fetcher interface {
	Resolve(ref string) (*url.URL, error)
	Load(ctx context.Context, req *fhirclient.Request, consume func(*http.Response) error) error
}

// Result says what became of one attachment.
type Result int

// Results of an attachment the policy selected.
const (
	Inlined Result = iota // downloaded and stored in the line
	Already               // had data already: left alone
	Skipped               // no url, or larger than Policy.MaxSize: left alone
	Failed                // the download failed or its answer was unusable: left alone
)

func (r Result) String() string {
	switch r {
	case Inlined:
		return "inlined"
	case Already:
		return "already inlined"
	case Skipped:
		return "skipped"
	}
	return "failed"
}

// ErrTooLarge is wrapped by the Err of a Download skipped for Policy.MaxSize.
var ErrTooLarge = errors.New("larger than the maximum attachment size")

// ErrStalled is wrapped by the error of a download that received nothing for the stall timeout
// (fhirclient's Request.IdleTimeout, which every tool's stall timeout is).
var ErrStalled = fhirclient.ErrStalled

// fetched is the outcome of one download.
type fetched struct {
	url         string // resolved and redacted, for messages and the log
	result      Result
	content     []byte
	contentType string // what data gets: "<mime>; charset=<charset>"
	size        int64  // len(content), kept after content is released
	sum         [sha1.Size]byte
	err         error
}

// fetch downloads one attachment of media type mt (the Accept header) and checks the answer.
func (in *Inliner) fetch(ctx context.Context, rawURL, mt string) fetched {
	u, err := in.fetcher.Resolve(rawURL)
	if err != nil {
		return fetched{url: fhirclient.Redact(rawURL), result: Failed, err: err}
	}
	target := u.String()
	f := fetched{url: fhirclient.Redact(target)}
	req := &fhirclient.Request{Method: http.MethodGet, URL: target, Header: http.Header{"Accept": {mt}},
		Route: fhirclient.RouteAttachment, Auth: fhirclient.AuthIfTrusted, Guard: !in.allowLL, IdleTimeout: in.stall}
	var body []byte
	var ctype string
	err = in.fetcher.Load(ctx, req, func(resp *http.Response) error {
		b, err := in.readBody(resp)
		if _, ok := errors.AsType[errEncoding](err); ok || errors.Is(err, ErrTooLarge) {
			return fhirclient.Permanent(err) // another try would get the same
		}
		body, ctype = b, resp.Header.Get("Content-Type")
		return err
	})
	if errors.Is(err, ErrTooLarge) {
		f.result, f.err = Skipped, fmt.Errorf("GET %s: %w", f.url, err)
		return f
	}
	if _, ok := errors.AsType[errEncoding](err); ok {
		f.result, f.err = Failed, fmt.Errorf("GET %s: %w", f.url, err)
		return f
	}
	if err != nil {
		f.result, f.err = Failed, err
		return f
	}
	return in.check(f, ctype, body, mt)
}

// readBody reads the whole answer, within the size limit, and closes it. A Binary resource in JSON
// is a third larger than its content in base64, plus its other members: the limit on what is read
// allows for that, and the decoded content is checked again.
//
// Nothing is sized from a header: Content-Length only rejects early what is announced too large
// and checks, at the end, that all of it came (a server announcing a terabyte, issue 11.8, gets
// ErrTooLarge, not an allocation). An answer the server compressed on its own
// (Content-Encoding: gzip, though the request asked for none) is decoded here, so that data,
// size and hash describe the content (issue 11.9); the decoded bytes count against the limit,
// so a gzip bomb stops there.
func (in *Inliner) readBody(resp *http.Response) ([]byte, error) {
	body := resp.Body
	defer body.Close()
	limit := in.policy.maxSize
	if ct, _ := mediaType(resp.Header.Get("Content-Type")); isJSON(ct) {
		limit = limit/3*4 + 4 + 64<<10
	}
	enc, err := contentEncoding(resp.Header)
	if err != nil {
		return nil, err
	}
	// The encoded bytes are bounded too: a deflate stream of empty blocks yields nothing forever.
	rawLimit := limit
	if enc != "" {
		rawLimit = limit + limit/8 + 64<<10
	}
	if resp.ContentLength > rawLimit {
		return nil, fmt.Errorf("%w (%d bytes announced)", ErrTooLarge, resp.ContentLength)
	}
	raw := &countingReader{r: io.LimitReader(body, rawLimit+1)}
	var r io.Reader = raw
	switch enc {
	case "gzip":
		zr, err := gzip.NewReader(raw)
		if err != nil {
			return nil, fmt.Errorf("decoding Content-Encoding gzip: %w", err)
		}
		r = zr
	case "deflate":
		zr, err := zlib.NewReader(raw)
		if err != nil {
			return nil, fmt.Errorf("decoding Content-Encoding deflate: %w", err)
		}
		r = zr
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(r, limit+1)); err != nil {
		if enc != "" {
			err = fmt.Errorf("decoding Content-Encoding %s: %w", enc, err)
		}
		return nil, err
	}
	if int64(buf.Len()) > limit {
		return nil, fmt.Errorf("%w (more than %d bytes)", ErrTooLarge, limit)
	}
	if enc != "" {
		// Read what follows the compressed stream, so the length check below sees all of it.
		if _, err := io.Copy(io.Discard, raw); err != nil {
			return nil, err
		}
		if raw.n > rawLimit {
			return nil, fmt.Errorf("%w (more than %d encoded bytes)", ErrTooLarge, rawLimit)
		}
	}
	if resp.ContentLength >= 0 && raw.n != resp.ContentLength {
		return nil, fmt.Errorf("got %d bytes of %d: %w", raw.n, resp.ContentLength, io.ErrUnexpectedEOF)
	}
	return buf.Bytes(), nil
}

// errEncoding is an answer in a Content-Encoding this package cannot decode: retrying would get
// the same, so the attachment fails at once.
type errEncoding string

func (e errEncoding) Error() string {
	return fmt.Sprintf("answered with Content-Encoding %q, which cannot be decoded (gzip and deflate can)", string(e))
}

// contentEncoding reads Content-Encoding: "" (none or identity), "gzip" (and x-gzip) or
// "deflate". Stacked encodings and others (br, compress) are an errEncoding.
func contentEncoding(h http.Header) (string, error) {
	v := strings.ToLower(strings.TrimSpace(strings.Join(h.Values("Content-Encoding"), ",")))
	switch v {
	case "", "identity":
		return "", nil
	case "gzip", "x-gzip":
		return "gzip", nil
	case "deflate":
		return "deflate", nil
	}
	return "", errEncoding(v)
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// check turns an answer into the content to inline: a FHIR Binary resource is decoded (servers
// answer with one when they ignore Accept), the media type must be the one asked for, and the
// charset comes from the answer, utf-8 when it names none (DESIGN.md §5).
func (in *Inliner) check(f fetched, header string, body []byte, want string) fetched {
	got, charset := mediaType(header)
	if isJSON(got) && !isJSON(want) {
		if !ndjson.Valid(body) {
			f.result, f.err = Failed, fmt.Errorf("GET %s: answered %s that is not valid JSON", f.url, got)
			return f
		}
		switch rt := gjson.GetBytes(body, "resourceType").Str; rt {
		case "Binary":
			content, ct, err := decodeBinary(body)
			if err != nil {
				f.result, f.err = Failed, fmt.Errorf("GET %s: %w", f.url, err)
				return f
			}
			body = content
			got, charset = mediaType(ct)
		case "":
			f.result, f.err = Failed, fmt.Errorf("GET %s: answered %s, want %s", f.url, got, want)
			return f
		default:
			f.result, f.err = Failed, fmt.Errorf("GET %s: answered a FHIR %s, want %s or a Binary", f.url, rt, want)
			return f
		}
	}
	// No media type, or the generic one, says nothing against the attachment's own.
	if got != want && got != "" && got != "application/octet-stream" {
		f.result, f.err = Failed, fmt.Errorf("GET %s: answered %s, want %s", f.url, got, want)
		return f
	}
	if max := in.policy.maxSize; int64(len(body)) > max {
		f.result, f.err = Skipped, fmt.Errorf("GET %s: %w (%d bytes)", f.url, ErrTooLarge, len(body))
		return f
	}
	if charset == "" {
		charset = "utf-8"
	}
	f.result, f.content, f.contentType, f.size = Inlined, body, want+"; charset="+charset, int64(len(body))
	f.sum = sha1.Sum(body)
	return f
}

// isJSON reports a JSON media type: application/json, application/fhir+json, the DSTU2
// application/json+fhir, or any +json.
func isJSON(mt string) bool {
	return mt == "application/json" || mt == "application/json+fhir" || strings.HasSuffix(mt, "+json")
}

// decodeBinary returns the content and contentType of a FHIR Binary resource: data in R4 and
// later, content in DSTU2.
func decodeBinary(b []byte) ([]byte, string, error) {
	r := gjson.GetManyBytes(b, "contentType", "data", "content")
	data := r[1]
	if !data.Exists() {
		data = r[2]
	}
	if data.Type != gjson.String {
		return nil, "", errors.New("answered a Binary without data")
	}
	content, err := decodeBase64(data.Str)
	if err != nil {
		return nil, "", fmt.Errorf("answered a Binary whose data is not base64: %w", err)
	}
	return content, r[0].Str, nil
}

// decodeBase64 accepts standard base64 with or without padding, and with line breaks.
func decodeBase64(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n ") {
		s = strings.Join(strings.Fields(s), "")
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}
