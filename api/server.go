// Package api serves the KPS v3 HTTP API, the inventory extension and the identity routes
// clients call: routing, authentication, request decoding, the one error renderer and the
// handlers. Handlers follow one recipe: decode → validate → authorize → act → render.
package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"

	"github.com/openkps/kps"
	"github.com/openkps/kps/iam"
)

// Identity authenticates callers and issues tokens (implemented by the iam package). clientIP
// is the TCP peer of the request, which the lockout of auth.md §12.4 counts failures against;
// a locked client or credential is refused with 429 KPS.6105 by an error that has a
// RetryAfter() time.Duration method.
type Identity interface {
	// Login handles the body of POST /v3/auth/tokens; headerToken is the X-Auth-Token header
	// (token method). It returns the new token and the response body.
	Login(ctx context.Context, body []byte, headerToken, clientIP string) (token string, resp any, err error)
	// Authenticate validates a token for a request that targets projectID ("" on identity
	// routes).
	Authenticate(ctx context.Context, token, projectID, clientIP string) (*kps.Principal, error)
	// AuthenticateSignature verifies an AK/SK request (auth.md §6.3) that targets projectID
	// ("" on identity routes); body is the request body, read in full within the route's
	// limit, and r.Body must not be read.
	AuthenticateSignature(ctx context.Context, r *http.Request, body []byte, projectID, clientIP string) (*kps.Principal, error)
}

// Dispatcher hands tasks to the workers (implemented by the tasks package).
type Dispatcher interface {
	// Hold keeps the caller's credential of a task in this process's memory and returns the
	// holder's ID, recorded with the task so that only the holder claims it while it lives.
	Hold(taskID string, c kps.Credential) (holder string)
	Forget(taskID string)
	Wake()
}

// Config holds deployment settings the handlers need.
type Config struct {
	Region       string
	PublicURL    string
	KeyPairQuota int // key pairs per project, default 1000
	MaxQueued    int // READY tasks service-wide before 503 KPS.6502; 0 means unlimited
	// MaxProjectTasks is how many READY and RUNNING tasks one project may have before 429
	// KPS.6403, so that one project cannot fill the service-wide queue; 0 means unlimited.
	MaxProjectTasks int
	// ServerQuota is how many servers one project may register (403 KPS.6402); 0 means
	// unlimited.
	ServerQuota int
	OpenAPI     []byte
	// TaskListCacheBytes bounds the rendered running/failed task list pages kept (api/cache.go):
	// 0 means DefaultTaskListCacheBytes, a negative value keeps none.
	TaskListCacheBytes int64

	// ComputeLinkPrefix is <base> of the Nova API's links (nova-keypairs.md §3.3, Nova's
	// compute_link_prefix): scheme, host and path prefix; default PublicURL + "/compute".
	ComputeLinkPrefix string
	// KeyPairsPerUser is Nova's per-user key pair limit (nova-keypairs.md §11): nil means
	// Nova's default of 100, a negative value no limit, 0 no creation through the Nova API.
	KeyPairsPerUser *int
	// TrustedProxies are the load balancers and reverse proxies whose X-Forwarded-For names
	// the client (auth.md §12.4, auth.trusted_proxies); empty: the TCP peer is the client.
	TrustedProxies []netip.Prefix
	// AllowedTargets are the networks and ports servers may point at (--allowed-targets):
	// registering or moving a server elsewhere is KPS.6023; the zero value allows everything.
	AllowedTargets kps.AllowedTargets
}

// Server is the HTTP API. Build it with New and serve Handler().
type Server struct {
	store    kps.Store
	identity Identity
	tasks    Dispatcher
	sealer   kps.Sealer
	log      *slog.Logger
	cfg      Config
	pages    *pageCache

	kpsMux      *http.ServeMux
	identityMux *http.ServeMux
}

// New returns the API server.
func New(store kps.Store, identity Identity, tasks Dispatcher, sealer kps.Sealer, log *slog.Logger, cfg Config) *Server {
	if cfg.KeyPairQuota <= 0 {
		cfg.KeyPairQuota = 1000
	}
	if cfg.ComputeLinkPrefix == "" {
		cfg.ComputeLinkPrefix = cfg.PublicURL + "/compute"
	}
	cfg.ComputeLinkPrefix = strings.TrimSuffix(cfg.ComputeLinkPrefix, "/")
	if cfg.KeyPairsPerUser == nil {
		perUser := novaUserKeyPairs
		cfg.KeyPairsPerUser = &perUser
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{store: store, identity: identity, tasks: tasks, sealer: sealer, log: log, cfg: cfg,
		pages: newPageCache(cfg.TaskListCacheBytes), kpsMux: http.NewServeMux(), identityMux: http.NewServeMux()}
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
	// Load balancer checks (docs/deployment.md): liveness, and readiness that follows the database.
	id.HandleFunc("GET /healthz", s.healthz)
	id.HandleFunc("GET /readyz", s.readyz)
	s.identityRoutes(id)
	s.novaRoutes(id)

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
	route("POST /v3/{project_id}/keypairs/private-key/export", exportRole, s.exportPrivateKey)
	route("POST /v3/{project_id}/keypairs/private-key/batch-export", exportRole, s.batchExportPrivateKeys)
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
		id := newRequestID()
		w.Header().Set("X-Request-Id", id)
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))
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
			// The Huawei SDK quotes this header in its IAM error messages (auth.md §8).
			w.Header().Set("X-IAM-Trace-Id", id)
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

