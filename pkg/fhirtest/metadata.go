package fhirtest

import (
	"cmp"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
)

// SoftwareName is the CapabilityStatement's software.name: clients log it in their kickoff event
// (DESIGN.md §4), and a test can tell this server from a real one by it.
const SoftwareName = "bulkpipe test server"

// releaseDate is the CapabilityStatement's software.releaseDate.
const releaseDate = "2026-11-28"

// version is the module version the server was built from, as tool.Version reads it (fhirtest
// cannot import pkg/tool, which knows urfave/cli).
var version = sync.OnceValue(func() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
})

// r4Types are the resource types of FHIR R4 (4.0.1): a _type outside this list is an error (400),
// a type in it that the data set lacks just exports nothing, as on a real server.
const r4Types = `Account ActivityDefinition AdverseEvent AllergyIntolerance Appointment AppointmentResponse
AuditEvent Basic Binary BiologicallyDerivedProduct BodyStructure Bundle CapabilityStatement CarePlan
CareTeam CatalogEntry ChargeItem ChargeItemDefinition Claim ClaimResponse ClinicalImpression CodeSystem
Communication CommunicationRequest CompartmentDefinition Composition ConceptMap Condition Consent Contract
Coverage CoverageEligibilityRequest CoverageEligibilityResponse DetectedIssue Device DeviceDefinition
DeviceMetric DeviceRequest DeviceUseStatement DiagnosticReport DocumentManifest DocumentReference
EffectEvidenceSynthesis Encounter Endpoint EnrollmentRequest EnrollmentResponse EpisodeOfCare
EventDefinition Evidence EvidenceVariable ExampleScenario ExplanationOfBenefit FamilyMemberHistory Flag
Goal GraphDefinition Group GuidanceResponse HealthcareService ImagingStudy Immunization
ImmunizationEvaluation ImmunizationRecommendation ImplementationGuide InsurancePlan Invoice Library
Linkage List Location Measure MeasureReport Media Medication MedicationAdministration
MedicationDispense MedicationKnowledge MedicationRequest MedicationStatement MedicinalProduct
MedicinalProductAuthorization MedicinalProductContraindication MedicinalProductIndication
MedicinalProductIngredient MedicinalProductInteraction MedicinalProductManufactured
MedicinalProductPackaged MedicinalProductPharmaceutical MedicinalProductUndesirableEffect
MessageDefinition MessageHeader MolecularSequence NamingSystem NutritionOrder Observation
ObservationDefinition OperationDefinition OperationOutcome Organization OrganizationAffiliation
Parameters Patient PaymentNotice PaymentReconciliation Person PlanDefinition Practitioner
PractitionerRole Procedure Provenance Questionnaire QuestionnaireResponse RelatedPerson RequestGroup
ResearchDefinition ResearchElementDefinition ResearchStudy ResearchSubject RiskAssessment
RiskEvidenceSynthesis Schedule SearchParameter ServiceRequest Slot Specimen SpecimenDefinition
StructureDefinition StructureMap Subscription Substance SubstanceNucleicAcid SubstancePolymer
SubstanceProtein SubstanceReferenceInformation SubstanceSourceMaterial SubstanceSpecification
SupplyDelivery SupplyRequest Task TerminologyCapabilities TestReport TestScript ValueSet
VerificationResult VisionPrescription`

var typeSet = sync.OnceValue(func() map[string]bool {
	m := map[string]bool{}
	for _, t := range strings.Fields(r4Types) {
		m[t] = true
	}
	return m
})

func isResourceType(s string) bool { return typeSet()[s] }

