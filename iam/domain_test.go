package iam

import (
	"bytes"
	"context"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/openkps/kps"
	"github.com/openkps/kps/secrets"
)

// operatorStore returns a service over a store bootstrapped as before issue 17 (legacy: the
// operator domain under a random ID) or as now (its ID "default"), with the member "alice" on
// the default project, and the operator domain's ID.
func operatorStore(t *testing.T, legacy bool) (*Service, string) {
	t.Helper()
	ctx := context.Background()
	s, f := newBootstrapService(t)
	ring, err := secrets.NewKeyRing(map[uint32][]byte{1: bytes.Repeat([]byte{9}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	s.Sealer = secrets.NewSealer(ring)
	if legacy {
		hash, err := cheap.Hash(ctx, "admin-password")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.DB.Bootstrap(ctx, kps.Bootstrap{DomainName: BootstrapDomain, ProjectName: region,
			AdminName: BootstrapAdmin, AdminPasswordHash: hash}); err != nil {
			t.Fatal(err)
		}
	} else if _, err := s.Bootstrap(ctx, t.TempDir(), region, "admin-password"); err != nil {
		t.Fatal(err)
	}
	d, err := f.DomainByName(ctx, BootstrapDomain)
	if err != nil || d == nil {
		t.Fatalf("operator domain: %v", err)
	}
	if legacy == (d.ID == DefaultDomainID) {
		t.Fatalf("legacy %v: the operator domain's ID is %q", legacy, d.ID)
	}
	p, err := f.ProjectByName(ctx, d.ID, region)
	if err != nil || p == nil {
		t.Fatalf("default project: %v", err)
	}
	hash, err := cheap.Hash(ctx, password)
	if err != nil {
		t.Fatal(err)
	}
	alice := &kps.User{Name: "alice", DomainID: d.ID, Enabled: true, PasswordHash: hash}
	if err := f.CreateUser(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if err := f.GrantRole(ctx, kps.RoleAssignment{UserID: alice.ID, Role: kps.RoleMember, ProjectID: p.ID}); err != nil {
		t.Fatal(err)
	}
	return s, d.ID
}

// principal logs the user of the operator domain in, naming the domain by the ID "default",
// and authenticates the token for the identity routes.
func principalOf(t *testing.T, s *Service, user, pw string) *kps.Principal {
	t.Helper()
	tok, _, err := s.IssueToken(context.Background(), IssueRequest{Method: MethodPassword, UserName: user,
		UserDomainID: DefaultDomainID, Password: pw})
	if err != nil {
		t.Fatalf("%s@default: %v", user, err)
	}
	p, err := s.Authenticate(context.Background(), tok, "", "")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDefaultDomainID: a new bootstrap gives the operator domain the ID "default"; a store
// bootstrapped before keeps its random ID and takes "default" as an alias wherever a request
// carries a domain ID (auth.md §3.7): the user's domain of a login, the domain of a project
// scope by name, a domain scope, X-Domain-Id, the domain_id filters, path parameters and
// members of the management routes. What comes back always carries the real ID.
func TestDefaultDomainID(t *testing.T) {
	t.Parallel()
	for _, legacy := range []bool{false, true} {
		name := "new"
		if legacy {
			name = "legacy"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s, opID := operatorStore(t, legacy)

			// Login with the user's domain by ID, project scope by name in the domain by ID.
			_, body, err := s.IssueToken(ctx, IssueRequest{Method: MethodPassword, UserName: "alice",
				UserDomainID: DefaultDomainID, Password: password,
				Scope: Scope{Kind: ScopeProject, ProjectName: region, DomainID: DefaultDomainID}})
			if err != nil {
				t.Fatal(err)
			}
			if body.User.Domain.ID != opID || body.Project == nil || body.Project.Domain.ID != opID {
				t.Errorf("project token %+v", body)
			}
			// A domain scope by ID.
			tok, body, err := s.IssueToken(ctx, IssueRequest{Method: MethodPassword, UserName: "admin",
				UserDomainID: DefaultDomainID, Password: "admin-password",
				Scope: Scope{Kind: ScopeDomain, DomainID: DefaultDomainID}})
			if err != nil {
				t.Fatal(err)
			}
			if body.Domain == nil || body.Domain.ID != opID || body.Domain.Name != BootstrapDomain {
				t.Errorf("domain token %+v", body.Domain)
			}
			admin, err := s.Authenticate(ctx, tok, "", "")
			if err != nil {
				t.Fatal(err)
			}
			alice := principalOf(t, s, "alice", password)

			// X-Domain-Id.
			for _, c := range []struct {
				named string
				p     *kps.Principal
				want  bool
			}{{DefaultDomainID, admin, true}, {opID, admin, true}, {"Default", admin, false},
				{"00000000000000000000000000000000", alice, false}, {DefaultDomainID, alice, true}} {
				if same, err := s.SameDomain(ctx, c.named, c.p); err != nil || same != c.want {
					t.Errorf("SameDomain(%q) = %v, %v, want %v", c.named, same, err, c.want)
				}
			}

			// GET /v3/domains/default, /v3/projects?domain_id=default, /v3/users?domain_id=default.
			for _, p := range []*kps.Principal{admin, alice} {
				d, err := s.VisibleDomain(ctx, p, DefaultDomainID)
				if err != nil || d.ID != opID {
					t.Errorf("%s: VisibleDomain(default) = %+v, %v", p.UserName, d, err)
				}
				def := DefaultDomainID
				ps, n, err := s.VisibleProjects(ctx, p, kps.ProjectFilter{DomainID: &def}, kps.Page{})
				if err != nil || n != 1 || ps[0].DomainID != opID {
					t.Errorf("%s: VisibleProjects(domain_id=default) = %+v, %d, %v", p.UserName, ps, n, err)
				}
			}
			def := DefaultDomainID
			if us, n, err := s.VisibleUsers(ctx, admin, kps.UserFilter{DomainID: &def}, kps.Page{}); err != nil || n != 2 {
				t.Errorf("VisibleUsers(domain_id=default) = %+v, %d, %v", us, n, err)
			}

			// POST /v3/users and /v3/projects with "domain_id": "default", a role on the domain.
			bob := &kps.User{Name: "bob", DomainID: DefaultDomainID, Enabled: true}
			if err := s.CreateUser(ctx, admin, bob, "bob-password"); err != nil || bob.DomainID != opID {
				t.Fatalf("CreateUser: %+v, %v", bob, err)
			}
			pr := &kps.Project{Name: region + "_x", DomainID: DefaultDomainID, Enabled: true}
			if err := s.CreateProject(ctx, admin, pr); err != nil || pr.DomainID != opID {
				t.Fatalf("CreateProject: %+v, %v", pr, err)
			}
			ra := kps.RoleAssignment{UserID: bob.ID, Role: kps.RoleReader, DomainID: DefaultDomainID}
			if err := s.GrantRole(ctx, admin, ra); err != nil {
				t.Fatal(err)
			}
			if roles, err := s.Store.DomainRoles(ctx, bob.ID, opID); err != nil || !slices.Equal(roles, []kps.Role{kps.RoleReader}) {
				t.Errorf("bob's roles on the operator domain: %v, %v", roles, err)
			}
			if err := s.RevokeRole(ctx, admin, ra); err != nil {
				t.Error(err)
			}
			// PATCH /v3/domains/default.
			desc := "the operator's"
			if d, err := s.UpdateDomain(ctx, admin, DefaultDomainID, kps.DomainUpdate{Description: &desc}); err != nil || d.ID != opID || d.Description != desc {
				t.Errorf("UpdateDomain(default) = %+v, %v", d, err)
			}
			if err := s.DeleteDomain(ctx, admin, DefaultDomainID); kps.ErrorCode(err) != kps.ErrIdentityConflict {
				t.Errorf("DeleteDomain(default) = %v, want the operator domain's 409", err)
			}

			// An AK/SK request's X-Domain-Id takes the alias as well.
			k, sk, err := s.CreateCredential(ctx, alice, "", "")
			if err != nil {
				t.Fatal(err)
			}
			for hd, want := range map[string]string{DefaultDomainID: "", opID: "", "ffffffffffffffffffffffffffffffff": kps.ErrProjectMismatch} {
				r := httptest.NewRequest("GET", "http://kps.example.com/v3/auth/domains", nil)
				r.Header.Set("X-Domain-Id", hd)
				if err := Sign(r, nil, k.Access, sk, s.now()); err != nil {
					t.Fatal(err)
				}
				_, err := s.AuthenticateSignature(ctx, r, nil, "", "")
				if (err == nil) != (want == "") || (err != nil && kps.ErrorCode(err) != want) {
					t.Errorf("signed request with X-Domain-Id %s: %v, want %q", hd, err, want)
				}
			}
		})
	}
}

// TestDefaultAliasOnlyForTheOperatorDomain: in another domain "default" names nothing of
// theirs, and a domain literally called "default" is not the operator domain.
func TestDefaultAliasOnlyForTheOperatorDomain(t *testing.T) {
	t.Parallel()
	fx := setup(t) // no operator domain at all
	ctx := context.Background()
	if id, err := fx.svc.ResolveDomainID(ctx, DefaultDomainID); err != nil || id != DefaultDomainID {
		t.Errorf("ResolveDomainID(default) without an operator domain = %q, %v", id, err)
	}
	_, _, err := fx.svc.IssueToken(ctx, IssueRequest{Method: MethodPassword, UserName: "alice", UserDomainID: DefaultDomainID, Password: password})
	wantCode(t, err, kps.ErrLoginFailed, "The username or password is wrong.")
	req := byName("alice", "acme")
	req.Scope = Scope{Kind: ScopeDomain, DomainID: DefaultDomainID}
	_, _, err = fx.svc.IssueToken(ctx, req)
	wantCode(t, err, kps.ErrScope, "The user has no access to the requested scope.")
}

// TestMemberDomainToken: a plain member gets a token scoped to their own domain (as Huawei IAM
// grants every user of the account), carrying no role; it grants nothing their project token
// does not. It acts on no project (403 KPS.6103, auth.md §4.3 row 4), administers nothing, and
// re-scopes only where the user holds a role.
func TestMemberDomainToken(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	ctx := context.Background()
	req := byName("alice", "acme")
	req.Scope = Scope{Kind: ScopeDomain, DomainID: fx.id(dAcme)}
	tok, body := fx.issue(t, req)
	if body.Domain == nil || body.Domain.ID != fx.id(dAcme) || body.Roles == nil || len(body.Roles) != 0 || body.Catalog == nil {
		t.Errorf("domain token of a member: %+v", body)
	}
	for _, project := range []string{p1, p3, p2} {
		_, err := fx.svc.Authenticate(ctx, tok, fx.id(project), "")
		wantCode(t, err, kps.ErrProjectMismatch, "Project mismatch: the request targets project "+fx.id(project)+" but the token is not scoped to a project.")
	}
	p, err := fx.svc.Authenticate(ctx, tok, "", "")
	if err != nil || len(p.Roles) != 0 || p.ProjectID != "" {
		t.Fatalf("identity principal %+v, %v", p, err)
	}
	if _, _, err := fx.svc.VisibleUsers(ctx, p, kps.UserFilter{}, kps.Page{}); kps.ErrorCode(err) != kps.ErrForbidden {
		t.Errorf("VisibleUsers: %v", err)
	}
	if err := fx.svc.CreateProject(ctx, p, &kps.Project{Name: "x", Enabled: true}); kps.ErrorCode(err) != kps.ErrForbidden {
		t.Errorf("CreateProject: %v", err)
	}
	if err := fx.svc.CreateUser(ctx, p, &kps.User{Name: "x", Enabled: true}, ""); kps.ErrorCode(err) != kps.ErrForbidden {
		t.Errorf("CreateUser: %v", err)
	}
	if err := fx.svc.GrantRole(ctx, p, kps.RoleAssignment{UserID: p.UserID, Role: kps.RoleAdmin, DomainID: p.DomainID}); kps.ErrorCode(err) != kps.ErrForbidden {
		t.Errorf("GrantRole: %v", err)
	}
	// GET /v3/auth/tokens shows it with its (empty) roles.
	got, err := fx.svc.SubjectToken(ctx, p, tok, false)
	if err != nil {
		t.Fatal(err)
	}
	if b := got.(*TokenResponse).Token; b.Domain == nil || b.Roles == nil || len(b.Roles) != 0 {
		t.Errorf("SubjectToken %+v", b)
	}
	// Re-scoping reaches the projects alice's project token reaches, and no other.
	re := IssueRequest{Method: MethodToken, Token: tok, Scope: Scope{Kind: ScopeProject, ProjectID: fx.id(p1)}}
	if _, b := fx.issue(t, re); b.Project == nil || b.Project.ID != fx.id(p1) {
		t.Errorf("re-scoped to p1: %+v", b)
	}
	re.Scope.ProjectID = fx.id(p2)
	_, _, err = fx.svc.IssueToken(ctx, re)
	wantCode(t, err, kps.ErrScope, "The user has no access to the requested scope.")
}
