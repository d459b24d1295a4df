package iam

import (
	"bytes"
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/secrets"
)

func TestGeneratedKeyFormats(t *testing.T) {
	ak, sk, st := regexp.MustCompile(`^[A-Z0-9]{20}$`), regexp.MustCompile(`^[A-Za-z0-9]{40}$`),
		regexp.MustCompile(`^ST1[A-Za-z0-9_-]{64}$`)
	seen := map[string]bool{}
	for range 200 {
		a, s, tok := newAccessKeyID(), newSecretKey(), newSecurityToken()
		if !ak.MatchString(a) || !sk.MatchString(s) || !st.MatchString(tok) {
			t.Fatalf("AK %q SK %q security token %q", a, s, tok)
		}
		if !kps.ValidAccessKeyID(a) {
			t.Fatalf("the domain refuses the AK %q", a)
		}
		if seen[a] || seen[s] || seen[tok] {
			t.Fatal("a generated value repeated")
		}
		seen[a], seen[s], seen[tok] = true, true, true
	}
}

func TestNewPasswordPolicy(t *testing.T) {
	for pw, ok := range map[string]bool{
		"1234567": false, "12345678": true, "alice-the-user": false, string(bytes.Repeat([]byte{'x'}, 1024)): true,
		string(bytes.Repeat([]byte{'x'}, 1025)): false, "pass\xffword": false, "pässwörd": true,
	} {
		err := checkNewPassword("user.password", pw, "alice-the-user")
		if (err == nil) != ok {
			t.Errorf("%.20q: %v", pw, err)
		}
		if err != nil && kps.ErrorMessage(err) != "Invalid parameter: user.password." {
			t.Errorf("message %q", kps.ErrorMessage(err))
		}
	}
}

func TestCatalogIDsAreStable(t *testing.T) {
	a := &Service{Region: "r1", PublicURL: "https://kps.example.com/"}
	b := &Service{Region: "r1", PublicURL: "https://kps.example.com"}
	c := &Service{Region: "r2", PublicURL: "https://kps.example.com"}
	ca, cb, cc := a.Catalog().([]CatalogService), b.Catalog().([]CatalogService), c.Catalog().([]CatalogService)
	hex := regexp.MustCompile(`^[0-9a-f]{32}$`)
	ids := map[string]bool{}
	for i, s := range ca {
		ep := s.Endpoints[0]
		if !hex.MatchString(s.ID) || !hex.MatchString(ep.ID) || ids[s.ID] || ids[ep.ID] {
			t.Fatalf("catalog IDs %+v", s)
		}
		ids[s.ID], ids[ep.ID] = true, true
		if s.ID != cb[i].ID || ep.ID != cb[i].Endpoints[0].ID || ep.URL != cb[i].Endpoints[0].URL {
			t.Errorf("%s: not stable across services", s.Type)
		}
		if s.ID == cc[i].ID || cc[i].Endpoints[0].Region != "r2" {
			t.Errorf("%s: the region does not change the entry", s.Type)
		}
	}
	want := map[string]string{"identity": "https://kps.example.com/v3", "compute": "https://kps.example.com/compute/v2.1", "kps": "https://kps.example.com"}
	for _, s := range ca {
		if s.Endpoints[0].URL != want[s.Type] || s.Endpoints[0].Interface != "public" {
			t.Errorf("%s endpoint %+v", s.Type, s.Endpoints[0])
		}
	}
}

