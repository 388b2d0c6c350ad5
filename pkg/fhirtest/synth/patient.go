package synth

import (
	"strconv"
)

// The data set spans five years of activity, so _since and _until windows select real subsets.
const (
	windowStart = instant(18262) * day // 2020-01-01T00:00:00Z
	windowEnd   = instant(20089) * day // 2025-01-01T00:00:00Z
)

// shard is the output of one worker: the resources of a contiguous range of patients, stored in
// large arena chunks so that a gigabyte of lines costs a few hundred allocations.
type shard struct {
	res   [numTypes][][]byte
	bins  []binEntry
	arena []byte
}

type binEntry struct {
	id  string
	bin Binary
}

const (
	arenaChunk = 4 << 20
	arenaSlack = 64 << 10 // free space below which a new chunk starts: larger than almost every line
)

// next returns an empty buffer at the free end of the arena: resources are written in place.
func (s *shard) next() []byte {
	if cap(s.arena)-len(s.arena) < arenaSlack {
		s.arena = make([]byte, 0, arenaChunk)
	}
	return s.arena[len(s.arena):len(s.arena)]
}

// commit ends the line b written into a buffer from next and returns it, capped so that a caller's
// append cannot overwrite the next line. A line that outgrew the free space was moved by append
// to an array of its own, which it keeps.
func (s *shard) commit(b []byte) []byte {
	if cap(b) == cap(s.arena)-len(s.arena) { // same array: append never reallocates to an equal cap
		s.arena = s.arena[:len(s.arena)+len(b)]
	}
	return b[:len(b):len(b)]
}

// keep copies b into the arena.
func (s *shard) keep(b []byte) []byte {
	return s.commit(append(s.next(), b...))
}

// gen writes one patient's record. Everything a patient's resources contain comes from that
// patient's own random stream and ids are functions of (type, patient, ordinal), so patients can
// be generated in parallel and patient i is the same whatever the number of patients.
type gen struct {
	key     uint64
	long    bool // Options.LongIDs
	r       *rng
	p       int
	ords    [numTypes]int
	binOrd  int
	sh      *shard
	w       jw
	medIDs  []string
	obsPer  int
	scratch []byte

	// showcase is set for patient 0, which carries every variant the tests and the server's
	// filters rely on, so that even a one-patient data set is complete.
	showcase   bool
	forcedCats []int
	forcedMRs  []int
	forcedDR   []string

	pt    patientFacts
	encs  []enc
	conds []condFact
	cc    string // chief complaint of the note being written
}

type patientFacts struct {
	id, given, middle, family, display, gender, mrn string
	birth                                           int64 // days since epoch
	city                                            int
	street, phone                                   string
	heightMM, weight                                int64 // mm; kg × 10
}

type enc struct {
	id              string
	kind            int
	start, end      instant
	episode         string
	practitioner    string
	org, location   string
	acute           int // index in gen.conds of this encounter's diagnosis, -1 none
	hasProcedure    bool
	hasImmunization bool
}

type condFact struct {
	id    string
	c     int // index into conditions
	enc   int // index into gen.encs where it was recorded
	onset instant
}

func (g *gen) id(t int) string {
	id := idOf(g.key, g.long, t, g.p, g.ords[t])
	g.ords[t]++
	return id
}

// emit stores the resource being written as one line of type t.
func (g *gen) emit(t int) {
	g.sh.res[t] = append(g.sh.res[t], g.sh.commit(g.w.b))
	g.w.b = g.sh.next()
}

func (g *gen) binary(contentType string, data []byte) string {
	id := idOf(g.key, g.long, tBinary, g.p, g.binOrd)
	g.binOrd++
	g.sh.bins = append(g.sh.bins, binEntry{id, Binary{ContentType: contentType, Data: data}})
	return id
}

// updated returns a meta.lastUpdated for a resource about an event at t: usually soon after,
// sometimes much later (an amendment), never past the end of the window.
func (g *gen) updated(t instant) instant {
	var d instant
	if g.r.percent(90) {
		d = instant(g.r.between64(int64(minute), int64(3*day)))
	} else {
		d = instant(g.r.between64(int64(day), int64(400*day)))
	}
	return min(max(t, windowStart)+d, windowEnd-instant(g.r.between64(1, int64(hour))))
}

// lastUpdated offsets: servers report UTC or their own zone; the instant is what counts.
var (
	serverOffsets  = []int{-300, -240, 0, 60, 120, 330}
	styleWeights   = []int{styleZ: 45, styleMilliZ: 25, styleOffset: 15, styleMicro: 15}
	versionWeights = []int{80, 12, 5, 3}
)

