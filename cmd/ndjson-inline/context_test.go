package main

import "testing"

func TestBaseFromExportURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://ehr.example/fhir/$export", "https://ehr.example/fhir"},
		{"https://ehr.example/fhir/$export?_type=Patient&_since=2024-01-01", "https://ehr.example/fhir"},
		{"https://ehr.example/fhir/Patient/$export", "https://ehr.example/fhir"},
		{"https://ehr.example/api/FHIR/R4/Group/a%2Fb/$export?_type=X", "https://ehr.example/api/FHIR/R4"},
		{"http://127.0.0.1:8080/Group/1/%24export", "http://127.0.0.1:8080"},
		{"https://ehr.example/$export", "https://ehr.example"},
		{"https://ehr.example/fhir/status/1", ""},
		{"Group/1/$export", ""},
		{"::", ""},
	}
	for _, tt := range tests {
		if got := baseFromExportURL(tt.in); got != tt.want {
			t.Errorf("baseFromExportURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
