package iam

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openkps/kps"
)

// cheap keeps the tests fast; the production parameters are covered in password_test.go.
var cheap = Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1}

const (
	password = "correct horse battery"
	dAcme    = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	dOther   = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	dOff     = "cccccccccccccccccccccccccccccccc"
	p1       = "11111111111111111111111111111111" // acme "my-region-1"
	p2       = "22222222222222222222222222222222" // acme "my-region-1_dev"
	pOff     = "33333333333333333333333333333333" // acme, disabled
	pOther   = "44444444444444444444444444444444" // other "my-region-1"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type fixture struct {
	svc   *Service
	store *fakeIdentityStore
	clock *clock
	users map[string]*kps.User // by name
}

// setup returns a service over a fresh fake store holding:
//
//	alice@acme   member on p1, default project p1
//	bob@acme     admin on the acme domain
//	carol@acme   disabled, member on p1
//	dave@off     in the disabled domain "off"
//	eve@acme     no roles, no default project
//	frank@acme   member on p1, default project p2 (where he has no role)
//	mallory@other admin on the other domain
//	nopass@acme  member on p1, no password
func setup(t *testing.T, withDomainRoles bool) *fixture {
	t.Helper()
	f := newFakeIdentityStore()
	hash, err := cheap.Hash(context.Background(), password)
	if err != nil {
		t.Fatal(err)
	}
	f.domains[dAcme] = &kps.Domain{ID: dAcme, Name: "acme", Enabled: true}
	f.domains[dOther] = &kps.Domain{ID: dOther, Name: "other", Enabled: true}
	f.domains[dOff] = &kps.Domain{ID: dOff, Name: "off", Enabled: false}
	f.projects[p1] = &kps.Project{ID: p1, Name: "my-region-1", DomainID: dAcme, Enabled: true}
	f.projects[p2] = &kps.Project{ID: p2, Name: "my-region-1_dev", DomainID: dAcme, Enabled: true}
	f.projects[pOff] = &kps.Project{ID: pOff, Name: "my-region-1_off", DomainID: dAcme, Enabled: false}
	f.projects[pOther] = &kps.Project{ID: pOther, Name: "my-region-1", DomainID: dOther, Enabled: true}
	users := map[string]*kps.User{}
	add := func(name, domain string, enabled bool, def string, roles map[string][]kps.Role) {
		u := &kps.User{ID: strings.Repeat(name[:1], 32), Name: name, DomainID: domain, Enabled: enabled,
			PasswordHash: hash, DefaultProjectID: def}
		f.users[u.ID], users[name] = u, u
		f.assignments[u.ID] = roles
	}
	add("alice", dAcme, true, p1, map[string][]kps.Role{p1: {kps.RoleMember}, pOff: {kps.RoleMember}})
	add("bob", dAcme, true, "", map[string][]kps.Role{dAcme: {kps.RoleAdmin}})
	add("carol", dAcme, false, "", map[string][]kps.Role{p1: {kps.RoleMember}})
	add("dave", dOff, true, "", map[string][]kps.Role{dOff: {kps.RoleAdmin}})
	add("eve", dAcme, true, "", nil)
	add("frank", dAcme, true, p2, map[string][]kps.Role{p1: {kps.RoleMember}})
	add("mallory", dOther, true, "", map[string][]kps.Role{dOther: {kps.RoleAdmin}})
	add("nopass", dAcme, true, "", map[string][]kps.Role{p1: {kps.RoleMember}})
	users["nopass"].PasswordHash = ""

	c := &clock{now: time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.UTC)}
	var store kps.IdentityStore = f
	if withDomainRoles {
		store = fakeWithDomainRoles{f}
	}
	return &fixture{svc: &Service{Store: store, Now: c.Now, Params: cheap}, store: f, clock: c, users: users}
}

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
	fx := setup(t, false)
	req := byName("alice", "acme")
	req.Scope = Scope{Kind: ScopeProject, ProjectID: p1}
	tok, body := fx.issue(t, req)

	if !tokenFormat.MatchString(tok) {
		t.Errorf("token %q is not KPT1 + 43 base64url characters", tok)
	}
	rec, ok := fx.store.tokens[tokenHash(tok)]
	if !ok {
		t.Fatal("the token is not stored under its SHA-256")
	}
	if h, err := hex.DecodeString(rec.Hash); err != nil || len(h) != 32 {
		t.Errorf("stored hash %q is not hex SHA-256", rec.Hash)
	}
	for h, r := range fx.store.tokens {
		if strings.Contains(h, tok) || strings.Contains(r.Hash, tok[4:]) {
			t.Error("the token itself is stored")
		}
	}
	if rec.UserID != fx.users["alice"].ID || rec.ProjectID != p1 || rec.DomainID != "" ||
		!slices.Equal(rec.Methods, []string{"password"}) || !slices.Equal(rec.AuditIDs, body.AuditIDs) {
		t.Errorf("stored record %+v", rec)
	}
	if len(body.AuditIDs) != 1 || !regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`).MatchString(body.AuditIDs[0]) {
		t.Errorf("audit_ids %v", body.AuditIDs)
	}
	if want := fx.clock.Now().Add(24 * time.Hour).Truncate(time.Millisecond); !body.ExpiresAt.Equal(want) || !rec.ExpiresAt.Equal(want) {
		t.Errorf("expires_at %v, want %v (24 h)", body.ExpiresAt, want)
	}
	if body.Project == nil || body.Project.ID != p1 || body.Project.Name != "my-region-1" ||
		body.Project.Domain != (Ref{dAcme, "acme"}) || body.Domain != nil {
		t.Errorf("project %+v domain %+v", body.Project, body.Domain)
	}
	if got := roleNames(body.Roles); !slices.Equal(got, []string{"member", "reader"}) {
		t.Errorf("roles %v, want member and the implied reader", got)
	}
	if body.Roles[0].ID != DerivedRoleID(kps.RoleMember) || len(body.Roles[0].ID) != 32 {
		t.Errorf("role id %q", body.Roles[0].ID)
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
	if _, ok := tm["catalog"]; ok {
		t.Errorf("catalog is present though nobody filled it: %s", b)
	}
}

func TestIssueTokenScopeForms(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		user, domain    string
		scope           Scope
		wantProject     string
		wantDomain      string
		wantRoles       []string
		withDomainRoles bool
	}{
		{"project by name and domain name", "alice", "acme", Scope{Kind: ScopeProject, ProjectName: "my-region-1", DomainName: "acme"}, p1, "", []string{"member", "reader"}, false},
		{"project by name and domain id", "alice", "acme", Scope{Kind: ScopeProject, ProjectName: "my-region-1", DomainID: dAcme}, p1, "", []string{"member", "reader"}, false},
		{"project by name in the user's domain", "mallory", "other", Scope{Kind: ScopeProject, ProjectName: "my-region-1"}, pOther, "", []string{"admin", "member", "reader"}, false},
		{"project through a domain role", "bob", "acme", Scope{Kind: ScopeProject, ProjectID: p2}, p2, "", []string{"admin", "member", "reader"}, false},
		{"domain by name", "bob", "acme", Scope{Kind: ScopeDomain, DomainName: "acme"}, "", dAcme, []string{"admin", "member", "reader"}, true},
		{"domain by id", "bob", "acme", Scope{Kind: ScopeDomain, DomainID: dAcme}, "", dAcme, []string{"admin", "member", "reader"}, true},
		{"none: the default project", "alice", "acme", Scope{}, p1, "", []string{"member", "reader"}, false},
		{"none: no default project", "bob", "acme", Scope{}, "", "", nil, false},
		{"none: no role on the default project", "frank", "acme", Scope{}, "", "", nil, false},
		{"none: no role at all", "eve", "acme", Scope{}, "", "", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := setup(t, tt.withDomainRoles)
			req := byName(tt.user, tt.domain)
			req.Scope = tt.scope
			tok, body := fx.issue(t, req)
			rec := fx.store.tokens[tokenHash(tok)]
			if rec.ProjectID != tt.wantProject || rec.DomainID != tt.wantDomain {
				t.Errorf("stored scope project %q domain %q, want %q %q", rec.ProjectID, rec.DomainID, tt.wantProject, tt.wantDomain)
			}
			if got := roleNames(body.Roles); !slices.Equal(got, tt.wantRoles) {
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
			if tt.withDomainRoles && body.Roles[0].ID != "role-id-admin" {
				t.Errorf("role ID %q does not come from the store", body.Roles[0].ID)
			}
		})
	}
}

func TestIssueTokenByUserID(t *testing.T) {
	t.Parallel()
	fx := setup(t, false)
	tok, body := fx.issue(t, IssueRequest{Method: MethodPassword, UserID: fx.users["alice"].ID, Password: password})
	if body.User.Name != "alice" || fx.store.tokens[tokenHash(tok)].ProjectID != p1 {
		t.Errorf("body %+v", body)
	}
}

func TestIssueTokenLoginFailures(t *testing.T) {
	t.Parallel()
	fx := setup(t, false)
	long := strings.Repeat("x", 1025)
	tests := []struct {
		name, reason string
		req          IssueRequest
	}{
		{"unknown domain", "user-unknown", byName("alice", "nowhere")},
		{"unknown domain id", "user-unknown", IssueRequest{Method: MethodPassword, UserName: "alice", UserDomainID: dOther + "x", Password: password}},
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
	if len(fx.store.tokens) != 0 {
		t.Errorf("%d tokens were stored by failed logins", len(fx.store.tokens))
	}
}

// An unknown user costs a hash verification like a known one (auth.md §5.1 step 3), and a
// password over 1024 bytes costs none. With every hashing slot taken, a login that hashes
// waits (and here runs into its deadline) while one that does not answers at once. Not
// parallel: it holds the process-wide slots.
func TestUnknownUserRunsTheDummyHash(t *testing.T) {
	fx := setup(t, false)
	fx.svc.IssueToken(context.Background(), byName("zed", "acme")) // computes the dummy hash
	for range cap(hashSlots) {
		hashSlots <- struct{}{}
	}
	defer func() {
		for range cap(hashSlots) {
			<-hashSlots
		}
	}()
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
		name            string
		user, domain    string
		scope           Scope
		withDomainRoles bool
	}{
		{"unknown project id", "alice", "acme", Scope{Kind: ScopeProject, ProjectID: "ffffffffffffffffffffffffffffffff"}, false},
		{"project of another domain", "alice", "acme", Scope{Kind: ScopeProject, ProjectID: pOther}, false},
		{"project name in another domain", "alice", "acme", Scope{Kind: ScopeProject, ProjectName: "my-region-1", DomainName: "other"}, false},
		{"project name in an unknown domain", "alice", "acme", Scope{Kind: ScopeProject, ProjectName: "my-region-1", DomainName: "nowhere"}, false},
		{"unknown project name", "alice", "acme", Scope{Kind: ScopeProject, ProjectName: "nope"}, false},
		{"disabled project", "alice", "acme", Scope{Kind: ScopeProject, ProjectID: pOff}, false},
		{"no role on the project", "alice", "acme", Scope{Kind: ScopeProject, ProjectID: p2}, false},
		{"no role anywhere", "eve", "acme", Scope{Kind: ScopeProject, ProjectID: p1}, false},
		{"foreign domain", "bob", "acme", Scope{Kind: ScopeDomain, DomainName: "other"}, true},
		{"disabled domain", "bob", "acme", Scope{Kind: ScopeDomain, DomainID: dOff}, true},
		{"unknown domain", "bob", "acme", Scope{Kind: ScopeDomain, DomainName: "nowhere"}, true},
		{"no role on the domain", "alice", "acme", Scope{Kind: ScopeDomain, DomainName: "acme"}, true},
		{"domain scope without store support", "bob", "acme", Scope{Kind: ScopeDomain, DomainName: "acme"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := setup(t, tt.withDomainRoles)
			req := byName(tt.user, tt.domain)
			req.Scope = tt.scope
			_, _, err := fx.svc.IssueToken(context.Background(), req)
			wantCode(t, err, kps.ErrScope, "The user has no access to the requested scope.")
			if len(fx.store.tokens) != 0 {
				t.Error("a token was stored")
			}
		})
	}
}

func TestRescopeWithToken(t *testing.T) {
	t.Parallel()
	fx := setup(t, false)
	ctx := context.Background()
	tok, first := fx.issue(t, byName("bob", "acme")) // unscoped
	fx.clock.Add(time.Hour)

	req := IssueRequest{Method: MethodToken, Token: tok, Scope: Scope{Kind: ScopeProject, ProjectID: p2}}
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
	if !slices.Equal(body.Methods, []string{"token"}) || body.Project == nil || body.Project.ID != p2 {
		t.Errorf("body %+v", body)
	}
	if p, err := fx.svc.Authenticate(ctx, tok2, p2); err != nil || p.ProjectID != p2 {
		t.Fatalf("the re-scoped token does not work: %v", err)
	}
	if _, err := fx.svc.Authenticate(ctx, tok, ""); err != nil {
		t.Errorf("re-scoping affected the source token: %v", err)
	}

	_, _, err := fx.svc.IssueToken(ctx, IssueRequest{Method: MethodToken, Token: "KPT1nope"})
	wantCode(t, err, kps.ErrBadCredentials, "Incorrect authentication information: the token is not valid.")
	_, _, err = fx.svc.IssueToken(ctx, IssueRequest{Method: MethodToken})
	wantCode(t, err, kps.ErrBadCredentials, "Incorrect authentication information: the token is not valid.")
	_, _, err = fx.svc.IssueToken(ctx, IssueRequest{Method: MethodToken, Token: tok, Scope: Scope{Kind: ScopeProject, ProjectID: pOther}})
	wantCode(t, err, kps.ErrScope, "")

	fx.clock.Add(23 * time.Hour)
	_, _, err = fx.svc.IssueToken(ctx, IssueRequest{Method: MethodToken, Token: tok})
	wantCode(t, err, kps.ErrBadCredentials, "Incorrect authentication information: the token has expired.")
}

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	fx := setup(t, false)
	ctx := context.Background()
	req := byName("alice", "acme")
	req.Scope = Scope{Kind: ScopeProject, ProjectID: p1}
	tok, body := fx.issue(t, req)

	p, err := fx.svc.Authenticate(ctx, tok, p1)
	if err != nil {
		t.Fatal(err)
	}
	want := kps.Principal{UserID: fx.users["alice"].ID, UserName: "alice", DomainID: dAcme, DomainName: "acme",
		ProjectID: p1, Roles: []kps.Role{kps.RoleMember, kps.RoleReader}, AuthMethod: "token", TokenAuditID: body.AuditIDs[0]}
	if !principalEqual(*p, want) {
		t.Errorf("principal %+v, want %+v", *p, want)
	}

	// Roles are live: an assignment made after issuing counts at once, a removed one too.
	fx.store.change(func() { fx.store.assignments[fx.users["alice"].ID][p1] = []kps.Role{kps.RoleAdmin} })
	if p, _ := fx.svc.Authenticate(ctx, tok, p1); p == nil || !p.Has(kps.RoleAdmin) {
		t.Errorf("roles are not live: %+v", p)
	}
	fx.store.change(func() { delete(fx.store.assignments[fx.users["alice"].ID], p1) })
	_, err = fx.svc.Authenticate(ctx, tok, p1)
	wantCode(t, err, kps.ErrForbidden, "The user has no permission to perform this operation.")

	_, err = fx.svc.Authenticate(ctx, tok, p2)
	wantCode(t, err, kps.ErrProjectMismatch, "Project mismatch: the request targets project "+p2+" but the credentials are scoped to project "+p1+".")

	// Identity routes: no target project, no project check.
	p, err = fx.svc.Authenticate(ctx, tok, "")
	if err != nil || p.ProjectID != "" || p.UserID != fx.users["alice"].ID {
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
	fx := setup(t, true)
	ctx := context.Background()
	unscoped, _ := fx.issue(t, byName("bob", "acme"))
	req := byName("bob", "acme")
	req.Scope = Scope{Kind: ScopeDomain, DomainName: "acme"}
	domainScoped, _ := fx.issue(t, req)
	for _, tok := range []string{unscoped, domainScoped} {
		_, err := fx.svc.Authenticate(ctx, tok, p1)
		wantCode(t, err, kps.ErrProjectMismatch, "Project mismatch: the request targets project "+p1+" but the token is not scoped to a project.")
		p, err := fx.svc.Authenticate(ctx, tok, "")
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
	tests := []struct {
		name  string
		token func(fx *fixture, tok string) string
		edit  func(fx *fixture, tok string)
		msg   string
	}{
		{"empty", func(*fixture, string) string { return "" }, nil, notValid},
		{"unknown", func(*fixture, string) string { return "KPT1" + strings.Repeat("A", 43) }, nil, notValid},
		{"over 8 KiB", func(_ *fixture, tok string) string { return tok + strings.Repeat("A", MaxTokenBytes) }, nil, notValid},
		{"non-printable", func(_ *fixture, tok string) string { return tok[:10] + "\x00" + tok[11:] }, nil, notValid},
		{"non-ASCII", func(_ *fixture, tok string) string { return tok[:10] + "é" + tok[12:] }, nil, notValid},
		{"revoked", nil, func(fx *fixture, tok string) { fx.store.tokens[tokenHash(tok)].Revoked = true }, revoked},
		{"expired", nil, func(fx *fixture, _ string) { fx.clock.Add(24 * time.Hour) }, expired},
		{"revoked and expired", nil, func(fx *fixture, tok string) {
			fx.store.tokens[tokenHash(tok)].Revoked = true
			fx.clock.Add(48 * time.Hour)
		}, revoked},
		{"user disabled", nil, func(fx *fixture, _ string) { fx.store.users[fx.users["alice"].ID].Enabled = false }, revoked},
		{"user deleted", nil, func(fx *fixture, _ string) { delete(fx.store.users, fx.users["alice"].ID) }, revoked},
		{"domain disabled", nil, func(fx *fixture, _ string) { fx.store.domains[dAcme].Enabled = false }, revoked},
		{"project disabled", nil, func(fx *fixture, _ string) { fx.store.projects[p1].Enabled = false }, revoked},
		{"project deleted", nil, func(fx *fixture, _ string) { delete(fx.store.projects, p1) }, revoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fx := setup(t, false)
			req := byName("alice", "acme")
			req.Scope = Scope{Kind: ScopeProject, ProjectID: p1}
			tok, _ := fx.issue(t, req)
			if tt.edit != nil {
				fx.store.change(func() { tt.edit(fx, tok) })
			}
			if tt.token != nil {
				tok = tt.token(fx, tok)
			}
			_, err := fx.svc.Authenticate(context.Background(), tok, p1)
			wantCode(t, err, kps.ErrBadCredentials, tt.msg)
			if tok != "" && strings.Contains(err.Error(), tok) {
				t.Error("the error quotes the token")
			}
		})
	}
}

func TestTokenExpiresAtTTL(t *testing.T) {
	t.Parallel()
	fx := setup(t, false)
	fx.svc.TokenTTL = 5 * time.Minute
	tok, body := fx.issue(t, byName("alice", "acme"))
	if want := fx.clock.Now().Add(5 * time.Minute).Truncate(time.Millisecond); !body.ExpiresAt.Equal(want) {
		t.Fatalf("expires_at %v, want %v", body.ExpiresAt, want)
	}
	fx.clock.Add(5*time.Minute - time.Second)
	if _, err := fx.svc.Authenticate(context.Background(), tok, p1); err != nil {
		t.Fatalf("one second before expiry: %v", err)
	}
	fx.clock.now = body.ExpiresAt.Time // now == expires_at is expired (§5.3: valid while now < expires_at)
	_, err := fx.svc.Authenticate(context.Background(), tok, p1)
	wantCode(t, err, kps.ErrBadCredentials, "Incorrect authentication information: the token has expired.")
}

func TestLogin(t *testing.T) {
	t.Parallel()
	fx := setup(t, false)
	ctx := context.Background()
	body := `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"alice","domain":{"name":"acme"},"password":"` + password + `"}}},
		"scope":{"project":{"name":"my-region-1","domain":{"name":"acme"}}}}}`
	tok, resp, err := fx.svc.Login(ctx, []byte(body), "")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(resp)
	var m struct {
		Token struct {
			Project struct{ ID string } `json:"project"`
		} `json:"token"`
	}
	if json.Unmarshal(b, &m); m.Token.Project.ID != p1 {
		t.Errorf("response %s", b)
	}
	// The token method falls back to the X-Auth-Token header.
	rescope := `{"auth":{"identity":{"methods":["token"],"token":{}},"scope":{"project":{"id":"` + p1 + `"}}}}`
	if _, _, err := fx.svc.Login(ctx, []byte(rescope), tok); err != nil {
		t.Errorf("re-scope with the header token: %v", err)
	}
	_, resp, err = fx.svc.Login(ctx, []byte(`{"auth":{"identity":{"methods":["password","totp"]}}}`), "")
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
