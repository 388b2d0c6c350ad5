package synth

import (
	"crypto/sha1"
	"encoding/base64"
	"strconv"
	"strings"
)

// Observation value shapes.
const (
	vQuantity = iota
	vCodeable
	vString
	vInteger
	vBP // blood pressure panel: components, no value
)

// Indexes into vitals.
const (
	vitalWeight = 5
	vitalHeight = 6
	vitalBMI    = 7
)

// obs is one Observation before it is written.
type obs struct {
	cat                   int
	code                  coding
	text, profile         string
	effective, issued     instant
	basedOn, specimen     string
	performer             string
	identifier            string
	kind                  int
	q                     *quant
	v                     int64
	sys, dia              int64
	cc                    coding
	s                     string
	withRange, withInterp bool
}

// Most results are final; a few were amended or corrected after release, as in real feeds.
var (
	obsStatuses      = []string{"final", "amended", "corrected"}
	obsStatusWeights = []int{28, 1, 1}
)

const (
	profileLab    = usCore + "us-core-observation-lab"
	profileVitals = "http://hl7.org/fhir/StructureDefinition/vitalsigns"
	profileBP     = "http://hl7.org/fhir/StructureDefinition/bp"
	profileSmoke  = usCore + "us-core-smokingstatus"
)

// value draws a result: mostly inside the reference range, sometimes anywhere in the plausible range.
func (g *gen) value(q *quant) int64 {
	if q.lo != q.hi && g.r.percent(80) {
		return g.r.between64(q.lo, q.hi)
	}
	return g.r.between64(q.min, q.max)
}

func interpretation(q *quant, v int64) coding {
	switch {
	case v < q.lo:
		return coding{sysInterp, "L", "Low"}
	case v > q.hi:
		return coding{sysInterp, "H", "High"}
	}
	return coding{sysInterp, "N", "Normal"}
}

func (g *gen) observation(e *enc, id string, o *obs) {
	w := &g.w
	g.begin(tObservation, id, g.updated(o.issued), o.profile)
	g.obsOrder(o)
	w.field("code")
	w.cc(o.code, o.text)
	g.resultContext(e, o.effective, o.issued, o.performer)
	g.obsValue(o)
	g.obsNote(o)
	if o.specimen != "" {
		w.field("specimen")
		w.ref("Specimen", o.specimen, "")
	}
	if o.withRange && o.kind == vQuantity && o.q.lo != o.q.hi {
		g.obsRange(o.q)
	}
	if o.kind == vBP {
		g.obsBPComponents(o)
	}
	w.byte('}')
	g.emit(tObservation)
}

// resultContext writes the fields an Observation and a DiagnosticReport share after their code:
// subject, encounter, effectiveDateTime, issued and performer.
func (g *gen) resultContext(e *enc, effective, issued instant, performer string) {
	w := &g.w
	g.subject("subject")
	g.encounterRef(e)
	w.field("effectiveDateTime")
	g.local(effective)
	w.field("issued")
	w.instant(issued, styleMilliZ, 0)
	w.raw(`,"performer":[`)
	w.display(performer)
	w.byte(']')
}

// obsOrder writes the fields before code: identifier, basedOn, status and category.
func (g *gen) obsOrder(o *obs) {
	w := &g.w
	if o.identifier != "" {
		w.raw(`,"identifier":[{"use":"official","system":"urn:oid:2.16.840.1.113883.3.72.5.20","value":"`)
		w.raw(o.identifier)
		w.raw(`"}]`)
	}
	if o.basedOn != "" {
		w.raw(`,"basedOn":[`)
		w.ref("ServiceRequest", o.basedOn, "")
		w.byte(']')
	}
	w.raw(`,"status":"`)
	w.raw(obsStatuses[g.r.weighted(obsStatusWeights)])
	w.byte('"')
	if o.cat != catNone {
		c := obsCategories[o.cat]
		w.raw(`,"category":[`)
		w.cc(c, c.display)
		w.byte(']')
	}
}

// obsValue writes value[x] and, for a quantity with a normal range, its interpretation.
func (g *gen) obsValue(o *obs) {
	w := &g.w
	switch o.kind {
	case vQuantity:
		w.field("valueQuantity")
		w.quantity(o.v, o.q.dec, o.q.unit)
	case vCodeable:
		w.field("valueCodeableConcept")
		w.cc(o.cc, o.cc.display)
	case vString:
		w.strField("valueString", o.s)
	case vInteger:
		w.field("valueInteger")
		w.int(o.v)
	}
	if o.withInterp && o.kind == vQuantity && o.q.lo != o.q.hi {
		i := interpretation(o.q, o.v)
		w.raw(`,"interpretation":[`)
		w.cc(i, i.display)
		w.byte(']')
	}
}

// obsNote writes a performer's remark on some Observations.
func (g *gen) obsNote(o *obs) {
	w, r := &g.w, g.r
	if !r.percent(12) {
		return
	}
	w.raw(`,"note":[{"authorString":`)
	w.str(o.performer)
	w.raw(`,"time":`)
	g.local(o.issued + 10*minute)
	w.raw(`,"text":`)
	w.str(pick(r, noteRemarks))
	w.raw(`}]`)
}