// requestIDKey carries the request ID to code that has the request but not its response, such
// as the log of a refused authentication.
type requestIDKey struct{}

func requestID(r *http.Request) string {
	id, _ := r.Context().Value(requestIDKey{}).(string)
	return id
}

// requestReader is a store that makes the reads every authenticated request of a project
// needs — its lockout check, the identity version of the token validation cache, the
// project's task version for the task list cache — in one round trip (store.DB on PostgreSQL;
// on SQLite they cost none and the context comes back unchanged).
type requestReader interface {
	WithRequestReads(ctx context.Context, projectID string) context.Context
}

// handlerFunc is a KPS handler: it receives the authenticated principal and returns an error
// for the one renderer.
type handlerFunc func(w http.ResponseWriter, r *http.Request, p *kps.Principal) error

// authorized authenticates the request for its path project and requires role min
// (auth.md §4.2–4.3, §3.3).
func (s *Server) authorized(min kps.Role, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rr, ok := s.store.(requestReader); ok {
			if ctx := rr.WithRequestReads(r.Context(), r.PathValue("project_id")); ctx != r.Context() {
				r = r.WithContext(ctx)
			}
		}
		p, err := s.authenticate(r)
		if err == nil && !p.Has(min) {
			// Row 8 of auth.md §4.3, logged like the refusals of authenticate.
			err = &iam.Failure{Reason: "role-too-low", Err: kps.Errorf(kps.ErrForbidden, "The user has no permission to perform this operation.")}
			s.logRefusal(r, "authentication refused", err)
		}
		if err == nil {
			err = h(w, r, p)
		}
		if err != nil {
			s.renderError(w, r, err)
		}
	})
}

// authenticate runs the request pipeline of auth.md §4.2–4.3 for the route r matched: it
// detects the credential, verifies it for the target project (the path project on KPS routes,
// none on identity routes, where X-Project-Id is ignored) and applies the scope checks that
// only the router can (rows 1, 2 for tokens and 6). An AK/SK request's body is read here,
// within the route's limit (413 before the signature is checked), and put back on r.Body for
// the handler. Every refusal is logged at INFO without secrets (§12.5).
func (s *Server) authenticate(r *http.Request) (*kps.Principal, error) {
	p, err := s.verifyCredentials(r)
	if err != nil {
		s.logRefusal(r, "authentication refused", err)
	}
	return p, err
}

func (s *Server) verifyCredentials(r *http.Request) (*kps.Principal, error) {
	// Nova routes (api/nova.go) live on the identity mux but act on a project like KPS routes.
	identityRoute := isIdentityPath(r.URL.Path) && !isNovaPath(r.URL.Path)
	project := r.PathValue("project_id")
	token := r.Header.Get("X-Auth-Token")
	signed := iam.IsSignatureScheme(r.Header.Get("Authorization"))
	var p *kps.Principal
	var err error
	switch {
	case signed && token != "":
		return nil, iam.SignatureFailure(iam.ReasonConflictingCredentials)
	case signed:
		limit := int64(maxBody)
		if identityRoute {
			limit = maxIdentityBody
		}
		body, rerr := readSignedBody(r, limit)
		if rerr != nil {
			return nil, rerr
		}
		p, err = s.identity.AuthenticateSignature(r.Context(), r, body, project, s.clientIP(r))
	case token == "":
		return nil, kps.Errorf(kps.ErrUnauthenticated, "Authentication required: send X-Auth-Token or an AK/SK signature.")
	default:
		p, err = s.identity.Authenticate(r.Context(), token, project, s.clientIP(r))
	}
	// 401 is decided before any 403; among the 403s the header mismatch (auth.md §4.3 row 1)
	// comes first.
	if hp := r.Header.Get("X-Project-Id"); !identityRoute && hp != "" && hp != project && (err == nil || kps.ErrorCode(err) == kps.ErrProjectMismatch || kps.ErrorCode(err) == kps.ErrForbidden) {
		return nil, kps.Errorf(kps.ErrProjectMismatch, "Project mismatch: X-Project-Id %s differs from the project %s in the path.", clip(hp), clip(project))
	}
	if err != nil {
		return nil, err
	}
	// Row 2, for tokens: the signature check has applied it already.
	if hd := r.Header.Get("X-Domain-Id"); hd != "" && hd != p.DomainID {
		same, err := s.sameDomain(r.Context(), hd, p)
		if err != nil {
			return nil, err
		}
		if !same {
			return nil, kps.Errorf(kps.ErrProjectMismatch, "Domain mismatch: X-Domain-Id %s differs from the caller's domain.", clip(hd))
		}
	}
	// Row 6: every KPS route has a path project, so this only guards the routing table.
	if !identityRoute && project == "" {
		return nil, kps.Errorf(kps.ErrProjectMismatch, "Project mismatch: the request does not name a project.")
	}
	return p, nil
}

