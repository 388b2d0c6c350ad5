package store

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/bulkpipe/bulkpipe/pkg/fhirjson"
	"github.com/bulkpipe/bulkpipe/pkg/ndjson"
	"github.com/tidwall/gjson"
)

// medicationParallel is how many Medications are downloaded at once: the same politeness as
// bulk-fetch's default.
const medicationParallel = 5

// medicationReference returns a MedicationRequest's medicationReference.reference (FHIR R4).
func medicationReference(res []byte) string {
	r := gjson.GetBytes(res, "medicationReference.reference")
	if r.Type != gjson.String {
		return ""
	}
	return r.Str
}

// MedicationID returns the id a reference names: "Medication/123", a versioned
// "Medication/123/_history/2" or an absolute URL ending so. Contained ("#m1"), logical
// ("urn:uuid:…") and other references give "".
func MedicationID(ref string) string {
	if ref == "" || strings.HasPrefix(ref, "#") || strings.HasPrefix(ref, "urn:") {
		return ""
	}
	if u, err := url.Parse(ref); err == nil {
		ref = u.Path
	}
	segs := strings.Split(strings.Trim(ref, "/"), "/")
	if n := len(segs); n >= 4 && segs[n-2] == "_history" {
		segs = segs[:n-2]
	}
	n := len(segs)
	if n < 2 || segs[n-2] != "Medication" || !isFHIRID(segs[n-1]) {
		return ""
	}
	return segs[n-1]
}

// maxID bounds an id: FHIR R4 says 64 characters, but Epic's ids are longer and a Medication
// they name must still be fetched, so the bound only keeps a runaway value out.
const maxID = 1024

// isFHIRID reports a FHIR id ([A-Za-z0-9\-\.]{1,maxID}): a reference whose decoded path ends in
// anything else (a NUL, a space) names no resource we could download.
func isFHIRID(s string) bool {
	if len(s) == 0 || len(s) > maxID {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func (st *Stats) noteMedication(rec record) {
	if st.medRefs == nil {
		st.medRefs, st.medIDs = map[string]string{}, map[string]bool{}
	}
	if rec.table == "medication" {
		st.medIDs[rec.id] = true
	}
	if id := MedicationID(rec.medRef); id != "" {
		if _, ok := st.medRefs[id]; !ok {
			st.medRefs[id] = rec.medRef
		}
	}
}

// fetchMedications downloads the referenced Medications the folder and the store lack, and stages
// them in id order. A failed download is reported and counted, not fatal: the rest of the folder
// is good, and a rerun tries again (the Medication is still missing then).
func fetchMedications(ctx context.Context, b Batch, opts Options, st *Stats, warn func(string)) error {
	var ids []string
	for id := range st.medRefs {
		if !st.medIDs[id] {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	have, err := b.Existing(ctx, "medication", ids)
	if err != nil {
		return err
	}
	ids = slices.DeleteFunc(ids, func(id string) bool { return slices.Contains(have, id) })
	type result struct {
		res      []byte
		url, err string
	}
	results := make([]result, len(ids))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(medicationParallel, len(ids)) {
		wg.Go(func() {
			for i := range next {
				ref := st.medRefs[ids[i]]
				res, u, err := opts.Medications.Medication(ctx, ref)
				switch {
				case err != nil:
					results[i].err = err.Error()
				case fhirjson.ResourceType(res) != "Medication" || fhirjson.ID(res) != ids[i]:
					results[i].err = fmt.Sprintf("the answer is not Medication/%s", ids[i])
				default:
					// The same edge as a file's lines: DuckDB would store bad text as NULL.
					if err := ndjson.CheckText(res); err != nil {
						if !opts.ReplaceInvalidText {
							results[i].err = fmt.Sprintf("the answer is not Unicode text: %v", err)
							break
						}
						res, _ = ndjson.FixText(res)
					}
					results[i] = result{res: res, url: u}
				}
			}
		})
	}
	for i := range ids {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	for i, r := range results {
		if r.err != "" {
			st.MedicationsFailed++
			warn(fmt.Sprintf("Medication/%s (referenced by MedicationRequests): %s", ids[i], r.err))
			continue
		}
		if err := b.Add("medication", ids[i], r.res, r.url); err != nil {
			return err
		}
		st.MedicationsFetched++
		st.Rows++
		st.Tables["medication"]++
	}
	return nil
}
