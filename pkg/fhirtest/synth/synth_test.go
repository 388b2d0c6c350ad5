package synth

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	fhirID    = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)
	loincCode = regexp.MustCompile(`^\d+-\d$`)
)

var dataset50 = sync.OnceValue(func() *Dataset { return Generate(Options{Patients: 50, Seed: 1}) })

// listedTypes are the types issue 2 asks the server to export.
var listedTypes = []string{"Patient", "Encounter", "Condition", "Observation", "MedicationRequest",
	"DocumentReference", "DiagnosticReport", "AllergyIntolerance", "Procedure", "ServiceRequest", "Specimen",
	"EpisodeOfCare", "Immunization"}

func decode(t *testing.T, line []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("json.Unmarshal(%.200s): %v", line, err)
	}
	return m
}

func equalDatasets(a, b *Dataset) error {
	if !slices.Equal(a.Types, b.Types) {
		return fmt.Errorf("Types %v != %v", a.Types, b.Types)
	}
	for _, t := range a.Types {
		la, lb := a.Resources[t], b.Resources[t]
		if len(la) != len(lb) {
			return fmt.Errorf("%s: %d lines != %d", t, len(la), len(lb))
		}
		for i := range la {
			if !bytes.Equal(la[i], lb[i]) {
				return fmt.Errorf("%s line %d differs:\n%s\n%s", t, i, la[i], lb[i])
			}
		}
	}
	if len(a.Binaries) != len(b.Binaries) {
		return fmt.Errorf("%d binaries != %d", len(a.Binaries), len(b.Binaries))
	}
	for id, x := range a.Binaries {
		if y, ok := b.Binaries[id]; !ok || x.ContentType != y.ContentType || !bytes.Equal(x.Data, y.Data) {
			return fmt.Errorf("Binary %s differs", id)
		}
	}
	if len(a.Medications) != len(b.Medications) {
		return fmt.Errorf("%d medications != %d", len(a.Medications), len(b.Medications))
	}
	for id, x := range a.Medications {
		if !bytes.Equal(x, b.Medications[id]) {
			return fmt.Errorf("Medication %s differs", id)
		}
	}
	for id, x := range a.Groups {
		if !slices.Equal(x, b.Groups[id]) {
			return fmt.Errorf("Group %s differs", id)
		}
	}
	return nil
}

func TestDeterministic(t *testing.T) {
	opts := Options{Patients: 50, Seed: 1}
	a := dataset50()
	if err := equalDatasets(a, Generate(opts)); err != nil {
		t.Errorf("Generate(%+v) twice: %v", opts, err)
	}
	// The worker count must not show in the output.
	for _, workers := range []int{1, 3} {
		if err := equalDatasets(a, generate(opts, workers)); err != nil {
			t.Errorf("generate(%+v, %d workers): %v", opts, workers, err)
		}
	}
	other := Generate(Options{Patients: 50, Seed: 2})
	if equalDatasets(a, other) == nil {
		t.Errorf("Generate with seeds 1 and 2 gave the same data set")
	}
	if bytes.Equal(a.Resources["Patient"][0], other.Resources["Patient"][0]) {
		t.Errorf("Generate with seeds 1 and 2: first Patient identical")
	}
}

// A data set with more patients extends a smaller one: patient i does not depend on Patients.
func TestPrefix(t *testing.T) {
	small, big := Generate(Options{Patients: 7, Seed: 9}), Generate(Options{Patients: 40, Seed: 9})
	for _, typ := range small.Types {
		s, b := small.Resources[typ], big.Resources[typ]
		if len(b) < len(s) {
			t.Fatalf("%s: %d lines with 40 patients, %d with 7", typ, len(b), len(s))
		}
		for i := range s {
			if !bytes.Equal(s[i], b[i]) {
				t.Fatalf("%s line %d differs between 7 and 40 patients", typ, i)
			}
		}
	}
}

