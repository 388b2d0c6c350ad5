package tool

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func newRecorder(t *testing.T, got *string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*got = r.Header.Get("Authorization") + "|" + r.Header.Get("X-Site")
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}
