package iam

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/openkps/kps"
)

// VisibleProjects lists the projects of GET /v3/projects (auth.md §8.2): those of the caller's
// domain on which the caller has an effective role, or all of them for a domain admin,
// filtered by f. A domain filter naming another domain yields an empty list, not an error.
func (s *Service) VisibleProjects(ctx context.Context, p *kps.Principal, f kps.ProjectFilter, pg kps.Page) ([]kps.Project, int, error) {
	var err error
	if f.DomainID, err = s.resolveDomainFilter(ctx, f.DomainID); err != nil {
		return nil, 0, err
	}
	if f.DomainID != nil && *f.DomainID != p.DomainID {
		return []kps.Project{}, 0, nil
	}
	roles, err := s.Store.DomainRoles(ctx, p.UserID, p.DomainID)
	if err != nil {
		return nil, 0, err
	}
	f.DomainID, f.RoleHolder = &p.DomainID, nil
	if !hasRole(roles, kps.RoleAdmin) {
		f.RoleHolder = &p.UserID
	}
	return s.Store.ListProjects(ctx, f, pg)
}

// VisibleProject returns a project under the rule of VisibleProjects. An invisible project
// and an unknown one get the same answer, 403 KPS.9006 (§8.2), so project IDs cannot be probed.
func (s *Service) VisibleProject(ctx context.Context, p *kps.Principal, id string) (*kps.Project, error) {
	proj, err := s.Store.ProjectByID(ctx, id)
	if err != nil {
		return nil, err
	}
	if proj == nil || proj.DomainID != p.DomainID {
		return nil, forbidden()
	}
	roles, err := s.Store.DomainRoles(ctx, p.UserID, p.DomainID)
	if err != nil || hasRole(roles, kps.RoleAdmin) {
		return proj, err
	}
	if roles, err = s.Store.EffectiveRoles(ctx, p.UserID, id); err != nil {
		return nil, err
	}
	if len(roles) == 0 {
		return nil, forbidden()
	}
	return proj, nil
}

// UserProjects lists the projects a user may scope a token to: enabled projects of the user's
// domain on which they hold an effective role (GET /v3/auth/projects for the caller, userID "";
// GET /v3/users/{user_id}/projects for the caller or, for an administrator, any user of an
// administered domain).
func (s *Service) UserProjects(ctx context.Context, p *kps.Principal, userID string) ([]kps.Project, error) {
	domainID := p.DomainID
	if userID == "" {
		userID = p.UserID
	}
	if userID != p.UserID {
		u, _, err := s.administeredUser(ctx, p, userID)
		if err != nil {
			return nil, err
		}
		domainID = u.DomainID
	}
	enabled := true
	projects, _, err := s.Store.ListProjects(ctx, kps.ProjectFilter{DomainID: &domainID, Enabled: &enabled,
		RoleHolder: &userID}, kps.Page{})
	return projects, err
}

// VisibleUsers lists the users of GET /v3/users (Keystone's list_users; auth.md §3.3: reading
// users is administration): a domain admin sees the users of their own domain, and with a
// domain filter those of a domain they administer (the operator admin: any); a filter naming
// another domain yields an empty list, as for projects (§8.2). Anybody else is refused with
// 403 KPS.9006.
func (s *Service) VisibleUsers(ctx context.Context, p *kps.Principal, f kps.UserFilter, pg kps.Page) ([]kps.User, int, error) {
	a, err := s.authority(ctx, p)
	if err != nil {
		return nil, 0, err
	}
	if !a.administers(p.DomainID) {
		return nil, 0, forbidden()
	}
	if f.DomainID, err = s.resolveDomainFilter(ctx, f.DomainID); err != nil {
		return nil, 0, err
	}
	if f.DomainID == nil {
		f.DomainID = &p.DomainID
	}
	if !a.administers(*f.DomainID) {
		return []kps.User{}, 0, nil
	}
	return s.Store.ListUsers(ctx, f, pg)
}

// VisibleUser returns a user for GET /v3/users/{user_id}: oneself, or a user of a domain the
// caller administers. Anything else is missing (404 KPS.6110) to an administrator and
// forbidden (403 KPS.9006) to anybody else, so user IDs cannot be probed.
func (s *Service) VisibleUser(ctx context.Context, p *kps.Principal, id string) (*kps.User, error) {
	if id == p.UserID {
		u, err := s.Store.UserByID(ctx, id)
		if err == nil && u == nil {
			err = forbidden() // deleted a moment after its credential was checked
		}
		return u, err
	}
	u, _, err := s.administeredUser(ctx, p, id)
	return u, err
}

