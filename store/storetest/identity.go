package storetest

import (
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/openkps/kps"
)

var identityTests = map[string]func(*testing.T, *env){
	"BootstrapIsIdempotent":       testBootstrapIsIdempotent,
	"BootstrapDomainID":           testBootstrapDomainID,
	"LookupsMissReturnNil":        testLookupsMissReturnNil,
	"EffectiveRolesOfBootstrap":   testEffectiveRolesOfBootstrap,
	"TokenRoundTrip":              testTokenRoundTrip,
	"TokenHashIsUnique":           testTokenHashIsUnique,
	"TokenWithoutListsRoundTrips": testTokenWithoutListsRoundTrips,
}

var hexID = regexp.MustCompile(`^[0-9a-f]{32}$`)

var operator = kps.Bootstrap{DomainName: "Default", ProjectName: "my-region-1", AdminName: "admin",
	AdminPasswordHash: "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"}

// bootstrapped runs the bootstrap and returns the domain, project and admin user it created.
func (e *env) bootstrapped() (*kps.Domain, *kps.Project, *kps.User) {
	e.t.Helper()
	created, err := e.s.Bootstrap(e.ctx, operator)
	must(e.t, err)
	if !created {
		e.t.Fatal("Bootstrap of an empty store reported created = false")
	}
	d, err := e.s.DomainByName(e.ctx, operator.DomainName)
	must(e.t, err)
	if d == nil {
		e.t.Fatal("bootstrap domain not found")
	}
	p, err := e.s.ProjectByName(e.ctx, d.ID, operator.ProjectName)
	must(e.t, err)
	if p == nil {
		e.t.Fatal("bootstrap project not found")
	}
	u, err := e.s.UserByName(e.ctx, d.ID, operator.AdminName)
	must(e.t, err)
	if u == nil {
		e.t.Fatal("bootstrap admin not found")
	}
	return d, p, u
}

func testBootstrapIsIdempotent(t *testing.T, e *env) {
	d, p, u := e.bootstrapped()
	for _, id := range []string{d.ID, p.ID, u.ID} {
		if !hexID.MatchString(id) {
			t.Errorf("ID %q is not 32 lowercase hex", id)
		}
	}
	if d.Name != operator.DomainName || !d.Enabled {
		t.Errorf("domain = %+v", d)
	}
	if p.Name != operator.ProjectName || p.DomainID != d.ID || !p.Enabled {
		t.Errorf("project = %+v", p)
	}
	if u.Name != operator.AdminName || u.DomainID != d.ID || !u.Enabled || u.PasswordHash != operator.AdminPasswordHash {
		t.Errorf("user = %+v", u)
	}

	// By ID finds the same records.
	d2, err := e.s.DomainByID(e.ctx, d.ID)
	must(t, err)
	p2, err := e.s.ProjectByID(e.ctx, p.ID)
	must(t, err)
	u2, err := e.s.UserByID(e.ctx, u.ID)
	must(t, err)
	if *d2 != *d || *p2 != *p || *u2 != *u {
		t.Errorf("by ID: %+v %+v %+v, by name: %+v %+v %+v", d2, p2, u2, d, p, u)
	}

	// A second bootstrap, even with other values, changes nothing.
	created, err := e.s.Bootstrap(e.ctx, kps.Bootstrap{DomainName: "Other", ProjectName: "other-1",
		AdminName: "root", AdminPasswordHash: "x"})
	must(t, err)
	if created {
		t.Fatal("second Bootstrap reported created = true")
	}
	other, err := e.s.DomainByName(e.ctx, "Other")
	must(t, err)
	if other != nil {
		t.Fatalf("second Bootstrap created domain %+v", other)
	}
	again, err := e.s.UserByName(e.ctx, d.ID, operator.AdminName)
	must(t, err)
	if again.PasswordHash != operator.AdminPasswordHash {
		t.Fatal("second Bootstrap changed the admin password")
	}
}

// testBootstrapDomainID: the bootstrap creates the operator domain under the ID it is given
// (Keystone's "default", auth.md §3.7), while other domains still get random IDs.
func testBootstrapDomainID(t *testing.T, e *env) {
	b := operator
	b.DomainID = "default"
	created, err := e.s.Bootstrap(e.ctx, b)
	must(t, err)
	if !created {
		t.Fatal("Bootstrap of an empty store reported created = false")
	}
	d, err := e.s.DomainByID(e.ctx, "default")
	must(t, err)
	if d == nil || d.Name != b.DomainName || !d.Enabled {
		t.Fatalf("DomainByID(default) = %+v", d)
	}
	p, err := e.s.ProjectByName(e.ctx, "default", b.ProjectName)
	must(t, err)
	if p == nil || p.DomainID != "default" || !p.IsDefault || !hexID.MatchString(p.ID) {
		t.Fatalf("default project = %+v", p)
	}
	u, err := e.s.UserByName(e.ctx, "default", b.AdminName)
	must(t, err)
	if u == nil || u.DomainID != "default" || !hexID.MatchString(u.ID) {
		t.Fatalf("admin = %+v", u)
	}
	roles, err := e.s.DomainRoles(e.ctx, u.ID, "default")
	must(t, err)
	if !slices.Contains(roles, kps.RoleAdmin) {
		t.Errorf("admin's roles on the domain = %v", roles)
	}
	// CreateDomain never takes the caller's ID: only the bootstrap chooses one.
	other := &kps.Domain{ID: "default", Name: "Other", Enabled: true}
	if _, err := e.s.CreateDomain(e.ctx, other, b.ProjectName); err != nil {
		t.Fatal(err)
	}
	if !hexID.MatchString(other.ID) {
		t.Errorf("CreateDomain kept the ID %q", other.ID)
	}
}

