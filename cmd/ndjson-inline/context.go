package main

import (
	"errors"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/urfave/cli/v2"

	"github.com/bulkpipe/bulkpipe/pkg/attachment"
	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/tool"
)

// clients holds one FHIR client per base URL: export folders given together may come from
// different servers.
type clients struct {
	c     *cli.Context
	st    *tool.Status
	types []string
	m     map[string]*fhirclient.Client
}

func newClients(c *cli.Context, cfg *config, st *tool.Status) *clients {
	types := cfg.policy.Resources
	if types == nil {
		types = attachment.DefaultResources
	}
	return &clients{c: c, st: st, types: types, m: map[string]*fhirclient.Client{}}
}

// get returns the client for base ("" is --fhir-url, whose absence tool.NewClient reports as
// the usage error naming --fhir-url and BULK_FHIR_URL).
func (cs *clients) get(base string) (*fhirclient.Client, error) {
	if cl, ok := cs.m[base]; ok {
		return cl, nil
	}
	// SMART scopes: the resource types, and Binary, where Epic keeps attachments.
	cl, err := tool.NewClientWith(cs.c, tool.ClientConfig{Base: base, Types: cs.types, Linked: []string{"Binary"}, Status: cs.st})
	if err != nil {
		return nil, err
	}
	cs.m[base] = cl
	return cl, nil
}

// folderContext returns the FHIR base and export ID for an input: --fhir-url, else the base of
// the export whose log sits in the input's folder (DESIGN.md §5: in-place on an export folder
// takes the base from its log). exportID is that export's, for --log events ("" when unknown).
// A folder without a log is not an error: base is then "" and the caller decides.
func folderContext(c *cli.Context, input string) (base, exportID string, err error) {
	base = c.String("fhir-url")
	if input == "" || input == "-" {
		return base, "", nil
	}
	dir := input
	if !isDir(input) {
		dir = filepath.Dir(input)
	}
	path, err := exportdir.FindLog(dir)
	if err != nil {
		if errors.Is(err, exportdir.ErrNoLog) || base != "" {
			return base, "", nil
		}
		return "", "", err
	}
	exp, err := exportdir.ReadLog(path)
	if err != nil {
		if errors.Is(err, exportdir.ErrNoKickoff) || base != "" {
			return base, "", nil
		}
		return "", "", err
	}
	if base == "" {
		base = logBase(exp)
	}
	return base, exp.ExportID, nil
}

// logBase is the FHIR base the export's kickoff event vouches for (DESIGN.md §2, token safety):
// the base of its exportUrl when a client wrote it as it sent the kickoff, but for a kickoff
// event bulk-fetch synthesized, whose exportUrl may be the manifest's request, only the fhirBase
// that bulk-fetch recorded from the user's settings. "" when it vouches for none.
func logBase(exp *exportdir.Export) string {
	for i := len(exp.Events) - 1; i >= 0; i-- {
		ev := exp.Events[i]
		if ev.EventID != "kickoff" {
			continue
		}
		d := gjson.ParseBytes(ev.EventDetail)
		if d.Get("exportUrl").String() != exp.ExportURL {
			continue
		}
		if d.Get(bulk.SynthesizedMember).Exists() {
			return d.Get(bulk.ContextMember + ".fhirBase").String()
		}
		return baseFromExportURL(exp.ExportURL)
	}
	return ""
}

// baseFromExportURL turns a kickoff URL into the FHIR base it was sent to:
// ".../fhir/Group/abc/$export?_type=X", ".../fhir/Patient/$export" and ".../fhir/$export" all
// give ".../fhir". It returns "" for anything else.
func baseFromExportURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return ""
	}
	segs := strings.Split(strings.TrimSuffix(u.EscapedPath(), "/"), "/")
	i := len(segs) - 1
	if i < 0 || !strings.HasPrefix(segs[i], "$export") && !strings.HasPrefix(segs[i], "%24export") {
		return ""
	}
	segs = segs[:i]
	switch n := len(segs); {
	case n >= 1 && segs[n-1] == "Patient":
		segs = segs[:n-1]
	case n >= 2 && segs[n-2] == "Group":
		segs = segs[:n-2]
	}
	b := url.URL{Scheme: u.Scheme, Host: u.Host}
	p := strings.Join(segs, "/")
	if unescaped, err := url.PathUnescape(p); err == nil {
		b.Path, b.RawPath = unescaped, p
	}
	return strings.TrimSuffix(b.String(), "/")
}
