package synth

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// note is a clinical document before rendering: the same note can become text/plain, HTML, XHTML
// or PDF attachment content (a DocumentReference with two attachments carries two renderings).
type note struct {
	title    string
	header   []string
	sections []section
	footer   string
	size     int // approximate rendered text length, to grow notes to a target size
}

type section struct {
	heading string
	paras   []string
	items   []string
	table   [][]string // first row is the header
}

func (n *note) add(s section) {
	n.sections = append(n.sections, s)
	n.size += len(s.heading) + 2
	for _, p := range s.paras {
		n.size += len(p) + 2
	}
	for _, it := range s.items {
		n.size += len(it) + 3
	}
	for _, row := range s.table {
		for _, c := range row {
			n.size += len(c) + 4
		}
	}
}

// render returns the note as attachment content of the given MIME type (parameters ignored).
func (n *note) render(contentType string) []byte {
	mt, _, _ := strings.Cut(contentType, ";")
	switch mt {
	case "text/html":
		return n.html(false)
	case "application/xhtml+xml":
		return n.html(true)
	case "application/pdf":
		return n.pdf()
	}
	return n.text()
}

const wrapWidth = 88

// wrap appends s broken into lines of at most width bytes (longer words stay whole).
func wrap(lines []string, s, indent string, width int) []string {
	for len(s) > width-len(indent) {
		cut := strings.LastIndexByte(s[:width-len(indent)+1], ' ')
		if cut <= 0 {
			cut = strings.IndexByte(s, ' ')
			if cut < 0 {
				break
			}
		}
		lines = append(lines, indent+s[:cut])
		s = s[cut+1:]
	}
	return append(lines, indent+s)
}

// lines lays the note out as plain text lines; the text and PDF renderings share it.
func (n *note) lines() []string {
	ls := make([]string, 0, 16+n.size/60)
	ls = append(ls, n.title, strings.Repeat("=", len(n.title)))
	ls = append(ls, n.header...)
	for _, s := range n.sections {
		ls = append(ls, "", s.heading)
		for _, p := range s.paras {
			ls = wrap(ls, p, "", wrapWidth)
		}
		for _, it := range s.items {
			ls = wrap(ls, "- "+it, "", wrapWidth)
		}
		if len(s.table) > 0 {
			widths := make([]int, len(s.table[0]))
			for _, row := range s.table {
				for i, c := range row {
					widths[i] = max(widths[i], utf8.RuneCountInString(c))
				}
			}
			for _, row := range s.table {
				var b strings.Builder
				for i, c := range row {
					b.WriteString(c)
					if i < len(row)-1 {
						b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+2))
					}
				}
				ls = append(ls, strings.TrimRight(b.String(), " "))
			}
		}
	}
	if n.footer != "" {
		ls = append(ls, "", n.footer)
	}
	return ls
}

func (n *note) text() []byte {
	b := make([]byte, 0, n.size+n.size/16+256)
	for _, l := range n.lines() {
		b = append(b, l...)
		b = append(b, '\n')
	}
	return b
}

