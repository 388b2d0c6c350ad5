package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/bulkpipe/bulkpipe/pkg/bulk"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/tool"
)

// checkCapabilities compares the kickoff with what the server's CapabilityStatement declares,
// before it is sent: a level the server declares no export for ends the run (the server would
// refuse it, maybe after a long wait), a parameter it does not declare is a warning (it may be
// refused or, worse, silently ignored). Without a statement there is nothing to compare with.
func checkCapabilities(ctx context.Context, st *tool.Status, client *fhirclient.Client, capa *fhirclient.Capability, pk *bulk.PreparedKickoff) error {
	if capa == nil {
		return nil
	}
	caps, err := bulk.ServerCapabilities(ctx, client, capa.Raw)
	if err != nil {
		return err
	}
	for _, n := range caps.Notes {
		st.Line("%s (its parameters are not checked)", n)
	}
	undeclared, err := caps.Check(pk)
	if _, ok := errors.AsType[*bulk.UnsupportedLevelError](err); ok {
		return fmt.Errorf("%w, or give --ignore-capabilities to send it anyway", err)
	}
	if err != nil {
		return err
	}
	for _, u := range undeclared {
		st.Warn("%s is not among the parameters this server declares for %s export (%s): it may refuse it, or ignore it%s",
			u.Param, u.Level.Name(), declaredBy(u.Definitions), ignoredHint(u.Param))
	}
	return nil
}

// declaredBy says where the server's parameter list comes from.
func declaredBy(defs []string) string {
	if len(defs) == 0 {
		return "CapabilityStatement"
	}
	return "OperationDefinition " + strings.Join(defs, " and ")
}

// ignoredHint says what an ignored parameter would do to the export, where it matters most.
func ignoredHint(param string) string {
	switch param {
	case bulk.ParamTypeFilter:
		return " and export everything of the type (ndjson-merge reports slices that hold what their filter excludes)"
	case bulk.ParamSince, bulk.ParamUntil:
		return " and export resources of any date"
	}
	return ""
}
