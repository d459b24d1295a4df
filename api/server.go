// Package api serves the KPS v3 HTTP API, the inventory extension and the identity routes
// clients call: routing, authentication, request decoding, the one error renderer and the
// handlers. Handlers follow one recipe: decode → validate → authorize → act → render.
package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/openkps/kps"
)

// Identity authenticates callers and issues tokens (implemented by the iam package).
type Identity interface {
	// Login handles the body of POST /v3/auth/tokens; subjectToken is the X-Auth-Token header
	// (token method). It returns the new token and the response body.
	Login(ctx context.Context, body []byte, headerToken string) (token string, resp any, err error)
	// Authenticate validates a token for a request that targets projectID.
	Authenticate(ctx context.Context, token, projectID string) (*kps.Principal, error)
}

// Dispatcher hands tasks to the workers (implemented by the tasks package).
type Dispatcher interface {
	Hold(taskID string, c kps.Credential)
	Forget(taskID string)
	Wake()
}

// Config holds deployment settings the handlers need.
type Config struct {
	Region       string
	PublicURL    string
	KeyPairQuota int // key pairs per project, default 1000
	MaxQueued    int // READY tasks service-wide before 503 KPS.6502; 0 means unlimited
	OpenAPI      []byte
}

// Server is the HTTP API. Build it with New and serve Handler().
type Server struct {
	store    kps.Store
	identity Identity
	tasks    Dispatcher
	sealer   kps.Sealer
	log      *slog.Logger
	cfg      Config

	kpsMux      *http.ServeMux
	identityMux *http.ServeMux
}

// New returns the API server.
func New(store kps.Store, identity Identity, tasks Dispatcher, sealer kps.Sealer, log *slog.Logger, cfg Config) *Server {
	if cfg.KeyPairQuota <= 0 {
		cfg.KeyPairQuota = 1000
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{store: store, identity: identity, tasks: tasks, sealer: sealer, log: log, cfg: cfg,
		kpsMux: http.NewServeMux(), identityMux: http.NewServeMux()}
	s.routes()
	return s
}

// identitySegments are the literal second segments of identity paths (auth.md §1.3).
var identitySegments = map[string]bool{"auth": true, "projects": true, "users": true, "domains": true, "roles": true, "regions": true}

// isIdentityPath reports whether a path belongs to the identity API rather than to
// /v3/{project_id}/….
func isIdentityPath(p string) bool {
	if p == "/" || p == "/v3" || p == "/v3/" || strings.HasPrefix(p, "/v3.0/") {
		return true
	}
	rest, ok := strings.CutPrefix(p, "/v3/")
	if !ok {
		return !strings.HasPrefix(p, "/v3")
	}
	seg, _, _ := strings.Cut(rest, "/")
	return identitySegments[seg]
}

func (s *Server) routes() {
	id := s.identityMux
	id.HandleFunc("GET /{$}", s.versions)
	id.HandleFunc("GET /v3", s.version)
	id.HandleFunc("GET /v3/{$}", s.version)
	id.HandleFunc("POST /v3/auth/tokens", s.issueToken)
	id.HandleFunc("GET /openapi.json", s.openAPI)
	s.identityRoutes(id)

	k := s.kpsMux
	route := func(pattern string, min kps.Role, h handlerFunc) { k.Handle(pattern, s.authorized(min, h)) }
	route("POST /v3/{project_id}/servers", kps.RoleMember, s.createServer)
	route("GET /v3/{project_id}/servers", kps.RoleReader, s.listServers)
	route("GET /v3/{project_id}/servers/{server_id}", kps.RoleReader, s.showServer)
	route("PUT /v3/{project_id}/servers/{server_id}", kps.RoleMember, s.updateServer)
	route("DELETE /v3/{project_id}/servers/{server_id}", kps.RoleMember, s.deleteServer)

	route("POST /v3/{project_id}/keypairs", kps.RoleMember, s.createKeyPair)
	route("GET /v3/{project_id}/keypairs", kps.RoleReader, s.listKeyPairs)
	route("GET /v3/{project_id}/keypairs/{keypair_name}", kps.RoleReader, s.showKeyPair)
	route("PUT /v3/{project_id}/keypairs/{keypair_name}", kps.RoleMember, s.updateKeyPair)
	route("DELETE /v3/{project_id}/keypairs/{keypair_name}", kps.RoleMember, s.deleteKeyPair)

	route("POST /v3/{project_id}/keypairs/batch-import", kps.RoleMember, s.batchImportKeyPairs)
	route("POST /v3/{project_id}/keypairs/private-key/import", kps.RoleMember, s.importPrivateKey)
	route("POST /v3/{project_id}/keypairs/private-key/export", kps.RoleMember, s.exportPrivateKey)
	route("POST /v3/{project_id}/keypairs/private-key/batch-export", kps.RoleMember, s.batchExportPrivateKeys)
	route("DELETE /v3/{project_id}/keypairs/{keypair_name}/private-key", kps.RoleMember, s.clearPrivateKey)
	route("POST /v3/{project_id}/keypairs/associate", kps.RoleMember, s.associate)
	route("POST /v3/{project_id}/keypairs/batch-associate", kps.RoleMember, s.batchAssociate)
	route("POST /v3/{project_id}/keypairs/disassociate", kps.RoleMember, s.disassociate)
	route("GET /v3/{project_id}/tasks/{task_id}", kps.RoleReader, s.showTask)
	route("GET /v3/{project_id}/running-tasks", kps.RoleReader, s.listRunningTasks)
	route("GET /v3/{project_id}/failed-tasks", kps.RoleReader, s.listFailedTasks)
	route("DELETE /v3/{project_id}/failed-tasks/{task_id}", kps.RoleMember, s.deleteFailedTask)
	route("DELETE /v3/{project_id}/failed-tasks", kps.RoleMember, s.deleteFailedTasks)
}

// Handler returns the whole HTTP API: request IDs, panic recovery, and the split between the
// identity and the KPS routes (auth.md §1.3).
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", newRequestID())
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				// Never dump headers or bodies: they may carry secrets (auth.md §12.5).
				s.renderError(w, r, fmt.Errorf("panic: %v", v))
			}
		}()
		mux := s.kpsMux
		if isIdentityPath(r.URL.Path) {
			mux = s.identityMux
		}
		h, pattern := mux.Handler(r)
		if pattern == "" {
			// Routing is decided before authentication (§1.4): 404 or 405 with a KPS code.
			probe := &statusProbe{header: http.Header{}}
			h.ServeHTTP(probe, r)
			if probe.status == http.StatusMethodNotAllowed {
				w.Header().Set("Allow", probe.header.Get("Allow"))
				s.renderError(w, r, kps.Errorf(kps.ErrMethod, "Method %s is not allowed on %s.", r.Method, r.URL.Path))
				return
			}
			s.renderError(w, r, kps.Errorf(kps.ErrNoRoute, "The API path %s does not exist.", r.URL.Path))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// statusProbe records what ServeMux's own not-found or method-not-allowed handler would answer.
type statusProbe struct {
	header http.Header
	status int
}

func (p *statusProbe) Header() http.Header         { return p.header }
func (p *statusProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *statusProbe) WriteHeader(status int)      { p.status = status }

func newRequestID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// handlerFunc is a KPS handler: it receives the authenticated principal and returns an error
// for the one renderer.
type handlerFunc func(w http.ResponseWriter, r *http.Request, p *kps.Principal) error

// authorized authenticates the request for its path project and requires role min
// (auth.md §4.2–4.3, §3.3).
func (s *Server) authorized(min kps.Role, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.authenticate(r)
		if err == nil && !p.Has(min) {
			err = kps.Errorf(kps.ErrForbidden, "The user has no permission to perform this operation.")
		}
		if err == nil {
			err = h(w, r, p)
		}
		if err != nil {
			s.renderError(w, r, err)
		}
	})
}