// begin opens a resource: resourceType, id and meta. profile may be empty.
func (g *gen) begin(t int, id string, upd instant, profile string) {
	w := &g.w
	w.raw(`{"resourceType":"`)
	w.raw(typeNames[t])
	w.raw(`","id":"`)
	w.raw(id)
	w.raw(`","meta":{"versionId":"`)
	w.int(int64(1 + g.r.weighted(versionWeights)))
	w.raw(`","lastUpdated":`)
	w.instant(upd, g.r.weighted(styleWeights), pick(g.r, serverOffsets))
	if profile != "" && g.r.percent(80) {
		w.raw(`,"profile":["`)
		w.raw(profile)
		w.raw(`"]`)
	}
	w.byte('}')
}

// local writes t as a dateTime in the patient's zone, as clinical systems record events.
func (g *gen) local(t instant) {
	z := cities[g.pt.city].tz
	g.w.instant(t, styleOffset, z.offsetAt(t))
}

func (g *gen) subject(field string) {
	g.w.field(field)
	g.w.ref("Patient", g.pt.id, g.pt.display)
}

func (g *gen) encounterRef(e *enc) {
	g.w.field("encounter")
	g.w.ref("Encounter", e.id, "")
}

// run writes the whole record of patient g.p.
func (g *gen) run() {
	r := g.r
	g.facts()
	g.plan()

	g.patient()
	for i := range g.conds {
		g.condition(&g.conds[i])
	}
	g.allergies()
	g.medications()

	quota := g.obsPer * r.between(50, 150) / 100
	if g.showcase {
		quota = max(quota, 40)
	}
	for i := range g.encs {
		e := &g.encs[i]
		g.encounter(i)
		q := quota / len(g.encs)
		if i < quota%len(g.encs) {
			q++
		}
		g.observations(e, q)
		if e.hasProcedure {
			g.procedure(e, coding{}, coding{}, "", 0, 0)
		}
		if e.hasImmunization {
			g.immunization(e)
		}
		g.documents(e, i)
	}
}

func (g *gen) facts() {
	r, pt := g.r, &g.pt
	pt.id = idOf(g.key, g.long, tPatient, g.p, 0)
	g.ords[tPatient] = 1
	if r.percent(50) {
		pt.gender, pt.given = "female", pick(r, givenFemale)
		pt.heightMM = r.between64(1500, 1780)
	} else {
		pt.gender, pt.given = "male", pick(r, givenMale)
		pt.heightMM = r.between64(1620, 1950)
	}
	pt.middle = pick(r, middleInitials)
	pt.family = pick(r, families)
	pt.display = pt.given + " " + pt.middle + " " + pt.family
	// Adults born 1932–2001: the clinical content below is adult medicine.
	pt.birth = r.between64(-13880, 11322)
	bmi := r.between64(190, 380) // kg/m² × 10
	pt.weight = bmi * pt.heightMM * pt.heightMM / 1_000_000
	pt.mrn = strconv.Itoa(10_000_000 + g.p)
	pt.city = r.intn(len(cities))
	pt.street = strconv.Itoa(r.between(1, 9899)) + " " + pick(r, streets)
	pt.phone = "555-" + strconv.Itoa(r.between(200, 999)) + "-" + strconv.Itoa(r.between(1000, 9999))
}

// plan decides encounters, episodes and conditions before anything is written, so that resources
// written first can reference those written later.
func (g *gen) plan() {
	r := g.r
	n := r.between(3, 9)
	if g.showcase {
		n = 8
	}
	starts := g.encounterDays(n)
	kindWeights := make([]int, len(encounterKinds))
	for i, k := range encounterKinds {
		kindWeights[i] = k.weight
	}
	g.encs = make([]enc, n)
	for i := range g.encs {
		g.planEncounter(i, starts[i], kindWeights)
	}
	if r.percent(35) || g.showcase {
		first := r.intn(n)
		last := first + r.intn(n-first)
		id := g.id(tEpisodeOfCare)
		for i := first; i <= last; i++ {
			g.encs[i].episode = id
		}
	}
	g.planConditions()
	if g.showcase {
		g.forcedCats = []int{catLab, catVital, catLab, catSocial, catSurvey, catImaging, catExam, catNone}
		g.forcedMRs = []int{mrCodeable, mrReference, mrContained}
		g.forcedDR = []string{"text/plain", "text/html"}
	}
}

