package api

import (
	"net/http"
	"strconv"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
)

// serveHTTP routes a request to its operation, and answers a path no
// operation serves (404) or a method the path does not take (405, with
// Allow) with a problem document like every other error, where the
// mux would answer text/plain.
func (a *API) serveHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := a.mux.Handler(r)
	if pattern != "" {
		a.mux.ServeHTTP(w, r)
		return
	}
	// The mux's own 404 or 405 handler: keep its status and Allow header,
	// drop its text. (Its redirects to a cleaned path pass: the cleaned
	// path then answers.)
	rec := &statusRecorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	switch rec.status {
	case http.StatusNotFound:
		a.writeProblem(w, r, http.StatusNotFound, "path "+strconv.Quote(r.URL.Path)+" not found")
	case http.StatusMethodNotAllowed:
		allow := rec.header.Get("Allow")
		w.Header().Set("Allow", allow)
		a.writeProblem(w, r, http.StatusMethodNotAllowed,
			"method "+r.Method+" is not allowed on "+strconv.Quote(r.URL.Path)+"; allowed: "+allow)
	default:
		a.mux.ServeHTTP(w, r)
	}
}

// WriteProblem answers a request that no operation serves (a route of
// the server around the API) with a problem document like the API's.
func (a *API) WriteProblem(w http.ResponseWriter, r *http.Request, status int, detail string) {
	a.writeProblem(w, r, status, detail)
}

// writeProblem answers a request that no operation serves with a problem
// document, with the request ID as the operations do.
func (a *API) writeProblem(w http.ResponseWriter, r *http.Request, status int, detail string) {
	ctx := humago.NewContext(&huma.Operation{Method: r.Method, Path: r.URL.Path}, r, w)
	a.requestID(ctx, func(ctx huma.Context) {
		_ = huma.WriteErr(a.huma, ctx, status, detail)
	})
}

// statusRecorder keeps a handler's status and headers and drops its body.
type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header         { return r.header }
func (r *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *statusRecorder) WriteHeader(status int)      { r.status = status }
