package storetest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openkps/kps"
)

// identityModelTests cover the identity model of auth.md §3 beyond the bootstrap: domains,
// projects, users, role assignments, access keys, temporary credentials, and the implicit
// revocations of §5.5.
var identityModelTests = map[string]func(*testing.T, *env){
	"CreateDomainWithDefaultProject":   testCreateDomainWithDefaultProject,
	"DomainNamesAreUnique":             testDomainNamesAreUnique,
	"ListDomains":                      testListDomains,
	"UpdateDomain":                     testUpdateDomain,
	"DisableDomainRevokes":             testDisableDomainRevokes,
	"DeleteDomain":                     testDeleteDomain,
	"CreateProject":                    testCreateProject,
	"DefaultProjectIsProtected":        testDefaultProjectIsProtected,
	"UpdateProject":                    testUpdateProject,
	"ListProjects":                     testListProjects,
	"DisableProjectRevokes":            testDisableProjectRevokes,
	"DeleteProject":                    testDeleteProject,
	"DeleteProjectInUse":               testDeleteProjectInUse,
	"CreateUser":                       testCreateUser,
	"UpdateUser":                       testUpdateUser,
	"ListUsers":                        testListUsers,
	"DisableUserRevokes":               testDisableUserRevokes,
	"DeleteUser":                       testDeleteUser,
	"UpdatePasswordHashRevokes":        testUpdatePasswordHashRevokes,
	"RehashPasswordRevokesNothing":     testRehashPasswordRevokesNothing,
	"RoleIDsExistFromInstall":          testRoleIDsExistFromInstall,
	"GrantAndRevokeRoles":              testGrantAndRevokeRoles,
	"GrantRoleErrors":                  testGrantRoleErrors,
	"RevokeToken":                      testRevokeToken,
	"RevokeUserTokens":                 testRevokeUserTokens,
	"DeleteExpiredTokens":              testDeleteExpiredTokens,
	"AccessKeyRoundTrip":               testAccessKeyRoundTrip,
	"AccessKeyLimit":                   testAccessKeyLimit,
	"AccessKeyLimitUnderConcurrency":   testAccessKeyLimitUnderConcurrency,
	"UpdateAndDeleteAccessKey":         testUpdateAndDeleteAccessKey,
	"TouchAccessKey":                   testTouchAccessKey,
	"AccessKeysShareOneNamespace":      testAccessKeysShareOneNamespace,
	"TemporaryCredentialRoundTrip":     testTemporaryCredentialRoundTrip,
	"TemporaryCredentialErrors":        testTemporaryCredentialErrors,
	"DeleteExpiredTemporaryCredential": testDeleteExpiredTemporaryCredentials,
}

const (
	region  = "my-region-1"
	missing = "00000000000000000000000000000000"
)

// domain creates an enabled domain and returns it with its default project.
func (e *env) domain(name string) (*kps.Domain, *kps.Project) {
	e.t.Helper()
	d := &kps.Domain{Name: name, Enabled: true}
	p, err := e.s.CreateDomain(e.ctx, d, region)
	must(e.t, err)
	return d, p
}

func (e *env) project(domainID, name string) *kps.Project {
	e.t.Helper()
	p := &kps.Project{Name: name, DomainID: domainID, Enabled: true}
	must(e.t, e.s.CreateProject(e.ctx, p))
	return p
}

func (e *env) user(domainID, name string) *kps.User {
	e.t.Helper()
	u := &kps.User{Name: name, DomainID: domainID, Enabled: true, PasswordHash: "$argon2id$" + name}
	must(e.t, e.s.CreateUser(e.ctx, u))
	return u
}

func (e *env) grant(a kps.RoleAssignment) {
	e.t.Helper()
	must(e.t, e.s.GrantRole(e.ctx, a))
}

// token stores a token of the user with the scope and returns its hash; its audit ID is the hash
// with an "audit-" prefix.
func (e *env) token(userID, projectID, domainID string) string {
	e.t.Helper()
	hash := randomHex(32)
	must(e.t, e.s.CreateToken(e.ctx, &kps.Token{Hash: hash, UserID: userID, ProjectID: projectID, DomainID: domainID,
		Methods: []string{"password"}, AuditIDs: []string{"audit-" + hash}, IssuedAt: e.clock.Now(),
		ExpiresAt: e.clock.Now().Add(24 * time.Hour)}, 0))
	return hash
}

// tempCred stores a temporary credential derived from the token with the hash sourceToken (""
// for one derived from an access key) and returns its AK.
func (e *env) tempCred(userID, projectID, sourceToken string) string {
	e.t.Helper()
	c := &kps.TemporaryCredential{Access: newAK(), UserID: userID, ScopeProjectID: projectID,
		Secret: randomBytes(60), SecurityTokenHash: randomHex(32), ExpiresAt: e.clock.Now().Add(time.Hour)}
	if sourceToken != "" {
		c.SourceAuditID = "audit-" + sourceToken
	}
	must(e.t, e.s.CreateTemporaryCredential(e.ctx, c))
	return c.Access
}

func (e *env) accessKey(userID string) *kps.AccessKey {
	e.t.Helper()
	k := &kps.AccessKey{Access: newAK(), UserID: userID, Secret: randomBytes(68), Status: kps.AccessKeyActive}
	must(e.t, e.s.CreateAccessKey(e.ctx, k))
	return k
}

// wantRevoked checks the token's revocation state; revoked tokens stay readable.
func (e *env) wantRevoked(hash string, revoked bool) {
	e.t.Helper()
	tok, err := e.s.TokenByHash(e.ctx, hash)
	must(e.t, err)
	if tok == nil {
		e.t.Fatalf("token %s… is gone; revoked tokens must stay readable", hash[:8])
	}
	if tok.Revoked() != revoked {
		e.t.Fatalf("token %s… revoked = %v, want %v", hash[:8], tok.Revoked(), revoked)
	}
}

// wantTempCred checks whether the temporary credential still exists.
func (e *env) wantTempCred(access string, exists bool) {
	e.t.Helper()
	c, err := e.s.TemporaryCredential(e.ctx, access)
	must(e.t, err)
	if (c != nil) != exists {
		e.t.Fatalf("temporary credential %s exists = %v, want %v", access, c != nil, exists)
	}
}

func (e *env) wantAccessKey(access string, exists bool) {
	e.t.Helper()
	k, err := e.s.AccessKey(e.ctx, access)
	must(e.t, err)
	if (k != nil) != exists {
		e.t.Fatalf("access key %s exists = %v, want %v", access, k != nil, exists)
	}
}

const akAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// newAK returns 20 random characters [A-Z0-9] (auth.md §3.1).
func newAK() string {
	b := randomBytes(20)
	for i := range b {
		b[i] = akAlphabet[int(b[i])%len(akAlphabet)]
	}
	return string(b)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func randomHex(n int) string { return hex.EncodeToString(randomBytes(n)) }

// Domains ---------------------------------------------------------------------------------------

func testCreateDomainWithDefaultProject(t *testing.T, e *env) {
	d := &kps.Domain{Name: "acme", Enabled: true, Description: "Acme Corp."}
	p, err := e.s.CreateDomain(e.ctx, d, region)
	must(t, err)
	if !hexID.MatchString(d.ID) || !d.Created.Equal(Epoch) {
		t.Fatalf("domain = %+v", d)
	}
	if !hexID.MatchString(p.ID) || p.Name != region || p.DomainID != d.ID || !p.Enabled || !p.IsDefault ||
		!p.Created.Equal(Epoch) {
		t.Fatalf("default project = %+v", p)
	}
	got, err := e.s.DomainByID(e.ctx, d.ID)
	must(t, err)
	if got == nil || *got != *d {
		t.Fatalf("DomainByID = %s, want %+v", fmtAny(got), d)
	}
	got, err = e.s.DomainByName(e.ctx, "acme")
	must(t, err)
	if got == nil || got.ID != d.ID {
		t.Fatalf("DomainByName = %s", fmtAny(got))
	}
	gp, err := e.s.ProjectByName(e.ctx, d.ID, region)
	must(t, err)
	if gp == nil || *gp != *p {
		t.Fatalf("ProjectByName = %s, want %+v", fmtAny(gp), p)
	}

	// A disabled domain may be created; its default project is enabled.
	off := &kps.Domain{Name: "off"}
	p2, err := e.s.CreateDomain(e.ctx, off, region)
	must(t, err)
	if got, _ := e.s.DomainByID(e.ctx, off.ID); got == nil || got.Enabled || !p2.Enabled || p2.ID == p.ID {
		t.Fatalf("disabled domain %s, project %+v", fmtAny(got), p2)
	}
}

func testDomainNamesAreUnique(t *testing.T, e *env) {
	e.domain("acme")
	_, err := e.s.CreateDomain(e.ctx, &kps.Domain{Name: "acme", Enabled: true}, region)
	wantCode(t, err, kps.ErrIdentityConflict)
	// Byte-wise: another case is another name.
	upper, _ := e.domain("Acme")
	_, err = e.s.UpdateDomain(e.ctx, upper.ID, kps.DomainUpdate{Name: ptr("acme")})
	wantCode(t, err, kps.ErrIdentityConflict)
	if got, _ := e.s.DomainByID(e.ctx, upper.ID); got.Name != "Acme" {
		t.Fatalf("a refused rename changed the name to %q", got.Name)
	}
	_, total, err := e.s.ListDomains(e.ctx, kps.DomainFilter{}, kps.Page{})
	must(t, err)
	if total != 2 {
		t.Fatalf("%d domains, want 2 (a refused creation leaves nothing, not even a project)", total)
	}
}

func testListDomains(t *testing.T, e *env) {
	for _, n := range []string{"delta", "alpha", "charlie", "bravo"} {
		e.domain(n)
	}
	_, err := e.s.UpdateDomain(e.ctx, mustDomain(t, e, "charlie").ID, kps.DomainUpdate{Enabled: ptr(false)})
	must(t, err)

	names := func(ds []kps.Domain) []string {
		var out []string
		for _, d := range ds {
			out = append(out, d.Name)
		}
		return out
	}
	tests := []struct {
		name  string
		f     kps.DomainFilter
		p     kps.Page
		want  []string
		total int
	}{
		{"all", kps.DomainFilter{}, kps.Page{}, []string{"alpha", "bravo", "charlie", "delta"}, 4},
		{"page", kps.DomainFilter{}, kps.Page{Limit: 2, Offset: 1}, []string{"bravo", "charlie"}, 4},
		{"past the end", kps.DomainFilter{}, kps.Page{Limit: 2, Offset: 9}, nil, 4},
		{"name", kps.DomainFilter{Name: ptr("bravo")}, kps.Page{}, []string{"bravo"}, 1},
		{"empty name matches nothing", kps.DomainFilter{Name: ptr("")}, kps.Page{}, nil, 0},
		{"enabled", kps.DomainFilter{Enabled: ptr(true)}, kps.Page{}, []string{"alpha", "bravo", "delta"}, 3},
		{"disabled", kps.DomainFilter{Enabled: ptr(false)}, kps.Page{}, []string{"charlie"}, 1},
		{"disabled past the end", kps.DomainFilter{Enabled: ptr(false)}, kps.Page{Limit: 1, Offset: 1}, nil, 1},
	}
	for _, tt := range tests {
		ds, total, err := e.s.ListDomains(e.ctx, tt.f, tt.p)
		must(t, err)
		if !slices.Equal(names(ds), tt.want) || total != tt.total || ds == nil {
			t.Errorf("%s: %v (total %d), want %v (total %d)", tt.name, names(ds), total, tt.want, tt.total)
		}
	}
}

func mustDomain(t *testing.T, e *env, name string) *kps.Domain {
	t.Helper()
	d, err := e.s.DomainByName(e.ctx, name)
	must(t, err)
	if d == nil {
		t.Fatalf("domain %s not found", name)
	}
	return d
}

func testUpdateDomain(t *testing.T, e *env) {
	d, _ := e.domain("acme")
	got, err := e.s.UpdateDomain(e.ctx, d.ID, kps.DomainUpdate{Name: ptr("acme-2"), Description: ptr("renamed")})
	must(t, err)
	want := *d
	want.Name, want.Description = "acme-2", "renamed"
	if *got != want {
		t.Fatalf("UpdateDomain = %+v, want %+v", got, want)
	}
	if stored, _ := e.s.DomainByID(e.ctx, d.ID); *stored != want {
		t.Fatalf("stored %+v, want %+v", stored, want)
	}
	got, err = e.s.UpdateDomain(e.ctx, d.ID, kps.DomainUpdate{Enabled: ptr(false)})
	must(t, err)
	if got.Enabled || got.Name != "acme-2" || got.Description != "renamed" {
		t.Fatalf("disable changed more: %+v", got)
	}
	got, err = e.s.UpdateDomain(e.ctx, d.ID, kps.DomainUpdate{Enabled: ptr(true)})
	must(t, err)
	if !got.Enabled {
		t.Fatal("enable did not stick")
	}
	_, err = e.s.UpdateDomain(e.ctx, missing, kps.DomainUpdate{Enabled: ptr(false)})
	wantCode(t, err, kps.ErrIdentityNotFound)
}

// credentials stages, for a user of the domain d with default project p: an unscoped, a
// project-scoped and a domain-scoped token; a temporary credential derived from the project
// token; an unbound one from an access key; and an access key.
type credentials struct {
	unscoped, projectScoped, domainScoped string
	derived, unbound                      string
	key                                   *kps.AccessKey
}

func (e *env) credentials(u *kps.User, p *kps.Project) credentials {
	e.t.Helper()
	var c credentials
	c.unscoped = e.token(u.ID, "", "")
	c.projectScoped = e.token(u.ID, p.ID, "")
	c.domainScoped = e.token(u.ID, "", u.DomainID)
	c.derived = e.tempCred(u.ID, p.ID, c.projectScoped)
	c.unbound = e.tempCred(u.ID, "", "")
	c.key = e.accessKey(u.ID)
	return c
}

func (e *env) wantAllRevoked(c credentials, revoked bool) {
	e.t.Helper()
	for _, h := range []string{c.unscoped, c.projectScoped, c.domainScoped} {
		e.wantRevoked(h, revoked)
	}
	e.wantTempCred(c.derived, !revoked)
	e.wantTempCred(c.unbound, !revoked)
}

func testDisableDomainRevokes(t *testing.T, e *env) {
	d, p := e.domain("acme")
	other, op := e.domain("other")
	alice := e.user(d.ID, "alice")
	mallory := e.user(other.ID, "mallory")
	ca, cm := e.credentials(alice, p), e.credentials(mallory, op)

	e.clock.Advance(time.Second)
	_, err := e.s.UpdateDomain(e.ctx, d.ID, kps.DomainUpdate{Description: ptr("still enabled")})
	must(t, err)
	e.wantAllRevoked(ca, false)

	_, err = e.s.UpdateDomain(e.ctx, d.ID, kps.DomainUpdate{Enabled: ptr(false)})
	must(t, err)
	e.wantAllRevoked(ca, true)
	e.wantAllRevoked(cm, false)
	tok, _ := e.s.TokenByHash(e.ctx, ca.unscoped)
	if !tok.RevokedAt.Equal(Epoch.Add(time.Second)) {
		t.Errorf("revoked at %v, want the time of the change", tok.RevokedAt)
	}
	// Access keys are not revoked: a key of a disabled domain is unusable, and usable again
	// once the domain is enabled (auth.md §3.5).
	e.wantAccessKey(ca.key.Access, true)

	// Re-enabling revives nothing.
	_, err = e.s.UpdateDomain(e.ctx, d.ID, kps.DomainUpdate{Enabled: ptr(true)})
	must(t, err)
	e.wantAllRevoked(ca, true)
}

func testDeleteDomain(t *testing.T, e *env) {
	d, p := e.domain("acme")
	other, op := e.domain("other")
	p2 := e.project(d.ID, region+"_dev")
	alice := e.user(d.ID, "alice")
	mallory := e.user(other.ID, "mallory")
	e.grant(kps.RoleAssignment{UserID: alice.ID, Role: kps.RoleMember, ProjectID: p2.ID})
	e.grant(kps.RoleAssignment{UserID: alice.ID, Role: kps.RoleAdmin, DomainID: d.ID})
	e.grant(kps.RoleAssignment{UserID: mallory.ID, Role: kps.RoleAdmin, DomainID: other.ID})
	ca, cm := e.credentials(alice, p2), e.credentials(mallory, op)

	must(t, e.s.DeleteDomain(e.ctx, d.ID))
	for _, c := range []struct {
		name string
		got  func() (any, error)
	}{
		{"domain", func() (any, error) { return e.s.DomainByID(e.ctx, d.ID) }},
		{"default project", func() (any, error) { return e.s.ProjectByID(e.ctx, p.ID) }},
		{"project", func() (any, error) { return e.s.ProjectByID(e.ctx, p2.ID) }},
		{"user", func() (any, error) { return e.s.UserByID(e.ctx, alice.ID) }},
		{"access key", func() (any, error) { return e.s.AccessKey(e.ctx, ca.key.Access) }},
	} {
		v, err := c.got()
		must(t, err)
		if fmtAny(v) != "<nil>" {
			t.Errorf("%s survived the domain: %s", c.name, fmtAny(v))
		}
	}
	e.wantAllRevoked(ca, true)
	as, err := e.s.ListRoleAssignments(e.ctx, kps.RoleAssignmentFilter{UserID: ptr(alice.ID)})
	must(t, err)
	if len(as) != 0 {
		t.Errorf("assignments survived: %+v", as)
	}
	// The other domain is untouched.
	e.wantAllRevoked(cm, false)
	if roles, _ := e.s.DomainRoles(e.ctx, mallory.ID, other.ID); len(roles) != 3 {
		t.Errorf("mallory's roles = %v", roles)
	}
	// The name is free again.
	e.domain("acme")
	wantCode(t, e.s.DeleteDomain(e.ctx, d.ID), kps.ErrIdentityNotFound)
}

// Projects --------------------------------------------------------------------------------------

func testCreateProject(t *testing.T, e *env) {
	d, _ := e.domain("acme")
	other, _ := e.domain("other")
	e.clock.Advance(time.Minute)
	p := &kps.Project{Name: region + "_dev", DomainID: d.ID, Enabled: true, Description: "dev", IsDefault: true}
	must(t, e.s.CreateProject(e.ctx, p))
	if !hexID.MatchString(p.ID) || p.IsDefault || !p.Created.Equal(Epoch.Add(time.Minute)) {
		t.Fatalf("project = %+v (only domains create default projects)", p)
	}
	got, err := e.s.ProjectByID(e.ctx, p.ID)
	must(t, err)
	if got == nil || *got != *p {
		t.Fatalf("ProjectByID = %s, want %+v", fmtAny(got), p)
	}
	wantCode(t, e.s.CreateProject(e.ctx, &kps.Project{Name: region + "_dev", DomainID: d.ID}), kps.ErrIdentityConflict)
	wantCode(t, e.s.CreateProject(e.ctx, &kps.Project{Name: region, DomainID: d.ID}), kps.ErrIdentityConflict)
	wantCode(t, e.s.CreateProject(e.ctx, &kps.Project{Name: "x", DomainID: missing}), kps.ErrIdentityNotFound)
	// Names are unique per domain only.
	e.project(other.ID, region+"_dev")
}

func testDefaultProjectIsProtected(t *testing.T, e *env) {
	d, p := e.domain("acme")
	_, err := e.s.UpdateProject(e.ctx, p.ID, kps.ProjectUpdate{Name: ptr("renamed")})
	wantCode(t, err, kps.ErrIdentityConflict)
	wantCode(t, e.s.DeleteProject(e.ctx, p.ID), kps.ErrIdentityConflict)
	// Its own name, the description and the enabled flag may change.
	got, err := e.s.UpdateProject(e.ctx, p.ID, kps.ProjectUpdate{Name: ptr(region), Description: ptr("main"),
		Enabled: ptr(false)})
	must(t, err)
	if got.Name != region || got.Description != "main" || got.Enabled || !got.IsDefault || got.DomainID != d.ID {
		t.Fatalf("UpdateProject = %+v", got)
	}
	if stored, _ := e.s.ProjectByID(e.ctx, p.ID); *stored != *got {
		t.Fatalf("stored %+v, want %+v", stored, got)
	}
}

func testUpdateProject(t *testing.T, e *env) {
	d, _ := e.domain("acme")
	p := e.project(d.ID, "a")
	e.project(d.ID, "b")
	got, err := e.s.UpdateProject(e.ctx, p.ID, kps.ProjectUpdate{Name: ptr("c"), Description: ptr("see")})
	must(t, err)
	want := *p
	want.Name, want.Description = "c", "see"
	if *got != want {
		t.Fatalf("UpdateProject = %+v, want %+v", got, want)
	}
	_, err = e.s.UpdateProject(e.ctx, p.ID, kps.ProjectUpdate{Name: ptr("b")})
	wantCode(t, err, kps.ErrIdentityConflict)
	_, err = e.s.UpdateProject(e.ctx, missing, kps.ProjectUpdate{Name: ptr("z")})
	wantCode(t, err, kps.ErrIdentityNotFound)
	if stored, _ := e.s.ProjectByID(e.ctx, p.ID); *stored != want {
		t.Fatalf("stored %+v, want %+v", stored, want)
	}
}

func testListProjects(t *testing.T, e *env) {
	d, _ := e.domain("acme")
	other, _ := e.domain("other")
	dev := e.project(d.ID, region+"_dev")
	off := e.project(d.ID, region+"_off")
	_, err := e.s.UpdateProject(e.ctx, off.ID, kps.ProjectUpdate{Enabled: ptr(false)})
	must(t, err)
	e.project(other.ID, region+"_dev")
	alice := e.user(d.ID, "alice") // member on dev only
	bob := e.user(d.ID, "bob")     // admin of the domain: every project of it
	eve := e.user(d.ID, "eve")     // no role
	e.grant(kps.RoleAssignment{UserID: alice.ID, Role: kps.RoleMember, ProjectID: dev.ID})
	e.grant(kps.RoleAssignment{UserID: bob.ID, Role: kps.RoleAdmin, DomainID: d.ID})

	type row struct{ domain, name string }
	rows := func(ps []kps.Project) []row {
		var out []row
		for _, p := range ps {
			n := "acme"
			if p.DomainID == other.ID {
				n = "other"
			}
			out = append(out, row{n, p.Name})
		}
		return out
	}
	// Equal names of two domains come in ID order, which is random here: rows of the lists that
	// hold both are compared ordered by name, then domain.
	byDomain := func(rs []row) []row {
		slices.SortStableFunc(rs, func(a, b row) int {
			if a.name != b.name {
				return strings.Compare(a.name, b.name)
			}
			return strings.Compare(a.domain, b.domain)
		})
		return rs
	}
	all := []row{{"acme", region}, {"other", region}, {"acme", region + "_dev"}, {"other", region + "_dev"}, {"acme", region + "_off"}}
	tests := []struct {
		name  string
		f     kps.ProjectFilter
		p     kps.Page
		want  []row
		total int
	}{
		{"all", kps.ProjectFilter{}, kps.Page{}, all, 5},
		{"page", kps.ProjectFilter{DomainID: ptr(d.ID)}, kps.Page{Limit: 2, Offset: 1},
			[]row{{"acme", region + "_dev"}, {"acme", region + "_off"}}, 3},
		{"domain", kps.ProjectFilter{DomainID: ptr(d.ID)}, kps.Page{},
			[]row{{"acme", region}, {"acme", region + "_dev"}, {"acme", region + "_off"}}, 3},
		{"domain and name", kps.ProjectFilter{DomainID: ptr(d.ID), Name: ptr(region)}, kps.Page{}, []row{{"acme", region}}, 1},
		{"name across domains", kps.ProjectFilter{Name: ptr(region + "_dev")}, kps.Page{},
			[]row{{"acme", region + "_dev"}, {"other", region + "_dev"}}, 2},
		{"disabled", kps.ProjectFilter{Enabled: ptr(false)}, kps.Page{}, []row{{"acme", region + "_off"}}, 1},
		{"project role", kps.ProjectFilter{RoleHolder: ptr(alice.ID)}, kps.Page{}, []row{{"acme", region + "_dev"}}, 1},
		{"domain role", kps.ProjectFilter{RoleHolder: ptr(bob.ID), Enabled: ptr(true)}, kps.Page{},
			[]row{{"acme", region}, {"acme", region + "_dev"}}, 2},
		{"no role", kps.ProjectFilter{RoleHolder: ptr(eve.ID)}, kps.Page{}, nil, 0},
		{"role holder past the end", kps.ProjectFilter{RoleHolder: ptr(bob.ID)}, kps.Page{Limit: 5, Offset: 5}, nil, 3},
		{"unknown domain", kps.ProjectFilter{DomainID: ptr(missing)}, kps.Page{}, nil, 0},
	}
	for _, tt := range tests {
		ps, total, err := e.s.ListProjects(e.ctx, tt.f, tt.p)
		must(t, err)
		if !slices.Equal(byDomain(rows(ps)), tt.want) || total != tt.total || ps == nil {
			t.Errorf("%s: %v (total %d), want %v (total %d)", tt.name, rows(ps), total, tt.want, tt.total)
		}
	}
}

func testDisableProjectRevokes(t *testing.T, e *env) {
	d, p := e.domain("acme")
	dev := e.project(d.ID, region+"_dev")
	alice := e.user(d.ID, "alice")
	onDev := e.token(alice.ID, dev.ID, "")
	onDefault := e.token(alice.ID, p.ID, "")
	unscoped := e.token(alice.ID, "", "")
	domainScoped := e.token(alice.ID, "", d.ID)
	bound := e.tempCred(alice.ID, dev.ID, "")
	derived := e.tempCred(alice.ID, dev.ID, onDev)
	elsewhere := e.tempCred(alice.ID, p.ID, onDefault)
	unbound := e.tempCred(alice.ID, "", unscoped)

	_, err := e.s.UpdateProject(e.ctx, dev.ID, kps.ProjectUpdate{Enabled: ptr(false)})
	must(t, err)
	e.wantRevoked(onDev, true)
	e.wantTempCred(bound, false)
	e.wantTempCred(derived, false)
	for _, h := range []string{onDefault, unscoped, domainScoped} {
		e.wantRevoked(h, false)
	}
	e.wantTempCred(elsewhere, true)
	e.wantTempCred(unbound, true)
}

func testDeleteProject(t *testing.T, e *env) {
	d, p := e.domain("acme")
	dev := e.project(d.ID, region+"_dev")
	alice := e.user(d.ID, "alice")
	_, err := e.s.UpdateUser(e.ctx, alice.ID, kps.UserUpdate{DefaultProjectID: ptr(dev.ID)})
	must(t, err)
	e.grant(kps.RoleAssignment{UserID: alice.ID, Role: kps.RoleMember, ProjectID: dev.ID})
	e.grant(kps.RoleAssignment{UserID: alice.ID, Role: kps.RoleReader, ProjectID: p.ID})
	onDev, onDefault := e.token(alice.ID, dev.ID, ""), e.token(alice.ID, p.ID, "")
	bound := e.tempCred(alice.ID, dev.ID, onDev)

	must(t, e.s.DeleteProject(e.ctx, dev.ID))
	if got, _ := e.s.ProjectByID(e.ctx, dev.ID); got != nil {
		t.Fatalf("project survived: %+v", got)
	}
	e.wantRevoked(onDev, true)
	e.wantRevoked(onDefault, false)
	e.wantTempCred(bound, false)
	u, _ := e.s.UserByID(e.ctx, alice.ID)
	if u.DefaultProjectID != "" {
		t.Errorf("default project %q after its deletion", u.DefaultProjectID)
	}
	as, err := e.s.ListRoleAssignments(e.ctx, kps.RoleAssignmentFilter{UserID: ptr(alice.ID)})
	must(t, err)
	if len(as) != 1 || as[0].ProjectID != p.ID {
		t.Errorf("assignments %+v, want only the one on the default project", as)
	}
	wantCode(t, e.s.DeleteProject(e.ctx, dev.ID), kps.ErrIdentityNotFound)
	// The name is free again.
	e.project(d.ID, region+"_dev")
}

// testDeleteProjectInUse: a project holding key pairs or servers, and a domain with such a
// project, are not deleted; once empty they are, finished tasks included.
func testDeleteProjectInUse(t *testing.T, e *env) {
	d, _ := e.domain("acme")
	dev := e.project(d.ID, region+"_dev")
	e.keyPair(dev.ID, "k1", kps.ScopeUser, alice)
	wantCode(t, e.s.DeleteProject(e.ctx, dev.ID), kps.ErrIdentityConflict)
	wantCode(t, e.s.DeleteDomain(e.ctx, d.ID), kps.ErrIdentityConflict)
	must(t, e.s.DeleteKeyPair(e.ctx, dev.ID, "k1", alice))
	e.server(dev.ID, "s1", false)
	wantCode(t, e.s.DeleteProject(e.ctx, dev.ID), kps.ErrIdentityConflict)
	must(t, e.s.DeleteServer(e.ctx, dev.ID, "s1"))
	must(t, e.s.DeleteProject(e.ctx, dev.ID))
	must(t, e.s.DeleteDomain(e.ctx, d.ID))
}

// Users -----------------------------------------------------------------------------------------

func testCreateUser(t *testing.T, e *env) {
	d, p := e.domain("acme")
	other, op := e.domain("other")
	e.clock.Advance(time.Minute)
	u := &kps.User{Name: "alice", DomainID: d.ID, Enabled: true, Description: "Alice", PasswordHash: "$argon2id$x",
		DefaultProjectID: p.ID}
	must(t, e.s.CreateUser(e.ctx, u))
	now := Epoch.Add(time.Minute)
	if !hexID.MatchString(u.ID) || !u.Created.Equal(now) || !u.PasswordChangedAt.Equal(now) {
		t.Fatalf("user = %+v", u)
	}
	got, err := e.s.UserByID(e.ctx, u.ID)
	must(t, err)
	if got == nil || *got != *u {
		t.Fatalf("UserByID = %s, want %+v", fmtAny(got), u)
	}
	got, err = e.s.UserByName(e.ctx, d.ID, "alice")
	must(t, err)
	if got == nil || *got != *u {
		t.Fatalf("UserByName = %s, want %+v", fmtAny(got), u)
	}
	// Without a password there is no change time.
	nopass := &kps.User{Name: "nopass", DomainID: d.ID, Enabled: true}
	must(t, e.s.CreateUser(e.ctx, nopass))
	if !nopass.PasswordChangedAt.IsZero() || nopass.DefaultProjectID != "" {
		t.Fatalf("user without password = %+v", nopass)
	}

	wantCode(t, e.s.CreateUser(e.ctx, &kps.User{Name: "alice", DomainID: d.ID}), kps.ErrIdentityConflict)
	wantCode(t, e.s.CreateUser(e.ctx, &kps.User{Name: "x", DomainID: missing}), kps.ErrIdentityNotFound)
	wantCode(t, e.s.CreateUser(e.ctx, &kps.User{Name: "x", DomainID: d.ID, DefaultProjectID: op.ID}), kps.ErrInvalid)
	wantCode(t, e.s.CreateUser(e.ctx, &kps.User{Name: "x", DomainID: d.ID, DefaultProjectID: missing}), kps.ErrInvalid)
	// Names are unique per domain only.
	e.user(other.ID, "alice")
	_, total, err := e.s.ListUsers(e.ctx, kps.UserFilter{DomainID: ptr(d.ID)}, kps.Page{})
	must(t, err)
	if total != 2 {
		t.Errorf("%d users in acme, want 2", total)
	}
}

func testUpdateUser(t *testing.T, e *env) {
	d, p := e.domain("acme")
	_, op := e.domain("other")
	alice := e.user(d.ID, "alice")
	e.user(d.ID, "bob")
	got, err := e.s.UpdateUser(e.ctx, alice.ID, kps.UserUpdate{Name: ptr("alice2"), Description: ptr("A."),
		DefaultProjectID: ptr(p.ID)})
	must(t, err)
	want := *alice
	want.Name, want.Description, want.DefaultProjectID = "alice2", "A.", p.ID
	if *got != want {
		t.Fatalf("UpdateUser = %+v, want %+v", got, want)
	}
	if stored, _ := e.s.UserByID(e.ctx, alice.ID); *stored != want {
		t.Fatalf("stored %+v, want %+v", stored, want)
	}
	got, err = e.s.UpdateUser(e.ctx, alice.ID, kps.UserUpdate{DefaultProjectID: ptr("")})
	must(t, err)
	if got.DefaultProjectID != "" || got.Name != "alice2" {
		t.Fatalf("clearing the default project: %+v", got)
	}
	_, err = e.s.UpdateUser(e.ctx, alice.ID, kps.UserUpdate{Name: ptr("bob")})
	wantCode(t, err, kps.ErrIdentityConflict)
	_, err = e.s.UpdateUser(e.ctx, alice.ID, kps.UserUpdate{DefaultProjectID: ptr(op.ID)})
	wantCode(t, err, kps.ErrInvalid)
	_, err = e.s.UpdateUser(e.ctx, missing, kps.UserUpdate{Name: ptr("z")})
	wantCode(t, err, kps.ErrIdentityNotFound)
	// The password is not UpdateUser's.
	if stored, _ := e.s.UserByID(e.ctx, alice.ID); stored.PasswordHash != alice.PasswordHash || stored.Name != "alice2" {
		t.Fatalf("stored %+v", stored)
	}
}

func testListUsers(t *testing.T, e *env) {
	d, _ := e.domain("acme")
	other, _ := e.domain("other")
	for _, n := range []string{"carol", "alice", "bob"} {
		e.user(d.ID, n)
	}
	e.user(other.ID, "alice")
	_, err := e.s.UpdateUser(e.ctx, mustUser(t, e, d.ID, "bob").ID, kps.UserUpdate{Enabled: ptr(false)})
	must(t, err)
	names := func(us []kps.User) []string {
		var out []string
		for _, u := range us {
			out = append(out, u.Name)
		}
		return out
	}
	tests := []struct {
		name  string
		f     kps.UserFilter
		p     kps.Page
		want  []string
		total int
	}{
		{"all", kps.UserFilter{}, kps.Page{}, []string{"alice", "alice", "bob", "carol"}, 4},
		{"domain", kps.UserFilter{DomainID: ptr(d.ID)}, kps.Page{}, []string{"alice", "bob", "carol"}, 3},
		{"domain page", kps.UserFilter{DomainID: ptr(d.ID)}, kps.Page{Limit: 1, Offset: 1}, []string{"bob"}, 3},
		{"name", kps.UserFilter{Name: ptr("alice")}, kps.Page{}, []string{"alice", "alice"}, 2},
		{"enabled in domain", kps.UserFilter{DomainID: ptr(d.ID), Enabled: ptr(true)}, kps.Page{}, []string{"alice", "carol"}, 2},
		{"disabled", kps.UserFilter{Enabled: ptr(false)}, kps.Page{}, []string{"bob"}, 1},
		{"past the end", kps.UserFilter{DomainID: ptr(d.ID)}, kps.Page{Limit: 10, Offset: 3}, nil, 3},
	}
	for _, tt := range tests {
		us, total, err := e.s.ListUsers(e.ctx, tt.f, tt.p)
		must(t, err)
		if !slices.Equal(names(us), tt.want) || total != tt.total || us == nil {
			t.Errorf("%s: %v (total %d), want %v (total %d)", tt.name, names(us), total, tt.want, tt.total)
		}
	}
}

func mustUser(t *testing.T, e *env, domainID, name string) *kps.User {
	t.Helper()
	u, err := e.s.UserByName(e.ctx, domainID, name)
	must(t, err)
	if u == nil {
		t.Fatalf("user %s not found", name)
	}
	return u
}

func testDisableUserRevokes(t *testing.T, e *env) {
	d, p := e.domain("acme")
	alice, bob := e.user(d.ID, "alice"), e.user(d.ID, "bob")
	ca, cb := e.credentials(alice, p), e.credentials(bob, p)
	_, err := e.s.UpdateUser(e.ctx, alice.ID, kps.UserUpdate{Description: ptr("still enabled")})
	must(t, err)
	e.wantAllRevoked(ca, false)
	_, err = e.s.UpdateUser(e.ctx, alice.ID, kps.UserUpdate{Enabled: ptr(false)})
	must(t, err)
	e.wantAllRevoked(ca, true)
	e.wantAllRevoked(cb, false)
	// Access keys stay (auth.md §5.5): unusable while the user is disabled.
	e.wantAccessKey(ca.key.Access, true)
}

func testDeleteUser(t *testing.T, e *env) {
	d, p := e.domain("acme")
	alice, bob := e.user(d.ID, "alice"), e.user(d.ID, "bob")
	e.grant(kps.RoleAssignment{UserID: alice.ID, Role: kps.RoleMember, ProjectID: p.ID})
	e.grant(kps.RoleAssignment{UserID: alice.ID, Role: kps.RoleAdmin, DomainID: d.ID})
	e.grant(kps.RoleAssignment{UserID: bob.ID, Role: kps.RoleMember, ProjectID: p.ID})
	ca, cb := e.credentials(alice, p), e.credentials(bob, p)

	must(t, e.s.DeleteUser(e.ctx, alice.ID))
	if u, _ := e.s.UserByID(e.ctx, alice.ID); u != nil {
		t.Fatalf("user survived: %+v", u)
	}
	e.wantAllRevoked(ca, true) // the tokens stay readable, revoked
	e.wantAccessKey(ca.key.Access, false)
	e.wantAllRevoked(cb, false)
	e.wantAccessKey(cb.key.Access, true)
	as, err := e.s.ListRoleAssignments(e.ctx, kps.RoleAssignmentFilter{})
	must(t, err)
	if len(as) != 1 || as[0].UserID != bob.ID {
		t.Errorf("assignments %+v, want bob's only", as)
	}
	wantCode(t, e.s.DeleteUser(e.ctx, alice.ID), kps.ErrIdentityNotFound)
	e.user(d.ID, "alice") // the name is free again
}

func testUpdatePasswordHashRevokes(t *testing.T, e *env) {
	d, p := e.domain("acme")
	alice, bob := e.user(d.ID, "alice"), e.user(d.ID, "bob")
	ca, cb := e.credentials(alice, p), e.credentials(bob, p)
	e.clock.Advance(time.Hour)
	must(t, e.s.UpdatePasswordHash(e.ctx, alice.ID, "$argon2id$new"))
	u, _ := e.s.UserByID(e.ctx, alice.ID)
	if u.PasswordHash != "$argon2id$new" || !u.PasswordChangedAt.Equal(Epoch.Add(time.Hour)) {
		t.Fatalf("user after the change: %+v", u)
	}
	e.wantAllRevoked(ca, true)
	e.wantAllRevoked(cb, false)
	e.wantAccessKey(ca.key.Access, true)
	wantCode(t, e.s.UpdatePasswordHash(e.ctx, missing, "$argon2id$x"), kps.ErrIdentityNotFound)
}

func testRehashPasswordRevokesNothing(t *testing.T, e *env) {
	d, p := e.domain("acme")
	alice := e.user(d.ID, "alice")
	ca := e.credentials(alice, p)
	e.clock.Advance(time.Hour)
	must(t, e.s.RehashPassword(e.ctx, alice.ID, alice.PasswordHash, "$argon2id$stronger"))
	u, _ := e.s.UserByID(e.ctx, alice.ID)
	if u.PasswordHash != "$argon2id$stronger" || !u.PasswordChangedAt.Equal(alice.PasswordChangedAt) {
		t.Fatalf("user after the rehash: %+v (the password did not change)", u)
	}
	e.wantAllRevoked(ca, false)
	// A password changed since the login is not overwritten by the rehash of the old one.
	must(t, e.s.UpdatePasswordHash(e.ctx, alice.ID, "$argon2id$changed"))
	must(t, e.s.RehashPassword(e.ctx, alice.ID, "$argon2id$stronger", "$argon2id$stale"))
	if u, _ := e.s.UserByID(e.ctx, alice.ID); u.PasswordHash != "$argon2id$changed" {
		t.Fatalf("hash %q, want the changed one", u.PasswordHash)
	}
	must(t, e.s.RehashPassword(e.ctx, missing, "a", "b"))
}

// Roles -----------------------------------------------------------------------------------------

func testRoleIDsExistFromInstall(t *testing.T, e *env) {
	ids := map[string]bool{}
	first := map[kps.Role]string{}
	for _, r := range kps.Roles {
		id, err := e.s.RoleID(e.ctx, r)
		must(t, err)
		if !hexID.MatchString(id) || ids[id] {
			t.Fatalf("role %s has ID %q (before any bootstrap; 32 hex, distinct)", r, id)
		}
		ids[id], first[r] = true, id
	}
	e.bootstrapped()
	for _, r := range kps.Roles {
		if id, _ := e.s.RoleID(e.ctx, r); id != first[r] {
			t.Errorf("role %s changed ID from %s to %s", r, first[r], id)
		}
	}
	id, err := e.s.RoleID(e.ctx, "owner")
	must(t, err)
	if id != "" {
		t.Errorf("unknown role has ID %q", id)
	}
}

func testGrantAndRevokeRoles(t *testing.T, e *env) {
	d, p := e.domain("acme")
	dev := e.project(d.ID, region+"_dev")
	alice := e.user(d.ID, "alice")
	onProject := kps.RoleAssignment{UserID: alice.ID, Role: kps.RoleMember, ProjectID: p.ID}
	onDomain := kps.RoleAssignment{UserID: alice.ID, Role: kps.RoleReader, DomainID: d.ID}
	e.grant(onProject)
	e.grant(onProject) // again: not an error, no second row
	e.grant(onDomain)

	roles := func(f func() ([]kps.Role, error)) []kps.Role {
		t.Helper()
		r, err := f()
		must(t, err)
		return r
	}
	effective := func(projectID string) []kps.Role {
		return roles(func() ([]kps.Role, error) { return e.s.EffectiveRoles(e.ctx, alice.ID, projectID) })
	}
	domainRoles := func() []kps.Role {
		return roles(func() ([]kps.Role, error) { return e.s.DomainRoles(e.ctx, alice.ID, d.ID) })
	}
	if got := effective(p.ID); !slices.Equal(got, []kps.Role{kps.RoleMember, kps.RoleReader}) {
		t.Errorf("on the default project: %v", got)
	}
	if got := effective(dev.ID); !slices.Equal(got, []kps.Role{kps.RoleReader}) {
		t.Errorf("on dev (through the domain): %v", got)
	}
	// A project assignment gives no domain role.
	if got := domainRoles(); !slices.Equal(got, []kps.Role{kps.RoleReader}) {
		t.Errorf("on the domain: %v", got)
	}

	all, err := e.s.ListRoleAssignments(e.ctx, kps.RoleAssignmentFilter{UserID: ptr(alice.ID)})
	must(t, err)
	if !slices.Equal(all, []kps.RoleAssignment{onProject, onDomain}) {
		t.Errorf("assignments %+v", all)
	}
	for _, c := range []struct {
		f    kps.RoleAssignmentFilter
		want []kps.RoleAssignment
	}{
		{kps.RoleAssignmentFilter{ProjectID: ptr(p.ID)}, []kps.RoleAssignment{onProject}},
		{kps.RoleAssignmentFilter{DomainID: ptr(d.ID)}, []kps.RoleAssignment{onDomain}},
		{kps.RoleAssignmentFilter{ProjectID: ptr(dev.ID)}, []kps.RoleAssignment{}},
		{kps.RoleAssignmentFilter{UserID: ptr(missing)}, []kps.RoleAssignment{}},
	} {
		got, err := e.s.ListRoleAssignments(e.ctx, c.f)
		must(t, err)
		if !slices.Equal(got, c.want) || got == nil {
			t.Errorf("filter %+v: %+v, want %+v", c.f, got, c.want)
		}
	}

	must(t, e.s.RevokeRole(e.ctx, onDomain))
	if got := effective(dev.ID); len(got) != 0 {
		t.Errorf("on dev after the revocation: %v", got)
	}
	if got := domainRoles(); len(got) != 0 {
		t.Errorf("on the domain after the revocation: %v", got)
	}
	wantCode(t, e.s.RevokeRole(e.ctx, onDomain), kps.ErrIdentityNotFound)
	// The same role on another target is another assignment.
	wantCode(t, e.s.RevokeRole(e.ctx, kps.RoleAssignment{UserID: alice.ID, Role: kps.RoleMember, ProjectID: dev.ID}),
		kps.ErrIdentityNotFound)
	wantCode(t, e.s.RevokeRole(e.ctx, kps.RoleAssignment{UserID: alice.ID, Role: kps.RoleAdmin, ProjectID: p.ID}),
		kps.ErrIdentityNotFound)
	must(t, e.s.RevokeRole(e.ctx, onProject))
	if got := effective(p.ID); len(got) != 0 {
		t.Errorf("after revoking everything: %v", got)
	}
}

func testGrantRoleErrors(t *testing.T, e *env) {
	d, p := e.domain("acme")
	other, op := e.domain("other")
	alice := e.user(d.ID, "alice")
	tests := []struct {
		name string
		a    kps.RoleAssignment
		code string
	}{
		{"unknown user", kps.RoleAssignment{UserID: missing, Role: kps.RoleMember, ProjectID: p.ID}, kps.ErrIdentityNotFound},
		{"unknown project", kps.RoleAssignment{UserID: alice.ID, Role: kps.RoleMember, ProjectID: missing}, kps.ErrIdentityNotFound},
		{"unknown domain", kps.RoleAssignment{UserID: alice.ID, Role: kps.RoleMember, DomainID: missing}, kps.ErrIdentityNotFound},
		{"unknown role", kps.RoleAssignment{UserID: alice.ID, Role: "owner", ProjectID: p.ID}, kps.ErrInvalid},
		{"project of another domain", kps.RoleAssignment{UserID: alice.ID, Role: kps.RoleMember, ProjectID: op.ID}, kps.ErrInvalid},
		{"another domain", kps.RoleAssignment{UserID: alice.ID, Role: kps.RoleMember, DomainID: other.ID}, kps.ErrInvalid},
		{"no target", kps.RoleAssignment{UserID: alice.ID, Role: kps.RoleMember}, kps.ErrInvalid},
		{"two targets", kps.RoleAssignment{UserID: alice.ID, Role: kps.RoleMember, ProjectID: p.ID, DomainID: d.ID}, kps.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantCode(t, e.s.GrantRole(e.ctx, tt.a), tt.code) })
	}
	as, err := e.s.ListRoleAssignments(e.ctx, kps.RoleAssignmentFilter{})
	must(t, err)
	if len(as) != 0 {
		t.Errorf("refused grants left %+v", as)
	}
}