// TestGolden pins the bytes: DESIGN.md §8 compares tool results byte for byte across runs and
// machines, so a Go release or an edit that changes the data set must show up here. After an
// intended change to the generator, update the hash from the failure message.
func TestGolden(t *testing.T) {
	const want = "72516d7e154fb6bd3c8326bdd7254afdc56f4f6b"
	d := Generate(Options{Patients: 3, Seed: 42})
	h := sha1.New()
	writeDataset(h, d)
	if got := fmt.Sprintf("%x", h.Sum(nil)); got != want {
		t.Errorf("Generate(Patients: 3, Seed: 42) hashes to %s, want %s", got, want)
	}
}

func TestResources(t *testing.T) {
	d := dataset50()
	if !slices.Equal(d.Types, listedTypes) {
		t.Errorf("Types = %v, want %v", d.Types, listedTypes)
	}
	lo, hi := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	styles := map[string]bool{}
	idStyles := map[string]bool{}
	for _, typ := range d.Types {
		lines := d.Resources[typ]
		if len(lines) == 0 {
			t.Errorf("no %s resources", typ)
		}
		ids := map[string]bool{}
		for _, line := range lines {
			if !json.Valid(line) {
				t.Fatalf("%s: invalid JSON: %.300s", typ, line)
			}
			var buf bytes.Buffer
			if err := json.Compact(&buf, line); err != nil || !bytes.Equal(buf.Bytes(), line) {
				t.Errorf("%s: not compact JSON: %.200s", typ, line)
			}
			m := decode(t, line)
			if got := m["resourceType"]; got != typ {
				t.Errorf("resourceType = %v in Resources[%q]", got, typ)
			}
			id, _ := m["id"].(string)
			if !fhirID.MatchString(id) {
				t.Errorf("%s id %q is not a FHIR id", typ, id)
			}
			if ids[id] {
				t.Errorf("%s/%s appears twice", typ, id)
			}
			ids[id] = true
			idStyles[idStyle(id)] = true
			meta, _ := m["meta"].(map[string]any)
			lu, _ := meta["lastUpdated"].(string)
			ts, err := time.Parse(time.RFC3339Nano, lu)
			if err != nil {
				t.Errorf("%s/%s meta.lastUpdated = %q: %v", typ, id, lu, err)
				continue
			}
			if ts.Before(lo) || !ts.Before(hi) {
				t.Errorf("%s/%s meta.lastUpdated = %s, want in [%s, %s)", typ, id, lu, lo, hi)
			}
			styles[timeStyle(lu)] = true
		}
	}
	for _, s := range []string{"Z", "fraction Z", "offset", "fraction offset"} {
		if !styles[s] {
			t.Errorf("no meta.lastUpdated in style %q (have %v)", s, styles)
		}
	}
	for _, s := range []string{"uuid", "epic", "numeric"} {
		if !idStyles[s] {
			t.Errorf("no id in style %q (have %v)", s, idStyles)
		}
	}
}

func idStyle(id string) string {
	switch {
	case strings.Count(id, "-") == 4:
		return "uuid"
	case strings.HasPrefix(id, "e"):
		return "epic"
	}
	return "numeric"
}

func timeStyle(s string) string {
	frac := strings.Contains(s, ".")
	switch {
	case strings.HasSuffix(s, "Z") && frac:
		return "fraction Z"
	case strings.HasSuffix(s, "Z"):
		return "Z"
	case frac:
		return "fraction offset"
	}
	return "offset"
}

// walk calls f for every object in v, depth first.
func walk(v any, f func(map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		f(x)
		for _, y := range x {
			walk(y, f)
		}
	case []any:
		for _, y := range x {
			walk(y, f)
		}
	}
}

// patientOf returns the Patient reference of a resource: itself, subject or patient.
func patientOf(m map[string]any) string {
	if m["resourceType"] == "Patient" {
		return "Patient/" + m["id"].(string)
	}
	for _, f := range []string{"subject", "patient"} {
		if r, ok := m[f].(map[string]any); ok {
			s, _ := r["reference"].(string)
			return s
		}
	}
	return ""
}