// encounterDays draws the days of n encounters, in order.
func (g *gen) encounterDays(n int) []instant {
	starts := make([]instant, n)
	for i := range starts {
		d := g.r.between64(int64(windowStart/day), int64(windowEnd/day)-10)
		starts[i] = instant(d) * day
	}
	for i := 1; i < n; i++ { // insertion sort: a handful of values
		for j := i; j > 0 && starts[j] < starts[j-1]; j-- {
			starts[j], starts[j-1] = starts[j-1], starts[j]
		}
	}
	return starts
}

// planEncounter draws the i-th encounter, on the day that starts at dayStart.
func (g *gen) planEncounter(i int, dayStart instant, kindWeights []int) {
	r := g.r
	e := &g.encs[i]
	e.id = g.id(tEncounter)
	e.kind = r.weighted(kindWeights)
	if g.showcase && i < len(encounterKinds) {
		e.kind = i
	}
	k := encounterKinds[e.kind]
	// Clinic hours in the patient's zone; emergencies at any hour.
	local := instant(r.between64(int64(7*hour), int64(18*hour)))
	if k.class == classEMER || k.class == classIMP {
		local = instant(r.between64(0, int64(day-minute)))
	}
	z := cities[g.pt.city].tz
	e.start = dayStart + local - instant(z.offsetAt(dayStart))*minute + instant(r.between64(0, int64(second)-1))
	e.end = e.start + instant(r.between(k.minMin, k.maxM))*minute
	e.practitioner = pick(r, practitioners)
	e.org = pick(r, organizations[:4])
	e.location = pick(r, locations[k.class])
	e.acute = -1
	e.hasProcedure = r.percent(25) || (g.showcase && i == 0)
	e.hasImmunization = (k.class == classAMB && r.percent(20)) || (g.showcase && i == 0)
}

// planConditions draws chronic problems, recorded at the first encounter, and acute diagnoses
// at their own encounter.
func (g *gen) planConditions() {
	r := g.r
	chronic := r.between(0, 3)
	if g.showcase {
		chronic = 3
	}
	var used uint64
	for range chronic {
		c := r.intn(11) // the chronic part of the catalog
		if used&(1<<c) != 0 {
			continue
		}
		used |= 1 << c
		onset := g.encs[0].start - instant(r.between64(30, 3650))*day
		g.conds = append(g.conds, condFact{id: g.id(tCondition), c: c, enc: 0, onset: onset})
	}
	for i := range g.encs {
		if r.percent(30) || (g.showcase && i == 1) {
			c := 11 + r.intn(len(conditions)-11)
			g.encs[i].acute = len(g.conds)
			onset := g.encs[i].start - instant(r.between64(1, 10))*day
			g.conds = append(g.conds, condFact{id: g.id(tCondition), c: c, enc: i, onset: onset})
		}
	}
}

func (g *gen) patient() {
	w, r, pt := &g.w, g.r, &g.pt
	g.begin(tPatient, pt.id, g.updated(g.encs[0].start-instant(r.between64(1, 30))*day), usCore+"us-core-patient")
	w.raw(`,"text":{"status":"generated","div":`)
	div := append(g.scratch[:0], `<div xmlns="http://www.w3.org/1999/xhtml"><p><b>`...)
	div = appendEscapedHTML(div, pt.display)
	div = append(div, "</b>, "...)
	div = append(div, pt.gender...)
	div = append(div, ", born "...)
	div = appendDate(div, pt.birth)
	div = append(div, ". MRN "...)
	div = append(div, pt.mrn...)
	div = append(div, ".</p></div>"...)
	w.str(string(div))
	g.scratch = div
	w.byte('}')
	if r.percent(70) {
		race := pick(r, races)
		w.raw(`,"extension":[{"extension":[{"url":"ombCategory","valueCoding":`)
		w.coding(race)
		w.raw(`},{"url":"text","valueString":`)
		w.str(race.display)
		w.raw(`}],"url":"` + usCore + `us-core-race"}]`)
	}
	w.raw(`,"identifier":[{"use":"usual","type":`)
	w.cc(coding{sysV20203, "MR", "Medical record number"}, "MRN")
	w.raw(`,"system":"urn:oid:2.16.840.1.113883.19.5","value":"`)
	w.raw(pt.mrn)
	w.raw(`"}],"active":true,"name":[{"use":"official","text":`)
	w.str(pt.display)
	w.raw(`,"family":`)
	w.str(pt.family)
	w.raw(`,"given":[`)
	w.str(pt.given)
	w.byte(',')
	w.str(pt.middle)
	w.raw(`]}],"telecom":[{"system":"phone","value":"`)
	w.raw(pt.phone)
	w.raw(`","use":"home"}`)
	if r.percent(60) {
		w.raw(`,{"system":"email","value":"patient`)
		w.raw(pt.mrn)
		w.raw(`@example.org"}`)
	}
	w.raw(`],"gender":"`)
	w.raw(pt.gender)
	w.raw(`","birthDate":`)
	w.date(pt.birth)
	if r.percent(3) {
		w.field("deceasedDateTime")
		g.local(g.encs[len(g.encs)-1].end + instant(r.between64(1, 5))*day)
	}
	c := cities[pt.city]
	w.raw(`,"address":[{"use":"home","line":[`)
	w.str(pt.street)
	w.raw(`],"city":`)
	w.str(c.city)
	w.raw(`,"state":"`)
	w.raw(c.state)
	w.raw(`","postalCode":"`)
	w.raw(c.zip)
	w.raw(strconv.Itoa(r.between(10, 99)))
	w.raw(`","country":"US"}],"maritalStatus":`)
	m := pick(r, maritalStatuses)
	w.cc(m, m.display)
	lang := languages[0]
	if r.percent(15) {
		lang = pick(r, languages[1:])
	}
	w.raw(`,"communication":[{"language":`)
	w.cc(lang, lang.display)
	w.raw(`,"preferred":true}]}`)
	g.emit(tPatient)
}