// Tokens ----------------------------------------------------------------------------------------

func testRevokeToken(t *testing.T, e *env) {
	d, p := e.domain("acme")
	alice := e.user(d.ID, "alice")
	tok, other := e.token(alice.ID, p.ID, ""), e.token(alice.ID, p.ID, "")
	derived, fromOther, unbound := e.tempCred(alice.ID, p.ID, tok), e.tempCred(alice.ID, p.ID, other), e.tempCred(alice.ID, "", "")

	e.clock.Advance(time.Second)
	must(t, e.s.RevokeToken(e.ctx, tok))
	e.wantRevoked(tok, true)
	e.wantRevoked(other, false)
	e.wantTempCred(derived, false)
	e.wantTempCred(fromOther, true)
	e.wantTempCred(unbound, true)

	// Revoking again keeps the first revocation time; an unknown token is no error.
	e.clock.Advance(time.Second)
	must(t, e.s.RevokeToken(e.ctx, tok))
	got, _ := e.s.TokenByHash(e.ctx, tok)
	if !got.RevokedAt.Equal(Epoch.Add(time.Second)) {
		t.Errorf("revoked at %v, want %v", got.RevokedAt, Epoch.Add(time.Second))
	}
	must(t, e.s.RevokeToken(e.ctx, "unknown"))
}

