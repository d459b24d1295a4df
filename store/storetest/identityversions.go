package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/openkps/kps"
)

// The identity version: iam remembers a successful token validation for as long as it has not
// moved, so every committed change to what a validation reads (the token, its user, domain and
// scoped project, the role assignments) must move it. Engines that keep none are skipped.
var identityVersionTests = map[string]func(*testing.T, *env){
	"VersionMovesWithEveryIdentityChange": testIdentityVersionMoves,
}

// identityVersioner is what iam asks of a store that keeps an identity version.
type identityVersioner interface {
	IdentityVersion(ctx context.Context) (int64, bool, error)
}

func (e *env) identityVersion() int64 {
	e.t.Helper()
	iv, ok := e.s.(identityVersioner)
	if !ok {
		e.t.Skip("the store keeps no identity version")
	}
	v, ok, err := iv.IdentityVersion(e.ctx)
	must(e.t, err)
	if !ok {
		e.t.Skip("the store keeps no identity version")
	}
	return v
}

func testIdentityVersionMoves(t *testing.T, e *env) {
	d, _ := e.domain("acme")
	p := e.project(d.ID, "web")
	u := e.user(d.ID, "alice")
	reader := kps.RoleAssignment{UserID: u.ID, Role: kps.RoleReader, ProjectID: p.ID}
	e.grant(reader)
	tok := e.token(u.ID, p.ID, "")
	off, on, name := false, true, "renamed"

	moves := []struct {
		name   string
		change func() error
	}{
		{"token revoked", func() error { return e.s.RevokeToken(e.ctx, tok) }},
		{"user's tokens revoked", func() error {
			e.token(u.ID, p.ID, "")
			return e.s.RevokeUserTokens(e.ctx, u.ID)
		}},
		{"expired tokens deleted", func() error {
			e.token(u.ID, p.ID, "")
			e.clock.Advance(48 * time.Hour)
			n, err := e.s.DeleteExpiredTokens(e.ctx, time.Hour)
			if err == nil && n == 0 {
				t.Fatal("no expired token deleted")
			}
			return err
		}},
		{"role granted", func() error {
			return e.s.GrantRole(e.ctx, kps.RoleAssignment{UserID: u.ID, Role: kps.RoleMember, ProjectID: p.ID})
		}},
		{"role revoked", func() error { return e.s.RevokeRole(e.ctx, reader) }},
		{"domain role granted", func() error {
			return e.s.GrantRole(e.ctx, kps.RoleAssignment{UserID: u.ID, Role: kps.RoleAdmin, DomainID: d.ID})
		}},
		{"user disabled", func() error { _, err := e.s.UpdateUser(e.ctx, u.ID, kps.UserUpdate{Enabled: &off}); return err }},
		{"user enabled", func() error { _, err := e.s.UpdateUser(e.ctx, u.ID, kps.UserUpdate{Enabled: &on}); return err }},
		{"user renamed", func() error { _, err := e.s.UpdateUser(e.ctx, u.ID, kps.UserUpdate{Name: &name}); return err }},
		{"password changed", func() error { return e.s.UpdatePasswordHash(e.ctx, u.ID, "$argon2id$new") }},
		{"project disabled", func() error {
			_, err := e.s.UpdateProject(e.ctx, p.ID, kps.ProjectUpdate{Enabled: &off})
			return err
		}},
		{"project enabled", func() error {
			_, err := e.s.UpdateProject(e.ctx, p.ID, kps.ProjectUpdate{Enabled: &on})
			return err
		}},
		{"domain disabled", func() error { _, err := e.s.UpdateDomain(e.ctx, d.ID, kps.DomainUpdate{Enabled: &off}); return err }},
		{"domain enabled", func() error { _, err := e.s.UpdateDomain(e.ctx, d.ID, kps.DomainUpdate{Enabled: &on}); return err }},
		{"domain renamed", func() error { _, err := e.s.UpdateDomain(e.ctx, d.ID, kps.DomainUpdate{Name: &name}); return err }},
		{"project created", func() error {
			return e.s.CreateProject(e.ctx, &kps.Project{Name: "api", DomainID: d.ID, Enabled: true})
		}},
		{"user deleted", func() error { return e.s.DeleteUser(e.ctx, u.ID) }},
		{"project deleted", func() error { return e.s.DeleteProject(e.ctx, p.ID) }},
		{"domain deleted", func() error {
			_, err := e.s.UpdateDomain(e.ctx, d.ID, kps.DomainUpdate{Enabled: &off})
			if err == nil {
				err = e.s.DeleteDomain(e.ctx, d.ID)
			}
			return err
		}},
	}
	for _, m := range moves {
		before := e.identityVersion()
		must(t, m.change())
		if after := e.identityVersion(); after == before {
			t.Errorf("%s: identity version stayed at %d", m.name, before)
		}
	}
}