func (g *gen) condition(cf *condFact) {
	w, r := &g.w, g.r
	c := conditions[cf.c]
	e := &g.encs[cf.enc]
	profile := usCore + "us-core-condition-problems-health-concerns"
	category := coding{sysCondCategory, "problem-list-item", "Problem List Item"}
	if !c.chronic {
		profile = usCore + "us-core-condition-encounter-diagnosis"
		category = coding{sysCondCategory, "encounter-diagnosis", "Encounter Diagnosis"}
	}
	g.begin(tCondition, cf.id, g.updated(e.start), profile)
	abated := !c.chronic && e.start+14*day < windowEnd
	w.raw(`,"clinicalStatus":`)
	if abated {
		w.cc(coding{sysCondClinical, "resolved", "Resolved"}, "")
	} else {
		w.cc(coding{sysCondClinical, "active", "Active"}, "")
	}
	w.raw(`,"verificationStatus":`)
	w.cc(coding{sysCondVer, "confirmed", "Confirmed"}, "")
	w.raw(`,"category":[`)
	w.cc(category, "")
	w.raw(`],"code":{"coding":[`)
	w.coding(coding{sysSNOMED, c.snomed, c.display})
	w.byte(',')
	w.coding(coding{sysICD10, c.icd, c.icdDisplay})
	w.raw(`],"text":`)
	w.str(c.text)
	w.byte('}')
	g.subject("subject")
	g.encounterRef(e)
	w.field("onsetDateTime")
	g.local(cf.onset)
	if abated {
		w.field("abatementDateTime")
		g.local(e.start + instant(r.between64(7, 14))*day)
	}
	w.field("recordedDate")
	g.local(e.start + instant(r.between64(int64(minute), int64(e.end-e.start))))
	w.field("recorder")
	w.display(e.practitioner)
	w.byte('}')
	g.emit(tCondition)
}

func (g *gen) allergies() {
	w, r := &g.w, g.r
	n := r.weighted([]int{55, 30, 15})
	if g.showcase {
		n = 2
	}
	var used uint64
	for range n {
		i := r.intn(len(allergies))
		if used&(1<<i) != 0 {
			continue
		}
		used |= 1 << i
		a := allergies[i]
		e := &g.encs[r.intn(len(g.encs))]
		g.begin(tAllergyIntolerance, g.id(tAllergyIntolerance), g.updated(e.start), usCore+"us-core-allergyintolerance")
		w.raw(`,"clinicalStatus":`)
		w.cc(coding{sysAllergyClin, "active", "Active"}, "")
		w.raw(`,"verificationStatus":`)
		w.cc(coding{sysAllergyVer, "confirmed", "Confirmed"}, "")
		w.raw(`,"type":"allergy","category":["`)
		w.raw(a.category)
		w.raw(`"],"criticality":"`)
		w.raw(pick(r, []string{"low", "high", "unable-to-assess"}))
		w.raw(`","code":{"coding":[`)
		w.coding(a.code)
		if a.rxnorm.code != "" {
			w.byte(',')
			w.coding(a.rxnorm)
		}
		w.raw(`],"text":`)
		w.str(a.code.display)
		w.byte('}')
		g.subject("patient")
		g.encounterRef(e)
		w.field("onsetDateTime")
		w.date(int64(e.start/day) - r.between64(200, 9000))
		w.field("recordedDate")
		g.local(e.start + 5*minute)
		w.field("recorder")
		w.display(e.practitioner)
		w.raw(`,"reaction":[{"manifestation":[`)
		m := pick(r, reactions)
		w.cc(m, m.display)
		w.raw(`],"severity":"`)
		w.raw(pick(r, []string{"mild", "moderate", "severe"}))
		w.raw(`"}]}`)
		g.emit(tAllergyIntolerance)
	}
}