func TestReferences(t *testing.T) {
	d := dataset50()
	exists := map[string]bool{}
	owner := map[string]string{} // "Encounter/x" → "Patient/y"
	for _, typ := range d.Types {
		for _, line := range d.Resources[typ] {
			m := decode(t, line)
			key := typ + "/" + m["id"].(string)
			exists[key] = true
			owner[key] = patientOf(m)
		}
	}
	for id, res := range d.Medications {
		m := decode(t, res)
		if m["resourceType"] != "Medication" || m["id"] != id {
			t.Errorf("Medications[%q] = %.100s", id, res)
		}
		if _, ok := m["meta"].(map[string]any)["lastUpdated"]; !ok {
			t.Errorf("Medication/%s has no meta.lastUpdated", id)
		}
	}
	if d.Count("Medication") != 0 {
		t.Errorf("Count(Medication) = %d, want 0: Medications are not exported", d.Count("Medication"))
	}
	counts := map[string]int{}
	for _, typ := range d.Types {
		for _, line := range d.Resources[typ] {
			m := decode(t, line)
			self := typ + "/" + m["id"].(string)
			pat := patientOf(m)
			if typ != "Patient" && !exists[pat] {
				t.Errorf("%s: patient %q does not resolve", self, pat)
			}
			contained := map[string]bool{}
			for _, c := range asSlice(m["contained"]) {
				contained["#"+c.(map[string]any)["id"].(string)] = true
			}
			walk(m, func(o map[string]any) {
				ref, ok := o["reference"].(string)
				if !ok {
					return
				}
				counts[strings.SplitN(ref, "/", 2)[0]]++
				switch {
				case strings.HasPrefix(ref, "#"):
					if !contained[ref] {
						t.Errorf("%s: %s names no contained resource", self, ref)
					}
				case strings.HasPrefix(ref, "Medication/"):
					if _, ok := d.Medications[strings.TrimPrefix(ref, "Medication/")]; !ok {
						t.Errorf("%s: %s is not in Medications", self, ref)
					}
				case !exists[ref]:
					t.Errorf("%s: %s does not resolve", self, ref)
				case strings.HasPrefix(ref, "Encounter/") && owner[ref] != pat:
					t.Errorf("%s of %s references %s of %s", self, pat, ref, owner[ref])
				}
			})
		}
	}
	for _, want := range []string{"Patient", "Encounter", "Condition", "Observation", "Medication", "ServiceRequest",
		"Specimen", "EpisodeOfCare"} {
		if counts[want] == 0 {
			t.Errorf("no reference to a %s", want)
		}
	}
	// Resources that happen in an encounter say so.
	for _, typ := range []string{"Condition", "Observation", "MedicationRequest", "DiagnosticReport",
		"AllergyIntolerance", "Procedure", "ServiceRequest", "Immunization"} {
		for _, line := range d.Resources[typ] {
			if m := decode(t, line); m["encounter"] == nil {
				t.Errorf("%s/%s has no encounter", typ, m["id"])
			}
		}
	}
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

func TestObservations(t *testing.T) {
	d := dataset50()
	cats := map[string]int{}
	var total int
	for _, line := range d.Resources["Observation"] {
		total += len(line)
		m := decode(t, line)
		id := m["id"]
		cs := asSlice(m["category"])
		if len(cs) == 0 {
			cats[""]++
		}
		for _, c := range cs {
			for _, cd := range asSlice(c.(map[string]any)["coding"]) {
				cd := cd.(map[string]any)
				if cd["system"] != sysObsCategory {
					t.Errorf("Observation/%s category system = %v", id, cd["system"])
				}
				cats[cd["code"].(string)]++
			}
		}
		code := asSlice(m["code"].(map[string]any)["coding"])[0].(map[string]any)
		if code["system"] != sysLOINC || !loincCode.MatchString(code["code"].(string)) {
			t.Errorf("Observation/%s code = %v, want a LOINC code", id, code)
		}
		if _, err := time.Parse(time.RFC3339, m["effectiveDateTime"].(string)); err != nil {
			t.Errorf("Observation/%s effectiveDateTime: %v", id, err)
		}
		values := 0
		for k := range m {
			if strings.HasPrefix(k, "value") || k == "component" {
				values++
			}
		}
		if values != 1 {
			t.Errorf("Observation/%s has %d values: %s", id, values, line)
		}
		if q, ok := m["valueQuantity"].(map[string]any); ok && (q["system"] != sysUCUM || q["code"] == nil) {
			t.Errorf("Observation/%s valueQuantity = %v, want UCUM", id, q)
		}
	}
	for _, c := range []string{"laboratory", "vital-signs", "social-history", "survey", "imaging", "exam", ""} {
		if cats[c] == 0 {
			t.Errorf("no Observation with category %q (have %v)", c, cats)
		}
	}
	if n := d.Count("Observation"); n < 2000 || n > 4000 {
		t.Errorf("Count(Observation) = %d for 50 patients × 60, want about 3000", n)
	}
	if avg := total / d.Count("Observation"); avg < 1024 || avg > 2048 {
		t.Errorf("average Observation size = %d bytes, want 1–2 KB", avg)
	}
	if cats["laboratory"] < cats["vital-signs"] || cats[""] > total/50 {
		t.Errorf("category mix = %v, want laboratory first and a few without category", cats)
	}
}

func TestMedicationRequests(t *testing.T) {
	shapes := map[string]int{}
	for _, line := range dataset50().Resources["MedicationRequest"] {
		m := decode(t, line)
		switch ref, _ := m["medicationReference"].(map[string]any); {
		case m["medicationCodeableConcept"] != nil:
			shapes["codeable"]++
		case strings.HasPrefix(ref["reference"].(string), "#"):
			shapes["contained"]++
		default:
			shapes["reference"]++
		}
	}
	for _, s := range []string{"codeable", "contained", "reference"} {
		if shapes[s] == 0 {
			t.Errorf("no MedicationRequest with %s medication (have %v)", s, shapes)
		}
	}
}

type attachment struct {
	ContentType string `json:"contentType"`
	Data        []byte `json:"data"`
	URL         string `json:"url"`
	Size        *int   `json:"size"`
	Hash        string `json:"hash"`
}

func attachments(t *testing.T, d *Dataset) (docs [][]attachment, forms []attachment) {
	for _, line := range d.Resources["DocumentReference"] {
		var r struct {
			Content []struct{ Attachment attachment }
		}
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatal(err)
		}
		var as []attachment
		for _, c := range r.Content {
			as = append(as, c.Attachment)
		}
		docs = append(docs, as)
	}
	for _, line := range d.Resources["DiagnosticReport"] {
		var r struct{ PresentedForm []attachment }
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatal(err)
		}
		forms = append(forms, r.PresentedForm...)
	}
	return docs, forms
}

