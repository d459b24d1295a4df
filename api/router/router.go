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
	"slices"
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
	// Metrics, when set, is served at GET /metrics (the Prometheus exposition), beside the
	// health checks and with their standing: no authentication (docs/operations.md).
	Metrics http.Handler
	// AccessLog writes one access line per request on Deps.Log (api.Edge).
	AccessLog bool
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
	// Drift serves the drift checks (an OpenKPS extension); nil: not offered.
	Drift kps.DriftService
	// Rotations serves the rotations extension (kps-v3-api.md §8); nil: its routes answer 404.
	Rotations kps.RotationService

	// The read paths (kps.RequestReader, kps.TaskListReader); Reads may be nil.
	Reads     kps.RequestReader
	TaskLists kps.TaskListReader
	// Ping reports whether the database answers, for /readyz; nil: always ready.
	Ping func(ctx context.Context) error
	// Metrics records the requests and the refused authentications; nil records nothing.
	Metrics api.Metrics

	// Audit records the audit events of refused calls and authentications; AuditReader serves
	// a project's audit trail to its admin. Both nil: no audit trail (docs/spec/audit.md).
	Audit       api.AuditRecorder
	AuditReader kps.AuditReader

	Log *slog.Logger
}

// New returns the whole HTTP API.
func New(cfg Config, d Deps) http.Handler {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	kpsAPI, identity, compute := families(cfg, d)

	m := &mux{ServeMux: http.NewServeMux(), families: map[string]family{}, fallback: family{identity, Identity}}
	// The identity paths (auth.md §1.3): the version documents, and /v3/<segment> for the
	// literal segments of the identity API, each with and without what follows (a registered
	// "/x/" alone would have ServeMux redirect "/x").
	m.mount(identity, Identity, "/{$}", "/v3", "/v3/{$}", "/v3.0/", "/healthz", "/readyz", "/openapi.json", "/metrics")
	for _, seg := range []string{"auth", "projects", "users", "domains", "roles", "regions", "audit-events"} {
		m.mount(identity, Identity, "/v3/"+seg, "/v3/"+seg+"/")
	}
	// Every other /v3/<segment> is a project (kps-v3-api.md §1.3).
	m.mount(kpsAPI, KPS, "/v3/{project_id}", "/v3/{project_id}/")
	m.mount(compute, Nova, "/compute", "/compute/", "/v2/", "/v2.1/")
	// Huawei's Nova trees have no document of their own at /v2 and /v2.1: not found, in the
	// identity family's body as every path no family serves (and no redirect to "/v2/").
	m.mount(identity, Identity, "/v2", "/v2.1")
	edge := &api.Edge{Proxies: cfg.TrustedProxies, Metrics: d.Metrics}
	if cfg.AccessLog {
		edge.Access = d.Log
	}
	return edge.Handler(m)
}

// families builds the three families on d (whose Log is set), the service-wide routes on the
// identity family.
func families(cfg Config, d Deps) (*kpsv3.API, *keystone.API, *nova.API) {
	cfg.PublicURL = strings.TrimSuffix(cfg.PublicURL, "/")
	if cfg.ComputeLinkPrefix == "" {
		cfg.ComputeLinkPrefix = cfg.PublicURL + "/compute"
	}
	errs := &api.Errors{Log: d.Log, PublicURL: cfg.PublicURL}
	auth := &api.Authenticator{Identity: d.Identity, Reads: d.Reads, Proxies: cfg.TrustedProxies, Log: d.Log, Metrics: d.Metrics, Audit: d.Audit}
	kpsAPI := kpsv3.New(kpsv3.Services{KeyPairs: d.KeyPairs, Tasks: d.Tasks, Servers: d.Servers, Audit: d.AuditReader, Drift: d.Drift, Rotations: d.Rotations,
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
	if cfg.Metrics != nil {
		identity.Handle("GET /metrics", cfg.Metrics)
	}
	return kpsAPI, identity, compute
}

// Routes are the "METHOD /path" patterns of the API New builds with cfg and d: what its families
// registered, in no order (docs/openapi_test.go compares them with openapi.json). Patterns
// without a method (the mounts) are not routes.
func Routes(cfg Config, d Deps) []string {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	kpsAPI, identity, compute := families(cfg, d)
	var routes []string
	for _, p := range slices.Concat(kpsAPI.Routes(), identity.Routes(), compute.Routes()) {
		if strings.Contains(p, " ") {
			routes = append(routes, p)
		}
	}
	return routes
}

// The families' names in the metrics and access lines (api.SetFamily).
const (
	KPS      = "kps"
	Identity = "identity"
	Nova     = "nova"
)

// family is a mounted family and its name.
type family struct {
	http.Handler
	name string
}

// mux chooses the family of a request by the pattern its path matches, without running what
// ServeMux would for a path that is not canonical (a redirect): the family's own ServeMux
// decides about that path, as it decides 404 and 405.
type mux struct {
	*http.ServeMux
	families map[string]family // pattern → family
	fallback family
}

func (m *mux) mount(h http.Handler, name string, patterns ...string) {
	for _, p := range patterns {
		m.Handle(p, h)
		m.families[p] = family{h, name}
	}
}

func (m *mux) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, pattern := m.Handler(r)
	f, ok := m.families[pattern]
	if !ok {
		f = m.fallback
	}
	api.SetFamily(r, f.name)
	f.ServeHTTP(w, r)
}
