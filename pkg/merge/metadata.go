package merge

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/atomicfile"
	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/exportdir"
)

// earliest is the slice whose transactionTime the merged export takes (DESIGN.md §6: everything in
// the folder is at least that fresh, so completion tracking may claim no later time).
func earliest(srcs []*source) *source {
	e := srcs[0]
	for _, s := range srcs[1:] {
		if s.time.Before(e.time) {
			e = s
		}
	}
	return e
}

// mergedExportURL is the kickoff URL the merged log records: the earliest logged slice's, without its
// query (each slice's query is in _bulkpipeSlices), which keeps the Group readers take from it. With
// no log at all, a relative "/Group/ID/$export" (or "/$export") still names the Group.
func mergedExportURL(srcs []*source) string {
	var first *source
	for _, s := range srcs {
		if s.export != nil && s.export.ExportURL != "" && (first == nil || s.time.Before(first.time)) {
			first = s
		}
	}
	if first != nil {
		u, _, _ := strings.Cut(first.export.ExportURL, "?")
		u, _, _ = strings.Cut(u, "#")
		return u
	}
	if g := srcs[0].group; g != "" {
		return "/Group/" + url.PathEscape(g) + "/$export"
	}
	return "/$export"
}

// writeMetadata writes manifest.json, log.ndjson and .bulkpipe/state.json into the staging folder.
func (m *merger) writeMetadata(out *outDir) error {
	txTime := earliest(m.srcs).time.Format(time.RFC3339Nano)
	exportURL := mergedExportURL(m.srcs)
	exportID, err := writeManifest(out, txTime, exportURL)
	if err != nil {
		return err
	}
	if err := m.writeLog(out, exportID, txTime, exportURL); err != nil {
		return err
	}
	st := &exportdir.State{ExportID: exportID, TransactionTime: txTime}
	for _, f := range out.files {
		st.Files = append(st.Files, exportdir.FileState{Name: f.rel, ItemType: f.itemType, ResourceType: f.resourceType,
			Ordinal: f.ordinal, Size: f.size, SHA256: f.sum, Lines: int(f.lines)})
	}
	if err := exportdir.WriteState(out.staging, st); err != nil {
		return fmt.Errorf("write .bulkpipe/state.json: %w", err)
	}
	return nil
}

// writeManifest writes manifest.json, describing the merged files with URLs relative to the
// folder, and returns the exportId derived from it: without a status URL, DESIGN.md §4 names an
// export by its manifest.
func writeManifest(out *outDir, txTime, exportURL string) (exportID string, err error) {
	man := &bulk.Manifest{TransactionTime: txTime, Request: exportURL}
	for _, f := range out.files {
		it := bulk.Item{Type: f.resourceType, URL: f.rel, Count: f.lines, HasCount: true}
		switch f.itemType {
		case exportdir.ItemOutput:
			man.Output = append(man.Output, it)
		case exportdir.ItemDeleted:
			man.Deleted = append(man.Deleted, it)
		case exportdir.ItemError:
			man.Error = append(man.Error, it)
		}
	}
	mb, err := json.MarshalIndent(man, "", "  ")
	if err != nil {
		return "", err
	}
	mb = append(mb, '\n')
	if err := atomicfile.WriteFile(filepath.Join(out.staging, "manifest.json"), mb, 0o644); err != nil {
		return "", fmt.Errorf("write manifest.json: %w", err)
	}
	sum := sha256.Sum256(mb)
	return "urn:bulkpipe:manifest:" + hex.EncodeToString(sum[:]), nil
}

