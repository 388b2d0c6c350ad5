package tool

import (
	"errors"
	"fmt"
	"testing"

	"github.com/bulkpipe/bulkpipe/pkg/smartauth"
)

func TestScopeHint(t *testing.T) {
	te := &smartauth.TokenError{URL: "https://ehr.example/token", Status: "400 Bad Request", StatusCode: 400, Code: "invalid_scope"}
	other := errors.New("connection refused")
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{other, "connection refused"},
		{fmt.Errorf("request access token: %w", &smartauth.ScopeError{TokenError: te,
			Requested: []string{"system/Patient.read", "system/Binary.read"}, Refused: []string{"system/Binary.read"}}),
			"request access token: POST https://ehr.example/token: 400 Bad Request: invalid_scope (refused: system/Binary.read); " +
				"give --scope (or BULK_SCOPE) with the scopes this server grants, such as --scope 'system/Patient.read'"},
		// Which scope was refused is unknown, or every one was: no example to offer.
		{&smartauth.ScopeError{TokenError: te, Requested: []string{"system/*.read"}},
			"POST https://ehr.example/token: 400 Bad Request: invalid_scope (asked for: system/*.read); " +
				"give --scope (or BULK_SCOPE) with the scopes this server grants"},
		{&smartauth.ScopeError{TokenError: te, Requested: []string{"system/Binary.read"}, Refused: []string{"system/Binary.read"}},
			"POST https://ehr.example/token: 400 Bad Request: invalid_scope (refused: system/Binary.read); " +
				"give --scope (or BULK_SCOPE) with the scopes this server grants"},
	}
	for _, tt := range tests {
		got := scopeHint(tt.err)
		if msg := fmt.Sprint(got); (got == nil) != (tt.want == "") || got != nil && msg != tt.want {
			t.Errorf("scopeHint(%v) = %v, want %q", tt.err, got, tt.want)
		}
		if tt.err != nil && !errors.Is(got, tt.err) {
			t.Errorf("scopeHint(%v) lost the error chain", tt.err)
		}
	}
}