func appendEscapedHTML(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '<':
			b = append(b, "&lt;"...)
		case '>':
			b = append(b, "&gt;"...)
		case '&':
			b = append(b, "&amp;"...)
		case '"':
			b = append(b, "&quot;"...)
		case '\'':
			b = append(b, "&#39;"...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// html renders HTML5, or with xhtml an XHTML 1.0 document that parses as XML.
func (n *note) html(xhtml bool) []byte {
	b := make([]byte, 0, n.size+n.size/4+1024)
	if xhtml {
		b = append(b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
			`<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">`+"\n"+
			`<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">`+"\n<head>\n"+
			`<meta http-equiv="Content-Type" content="application/xhtml+xml; charset=UTF-8" />`+"\n<title>"...)
	} else {
		b = append(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>"...)
	}
	b = appendEscapedHTML(b, n.title)
	b = append(b, "</title>\n<style>body{font-family:Arial,sans-serif;font-size:11pt;margin:2em}"+
		"h1{font-size:14pt}h2{font-size:12pt;border-bottom:1px solid #999}"+
		"table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left}</style>\n</head>\n<body>\n<h1>"...)
	b = appendEscapedHTML(b, n.title)
	b = append(b, "</h1>\n<div class=\"header\">\n"...)
	for _, h := range n.header {
		b = append(b, "<p>"...)
		b = appendEscapedHTML(b, h)
		b = append(b, "</p>\n"...)
	}
	b = append(b, "</div>\n"...)
	for _, s := range n.sections {
		b = append(b, "<h2>"...)
		b = appendEscapedHTML(b, s.heading)
		b = append(b, "</h2>\n"...)
		for _, p := range s.paras {
			b = append(b, "<p>"...)
			b = appendEscapedHTML(b, p)
			b = append(b, "</p>\n"...)
		}
		if len(s.items) > 0 {
			b = append(b, "<ul>\n"...)
			for _, it := range s.items {
				b = append(b, "<li>"...)
				b = appendEscapedHTML(b, it)
				b = append(b, "</li>\n"...)
			}
			b = append(b, "</ul>\n"...)
		}
		if len(s.table) > 0 {
			b = append(b, "<table>\n"...)
			for r, row := range s.table {
				b = append(b, "<tr>"...)
				cell := "td"
				if r == 0 {
					cell = "th"
				}
				for _, c := range row {
					b = append(b, '<')
					b = append(b, cell...)
					b = append(b, '>')
					b = appendEscapedHTML(b, c)
					b = append(b, "</"...)
					b = append(b, cell...)
					b = append(b, '>')
				}
				b = append(b, "</tr>\n"...)
			}
			b = append(b, "</table>\n"...)
		}
	}
	if n.footer != "" {
		b = append(b, "<p class=\"signature\"><em>"...)
		b = appendEscapedHTML(b, n.footer)
		b = append(b, "</em></p>\n"...)
	}
	return append(b, "</body>\n</html>\n"...)
}

// appendPDFString writes s as a PDF literal string in WinAnsiEncoding: Latin-1 runes as octal
// escapes, anything beyond as '?'.
func appendPDFString(b []byte, s string) []byte {
	b = append(b, '(')
	for _, r := range s {
		switch {
		case r == '(' || r == ')' || r == '\\':
			b = append(b, '\\', byte(r))
		case r >= 0x20 && r < 0x7f:
			b = append(b, byte(r))
		case r >= 0xa0 && r <= 0xff:
			b = append(b, '\\', byte('0'+r>>6), byte('0'+r>>3&7), byte('0'+r&7))
		default:
			b = append(b, '?')
		}
	}
	return append(b, ')')
}

const pdfLinesPerPage = 60

// pdf renders a small but valid PDF 1.4 (Helvetica, one content stream per page, exact xref).
func (n *note) pdf() []byte {
	ls := n.lines()
	pages := (len(ls) + pdfLinesPerPage - 1) / pdfLinesPerPage
	// Objects: 1 catalog, 2 page tree, 3 font, then per page a page object and its content stream.
	b := make([]byte, 0, n.size+n.size/4+len(ls)*8+1024)
	offsets := make([]int, 3+2*pages+1)
	obj := func(num int) {
		offsets[num] = len(b)
		b = strconv.AppendInt(b, int64(num), 10)
		b = append(b, " 0 obj\n"...)
	}
	b = append(b, "%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"...)
	obj(1)
	b = append(b, "<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"...)
	obj(2)
	b = append(b, "<< /Type /Pages /Kids ["...)
	for p := range pages {
		b = strconv.AppendInt(b, int64(4+2*p), 10)
		b = append(b, " 0 R "...)
	}
	b = append(b, "] /Count "...)
	b = strconv.AppendInt(b, int64(pages), 10)
	b = append(b, " >>\nendobj\n"...)
	obj(3)
	b = append(b, "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>\nendobj\n"...)
	content := make([]byte, 0, 4096+pdfLinesPerPage*wrapWidth)
	for p := range pages {
		obj(4 + 2*p)
		b = append(b, "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents "...)
		b = strconv.AppendInt(b, int64(5+2*p), 10)
		b = append(b, " 0 R >>\nendobj\n"...)
		content = append(content[:0], "BT\n/F1 9 Tf\n12 TL\n50 750 Td\n"...)
		for _, l := range ls[p*pdfLinesPerPage : min(len(ls), (p+1)*pdfLinesPerPage)] {
			content = appendPDFString(content, l)
			content = append(content, " Tj T*\n"...)
		}
		content = append(content, "ET\n"...)
		obj(5 + 2*p)
		b = append(b, "<< /Length "...)
		b = strconv.AppendInt(b, int64(len(content)), 10)
		b = append(b, " >>\nstream\n"...)
		b = append(b, content...)
		b = append(b, "endstream\nendobj\n"...)
	}
	xref := len(b)
	b = append(b, "xref\n0 "...)
	b = strconv.AppendInt(b, int64(len(offsets)), 10)
	b = append(b, "\n0000000000 65535 f \n"...)
	for _, off := range offsets[1:] {
		s := strconv.Itoa(off)
		b = append(b, strings.Repeat("0", 10-len(s))...)
		b = append(b, s...)
		b = append(b, " 00000 n \n"...)
	}
	b = append(b, "trailer\n<< /Size "...)
	b = strconv.AppendInt(b, int64(len(offsets)), 10)
	b = append(b, " /Root 1 0 R >>\nstartxref\n"...)
	b = strconv.AppendInt(b, int64(xref), 10)
	return append(b, "\n%%EOF\n"...)
}

// Sentence pools for notes. Placeholders in braces are filled per patient by fill.
var (
	hpiOpeners = []string{
		"{first} is {an} {age}-year-old {sex} with a history of {conds} who presents for {reason}.",
		"{first} {family} is a {age} y.o. {sex} seen today for {reason}. Past history is notable for {conds}.",
		"This is {an} {age}-year-old {sex} with {conds}, here for {reason}.",
	}
	hpiSentences = []string{
		"{Pron} reports {cc} for the past {days} days.",
		"{Pron} denies fever, chills, chest pain or shortness of breath.",
		"Symptoms are worse in the evening and improve with rest.",
		"{Pron} has been taking {med} as prescribed and reports good adherence.",
		"Home blood pressure readings have ranged from {sys}/{dia} to {sys2}/{dia2} mmHg.",
		"{Pron} was last seen in clinic {months} months ago.",
		"Since the last visit {pron} has had no emergency department visits or hospitalizations.",
		"{Pron} reports occasional {symptom} without clear triggers.",
		"Sleep has been fair, averaging {hours} hours per night.",
		"Appetite is stable and weight has been unchanged.",
		"{Pron} walks about {minutes} minutes on most days of the week.",
		"{Pron} missed several doses of {med} last month while travelling.",
		"No recent sick contacts. Vaccinations reviewed and are up to date.",
		"{Pron} is accompanied today by a family member who helps with the history.",
	}
	symptoms = []string{"intermittent headaches", "fatigue", "productive cough", "dysuria", "right knee pain",
		"palpitations", "low back pain", "nasal congestion", "mild dizziness on standing", "heartburn after meals",
		"shortness of breath on exertion", "sore throat"}
	reasons = []string{"routine follow-up", "an annual physical examination", "evaluation of {cc}",
		"medication management", "follow-up of recent laboratory results", "a new complaint of {cc}", "{cc}"}
	rosLines = []string{
		"Constitutional: Negative for fever, chills and unintentional weight loss.",
		"Eyes: Negative for blurred vision and eye pain.",
		"Cardiovascular: Negative for chest pain and leg swelling.",
		"Respiratory: Negative for cough, wheezing and hemoptysis.",
		"Gastrointestinal: Negative for nausea, vomiting, diarrhea and abdominal pain.",
		"Genitourinary: Negative for hematuria and flank pain.",
		"Musculoskeletal: Positive for morning joint stiffness lasting < 30 minutes.",
		"Neurological: Negative for focal weakness, numbness and syncope.",
		"Psychiatric: Mood is stable; negative for suicidal ideation.",
		"Skin: Negative for rash and pruritus.",
	}
	examLines = []string{
		"General: Well-developed, well-nourished, in no acute distress.",
		"HEENT: Normocephalic, atraumatic. Moist mucous membranes. Oropharynx clear.",
		"Neck: Supple, no thyromegaly, no lymphadenopathy.",
		"Cardiovascular: Regular rate and rhythm. No murmurs, rubs or gallops.",
		"Lungs: Clear to auscultation bilaterally. No wheezes, rales or rhonchi.",
		"Abdomen: Soft, non-tender, non-distended. Normal bowel sounds.",
		"Extremities: No edema. Distal pulses 2+ bilaterally.",
		"Skin: Warm and dry; no rashes or lesions.",
		"Neuro: Alert and oriented x3. Strength 5/5 throughout. Gait steady.",
	}
	chronicPlans = []string{
		"Continue current therapy; recheck labs in 3 months.",
		"Stable. Reinforced diet and exercise counseling.",
		"Above goal; increase the dose of {med} and reassess in 4 weeks.",
		"Referral placed to specialty clinic; patient agrees with plan.",
		"Order HbA1c and basic metabolic panel before the next visit.",
		"Well controlled on the current regimen; no changes today.",
	}
	acutePlans = []string{
		"Symptomatic care with fluids and rest; return if symptoms worsen or persist beyond {days} days.",
		"Discussed warning signs and when to seek care; patient verbalized understanding.",
		"Start treatment as prescribed; follow up by telephone in {days} days.",
		"Age-appropriate screening reviewed; vaccinations offered.",
	}
	followupSentences = []string{
		"Telephone call with the patient to review results.",
		"{Pron} reports improvement in {cc} since the visit.",
		"{Pron} reports no change in {cc}; advised to keep the scheduled follow-up.",
		"Laboratory results reviewed and released to the patient portal.",
		"Prescription for {med} sent to the preferred pharmacy.",
		"Prior authorization request submitted to the insurer.",
		"Patient portal message received asking about side effects of {med}; reassurance given.",
		"Left a voicemail asking the patient to call back to schedule imaging.",
		"Home blood pressure log reviewed: average {sys}/{dia} mmHg.",
		"Referral status checked; appointment scheduled with the specialist.",
		"Care coordinator confirmed transportation for the next appointment.",
	}
	courseSentences = []string{
		"Vital signs remained within normal limits overnight.",
		"Tolerated a regular diet without nausea.",
		"Ambulated in the hallway with physical therapy.",
		"Pain controlled with oral acetaminophen; no opioids required.",
		"Morning labs notable for a potassium of {k} mmol/L, repleted orally.",
		"Intravenous fluids were discontinued.",
		"Case management discussed discharge planning with the family.",
		"Blood cultures from admission remain without growth at 48 hours.",
		"Oxygen weaned to room air with saturations above 94 %.",
		"Seen by nutrition; diet education provided.",
		"Telemetry without arrhythmia over the last 24 hours.",
		"Temperature maximum {temp} °C; no new symptoms reported.",
		"{Pron} asked appropriate questions about {med}; teach-back completed.",
	}
)
