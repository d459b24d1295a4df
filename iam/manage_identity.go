package iam

import (
	"context"

	"github.com/openkps/kps"
)

// Users -----------------------------------------------------------------------------------------

// CreateUser creates u (POST /v3/users, auth.md §9) in u.DomainID, the caller's domain when
// empty, which the caller must administer. A non-empty password must follow the policy of
// §12.1 and is stored as an Argon2id hash; without one the user cannot log in with a password.
func (s *Service) CreateUser(ctx context.Context, p *kps.Principal, u *kps.User, password string) error {
	if u.DomainID == "" {
		u.DomainID = p.DomainID
	}
	var err error
	if u.DomainID, err = s.ResolveDomainID(ctx, u.DomainID); err != nil {
		return err
	}
	a, err := s.authority(ctx, p)
	if err != nil {
		return err
	}
	if !a.administers(u.DomainID) {
		return forbidden()
	}
	if err := u.Validate(); err != nil {
		return err
	}
	u.PasswordHash = ""
	if password != "" {
		if err := checkNewPassword("user.password", password, u.Name); err != nil {
			return err
		}
		if u.PasswordHash, err = s.Params.Hash(ctx, password); err != nil {
			return err
		}
	}
	return s.Store.CreateUser(ctx, u)
}

// administeredUser returns a user the caller may manage.
func (s *Service) administeredUser(ctx context.Context, p *kps.Principal, id string) (*kps.User, authority, error) {
	a, err := s.authority(ctx, p)
	if err != nil {
		return nil, a, err
	}
	u, err := s.Store.UserByID(ctx, id)
	if err != nil {
		return nil, a, err
	}
	if u == nil || !a.administers(u.DomainID) {
		return nil, a, a.hidden(notFound("user", id))
	}
	return u, a, nil
}

func errSelf() error {
	return kps.Errorf(kps.ErrIdentityConflict, "A user cannot disable or delete their own user.")
}

// UpdateUser changes a user (PATCH /v3/users/{user_id}); password, when not nil, sets a new
// password, which revokes the user's tokens and temporary credentials (§5.5) as disabling
// does. Callers cannot disable themselves (409 KPS.6111): the last admin would lock everybody
// out.
func (s *Service) UpdateUser(ctx context.Context, p *kps.Principal, id string, uu kps.UserUpdate, password *string) (*kps.User, error) {
	u, _, err := s.administeredUser(ctx, p, id)
	if err != nil {
		return nil, err
	}
	if u.ID == p.UserID && uu.Enabled != nil && !*uu.Enabled {
		return nil, errSelf()
	}
	after := *u
	uu.Apply(&after)
	if err := after.Validate(); err != nil {
		return nil, err
	}
	var hash string
	if password != nil {
		if err := checkNewPassword("user.password", *password, after.Name); err != nil {
			return nil, err
		}
		if hash, err = s.Params.Hash(ctx, *password); err != nil {
			return nil, err
		}
	}
	updated, err := s.Store.UpdateUser(ctx, id, uu)
	if err != nil {
		return nil, err
	}
	if password != nil {
		if err := s.Store.UpdatePasswordHash(ctx, id, hash); err != nil {
			return nil, err
		}
	}
	return updated, nil
}

// DeleteUser deletes a user with their role assignments, access keys and temporary credentials;
// their tokens are revoked (§5.5). Callers cannot delete themselves (409 KPS.6111).
func (s *Service) DeleteUser(ctx context.Context, p *kps.Principal, id string) error {
	u, _, err := s.administeredUser(ctx, p, id)
	if err != nil {
		return err
	}
	if u.ID == p.UserID {
		return errSelf()
	}
	return s.Store.DeleteUser(ctx, id)
}

// ChangePassword is the self-service password change (POST /v3/users/{user_id}/password): only
// for the caller's own user (else 403 KPS.9006), not with a temporary credential (a security
// token lives 15 minutes to a day and must not outlive itself as a new password: 403 KPS.9006),
// with the original password (else 401 KPS.6107, as Keystone answers), and a new one following
// the policy of §12.1 (else 400 KPS.6003). The original password is a guess like a login's
// (auth.md §12.4): reserved under the user and the client IP before the hash, a wrong one counts
// as a failed login, and a locked user or IP is 429 KPS.6105. It revokes every token and
// temporary credential of the user, the caller's own included (§5.5). clientIP is the caller's
// address, as for a login.
func (s *Service) ChangePassword(ctx context.Context, p *kps.Principal, id, original, password, clientIP string) error {
	if p.AuthMethod == kps.AuthAKSKTemporary {
		return &Failure{Reason: "temporary-credential", Err: kps.Errorf(kps.ErrForbidden, msgForbidden), User: p.UserID}
	}
	if id != p.UserID {
		return &Failure{Reason: "other-user", Err: kps.Errorf(kps.ErrForbidden, msgForbidden), User: p.UserID}
	}
	u, err := s.Store.UserByID(ctx, id)
	if err != nil {
		return err
	}
	if u == nil {
		return forbidden()
	}
	if err := checkNewPassword("user.password", password, u.Name); err != nil {
		return err
	}
	g, err := s.reserveGuess(ctx, s.now(), u.ID, clientKey(clientIP), userKey(u.ID))
	if err != nil {
		return err
	}
	if err := s.verifyOriginal(ctx, g, u, original); err != nil {
		if serr := g.settle(ctx, kps.AttemptVoid); serr != nil {
			return serr
		}
		return err
	}
	hash, err := s.Params.Hash(ctx, password)
	if err != nil {
		return err
	}
	return s.Store.UpdatePasswordHash(ctx, id, hash)
}

