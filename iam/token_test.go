package iam

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openkps/kps"
)

func byName(user, domain string) IssueRequest {
	return IssueRequest{Method: MethodPassword, UserName: user, UserDomainName: domain, Password: password}
}

func (fx *fixture) issue(t *testing.T, req IssueRequest) (string, *TokenBody) {
	t.Helper()
	tok, body, err := fx.svc.IssueToken(context.Background(), req)
	if err != nil {
		t.Fatalf("IssueToken(%v): %v", req, err)
	}
	return tok, body
}

func wantCode(t *testing.T, err error, code, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s", code)
	}
	if got := kps.ErrorCode(err); got != code {
		t.Fatalf("code %s (%v), want %s", got, err, code)
	}
	if msg != "" && kps.ErrorMessage(err) != msg {
		t.Fatalf("message %q, want %q", kps.ErrorMessage(err), msg)
	}
}

func roleNames(refs []Ref) []string {
	var out []string
	for _, r := range refs {
		out = append(out, r.Name)
	}
	return out
}

var tokenFormat = regexp.MustCompile(`^KPT1[A-Za-z0-9_-]{43}$`)

func TestIssueTokenProjectScopeByID(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	req := byName("alice", "acme")
	req.Scope = fx.scope(Scope{Kind: ScopeProject, ProjectID: p1})
	tok, body := fx.issue(t, req)

	if !tokenFormat.MatchString(tok) {
		t.Errorf("token %q is not KPT1 + 43 base64url characters", tok)
	}
	rec := fx.token(t, tok)
	if h, err := hex.DecodeString(rec.Hash); err != nil || len(h) != 32 {
		t.Errorf("stored hash %q is not hex SHA-256", rec.Hash)
	}
	if fx.filesContain(t, tok[4:]) {
		t.Error("the token itself is stored")
	}
	if rec.UserID != fx.users["alice"].ID || rec.ProjectID != fx.id(p1) || rec.DomainID != "" ||
		!slices.Equal(rec.Methods, []string{"password"}) || !slices.Equal(rec.AuditIDs, body.AuditIDs) {
		t.Errorf("stored record %+v", rec)
	}
	if len(body.AuditIDs) != 1 || !regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`).MatchString(body.AuditIDs[0]) {
		t.Errorf("audit_ids %v", body.AuditIDs)
	}
	if want := fx.clock.Now().Add(24 * time.Hour).Truncate(time.Millisecond); !body.ExpiresAt.Equal(want) || !rec.ExpiresAt.Equal(want) {
		t.Errorf("expires_at %v, want %v (24 h)", body.ExpiresAt, want)
	}
	if body.Project == nil || body.Project.ID != fx.id(p1) || body.Project.Name != "my-region-1" ||
		body.Project.Domain != (Ref{fx.id(dAcme), "acme"}) || body.Domain != nil {
		t.Errorf("project %+v domain %+v", body.Project, body.Domain)
	}
	if got := roleNames(body.Roles); !slices.Equal(got, []string{"member", "reader"}) {
		t.Errorf("roles %v, want member and the implied reader", got)
	}
	if id, _ := fx.db.RoleID(context.Background(), kps.RoleMember); body.Roles[0].ID != id || len(id) != 32 {
		t.Errorf("role id %q, want the store's %q", body.Roles[0].ID, id)
	}

	b, err := json.Marshal(TokenResponse{body})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]map[string]any
	json.Unmarshal(b, &m)
	tm := m["token"]
	if tm["issued_at"] != "2025-01-02T03:04:05.123000Z" || tm["expires_at"] != "2025-01-03T03:04:05.123000Z" {
		t.Errorf("times %v %v", tm["issued_at"], tm["expires_at"])
	}
	user := tm["user"].(map[string]any)
	if v, ok := user["password_expires_at"]; !ok || v != nil {
		t.Errorf("user.password_expires_at = %v (present %v), want null", v, ok)
	}
	if user["name"] != "alice" || user["domain"].(map[string]any)["name"] != "acme" {
		t.Errorf("user %v", user)
	}
	if tm["is_domain"] != false || tm["methods"].([]any)[0] != "password" {
		t.Errorf("token %s", b)
	}
	if _, ok := tm["domain"]; ok {
		t.Errorf("a project-scoped body has a domain member: %s", b)
	}
	// A scoped token carries the service catalog (auth.md §8.4); the api drops it for ?nocatalog.
	if c, ok := tm["catalog"].([]any); !ok || len(c) == 0 {
		t.Errorf("a project-scoped body has no catalog: %s", b)
	}
}

func TestIssueTokenScopeForms(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		user, domain string
		scope        Scope
		wantProject  string
		wantDomain   string
		wantRoles    []string
	}{
		{"project by name and domain name", "alice", "acme", Scope{Kind: ScopeProject, ProjectName: "my-region-1", DomainName: "acme"}, p1, "", []string{"member", "reader"}},
		{"project by name and domain id", "alice", "acme", Scope{Kind: ScopeProject, ProjectName: "my-region-1", DomainID: dAcme}, p1, "", []string{"member", "reader"}},
		{"project by name in the user's domain", "mallory", "other", Scope{Kind: ScopeProject, ProjectName: "my-region-1"}, pOther, "", []string{"admin", "member", "reader"}},
		{"project through a domain role", "bob", "acme", Scope{Kind: ScopeProject, ProjectID: p2}, p2, "", []string{"admin", "member", "reader"}},
		{"domain by name", "bob", "acme", Scope{Kind: ScopeDomain, DomainName: "acme"}, "", dAcme, []string{"admin", "member", "reader"}},
		{"domain by id", "bob", "acme", Scope{Kind: ScopeDomain, DomainID: dAcme}, "", dAcme, []string{"admin", "member", "reader"}},
		// Any user may scope a token to their own domain, with their domain-level roles only.
		{"domain of a project member", "alice", "acme", Scope{Kind: ScopeDomain, DomainName: "acme"}, "", dAcme, []string{}},
		{"domain of a user without roles", "eve", "acme", Scope{Kind: ScopeDomain, DomainID: dAcme}, "", dAcme, []string{}},
		{"none: the default project", "alice", "acme", Scope{}, p1, "", []string{"member", "reader"}},
		{"none: no default project", "bob", "acme", Scope{}, "", "", nil},
		{"none: no role on the default project", "frank", "acme", Scope{}, "", "", nil},
		{"none: no role at all", "eve", "acme", Scope{}, "", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := setup(t)
			req := byName(tt.user, tt.domain)
			req.Scope = fx.scope(tt.scope)
			tok, body := fx.issue(t, req)
			rec := fx.token(t, tok)
			if rec.ProjectID != fx.id(tt.wantProject) || rec.DomainID != fx.id(tt.wantDomain) {
				t.Errorf("stored scope project %q domain %q, want %q %q", rec.ProjectID, rec.DomainID, tt.wantProject, tt.wantDomain)
			}
			if got := roleNames(body.Roles); !slices.Equal(got, tt.wantRoles) || (body.Roles == nil) != (tt.wantRoles == nil) {
				t.Errorf("roles %v, want %v", got, tt.wantRoles)
			}
			b, _ := json.Marshal(body)
			var m map[string]any
			json.Unmarshal(b, &m)
			_, hasProject := m["project"]
			_, hasDomain := m["domain"]
			_, hasRoles := m["roles"]
			if hasProject != (tt.wantProject != "") || hasDomain != (tt.wantDomain != "") || hasRoles != (tt.wantRoles != nil) {
				t.Errorf("body members project=%v domain=%v roles=%v: %s", hasProject, hasDomain, hasRoles, b)
			}
			if len(body.Roles) > 0 {
				if id, _ := fx.db.RoleID(context.Background(), kps.Role(body.Roles[0].Name)); body.Roles[0].ID != id {
					t.Errorf("role ID %q does not come from the store (%q)", body.Roles[0].ID, id)
				}
			}
		})
	}
}

func TestIssueTokenByUserID(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	tok, body := fx.issue(t, IssueRequest{Method: MethodPassword, UserID: fx.users["alice"].ID, Password: password})
	if body.User.Name != "alice" || fx.token(t, tok).ProjectID != fx.id(p1) {
		t.Errorf("body %+v", body)
	}
}

func TestIssueTokenLoginFailures(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	long := strings.Repeat("x", 1025)
	tests := []struct {
		name, reason string
		req          IssueRequest
	}{
		{"unknown domain", "user-unknown", byName("alice", "nowhere")},
		{"unknown domain id", "user-unknown", IssueRequest{Method: MethodPassword, UserName: "alice", UserDomainID: strings.Repeat("f", 32), Password: password}},
		{"user in another domain", "user-unknown", byName("alice", "other")},
		{"unknown user", "user-unknown", byName("zed", "acme")},
		{"unknown user id", "user-unknown", IssueRequest{Method: MethodPassword, UserID: "nobody", Password: password}},
		{"wrong password", "password-wrong", IssueRequest{Method: MethodPassword, UserName: "alice", UserDomainName: "acme", Password: password + "!"}},
		{"disabled user", "user-disabled", byName("carol", "acme")},
		{"disabled domain", "domain-disabled", byName("dave", "off")},
		{"user without a password", "user-unknown", byName("nopass", "acme")},
		{"password too long", "password-length", IssueRequest{Method: MethodPassword, UserName: "alice", UserDomainName: "acme", Password: long}},
		{"empty password", "password-length", IssueRequest{Method: MethodPassword, UserName: "alice", UserDomainName: "acme"}},
		{"unsupported method", "method-unsupported", IssueRequest{Method: "totp", UserName: "alice", UserDomainName: "acme", Password: password}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := fx.svc.IssueToken(context.Background(), tt.req)
			wantCode(t, err, kps.ErrLoginFailed, "The username or password is wrong.")
			var f *Failure
			if !IsFailure(err) || !errorsAs(err, &f) || f.Reason != tt.reason {
				t.Errorf("reason %v, want %s", err, tt.reason)
			}
			if strings.Contains(err.Error(), password) {
				t.Error("the error quotes the password")
			}
		})
	}
	if n := fx.tokenCount(t); n != 0 {
		t.Errorf("%d tokens were stored by failed logins", n)
	}
}

// An unknown user costs a hash verification like a known one (auth.md §5.1 step 3), and a
// password over 1024 bytes costs none. With every hashing slot taken, a login that hashes
// waits (and here runs into its deadline) while one that does not answers at once. Not
// parallel: it holds the process-wide slots.
func TestUnknownUserRunsTheDummyHash(t *testing.T) {
	fx := setup(t)
	fx.svc.IssueToken(context.Background(), byName("zed", "acme")) // computes the dummy hash
	defer holdHashSlots(t)()
	for _, req := range []IssueRequest{byName("zed", "acme"), byName("alice", "nowhere"), byName("nopass", "acme")} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		_, _, err := fx.svc.IssueToken(ctx, req)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s@%s: %v, want a wait for a hashing slot", req.UserName, req.UserDomainName, err)
		}
	}
	req := byName("alice", "acme")
	req.Password = strings.Repeat("x", 1025)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, _, err := fx.svc.IssueToken(ctx, req)
	wantCode(t, err, kps.ErrLoginFailed, "The username or password is wrong.")
}

func errorsAs(err error, f **Failure) bool {
	for err != nil {
		if x, ok := err.(*Failure); ok {
			*f = x
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

func TestIssueTokenScopeFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		user, domain string
		scope        Scope
	}{
		{"unknown project id", "alice", "acme", Scope{Kind: ScopeProject, ProjectID: "ffffffffffffffffffffffffffffffff"}},
		{"project of another domain", "alice", "acme", Scope{Kind: ScopeProject, ProjectID: pOther}},
		{"project name in another domain", "alice", "acme", Scope{Kind: ScopeProject, ProjectName: "my-region-1", DomainName: "other"}},
		{"project name in an unknown domain", "alice", "acme", Scope{Kind: ScopeProject, ProjectName: "my-region-1", DomainName: "nowhere"}},
		{"unknown project name", "alice", "acme", Scope{Kind: ScopeProject, ProjectName: "nope"}},
		{"disabled project", "alice", "acme", Scope{Kind: ScopeProject, ProjectID: pOff}},
		{"no role on the project", "alice", "acme", Scope{Kind: ScopeProject, ProjectID: p2}},
		{"no role anywhere", "eve", "acme", Scope{Kind: ScopeProject, ProjectID: p1}},
		{"foreign domain", "bob", "acme", Scope{Kind: ScopeDomain, DomainName: "other"}},
		{"disabled domain", "bob", "acme", Scope{Kind: ScopeDomain, DomainID: dOff}},
		{"unknown domain", "bob", "acme", Scope{Kind: ScopeDomain, DomainName: "nowhere"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := setup(t)
			req := byName(tt.user, tt.domain)
			req.Scope = fx.scope(tt.scope)
			_, _, err := fx.svc.IssueToken(context.Background(), req)
			wantCode(t, err, kps.ErrScope, "The user has no access to the requested scope.")
			if n := fx.tokenCount(t); n != 0 {
				t.Errorf("%d tokens were stored", n)
			}
		})
	}
}

func TestRescopeWithToken(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	ctx := context.Background()
	tok, first := fx.issue(t, byName("bob", "acme")) // unscoped
	fx.clock.Add(time.Hour)

	req := IssueRequest{Method: MethodToken, Token: tok, Scope: fx.scope(Scope{Kind: ScopeProject, ProjectID: p2})}
	tok2, body := fx.issue(t, req)
	if tok2 == tok {
		t.Fatal("re-scoping returned the same token")
	}
	if !body.ExpiresAt.Equal(first.ExpiresAt.Time) {
		t.Errorf("re-scoped token expires %v, want the source's %v", body.ExpiresAt, first.ExpiresAt)
	}
	if !body.IssuedAt.Equal(fx.clock.Now().Truncate(time.Millisecond)) {
		t.Errorf("issued_at %v", body.IssuedAt)
	}
	if len(body.AuditIDs) != 2 || body.AuditIDs[1] != first.AuditIDs[0] || body.AuditIDs[0] == first.AuditIDs[0] {
		t.Errorf("audit_ids %v, want [new, %s]", body.AuditIDs, first.AuditIDs[0])
	}
	if !slices.Equal(body.Methods, []string{"token"}) || body.Project == nil || body.Project.ID != fx.id(p2) {
		t.Errorf("body %+v", body)
	}
	if p, err := fx.svc.Authenticate(ctx, tok2, fx.id(p2), ""); err != nil || p.ProjectID != fx.id(p2) {
		t.Fatalf("the re-scoped token does not work: %v", err)
	}
	if _, err := fx.svc.Authenticate(ctx, tok, "", ""); err != nil {
		t.Errorf("re-scoping affected the source token: %v", err)
	}

	_, _, err := fx.svc.IssueToken(ctx, IssueRequest{Method: MethodToken, Token: "KPT1nope"})
	wantCode(t, err, kps.ErrBadCredentials, "Incorrect authentication information: the token is not valid.")
	_, _, err = fx.svc.IssueToken(ctx, IssueRequest{Method: MethodToken})
	wantCode(t, err, kps.ErrBadCredentials, "Incorrect authentication information: the token is not valid.")
	_, _, err = fx.svc.IssueToken(ctx, IssueRequest{Method: MethodToken, Token: tok, Scope: fx.scope(Scope{Kind: ScopeProject, ProjectID: pOther})})
	wantCode(t, err, kps.ErrScope, "")

	fx.clock.Add(23 * time.Hour)
	_, _, err = fx.svc.IssueToken(ctx, IssueRequest{Method: MethodToken, Token: tok})
	wantCode(t, err, kps.ErrBadCredentials, "Incorrect authentication information: the token has expired.")
}

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	ctx := context.Background()
	alice, proj1 := fx.users["alice"].ID, fx.id(p1)
	req := byName("alice", "acme")
	req.Scope = fx.scope(Scope{Kind: ScopeProject, ProjectID: p1})
	tok, body := fx.issue(t, req)

	p, err := fx.svc.Authenticate(ctx, tok, proj1, "")
	if err != nil {
		t.Fatal(err)
	}
	want := kps.Principal{UserID: alice, UserName: "alice", DomainID: fx.id(dAcme), DomainName: "acme",
		ProjectID: proj1, Roles: []kps.Role{kps.RoleMember, kps.RoleReader}, AuthMethod: "token", TokenAuditID: body.AuditIDs[0]}
	if !principalEqual(*p, want) {
		t.Errorf("principal %+v, want %+v", *p, want)
	}

	// Roles are live: an assignment made after issuing counts at once, a removed one too.
	admin := kps.RoleAssignment{UserID: alice, Role: kps.RoleAdmin, ProjectID: proj1}
	member := kps.RoleAssignment{UserID: alice, Role: kps.RoleMember, ProjectID: proj1}
	if err := fx.db.GrantRole(ctx, admin); err != nil {
		t.Fatal(err)
	}
	if p, _ := fx.svc.Authenticate(ctx, tok, proj1, ""); p == nil || !p.Has(kps.RoleAdmin) {
		t.Errorf("roles are not live: %+v", p)
	}
	for _, a := range []kps.RoleAssignment{admin, member} {
		if err := fx.db.RevokeRole(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	_, err = fx.svc.Authenticate(ctx, tok, proj1, "")
	wantCode(t, err, kps.ErrForbidden, "The user has no permission to perform this operation.")

	_, err = fx.svc.Authenticate(ctx, tok, fx.id(p2), "")
	wantCode(t, err, kps.ErrProjectMismatch, "Project mismatch: the request targets project "+fx.id(p2)+" but the credentials are scoped to project "+proj1+".")

	// Identity routes: no target project, no project check; alice holds no domain role.
	p, err = fx.svc.Authenticate(ctx, tok, "", "")
	if err != nil || p.ProjectID != "" || p.UserID != alice || len(p.Roles) != 0 {
		t.Errorf("identity route: %+v %v", p, err)
	}
}

func principalEqual(a, b kps.Principal) bool {
	return a.UserID == b.UserID && a.UserName == b.UserName && a.DomainID == b.DomainID &&
		a.DomainName == b.DomainName && a.ProjectID == b.ProjectID && slices.Equal(a.Roles, b.Roles) &&
		a.AuthMethod == b.AuthMethod && a.TokenAuditID == b.TokenAuditID
}

func TestAuthenticateNotProjectScoped(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	ctx := context.Background()
	unscoped, _ := fx.issue(t, byName("bob", "acme"))
	req := byName("bob", "acme")
	req.Scope = Scope{Kind: ScopeDomain, DomainName: "acme"}
	domainScoped, _ := fx.issue(t, req)
	for _, tok := range []string{unscoped, domainScoped} {
		_, err := fx.svc.Authenticate(ctx, tok, fx.id(p1), "")
		wantCode(t, err, kps.ErrProjectMismatch, "Project mismatch: the request targets project "+fx.id(p1)+" but the token is not scoped to a project.")
		p, err := fx.svc.Authenticate(ctx, tok, "", "")
		if err != nil || !slices.Equal(p.Roles, []kps.Role{kps.RoleAdmin, kps.RoleMember, kps.RoleReader}) {
			t.Errorf("identity route principal %+v %v, want the domain roles", p, err)
		}
	}
}

func TestAuthenticateRejectsTokens(t *testing.T) {
	t.Parallel()
	const (
		notValid = "Incorrect authentication information: the token is not valid."
		revoked  = "Incorrect authentication information: the token has been revoked."
		expired  = "Incorrect authentication information: the token has expired."
	)
	ctx := context.Background()
	must := func(t *testing.T, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		project string // alice's token is scoped to it; default p1
		// token replaces alice's token with another string; edit changes the store first.
		token func(t *testing.T, fx *fixture, tok string) string
		edit  func(t *testing.T, fx *fixture, tok string)
		msg   string
	}{
		{name: "empty", token: func(*testing.T, *fixture, string) string { return "" }, msg: notValid},
		{name: "unknown", token: func(*testing.T, *fixture, string) string { return "KPT1" + strings.Repeat("A", 43) }, msg: notValid},
		{name: "over 8 KiB", token: func(_ *testing.T, _ *fixture, tok string) string { return tok + strings.Repeat("A", MaxTokenBytes) }, msg: notValid},
		{name: "non-printable", token: func(_ *testing.T, _ *fixture, tok string) string { return tok[:10] + "\x00" + tok[11:] }, msg: notValid},
		{name: "non-ASCII", token: func(_ *testing.T, _ *fixture, tok string) string { return tok[:10] + "é" + tok[12:] }, msg: notValid},
		{name: "revoked", edit: func(t *testing.T, fx *fixture, tok string) { must(t, fx.db.RevokeToken(ctx, tokenHash(tok))) }, msg: revoked},
		{name: "expired", edit: func(_ *testing.T, fx *fixture, _ string) { fx.clock.Add(24 * time.Hour) }, msg: expired},
		{name: "revoked and expired", edit: func(t *testing.T, fx *fixture, tok string) {
			must(t, fx.db.RevokeToken(ctx, tokenHash(tok)))
			fx.clock.Add(48 * time.Hour)
		}, msg: revoked},
		{name: "password changed", edit: func(t *testing.T, fx *fixture, _ string) {
			must(t, fx.db.UpdatePasswordHash(ctx, fx.users["alice"].ID, fx.users["alice"].PasswordHash))
		}, msg: revoked},
		{name: "user disabled", edit: func(t *testing.T, fx *fixture, _ string) {
			_, err := fx.db.UpdateUser(ctx, fx.users["alice"].ID, kps.UserUpdate{Enabled: ptr(false)})
			must(t, err)
		}, msg: revoked},
		{name: "user deleted", edit: func(t *testing.T, fx *fixture, _ string) {
			must(t, fx.db.DeleteUser(ctx, fx.users["alice"].ID))
		}, msg: revoked},
		{name: "domain disabled", edit: func(t *testing.T, fx *fixture, _ string) {
			_, err := fx.db.UpdateDomain(ctx, fx.id(dAcme), kps.DomainUpdate{Enabled: ptr(false)})
			must(t, err)
		}, msg: revoked},
		{name: "domain deleted", edit: func(t *testing.T, fx *fixture, _ string) {
			must(t, fx.db.DeleteDomain(ctx, fx.id(dAcme)))
		}, msg: revoked},
		{name: "project disabled", edit: func(t *testing.T, fx *fixture, _ string) {
			_, err := fx.db.UpdateProject(ctx, fx.id(p1), kps.ProjectUpdate{Enabled: ptr(false)})
			must(t, err)
		}, msg: revoked},
		{name: "project deleted", project: p3, edit: func(t *testing.T, fx *fixture, _ string) {
			must(t, fx.db.DeleteProject(ctx, fx.id(p3)))
		}, msg: revoked},
		{name: "stored for a disabled user", token: func(t *testing.T, fx *fixture, _ string) string { return fx.storedToken(t, "carol", p1) }, msg: revoked},
		{name: "stored for a disabled domain", token: func(t *testing.T, fx *fixture, _ string) string { return fx.storedToken(t, "dave", "") }, msg: revoked},
		{name: "stored for a disabled project", token: func(t *testing.T, fx *fixture, _ string) string { return fx.storedToken(t, "alice", pOff) }, msg: revoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := setup(t)
			project := cmp.Or(tt.project, p1)
			req := byName("alice", "acme")
			req.Scope = fx.scope(Scope{Kind: ScopeProject, ProjectID: project})
			tok, _ := fx.issue(t, req)
			if tt.edit != nil {
				tt.edit(t, fx, tok)
			}
			if tt.token != nil {
				tok = tt.token(t, fx, tok)
			}
			_, err := fx.svc.Authenticate(ctx, tok, fx.id(project), "")
			wantCode(t, err, kps.ErrBadCredentials, tt.msg)
			if tok != "" && strings.Contains(err.Error(), tok) {
				t.Error("the error quotes the token")
			}
			// A token refused as revoked is revoked in the store (§5.6 step 4: "and revoke it").
			if tt.msg == revoked {
				if rec := fx.token(t, tok); !rec.Revoked() {
					t.Errorf("the refused token is not revoked in the store: %+v", rec)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestTokenExpiresAtTTL(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	fx.svc.TokenTTL = 5 * time.Minute
	tok, body := fx.issue(t, byName("alice", "acme"))
	if want := fx.clock.Now().Add(5 * time.Minute).Truncate(time.Millisecond); !body.ExpiresAt.Equal(want) {
		t.Fatalf("expires_at %v, want %v", body.ExpiresAt, want)
	}
	fx.clock.Add(5*time.Minute - time.Second)
	if _, err := fx.svc.Authenticate(context.Background(), tok, fx.id(p1), ""); err != nil {
		t.Fatalf("one second before expiry: %v", err)
	}
	fx.clock.Set(body.ExpiresAt.Time) // now == expires_at is expired (§5.3: valid while now < expires_at)
	_, err := fx.svc.Authenticate(context.Background(), tok, fx.id(p1), "")
	wantCode(t, err, kps.ErrBadCredentials, "Incorrect authentication information: the token has expired.")
}

// A login whose stored hash is weaker than the configured parameters upgrades the hash
// (auth.md §12.1) without counting as a password change: no token is revoked.
func TestLoginRehashesWeakHash(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	ctx := context.Background()
	before := fx.users["alice"]
	tok, _ := fx.issue(t, byName("alice", "acme"))

	fx.svc.Params = Params{MemoryKiB: 2 * cheap.MemoryKiB, Iterations: 1, Parallelism: 1}
	fx.clock.Add(time.Hour)
	fx.issue(t, byName("alice", "acme"))
	after, err := fx.db.UserByID(ctx, before.ID)
	if err != nil {
		t.Fatal(err)
	}
	if after.PasswordHash == before.PasswordHash || !strings.Contains(after.PasswordHash, "m=128,") {
		t.Fatalf("hash %q was not upgraded", after.PasswordHash)
	}
	if !after.PasswordChangedAt.Equal(before.PasswordChangedAt) {
		t.Errorf("password change time moved from %v to %v", before.PasswordChangedAt, after.PasswordChangedAt)
	}
	if _, err := fx.svc.Authenticate(ctx, tok, fx.id(p1), ""); err != nil {
		t.Errorf("the rehash revoked a token: %v", err)
	}
	// The new hash logs in and needs no further upgrade.
	fx.issue(t, byName("alice", "acme"))
	if again, _ := fx.db.UserByID(ctx, before.ID); again.PasswordHash != after.PasswordHash {
		t.Error("a second login rehashed again")
	}
}

func TestLogin(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	ctx := context.Background()
	body := `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"alice","domain":{"name":"acme"},"password":"` + password + `"}}},
		"scope":{"project":{"name":"my-region-1","domain":{"name":"acme"}}}}}`
	tok, resp, err := fx.svc.Login(ctx, []byte(body), "", "")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(resp)
	var m struct {
		Token struct {
			Project struct{ ID string } `json:"project"`
		} `json:"token"`
	}
	if json.Unmarshal(b, &m); m.Token.Project.ID != fx.id(p1) {
		t.Errorf("response %s", b)
	}
	// The token method falls back to the X-Auth-Token header.
	rescope := `{"auth":{"identity":{"methods":["token"],"token":{}},"scope":{"project":{"id":"` + fx.id(p1) + `"}}}}`
	if _, _, err := fx.svc.Login(ctx, []byte(rescope), tok, ""); err != nil {
		t.Errorf("re-scope with the header token: %v", err)
	}
	_, resp, err = fx.svc.Login(ctx, []byte(`{"auth":{"identity":{"methods":["password","totp"]}}}`), "", "")
	wantCode(t, err, kps.ErrLoginFailed, "The username or password is wrong.")
	if resp != nil {
		t.Error("a failed login returned a response")
	}
}

func TestIssueRequestHidesSecrets(t *testing.T) {
	t.Parallel()
	r := IssueRequest{Method: MethodPassword, UserName: "alice", Password: "s3cret-pw", Token: "KPT1secret"}
	for _, s := range []string{r.String(), r.GoString()} {
		if strings.Contains(s, "s3cret-pw") || strings.Contains(s, "KPT1secret") || !strings.Contains(s, "alice") {
			t.Errorf("formatted request: %s", s)
		}
	}
}

func TestTokenFingerprint(t *testing.T) {
	t.Parallel()
	fp := TokenFingerprint("KPT1abc")
	if len(fp) != 12 || fp != tokenHash("KPT1abc")[:12] {
		t.Errorf("fingerprint %q", fp)
	}
}