// obsRange writes the normal range of a quantity.
func (g *gen) obsRange(q *quant) {
	w := &g.w
	w.raw(`,"referenceRange":[{"low":`)
	w.quantity(q.lo, q.dec, q.unit)
	w.raw(`,"high":`)
	w.quantity(q.hi, q.dec, q.unit)
	w.raw(`,"type":`)
	w.cc(coding{"http://terminology.hl7.org/CodeSystem/referencerange-meaning", "normal", "Normal Range"}, "")
	w.raw(`,"text":"`)
	w.b = appendFixed(w.b, q.lo, q.dec)
	w.byte('-')
	w.b = appendFixed(w.b, q.hi, q.dec)
	w.byte(' ')
	w.raw(q.unit)
	w.raw(`"}]`)
}

// obsBPComponents writes a blood pressure's systolic and diastolic components.
func (g *gen) obsBPComponents(o *obs) {
	w := &g.w
	w.raw(`,"component":[{"code":`)
	w.cc(coding{sysLOINC, "8480-6", "Systolic blood pressure"}, "Systolic")
	w.raw(`,"valueQuantity":`)
	w.quantity(o.sys, 0, "mm[Hg]")
	w.raw(`},{"code":`)
	w.cc(coding{sysLOINC, "8462-4", "Diastolic blood pressure"}, "Diastolic")
	w.raw(`,"valueQuantity":`)
	w.quantity(o.dia, 0, "mm[Hg]")
	w.raw(`}]`)
}

// observations spends an encounter's quota of Observations, with the orders and reports that real
// results come with.
func (g *gen) observations(e *enc, q int) {
	r := g.r
	for q > 0 {
		cat := r.weighted(catWeights[:])
		if len(g.forcedCats) > 0 {
			cat, g.forcedCats = g.forcedCats[0], g.forcedCats[1:]
		}
		switch cat {
		case catLab:
			q -= g.labOrder(e, q)
		case catVital:
			q -= g.vitalSet(e, q)
		case catImaging:
			q -= g.imagingStudy(e)
		default:
			g.singleObservation(e, cat)
			q--
		}
	}
}

func (g *gen) vitalSet(e *enc, q int) int {
	r := g.r
	n := min(q, r.between(3, len(vitals)))
	at := e.start + instant(r.between64(int64(2*minute), int64(15*minute)))
	nurse := pick(r, practitioners)
	weight := g.pt.weight + r.between64(-25, 25)
	for i := range n {
		v := &vitals[i]
		o := obs{cat: catVital, code: coding{sysLOINC, v.loinc, v.display}, text: v.text, profile: profileVitals,
			effective: at, issued: at + instant(r.between64(int64(minute), int64(20*minute))), performer: nurse,
			kind: vQuantity, q: v, withInterp: r.percent(50)}
		switch i {
		case bpIndex:
			o.kind, o.profile = vBP, profileBP
			o.sys, o.dia = r.between64(104, 138), r.between64(62, 88)
			if r.percent(25) {
				o.sys, o.dia = r.between64(140, 176), r.between64(88, 104)
			}
		case vitalWeight:
			o.v = weight
		case vitalHeight:
			o.v = g.pt.heightMM
		case vitalBMI:
			o.v = weight * 1_000_000 / (g.pt.heightMM * g.pt.heightMM)
		default:
			o.v = g.value(v)
		}
		g.observation(e, g.id(tObservation), &o)
	}
	return n
}

func (g *gen) singleObservation(e *enc, cat int) {
	r := g.r
	at := e.start + instant(r.between64(int64(5*minute), int64(30*minute)))
	o := obs{cat: cat, effective: at, issued: at + instant(r.between64(int64(minute), int64(2*hour))),
		performer: e.practitioner}
	switch cat {
	case catSocial:
		switch r.intn(3) {
		case 0:
			o.code, o.text, o.profile = coding{sysLOINC, "72166-2", "Tobacco smoking status"}, "Tobacco smoking status", profileSmoke
			o.kind, o.cc = vCodeable, pick(r, smokingStatus)
		case 1:
			q := &alcoholPerDay
			o.code, o.text, o.kind, o.q, o.v = coding{sysLOINC, q.loinc, q.display}, q.text, vQuantity, q, g.value(q)
		default:
			o.code, o.text = coding{sysLOINC, "11341-5", "History of Occupation"}, "Occupation"
			o.kind, o.s = vString, pick(r, occupations)
		}
	case catSurvey:
		s := surveys[r.intn(len(surveys))]
		o.code, o.text, o.kind, o.v = coding{sysLOINC, s.loinc, s.display}, s.text, vInteger, int64(r.intn(s.max+1))
	case catExam:
		x := examFindings[r.intn(len(examFindings))]
		o.code, o.text, o.kind, o.s = coding{sysLOINC, x.loinc, x.display}, x.text, vString, pick(r, x.values)
	case catNone:
		q := &uncategorized[r.intn(len(uncategorized))]
		o.code, o.text, o.kind, o.q, o.v = coding{sysLOINC, q.loinc, q.display}, q.text, vQuantity, q, g.value(q)
		o.withRange = true
	}
	g.observation(e, g.id(tObservation), &o)
}

