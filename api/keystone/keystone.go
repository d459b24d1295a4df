// Package keystone serves the identity API of auth.md: Keystone v3 version discovery, tokens
// (POST, GET, HEAD and DELETE /v3/auth/tokens), the projects, domains, users and role
// assignments of §8–9, and Huawei IAM's access keys and temporary credentials under
// /v3.0/OS-CREDENTIAL. Errors carry both conventions, Keystone's {"error":{…}} and KPS's
// error_code/error_msg (§11.1), and every answer carries X-IAM-Trace-Id (§8). The family also
// answers every path no other family mounts, with its 404.
//
// Who may do what is the identity's decision (Manager, implemented by iam.Service): the
// handlers decode a typed request, Validate it, call the manager and render. It imports the
// domain package and api; never iam or store.
package keystone

import (
	"context"
	"net/http"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api"
)

// Tokens issues tokens (POST /v3/auth/tokens): iam.Service in local mode; iam.External, in
// external mode, refuses every login with 404 KPS.6205.
type Tokens interface {
	// LoginWithCatalog handles the body of POST /v3/auth/tokens; headerToken is the
	// X-Auth-Token header (token method); catalog false leaves the catalog out (?nocatalog);
	// audit is the login's audit event, which the identity completes with the user and records
	// in the token's transaction (nil: none). It returns the new token and the response body.
	LoginWithCatalog(ctx context.Context, body []byte, headerToken, clientIP string, catalog bool, audit *kps.AuditEvent) (token string, resp any, err error)
}

// Manager is what the identity and management routes need from the local identity: every
// method takes the authenticated caller and decides who may do what (auth.md §3.3, §9); the
// handlers only decode, call and render. iam.Service implements it; in external mode there is
// none, and the routes answer 404 KPS.6205.
type Manager interface {
	// Catalog returns the service catalog of auth.md §8.4, ready to marshal.
	Catalog() any
	SubjectToken(ctx context.Context, p *kps.Principal, subject string, catalog bool) (any, error)
	RevokeSubjectToken(ctx context.Context, p *kps.Principal, subject string) error

	VisibleProjects(ctx context.Context, p *kps.Principal, f kps.ProjectFilter, pg kps.Page) ([]kps.Project, int, error)
	VisibleProject(ctx context.Context, p *kps.Principal, id string) (*kps.Project, error)
	UserProjects(ctx context.Context, p *kps.Principal, userID string) ([]kps.Project, error)
	OwnDomain(ctx context.Context, p *kps.Principal) (*kps.Domain, error)
	VisibleUsers(ctx context.Context, p *kps.Principal, f kps.UserFilter, pg kps.Page) ([]kps.User, int, error)
	VisibleUser(ctx context.Context, p *kps.Principal, id string) (*kps.User, error)
	VisibleDomains(ctx context.Context, p *kps.Principal, f kps.DomainFilter) ([]kps.Domain, error)
	VisibleDomain(ctx context.Context, p *kps.Principal, id string) (*kps.Domain, error)
	// ResolveDomainID returns the ID of the domain a request's domain ID names ("default" names
	// the operator domain, auth.md §3.7).
	ResolveDomainID(ctx context.Context, id string) (string, error)
	RoleIDs(ctx context.Context) (map[kps.Role]string, error)

	CreateCredential(ctx context.Context, p *kps.Principal, userID, description string) (*kps.AccessKey, string, error)
	Credentials(ctx context.Context, p *kps.Principal, userID string) ([]kps.AccessKey, error)
	Credential(ctx context.Context, p *kps.Principal, access string) (*kps.AccessKey, error)
	UpdateCredential(ctx context.Context, p *kps.Principal, access string, u kps.AccessKeyUpdate) (*kps.AccessKey, error)
	DeleteCredential(ctx context.Context, p *kps.Principal, access string) error
	IssueTemporaryCredential(ctx context.Context, p *kps.Principal, callerToken, tokenID string, d time.Duration) (*kps.TemporaryCredential, string, string, error)

	CreateUser(ctx context.Context, p *kps.Principal, u *kps.User, password string) error
	UpdateUser(ctx context.Context, p *kps.Principal, id string, u kps.UserUpdate, password *string) (*kps.User, error)
	DeleteUser(ctx context.Context, p *kps.Principal, id string) error
	// ChangePassword counts a wrong original password against the user and clientIP like a
	// failed login (auth.md §12.4).
	ChangePassword(ctx context.Context, p *kps.Principal, id, original, password, clientIP string) error

	CreateProject(ctx context.Context, p *kps.Principal, pr *kps.Project) error
	UpdateProject(ctx context.Context, p *kps.Principal, id string, u kps.ProjectUpdate) (*kps.Project, error)
	DeleteProject(ctx context.Context, p *kps.Principal, id string) error

	GrantRole(ctx context.Context, p *kps.Principal, a kps.RoleAssignment) error
	RevokeRole(ctx context.Context, p *kps.Principal, a kps.RoleAssignment) error

	CreateDomain(ctx context.Context, p *kps.Principal, d *kps.Domain) (*kps.Project, error)
	UpdateDomain(ctx context.Context, p *kps.Principal, id string, u kps.DomainUpdate) (*kps.Domain, error)
	DeleteDomain(ctx context.Context, p *kps.Principal, id string) error

	// AuditEvents reads the audit events without a project (logins, identity changes, refused
	// authentications) for the operator admin (docs/spec/audit.md).
	AuditEvents(ctx context.Context, p *kps.Principal, f kps.AuditFilter, pg kps.Page) ([]kps.AuditEvent, int, error)
}