// domainAliases is an identity that takes another name for a domain's ID (iam.Service: "default"
// for the operator domain of a store bootstrapped before it had that ID, auth.md §3.7).
type domainAliases interface {
	SameDomain(ctx context.Context, named string, p *kps.Principal) (bool, error)
	ResolveDomainID(ctx context.Context, id string) (string, error)
}

// sameDomain reports whether the domain ID a request names is the principal's domain.
func (s *Server) sameDomain(ctx context.Context, named string, p *kps.Principal) (bool, error) {
	if a, ok := s.identity.(domainAliases); ok {
		return a.SameDomain(ctx, named, p)
	}
	return named == p.DomainID, nil
}

// resolveDomainID returns the ID of the domain a request's domain ID names.
func (s *Server) resolveDomainID(ctx context.Context, id string) (string, error) {
	if a, ok := s.identity.(domainAliases); ok {
		return a.ResolveDomainID(ctx, id)
	}
	return id, nil
}

// readSignedBody reads the whole body of an AK/SK request, which the signature covers, and
// puts the bytes back on r.Body for the handler. Too large is 413 KPS.6020 (auth.md §6.3
// step 3), decided before the signature.
func readSignedBody(r *http.Request, limit int64) ([]byte, error) {
	body, err := readLimited(r, limit)
	if err != nil {
		return nil, err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, nil
}

// refusalCodes are the codes of an authentication or authorization refusal, which are logged;
// anything else (a body too large, an internal error) is not a refusal.
var refusalCodes = map[string]bool{
	kps.ErrUnauthenticated: true, kps.ErrBadCredentials: true, kps.ErrProjectMismatch: true,
	kps.ErrLockedOut: true, kps.ErrLoginFailed: true, kps.ErrScope: true, kps.ErrForbidden: true,
}

// logRefusal logs a refused request at INFO, as msg, with what diagnoses it and nothing that
// authenticates (auth.md §12.5): the reason key, the user a login or password change named (their
// ID, or the name as given), the AK or the token's fingerprint, the client IP; never a password,
// the signature, a secret key or a token.
func (s *Server) logRefusal(r *http.Request, msg string, err error) {
	code := kps.ErrorCode(err)
	if !refusalCodes[code] {
		return
	}
	attrs := []any{"request_id", requestID(r), "method", r.Method, "path", r.URL.Path,
		"code", code, "reason", refusalReason(err), "client_ip", s.clientIP(r)}
	if user := refusedUser(err); user != "" {
		attrs = append(attrs, "user", user)
	}
	if a, perr := iam.ParseAuthorization(r.Header.Get("Authorization")); perr == nil {
		attrs = append(attrs, "access_key", a.AccessKey)
	}
	if t := r.Header.Get("X-Auth-Token"); t != "" {
		attrs = append(attrs, "token", iam.TokenFingerprint(t))
	}
	s.log.Info(msg, attrs...)
}

// refusedUser is the user a refused login or password change named, "" when unknown.
func refusedUser(err error) string {
	var f *iam.Failure
	var l *iam.LockoutError
	switch {
	case errors.As(err, &f):
		return f.User
	case errors.As(err, &l):
		return l.User
	}
	return ""
}

// refusalReason is the reason key of a refusal (auth.md §11.4, iam.Failure).
func refusalReason(err error) string {
	var f *iam.Failure
	var l *iam.LockoutError
	switch code := kps.ErrorCode(err); {
	case errors.As(err, &f):
		return f.Reason
	case errors.As(err, &l):
		return l.Reason
	case code == kps.ErrUnauthenticated:
		return "no-credentials"
	case code == kps.ErrProjectMismatch:
		return "header-mismatch"
	}
	return "refused"
}

// clip shortens request values quoted in messages.
func clip(v string) string {
	if len(v) > 64 {
		return v[:64] + "…"
	}
	return v
}