// labOrder writes one ordered panel: ServiceRequest, Specimen, up to q results and the
// DiagnosticReport that groups them. It returns the number of Observations written.
func (g *gen) labOrder(e *enc, q int) int {
	r := g.r
	pn := &labPanels[r.intn(len(labPanels))]
	k := min(q, len(pn.tests))
	srID, spID, drID := g.id(tServiceRequest), g.id(tSpecimen), g.id(tDiagnosticReport)
	ordered := e.start + instant(r.between64(int64(5*minute), int64(40*minute)))
	collected := ordered + instant(r.between64(int64(5*minute), int64(hour)))
	received := collected + instant(r.between64(int64(20*minute), int64(2*hour)))
	resulted := received + instant(r.between64(int64(30*minute), int64(6*hour)))
	g.serviceRequest(e, srID, coding{sysSNOMED, "108252007", "Laboratory procedure"},
		coding{sysLOINC, pn.loinc, pn.display}, pn.text, ordered, spID)
	g.specimen(spID, srID, pn.specimen, collected, received)
	tech := pick(r, practitioners)
	accession := "L" + strconv.FormatInt(int64(collected/second)%1_000_000_000, 10)
	results := make([]string, k)
	values := make([]int64, k)
	abnormal := 0
	for i := range k {
		t := &labTests[pn.tests[i]]
		values[i] = g.value(t)
		if values[i] < t.lo || values[i] > t.hi {
			abnormal++
		}
		o := obs{cat: catLab, code: coding{sysLOINC, t.loinc, t.display}, text: t.text, profile: profileLab,
			effective: collected, issued: resulted, basedOn: srID, specimen: spID, performer: tech,
			identifier: accession + "-" + strconv.Itoa(i+1), kind: vQuantity, q: t, v: values[i],
			withRange: true, withInterp: true}
		results[i] = g.id(tObservation)
		g.observation(e, results[i], &o)
	}
	form := ""
	if len(g.forcedDR) > 0 {
		form, g.forcedDR = g.forcedDR[0], g.forcedDR[1:]
	} else if r.percent(50) {
		form = pick(r, []string{"text/plain", "text/html", "text/plain; charset=utf-8"})
	}
	conclusion := ""
	if abnormal == 0 && r.percent(50) {
		conclusion = "All results within reference ranges."
	}
	d := report{id: drID, basedOn: srID, specimen: spID, category: coding{sysV20074, "LAB", "Laboratory"},
		code: coding{sysLOINC, pn.loinc, pn.display}, text: pn.text, results: results, effective: collected,
		issued: resulted, performer: tech, conclusion: conclusion, form: form}
	if form != "" {
		d.note = g.labReportNote(e, pn, values, collected, received, resulted, tech)
	}
	g.diagnosticReport(e, &d)
	return k
}

// imagingStudy writes an ordered study: ServiceRequest, Procedure, one imaging Observation and a
// radiology DiagnosticReport.
func (g *gen) imagingStudy(e *enc) int {
	r := g.r
	si := r.intn(len(imagingStudies))
	st := &imagingStudies[si]
	srID, obsID, drID := g.id(tServiceRequest), g.id(tObservation), g.id(tDiagnosticReport)
	ordered := e.start + instant(r.between64(int64(5*minute), int64(30*minute)))
	performed := ordered + instant(r.between64(int64(15*minute), int64(3*hour)))
	resulted := performed + instant(r.between64(int64(30*minute), int64(12*hour)))
	g.serviceRequest(e, srID, coding{sysSNOMED, "363679005", "Imaging"}, st.order, st.text, ordered, "")
	g.procedure(e, st.order, coding{sysSNOMED, "103693007", "Diagnostic procedure"}, srID, performed, 30)
	radiologist := pick(r, practitioners)
	impression := pick(r, st.impressions)
	o := obs{cat: catImaging, effective: performed, issued: resulted, basedOn: srID, performer: radiologist}
	if si == 2 { // echocardiogram: ejection fraction
		o.code, o.text, o.kind, o.q, o.v = coding{sysLOINC, lvef.loinc, lvef.display}, lvef.text, vQuantity, &lvef, g.value(&lvef)
		o.withRange, o.withInterp = true, true
	} else {
		o.code, o.text = coding{sysLOINC, "19005-8", "Radiology Imaging study [Impression] (narrative)"}, "Impression"
		o.kind, o.s = vString, impression
	}
	g.observation(e, obsID, &o)
	d := report{id: drID, basedOn: srID, category: coding{sysV20074, "RAD", "Radiology"}, code: st.report,
		text: st.text, results: []string{obsID}, effective: performed, issued: resulted, performer: radiologist,
		conclusion: impression}
	if r.percent(70) {
		d.form = pick(r, []string{"text/plain", "text/html"})
		d.note = g.radiologyNote(e, si, impression, performed, radiologist)
	}
	g.diagnosticReport(e, &d)
	return 1
}