// content returns an attachment's bytes, from data or from the Binary its URL names.
func content(t *testing.T, d *Dataset, a attachment) []byte {
	t.Helper()
	if a.URL == "" {
		return a.Data
	}
	id, ok := strings.CutPrefix(a.URL, "Binary/")
	if !ok {
		id, ok = strings.CutPrefix(a.URL, FilesBasePlaceholder+"/Binary/")
	}
	b, found := d.Binaries[id]
	if !ok || !found {
		t.Fatalf("attachment url %q names no Binary", a.URL)
	}
	if b.ContentType != a.ContentType {
		t.Errorf("Binary %s ContentType = %q, attachment says %q", id, b.ContentType, a.ContentType)
	}
	return b.Data
}

func TestAttachments(t *testing.T) {
	d := dataset50()
	docs, forms := attachments(t, d)
	seen := map[string]bool{}
	referenced := map[string]bool{}
	for _, as := range docs {
		if len(as) == 2 {
			seen["two attachments"] = true
		}
		for _, a := range as {
			switch {
			case a.URL == "":
				seen["inline"] = true
			case strings.HasPrefix(a.URL, FilesBasePlaceholder+"/"):
				seen["absolute"] = true
			case strings.HasPrefix(a.URL, "Binary/"):
				seen["relative"] = true
			default:
				t.Errorf("attachment url %q", a.URL)
			}
			seen[a.ContentType] = true
			data := content(t, d, a)
			referenced[a.URL] = true
			checkContent(t, a.ContentType, data)
			if a.Size != nil && *a.Size != len(data) {
				t.Errorf("attachment %s size = %d, content has %d bytes", a.URL, *a.Size, len(data))
			}
			if sum := sha1.Sum(data); a.Hash != "" && a.Hash != base64.StdEncoding.EncodeToString(sum[:]) {
				t.Errorf("attachment %s hash = %s, content hashes to %x", a.URL, a.Hash, sum)
			}
			if a.URL != "Binary/"+HelloWorldBinaryID && (len(data) < 1000 || len(data) > 30000) {
				t.Errorf("attachment %s (%s) has %d bytes, want a 1–20 KB note", a.URL, a.ContentType, len(data))
			}
		}
	}
	for _, want := range []string{"inline", "absolute", "relative", "two attachments", "text/plain",
		"text/plain; charset=utf-8", "text/html", "application/xhtml+xml", "application/pdf"} {
		if !seen[want] {
			t.Errorf("no DocumentReference attachment: %s", want)
		}
	}
	formTypes := map[string]bool{}
	for _, a := range forms {
		if !strings.HasPrefix(a.URL, "Binary/") {
			t.Errorf("presentedForm url = %q, want Binary/{id}", a.URL)
		}
		referenced[a.URL] = true
		formTypes[a.ContentType] = true
		checkContent(t, a.ContentType, content(t, d, a))
	}
	if !formTypes["text/plain"] || !formTypes["text/html"] {
		t.Errorf("presentedForm content types = %v, want text/plain and text/html", formTypes)
	}
	for id := range d.Binaries {
		if !referenced["Binary/"+id] && !referenced[FilesBasePlaceholder+"/Binary/"+id] {
			t.Errorf("Binary %s is referenced by no attachment", id)
		}
	}
}

