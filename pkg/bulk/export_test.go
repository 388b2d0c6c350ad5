package bulk

import (
	"context"

	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
)

// Kickoff prepares and sends a kickoff in one call, as the tests do.
func Kickoff(ctx context.Context, c *fhirclient.Client, r KickoffRequest) (*KickoffResult, error) {
	pk, err := r.Prepare()
	if err != nil {
		return nil, err
	}
	return pk.Send(ctx, c)
}
