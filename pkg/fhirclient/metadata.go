package fhirclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// maxCapability bounds a CapabilityStatement; Epic's run to a few megabytes.
const maxCapability = 32 << 20

// Capability is what bulkpipe needs from the server's CapabilityStatement.
type Capability struct {
	SoftwareName, SoftwareVersion, SoftwareReleaseDate, FHIRVersion, Publisher string
	Raw                                                                        []byte // the whole CapabilityStatement
}

// Epic reports whether the server identifies itself as Epic, which wants an Epic-Client-ID
// header on every request (DESIGN.md §2, auth).
func (c *Capability) Epic() bool {
	return containsFold(c.SoftwareName, "epic") || containsFold(c.Publisher, "epic")
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), sub)
}

// Metadata GETs [base]/metadata (Accept: application/fhir+json), remembers whether the server
// is Epic (software.name or publisher contains "Epic"), and from then on sends
// Epic-Client-ID: ClientID to trusted origins. The CapabilityStatement is public (FHIR R4
// 3.2.0.2, and the SMART Backend Services IG reads it before authorizing): it is asked for
// without credentials, so a run never gets a token only for it; only a server that answers
// that with 401 or 403 is asked again with them.
func (c *Client) Metadata(ctx context.Context) (*Capability, error) {
	b, shown, err := c.conformance(ctx, "metadata", "CapabilityStatement")
	if err != nil {
		return nil, err
	}
	capa, err := parseCapability(b)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", shown, err)
	}
	c.epic.Store(capa.Epic())
	return capa, nil
}

// OperationDefinition GETs [base]/OperationDefinition/ID, the definition a CapabilityStatement
// names for an operation the server defines itself (a vendor's $export with its own parameter
// list), and returns it as read: pkg/bulk knows what to take from it. It is asked for as
// Metadata asks, without credentials first.
func (c *Client) OperationDefinition(ctx context.Context, id string) ([]byte, error) {
	b, shown, err := c.conformance(ctx, "OperationDefinition/"+url.PathEscape(id), "OperationDefinition")
	if err != nil {
		return nil, err
	}
	if rt := jsonString(json.RawMessage(resourceTypeOf(b))); rt != "OperationDefinition" {
		return nil, fmt.Errorf("GET %s: expected an OperationDefinition, got %q", shown, rt)
	}
	return b, nil
}

// conformance GETs a conformance resource (public by FHIR's rules) at path below the base:
// without credentials, then once with them if the server answers 401 or 403. It returns the
// body, bounded by maxCapability, and the URL for messages.
func (c *Client) conformance(ctx context.Context, path, what string) ([]byte, string, error) {
	req := &Request{
		Method: http.MethodGet,
		URL:    path,
		Header: http.Header{"Accept": {"application/fhir+json"}},
		Route:  RouteMetadata,
		Auth:   AuthNever,
	}
	resp, err := c.Do(ctx, req)
	if se, ok := errors.AsType[*StatusError](err); ok && c.creds != nil &&
		(se.StatusCode == http.StatusUnauthorized || se.StatusCode == http.StatusForbidden) {
		req.Auth = AuthIfTrusted
		resp, err = c.Do(ctx, req)
	}
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	shown := Redact(resp.Request.URL.String())
	b, err := readAtMost(resp.Body, maxCapability+1)
	if err != nil {
		return nil, shown, fmt.Errorf("GET %s: reading the %s: %w", shown, what, err)
	}
	if len(b) > maxCapability {
		return nil, shown, fmt.Errorf("GET %s: %s larger than %d MiB", shown, what, maxCapability>>20)
	}
	return b, shown, nil
}

// resourceTypeOf is the raw resourceType member of a JSON object, or nil.
func resourceTypeOf(b []byte) json.RawMessage {
	var raw struct{ ResourceType json.RawMessage }
	if json.Unmarshal(b, &raw) != nil {
		return nil
	}
	return raw.ResourceType
}

// parseCapability reads the fields of Capability, tolerating wrong JSON types in them.
// "Conformance" is the DSTU2 name that older Epic endpoints still answer with.
func parseCapability(b []byte) (*Capability, error) {
	var raw struct {
		ResourceType, FHIRVersion, Publisher json.RawMessage
		Software                             json.RawMessage
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("CapabilityStatement is not valid JSON: %w", err)
	}
	switch rt := jsonString(raw.ResourceType); rt {
	case "CapabilityStatement", "Conformance":
	case "":
		return nil, fmt.Errorf("expected a CapabilityStatement, got JSON without a resourceType")
	default:
		return nil, fmt.Errorf("expected a CapabilityStatement, got a %s", rt)
	}
	var sw struct{ Name, Version, ReleaseDate json.RawMessage }
	_ = json.Unmarshal(raw.Software, &sw) // absent or not an object: no software details
	return &Capability{
		SoftwareName:        jsonString(sw.Name),
		SoftwareVersion:     jsonString(sw.Version),
		SoftwareReleaseDate: jsonString(sw.ReleaseDate),
		FHIRVersion:         jsonString(raw.FHIRVersion),
		Publisher:           jsonString(raw.Publisher),
		Raw:                 b,
	}, nil
}
