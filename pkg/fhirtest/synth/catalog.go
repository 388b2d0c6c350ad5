package synth

// The tables below hold the clinical vocabulary of the data set. Codes are real LOINC, SNOMED CT,
// RxNorm, CVX and HL7 terminology codes, so that filters and loaders see the shapes they meet on
// real servers; the values are synthetic.

const (
	sysLOINC        = "http://loinc.org"
	sysSNOMED       = "http://snomed.info/sct"
	sysUCUM         = "http://unitsofmeasure.org"
	sysRxNorm       = "http://www.nlm.nih.gov/research/umls/rxnorm"
	sysICD10        = "http://hl7.org/fhir/sid/icd-10-cm"
	sysCVX          = "http://hl7.org/fhir/sid/cvx"
	sysObsCategory  = "http://terminology.hl7.org/CodeSystem/observation-category"
	sysInterp       = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
	sysActCode      = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	sysV20074       = "http://terminology.hl7.org/CodeSystem/v2-0074"
	sysV20203       = "http://terminology.hl7.org/CodeSystem/v2-0203"
	sysCondClinical = "http://terminology.hl7.org/CodeSystem/condition-clinical"
	sysCondVer      = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
	sysCondCategory = "http://terminology.hl7.org/CodeSystem/condition-category"
	sysAllergyClin  = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
	sysAllergyVer   = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
	sysMedReqCat    = "http://terminology.hl7.org/CodeSystem/medicationrequest-category"
	sysEpisodeType  = "http://terminology.hl7.org/CodeSystem/episodeofcare-type"
	sysDocCategory  = "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category"
	sysParticipant  = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
	sysMarital      = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"
	sysActSite      = "http://terminology.hl7.org/CodeSystem/v3-ActSite"
	sysRoute        = "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration"
	sysV20443       = "http://terminology.hl7.org/CodeSystem/v2-0443"
	sysDoseRateType = "http://terminology.hl7.org/CodeSystem/dose-rate-type"
	sysDrugForm     = "http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm"
	sysRace         = "urn:oid:2.16.840.1.113883.6.238"
	sysFormatCode   = "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode"
	usCore          = "http://hl7.org/fhir/us/core/StructureDefinition/"
)

// coding is one Coding: system, code, display.
type coding struct{ system, code, display string }

// quant describes a quantitative observation. Values are fixed-point integers with dec decimals, so
// that no floating-point arithmetic (which may fuse differently per CPU) touches the output.
type quant struct {
	loinc, display, text string
	unit                 string // UCUM code, also used as the human unit
	dec                  int
	lo, hi               int64 // reference range; lo == hi == 0: none
	min, max             int64 // range of generated values
}

