package exportdir

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/tidwall/gjson"
)

// SentKickoff is the kickoff event of an export this process started (bulk-kickoff), as
// bulk-data-client writes it (DESIGN.md §4): the request as prepared, the server's 202 or the
// error that ended the kickoff (kerr), and the software the server's CapabilityStatement names
// (capa nil: unknown). Its exportId is the status URL; a kickoff that failed has none, so a
// random urn:uuid names it. version is the client's, for the top-level _clientVersion.
func SentKickoff(pk *bulk.PreparedKickoff, res *bulk.KickoffResult, kerr error, capa *fhirclient.Capability,
	version string, now time.Time) Event {
	detail := NewKickoff(pk.URL, pk.Parameters)
	if capa != nil {
		// Unknown fields stay null, as bulk-data-client writes them.
		for dst, v := range map[*any]string{&detail.SoftwareName: capa.SoftwareName, &detail.SoftwareVersion: capa.SoftwareVersion,
			&detail.SoftwareReleaseDate: capa.SoftwareReleaseDate, &detail.FHIRVersion: capa.FHIRVersion} {
			if v != "" {
				*dst = v
			}
		}
	}
	id := "urn:uuid:" + randomUUID()
	if res != nil {
		detail.ResponseHeaders = ResponseHeaders(res.Header)
		if kerr == nil {
			id = res.StatusURL
		}
	}
	if kerr != nil {
		detail.ErrorBody = kerr.Error()
		if se, ok := errors.AsType[*fhirclient.StatusError](kerr); ok {
			detail.ErrorCode = se.StatusCode
			detail.ResponseHeaders = ResponseHeaders(se.Header)
			if len(se.Body) > 0 {
				detail.ErrorBody = string(se.Body)
			}
		}
	}
	e, _ := NewEvent(id, EventKickoff, detail, now) // strings and numbers always marshal
	e.Client, e.ClientVersion = "bulkpipe", version
	return e
}

// randomUUID is a version 4 UUID.
func randomUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Known is what a tool knows of an export besides its status URL, from trusted sources only.
type Known struct {
	Base      string   // the FHIR base: trusted, and where SMART discovery looks ("" unknown)
	ExportURL string   // the kickoff URL, for the log's Group
	TokenURL  string   // the SMART token endpoint bulk-kickoff found
	Types     []string // the kickoff's _type, for SMART scopes
}

// FindExport gathers what is known of the export at statusURL from trusted sources only
// (DESIGN.md §2, token safety): fhirURL (the user's --fhir-url) first, then the record
// bulk-kickoff kept for it in recordDir, then the kickoff event the log at logPath holds for it.
// recordDir and logPath may be "". A record that cannot be used is reported to warn and passed
// over; a log that cannot be read is an error.
func FindExport(fhirURL, recordDir, logPath, statusURL string, warn func(error)) (*Known, error) {
	k := &Known{Base: strings.TrimRight(fhirURL, "/")}
	if recordDir != "" {
		if r, err := bulk.LoadRecord(recordDir, statusURL); err == nil {
			// A record of another server than --fhir-url's says nothing about this one.
			if k.Base == "" || k.Base == strings.TrimRight(r.FHIRBase, "/") {
				k.Base, k.ExportURL, k.TokenURL, k.Types = r.FHIRBase, r.ExportURL, r.TokenURL, r.Types
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			warn(err)
		}
	}
	if logPath == "" || k.ExportURL != "" {
		return k, nil
	}
	events, err := LogEvents(logPath)
	if errors.Is(err, os.ErrNotExist) {
		return k, nil
	}
	if err != nil {
		return nil, err
	}
	for _, e := range events {
		if e.EventID != EventKickoff || e.ExportID != statusURL {
			continue
		}
		detail := gjson.ParseBytes(e.EventDetail)
		k.ExportURL = detail.Get("exportUrl").String()
		k.Types = bulk.SplitList(detail.Get("requestParameters._type").String())
		if base := bulk.KickoffBase(e.EventDetail); base != "" && fhirURL == "" {
			k.Base = base
		}
	}
	return k, nil
}
