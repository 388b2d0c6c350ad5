package exportdir

import (
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
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
