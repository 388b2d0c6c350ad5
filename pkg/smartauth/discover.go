package smartauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
)

// maxBody bounds what is read from discovery and token responses; real ones are a few KiB.
const maxBody = 1 << 20

// ClientID resolves --smart-client-id: a path to a file holding the ID (Epic's IDs are long
// enough that users keep them in files, as the seed's docs suggest), else the value itself.
// Surrounding whitespace is trimmed either way.
func ClientID(value string) (string, error) {
	if fi, err := os.Stat(value); err == nil && fi.Mode().IsRegular() {
		f, err := os.Open(value)
		if err != nil {
			return "", fmt.Errorf("read client id: %w", err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, 64<<10))
		if err != nil {
			return "", fmt.Errorf("read client id: %w", err)
		}
		id := strings.TrimSpace(string(b))
		if id == "" {
			return "", fmt.Errorf("client id file %s is empty", value)
		}
		return id, nil
	}
	id := strings.TrimSpace(value)
	if id == "" {
		return "", errors.New("client id is empty")
	}
	return id, nil
}

// Discovery is what a server's SMART configuration says about its token endpoint.
type Discovery struct {
	TokenEndpoint   string   // absolute URL
	ScopesSupported []string // as advertised; may be empty
	V2              bool     // ask for SMART v2 scopes (system/T.rs) rather than v1 (.read): see wantV2
}

// Discover GETs {fhirBase}/.well-known/smart-configuration (SMART App Launch §2.1) and returns
// its token endpoint. A missing token_endpoint is an error: the caller then needs --token-url.
func Discover(ctx context.Context, d Doer, fhirBase string) (*Discovery, error) {
	if d == nil {
		d = http.DefaultClient
	}
	u := strings.TrimRight(fhirBase, "/") + "/.well-known/smart-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("discover SMART configuration: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := d.Do(req)
	if err != nil {
		return nil, fmt.Errorf("discover SMART configuration: GET %s: %w", u, err)
	}
	defer drainClose(resp.Body)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("discover SMART configuration: GET %s: %s", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("discover SMART configuration: GET %s: read body: %w", u, err)
	}
	return parseDiscovery(body, resp.Request, u)
}

func parseDiscovery(body []byte, req *http.Request, rawURL string) (*Discovery, error) {
	var doc struct {
		TokenEndpoint   string   `json:"token_endpoint"`
		ScopesSupported []string `json:"scopes_supported"`
		Capabilities    []string `json:"capabilities"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("discover SMART configuration: GET %s: parse JSON: %w", rawURL, err)
	}
	if doc.TokenEndpoint == "" {
		return nil, fmt.Errorf("discover SMART configuration: GET %s: no token_endpoint", rawURL)
	}
	// The spec wants an absolute URL; resolve a relative one against where the document came
	// from (after redirects) rather than failing later with "unsupported protocol scheme".
	tok, err := url.Parse(doc.TokenEndpoint)
	if err != nil {
		return nil, fmt.Errorf("discover SMART configuration: GET %s: bad token_endpoint %q", rawURL, doc.TokenEndpoint)
	}
	if req != nil && req.URL != nil {
		tok = req.URL.ResolveReference(tok)
	} else if base, err := url.Parse(rawURL); err == nil {
		tok = base.ResolveReference(tok)
	}
	if tok.Scheme != "http" && tok.Scheme != "https" {
		return nil, fmt.Errorf("discover SMART configuration: GET %s: token_endpoint %q is not an http(s) URL", rawURL, doc.TokenEndpoint)
	}
	return &Discovery{
		TokenEndpoint:   tok.String(),
		ScopesSupported: doc.ScopesSupported,
		V2:              wantV2(doc.ScopesSupported, doc.Capabilities),
	}, nil
}

// wantV2 reports whether to ask for SMART v2 scopes: when the server advertises the
// permission-v2 capability (SMART App Launch 2.x §2.1), even beside permission-v1, since v2 is
// what such a server documents and v1 scopes are only its compatibility path. A server that
// forgets the capability but lists only v2 resource scopes in scopes_supported gets v2 too: v1
// scopes would be refused there. Anything else gets v1, which every server version accepts.
func wantV2(scopes, capabilities []string) bool {
	if slices.Contains(capabilities, "permission-v2") {
		return true
	}
	var v1, v2 bool
	for _, s := range scopes {
		switch scopeVersion(s) {
		case 1:
			v1 = true
		case 2:
			v2 = true
		}
	}
	return v2 && !v1
}

// scopeVersion classifies a resource scope "context/Type.perm[?query]": 1 for read/write/*,
// 2 for a c?r?u?d?s? permission string, 0 for anything else (openid, launch/patient, ...).
func scopeVersion(scope string) int {
	scope, _, _ = strings.Cut(scope, "?")
	if !strings.Contains(scope, "/") {
		return 0
	}
	i := strings.LastIndexByte(scope, '.')
	if i < 0 {
		return 0
	}
	switch perm := scope[i+1:]; perm {
	case "read", "write", "*":
		return 1
	case "":
		return 0
	default:
		rest := perm
		for _, c := range "cruds" {
			rest = strings.TrimPrefix(rest, string(c))
		}
		if rest == "" {
			return 2
		}
	}
	return 0
}

// Scopes returns the system scopes a step needs to read types, then linked: system/T.read per
// type (v2: system/T.rs), deduplicated, in the order given. linked are the types the step reads
// beyond the export's own: Binary where it fetches attachments (Epic's Binary/{id}), Medication
// where it fetches what MedicationRequests reference. The steps that only start, poll and
// download an export pass none, because servers refuse the token for a scope of a type they do
// not hold (DESIGN.md §2, Auth). No types, or "*", means everything: system/*.read (v2:
// system/*.rs), which covers linked types too. Elements may be comma lists, as _type values are.
func Scopes(types, linked []string, v2 bool) []string {
	perm := ".read"
	if v2 {
		perm = ".rs"
	}
	var out []string
	seen := map[string]bool{}
	for _, list := range types {
		for t := range strings.SplitSeq(list, ",") {
			t = strings.TrimSpace(t)
			if t == "" {
				continue
			}
			if t == "*" {
				return []string{"system/*" + perm}
			}
			if !seen[t] {
				seen[t] = true
				out = append(out, "system/"+t+perm)
			}
		}
	}
	if len(out) == 0 {
		return []string{"system/*" + perm}
	}
	for _, t := range linked {
		if !seen[t] {
			seen[t] = true
			out = append(out, "system/"+t+perm)
		}
	}
	return out
}

// drainClose reads a little of what is left so the connection can be reused, then closes.
func drainClose(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	_ = body.Close()
}