// checkContent checks that data is what its MIME type says.
func checkContent(t *testing.T, contentType string, data []byte) {
	t.Helper()
	switch mt, _, _ := strings.Cut(contentType, ";"); mt {
	case "text/plain":
		if bytes.Contains(data, []byte("<")) && bytes.Contains(data, []byte("</")) {
			t.Errorf("text/plain content looks like markup: %.100s", data)
		}
	case "text/html":
		if !bytes.HasPrefix(data, []byte("<!DOCTYPE html>")) || !bytes.Contains(data, []byte("</html>")) {
			t.Errorf("text/html content = %.100q", data)
		}
	case "application/xhtml+xml":
		dec := xml.NewDecoder(bytes.NewReader(data))
		for {
			if _, err := dec.Token(); err == io.EOF {
				break
			} else if err != nil {
				t.Errorf("application/xhtml+xml content is not XML: %v", err)
				break
			}
		}
	case "application/pdf":
		checkPDF(t, data)
	default:
		t.Errorf("unexpected content type %q", contentType)
	}
}

// checkPDF checks the header, the trailer and that every xref offset points at its object.
func checkPDF(t *testing.T, data []byte) {
	t.Helper()
	if !bytes.HasPrefix(data, []byte("%PDF-1.4\n")) || !bytes.HasSuffix(data, []byte("%%EOF\n")) {
		t.Errorf("application/pdf content = %.20q…", data)
		return
	}
	i := bytes.LastIndex(data, []byte("startxref\n"))
	xref, err := strconv.Atoi(string(bytes.TrimSpace(data[i+10 : len(data)-6])))
	if err != nil || !bytes.HasPrefix(data[xref:], []byte("xref\n")) {
		t.Errorf("startxref does not point at the xref table: %v", err)
		return
	}
	lines := strings.Split(string(data[xref:]), "\n")
	for obj, l := range lines[3:] {
		if !strings.HasSuffix(l, " n ") {
			break
		}
		off, _ := strconv.Atoi(l[:10])
		if want := strconv.Itoa(obj+1) + " 0 obj"; !bytes.HasPrefix(data[off:], []byte(want)) {
			t.Errorf("xref entry %d points at %.10q, want %q", obj+1, data[off:], want)
		}
	}
}