func testRevokeUserTokens(t *testing.T, e *env) {
	d, p := e.domain("acme")
	alice, bob := e.user(d.ID, "alice"), e.user(d.ID, "bob")
	ca, cb := e.credentials(alice, p), e.credentials(bob, p)
	must(t, e.s.RevokeUserTokens(e.ctx, alice.ID))
	e.wantAllRevoked(ca, true)
	e.wantAllRevoked(cb, false)
	must(t, e.s.RevokeUserTokens(e.ctx, missing))
}

func testDeleteExpiredTokens(t *testing.T, e *env) {
	d, _ := e.domain("acme")
	alice := e.user(d.ID, "alice")
	soon := e.token(alice.ID, "", "") // expires at Epoch+24h
	e.clock.Advance(12 * time.Hour)
	later := e.token(alice.ID, "", "") // expires at Epoch+36h
	e.clock.Advance(12*time.Hour + 30*time.Minute)

	n, err := e.s.DeleteExpiredTokens(e.ctx, time.Hour)
	must(t, err)
	if n != 0 {
		t.Fatalf("deleted %d tokens within the grace", n)
	}
	e.clock.Advance(30 * time.Minute)
	n, err = e.s.DeleteExpiredTokens(e.ctx, time.Hour)
	must(t, err)
	if n != 1 {
		t.Fatalf("deleted %d tokens, want the one expired an hour ago", n)
	}
	if tok, _ := e.s.TokenByHash(e.ctx, soon); tok != nil {
		t.Error("the expired token is still there")
	}
	e.wantRevoked(later, false)
}