// managementFixture is the token fixture plus the operator domain "Default" with its admin
// "op", and a sealer for secret access keys.
func managementFixture(t *testing.T) (*fixture, map[string]*kps.Principal) {
	t.Helper()
	fx := setup(t)
	ring, err := secrets.NewKeyRing(map[uint32][]byte{1: bytes.Repeat([]byte{9}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	fx.svc.Sealer, fx.svc.Region = secrets.NewSealer(ring), region
	ctx := context.Background()
	op := &kps.Domain{Name: BootstrapDomain, Enabled: true}
	if _, err := fx.db.CreateDomain(ctx, op, region); err != nil {
		t.Fatal(err)
	}
	u := &kps.User{Name: "op", DomainID: op.ID, Enabled: true}
	if err := fx.db.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if err := fx.db.GrantRole(ctx, kps.RoleAssignment{UserID: u.ID, Role: kps.RoleAdmin, DomainID: op.ID}); err != nil {
		t.Fatal(err)
	}
	fx.users["op"] = u
	principals := map[string]*kps.Principal{}
	for name, u := range fx.users {
		principals[name] = &kps.Principal{UserID: u.ID, UserName: u.Name, DomainID: u.DomainID, AuthMethod: kps.AuthToken}
	}
	return fx, principals
}

// TestManagementAuthority: who may manage what (docs/decisions.md, "Identity management"):
// members nothing, a domain admin its domain, the operator admin every domain; what one may not
// administer is missing to an administrator and forbidden to anybody else.
func TestManagementAuthority(t *testing.T) {
	fx, p := managementFixture(t)
	ctx := context.Background()
	acme := fx.id(dAcme)
	for _, c := range []struct {
		who  string
		code string // "" for success
	}{{"alice", kps.ErrForbidden}, {"eve", kps.ErrForbidden}, {"mallory", kps.ErrForbidden}, {"bob", ""}, {"op", ""}} {
		err := fx.svc.CreateProject(ctx, p[c.who], &kps.Project{Name: "by-" + c.who, DomainID: acme, Enabled: true})
		if kps.ErrorCode(err) != c.code && !(c.code == "" && err == nil) {
			t.Errorf("%s creating a project of acme: %v", c.who, err)
		}
		_, err = fx.svc.UpdateUser(ctx, p[c.who], fx.users["frank"].ID, kps.UserUpdate{Description: ptr(c.who)}, nil)
		want := c.code
		if c.who == "mallory" {
			want = kps.ErrIdentityNotFound // an administrator of another domain: missing
		}
		if kps.ErrorCode(err) != want && !(want == "" && err == nil) {
			t.Errorf("%s updating frank: %v", c.who, err)
		}
	}
	// Domains are the operator's.
	if _, err := fx.svc.CreateDomain(ctx, p["bob"], &kps.Domain{Name: "x", Enabled: true}); kps.ErrorCode(err) != kps.ErrForbidden {
		t.Errorf("bob creating a domain: %v", err)
	}
	if _, err := fx.svc.CreateDomain(ctx, p["op"], &kps.Domain{Name: "x", Enabled: true}); err != nil {
		t.Errorf("the operator creating a domain: %v", err)
	}
	op, _ := fx.db.DomainByName(ctx, BootstrapDomain)
	if _, err := fx.svc.UpdateDomain(ctx, p["op"], op.ID, kps.DomainUpdate{Enabled: ptr(false)}); kps.ErrorCode(err) != kps.ErrIdentityConflict {
		t.Errorf("disabling the operator domain: %v", err)
	}
	// Visibility: alice sees the projects she holds a role on, bob all of acme's, mallory none.
	for who, n := range map[string]int{"alice": 3, "bob": 6, "mallory": 1, "eve": 0} {
		ps, _, err := fx.svc.VisibleProjects(ctx, p[who], kps.ProjectFilter{}, kps.Page{})
		if err != nil || len(ps) != n {
			t.Errorf("%s sees %d projects (%v), want %d", who, len(ps), err, n)
		}
	}
	if _, err := fx.svc.VisibleProject(ctx, p["mallory"], fx.id(p1)); kps.ErrorCode(err) != kps.ErrForbidden {
		t.Errorf("mallory reading acme's project: %v", err)
	}
}

// TestCredentialAtRest: the SK is returned once, stored sealed under its AK, and found in no
// file of the data directory.
func TestCredentialAtRest(t *testing.T) {
	fx, p := managementFixture(t)
	ctx := context.Background()
	k, sk, err := fx.svc.CreateCredential(ctx, p["alice"], "", "ci")
	if err != nil {
		t.Fatal(err)
	}
	stored, err := fx.db.AccessKey(ctx, k.Access)
	if err != nil || stored == nil {
		t.Fatalf("stored key: %v", err)
	}
	plain, err := fx.svc.Sealer.Open(stored.Secret, kps.AccessKeyAAD(k.Access))
	if err != nil || string(plain) != sk {
		t.Fatalf("the sealed SK does not open to the SK: %v", err)
	}
	if _, err := fx.svc.Sealer.Open(stored.Secret, kps.AccessKeyAAD("AAAAAAAAAAAAAAAAAAAA")); err == nil {
		t.Error("the sealed SK opens under another AK")
	}
	if fx.filesContain(t, sk) {
		t.Error("the SK is in the data directory in clear")
	}
	// Eve has no role anywhere: no self-service key.
	if _, _, err := fx.svc.CreateCredential(ctx, p["eve"], "", ""); kps.ErrorCode(err) != kps.ErrForbidden {
		t.Errorf("eve's key: %v", err)
	}
	// A temporary credential's security token is kept as a digest only.
	tc, _, st, err := fx.svc.IssueTemporaryCredential(ctx, p["alice"], "", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if tc.SecurityTokenHash != tokenHash(st) || fx.filesContain(t, st) {
		t.Error("the security token is stored in clear")
	}
	if d := tc.ExpiresAt.Sub(fx.clock.Now()); d < 15*time.Minute-time.Second || d > 15*time.Minute {
		t.Errorf("default lifetime %v", d)
	}
}