func TestHelloWorld(t *testing.T) {
	d := dataset50()
	b, ok := d.Binaries[HelloWorldBinaryID]
	if !ok || string(b.Data) != "hello world" || b.ContentType != "text/plain" {
		t.Fatalf("Binaries[%q] = %q, %v; want text/plain hello world", HelloWorldBinaryID, b.Data, ok)
	}
	sum := sha1.Sum(b.Data)
	if got := base64.StdEncoding.EncodeToString(sum[:]); got != helloSHA1 {
		t.Errorf("sha1(hello world) = %s, want %s", got, helloSHA1)
	}
	docs, _ := attachments(t, d)
	found := false
	for _, as := range docs {
		for _, a := range as {
			if a.URL == "Binary/"+HelloWorldBinaryID {
				found = true
				if a.Size == nil || *a.Size != 11 || a.Hash != helloSHA1 {
					t.Errorf("hello attachment size, hash = %v, %q; want 11, %s", a.Size, a.Hash, helloSHA1)
				}
			}
		}
	}
	if !found {
		t.Errorf("no attachment references Binary/%s", HelloWorldBinaryID)
	}
}

func TestGroups(t *testing.T) {
	tests := []struct {
		patients int
		want     map[string]int
	}{
		{0, map[string]int{GroupAll: 0, GroupCohortA: 0, GroupCohortB: 0, GroupEmpty: 0}},
		{1, map[string]int{GroupAll: 1, GroupCohortA: 1, GroupCohortB: 1, GroupEmpty: 0}},
		{50, map[string]int{GroupAll: 50, GroupCohortA: 25, GroupCohortB: 17, GroupEmpty: 0}},
	}
	for _, tt := range tests {
		d := Generate(Options{Patients: tt.patients, Seed: 1})
		var patients []string
		for _, line := range d.Resources["Patient"] {
			patients = append(patients, decode(t, line)["id"].(string))
		}
		for g, n := range tt.want {
			members, ok := d.Groups[g]
			if !ok || len(members) != n {
				t.Errorf("Patients=%d: len(Groups[%q]) = %d (present %v), want %d", tt.patients, g, len(members), ok, n)
			}
		}
		if !slices.Equal(d.Groups[GroupAll], patients) {
			t.Errorf("Patients=%d: Groups[all] = %v, want the Patient ids in order", tt.patients, d.Groups[GroupAll])
		}
		for i, id := range d.Groups[GroupCohortA] {
			if id != patients[2*i] {
				t.Errorf("Patients=%d: Groups[cohort-a][%d] = %s, want %s", tt.patients, i, id, patients[2*i])
			}
		}
		if !slices.Equal(d.Groups[GroupCohortB], patients[:len(d.Groups[GroupCohortB])]) {
			t.Errorf("Patients=%d: Groups[cohort-b] is not the first patients", tt.patients)
		}
	}
}

// One patient is enough for every type and variant: patient 0 carries them all.
func TestOnePatient(t *testing.T) {
	d := Generate(Options{Patients: 1, Seed: 5})
	if !slices.Equal(d.Types, listedTypes) {
		t.Errorf("Patients=1: Types = %v, want %v", d.Types, listedTypes)
	}
	if _, ok := d.Binaries[HelloWorldBinaryID]; !ok {
		t.Errorf("Patients=1: no hello-world Binary")
	}
	empty := Generate(Options{})
	if len(empty.Types) != 0 || empty.Size() != 0 || len(empty.Binaries) != 0 {
		t.Errorf("Patients=0: Types %v, Size %d, %d binaries; want none", empty.Types, empty.Size(), len(empty.Binaries))
	}
}