// MedicationRequest.medication[x] shapes, all seen in real exports.
const (
	mrCodeable  = iota // medicationCodeableConcept
	mrReference        // medicationReference to Medication/{id}, served but not exported
	mrContained        // medicationReference to a contained Medication ("#med1")
)

// medications writes a prescription per treatable condition, refills, and as-needed analgesics.
func (g *gen) medications() {
	r := g.r
	for i := range g.conds {
		cf := &g.conds[i]
		for m := range meds {
			if meds[m].forCondition != cf.c || r.percent(30) {
				continue
			}
			e := &g.encs[cf.enc]
			active := conditions[cf.c].chronic
			g.medicationRequest(e, m, cf.id, active)
			if active && cf.enc+1 < len(g.encs) && r.percent(40) {
				g.medicationRequest(&g.encs[cf.enc+1+r.intn(len(g.encs)-cf.enc-1)], m, cf.id, true)
			}
			break
		}
	}
	for i := range g.encs {
		if r.percent(15) || len(g.forcedMRs) > 0 {
			g.medicationRequest(&g.encs[i], 12, "", false) // acetaminophen as needed
		}
	}
}

func (g *gen) medicationRequest(e *enc, m int, reason string, active bool) {
	w, r := &g.w, g.r
	md := meds[m]
	mode := r.weighted([]int{60, 35, 5})
	if len(g.forcedMRs) > 0 {
		mode, g.forcedMRs = g.forcedMRs[0], g.forcedMRs[1:]
	}
	authored := e.start + instant(r.between64(int64(minute), int64(e.end-e.start)))
	g.begin(tMedicationRequest, g.id(tMedicationRequest), g.updated(authored), usCore+"us-core-medicationrequest")
	if mode == mrContained {
		w.raw(`,"contained":[{"resourceType":"Medication","id":"med1","code":`)
		w.cc(coding{sysRxNorm, md.rxnorm, md.display}, md.text)
		w.raw(`,"form":`)
		w.cc(md.form, "")
		w.raw(`}]`)
	}
	w.raw(`,"identifier":[{"use":"official","system":"urn:oid:2.16.840.1.113883.3.7418.7.3","value":"RX`)
	w.int(int64(100000 + r.intn(900000)))
	status := "completed"
	if active {
		status = pick(r, []string{"active", "active", "active", "stopped"})
	}
	w.raw(`"}],"status":"`)
	w.raw(status)
	w.raw(`","intent":"order","category":[`)
	if encounterKinds[e.kind].class == classIMP {
		w.cc(coding{sysMedReqCat, "inpatient", "Inpatient"}, "")
	} else {
		w.cc(coding{sysMedReqCat, "outpatient", "Outpatient"}, "")
	}
	w.byte(']')
	g.mrMedication(mode, m)
	g.subject("subject")
	g.encounterRef(e)
	w.field("authoredOn")
	g.local(authored)
	w.field("requester")
	w.display(e.practitioner)
	if reason != "" {
		w.raw(`,"reasonReference":[`)
		w.ref("Condition", reason, "")
		w.byte(']')
	}
	g.mrDosage(&md)
	g.mrDispense(&md)
	g.emit(tMedicationRequest)
}

// mrMedication writes a MedicationRequest's medication[x] in one of the three ways servers do.
func (g *gen) mrMedication(mode, m int) {
	w, md := &g.w, &meds[m]
	switch mode {
	case mrCodeable:
		w.field("medicationCodeableConcept")
		w.cc(coding{sysRxNorm, md.rxnorm, md.display}, md.text)
	case mrReference:
		w.field("medicationReference")
		w.ref("Medication", g.medIDs[m], md.text)
	case mrContained:
		w.raw(`,"medicationReference":{"reference":"#med1","display":`)
		w.str(md.text)
		w.byte('}')
	}
}

