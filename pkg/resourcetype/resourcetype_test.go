package resourcetype

import "testing"

func TestKnown(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"Patient", true}, {"Observation", true}, {"DocumentReference", true},
		{"MedicinalProductDefinition", true}, // R4B/R5
		{"DeviceUseStatement", true},         // R4 only
		{"DeviceUsage", true},                // R5 only
		{"patient", false}, {"Patinet", false}, {"", false}, {"Type1234", false}, {"Resource", false},
	}
	for _, tt := range tests {
		if got := Known(tt.name); got != tt.want {
			t.Errorf("Known(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestSuggest(t *testing.T) {
	tests := []struct{ in, want string }{
		{"patient", "Patient"},
		{"Patinet", "Patient"},
		{"Obsevation", "Observation"},
		{"observation", "Observation"},
		{"CONDITION", "Condition"},
		{"Encountr", "Encounter"},
		{"Patient", ""}, // already right
		{"Xyzzy", ""},
		{"Lst", "List"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Suggest(tt.in); got != tt.want {
			t.Errorf("Suggest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestComplete(t *testing.T) {
	if len(names) < 150 {
		t.Fatalf("%d known types, want the R4/R4B/R5 union (over 150)", len(names))
	}
}

func FuzzSuggest(f *testing.F) {
	for _, s := range []string{"patient", "Patinet", "", "ÿÿÿ", "MedicationRequest"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Suggest(s)
		if got != "" && !Known(got) {
			t.Errorf("Suggest(%q) = %q, not a known type", s, got)
		}
		if Known(s) && got != "" {
			t.Errorf("Suggest(%q) = %q for a known type, want \"\"", s, got)
		}
	})
}