// VisibleDomains lists the domains of GET /v3/domains, filtered by name and enabled: the
// caller's own domain (every user may read it, §3.3), and every domain for the operator admin.
func (s *Service) VisibleDomains(ctx context.Context, p *kps.Principal, f kps.DomainFilter) ([]kps.Domain, error) {
	a, err := s.authority(ctx, p)
	if err != nil {
		return nil, err
	}
	all, _, err := s.Store.ListDomains(ctx, f, kps.Page{})
	if err != nil || a.operator {
		return all, err
	}
	out := []kps.Domain{}
	for _, d := range all {
		if d.ID == p.DomainID {
			out = append(out, d)
		}
	}
	return out, nil
}

// VisibleDomain returns a domain for GET /v3/domains/{domain_id}: the caller's own, or any for
// the operator admin. Anything else is missing to an administrator and forbidden to anybody
// else, like other records of other domains.
func (s *Service) VisibleDomain(ctx context.Context, p *kps.Principal, id string) (*kps.Domain, error) {
	a, err := s.authority(ctx, p)
	if err != nil {
		return nil, err
	}
	resolved, err := s.ResolveDomainID(ctx, id)
	if err != nil {
		return nil, err
	}
	if resolved != p.DomainID && !a.operator {
		return nil, a.hidden(notFound("domain", id))
	}
	d, err := s.Store.DomainByID(ctx, resolved)
	if err == nil && d == nil {
		err = a.hidden(notFound("domain", id))
	}
	return d, err
}

// OwnDomain returns the caller's domain (GET /v3/auth/domains, §8.3).
func (s *Service) OwnDomain(ctx context.Context, p *kps.Principal) (*kps.Domain, error) {
	d, err := s.Store.DomainByID(ctx, p.DomainID)
	if err == nil && d == nil {
		// The credential was valid a moment ago; the domain went away in between.
		err = forbidden()
	}
	return d, err
}

// RoleIDs returns the ID of each fixed role (GET /v3/roles; §3.1).
func (s *Service) RoleIDs(ctx context.Context) (map[kps.Role]string, error) {
	ids := make(map[kps.Role]string, len(kps.Roles))
	for _, r := range kps.Roles {
		id, err := s.Store.RoleID(ctx, r)
		if err != nil {
			return nil, err
		}
		ids[r] = id
	}
	return ids, nil
}

// roleByRef resolves the {role_id} of an assignment route, which may hold the role's ID or its
// name (KPS.6110 when it is neither).
func (s *Service) roleByRef(ctx context.Context, ref string) (kps.Role, error) {
	if r := kps.Role(ref); r.Valid() {
		return r, nil
	}
	ids, err := s.RoleIDs(ctx)
	if err != nil {
		return "", err
	}
	for r, id := range ids {
		if id != "" && id == ref {
			return r, nil
		}
	}
	return "", notFound("role", ref)
}

// CatalogService is one service of the catalog (auth.md §8.4).
type CatalogService struct {
	Type      string            `json:"type"`
	Name      string            `json:"name"`
	ID        string            `json:"id"`
	Endpoints []CatalogEndpoint `json:"endpoints"`
}

// CatalogEndpoint is one endpoint of a catalog service.
type CatalogEndpoint struct {
	ID        string `json:"id"`
	Interface string `json:"interface"`
	Region    string `json:"region"`
	RegionID  string `json:"region_id"`
	URL       string `json:"url"`
}

// Catalog returns the service catalog of auth.md §8.4 as a []CatalogService: the identity
// API, the Nova-compatible compute API and the KPS API, each with one public endpoint in the
// configured region. It is the catalog of token bodies and of GET /v3/auth/catalog.
//
// The IDs are derived, not drawn: the first 128 bits of SHA-256 over the region and the
// service type (and the interface, for an endpoint). They are therefore stable across restarts
// and instances without being stored, which is what "generated once, stored" asks for.
func (s *Service) Catalog() any {
	base := strings.TrimSuffix(s.PublicURL, "/")
	compute := strings.TrimSuffix(s.ComputeURL, "/")
	if compute == "" {
		compute = base + "/compute/v2.1"
	}
	services := []struct{ typ, name, url string }{
		{"identity", "keystone", base + "/v3"},
		{"compute", "nova", compute},
		{"kps", "kps", base},
	}
	out := make([]CatalogService, 0, len(services))
	for _, x := range services {
		out = append(out, CatalogService{
			Type: x.typ, Name: x.name, ID: catalogID("service", s.Region, x.typ),
			Endpoints: []CatalogEndpoint{{
				ID: catalogID("endpoint", s.Region, x.typ, "public"), Interface: "public",
				Region: s.Region, RegionID: s.Region, URL: x.url,
			}},
		})
	}
	return out
}

