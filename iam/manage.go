package iam

import (
	"context"
	"unicode/utf8"

	"github.com/openkps/kps"
)

// The management side of local identity mode (auth.md §3.3, §5.4–5.5, §8, §9): who may read
// and change domains, projects, users, role assignments, access keys and other users' tokens.
// Every method takes the authenticated principal of the request and decides from roles read
// live from the store (§3.4), never from the roles frozen in a token.
//
// The authority model (docs/decisions.md, "Identity management"):
//   - a domain admin holds the admin role on the domain itself (a domain-level assignment);
//   - the operator admin is a domain admin of the operator domain, the bootstrap domain
//     "Default" (§3.7). It alone creates, changes and deletes domains, and it administers the
//     users, projects and role assignments of every domain, so that a new domain can be given
//     its first admin;
//   - self-service (own access keys) needs the member role somewhere in the caller's domain.
//
// What a caller may not administer looks missing to an administrator (404 KPS.6110) and is
// refused to anybody else (403 KPS.9006), so records of other domains cannot be probed.

func forbidden() error { return kps.Errorf(kps.ErrForbidden, msgForbidden) }

// audited is the store on which a change records ev in its own transaction (kps.Audited): the
// management methods aim the request's event (kps.Principal.Audit) at what they change. The
// store itself when there is no event.
func (s *Service) audited(ev *kps.AuditEvent) kps.IdentityStore {
	if ev == nil {
		return s.Store
	}
	return s.Store.Audit(ev)
}

// roleTarget names a role assignment in the audit trail as its path does.
func roleTarget(a kps.RoleAssignment) string {
	if a.ProjectID != "" {
		return "projects/" + a.ProjectID + "/users/" + a.UserID + "/roles/" + string(a.Role)
	}
	return "domains/" + a.DomainID + "/users/" + a.UserID + "/roles/" + string(a.Role)
}

func notFound(kind, id string) error {
	return kps.Errorf(kps.ErrIdentityNotFound, "The %s %s could not be found.", kind, clip(id))
}

// authority is what the caller of one request may administer.
type authority struct {
	own      string // the caller's domain
	admin    bool   // admin on the own domain
	operator bool   // admin on the operator domain
}

func (s *Service) authority(ctx context.Context, p *kps.Principal) (authority, error) {
	a := authority{own: p.DomainID}
	roles, err := s.Store.DomainRoles(ctx, p.UserID, p.DomainID)
	if err != nil {
		return a, err
	}
	a.admin = hasRole(roles, kps.RoleAdmin)
	if a.admin {
		op, err := s.Store.DomainByName(ctx, BootstrapDomain)
		if err != nil {
			return a, err
		}
		a.operator = op != nil && op.ID == p.DomainID
	}
	return a, nil
}

// administers reports whether the caller may manage the users, projects and role assignments
// of domainID.
func (a authority) administers(domainID string) bool {
	return a.operator || (a.admin && domainID == a.own)
}

// hidden is the answer for a record that does not exist or that the caller may not administer.
func (a authority) hidden(missing error) error {
	if a.admin {
		return missing
	}
	return forbidden()
}

func hasRole(roles []kps.Role, r kps.Role) bool {
	p := kps.Principal{Roles: roles}
	return p.Has(r)
}

// strongestRole returns the implied closure of every role the user holds anywhere (on any
// project of their domain or on the domain itself), strongest first.
func (s *Service) strongestRole(ctx context.Context, userID string) ([]kps.Role, error) {
	as, err := s.Store.ListRoleAssignments(ctx, kps.RoleAssignmentFilter{UserID: &userID})
	if err != nil {
		return nil, err
	}
	roles := make([]kps.Role, 0, len(as))
	for _, x := range as {
		roles = append(roles, x.Role)
	}
	return kps.Implied(roles), nil
}

// checkNewPassword applies the password policy of auth.md §12.1: 8–1024 bytes of UTF-8, not
// the user name. member names the request member in the KPS.6003 message.
func checkNewPassword(member, pw, userName string) error {
	if len(pw) < 8 || len(pw) > maxPasswordBytes || !utf8.ValidString(pw) || pw == userName {
		return kps.InvalidParameter(member)
	}
	return nil
}