// Access keys -----------------------------------------------------------------------------------

func testAccessKeyRoundTrip(t *testing.T, e *env) {
	d, _ := e.domain("acme")
	alice := e.user(d.ID, "alice")
	// Every byte value, as sealed output may hold any.
	secret := make([]byte, 256)
	for i := range secret {
		secret[i] = byte(i)
	}
	e.clock.Advance(time.Minute)
	k := &kps.AccessKey{Access: newAK(), UserID: alice.ID, Secret: bytes.Clone(secret), Status: kps.AccessKeyActive,
		Description: "ci"}
	must(t, e.s.CreateAccessKey(e.ctx, k))
	if !k.Created.Equal(Epoch.Add(time.Minute)) || !k.LastUsed.IsZero() {
		t.Fatalf("created key %+v", k)
	}
	got, err := e.s.AccessKey(e.ctx, k.Access)
	must(t, err)
	if got == nil || !bytes.Equal(got.Secret, secret) || got.UserID != alice.ID || got.Status != kps.AccessKeyActive ||
		got.Description != "ci" || !got.Created.Equal(k.Created) || !got.LastUsed.IsZero() {
		t.Fatalf("AccessKey = %s, want %+v", fmtAny(got), k)
	}
	list, err := e.s.ListAccessKeys(e.ctx, alice.ID)
	must(t, err)
	if len(list) != 1 || !bytes.Equal(list[0].Secret, secret) || list[0].Access != k.Access {
		t.Fatalf("ListAccessKeys = %+v", list)
	}
	if got, err := e.s.AccessKey(e.ctx, newAK()); err != nil || got != nil {
		t.Fatalf("unknown AK: %s, %v", fmtAny(got), err)
	}
	if list, err := e.s.ListAccessKeys(e.ctx, missing); err != nil || list == nil || len(list) != 0 {
		t.Fatalf("keys of an unknown user: %v, %v", list, err)
	}
}