func TestSizeAndCount(t *testing.T) {
	d := dataset50()
	var size int64
	total := 0
	for _, typ := range d.Types {
		if got := d.Count(typ); got != len(d.Resources[typ]) {
			t.Errorf("Count(%q) = %d, want %d", typ, got, len(d.Resources[typ]))
		}
		total += d.Count(typ)
		for _, l := range d.Resources[typ] {
			size += int64(len(l))
		}
	}
	if d.Size() != size {
		t.Errorf("Size() = %d, want %d", d.Size(), size)
	}
	if d.Count("Nope") != 0 {
		t.Errorf("Count(Nope) = %d, want 0", d.Count("Nope"))
	}
	var bins int
	for _, b := range d.Binaries {
		bins += len(b.Data)
	}
	counts := make([]string, 0, len(d.Types))
	for _, typ := range d.Types {
		counts = append(counts, typ+"="+strconv.Itoa(d.Count(typ)))
	}
	t.Logf("Patients=50: %d resources, %d bytes; %d binaries, %d bytes; %s", total, size, len(d.Binaries), bins,
		strings.Join(counts, " "))
	if total < 2000 || total > 10000 {
		t.Errorf("Patients=50 gave %d resources, want a few thousand", total)
	}
}

func TestObservationsPerPatient(t *testing.T) {
	for _, per := range []int{5, 200} {
		d := Generate(Options{Patients: 20, Seed: 3, ObservationsPerPatient: per})
		avg := float64(d.Count("Observation")) / 20
		if avg < float64(per)*0.7 || avg > float64(per)*1.4+8 {
			t.Errorf("ObservationsPerPatient=%d: %.1f Observations per patient", per, avg)
		}
	}
}

func TestAppendInstant(t *testing.T) {
	r := newRNG(1, 2)
	for range 2000 {
		at := instant(r.between64(int64(-20000*day), int64(40000*day)))
		off := (r.between(-12*60, 14*60) / 15) * 15
		tt := time.UnixMicro(int64(at)).In(time.FixedZone("", off*60))
		tests := []struct {
			style  int
			layout string
			t      time.Time
		}{
			{styleZ, "2006-01-02T15:04:05Z", tt.UTC()},
			{styleMilliZ, "2006-01-02T15:04:05.000Z", tt.UTC()},
			{styleOffset, "2006-01-02T15:04:05-07:00", tt},
			{styleMicro, "2006-01-02T15:04:05.000000-07:00", tt},
		}
		for _, x := range tests {
			want := x.t.Format(x.layout)
			if off == 0 && (x.style == styleOffset || x.style == styleMicro) {
				// Go writes Z for a zero offset; these styles write +00:00.
				want = x.t.Format(strings.Replace(x.layout, "-07:00", "+00:00", 1))
			}
			if got := string(appendInstant(nil, at, x.style, off)); got != want {
				t.Fatalf("appendInstant(%d, style %d, %d) = %s, want %s", at, x.style, off, got, want)
			}
		}
	}
}

func TestAppendFixed(t *testing.T) {
	tests := []struct {
		v    int64
		dec  int
		want string
	}{{104, 0, "104"}, {93, 2, "0.93"}, {368, 1, "36.8"}, {-15, 1, "-1.5"}, {5, 3, "0.005"}, {1000, 2, "10.00"}}
	for _, tt := range tests {
		if got := string(appendFixed(nil, tt.v, tt.dec)); got != tt.want {
			t.Errorf("appendFixed(%d, %d) = %s, want %s", tt.v, tt.dec, got, tt.want)
		}
	}
}

func TestJSONString(t *testing.T) {
	for _, s := range []string{"plain", `q"uote\back`, "tab\tnl\ncr\r\x01", "Nguyễn °C µg", "bad \xff byte", "<b>&</b>"} {
		var w jw
		w.str(s)
		var got string
		if err := json.Unmarshal(w.b, &got); err != nil {
			t.Errorf("str(%q) = %s: %v", s, w.b, err)
			continue
		}
		if want := strings.ToValidUTF8(s, "\uFFFD"); got != want {
			t.Errorf("str(%q) decodes to %q, want %q", s, got, want)
		}
	}
}