func (g *gen) serviceRequest(e *enc, id string, category, code coding, text string, authored instant, specimen string) {
	w, r := &g.w, g.r
	g.begin(tServiceRequest, id, g.updated(authored), "")
	w.raw(`,"identifier":[{"type":`)
	w.cc(coding{sysV20203, "PLAC", "Placer Identifier"}, "")
	w.raw(`,"system":"urn:oid:2.16.840.1.113883.3.72.5.24","value":"ORD`)
	w.int(int64(authored/second) % 100_000_000)
	w.raw(`"}],"status":"completed","intent":"order","category":[`)
	w.cc(category, category.display)
	w.raw(`],"priority":"`)
	w.raw(pick(r, []string{"routine", "routine", "routine", "urgent", "stat"}))
	w.raw(`","code":`)
	w.cc(code, text)
	g.subject("subject")
	g.encounterRef(e)
	w.field("occurrenceDateTime")
	g.local(authored + 10*minute)
	w.field("authoredOn")
	g.local(authored)
	w.field("requester")
	w.display(e.practitioner)
	if e.acute >= 0 {
		w.raw(`,"reasonReference":[`)
		w.ref("Condition", g.conds[e.acute].id, "")
		w.byte(']')
	}
	if specimen != "" {
		w.raw(`,"specimen":[`)
		w.ref("Specimen", specimen, "")
		w.byte(']')
	}
	w.byte('}')
	g.emit(tServiceRequest)
}

func (g *gen) specimen(id, request string, typ coding, collected, received instant) {
	w, r := &g.w, g.r
	g.begin(tSpecimen, id, g.updated(received), "")
	w.raw(`,"accessionIdentifier":{"system":"urn:oid:2.16.840.1.113883.3.72.5.21","value":"S`)
	w.int(int64(collected/second) % 1_000_000_000)
	w.raw(`"},"status":"available","type":`)
	w.cc(typ, typ.display)
	g.subject("subject")
	w.field("receivedTime")
	w.instant(received, styleZ, 0)
	w.raw(`,"request":[`)
	w.ref("ServiceRequest", request, "")
	w.raw(`],"collection":{"collector":`)
	w.display(pick(r, practitioners))
	w.raw(`,"collectedDateTime":`)
	g.local(collected)
	w.raw(`,"quantity":{"value":`)
	w.int(int64(r.between(2, 10)))
	w.raw(`,"unit":"mL","system":"` + sysUCUM + `","code":"mL"},"method":`)
	w.cc(coding{sysSNOMED, "28520004", "Venipuncture for blood test"}, "")
	w.raw(`,"bodySite":`)
	w.cc(pick(r, []coding{{sysSNOMED, "368208006", "Left upper arm structure"}, {sysSNOMED, "368209003", "Right upper arm structure"}}), "")
	w.raw(`}}`)
	g.emit(tSpecimen)
}

// report is one DiagnosticReport before it is written.
type report struct {
	id, basedOn, specimen string
	category, code        coding
	text                  string
	results               []string
	effective, issued     instant
	performer, conclusion string
	form                  string // presentedForm content type, "" for none
	note                  *note
}

func (g *gen) diagnosticReport(e *enc, d *report) {
	w := &g.w
	profile := usCore + "us-core-diagnosticreport-lab"
	if d.category.code != "LAB" {
		profile = usCore + "us-core-diagnosticreport-note"
	}
	g.begin(tDiagnosticReport, d.id, g.updated(d.issued), profile)
	w.raw(`,"basedOn":[`)
	w.ref("ServiceRequest", d.basedOn, "")
	w.raw(`],"status":"final","category":[`)
	w.cc(d.category, d.category.display)
	w.raw(`],"code":`)
	w.cc(d.code, d.text)
	g.resultContext(e, d.effective, d.issued, d.performer)
	if d.specimen != "" {
		w.raw(`,"specimen":[`)
		w.ref("Specimen", d.specimen, "")
		w.byte(']')
	}
	w.raw(`,"result":[`)
	for i, id := range d.results {
		if i > 0 {
			w.byte(',')
		}
		w.ref("Observation", id, "")
	}
	w.byte(']')
	if d.conclusion != "" {
		w.strField("conclusion", d.conclusion)
	}
	if d.form != "" {
		data := d.note.render(d.form)
		w.raw(`,"presentedForm":[{"contentType":`)
		w.str(d.form)
		w.raw(`,"language":"en-US","url":"Binary/`)
		w.raw(g.binary(d.form, data))
		w.raw(`","size":`)
		w.int(int64(len(data)))
		w.raw(`,"title":`)
		w.str(d.text + " report")
		w.raw(`,"creation":`)
		g.local(d.issued)
		w.raw(`}]`)
	}
	w.byte('}')
	g.emit(tDiagnosticReport)
}

func (g *gen) procedure(e *enc, code, category coding, basedOn string, start instant, minutes int) {
	w, r := &g.w, g.r
	if basedOn == "" {
		p := procedures[r.intn(len(procedures))]
		code, category, minutes = p.code, p.category, p.minutes
		start = e.start + instant(r.between64(int64(10*minute), int64(40*minute)))
	}
	g.begin(tProcedure, g.id(tProcedure), g.updated(start), usCore+"us-core-procedure")
	if basedOn != "" {
		w.raw(`,"basedOn":[`)
		w.ref("ServiceRequest", basedOn, "")
		w.byte(']')
	}
	w.raw(`,"status":"completed","category":`)
	w.cc(category, category.display)
	w.raw(`,"code":`)
	w.cc(code, "")
	g.subject("subject")
	g.encounterRef(e)
	w.raw(`,"performedPeriod":{"start":`)
	g.local(start)
	w.raw(`,"end":`)
	g.local(start + instant(minutes)*minute)
	w.raw(`},"performer":[{"actor":`)
	w.display(e.practitioner)
	w.raw(`}]`)
	if e.acute >= 0 && basedOn == "" {
		w.raw(`,"reasonReference":[`)
		w.ref("Condition", g.conds[e.acute].id, "")
		w.byte(']')
	}
	w.raw(`,"location":`)
	w.display(e.location)
	w.byte('}')
	g.emit(tProcedure)
}

