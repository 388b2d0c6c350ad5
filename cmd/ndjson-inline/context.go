package main

import (
	"errors"
	"os"
	"path/filepath"

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

// get returns the client for base ("" is --fhir-url, whose absence tool.NewClientWith reports as
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

// logBase is the FHIR base the export's last kickoff event vouches for (bulk.KickoffBase, the
// token-safety rule every tool applies to a log): "" when it vouches for none.
func logBase(exp *exportdir.Export) string {
	for i := len(exp.Events) - 1; i >= 0; i-- {
		ev := exp.Events[i]
		if ev.EventID != exportdir.EventKickoff || gjson.GetBytes(ev.EventDetail, "exportUrl").String() != exp.ExportURL {
			continue
		}
		return bulk.KickoffBase(ev.EventDetail)
	}
	return ""
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}