func (s *Server) authenticate(r *http.Request) (*kps.Principal, error) {
	project := r.PathValue("project_id")
	authz := r.Header.Get("Authorization")
	token := r.Header.Get("X-Auth-Token")
	signed := strings.HasPrefix(authz, "SDK-HMAC-SHA256 ")
	switch {
	case signed && token != "":
		return nil, kps.Errorf(kps.ErrBadCredentials, "Incorrect authentication information: both X-Auth-Token and an AK/SK signature were sent.")
	case signed:
		// AK/SK verification arrives with the identity issue; until then signatures are refused.
		return nil, kps.Errorf(kps.ErrBadCredentials, "Incorrect authentication information: the signing algorithm is not supported.")
	case token == "":
		return nil, kps.Errorf(kps.ErrUnauthenticated, "Authentication required: send X-Auth-Token or an AK/SK signature.")
	}
	p, err := s.identity.Authenticate(r.Context(), token, project)
	// 401 is decided before any 403; among the 403s the header mismatch (auth.md §4.3 row 1)
	// comes first.
	if hp := r.Header.Get("X-Project-Id"); hp != "" && hp != project && (err == nil || kps.ErrorCode(err) == kps.ErrProjectMismatch || kps.ErrorCode(err) == kps.ErrForbidden) {
		return nil, kps.Errorf(kps.ErrProjectMismatch, "Project mismatch: X-Project-Id %s differs from the project %s in the path.", clip(hp), clip(project))
	}
	return p, err
}

// clip shortens request values quoted in messages.
func clip(v string) string {
	if len(v) > 64 {
		return v[:64] + "…"
	}
	return v
}