// writeLog writes the merged folder's log.ndjson: a composed kickoff, then the closing events of
// an export that completed at the earliest slice's time.
func (m *merger) writeLog(out *outDir, exportID, txTime, exportURL string) error {
	counts := map[exportdir.ItemType]int{}
	var size int64
	for _, f := range out.files {
		counts[f.itemType]++
		size += f.size
	}
	now := m.o.Now()
	events := []struct {
		id     string
		detail any
		sync   bool
	}{
		{exportdir.EventKickoff, m.kickoff(exportURL), true},
		{exportdir.EventStatusComplete, exportdir.StatusComplete{TransactionTime: txTime}, true},
		{exportdir.EventManifestComplete, exportdir.ManifestComplete{TransactionTime: txTime, TotalOutputFileCount: counts[exportdir.ItemOutput],
			TotalDeletedFileCount: counts[exportdir.ItemDeleted], TotalErrorFileCount: counts[exportdir.ItemError], TotalManifests: 1}, false},
		{exportdir.EventExportComplete, exportdir.ExportComplete{Files: len(out.files), Resources: int64(m.res.Written), Bytes: size,
			Duration: now.Sub(m.started).Milliseconds()}, true},
	}
	lw, err := exportdir.OpenLog(filepath.Join(out.staging, exportdir.LogName))
	if err != nil {
		return err
	}
	for _, ev := range events {
		e, err := exportdir.NewEvent(exportID, ev.id, ev.detail, now)
		if err == nil {
			if ev.id == exportdir.EventKickoff {
				e.Client, e.ClientVersion = "bulkpipe ndjson-merge", m.o.Version
			}
			err = lw.Write(e, ev.sync)
		}
		if err != nil {
			lw.Close()
			return err
		}
	}
	if err := lw.Close(); err != nil {
		return fmt.Errorf("write log.ndjson: %w", err)
	}
	return nil
}

// kickoff is the merged log's kickoff: composed, not the record of a kickoff sent, so readers
// take a FHIR base only from its _bulkpipe member, and that only where every slice vouched for
// the same one. The slices' filters go into its parameters (warnings are reported).
func (m *merger) kickoff(exportURL string) exportdir.Kickoff {
	params, notes := mergeParams(m.srcs)
	for _, n := range notes {
		m.o.Warn(n)
	}
	kick := exportdir.NewKickoff(exportURL, params)
	kick.Synthesized = "ndjson-merge: from the slices' logs"
	if b := vouchedBase(m.srcs); b != "" {
		kick.Context = &exportdir.KickoffContext{FHIRBase: b}
	}
	if s := firstLogged(m.srcs); s != nil {
		if d := kickoffOf(s.export); d != nil {
			kick.SoftwareName, kick.SoftwareVersion = d["softwareName"], d["softwareVersion"]
			kick.SoftwareReleaseDate, kick.FHIRVersion = d["softwareReleaseDate"], d["fhirVersion"]
		}
	}
	return kick
}

// firstLogged is the earliest slice that has a log.
func firstLogged(srcs []*source) *source {
	var first *source
	for _, s := range srcs {
		if s.export != nil && (first == nil || s.time.Before(first.time)) {
			first = s
		}
	}
	return first
}

// vouchedBase is the FHIR base every logged slice's kickoff vouches for (bulk.KickoffBase), or ""
// when one vouches for none or two disagree: the merged log must never make trusted an origin
// that only a manifest's request named, nor pick one of two servers.
func vouchedBase(srcs []*source) string {
	base := ""
	for _, s := range srcs {
		if s.export == nil {
			continue
		}
		raw := kickoffRaw(s.export)
		if raw == nil {
			return ""
		}
		b := strings.TrimRight(bulk.KickoffBase(raw), "/")
		if b == "" || (base != "" && b != base) {
			return ""
		}
		base = b
	}
	return base
}

// kickoffRaw returns the raw detail of the export's last kickoff event.
func kickoffRaw(e *exportdir.Export) []byte {
	for i := len(e.Events) - 1; i >= 0; i-- {
		if e.Events[i].EventID == "kickoff" {
			return e.Events[i].EventDetail
		}
	}
	return nil
}

// kickoffOf returns the detail of the export's kickoff event.
func kickoffOf(e *exportdir.Export) map[string]any {
	for i := len(e.Events) - 1; i >= 0; i-- {
		if e.Events[i].EventID == "kickoff" {
			return rawDetail(e.Events[i].EventDetail)
		}
	}
	return nil
}