// mrDosage writes the dosage instruction of md, up to its dose.
func (g *gen) mrDosage(md *med) {
	w, r := &g.w, g.r
	w.raw(`,"dosageInstruction":[{"sequence":1,"text":`)
	w.str(md.sig)
	w.raw(`,"timing":{"repeat":{"frequency":`)
	w.int(int64(md.perDay))
	w.raw(`,"period":1,"periodUnit":"d"}}`)
	if md.perDay >= 4 {
		w.raw(`,"asNeededBoolean":true`)
	}
	w.raw(`,"route":`)
	if md.form == formInhaler {
		w.cc(coding{sysSNOMED, "447694001", "Respiratory tract route (qualifier value)"}, "")
	} else {
		w.cc(coding{sysSNOMED, "26643006", "Oral route (qualifier value)"}, "")
	}
	w.raw(`,"doseAndRate":[{"type":`)
	w.cc(coding{sysDoseRateType, "ordered", "Ordered"}, "")
	w.raw(`,"doseQuantity":{"value":`)
	w.int(int64(1 + r.intn(2)))
	w.raw(`,"unit":"`)
	w.raw(md.doseUnit)
	w.raw(`","system":"` + sysDrugForm + `","code":"`)
	w.raw(md.doseCode)
	w.raw(`"}}]}]`)
}

// mrDispense writes the dispense request of md and closes the resource.
func (g *gen) mrDispense(md *med) {
	w, r := &g.w, g.r
	w.raw(`,"dispenseRequest":{"numberOfRepeatsAllowed":`)
	w.int(int64(r.intn(4)))
	w.raw(`,"quantity":{"value":`)
	w.int(int64(md.perDay * md.supply))
	w.raw(`,"unit":"`)
	w.raw(md.doseUnit)
	w.raw(`"},"expectedSupplyDuration":{"value":`)
	w.int(int64(md.supply))
	w.raw(`,"unit":"days","system":"` + sysUCUM + `","code":"d"}}}`)
}

func (g *gen) encounter(i int) {
	w := &g.w
	e := &g.encs[i]
	k := encounterKinds[e.kind]
	g.begin(tEncounter, e.id, g.updated(e.end), usCore+"us-core-encounter")
	w.raw(`,"identifier":[{"use":"official","system":"urn:oid:1.2.840.114350.1.13.0.1.7.3.698084.8","value":"V`)
	w.int(int64(10_000_000+g.p)*100 + int64(i))
	status := "finished"
	if e.end > windowEnd {
		status = "in-progress"
	}
	w.raw(`"}],"status":"`)
	w.raw(status)
	w.raw(`","class":`)
	w.coding(k.class)
	w.raw(`,"type":[`)
	w.cc(k.typ, "")
	w.byte(']')
	g.subject("subject")
	if e.episode != "" {
		w.raw(`,"episodeOfCare":[`)
		w.ref("EpisodeOfCare", e.episode, "")
		w.byte(']')
	}
	w.raw(`,"participant":[{"type":[`)
	w.cc(coding{sysParticipant, "PPRF", "primary performer"}, "")
	w.raw(`],"individual":`)
	w.display(e.practitioner)
	w.raw(`}],"period":{"start":`)
	g.local(e.start)
	if status == "finished" {
		w.raw(`,"end":`)
		g.local(e.end)
	}
	w.byte('}')
	if e.acute >= 0 {
		cf := &g.conds[e.acute]
		c := conditions[cf.c]
		w.raw(`,"reasonCode":[`)
		w.cc(coding{sysSNOMED, c.snomed, c.display}, c.text)
		w.raw(`],"reasonReference":[`)
		w.ref("Condition", cf.id, "")
		w.byte(']')
	}
	if k.class == classIMP {
		w.raw(`,"hospitalization":{"admitSource":`)
		w.cc(coding{"http://terminology.hl7.org/CodeSystem/admit-source", "emd", "From accident/emergency department"}, "")
		w.raw(`,"dischargeDisposition":`)
		w.cc(coding{"http://terminology.hl7.org/CodeSystem/discharge-disposition", "home", "Home"}, "")
		w.byte('}')
	}
	w.raw(`,"location":[{"location":`)
	w.display(e.location)
	w.raw(`}],"serviceProvider":`)
	w.display(e.org)
	w.byte('}')
	g.emit(tEncounter)
	if e.episode != "" && (i == 0 || g.encs[i-1].episode != e.episode) {
		g.episode(i)
	}
}