// verifyOriginal checks the original password of a password change reserved as g, and settles g
// as failed or succeeded when the password was judged.
func (s *Service) verifyOriginal(ctx context.Context, g *guess, u *kps.User, original string) error {
	if len(original) == 0 || len(original) > maxPasswordBytes {
		return g.fail(ctx, loginFailed("password-length"))
	}
	hash, usable := u.PasswordHash, true
	if _, _, _, perr := parsePHC(hash); perr != nil {
		// No usable password, so nothing can match; verify the dummy hash anyway, so that the
		// answer costs what a wrong password costs.
		var err error
		if hash, err = s.dummyHash(ctx); err != nil {
			return err
		}
		usable = false
	}
	// The caller is authenticated: the verification goes before anonymous logins.
	ok, _, err := s.Params.Verify(ctx, hash, original)
	if err != nil {
		return err
	}
	if !ok || !usable {
		return g.fail(ctx, loginFailed("password-wrong"))
	}
	return g.settle(ctx, kps.AttemptSucceeded)
}

// Projects --------------------------------------------------------------------------------------

// CreateProject creates pr (POST /v3/projects) in pr.DomainID, the caller's domain when empty,
// which the caller must administer. It is never a default project.
func (s *Service) CreateProject(ctx context.Context, p *kps.Principal, pr *kps.Project) error {
	if pr.DomainID == "" {
		pr.DomainID = p.DomainID
	}
	var err error
	if pr.DomainID, err = s.ResolveDomainID(ctx, pr.DomainID); err != nil {
		return err
	}
	a, err := s.authority(ctx, p)
	if err != nil {
		return err
	}
	if !a.administers(pr.DomainID) {
		return forbidden()
	}
	if err := pr.Validate(); err != nil {
		return err
	}
	return s.Store.CreateProject(ctx, pr)
}

func (s *Service) administeredProject(ctx context.Context, p *kps.Principal, id string) (*kps.Project, authority, error) {
	a, err := s.authority(ctx, p)
	if err != nil {
		return nil, a, err
	}
	pr, err := s.Store.ProjectByID(ctx, id)
	if err != nil {
		return nil, a, err
	}
	if pr == nil || !a.administers(pr.DomainID) {
		return nil, a, a.hidden(notFound("project", id))
	}
	return pr, a, nil
}

// UpdateProject changes a project (PATCH /v3/projects/{id}). The default project cannot be
// renamed (409 KPS.6111, §3.2); disabling a project revokes the tokens scoped to it (§5.5).
func (s *Service) UpdateProject(ctx context.Context, p *kps.Principal, id string, u kps.ProjectUpdate) (*kps.Project, error) {
	pr, _, err := s.administeredProject(ctx, p, id)
	if err != nil {
		return nil, err
	}
	u.Apply(pr)
	if err := pr.Validate(); err != nil {
		return nil, err
	}
	return s.Store.UpdateProject(ctx, id, u)
}

// DeleteProject deletes a project (DELETE /v3/projects/{id}). The default project (§3.2) and a
// project that still holds key pairs, servers or unfinished tasks refuse it (409 KPS.6111).
func (s *Service) DeleteProject(ctx context.Context, p *kps.Principal, id string) error {
	if _, _, err := s.administeredProject(ctx, p, id); err != nil {
		return err
	}
	return s.Store.DeleteProject(ctx, id)
}

// Role assignments ------------------------------------------------------------------------------

// GrantRole records a role assignment (PUT /v3/projects/{p}/users/{u}/roles/{r} or
// /v3/domains/{d}/users/{u}/roles/{r}); a.Role may carry the role's name or its ID. The caller
// must administer the target's domain; user and target must share a domain (400 KPS.6003).
func (s *Service) GrantRole(ctx context.Context, p *kps.Principal, a kps.RoleAssignment) error {
	a, err := s.assignment(ctx, p, a)
	if err != nil {
		return err
	}
	return s.Store.GrantRole(ctx, a)
}