var labTests = []quant{
	{"2345-7", "Glucose [Mass/volume] in Serum or Plasma", "Glucose", "mg/dL", 0, 70, 99, 55, 260},
	{"2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "Creatinine", "mg/dL", 2, 60, 130, 45, 310},
	{"3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "BUN", "mg/dL", 0, 7, 20, 4, 60},
	{"2951-2", "Sodium [Moles/volume] in Serum or Plasma", "Sodium", "mmol/L", 0, 135, 145, 126, 152},
	{"2823-3", "Potassium [Moles/volume] in Serum or Plasma", "Potassium", "mmol/L", 1, 35, 51, 29, 62},
	{"2075-0", "Chloride [Moles/volume] in Serum or Plasma", "Chloride", "mmol/L", 0, 98, 107, 90, 115},
	{"2028-9", "Carbon dioxide, total [Moles/volume] in Serum or Plasma", "CO2", "mmol/L", 0, 22, 29, 17, 34},
	{"17861-6", "Calcium [Mass/volume] in Serum or Plasma", "Calcium", "mg/dL", 1, 86, 103, 78, 115},
	{"718-7", "Hemoglobin [Mass/volume] in Blood", "Hemoglobin", "g/dL", 1, 120, 175, 85, 190},
	{"4544-3", "Hematocrit [Volume Fraction] of Blood by Automated count", "Hematocrit", "%", 1, 360, 500, 280, 560},
	{"6690-2", "Leukocytes [#/volume] in Blood by Automated count", "WBC", "10*3/uL", 1, 45, 110, 25, 190},
	{"777-3", "Platelets [#/volume] in Blood by Automated count", "Platelets", "10*3/uL", 0, 150, 400, 90, 520},
	{"789-8", "Erythrocytes [#/volume] in Blood by Automated count", "RBC", "10*6/uL", 2, 420, 590, 350, 640},
	{"4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "Hemoglobin A1c", "%", 1, 40, 56, 45, 112},
	{"2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "Total cholesterol", "mg/dL", 0, 125, 200, 110, 290},
	{"2571-8", "Triglyceride [Mass/volume] in Serum or Plasma", "Triglycerides", "mg/dL", 0, 35, 150, 40, 420},
	{"2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma", "HDL cholesterol", "mg/dL", 0, 40, 60, 25, 95},
	{"13457-7", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation", "LDL cholesterol", "mg/dL", 0, 50, 100, 45, 210},
	{"1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "ALT", "U/L", 0, 7, 56, 5, 160},
	{"1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "AST", "U/L", 0, 10, 40, 8, 140},
	{"3016-3", "Thyrotropin [Units/volume] in Serum or Plasma", "TSH", "m[IU]/L", 2, 40, 400, 10, 1150},
}

// panel is an ordered lab panel: one ServiceRequest, Specimen and DiagnosticReport per order.
type panel struct {
	loinc, display, text string
	tests                []int // indexes into labTests
	specimen             coding
}

var (
	specSerum = coding{sysSNOMED, "119364003", "Serum specimen"}
	specBlood = coding{sysSNOMED, "119297000", "Blood specimen"}
)

var labPanels = []panel{
	{"51990-0", "Basic metabolic panel - Blood", "Basic metabolic panel", []int{0, 1, 2, 3, 4, 5, 6, 7}, specSerum},
	{"58410-2", "CBC panel - Blood by Automated count", "CBC", []int{8, 9, 10, 11, 12}, specBlood},
	{"57698-3", "Lipid panel with direct LDL - Serum or Plasma", "Lipid panel", []int{14, 15, 16, 17}, specSerum},
	{"24325-3", "Hepatic function panel - Serum or Plasma", "Hepatic function panel", []int{18, 19}, specSerum},
	{"4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "Hemoglobin A1c", []int{13}, specBlood},
	{"3016-3", "Thyrotropin [Units/volume] in Serum or Plasma", "TSH", []int{20}, specSerum},
}

// Vital signs; bpIndex is the blood pressure panel, written with components.
var vitals = []quant{
	{"85354-9", "Blood pressure panel with all children optional", "Blood pressure", "mm[Hg]", 0, 0, 0, 0, 0},
	{"8867-4", "Heart rate", "Heart rate", "/min", 0, 60, 100, 48, 128},
	{"9279-1", "Respiratory rate", "Respiratory rate", "/min", 0, 12, 20, 10, 28},
	{"8310-5", "Body temperature", "Temperature", "Cel", 1, 361, 372, 357, 393},
	{"59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "SpO2", "%", 0, 95, 100, 86, 100},
	{"29463-7", "Body weight", "Weight", "kg", 1, 0, 0, 480, 1290},
	{"8302-2", "Body height", "Height", "cm", 1, 0, 0, 1500, 1950},
	{"39156-5", "Body mass index (BMI) [Ratio]", "BMI", "kg/m2", 1, 185, 249, 170, 420},
}

const bpIndex = 0

// Observations that carry no category at all: legacy feeds do this, and _typeFilter's
// category:missing=true must find them.
var uncategorized = []quant{
	{"1989-3", "25-Hydroxyvitamin D3 [Mass/volume] in Serum or Plasma", "Vitamin D", "ng/mL", 0, 30, 100, 8, 110},
	{"2132-9", "Cobalamin (Vitamin B12) [Mass/volume] in Serum or Plasma", "Vitamin B12", "pg/mL", 0, 200, 900, 150, 1200},
	{"2276-4", "Ferritin [Mass/volume] in Serum or Plasma", "Ferritin", "ng/mL", 0, 24, 336, 8, 480},
}

var smokingStatus = []coding{
	{sysSNOMED, "266919005", "Never smoker"},
	{sysSNOMED, "8517006", "Ex-smoker"},
	{sysSNOMED, "449868002", "Smokes tobacco daily"},
	{sysSNOMED, "428041000124106", "Occasional tobacco smoker"},
}

var alcoholPerDay = quant{"74013-4", "Alcoholic drinks per day", "Alcoholic drinks per day", "{drinks}/d", 0, 0, 0, 0, 4}

var occupations = []string{"Retired teacher", "Warehouse associate", "Registered nurse", "Software developer",
	"Bus driver", "Student", "Accountant", "Construction worker", "Homemaker", "Line cook", "Electrician"}

// surveys are scored instruments (valueInteger).
var surveys = []struct {
	loinc, display, text string
	max                  int
}{
	{"44261-6", "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]", "PHQ-9 total score", 27},
	{"55758-7", "Patient Health Questionnaire 2 item (PHQ-2) total score [Reported]", "PHQ-2 total score", 6},
	{"70274-6", "Generalized anxiety disorder 7 item (GAD-7) total score [Reported.PHQ]", "GAD-7 total score", 21},
}

var lvef = quant{"10230-1", "Left ventricular Ejection fraction", "LVEF", "%", 0, 50, 70, 30, 75}

var examFindings = []struct {
	loinc, display, text string
	values               []string
}{
	{"29545-1", "Physical findings Narrative", "Physical findings", []string{
		"Well-appearing, in no acute distress. Heart regular rate and rhythm, no murmurs. Lungs clear to auscultation bilaterally.",
		"Mild tenderness to palpation in the right lower quadrant without rebound or guarding.",
		"Trace bilateral lower extremity edema. Distal pulses 2+ and symmetric.",
		"Oropharynx erythematous without exudate. Shotty anterior cervical lymphadenopathy.",
		"Scattered expiratory wheezes bilaterally; no accessory muscle use.",
	}},
	{"10210-3", "Physical findings of General status Narrative", "General status", []string{
		"Alert and oriented x3, cooperative, appears stated age.",
		"Appears fatigued but conversant; answers questions appropriately.",
		"Comfortable at rest, ambulating without assistance.",
	}},
}

// category codes for Observation.category, in observation-category display form.
var obsCategories = [...]coding{
	catLab:     {sysObsCategory, "laboratory", "Laboratory"},
	catVital:   {sysObsCategory, "vital-signs", "Vital Signs"},
	catSocial:  {sysObsCategory, "social-history", "Social History"},
	catSurvey:  {sysObsCategory, "survey", "Survey"},
	catImaging: {sysObsCategory, "imaging", "Imaging"},
	catExam:    {sysObsCategory, "exam", "Exam"},
}

const (
	catLab = iota
	catVital
	catSocial
	catSurvey
	catImaging
	catExam
	catNone // no category element at all
	numCats
)

// catWeights drive how an encounter's Observation quota is spent; laboratory dominates, as on
// real servers.
var catWeights = [numCats]int{catLab: 50, catVital: 28, catSocial: 6, catSurvey: 6, catImaging: 3, catExam: 5, catNone: 2}

// condition is a diagnosis with its SNOMED and ICD-10-CM codes.
type condition struct {
	snomed, display, icd, icdDisplay, text string
	chronic                                bool
}

var conditions = []condition{
	{"44054006", "Diabetes mellitus type 2 (disorder)", "E11.9", "Type 2 diabetes mellitus without complications", "Type 2 diabetes mellitus", true},
	{"38341003", "Hypertensive disorder, systemic arterial (disorder)", "I10", "Essential (primary) hypertension", "Hypertension", true},
	{"55822004", "Hyperlipidemia (disorder)", "E78.5", "Hyperlipidemia, unspecified", "Hyperlipidemia", true},
	{"195967001", "Asthma (disorder)", "J45.909", "Unspecified asthma, uncomplicated", "Asthma", true},
	{"13645005", "Chronic obstructive lung disease (disorder)", "J44.9", "Chronic obstructive pulmonary disease, unspecified", "COPD", true},
	{"35489007", "Depressive disorder (disorder)", "F32.A", "Depression, unspecified", "Depression", true},
	{"197480006", "Anxiety disorder (disorder)", "F41.9", "Anxiety disorder, unspecified", "Anxiety", true},
	{"49436004", "Atrial fibrillation (disorder)", "I48.91", "Unspecified atrial fibrillation", "Atrial fibrillation", true},
	{"709044004", "Chronic kidney disease (disorder)", "N18.9", "Chronic kidney disease, unspecified", "Chronic kidney disease", true},
	{"239873007", "Osteoarthritis of knee (disorder)", "M17.9", "Osteoarthritis of knee, unspecified", "Osteoarthritis of knee", true},
	{"162864005", "Body mass index 30+ - obesity (finding)", "E66.9", "Obesity, unspecified", "Obesity", true},
	{"444814009", "Viral sinusitis (disorder)", "J01.90", "Acute sinusitis, unspecified", "Viral sinusitis", false},
	{"68566005", "Urinary tract infectious disease (disorder)", "N39.0", "Urinary tract infection, site not specified", "Urinary tract infection", false},
	{"43878008", "Streptococcal sore throat (disorder)", "J02.0", "Streptococcal pharyngitis", "Strep throat", false},
	{"10509002", "Acute bronchitis (disorder)", "J20.9", "Acute bronchitis, unspecified", "Acute bronchitis", false},
	{"44465007", "Sprain of ankle (disorder)", "S93.409A", "Sprain of unspecified ligament of ankle, initial encounter", "Ankle sprain", false},
	{"840539006", "Disease caused by severe acute respiratory syndrome coronavirus 2 (disorder)", "U07.1", "COVID-19", "COVID-19", false},
}

// med is a drug product; the catalog is also the Medication resources of Dataset.Medications.
type med struct {
	rxnorm, display, text string
	form                  coding
	sig                   string
	doseUnit, doseCode    string
	perDay, supply        int
	forCondition          int // index into conditions, -1 for none
}

var (
	formTablet  = coding{sysSNOMED, "385055001", "Tablet"}
	formCapsule = coding{sysSNOMED, "385049006", "Capsule"}
	formInhaler = coding{sysSNOMED, "420317006", "Inhaler"}
)

var meds = []med{
	{"860975", "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet", "metformin ER 500 mg tablet", formTablet, "Take 1 tablet by mouth twice daily with meals", "tablet", "TAB", 2, 90, 0},
	{"314076", "lisinopril 10 MG Oral Tablet", "lisinopril 10 mg tablet", formTablet, "Take 1 tablet by mouth once daily", "tablet", "TAB", 1, 90, 1},
	{"197361", "amlodipine 5 MG Oral Tablet", "amlodipine 5 mg tablet", formTablet, "Take 1 tablet by mouth once daily", "tablet", "TAB", 1, 30, 1},
	{"617312", "atorvastatin 10 MG Oral Tablet", "atorvastatin 10 mg tablet", formTablet, "Take 1 tablet by mouth at bedtime", "tablet", "TAB", 1, 90, 2},
	{"745679", "200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler", "albuterol HFA inhaler", formInhaler, "Inhale 2 puffs every 4 to 6 hours as needed for wheezing", "puff", "INHL", 4, 30, 3},
	{"896209", "60 ACTUAT fluticasone propionate 0.25 MG/ACTUAT / salmeterol 0.05 MG/ACTUAT Dry Powder Inhaler", "fluticasone-salmeterol 250/50 inhaler", formInhaler, "Inhale 1 puff twice daily; rinse mouth after use", "puff", "INHL", 2, 30, 4},
	{"312938", "sertraline 100 MG Oral Tablet", "sertraline 100 mg tablet", formTablet, "Take 1 tablet by mouth once daily", "tablet", "TAB", 1, 30, 5},
	{"866924", "metoprolol tartrate 25 MG Oral Tablet", "metoprolol tartrate 25 mg tablet", formTablet, "Take 1 tablet by mouth twice daily", "tablet", "TAB", 2, 90, 7},
	{"855332", "warfarin sodium 5 MG Oral Tablet", "warfarin 5 mg tablet", formTablet, "Take 1 tablet by mouth daily or as directed by the anticoagulation clinic", "tablet", "TAB", 1, 30, 7},
	{"310965", "ibuprofen 200 MG Oral Tablet", "ibuprofen 200 mg tablet", formTablet, "Take 2 tablets by mouth every 6 hours as needed for pain", "tablet", "TAB", 4, 10, 9},
	{"308182", "amoxicillin 250 MG Oral Capsule", "amoxicillin 250 mg capsule", formCapsule, "Take 2 capsules by mouth three times daily for 10 days", "capsule", "CAP", 6, 10, 13},
	{"311989", "nitrofurantoin 100 MG Extended Release Oral Capsule", "nitrofurantoin 100 mg capsule", formCapsule, "Take 1 capsule by mouth twice daily for 5 days", "capsule", "CAP", 2, 5, 12},
	{"313782", "acetaminophen 325 MG Oral Tablet", "acetaminophen 325 mg tablet", formTablet, "Take 2 tablets by mouth every 6 hours as needed for fever or pain", "tablet", "TAB", 4, 7, -1},
	{"1049221", "acetaminophen 325 MG / oxycodone hydrochloride 5 MG Oral Tablet", "oxycodone-acetaminophen 5/325 mg tablet", formTablet, "Take 1 tablet by mouth every 6 hours as needed for severe pain", "tablet", "TAB", 4, 5, 15},
	{"198211", "simvastatin 40 MG Oral Tablet", "simvastatin 40 mg tablet", formTablet, "Take 1 tablet by mouth in the evening", "tablet", "TAB", 1, 90, 2},
	{"1361048", "glipizide 5 MG Oral Tablet", "glipizide 5 mg tablet", formTablet, "Take 1 tablet by mouth every morning before breakfast", "tablet", "TAB", 1, 90, 0},
}

var allergies = []struct {
	code     coding
	rxnorm   coding // substance code for drug allergies; zero for others
	category string
}{
	{coding{sysSNOMED, "91936005", "Allergy to penicillin"}, coding{sysRxNorm, "7980", "penicillin G"}, "medication"},
	{coding{sysSNOMED, "294505008", "Allergy to sulfonamide"}, coding{sysRxNorm, "10180", "sulfamethoxazole"}, "medication"},
	{coding{sysSNOMED, "300913006", "Shellfish allergy"}, coding{}, "food"},
	{coding{sysSNOMED, "91935009", "Allergy to peanut"}, coding{}, "food"},
	{coding{sysSNOMED, "232350006", "House dust mite allergy"}, coding{}, "environment"},
	{coding{sysSNOMED, "418689008", "Allergy to grass pollen"}, coding{}, "environment"},
	{coding{sysSNOMED, "419474003", "Allergy to mold"}, coding{}, "environment"},
}

var reactions = []coding{
	{sysSNOMED, "247472004", "Wheal"},
	{sysSNOMED, "271807003", "Eruption of skin"},
	{sysSNOMED, "39579001", "Anaphylaxis"},
	{sysSNOMED, "267036007", "Dyspnea"},
	{sysSNOMED, "422587007", "Nausea"},
	{sysSNOMED, "49727002", "Cough"},
}

var procedures = []struct {
	code     coding
	category coding
	minutes  int
}{
	{coding{sysSNOMED, "430193006", "Medication reconciliation (procedure)"}, coding{sysSNOMED, "409063005", "Counseling"}, 15},
	{coding{sysSNOMED, "171207006", "Depression screening (procedure)"}, coding{sysSNOMED, "103693007", "Diagnostic procedure"}, 10},
	{coding{sysSNOMED, "29303009", "Electrocardiographic procedure"}, coding{sysSNOMED, "103693007", "Diagnostic procedure"}, 20},
	{coding{sysSNOMED, "117015009", "Throat culture (procedure)"}, coding{sysSNOMED, "103693007", "Diagnostic procedure"}, 5},
	{coding{sysSNOMED, "73761001", "Colonoscopy (procedure)"}, coding{sysSNOMED, "387713003", "Surgical procedure"}, 45},
	{coding{sysSNOMED, "80146002", "Excision of appendix (procedure)"}, coding{sysSNOMED, "387713003", "Surgical procedure"}, 75},
	{coding{sysSNOMED, "18949003", "Change of dressing (procedure)"}, coding{sysSNOMED, "409073007", "Education"}, 15},
}

// imagingStudies are ordered imaging: ServiceRequest, Procedure, a RAD DiagnosticReport and an
// imaging Observation, with report text that fits the study.
var imagingStudies = []struct {
	order       coding // SNOMED procedure
	report      coding // LOINC report code
	text        string
	technique   string
	findings    []string
	impressions []string
}{
	{coding{sysSNOMED, "399208008", "Plain chest X-ray (procedure)"}, coding{sysLOINC, "36643-5", "XR Chest 2 Views"}, "XR chest 2 views",
		"PA and lateral views of the chest.",
		[]string{"The cardiomediastinal silhouette is within normal limits.", "No focal consolidation, pleural effusion or pneumothorax.",
			"The visualized osseous structures are intact.", "There is no free air beneath the diaphragm.", "Mild degenerative changes of the thoracic spine."},
		[]string{"No acute cardiopulmonary process.", "Mild bibasilar atelectasis. No focal consolidation, effusion or pneumothorax.",
			"Small right pleural effusion, slightly increased since the prior study."}},
	{coding{sysSNOMED, "169069000", "Computed tomography of chest (procedure)"}, coding{sysLOINC, "24627-2", "CT Chest"}, "CT chest",
		"Axial images of the chest were obtained following 75 mL of iohexol 350, with coronal and sagittal reformats.",
		[]string{"No focal consolidation, pleural effusion or pneumothorax.", "Small calcified granuloma in the left lower lobe, unchanged.",
			"No mediastinal or hilar lymphadenopathy.", "The heart is normal in size. No pericardial effusion.", "Mild degenerative changes of the thoracic spine."},
		[]string{"Stable 4 mm right upper lobe pulmonary nodule; no follow-up needed per Fleischner criteria.", "No acute cardiopulmonary process.",
			"Mild centrilobular emphysema. No suspicious pulmonary nodule."}},
	{coding{sysSNOMED, "40701008", "Echocardiography (procedure)"}, coding{sysLOINC, "42148-7", "US Heart"}, "Transthoracic echocardiogram",
		"Complete transthoracic echocardiogram with 2D, M-mode, color and spectral Doppler imaging.",
		[]string{"Left ventricular size is normal.", "No regional wall motion abnormalities.", "Mild mitral regurgitation.",
			"Right ventricular size and function are normal.", "No pericardial effusion.", "The aortic root is normal in size."},
		[]string{"Normal left ventricular size and systolic function. No significant valvular disease.",
			"Mildly reduced left ventricular systolic function with mild mitral regurgitation."}},
	{coding{sysSNOMED, "241615005", "Magnetic resonance imaging of knee (procedure)"}, coding{sysLOINC, "24653-8", "MR Knee"}, "MRI knee",
		"Multiplanar multisequence images of the knee were obtained without gadolinium.",
		[]string{"Joint effusion is small.", "Menisci are intact without displaced tear.", "Cruciate and collateral ligaments are intact.",
			"Full-thickness cartilage loss in the medial compartment.", "Small popliteal cyst."},
		[]string{"Tricompartmental osteoarthritis of the knee, most pronounced medially.", "Small joint effusion without internal derangement."}},
	{coding{sysSNOMED, "816077007", "Computed tomography of head (procedure)"}, coding{sysLOINC, "24725-4", "CT Head"}, "CT head without contrast",
		"Axial images of the head were obtained without intravenous contrast.",
		[]string{"Ventricles and sulci are appropriate for age.", "No extra-axial fluid collection.", "Gray-white matter differentiation is preserved.",
			"The visualized paranasal sinuses and mastoid air cells are clear."},
		[]string{"No evidence of acute intracranial hemorrhage, mass effect or territorial infarct.",
			"Chronic small vessel ischemic changes; no acute intracranial abnormality."}},
}

var vaccines = []struct {
	cvx, display, text, manufacturer string
}{
	{"140", "Influenza, seasonal, injectable, preservative free", "Influenza vaccine", "Sanofi Pasteur"},
	{"208", "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 30 mcg/0.3mL dose", "COVID-19 mRNA vaccine", "Pfizer, Inc"},
	{"115", "Tdap", "Tdap vaccine", "GlaxoSmithKline"},
	{"133", "Pneumococcal conjugate PCV 13", "Pneumococcal conjugate vaccine", "Pfizer, Inc"},
	{"187", "zoster vaccine recombinant", "Shingles vaccine (recombinant)", "GlaxoSmithKline"},
	{"43", "Hep B, adult", "Hepatitis B vaccine", "Merck and Co., Inc."},
}

var episodeTypes = []coding{
	{sysEpisodeType, "hacc", "Home and Community Care"},
	{sysEpisodeType, "pac", "Post Acute Care"},
	{sysEpisodeType, "diab", "Post co-ordinated diabetes program"},
	{sysEpisodeType, "cacp", "Community-based aged care"},
}

// encounterKind is a kind of visit with its class, type and length.
type encounterKind struct {
	class        coding
	typ          coding
	minMin, maxM int // length in minutes
	weight       int
	note         coding // LOINC document type of its note
}

var (
	classAMB  = coding{sysActCode, "AMB", "ambulatory"}
	classEMER = coding{sysActCode, "EMER", "emergency"}
	classIMP  = coding{sysActCode, "IMP", "inpatient encounter"}
	classVR   = coding{sysActCode, "VR", "virtual"}

	noteProgress  = coding{sysLOINC, "11506-3", "Progress note"}
	noteDischarge = coding{sysLOINC, "18842-5", "Discharge summary"}
	noteHP        = coding{sysLOINC, "34117-2", "History and physical note"}
	noteED        = coding{sysLOINC, "34111-5", "Emergency department note"}
	noteConsult   = coding{sysLOINC, "11488-4", "Consult note"}
)

var encounterKinds = []encounterKind{
	{classAMB, coding{sysSNOMED, "185349003", "Encounter for check up (procedure)"}, 20, 60, 35, noteProgress},
	{classAMB, coding{sysSNOMED, "185345009", "Encounter for symptom (procedure)"}, 15, 45, 25, noteProgress},
	{classAMB, coding{sysSNOMED, "390906007", "Follow-up encounter (procedure)"}, 15, 40, 15, noteConsult},
	{classVR, coding{sysSNOMED, "448337001", "Telemedicine consultation with patient (procedure)"}, 10, 30, 8, noteProgress},
	{classEMER, coding{sysSNOMED, "50849002", "Emergency room admission (procedure)"}, 120, 600, 10, noteED},
	{classIMP, coding{sysSNOMED, "32485007", "Hospital admission (procedure)"}, 24 * 60, 7 * 24 * 60, 7, noteDischarge},
}

var practitioners = []string{
	"Amelia Hart, MD", "Rajesh Iyer, MD", "Grace O'Connell, DO", "Samuel Okonkwo, MD", "Lucía Fernández, MD",
	"Henry Whitfield, NP", "Mei-Ling Chow, PA-C", "Jonas Lindqvist, MD", "Patricia Gómez, RN", "Daniel Abrams, MD",
}

var organizations = []string{
	"Riverside Medical Center", "Lakeside Community Clinic", "St. Brendan's Hospital", "Northgate Family Practice",
	"Valley Regional Health", "Harborview Laboratory Services",
}

// locations by encounter class.
var locations = map[coding][]string{
	classAMB:  {"Lakeside Clinic Suite 210", "Northgate Family Practice Exam Room 3", "Valley Regional Internal Medicine, Room 12"},
	classVR:   {"Virtual visit (video)", "Virtual visit (telephone)"},
	classEMER: {"Emergency Department, Bay 7", "Emergency Department, Bay 12"},
	classIMP:  {"Riverside Medical Center, 4 West", "St. Brendan's Hospital, Medical Unit 5B"},
}

var givenFemale = []string{"Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Susan", "Jessica", "Sarah",
	"Karen", "Lisa", "María", "Zoë", "Chloé", "Aisha", "Mei", "Priya", "Fatima", "Sofia", "Olga", "Ngozi"}

var givenMale = []string{"James", "Robert", "John", "Michael", "David", "William", "Richard", "Joseph",
	"Thomas", "Charles", "José", "Björn", "Hiroshi", "Mohammed", "Raj", "Chen", "Kwame", "Luis", "Ivan", "Dmitri"}

var middleInitials = []string{"A", "B", "C", "D", "E", "J", "K", "L", "M", "R", "S", "T"}

var families = []string{"Smith", "Johnson", "Williams", "Brown", "Jones", "García", "Miller", "Davis",
	"Rodríguez", "Martinez", "Hernández", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
	"Moore", "Jackson", "Martin", "Lee", "Nguyễn", "Müller", "O'Brien", "Kowalski", "Okafor", "Patel",
	"Kim", "Cohen", "Schmidt", "Johansson", "D'Angelo"}

var streets = []string{"Main St", "Oak Ave", "Maple Dr", "Elm St", "Washington Blvd", "Cedar Ln", "Park Rd",
	"Lakeview Ter", "Highland Ave", "River Rd", "Chestnut St", "Sunset Blvd"}

// zone is a time zone as a standard offset and, when it observes it, a summer offset (minutes).
type zone struct{ std, dst int }

var cities = []struct {
	city, state, zip string
	tz               zone
}{
	{"Boston", "MA", "021", zone{-300, -240}},
	{"Atlanta", "GA", "303", zone{-300, -240}},
	{"Columbus", "OH", "432", zone{-300, -240}},
	{"Springfield", "IL", "627", zone{-360, -300}},
	{"Austin", "TX", "787", zone{-360, -300}},
	{"Madison", "WI", "537", zone{-360, -300}},
	{"Denver", "CO", "802", zone{-420, -360}},
	{"Phoenix", "AZ", "850", zone{-420, -420}},
	{"Seattle", "WA", "981", zone{-480, -420}},
	{"Portland", "OR", "972", zone{-480, -420}},
}

var races = []coding{
	{sysRace, "2106-3", "White"},
	{sysRace, "2054-5", "Black or African American"},
	{sysRace, "2028-9", "Asian"},
	{sysRace, "1002-5", "American Indian or Alaska Native"},
	{sysRace, "2076-8", "Native Hawaiian or Other Pacific Islander"},
}

var maritalStatuses = []coding{
	{sysMarital, "M", "Married"},
	{sysMarital, "S", "Never Married"},
	{sysMarital, "D", "Divorced"},
	{sysMarital, "W", "Widowed"},
}

var languages = []coding{
	{"urn:ietf:bcp:47", "en-US", "English (United States)"},
	{"urn:ietf:bcp:47", "es", "Spanish"},
	{"urn:ietf:bcp:47", "vi", "Vietnamese"},
	{"urn:ietf:bcp:47", "zh", "Chinese"},
}

var noteRemarks = []string{
	"Specimen slightly hemolyzed; interpret potassium with caution.",
	"Repeat measurement confirmed.",
	"Patient reports fasting for 12 hours prior to collection.",
	"Result called to ordering provider.",
	"Measured after 5 minutes seated rest.",
	"Value verified by second technologist.",
}
