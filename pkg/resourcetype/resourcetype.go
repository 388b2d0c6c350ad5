// Package resourcetype knows the names of FHIR resource types (R4, R4B and R5), so that a
// misspelt --type is caught before a server sees it and a file of made-up types is not loaded.
package resourcetype

import (
	"strings"
)

// names is the union of the R4 (4.0.1), R4B (4.3.0) and R5 (5.0.0) resource types: an export
// from any of those servers may hold any of them.
var names = map[string]bool{}

func init() {
	for _, n := range strings.Fields(list) {
		names[n] = true
	}
}

const list = `
Account ActivityDefinition ActorDefinition AdministrableProductDefinition AdverseEvent AllergyIntolerance
Appointment AppointmentResponse ArtifactAssessment AuditEvent Basic Binary BiologicallyDerivedProduct
BiologicallyDerivedProductDispense BodyStructure Bundle CapabilityStatement CarePlan CareTeam CatalogEntry
ChargeItem ChargeItemDefinition Citation Claim ClaimResponse ClinicalImpression ClinicalUseDefinition
CodeSystem Communication CommunicationRequest CompartmentDefinition Composition ConceptMap Condition
ConditionDefinition Consent Contract Coverage CoverageEligibilityRequest CoverageEligibilityResponse
DetectedIssue Device DeviceDefinition DeviceDispense DeviceMetric DeviceRequest DeviceUsage
DeviceUseStatement DiagnosticReport DocumentManifest DocumentReference EffectEvidenceSynthesis Encounter
EncounterHistory Endpoint EnrollmentRequest EnrollmentResponse EpisodeOfCare EventDefinition Evidence
EvidenceReport EvidenceVariable ExampleScenario ExplanationOfBenefit FamilyMemberHistory Flag FormularyItem
GenomicStudy Goal GraphDefinition Group GuidanceResponse HealthcareService ImagingSelection ImagingStudy
Immunization ImmunizationEvaluation ImmunizationRecommendation ImplementationGuide Ingredient InsurancePlan
InventoryItem InventoryReport Invoice Library Linkage List Location ManufacturedItemDefinition Measure
MeasureReport Media Medication MedicationAdministration MedicationDispense MedicationKnowledge
MedicationRequest MedicationStatement MedicinalProduct MedicinalProductAuthorization
MedicinalProductContraindication MedicinalProductDefinition MedicinalProductIndication
MedicinalProductIngredient MedicinalProductInteraction MedicinalProductManufactured
MedicinalProductPackaged MedicinalProductPharmaceutical MedicinalProductUndesirableEffect
MessageDefinition MessageHeader MolecularSequence NamingSystem NutritionIntake NutritionOrder
NutritionProduct Observation ObservationDefinition OperationDefinition OperationOutcome Organization
OrganizationAffiliation PackagedProductDefinition Parameters Patient PaymentNotice PaymentReconciliation
Permission Person PlanDefinition Practitioner PractitionerRole Procedure Provenance Questionnaire
QuestionnaireResponse RegulatedAuthorization RelatedPerson RequestGroup RequestOrchestration Requirements
ResearchDefinition ResearchElementDefinition ResearchStudy ResearchSubject RiskAssessment
RiskEvidenceSynthesis Schedule SearchParameter ServiceRequest Slot Specimen SpecimenDefinition
StructureDefinition StructureMap Subscription SubscriptionStatus SubscriptionTopic Substance
SubstanceDefinition SubstanceNucleicAcid SubstancePolymer SubstanceProtein SubstanceReferenceInformation
SubstanceSourceMaterial SubstanceSpecification SupplyDelivery SupplyRequest Task TerminologyCapabilities
TestPlan TestReport TestScript Transport ValueSet VerificationResult VisionPrescription
`

// Known reports whether name is a FHIR R4, R4B or R5 resource type, spelt exactly (types are
// case-sensitive in FHIR: "patient" is not a type).
func Known(name string) bool { return names[name] }

// Suggest returns the known type that name most likely means ("patient" → "Patient",
// "Patinet" → "Patient"), or "" when none is close. Close means equal but for case, or at most
// two edits apart (one for names of four letters or fewer), so that a guess is never far-fetched.
func Suggest(name string) string {
	if name == "" || Known(name) {
		return ""
	}
	best, bestDist := "", 0
	for n := range names {
		if strings.EqualFold(n, name) {
			return n
		}
		limit := 2
		if len(name) <= 4 {
			limit = 1
		}
		d := distance(strings.ToLower(n), strings.ToLower(name))
		if d <= limit && (best == "" || d < bestDist || (d == bestDist && n < best)) {
			best, bestDist = n, d
		}
	}
	return best
}

// distance is the optimal string alignment distance (Levenshtein plus adjacent transposition,
// the commonest typing slip): "Patinet" is one edit from "Patient".
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30 // no type is that long; bound the work for hostile input
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
