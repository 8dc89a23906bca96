package vmm

import (
	"io"
	"net/http"
	"strings"

	"gureum/vmm/api/http1"
)

// httpHandler adapts the API's handler to net/http so tests can drive it
// with httptest without a socket.
func httpHandler(h http1.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		resp := h(&http1.Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
			ContentType: r.Header.Get("Content-Type"), Body: body})
		if len(resp.Body) > 0 {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(resp.Status)
		io.Copy(w, strings.NewReader(string(resp.Body)))
	})
}