func (g *gen) immunization(e *enc) {
	w, r := &g.w, g.r
	v := vaccines[r.intn(len(vaccines))]
	at := e.start + instant(r.between64(int64(10*minute), int64(50*minute)))
	g.begin(tImmunization, g.id(tImmunization), g.updated(at), usCore+"us-core-immunization")
	w.raw(`,"status":"completed","vaccineCode":`)
	w.cc(coding{sysCVX, v.cvx, v.display}, v.text)
	g.subject("patient")
	g.encounterRef(e)
	w.field("occurrenceDateTime")
	g.local(at)
	w.field("recorded")
	g.local(at + 2*minute)
	w.raw(`,"primarySource":true,"location":`)
	w.display(e.location)
	w.raw(`,"manufacturer":`)
	w.display(v.manufacturer)
	w.raw(`,"lotNumber":"`)
	w.raw(strings.ToUpper(strconv.FormatInt(r.between64(0x10000, 0xfffff), 36)))
	w.raw(`","expirationDate":`)
	w.date(int64(at/day) + r.between64(60, 500))
	w.raw(`,"site":`)
	w.cc(pick(r, []coding{{sysActSite, "LA", "left arm"}, {sysActSite, "RA", "right arm"}}), "")
	w.raw(`,"route":`)
	w.cc(coding{sysRoute, "IM", "Injection, intramuscular"}, "")
	w.raw(`,"doseQuantity":{"value":0.5,"unit":"mL","system":"` + sysUCUM + `","code":"mL"},"performer":[{"function":`)
	w.cc(coding{sysV20443, "AP", "Administering Provider"}, "")
	w.raw(`,"actor":`)
	w.display(pick(r, practitioners))
	w.raw(`}]}`)
	g.emit(tImmunization)
}

// episode writes the EpisodeOfCare that encounters from first on belong to.
func (g *gen) episode(first int) {
	w, r := &g.w, g.r
	e := &g.encs[first]
	last := first
	for last+1 < len(g.encs) && g.encs[last+1].episode == e.episode {
		last++
	}
	end := g.encs[last].end + instant(r.between64(1, 60))*day
	finished := end < windowEnd
	g.begin(tEpisodeOfCare, e.episode, g.updated(min(end, windowEnd-day)), "")
	w.raw(`,"status":"`)
	if finished {
		w.raw("finished")
	} else {
		w.raw("active")
	}
	w.raw(`","type":[`)
	t := pick(r, episodeTypes)
	w.cc(t, t.display)
	w.byte(']')
	if len(g.conds) > 0 {
		w.raw(`,"diagnosis":[{"condition":`)
		w.ref("Condition", g.conds[0].id, "")
		w.raw(`,"rank":1}]`)
	}
	g.subject("patient")
	w.field("managingOrganization")
	w.display(e.org)
	w.raw(`,"period":{"start":`)
	g.local(e.start)
	if finished {
		w.raw(`,"end":`)
		g.local(end)
	}
	w.raw(`},"careManager":`)
	w.display(e.practitioner)
	w.byte('}')
	g.emit(tEpisodeOfCare)
}

// Attachment placements, all seen in real exports (DESIGN.md §9): inline base64 data, an absolute
// URL on the files host, and a URL relative to the FHIR base (Epic).
const (
	attInline = iota
	attAbsolute
	attRelative
)

type attSpec struct {
	mode        int
	contentType string
	hello       bool
}

var contentTypes = []string{"text/plain", "text/plain; charset=utf-8", "text/html", "application/xhtml+xml", "application/pdf"}

// showcaseDocs are patient 0's documents: every placement, every content type, a document with
// two renderings and the "hello world" Binary whose size and SHA-1 tests know.
var showcaseDocs = [][]attSpec{
	{{attRelative, "text/plain", false}},
	{{attRelative, "text/plain; charset=utf-8", false}},
	{{attAbsolute, "text/html", false}},
	{{attInline, "application/xhtml+xml", false}},
	{{attAbsolute, "application/pdf", false}},
	{{attInline, "text/plain; charset=utf-8", false}},
	{{attRelative, "text/html", false}, {attRelative, "application/pdf", false}},
	{{attRelative, "text/plain", true}},
	{{attAbsolute, "text/plain", false}},
	{{attRelative, "application/xhtml+xml", false}},
}

func (g *gen) documents(e *enc, i int) {
	r := g.r
	if g.showcase && i == 0 {
		for _, atts := range showcaseDocs {
			g.document(e, atts)
		}
		return
	}
	if !r.percent(55) && encounterKinds[e.kind].class != classIMP {
		return
	}
	atts := []attSpec{{mode: r.weighted([]int{25, 30, 45}), contentType: contentTypes[r.weighted([]int{30, 20, 25, 10, 15})]}}
	if r.percent(10) {
		second := "application/pdf"
		if atts[0].contentType == second {
			second = "text/html"
		}
		atts = append(atts, attSpec{mode: r.weighted([]int{25, 30, 45}), contentType: second})
	}
	g.document(e, atts)
}