func testAccessKeyLimit(t *testing.T, e *env) {
	d, _ := e.domain("acme")
	alice, bob := e.user(d.ID, "alice"), e.user(d.ID, "bob")
	first := e.accessKey(alice.ID)
	e.clock.Advance(time.Second)
	second := e.accessKey(alice.ID)
	third := &kps.AccessKey{Access: newAK(), UserID: alice.ID, Secret: []byte("s"), Status: kps.AccessKeyInactive}
	wantCode(t, e.s.CreateAccessKey(e.ctx, third), kps.ErrInvalid)
	e.wantAccessKey(third.Access, false)
	e.accessKey(bob.ID) // per user
	list, err := e.s.ListAccessKeys(e.ctx, alice.ID)
	must(t, err)
	if len(list) != 2 || list[0].Access != first.Access || list[1].Access != second.Access {
		t.Fatalf("keys %+v, want the two, oldest first", list)
	}
	// Inactive keys count; a deleted one frees its place.
	_, err = e.s.UpdateAccessKey(e.ctx, first.Access, kps.AccessKeyUpdate{Status: ptr(kps.AccessKeyInactive)})
	must(t, err)
	wantCode(t, e.s.CreateAccessKey(e.ctx, third), kps.ErrInvalid)
	must(t, e.s.DeleteAccessKey(e.ctx, first.Access))
	must(t, e.s.CreateAccessKey(e.ctx, third))
	wantCode(t, e.s.CreateAccessKey(e.ctx, &kps.AccessKey{Access: newAK(), UserID: missing, Secret: []byte("s"),
		Status: kps.AccessKeyActive}), kps.ErrIdentityNotFound)
}

