package tool

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/bulkpipe/bulkpipe/pkg/smartauth"
)

// scopeHint adds to a token request refused with invalid_scope how to ask for other scopes: the
// default scopes are a guess from the resource types, and only the user knows what the server
// grants. Other errors, and nil, pass through.
func scopeHint(err error) error {
	se, ok := errors.AsType[*smartauth.ScopeError](err)
	if !ok {
		return err
	}
	keep := slices.DeleteFunc(slices.Clone(se.Requested), func(s string) bool { return slices.Contains(se.Refused, s) })
	if len(se.Refused) > 0 && len(keep) > 0 {
		return fmt.Errorf("%w; give --scope (or BULK_SCOPE) with the scopes this server grants, such as --scope '%s'",
			err, strings.Join(keep, " "))
	}
	return fmt.Errorf("%w; give --scope (or BULK_SCOPE) with the scopes this server grants", err)
}
