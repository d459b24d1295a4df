package api

import (
	"context"
	"net/http"
	"time"

	"github.com/openkps/kps"
)

// identityManager is what the identity and management routes need from the identity
// implementation beyond Identity: every method takes the authenticated caller and decides who
// may do what (auth.md §3.3, §9); the handlers only decode, call and render. The local
// identity (iam.Service) implements it.
type identityManager interface {
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
}

// identityAPI serves the identity and management routes with the identity's manager.
type identityAPI struct {
	*Server
	m identityManager
}

// identityRoutes registers the identity and management routes of auth.md §5.4–5.5, §8 and §9
// on the identity mux. An identity that manages nothing (external mode, auth.md §10.2) gets
// none of them: they answer 404 KPS.6205.
//
// No wildcard is called project_id: authenticate reads that path value as the request's target
// project, and identity routes have none (auth.md §4.3).
func (s *Server) identityRoutes(mux *http.ServeMux) {
	m, ok := s.identity.(identityManager)
	if !ok {
		return
	}
	a := &identityAPI{Server: s, m: m}
	route := func(pattern string, h handlerFunc) { mux.Handle(pattern, a.authenticated(h)) }

	route("GET /v3/auth/tokens", a.checkToken)
	route("HEAD /v3/auth/tokens", a.checkToken)
	route("DELETE /v3/auth/tokens", a.revokeToken)
	route("GET /v3/auth/projects", a.listAuthProjects)
	route("GET /v3/auth/domains", a.listAuthDomains)
	route("GET /v3/auth/catalog", a.showCatalog)
	route("GET /v3/roles", a.listRoles)

	route("GET /v3/projects", a.listProjects)
	route("POST /v3/projects", a.createProject)
	route("GET /v3/projects/{project}", a.showProject)
	route("PATCH /v3/projects/{project}", a.updateProject)
	route("DELETE /v3/projects/{project}", a.deleteProject)
	route("PUT /v3/projects/{project}/users/{user_id}/roles/{role_id}", a.grantProjectRole)
	route("DELETE /v3/projects/{project}/users/{user_id}/roles/{role_id}", a.revokeProjectRole)

	route("GET /v3/users", a.listUsers)
	route("GET /v3/users/{user_id}", a.showUser)
	route("POST /v3/users", a.createUser)
	route("PATCH /v3/users/{user_id}", a.updateUser)
	route("DELETE /v3/users/{user_id}", a.deleteUser)
	route("POST /v3/users/{user_id}/password", a.changePassword)
	route("GET /v3/users/{user_id}/projects", a.listUserProjects)

	route("GET /v3/domains", a.listDomains)
	route("GET /v3/domains/{domain_id}", a.showDomain)
	route("POST /v3/domains", a.createDomain)
	route("PATCH /v3/domains/{domain_id}", a.updateDomain)
	route("DELETE /v3/domains/{domain_id}", a.deleteDomain)
	route("PUT /v3/domains/{domain_id}/users/{user_id}/roles/{role_id}", a.grantDomainRole)
	route("DELETE /v3/domains/{domain_id}/users/{user_id}/roles/{role_id}", a.revokeDomainRole)

	route("POST /v3.0/OS-CREDENTIAL/credentials", a.createCredential)
	route("GET /v3.0/OS-CREDENTIAL/credentials", a.listCredentials)
	route("GET /v3.0/OS-CREDENTIAL/credentials/{access_key}", a.showCredential)
	route("PUT /v3.0/OS-CREDENTIAL/credentials/{access_key}", a.updateCredential)
	route("DELETE /v3.0/OS-CREDENTIAL/credentials/{access_key}", a.deleteCredential)
	route("POST /v3.0/OS-CREDENTIAL/securitytokens", a.createSecurityToken)
}

// authenticated authenticates an identity request; the route's own rules are the manager's.
func (a *identityAPI) authenticated(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.authenticate(r)
		if err == nil {
			err = h(w, r, p)
		}
		if err != nil {
			a.renderError(w, r, err)
		}
	})
}