func testAccessKeyLimitUnderConcurrency(t *testing.T, e *env) {
	d, _ := e.domain("acme")
	alice := e.user(d.ID, "alice")
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = e.s.CreateAccessKey(e.ctx, &kps.AccessKey{Access: newAK(), UserID: alice.ID,
				Secret: randomBytes(40), Status: kps.AccessKeyActive})
		})
	}
	wg.Wait()
	created := 0
	for _, err := range errs {
		if err == nil {
			created++
			continue
		}
		wantCode(t, err, kps.ErrInvalid)
	}
	list, err := e.s.ListAccessKeys(e.ctx, alice.ID)
	must(t, err)
	if created != kps.MaxAccessKeysPerUser || len(list) != kps.MaxAccessKeysPerUser {
		t.Fatalf("%d creations succeeded, %d keys stored; want %d", created, len(list), kps.MaxAccessKeysPerUser)
	}
}

func testUpdateAndDeleteAccessKey(t *testing.T, e *env) {
	d, p := e.domain("acme")
	alice := e.user(d.ID, "alice")
	tok := e.token(alice.ID, p.ID, "")
	k := e.accessKey(alice.ID)
	got, err := e.s.UpdateAccessKey(e.ctx, k.Access, kps.AccessKeyUpdate{Status: ptr(kps.AccessKeyInactive)})
	must(t, err)
	if got.Status != kps.AccessKeyInactive || got.Description != "" || !bytes.Equal(got.Secret, k.Secret) {
		t.Fatalf("after deactivation: %+v", got)
	}
	got, err = e.s.UpdateAccessKey(e.ctx, k.Access, kps.AccessKeyUpdate{Description: ptr("old laptop")})
	must(t, err)
	if got.Status != kps.AccessKeyInactive || got.Description != "old laptop" {
		t.Fatalf("after describing: %+v", got)
	}
	stored, _ := e.s.AccessKey(e.ctx, k.Access)
	if stored.Status != kps.AccessKeyInactive || stored.Description != "old laptop" || !bytes.Equal(stored.Secret, k.Secret) {
		t.Fatalf("stored %+v", stored)
	}
	// Keys and tokens are independent (auth.md §5.5).
	e.wantRevoked(tok, false)
	_, err = e.s.UpdateAccessKey(e.ctx, newAK(), kps.AccessKeyUpdate{Status: ptr(kps.AccessKeyActive)})
	wantCode(t, err, kps.ErrIdentityNotFound)

	must(t, e.s.DeleteAccessKey(e.ctx, k.Access))
	e.wantAccessKey(k.Access, false)
	e.wantRevoked(tok, false)
	wantCode(t, e.s.DeleteAccessKey(e.ctx, k.Access), kps.ErrIdentityNotFound)
}