// API is the identity family: its routes on their own ServeMux.
type API struct {
	tokens    Tokens
	manager   Manager
	auth      *api.Authenticator
	errs      *api.Errors
	publicURL string
	mux       *api.Mux
}

// New returns the identity API. manager is nil in external identity mode (auth.md §10.2): the
// management routes are then not served.
func New(tokens Tokens, manager Manager, auth *api.Authenticator, errs *api.Errors, publicURL string) *API {
	a := &API{tokens: tokens, manager: manager, auth: auth, errs: errs, publicURL: publicURL, mux: api.NewMux()}
	a.routes()
	return a
}

// Handle adds a route that answers with this family's conventions (its error body and trace
// header): the service-wide routes the router mounts at the root, such as /healthz.
func (a *API) Handle(pattern string, h http.Handler) { a.mux.Handle(pattern, h) }

// Routes are the patterns the family registered.
func (a *API) Routes() []string { return a.mux.Patterns() }

// ServeHTTP serves the identity routes; any other path or method is 404 KPS.6205 or 405
// KPS.6206 in the identity body.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The Huawei SDK quotes this header in its IAM error messages (auth.md §8).
	w.Header().Set("X-IAM-Trace-Id", w.Header().Get("X-Request-Id"))
	defer api.Recover(w, r, a.Fail)
	api.Serve(a.mux.ServeMux, w, r, a.Fail)
}

// Fail renders err in the identity body.
func (a *API) Fail(w http.ResponseWriter, r *http.Request, err error) {
	a.errs.Render(w, r, err, ErrorBody)
}

// errorBody carries both the Keystone and the KPS conventions (auth.md §11.1).
type errorBody struct {
	Error struct {
		Code    int    `json:"code"`
		Title   string `json:"title"`
		Message string `json:"message"`
	} `json:"error"`
	ErrorCode string `json:"error_code"`
	ErrorMsg  string `json:"error_msg"`
}

// ErrorBody is the identity error body.
func ErrorBody(status int, code, msg string) any {
	var b errorBody
	b.Error.Code, b.Error.Title, b.Error.Message = status, http.StatusText(status), msg
	b.ErrorCode, b.ErrorMsg = code, msg
	return b
}

// handlerFunc is an identity handler: it receives the authenticated principal and returns an
// error for the one renderer.
type handlerFunc func(w http.ResponseWriter, r *http.Request, p *kps.Principal) error