const (
	helloData = "hello world"
	helloSHA1 = "Kq5sNclPz7QV2+lfQIuc6R7oRu0="
)

func (g *gen) document(e *enc, atts []attSpec) {
	w := &g.w
	typ, n := g.documentNote(e, atts)
	created := e.end + instant(g.r.between64(int64(10*minute), int64(2*day)))
	g.begin(tDocumentReference, g.id(tDocumentReference), g.updated(created), usCore+"us-core-documentreference")
	w.raw(`,"identifier":[{"system":"urn:ietf:rfc:3986","value":"urn:oid:1.2.840.114350.1.13.0.1.7.2.727879.`)
	w.int(int64(g.p)*1000 + int64(g.ords[tDocumentReference]))
	w.raw(`"}],"status":"current","docStatus":"final","type":`)
	w.cc(typ, typ.display)
	w.raw(`,"category":[`)
	w.cc(coding{sysDocCategory, "clinical-note", "Clinical Note"}, "")
	w.byte(']')
	g.subject("subject")
	w.field("date")
	w.instant(created, styleMilliZ, 0)
	w.raw(`,"author":[`)
	w.display(e.practitioner)
	w.raw(`],"custodian":`)
	w.display(e.org)
	w.raw(`,"content":[`)
	for i, a := range atts {
		if i > 0 {
			w.byte(',')
		}
		data := []byte(helloData)
		if !a.hello {
			data = n.render(a.contentType)
		}
		g.documentContent(a, data, typ, created)
	}
	w.raw(`],"context":{"encounter":[`)
	w.ref("Encounter", e.id, "")
	w.raw(`],"period":{"start":`)
	g.local(e.start)
	w.raw(`,"end":`)
	g.local(e.end)
	w.raw(`}}}`)
	g.emit(tDocumentReference)
}

// documentNote picks the note type of a DocumentReference and writes the note (nil for the
// hello-world document).
func (g *gen) documentNote(e *enc, atts []attSpec) (coding, *note) {
	r := g.r
	k := encounterKinds[e.kind]
	typ := k.note
	if k.class == classIMP && r.percent(30) {
		typ = noteHP
	}
	// Inline notes stay small, as servers only inline short content; linked notes are 1–20 KB,
	// skewed towards the short end.
	target := 1000 + r.intn(19001)*r.intn(1001)/1000
	for _, a := range atts {
		if a.mode == attInline {
			target = r.between(1000, 6000)
		}
	}
	if atts[0].hello {
		return typ, nil
	}
	return typ, g.clinicalNote(e, typ, target)
}

// documentContent writes one content element: the attachment of data as a says, and its format.
func (g *gen) documentContent(a attSpec, data []byte, typ coding, created instant) {
	w, r := &g.w, g.r
	w.raw(`{"attachment":{"contentType":`)
	w.str(a.contentType)
	w.raw(`,"language":"en-US"`)
	withSize, withHash := r.percent(70), r.percent(40)
	if g.attachmentData(a, data) {
		withSize, withHash = true, true
	}
	if withSize {
		w.raw(`,"size":`)
		w.int(int64(len(data)))
	}
	if withHash {
		sum := sha1.Sum(data)
		w.raw(`,"hash":"`)
		w.b = base64.StdEncoding.AppendEncode(w.b, sum[:])
		w.byte('"')
	}
	w.raw(`,"title":`)
	switch {
	case a.hello:
		w.str("hello.txt")
	case strings.HasPrefix(a.contentType, "application/pdf"):
		w.str(typ.display + " (PDF)")
	default:
		w.str(typ.display)
	}
	w.raw(`,"creation":`)
	g.local(created)
	w.raw(`},"format":`)
	w.coding(coding{sysFormatCode, "urn:ihe:iti:xds:2017:mimeTypeSufficient", "mimeType Sufficient"})
	w.byte('}')
}

// attachmentData writes the data or url of an attachment, keeping linked content as a Binary. It
// reports whether size and hash must be given (the hello-world Binary, which tests check).
func (g *gen) attachmentData(a attSpec, data []byte) bool {
	w := &g.w
	switch a.mode {
	case attInline:
		w.raw(`,"data":"`)
		w.b = base64.StdEncoding.AppendEncode(w.b, data)
		w.byte('"')
		return false
	case attAbsolute:
		w.raw(`,"url":"` + FilesBasePlaceholder + `/Binary/`)
		w.raw(g.binary(a.contentType, data))
		w.byte('"')
		return false
	}
	id := HelloWorldBinaryID
	if a.hello {
		g.sh.bins = append(g.sh.bins, binEntry{id, Binary{ContentType: a.contentType, Data: data}})
	} else {
		id = g.binary(a.contentType, data)
	}
	w.raw(`,"url":"Binary/`)
	w.raw(id)
	w.byte('"')
	return a.hello
}

// Note text.

func (g *gen) age(at instant) int { return int((int64(at/day) - g.pt.birth) * 4 / 1461) }

func (g *gen) localString(t instant) string {
	return string(appendInstant(nil, t, styleOffset, cities[g.pt.city].tz.offsetAt(t)))
}

