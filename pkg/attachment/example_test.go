package attachment_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/bulkpipe/bulkpipe/pkg/attachment"
	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
	"github.com/bulkpipe/bulkpipe/pkg/fhirtest"
)

// Inlining a verified file on its way to its final name, as bulk-fetch --inline does through
// its PostVerify hook: files of other types are copied without being read line by line.
func ExampleInliner_Stream() {
	srv, _ := fhirtest.NewServer(fhirtest.Options{Patients: 1})
	defer srv.Close()
	client, _ := fhirclient.New(fhirclient.Options{FHIRBase: srv.URL()})
	in, err := attachment.New(attachment.Options{
		Policy:  attachment.Policy{MaxSize: 64 << 20},
		Fetcher: client,
		OnDownload: func(d attachment.Download) {
			if id, _ := d.Event(); id == "download_error" {
				fmt.Println("failed:", d.Err)
			}
		},
	})
	if err != nil {
		panic(err)
	}
	postVerify := func(ctx context.Context, resourceType string, r io.Reader, w io.Writer) (bool, error) {
		if !in.Targets(resourceType) {
			_, err := io.Copy(w, r)
			return false, err
		}
		st, err := in.Stream(ctx, resourceType+".000.ndjson", r, w)
		return st.Changed > 0, err
	}
	file := `{"resourceType":"DocumentReference","content":[{"attachment":{"contentType":"text/plain","url":"Binary/hello-world"}}]}` + "\n"
	changed, err := postVerify(context.Background(), "DocumentReference", strings.NewReader(file), os.Stdout)
	fmt.Println(changed, err)
	// Output:
	// {"resourceType":"DocumentReference","content":[{"attachment":{"contentType":"text/plain; charset=utf-8","url":"Binary/hello-world","data":"aGVsbG8gd29ybGQ=","size":11,"hash":"Kq5sNclPz7QV2+lfQIuc6R7oRu0="}}]}
	// true <nil>
}
