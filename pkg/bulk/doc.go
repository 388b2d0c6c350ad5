// Package bulk implements the client side of FHIR Bulk Data export.
//
// It speaks the protocol of the Bulk Data Access IG (STU2, STU3 and the v4 build) over a
// *fhirclient.Client, which owns retries, auth and token safety (DESIGN.md §2):
//
//   - Kickoff starts an export at system, Patient or Group level, by GET (repeated values
//     collapsed into one comma list, because Cerner rejects repeats) or by POST with a FHIR
//     Parameters body (one parameter per value, the v4 way), and returns the status URL.
//   - Poll waits on a status URL through 202s, transient errors and partial manifests (STU3
//     allowPartialManifests: pages linked by link next), handing each manifest page to a
//     callback as it arrives. It prints nothing: progress goes through PollOptions.Progress.
//   - Cancel DELETEs an export.
//   - ReadCapabilities reads the export operations a CapabilityStatement declares (their level,
//     and their parameters from the IG's definitions or the server's own, Resolve), and Check
//     tells a kickoff the server would refuse or whose parameters it does not declare.
//   - NormalizeTime and EscapeTypeFilter prepare _since/_until and _typeFilter values.
//
// Nothing here prints, logs or exits; tools render progress and errors.
package bulk
