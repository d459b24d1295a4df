// Package router is the HTTP API of OpenKPS as one handler: it mounts the three families — the
// KPS v3 API (api/kpsv3) under /v3/{project_id}/, the identity API (api/keystone) under the
// identity paths of auth.md §1.3, the Nova key pair API (api/nova) under /compute, /v2 and
// /v2.1 — by prefix on one ServeMux, and adds the service-wide routes (/healthz, /readyz,
// /openapi.json). A path no family mounts is the identity family's 404.
//
// It imports api and its families and the domain package; cmd/kps gives it the
// implementations.
package router

import (
	"context"
	"log/slog"
	"net/http"
	"strings"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api"
	"github.com/openkps/kps/api/keystone"
	"github.com/openkps/kps/api/kpsv3"
	"github.com/openkps/kps/api/kpsv3/tasklist"
	"github.com/openkps/kps/api/nova"
)

// Config holds the deployment settings of the HTTP API.
type Config struct {
	// PublicURL is the service's public base URL, used in links.
	PublicURL string
	// ComputeLinkPrefix is <base> of the Nova API's links (nova-keypairs.md §3.3, Nova's
	// compute_link_prefix): scheme, host and path prefix; default PublicURL + "/compute".
	ComputeLinkPrefix string
	// TrustedProxies are the load balancers and reverse proxies whose X-Forwarded-For names
	// the client (auth.md §12.4); empty: the TCP peer is the client.
	TrustedProxies api.Proxies
	// TaskListCacheBytes bounds the rendered running/failed task list pages kept
	// (api/kpsv3/tasklist): 0 means tasklist.DefaultCacheBytes, a negative value keeps none.
	TaskListCacheBytes int64
	// OpenAPI is the API description served at /openapi.json.
	OpenAPI []byte
}

// Deps are the implementations the API serves with; cmd/kps fills them.
type Deps struct {
	// Identity authenticates callers; Tokens issues tokens.
	Identity api.Identity
	Tokens   keystone.Tokens
	// Manager serves the identity management routes: the local identity, nil in external
	// identity mode.
	Manager keystone.Manager

	KeyPairs kps.KeyPairService
	Tasks    kps.TaskService
	Servers  kps.ServerService

	// The read paths (kps.RequestReader, kps.TaskListReader); Reads may be nil.
	Reads     kps.RequestReader
	TaskLists kps.TaskListReader
	// Ping reports whether the database answers, for /readyz; nil: always ready.
	Ping func(ctx context.Context) error

	Log *slog.Logger
}

// New returns the whole HTTP API.
func New(cfg Config, d Deps) http.Handler {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	cfg.PublicURL = strings.TrimSuffix(cfg.PublicURL, "/")
	if cfg.ComputeLinkPrefix == "" {
		cfg.ComputeLinkPrefix = cfg.PublicURL + "/compute"
	}
	errs := &api.Errors{Log: d.Log, PublicURL: cfg.PublicURL}
	auth := &api.Authenticator{Identity: d.Identity, Reads: d.Reads, Proxies: cfg.TrustedProxies, Log: d.Log}

	kpsAPI := kpsv3.New(kpsv3.Services{KeyPairs: d.KeyPairs, Tasks: d.Tasks, Servers: d.Servers,
		Lists: tasklist.New(d.TaskLists, cfg.TaskListCacheBytes)}, auth, errs)
	identity := keystone.New(d.Tokens, d.Manager, auth, errs, cfg.PublicURL)
	compute := nova.New(d.KeyPairs, auth, errs, cfg.ComputeLinkPrefix)

	health := &api.Health{Ping: d.Ping, Log: d.Log, Fail: identity.Fail}
	identity.Handle("GET /healthz", http.HandlerFunc(health.Live))
	identity.Handle("GET /readyz", http.HandlerFunc(health.Ready))
	openAPI := cfg.OpenAPI
	identity.Handle("GET /openapi.json", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(openAPI)
	}))

	m := &mux{ServeMux: http.NewServeMux(), families: map[string]http.Handler{}, fallback: identity}
	// The identity paths (auth.md §1.3): the version documents, and /v3/<segment> for the
	// literal segments of the identity API, each with and without what follows (a registered
	// "/x/" alone would have ServeMux redirect "/x").
	m.mount(identity, "/{$}", "/v3", "/v3/{$}", "/v3.0/", "/healthz", "/readyz", "/openapi.json")
	for _, seg := range []string{"auth", "projects", "users", "domains", "roles", "regions"} {
		m.mount(identity, "/v3/"+seg, "/v3/"+seg+"/")
	}
	// Every other /v3/<segment> is a project (kps-v3-api.md §1.3).
	m.mount(kpsAPI, "/v3/{project_id}", "/v3/{project_id}/")
	m.mount(compute, "/compute", "/compute/", "/v2/", "/v2.1/")
	// Huawei's Nova trees have no document of their own at /v2 and /v2.1: not found, in the
	// identity family's body as every path no family serves (and no redirect to "/v2/").
	m.mount(identity, "/v2", "/v2.1")
	return api.Handler(m)
}

// mux chooses the family of a request by the pattern its path matches, without running what
// ServeMux would for a path that is not canonical (a redirect): the family's own ServeMux
// decides about that path, as it decides 404 and 405.
type mux struct {
	*http.ServeMux
	families map[string]http.Handler // pattern → family
	fallback http.Handler
}

func (m *mux) mount(family http.Handler, patterns ...string) {
	for _, p := range patterns {
		m.Handle(p, family)
		m.families[p] = family
	}
}

func (m *mux) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, pattern := m.Handler(r)
	family := m.families[pattern]
	if family == nil {
		family = m.fallback
	}
	family.ServeHTTP(w, r)
}