func testTouchAccessKey(t *testing.T, e *env) {
	d, _ := e.domain("acme")
	alice := e.user(d.ID, "alice")
	k := e.accessKey(alice.ID)
	lastUsed := func() time.Time {
		t.Helper()
		got, err := e.s.AccessKey(e.ctx, k.Access)
		must(t, err)
		return got.LastUsed
	}
	e.clock.Advance(time.Second)
	must(t, e.s.TouchAccessKey(e.ctx, k.Access))
	first := Epoch.Add(time.Second)
	if got := lastUsed(); !got.Equal(first) {
		t.Fatalf("last used %v, want %v", got, first)
	}
	// Within the interval: no write.
	e.clock.Advance(kps.AccessKeyTouchInterval - time.Millisecond)
	must(t, e.s.TouchAccessKey(e.ctx, k.Access))
	if got := lastUsed(); !got.Equal(first) {
		t.Fatalf("last used %v moved within the interval", got)
	}
	e.clock.Advance(time.Millisecond)
	must(t, e.s.TouchAccessKey(e.ctx, k.Access))
	if got := lastUsed(); !got.Equal(first.Add(kps.AccessKeyTouchInterval)) {
		t.Fatalf("last used %v, want %v", got, first.Add(kps.AccessKeyTouchInterval))
	}
	must(t, e.s.TouchAccessKey(e.ctx, newAK()))
}

func testAccessKeysShareOneNamespace(t *testing.T, e *env) {
	d, _ := e.domain("acme")
	alice, bob := e.user(d.ID, "alice"), e.user(d.ID, "bob")
	k := e.accessKey(alice.ID)
	wantCode(t, e.s.CreateAccessKey(e.ctx, &kps.AccessKey{Access: k.Access, UserID: bob.ID, Secret: []byte("s"),
		Status: kps.AccessKeyActive}), kps.ErrIdentityConflict)
	wantCode(t, e.s.CreateTemporaryCredential(e.ctx, &kps.TemporaryCredential{Access: k.Access, UserID: bob.ID,
		Secret: []byte("s"), SecurityTokenHash: "h", ExpiresAt: Epoch.Add(time.Hour)}), kps.ErrIdentityConflict)
	tc := e.tempCred(bob.ID, "", "")
	wantCode(t, e.s.CreateAccessKey(e.ctx, &kps.AccessKey{Access: tc, UserID: bob.ID, Secret: []byte("s"),
		Status: kps.AccessKeyActive}), kps.ErrIdentityConflict)
	wantCode(t, e.s.CreateTemporaryCredential(e.ctx, &kps.TemporaryCredential{Access: tc, UserID: alice.ID,
		Secret: []byte("s"), SecurityTokenHash: "h", ExpiresAt: Epoch.Add(time.Hour)}), kps.ErrIdentityConflict)
	if got, _ := e.s.AccessKey(e.ctx, k.Access); got.UserID != alice.ID {
		t.Fatalf("the key changed hands: %+v", got)
	}
}

// Temporary credentials -------------------------------------------------------------------------

func testTemporaryCredentialRoundTrip(t *testing.T, e *env) {
	d, p := e.domain("acme")
	alice := e.user(d.ID, "alice")
	secret := append([]byte{0, 0xff, 0}, randomBytes(61)...)
	st := sha256.Sum256([]byte("ST1security-token"))
	for _, scope := range []string{p.ID, ""} {
		c := &kps.TemporaryCredential{Access: newAK(), UserID: alice.ID, ScopeProjectID: scope, Secret: bytes.Clone(secret),
			SecurityTokenHash: hex.EncodeToString(st[:]), ExpiresAt: Epoch.Add(15 * time.Minute), SourceAuditID: "audit-x"}
		must(t, e.s.CreateTemporaryCredential(e.ctx, c))
		got, err := e.s.TemporaryCredential(e.ctx, c.Access)
		must(t, err)
		if got == nil || got.Access != c.Access || got.UserID != alice.ID || got.ScopeProjectID != scope ||
			!bytes.Equal(got.Secret, secret) || got.SecurityTokenHash != c.SecurityTokenHash ||
			!got.ExpiresAt.Equal(c.ExpiresAt) || got.SourceAuditID != "audit-x" {
			t.Fatalf("TemporaryCredential = %s, want %+v", fmtAny(got), c)
		}
	}
	// Expired credentials are returned; the caller judges.
	e.clock.Advance(time.Hour)
	c := e.tempCred(alice.ID, "", "")
	e.clock.Advance(2 * time.Hour)
	e.wantTempCred(c, true)
	if got, err := e.s.TemporaryCredential(e.ctx, newAK()); err != nil || got != nil {
		t.Fatalf("unknown AK: %s, %v", fmtAny(got), err)
	}
}

func testTemporaryCredentialErrors(t *testing.T, e *env) {
	d, _ := e.domain("acme")
	_, op := e.domain("other")
	alice := e.user(d.ID, "alice")
	cred := func(userID, projectID string) *kps.TemporaryCredential {
		return &kps.TemporaryCredential{Access: newAK(), UserID: userID, ScopeProjectID: projectID, Secret: []byte("s"),
			SecurityTokenHash: "h", ExpiresAt: Epoch.Add(time.Hour)}
	}
	wantCode(t, e.s.CreateTemporaryCredential(e.ctx, cred(missing, "")), kps.ErrIdentityNotFound)
	wantCode(t, e.s.CreateTemporaryCredential(e.ctx, cred(alice.ID, missing)), kps.ErrIdentityNotFound)
	wantCode(t, e.s.CreateTemporaryCredential(e.ctx, cred(alice.ID, op.ID)), kps.ErrIdentityNotFound)
}

func testDeleteExpiredTemporaryCredentials(t *testing.T, e *env) {
	d, _ := e.domain("acme")
	alice := e.user(d.ID, "alice")
	soon := e.tempCred(alice.ID, "", "") // expires at Epoch+1h
	e.clock.Advance(30 * time.Minute)
	later := e.tempCred(alice.ID, "", "") // expires at Epoch+90m
	e.clock.Advance(90 * time.Minute)     // Epoch+2h
	n, err := e.s.DeleteExpiredTemporaryCredentials(e.ctx, time.Hour)
	must(t, err)
	if n != 1 {
		t.Fatalf("deleted %d, want the one expired an hour ago", n)
	}
	e.wantTempCred(soon, false)
	e.wantTempCred(later, true)
	n, err = e.s.DeleteExpiredTemporaryCredentials(e.ctx, 0)
	must(t, err)
	if n != 1 {
		t.Fatalf("deleted %d, want the one expired 30 minutes ago", n)
	}
}