// FuzzGenerate checks that any seed gives valid, deterministic resources.
func FuzzGenerate(f *testing.F) {
	f.Add(int64(0), uint8(1), uint8(0))
	f.Add(int64(-1), uint8(2), uint8(3))
	f.Add(int64(1)<<62, uint8(3), uint8(40))
	f.Fuzz(func(t *testing.T, seed int64, patients, per uint8) {
		opts := Options{Patients: int(patients % 4), Seed: seed, ObservationsPerPatient: int(per)}
		d := Generate(opts)
		if err := equalDatasets(d, Generate(opts)); err != nil {
			t.Fatalf("Generate(%+v) twice: %v", opts, err)
		}
		for _, typ := range d.Types {
			for _, l := range d.Resources[typ] {
				if !json.Valid(l) {
					t.Fatalf("Generate(%+v): invalid %s: %s", opts, typ, l)
				}
			}
		}
	})
}

func BenchmarkGenerate(b *testing.B) {
	for _, workers := range []int{1, 0} {
		name := "1cpu"
		if workers == 0 {
			name = "allcpu"
		}
		b.Run(name, func(b *testing.B) {
			opts := Options{Patients: 200, Seed: 1}
			var d *Dataset
			if workers == 0 {
				d = Generate(opts)
			} else {
				d = generate(opts, workers)
			}
			var bins int64
			for _, x := range d.Binaries {
				bins += int64(len(x.Data))
			}
			b.SetBytes(d.Size()) // resources only; binaries are reported as a metric
			b.ReportMetric(float64(bins)/float64(d.Size()), "binbytes/resbyte")
			cpu := cpuTime()
			for b.Loop() {
				if workers == 0 {
					Generate(opts)
				} else {
					generate(opts, workers)
				}
			}
			// Throughput per CPU-second, GC included: meaningful on a loaded machine.
			if used := cpuTime() - cpu; used > 0 {
				b.ReportMetric(float64(d.Size())*float64(b.N)/used.Seconds()/1e6, "MB/cpu-s")
			}
		})
	}
}

// writeDataset writes the resources, Binaries and Medications of d to h, in a fixed order.
func writeDataset(h io.Writer, d *Dataset) {
	for _, typ := range d.Types {
		for _, l := range d.Resources[typ] {
			h.Write(l)
			h.Write([]byte{'\n'})
		}
	}
	for _, id := range slices.Sorted(maps.Keys(d.Binaries)) {
		fmt.Fprintf(h, "%s %s %d\n", id, d.Binaries[id].ContentType, len(d.Binaries[id].Data))
		h.Write(d.Binaries[id].Data)
	}
	for _, id := range slices.Sorted(maps.Keys(d.Medications)) {
		h.Write(d.Medications[id])
	}
}

// hashDataset hashes every byte of d, Groups included.
func hashDataset(d *Dataset) string {
	h := sha1.New()
	fmt.Fprintf(h, "%v\n", d.Types)
	writeDataset(h, d)
	for _, g := range slices.Sorted(maps.Keys(d.Groups)) {
		fmt.Fprintf(h, "%s %s\n", g, strings.Join(d.Groups[g], ","))
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// TestGoldenSizes pins the whole data set for several seeds, sizes and Observation rates, so a
// refactor of the generator that changes one byte anywhere fails here.
func TestGoldenSizes(t *testing.T) {
	for _, c := range []struct {
		opts Options
		want string
	}{
		{Options{Patients: 0, Seed: 0}, "2a4027e4d18cb53d59476fc83a3d7ce441bf5e17"},
		{Options{Patients: 1, Seed: 0}, "99fbe56bbe206bdf1a2887b6f86bba1de27be003"},
		{Options{Patients: 7, Seed: 1}, "9602eb36a7ad192c35782a9ef36f7d25e62bea8d"},
		{Options{Patients: 40, Seed: 2}, "15c4c10d7529f4c2853971550e60e32ee9cf21a7"},
		{Options{Patients: 40, Seed: -9, ObservationsPerPatient: 5}, "9e019163113845e7f925f2d03c078a0133cf3d4c"},
		{Options{Patients: 120, Seed: 12345, ObservationsPerPatient: 200}, "ceebd7f7dee1ecb9fc8d0d2e5a6caea9607cc8e6"},
	} {
		if got := hashDataset(Generate(c.opts)); got != c.want {
			t.Errorf("Generate(%+v) hashes to %s, want %s", c.opts, got, c.want)
		}
	}
}