// handleMetadata answers /metadata with a CapabilityStatement that instantiates the Bulk Data
// server profile and advertises SMART, as a conformant server's does.
func (s *Server) handleMetadata(w http.ResponseWriter, r *http.Request) {
	var resources []any
	for _, t := range s.data.types {
		resources = append(resources, map[string]any{"type": t,
			"interaction": []any{map[string]any{"code": "read"}}})
	}
	for _, t := range []string{"Binary", "Medication", "Group"} {
		if _, ok := s.data.res[t]; !ok {
			resources = append(resources, map[string]any{"type": t,
				"interaction": []any{map[string]any{"code": "read"}}})
		}
	}
	// The server's own definitions, not the IG's: they list exactly the parameters it knows
	// (kickoffParams), which no version of the IG's does.
	export := func(def string) map[string]any {
		return map[string]any{"name": "export", "definition": s.URL() + "/OperationDefinition/bulkpipe-" + def}
	}
	rest := map[string]any{"mode": "server", "resource": resources,
		"operation": []any{export("export")}}
	if s.opts.Auth == AuthSMART {
		rest["security"] = map[string]any{
			"service": []any{map[string]any{"coding": []any{map[string]any{
				"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}}}},
			"extension": []any{map[string]any{
				"url":       "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
				"extension": []any{map[string]any{"url": "token", "valueUri": s.tokenURL()}}}},
		}
	}
	// Patient- and Group-level export are operations on those types.
	for i, res := range resources {
		m := res.(map[string]any)
		switch m["type"] {
		case "Patient":
			m["operation"] = []any{export("patient-export")}
		case "Group":
			m["operation"] = []any{export("group-export")}
		}
		resources[i] = m
	}
	s.capability(rest, resources)
	type software struct {
		Name        string `json:"name"`
		Version     string `json:"version"`
		ReleaseDate string `json:"releaseDate"`
	}
	type implementation struct {
		Description string `json:"description"`
		URL         string `json:"url"`
	}
	writeJSON(w, http.StatusOK, "application/fhir+json", struct {
		ResourceType   string         `json:"resourceType"`
		Status         string         `json:"status"`
		Date           string         `json:"date"`
		Publisher      string         `json:"publisher"`
		Kind           string         `json:"kind"`
		Instantiates   []string       `json:"instantiates"`
		Software       software       `json:"software"`
		Implementation implementation `json:"implementation"`
		FHIRVersion    string         `json:"fhirVersion"`
		Format         []string       `json:"format"`
		Rest           []any          `json:"rest"`
	}{
		ResourceType:   "CapabilityStatement",
		Status:         "active",
		Date:           releaseDate,
		Publisher:      cmp.Or(s.prof.publisher, "bulkpipe"),
		Kind:           "instance",
		Instantiates:   []string{"http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"},
		Software:       software{SoftwareName, version(), releaseDate},
		Implementation: implementation{"FHIR Bulk Data test server (" + s.opts.Profile + ")", s.URL()},
		FHIRVersion:    "4.0.1",
		Format:         []string{"json"},
		Rest:           []any{rest},
	})
}

// operationDefinitionHandler answers [base]/OperationDefinition/bulkpipe-{export,
// patient-export,group-export}: the definitions the CapabilityStatement names, each a
// restriction of the IG's (base) to the parameters this server knows.
func (s *Server) operationDefinitionHandler(id string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		def, ok := strings.CutPrefix(id, "bulkpipe-")
		lv := map[string]level{"export": levelSystem, "patient-export": levelPatient, "group-export": levelGroup}
		l, known := lv[def]
		if !ok || !known {
			writeOutcome(w, http.StatusNotFound, "not-found", "OperationDefinition/"+id+" is not known to this server")
			return
		}
		var params []any
		for _, p := range kickoffParams {
			if p == "patient" && l == levelSystem || slices.Contains(s.UnsupportedParams(), p) {
				continue // Patient and Group level only; or a vendor's profile lacks it
			}
			params = append(params, map[string]any{"name": p, "use": "in", "min": 0, "max": "*", "type": "string"})
		}
		params = append(params, map[string]any{"name": "return", "use": "out", "min": 0, "max": "1", "type": "Binary"})
		od := map[string]any{
			"resourceType": "OperationDefinition",
			"id":           id,
			"url":          s.URL() + "/OperationDefinition/" + id,
			"name":         "BulkpipeTestServer" + strings.ReplaceAll(def, "-", ""),
			"status":       "active",
			"kind":         "operation",
			"code":         "export",
			"base":         "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/" + def,
			"system":       l == levelSystem,
			"type":         l == levelPatient,
			"instance":     l == levelGroup,
			"parameter":    params,
		}
		switch l {
		case levelPatient:
			od["resource"] = []string{"Patient"}
		case levelGroup:
			od["resource"] = []string{"Group"}
		}
		writeJSON(w, http.StatusOK, "application/fhir+json", od)
	}
}

// handleSMARTConfig answers /.well-known/smart-configuration (SMART App Launch 2.x §2.1), which
// clients read to find the token endpoint when --token-url is not given.
func (s *Server) handleSMARTConfig(w http.ResponseWriter, r *http.Request) {
	if s.opts.Auth != AuthSMART {
		writeOutcome(w, http.StatusNotFound, "not-found", "this server runs without authorization (--auth none)")
		return
	}
	writeJSON(w, http.StatusOK, "application/json", map[string]any{
		"issuer":                                s.URL(),
		"token_endpoint":                        s.tokenURL(),
		"grant_types_supported":                 []string{"client_credentials"},
		"token_endpoint_auth_methods_supported": []string{"private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": []string{"RS384", "ES384", "ES256", "ES512"},
		"scopes_supported": []string{"system/*.read", "system/*.rs", "system/Patient.read", "system/Patient.rs"},
		"capabilities":     []string{"client-confidential-asymmetric", "permission-v1", "permission-v2"},
	})
}