func (g *gen) noteHeader(e *enc) []string {
	return []string{
		"Patient: " + g.pt.display + "    MRN: " + g.pt.mrn + "    DOB: " + string(appendDate(nil, g.pt.birth)),
		"Date of service: " + g.localString(e.start) + "    Encounter: " + encounterKinds[e.kind].typ.display,
		"Location: " + e.location,
	}
}

// fill replaces {placeholders} in a sentence template with facts about the patient.
func (g *gen) fill(e *enc, tpl string) string {
	if strings.IndexByte(tpl, '{') < 0 {
		return tpl
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(tpl, '{')
		if i < 0 {
			b.WriteString(tpl)
			return b.String()
		}
		j := strings.IndexByte(tpl[i:], '}')
		b.WriteString(tpl[:i])
		key := tpl[i+1 : i+j]
		tpl = tpl[i+j+1:]
		b.WriteString(g.slot(e, key))
	}
}

// slot returns the text of one {key} of a note template ("" for an unknown key).
func (g *gen) slot(e *enc, key string) string {
	if s, ok := g.personSlot(e, key); ok {
		return s
	}
	if s, ok := g.numberSlot(key); ok {
		return s
	}
	switch key {
	case "conds":
		return g.chronicNames()
	case "reason":
		return g.fill(e, pick(g.r, reasons))
	case "symptom":
		return pick(g.r, symptoms)
	case "cc":
		return g.cc
	case "med":
		return g.usualMed()
	}
	return ""
}

// personSlot fills the keys about the patient: name, age, sex and pronoun.
func (g *gen) personSlot(e *enc, key string) (string, bool) {
	switch key {
	case "first":
		return g.pt.given, true
	case "family":
		return g.pt.family, true
	case "an": // the article of the age that follows: "an 86-year-old", "an 18-year-old"
		if a := g.age(e.start); a/10 == 8 || a == 8 || a == 11 || a == 18 {
			return "an", true
		}
		return "a", true
	case "age":
		return strconv.Itoa(g.age(e.start)), true
	case "sex":
		if g.pt.gender == "female" {
			return "woman", true
		}
		return "man", true
	case "Pron", "pron":
		p := "he"
		if g.pt.gender == "female" {
			p = "she"
		}
		if key == "Pron" {
			p = strings.ToUpper(p[:1]) + p[1:]
		}
		return p, true
	}
	return "", false
}

// numberSlot fills the keys that are a random number: durations and vital signs.
func (g *gen) numberSlot(key string) (string, bool) {
	r := g.r
	switch key {
	case "days":
		return strconv.Itoa(r.between(2, 14)), true
	case "months":
		return strconv.Itoa(r.between(2, 12)), true
	case "hours":
		return strconv.Itoa(r.between(4, 9)), true
	case "minutes":
		return strconv.Itoa(5 * r.between(2, 12)), true
	case "sys", "sys2":
		return strconv.Itoa(r.between(112, 158)), true
	case "dia", "dia2":
		return strconv.Itoa(r.between(68, 96)), true
	case "k":
		return string(appendFixed(nil, r.between64(31, 36), 1)), true
	case "temp":
		return string(appendFixed(nil, r.between64(366, 384), 1)), true
	}
	return "", false
}