// RevokeRole removes a role assignment (404 KPS.6110 when there is none). Tokens stay valid:
// roles are evaluated live (§3.4).
func (s *Service) RevokeRole(ctx context.Context, p *kps.Principal, a kps.RoleAssignment) error {
	a, err := s.assignment(ctx, p, a)
	if err != nil {
		return err
	}
	return s.Store.RevokeRole(ctx, a)
}

// assignment checks the caller's authority over an assignment and resolves its role.
func (s *Service) assignment(ctx context.Context, p *kps.Principal, ra kps.RoleAssignment) (kps.RoleAssignment, error) {
	auth, err := s.authority(ctx, p)
	if err != nil {
		return ra, err
	}
	var domainID string
	if ra.ProjectID != "" {
		pr, err := s.Store.ProjectByID(ctx, ra.ProjectID)
		if err != nil {
			return ra, err
		}
		if pr == nil || !auth.administers(pr.DomainID) {
			return ra, auth.hidden(notFound("project", ra.ProjectID))
		}
		domainID = pr.DomainID
	} else {
		d, err := s.domainByRef(ctx, ra.DomainID, "")
		if err != nil {
			return ra, err
		}
		if d == nil || !auth.administers(d.ID) {
			return ra, auth.hidden(notFound("domain", ra.DomainID))
		}
		domainID, ra.DomainID = d.ID, d.ID
	}
	u, err := s.Store.UserByID(ctx, ra.UserID)
	if err != nil {
		return ra, err
	}
	if u == nil || !auth.administers(u.DomainID) {
		return ra, notFound("user", ra.UserID)
	}
	if u.DomainID != domainID {
		// Users never act across domains (§2).
		return ra, kps.InvalidParameter("user_id")
	}
	if ra.Role, err = s.roleByRef(ctx, string(ra.Role)); err != nil {
		return ra, err
	}
	return ra, ra.Validate()
}

// Domains ---------------------------------------------------------------------------------------

// operatorOnly refuses everybody but the operator admin (§3.7).
func (s *Service) operatorOnly(ctx context.Context, p *kps.Principal) error {
	a, err := s.authority(ctx, p)
	if err != nil {
		return err
	}
	if !a.operator {
		return forbidden()
	}
	return nil
}

func errOperatorDomain() error {
	return kps.Errorf(kps.ErrIdentityConflict, "The operator domain cannot be renamed, disabled or deleted.")
}

// CreateDomain creates a domain with its default project named after the region (POST
// /v3/domains, §3.2), which it returns. Operator admin only.
func (s *Service) CreateDomain(ctx context.Context, p *kps.Principal, d *kps.Domain) (*kps.Project, error) {
	if err := s.operatorOnly(ctx, p); err != nil {
		return nil, err
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return s.Store.CreateDomain(ctx, d, s.Region)
}

// UpdateDomain changes a domain (PATCH /v3/domains/{id}); disabling it revokes every token of
// the domain (§5.5). Operator admin only. The operator domain can be neither renamed nor
// disabled (409 KPS.6111): its name is what makes it the operator domain.
func (s *Service) UpdateDomain(ctx context.Context, p *kps.Principal, id string, u kps.DomainUpdate) (*kps.Domain, error) {
	d, err := s.operatorTarget(ctx, p, id)
	if err != nil {
		return nil, err
	}
	if d.Name == BootstrapDomain && ((u.Name != nil && *u.Name != d.Name) || (u.Enabled != nil && !*u.Enabled)) {
		return nil, errOperatorDomain()
	}
	u.Apply(d)
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return s.Store.UpdateDomain(ctx, d.ID, u)
}

// DeleteDomain deletes a disabled domain with everything in it (DELETE /v3/domains/{id}).
// Operator admin only; the operator domain, an enabled domain (disable it first, as Keystone
// asks) and a domain whose projects still hold key pairs, servers or unfinished tasks refuse
// it (409 KPS.6111).
func (s *Service) DeleteDomain(ctx context.Context, p *kps.Principal, id string) error {
	d, err := s.operatorTarget(ctx, p, id)
	if err != nil {
		return err
	}
	switch {
	case d.Name == BootstrapDomain:
		return errOperatorDomain()
	case d.Enabled:
		return kps.Errorf(kps.ErrIdentityConflict, "The domain '%s' is enabled; disable it before deleting it.", d.Name)
	}
	return s.Store.DeleteDomain(ctx, d.ID)
}

func (s *Service) operatorTarget(ctx context.Context, p *kps.Principal, id string) (*kps.Domain, error) {
	if err := s.operatorOnly(ctx, p); err != nil {
		return nil, err
	}
	d, err := s.domainByRef(ctx, id, "")
	if err == nil && d == nil {
		err = notFound("domain", id)
	}
	return d, err
}