// routes registers the identity and management routes of auth.md §5.4–5.5, §8 and §9. An
// identity that manages nothing (external mode, auth.md §10.2) gets only the version documents
// and the token route.
//
// No wildcard is called project_id: identity routes have no target project (auth.md §4.3).
func (a *API) routes() {
	m := a.mux
	m.HandleFunc("GET /{$}", a.versions)
	m.HandleFunc("GET /v3", a.version)
	m.HandleFunc("GET /v3/{$}", a.version)
	m.HandleFunc("POST /v3/auth/tokens", a.issueToken)
	if a.manager == nil {
		return
	}
	route := func(pattern string, h handlerFunc) { m.Handle(pattern, a.authenticated(nil, h)) }
	// A route that changes something is audited (docs/spec/audit.md): its action, its status
	// of success, what it acts on. Identity events belong to no project.
	audited := func(pattern, action string, status int, target, pathTarget string, h handlerFunc) {
		m.Handle(pattern, a.authenticated(&api.AuditRoute{Action: action, Status: status, Target: target, PathTarget: pathTarget}, h))
	}
	ok, created, empty := http.StatusOK, http.StatusCreated, http.StatusNoContent

	route("GET /v3/auth/tokens", a.checkToken)
	route("HEAD /v3/auth/tokens", a.checkToken)
	audited("DELETE /v3/auth/tokens", kps.ActionTokenRevoke, empty, kps.TargetToken, "", a.revokeToken)
	route("GET /v3/auth/projects", a.listAuthProjects)
	route("GET /v3/auth/domains", a.listAuthDomains)
	route("GET /v3/auth/catalog", a.showCatalog)
	route("GET /v3/roles", a.listRoles)

	// A managed collection: list and show, then create (201), update (200) and delete (204),
	// audited on target with its three actions. The manager decides who may.
	collection := func(path, id, target, update string, actions [3]string, list, show, create, change, remove handlerFunc) {
		member := path + "/{" + id + "}"
		route("GET "+path, list)
		route("GET "+member, show)
		audited("POST "+path, actions[0], created, target, "", create)
		audited(update+" "+member, actions[1], ok, target, id, change)
		audited("DELETE "+member, actions[2], empty, target, id, remove)
	}
	// Role assignments on a project or a domain (auth.md §3.4, §9).
	grants := func(member string) {
		audited("PUT "+member+"/users/{user_id}/roles/{role_id}", kps.ActionRoleGrant, empty, kps.TargetRole, "", a.grantRole)
		audited("DELETE "+member+"/users/{user_id}/roles/{role_id}", kps.ActionRoleRevoke, empty, kps.TargetRole, "", a.revokeRole)
	}

	collection("/v3/projects", "project", kps.TargetProject, http.MethodPatch, [3]string{kps.ActionProjectCreate, kps.ActionProjectUpdate, kps.ActionProjectDelete}, a.listProjects, a.showProject, a.createProject, a.updateProject, a.deleteProject)
	grants("/v3/projects/{project}")

	collection("/v3/users", "user_id", kps.TargetUser, http.MethodPatch, [3]string{kps.ActionUserCreate, kps.ActionUserUpdate, kps.ActionUserDelete}, a.listUsers, a.showUser, a.createUser, a.updateUser, a.deleteUser)
	audited("POST /v3/users/{user_id}/password", kps.ActionPasswordChange, empty, kps.TargetUser, "user_id", a.changePassword)
	route("GET /v3/users/{user_id}/projects", a.listUserProjects)

	collection("/v3/domains", "domain_id", kps.TargetDomain, http.MethodPatch, [3]string{kps.ActionDomainCreate, kps.ActionDomainUpdate, kps.ActionDomainDelete}, a.listDomains, a.showDomain, a.createDomain, a.updateDomain, a.deleteDomain)
	grants("/v3/domains/{domain_id}")

	// Huawei IAM's access keys (auth.md §3.5, §9): an update is a PUT.
	collection("/v3.0/OS-CREDENTIAL/credentials", "access_key", kps.TargetCredential, http.MethodPut, [3]string{kps.ActionCredentialCreate, kps.ActionCredentialUpdate, kps.ActionCredentialDelete}, a.listCredentials, a.showCredential, a.createCredential, a.updateCredential, a.deleteCredential)
	audited("POST /v3.0/OS-CREDENTIAL/securitytokens", kps.ActionTemporaryCredential, created, kps.TargetCredential, "", a.createSecurityToken)

	// The operator's audit trail: the events without a project (docs/spec/audit.md).
	route("GET /v3/audit-events", a.listAuditEvents)
}

