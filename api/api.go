// Package api is what the three HTTP APIs of OpenKPS share: request IDs (Handler) and panic
// recovery (Recover), authentication (Authenticator, behind the Identity interface), the client's IP
// behind trusted proxies, the decoding of JSON bodies (Object), the error core (Errors: one
// table from KPS code to HTTP status, one logging rule, each family's own body), the routing
// of a family's ServeMux with its own 404 and 405 (Serve), connection limits and the health
// checks.
//
// The families live below it — api/kpsv3 (KPS v3 and the inventory), api/keystone (the
// identity routes) and api/nova (OpenStack Compute key pairs) — each with its own sub-mux,
// error body and the narrow interfaces it calls; api/router mounts them by prefix on one
// ServeMux. Packages under api/ import the domain package, this package and their own
// children; never iam, store, tasks or service: they see identity and the services only
// through interfaces, which cmd/kps fills.
package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"

	"github.com/openkps/kps"
)

// Handler gives every request an ID: X-Request-Id, also on the request's context for the
// logs (RequestID).
func Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := newRequestID()
		w.Header().Set("X-Request-Id", id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id)))
	})
}

// Recover, deferred by a family's ServeHTTP, turns a panic into a 500 that fail renders in the
// family's body. The request's headers and body are never dumped: they may carry secrets
// (auth.md §12.5).
func Recover(w http.ResponseWriter, r *http.Request, fail func(w http.ResponseWriter, r *http.Request, err error)) {
	if v := recover(); v != nil {
		if v == http.ErrAbortHandler {
			panic(v)
		}
		fail(w, r, fmt.Errorf("panic: %v", v))
	}
}

func newRequestID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// requestIDKey carries the request ID to code that has the request but not its response, such
// as the log of a refused authentication.
type requestIDKey struct{}

// RequestID is the ID Handler gave the request.
func RequestID(r *http.Request) string {
	id, _ := r.Context().Value(requestIDKey{}).(string)
	return id
}

// Serve serves r with mux when one of its routes matches; otherwise it answers what ServeMux
// would, as a KPS error for the family to render: 405 KPS.6206 with the Allow header, or 404
// KPS.6205. Routing is decided before authentication (kps-v3-api.md §1.4).
func Serve(mux *http.ServeMux, w http.ResponseWriter, r *http.Request, miss func(w http.ResponseWriter, r *http.Request, err error)) {
	h, pattern := mux.Handler(r)
	if pattern != "" {
		mux.ServeHTTP(w, r)
		return
	}
	probe := &statusProbe{header: http.Header{}}
	h.ServeHTTP(probe, r)
	if probe.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", probe.header.Get("Allow"))
		miss(w, r, MethodNotAllowed(r))
		return
	}
	miss(w, r, NoRoute(r))
}

// NoRoute is the 404 KPS.6205 of a path no route serves.
func NoRoute(r *http.Request) error {
	return kps.Errorf(kps.ErrNoRoute, "The API path %s does not exist.", r.URL.Path)
}

// MethodNotAllowed is the 405 KPS.6206 of a route that does not take the method.
func MethodNotAllowed(r *http.Request) error {
	return kps.Errorf(kps.ErrMethod, "Method %s is not allowed on %s.", r.Method, r.URL.Path)
}

// statusProbe records what ServeMux's own not-found or method-not-allowed handler would answer.
type statusProbe struct {
	header http.Header
	status int
}

func (p *statusProbe) Header() http.Header         { return p.header }
func (p *statusProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *statusProbe) WriteHeader(status int)      { p.status = status }