// chronicNames lists the patient's chronic conditions in prose ("seasonal allergies" for none).
func (g *gen) chronicNames() string {
	var names []string
	for _, c := range g.conds {
		if conditions[c.c].chronic {
			names = append(names, strings.ToLower(conditions[c.c].text))
		}
	}
	switch len(names) {
	case 0:
		return "seasonal allergies"
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// usualMed is the medication of the patient's last-listed condition that has one, else a default.
func (g *gen) usualMed() string {
	m := meds[12].text
	for _, c := range g.conds {
		for _, md := range meds {
			if md.forCondition == c.c {
				m = md.text
			}
		}
	}
	return m
}

// sentences joins n distinct sentences of pool.
func (g *gen) sentences(e *enc, pool []string, n int) string {
	return strings.Join(g.distinct(e, pool, n), " ")
}

// distinct returns n different entries of pool (len(pool) ≤ 64), filled in.
func (g *gen) distinct(e *enc, pool []string, n int) []string {
	n = min(n, len(pool))
	parts := make([]string, 0, n)
	var used uint64
	for len(parts) < n {
		i := g.r.intn(len(pool))
		if used&(1<<i) != 0 {
			continue
		}
		used |= 1 << i
		parts = append(parts, g.fill(e, pool[i]))
	}
	return parts
}

// clinicalNote writes a SOAP-style note of about target bytes: the usual sections, then dated
// course entries until the note is long enough (long inpatient notes are mostly that).
func (g *gen) clinicalNote(e *enc, typ coding, target int) *note {
	r := g.r
	n := &note{title: strings.ToUpper(typ.display), header: g.noteHeader(e)}
	n.header = append(n.header, "Author: "+e.practitioner)
	g.cc = pick(r, symptoms)
	n.add(section{heading: "CHIEF COMPLAINT", paras: []string{strings.ToUpper(g.cc[:1]) + g.cc[1:]}})
	n.add(section{heading: "HISTORY OF PRESENT ILLNESS", paras: []string{
		g.fill(e, pick(r, hpiOpeners)) + " " + g.sentences(e, hpiSentences, r.between(3, 6))}})
	var pmh, medList, plan []string
	for _, c := range g.conds {
		cd := conditions[c.c]
		if !cd.chronic && &g.encs[c.enc] != e {
			continue // other visits' acute problems
		}
		pmh = append(pmh, cd.text+" ("+cd.icd+"), onset "+string(appendDate(nil, int64(c.onset/day))))
		pool := chronicPlans
		if !cd.chronic {
			pool = acutePlans
		}
		plan = append(plan, cd.text+": "+g.fill(e, pick(r, pool)))
		for _, m := range meds {
			if m.forCondition == c.c {
				medList = append(medList, m.text+": "+m.sig)
				break
			}
		}
	}
	if len(pmh) == 0 {
		pmh = []string{"No significant past medical history."}
		plan = []string{"Health maintenance: " + g.fill(e, pick(r, acutePlans))}
	}
	if len(medList) == 0 {
		medList = []string{"No current medications."}
	}
	n.add(section{heading: "PAST MEDICAL HISTORY", items: pmh})
	n.add(section{heading: "MEDICATIONS", items: medList})
	n.add(section{heading: "REVIEW OF SYSTEMS", items: g.distinct(e, rosLines, r.between(3, 6))})
	vitalsLine := "Vitals: BP " + g.fill(e, "{sys}/{dia}") + " mmHg, HR " + strconv.Itoa(r.between(58, 104)) +
		" /min, Temp " + string(appendFixed(nil, r.between64(362, 376), 1)) + " °C, SpO2 " + strconv.Itoa(r.between(93, 100)) + " %, weight " +
		string(appendFixed(nil, g.pt.weight, 1)) + " kg."
	exam := []string{vitalsLine}
	for _, l := range examLines {
		if r.percent(70) {
			exam = append(exam, l)
		}
	}
	n.add(section{heading: "PHYSICAL EXAMINATION", paras: exam})
	n.add(section{heading: "ASSESSMENT AND PLAN", items: plan})
	inpatient := encounterKinds[e.kind].class == classIMP
	// Long notes are mostly dated entries: the hospital course of an admission, or the telephone
	// follow-ups and messages appended to an outpatient note.
	when := e.start
	for k := 1; n.size < target; k++ {
		when += instant(r.between64(1, 3)) * day
		if inpatient {
			n.add(section{heading: "HOSPITAL COURSE, DAY " + strconv.Itoa(k), paras: []string{
				g.sentences(e, courseSentences, r.between(3, 6)), g.sentences(e, courseSentences, r.between(2, 4))}})
			continue
		}
		n.add(section{heading: "FOLLOW-UP " + string(appendDate(nil, int64(when/day))), paras: []string{
			g.sentences(e, followupSentences, r.between(3, 6)), g.sentences(e, hpiSentences, r.between(2, 4))}})
	}
	n.footer = "Electronically signed by " + e.practitioner + " on " + g.localString(e.end+instant(r.between64(int64(10*minute), int64(day))))
	return n
}

func (g *gen) labReportNote(e *enc, pn *panel, values []int64, collected, received, resulted instant, tech string) *note {
	n := &note{title: "LABORATORY REPORT", header: g.noteHeader(e)}
	n.header = append(n.header, "Ordering provider: "+e.practitioner, "Collected: "+g.localString(collected)+
		"    Received: "+g.localString(received))
	rows := [][]string{{"Test", "Result", "Units", "Reference range", "Flag"}}
	for i, v := range values {
		t := &labTests[pn.tests[i]]
		flag := ""
		if c := interpretation(t, v); c.code != "N" {
			flag = c.code
		}
		rows = append(rows, []string{t.text, string(appendFixed(nil, v, t.dec)), t.unit,
			string(appendFixed(nil, t.lo, t.dec)) + "-" + string(appendFixed(nil, t.hi, t.dec)), flag})
	}
	n.add(section{heading: strings.ToUpper(pn.text), table: rows})
	n.add(section{heading: "SPECIMEN", paras: []string{pn.specimen.display + ", " + "venipuncture."}})
	n.footer = "Performed at Harborview Laboratory Services. Verified by " + tech + " on " + g.localString(resulted) + "."
	return n
}

func (g *gen) radiologyNote(e *enc, si int, impression string, performed instant, radiologist string) *note {
	st := &imagingStudies[si]
	r := g.r
	n := &note{title: "RADIOLOGY REPORT", header: g.noteHeader(e)}
	n.add(section{heading: "EXAM", paras: []string{st.text + ", performed " + g.localString(performed)}})
	g.cc = pick(r, symptoms)
	n.add(section{heading: "CLINICAL HISTORY", paras: []string{g.fill(e, "{age}-year-old {sex} with {cc}.")}})
	n.add(section{heading: "TECHNIQUE", paras: []string{st.technique}})
	comparison := "None available."
	if r.percent(40) {
		comparison = "Prior study dated " + string(appendDate(nil, int64(performed/day)-r.between64(90, 900))) + "."
	}
	n.add(section{heading: "COMPARISON", paras: []string{comparison}})
	n.add(section{heading: "FINDINGS", paras: []string{g.sentences(e, st.findings, r.between(3, 5))}})
	n.add(section{heading: "IMPRESSION", paras: []string{impression}})
	n.footer = "Dictated and electronically signed by " + radiologist + "."
	return n
}