func catalogID(parts ...string) string {
	sum := sha256.Sum256([]byte("openkps catalog\x00" + strings.Join(parts, "\x00")))
	return hex.EncodeToString(sum[:16])
}

// OmitCatalog drops the catalog from a token response (?nocatalog, auth.md §5.1).
func (r *TokenResponse) OmitCatalog() {
	if r != nil && r.Token != nil {
		r.Token.Catalog = nil
	}
}

// SubjectToken validates the token of X-Subject-Token for GET and HEAD /v3/auth/tokens (auth.md
// §5.4) and returns its body (a *TokenResponse) with live roles and, when catalog is set, the
// catalog. The caller must be the token's owner or an admin of its domain; an unknown,
// expired or revoked token and one the caller may not see are the same 404 KPS.6109.
func (s *Service) SubjectToken(ctx context.Context, p *kps.Principal, subject string, catalog bool) (any, error) {
	v, err := s.subject(ctx, p, subject)
	if err != nil {
		return nil, err
	}
	t := v.token
	body := &TokenBody{
		Methods:   t.Methods,
		IssuedAt:  Timestamp{t.IssuedAt},
		ExpiresAt: Timestamp{t.ExpiresAt},
		AuditIDs:  t.AuditIDs,
		User:      TokenUser{ID: v.user.ID, Name: v.user.Name, Domain: Ref{v.domain.ID, v.domain.Name}},
	}
	var roles []kps.Role
	switch {
	case t.ProjectID != "":
		proj, err := s.Store.ProjectByID(ctx, t.ProjectID)
		if err != nil {
			return nil, err
		}
		if proj == nil {
			return nil, tokenNotFound()
		}
		body.Project = &TokenProject{ID: proj.ID, Name: proj.Name, Domain: Ref{v.domain.ID, v.domain.Name}}
		roles, err = s.Store.EffectiveRoles(ctx, v.user.ID, proj.ID)
		if err != nil {
			return nil, err
		}
	case t.DomainID != "":
		body.Domain = &Ref{v.domain.ID, v.domain.Name}
		if roles, err = s.Store.DomainRoles(ctx, v.user.ID, v.domain.ID); err != nil {
			return nil, err
		}
	}
	if t.ProjectID != "" || t.DomainID != "" {
		// A scoped token keeps its roles and catalog members even when the roles went away
		// since it was issued: roles are informational, evaluated live on each request (§3.4).
		if body.Roles, err = s.roleRefs(ctx, roles); err != nil {
			return nil, err
		}
		if catalog {
			body.Catalog = s.Catalog()
		}
	}
	return &TokenResponse{Token: body}, nil
}

// RevokeSubjectToken revokes the token of X-Subject-Token (DELETE /v3/auth/tokens, auth.md
// §5.5) under the rules of SubjectToken. Temporary credentials derived from it go with it.
func (s *Service) RevokeSubjectToken(ctx context.Context, p *kps.Principal, subject string) error {
	v, err := s.subject(ctx, p, subject)
	if err != nil {
		return err
	}
	return s.Store.RevokeToken(ctx, v.token.Hash)
}

func tokenNotFound() error {
	return kps.Errorf(kps.ErrTokenNotFound, "The token could not be found.")
}

// subject finds a valid token the caller may inspect: their own, or one of a user of a domain
// on which the caller is admin (§5.4). Everything else is KPS.6109.
func (s *Service) subject(ctx context.Context, p *kps.Principal, subject string) (validToken, error) {
	v, err := s.validate(ctx, subject)
	if IsFailure(err) {
		return validToken{}, tokenNotFound()
	}
	if err != nil {
		return validToken{}, err
	}
	if v.user.ID == p.UserID {
		return v, nil
	}
	if v.domain.ID != p.DomainID {
		return validToken{}, tokenNotFound()
	}
	roles, err := s.Store.DomainRoles(ctx, p.UserID, v.domain.ID)
	if err != nil {
		return validToken{}, err
	}
	if !hasRole(roles, kps.RoleAdmin) {
		return validToken{}, tokenNotFound()
	}
	return v, nil
}
