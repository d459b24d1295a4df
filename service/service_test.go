package service_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/openkps/kps"
	"github.com/openkps/kps/secrets"
	"github.com/openkps/kps/service"
	"github.com/openkps/kps/sshkey"
	"github.com/openkps/kps/store"
)

// The service against the real store (SQLite): the rules it owns, as both APIs reach them.

type fixture struct {
	db                   *store.DB
	sealer               kps.Sealer
	svc                  *service.Service
	domain, project      string
	admin, member, other *kps.Principal
}

// nothingHeld is a Dispatcher for tests that submit no task.
type nothingHeld struct{}

func (nothingHeld) Hold(string, kps.Credential) string { return "test" }
func (nothingHeld) Forget(string)                      {}
func (nothingHeld) Wake()                              {}

func setup(t *testing.T, cfg service.Config) *fixture {
	t.Helper()
	ctx := t.Context()
	db, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "kps.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Bootstrap(ctx, kps.Bootstrap{DomainName: "Default", ProjectName: "local-1", AdminName: "admin", AdminPasswordHash: "x"}); err != nil {
		t.Fatal(err)
	}
	d, _ := db.DomainByName(ctx, "Default")
	p, _ := db.ProjectByName(ctx, d.ID, "local-1")
	admin, _ := db.UserByName(ctx, d.ID, "admin")
	member := &kps.User{Name: "member", DomainID: d.ID, Enabled: true}
	if err := db.CreateUser(ctx, member); err != nil {
		t.Fatal(err)
	}
	elsewhere, err := db.CreateDomain(ctx, &kps.Domain{Name: "elsewhere", Enabled: true}, "local-1")
	if err != nil {
		t.Fatal(err)
	}
	other := &kps.User{Name: "other", DomainID: elsewhere.DomainID, Enabled: true}
	if err := db.CreateUser(ctx, other); err != nil {
		t.Fatal(err)
	}
	ring, err := secrets.NewKeyRing(map[uint32][]byte{1: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	sealer := secrets.NewSealer(ring)
	principal := func(u string, r kps.Role) *kps.Principal {
		return &kps.Principal{UserID: u, DomainID: d.ID, ProjectID: p.ID, Roles: []kps.Role{r}}
	}
	return &fixture{db: db, sealer: sealer, svc: service.New(db, sealer, nothingHeld{}, db, cfg), domain: d.ID, project: p.ID,
		admin: principal(admin.ID, kps.RoleAdmin), member: principal(member.ID, kps.RoleMember),
		other: &kps.Principal{UserID: other.ID, DomainID: elsewhere.DomainID, ProjectID: p.ID, Roles: []kps.Role{kps.RoleAdmin}}}
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if kps.ErrorCode(err) != code {
		t.Fatalf("got %v, want %s", err, code)
	}
}

// TestCreateKeyPair: one way to create a key pair for both APIs — generated or imported, ssh or
// x509, hosted or not — and the owner rules of each (KPS: user_id must be the caller's;
// Nova: another owner needs the admin role and must be a user of the caller's domain).
func TestCreateKeyPair(t *testing.T) {
	f := setup(t, service.Config{})
	ctx := t.Context()

	gen, err := f.svc.CreateKeyPair(ctx, f.member, kps.KeyPairCreate{Name: "gen", Hosted: true})
	if err != nil {
		t.Fatal(err)
	}
	if gen.PrivateKey == "" || gen.KeyPair.Algorithm != "RSA2048" || gen.KeyPair.UserID != f.member.UserID {
		t.Fatalf("generated %+v", gen.KeyPair)
	}
	// The hosted private key is the generated one, sealed to its key pair.
	exported, err := f.svc.ExportPrivateKey(ctx, f.member, "gen")
	if err != nil || string(exported) != gen.PrivateKey {
		t.Fatalf("export: %v", err)
	}
	if _, err := f.svc.ExportPrivateKey(ctx, &kps.Principal{UserID: f.member.UserID, ProjectID: f.project, Roles: []kps.Role{kps.RoleReader}}, "gen"); kps.ErrorCode(err) != kps.ErrForbidden {
		t.Fatalf("a reader exported: %v", err)
	}

	priv, line, err := sshkey.Generate("ed25519", 0, "imported")
	if err != nil {
		t.Fatal(err)
	}
	imp, err := f.svc.CreateKeyPair(ctx, f.member, kps.KeyPairCreate{Name: "imp", PublicKey: line, Hosted: true, HostedPrivateKey: priv})
	if err != nil || imp.PrivateKey != "" || imp.KeyPair.Algorithm != "ED25519" {
		t.Fatalf("imported %+v, %v", imp, err)
	}
	_, other, _ := sshkey.Generate("ed25519", 0, "other")
	_, err = f.svc.CreateKeyPair(ctx, f.member, kps.KeyPairCreate{Name: "mismatch", PublicKey: other, Hosted: true, HostedPrivateKey: priv})
	wantCode(t, err, kps.ErrPrivateKey)

	x, err := f.svc.CreateKeyPair(ctx, f.member, kps.KeyPairCreate{Name: "cert", Type: kps.TypeX509})
	if err != nil || x.KeyPair.Algorithm != "X509" || x.PrivateKey == "" {
		t.Fatalf("x509 %+v, %v", x, err)
	}
	_, err = f.svc.CreateKeyPair(ctx, f.member, kps.KeyPairCreate{Name: "cert-hosted", Type: kps.TypeX509, Hosted: true})
	wantCode(t, err, kps.ErrEncryption)
	_, err = f.svc.CreateKeyPair(ctx, f.member, kps.KeyPairCreate{Name: "bad-cert", Type: kps.TypeX509, PublicKey: "-----BEGIN CERTIFICATE-----"})
	wantCode(t, err, kps.ErrPublicKey)
	_, err = f.svc.CreateKeyPair(ctx, f.member, kps.KeyPairCreate{Name: "ctl", PublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a\x01b"})
	if !errors.Is(err, sshkey.ErrCommentControl) {
		t.Fatalf("comment with a control character: %v", err)
	}

	// The KPS API's user_id: only the caller's own, checked after the key material.
	_, err = f.svc.CreateKeyPair(ctx, f.member, kps.KeyPairCreate{Name: "for-admin", UserID: f.admin.UserID})
	wantCode(t, err, kps.ErrUserMismatch)
	// The Nova API's user_id: another owner needs the admin role…
	_, err = f.svc.CreateKeyPair(ctx, f.member, kps.KeyPairCreate{Name: "for-admin", Owner: f.admin.UserID})
	wantCode(t, err, kps.ErrForbidden)
	// …and a user of the caller's domain, unknown users alike.
	_, err = f.svc.CreateKeyPair(ctx, f.admin, kps.KeyPairCreate{Name: "for-other", Owner: f.other.UserID})
	wantCode(t, err, kps.ErrInvalid)
	_, err = f.svc.CreateKeyPair(ctx, f.admin, kps.KeyPairCreate{Name: "for-nobody", Owner: "nobody"})
	wantCode(t, err, kps.ErrInvalid)
	given, err := f.svc.CreateKeyPair(ctx, f.admin, kps.KeyPairCreate{Name: "for-member", Owner: f.member.UserID})
	if err != nil || given.KeyPair.UserID != f.member.UserID {
		t.Fatalf("created for a member: %+v, %v", given, err)
	}
	// Where users are another service's (external identity), only the role is checked.
	external := service.New(f.db, f.sealer, nothingHeld{}, nil, service.Config{})
	if _, err := external.CreateKeyPair(ctx, f.admin, kps.KeyPairCreate{Name: "for-unknown", Owner: "external-user"}); err != nil {
		t.Fatal(err)
	}
}

// TestPerUserQuota: Nova's per-user limit is refused before the key material is looked at
// (N-31: a bad key at the limit is KPS.6401, not KPS.6009), and holds in the store's
// transaction however many creates run at once: no create passes and is taken back.
func TestPerUserQuota(t *testing.T) {
	limit := 3
	f := setup(t, service.Config{KeyPairsPerUser: &limit})
	ctx := t.Context()
	const racers = 12
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			_, errs[i] = f.svc.CreateKeyPair(ctx, f.member, kps.KeyPairCreate{Name: fmt.Sprintf("k%02d", i), PerUserQuota: true})
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
		} else {
			wantCode(t, err, kps.ErrQuota)
		}
	}
	page, err := f.db.ListKeyPairs(ctx, f.project, f.member.UserID, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if won != limit || len(page.Items) != limit {
		t.Fatalf("%d creates passed, %d key pairs kept; the limit is %d", won, len(page.Items), limit)
	}
	_, err = f.svc.CreateKeyPair(ctx, f.member, kps.KeyPairCreate{Name: "bad", PublicKey: "not a key", PerUserQuota: true})
	wantCode(t, err, kps.ErrQuota)
	// The KPS API has no per-user limit.
	if _, err := f.svc.CreateKeyPair(ctx, f.member, kps.KeyPairCreate{Name: "kps"}); err != nil {
		t.Fatal(err)
	}
	// Another user's key pairs do not count.
	if _, err := f.svc.CreateKeyPair(ctx, f.admin, kps.KeyPairCreate{Name: "admins", PerUserQuota: true}); err != nil {
		t.Fatal(err)
	}
}

// TestServerReach: only an admin stores a credential or changes how a server is reached; a
// member's server is not trusted on first use with stored secrets until an admin confirms it,
// and a member's update that repeats the reach unchanged writes none of it.
func TestServerReach(t *testing.T) {
	f := setup(t, service.Config{})
	ctx := t.Context()
	addr := func(s string) *string { return &s }
	cred := &kps.Credential{Type: kps.CredentialPassword, Key: "pw"}
	_, err := f.svc.CreateServer(ctx, f.member, "m1", kps.ServerUpdate{Address: addr("192.0.2.1"), SetCredential: true}, cred)
	wantCode(t, err, kps.ErrForbidden)
	m, err := f.svc.CreateServer(ctx, f.member, "m1", kps.ServerUpdate{Address: addr("192.0.2.1")}, nil)
	if err != nil || m.ReachByAdmin {
		t.Fatalf("member's server %+v, %v", m, err)
	}
	a, err := f.svc.CreateServer(ctx, f.admin, "a1", kps.ServerUpdate{Address: addr("192.0.2.2"), SetCredential: true}, cred)
	if err != nil || !a.ReachByAdmin || a.Credential == nil {
		t.Fatalf("admin's server %+v, %v", a, err)
	}
	// The stored credential is sealed to its server.
	plain, err := f.sealer.Open(a.Credential, kps.CredentialAAD(f.project, "a1"))
	if err != nil || string(plain) != `{"Type":"password","Key":"pw"}` {
		t.Fatalf("sealed credential %q, %v", plain, err)
	}
	_, err = f.svc.UpdateServer(ctx, f.member, "a1", kps.ServerUpdate{Address: addr("192.0.2.99")}, nil)
	wantCode(t, err, kps.ErrForbidden)
	same, err := f.svc.UpdateServer(ctx, f.member, "a1", kps.ServerUpdate{Address: addr("192.0.2.2"), Name: addr("renamed")}, nil)
	if err != nil || same.Name != "renamed" || !same.ReachByAdmin {
		t.Fatalf("member's update repeating the reach: %+v, %v", same, err)
	}
	confirmed, err := f.svc.UpdateServer(ctx, f.admin, "m1", kps.ServerUpdate{Address: addr("192.0.2.1")}, nil)
	if err != nil || !confirmed.ReachByAdmin {
		t.Fatalf("admin's confirmation: %+v, %v", confirmed, err)
	}
	targets, _ := kps.ParseAllowedTargets("10.0.0.0/8")
	fenced := service.New(f.db, f.sealer, nothingHeld{}, f.db, service.Config{AllowedTargets: targets})
	_, err = fenced.CreateServer(ctx, f.admin, "out", kps.ServerUpdate{Address: addr("192.0.2.3")}, nil)
	wantCode(t, err, kps.ErrTargetNotAllowed)
	_, err = f.svc.CreateServer(context.Background(), f.admin, "", kps.ServerUpdate{}, nil)
	wantCode(t, err, kps.ErrMissing)
}