func testLookupsMissReturnNil(t *testing.T, e *env) {
	d, _, _ := e.bootstrapped()
	const missing = "00000000000000000000000000000000"
	checks := []struct {
		name string
		got  func() (any, error)
	}{
		{"DomainByID", func() (any, error) { return e.s.DomainByID(e.ctx, missing) }},
		{"DomainByName", func() (any, error) { return e.s.DomainByName(e.ctx, "default") }}, // case-sensitive
		{"ProjectByID", func() (any, error) { return e.s.ProjectByID(e.ctx, missing) }},
		{"ProjectByName", func() (any, error) { return e.s.ProjectByName(e.ctx, d.ID, "nope") }},
		{"ProjectByName/other domain", func() (any, error) { return e.s.ProjectByName(e.ctx, missing, operator.ProjectName) }},
		{"UserByID", func() (any, error) { return e.s.UserByID(e.ctx, missing) }},
		{"UserByName", func() (any, error) { return e.s.UserByName(e.ctx, d.ID, "Admin") }},
		{"UserByName/other domain", func() (any, error) { return e.s.UserByName(e.ctx, missing, operator.AdminName) }},
		{"TokenByHash", func() (any, error) { return e.s.TokenByHash(e.ctx, "feed") }},
	}
	for _, c := range checks {
		v, err := c.got()
		if err != nil {
			t.Errorf("%s: error %v, want nil", c.name, err)
		}
		// v is a typed nil pointer inside an interface.
		if s := fmtAny(v); s != "<nil>" {
			t.Errorf("%s: got %s, want nil", c.name, s)
		}
	}
}

func testEffectiveRolesOfBootstrap(t *testing.T, e *env) {
	_, p, u := e.bootstrapped()
	roles, err := e.s.EffectiveRoles(e.ctx, u.ID, p.ID)
	must(t, err)
	want := []kps.Role{kps.RoleAdmin, kps.RoleMember, kps.RoleReader}
	if !slices.Equal(roles, want) {
		t.Errorf("admin's roles on the default project = %v, want %v (domain assignment, implied roles)", roles, want)
	}
	for _, c := range []struct{ user, project string }{
		{"00000000000000000000000000000000", p.ID},
		{u.ID, "00000000000000000000000000000000"},
	} {
		roles, err := e.s.EffectiveRoles(e.ctx, c.user, c.project)
		must(t, err)
		if len(roles) != 0 {
			t.Errorf("EffectiveRoles(%s, %s) = %v, want none", c.user, c.project, roles)
		}
	}
}

func testTokenRoundTrip(t *testing.T, e *env) {
	_, p, u := e.bootstrapped()
	tok := &kps.Token{Hash: "3f79bb7b435b05321651daefd374cdc681dc06faa65e374e38337b88ca046dea", UserID: u.ID,
		ProjectID: p.ID, Methods: []string{"password", "totp"}, AuditIDs: []string{"a1b2c3", "d4e5f6"},
		IssuedAt: Epoch, ExpiresAt: Epoch.Add(24 * time.Hour)}
	must(t, e.s.CreateToken(e.ctx, tok, 0))
	got, err := e.s.TokenByHash(e.ctx, tok.Hash)
	must(t, err)
	if got == nil {
		t.Fatal("token not found")
	}
	if got.Hash != tok.Hash || got.UserID != u.ID || got.ProjectID != p.ID || got.DomainID != "" ||
		!slices.Equal(got.Methods, tok.Methods) || !slices.Equal(got.AuditIDs, tok.AuditIDs) ||
		!got.IssuedAt.Equal(tok.IssuedAt) || !got.ExpiresAt.Equal(tok.ExpiresAt) || got.Revoked() {
		t.Errorf("token = %+v, want %+v", got, tok)
	}

	revoked := &kps.Token{Hash: "revoked", UserID: u.ID, DomainID: p.DomainID, Methods: []string{"token"},
		AuditIDs: []string{"x"}, IssuedAt: Epoch, ExpiresAt: Epoch.Add(time.Hour), RevokedAt: Epoch}
	must(t, e.s.CreateToken(e.ctx, revoked, 0))
	got, err = e.s.TokenByHash(e.ctx, "revoked")
	must(t, err)
	if got == nil || !got.RevokedAt.Equal(Epoch) || got.DomainID != p.DomainID || got.ProjectID != "" {
		t.Errorf("revoked token = %+v (revoked and expired tokens are returned; the caller judges)", got)
	}
}

func testTokenHashIsUnique(t *testing.T, e *env) {
	_, _, u := e.bootstrapped()
	tok := &kps.Token{Hash: "same", UserID: u.ID, Methods: []string{"password"}, IssuedAt: Epoch,
		ExpiresAt: Epoch.Add(time.Hour)}
	must(t, e.s.CreateToken(e.ctx, tok, 0))
	if err := e.s.CreateToken(e.ctx, tok, 0); err == nil {
		t.Fatal("a second token with the same hash was stored")
	}
}

func testTokenWithoutListsRoundTrips(t *testing.T, e *env) {
	_, _, u := e.bootstrapped()
	must(t, e.s.CreateToken(e.ctx, &kps.Token{Hash: "bare", UserID: u.ID, IssuedAt: Epoch, ExpiresAt: Epoch}, 0))
	got, err := e.s.TokenByHash(e.ctx, "bare")
	must(t, err)
	if got == nil || len(got.Methods) != 0 || len(got.AuditIDs) != 0 {
		t.Errorf("token = %+v", got)
	}
}
