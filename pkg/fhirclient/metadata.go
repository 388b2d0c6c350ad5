package fhirclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
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
	req := &Request{
		Method: http.MethodGet,
		URL:    "metadata",
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
		return nil, err
	}
	defer resp.Body.Close()
	shown := Redact(resp.Request.URL.String())
	b, err := readAtMost(resp.Body, maxCapability+1)
	if err != nil {
		return nil, fmt.Errorf("GET %s: reading the CapabilityStatement: %w", shown, err)
	}
	if len(b) > maxCapability {
		return nil, fmt.Errorf("GET %s: CapabilityStatement larger than %d MiB", shown, maxCapability>>20)
	}
	capa, err := parseCapability(b)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", shown, err)
	}
	c.epic.Store(capa.Epic())
	return capa, nil
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