// authenticated authenticates an identity request; the route's own rules are the manager's. An
// audited route (ar not nil) gives the principal the request's audit event and records what
// the call's transactions did not (api.AuditOutcome).
func (a *API) authenticated(ar *api.AuditRoute, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _, err := a.auth.Authenticate(r, api.Target{Identity: true})
		var ev *kps.AuditEvent
		if ar != nil {
			ev = a.auth.AuditEvent(r, p, *ar, "")
			p = api.Audited(p, ev)
		}
		if err == nil {
			err = h(w, r, p)
		}
		if ar != nil {
			a.auth.AuditOutcome(r, ev, err, api.HTTPStatus(kps.ErrorCode(err)))
		}
		if err != nil {
			a.Fail(w, r, err)
		}
	})
}

// issueToken is POST /v3/auth/tokens (auth.md §5.1): 201 with X-Subject-Token.
func (a *API) issueToken(w http.ResponseWriter, r *http.Request) {
	// The query is checked first: a request refused anyway costs no password hash.
	q, err := queryOnce(r, "nocatalog")
	var body []byte
	if err == nil {
		body, err = api.ReadRaw(r, api.MaxIdentityBody)
	}
	// Nobody is authenticated yet: the identity fills in the actor of a login it grants.
	ev := a.auth.AuditEvent(r, &kps.Principal{}, api.AuditRoute{Action: kps.ActionLogin, Status: http.StatusCreated, Target: kps.TargetToken}, "")
	if err == nil {
		var token string
		var resp any
		_, nocatalog := q["nocatalog"]
		token, resp, err = a.tokens.LoginWithCatalog(r.Context(), body, r.Header.Get("X-Auth-Token"), a.auth.Proxies.ClientIP(r), !nocatalog, ev)
		if err == nil {
			w.Header().Set("X-Subject-Token", token)
			w.Header().Set("Cache-Control", "no-store")
			api.WriteJSON(w, http.StatusCreated, resp)
			return
		}
		a.auth.LogRefusal(r, "login refused", err)
	}
	// A refused login is kps.ActionAuthRefused (LogRefusal); a malformed one is the login's.
	a.auth.AuditOutcome(r, ev, err, api.HTTPStatus(kps.ErrorCode(err)))
	a.Fail(w, r, err)
}

type versionDoc struct {
	ID      string      `json:"id"`
	Status  string      `json:"status"`
	Updated string      `json:"updated"`
	Links   []link      `json:"links"`
	Media   []mediaType `json:"media-types"`
}

type mediaType struct {
	Base string `json:"base"`
	Type string `json:"type"`
}

type link struct {
	Rel  string `json:"rel"`
	Href string `json:"href"`
}

func (a *API) v3Doc() versionDoc {
	return versionDoc{ID: "v3.14", Status: "stable", Updated: "2020-04-07T00:00:00Z",
		Links: []link{{Rel: "self", Href: a.publicURL + "/v3/"}},
		Media: []mediaType{{"application/json", "application/vnd.openstack.identity-v3+json"}}}
}

// versions is GET / (auth.md §8.1).
func (a *API) versions(w http.ResponseWriter, r *http.Request) {
	api.WriteJSON(w, http.StatusMultipleChoices, map[string]any{"versions": map[string]any{"values": []versionDoc{a.v3Doc()}}})
}

// version is GET /v3.
func (a *API) version(w http.ResponseWriter, r *http.Request) {
	api.WriteJSON(w, http.StatusOK, map[string]any{"version": a.v3Doc()})
}
