package iam

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/internal/pgtest"
	"github.com/openkps/kps/store"
)

// lookupCountingStore is the real store, counting the token lookups that reach it.
type lookupCountingStore struct {
	*store.DB
	lookups atomic.Int64
}

func (c *lookupCountingStore) TokenByHash(ctx context.Context, hash string) (*kps.Token, error) {
	c.lookups.Add(1)
	return c.DB.TokenByHash(ctx, hash)
}

// TestValidationCache: a token is validated against the store once, and every change that
// affects the answer — a revoked role, a revoked token, a disabled user, project or domain —
// shows on the next request, as does the token's expiry.
func TestValidationCache(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	ctx := context.Background()
	counting := &lookupCountingStore{DB: fx.db}
	fx.svc.Store = counting
	alice, proj1 := fx.users["alice"].ID, fx.id(p1)
	req := byName("alice", "acme")
	req.Scope = fx.scope(Scope{Kind: ScopeProject, ProjectID: p1})
	tok, _ := fx.issue(t, req)

	auth := func() (*kps.Principal, error) { return fx.svc.Authenticate(ctx, tok, proj1, "") }
	first, err := auth()
	if err != nil {
		t.Fatal(err)
	}
	lookups := counting.lookups.Load()
	for range 3 {
		p, err := auth()
		if err != nil || !principalEqual(*p, *first) {
			t.Fatalf("cached answer %+v, %v; want %+v", p, err, first)
		}
		p.Roles[0] = kps.RoleAdmin // a caller's change must not reach the cache
	}
	if counting.lookups.Load() != lookups {
		t.Fatalf("%d lookups for 3 repeated validations", counting.lookups.Load()-lookups)
	}

	// A role revoked, then granted again.
	if p := revokeThenGrant(t, fx, alice, proj1, auth); !principalEqual(*p, *first) {
		t.Fatalf("after the grant: %+v", p)
	}

	// The project disabled (which revokes the token), on a fresh token each time.
	off := false
	if _, err := fx.db.UpdateProject(ctx, proj1, kps.ProjectUpdate{Enabled: &off}); err != nil {
		t.Fatal(err)
	}
	_, err = auth()
	wantCode(t, err, kps.ErrBadCredentials, "Incorrect authentication information: the token has been revoked.")
	on := true
	if _, err := fx.db.UpdateProject(ctx, proj1, kps.ProjectUpdate{Enabled: &on}); err != nil {
		t.Fatal(err)
	}

	// A revoked token; a disabled user.
	tok, _ = fx.issue(t, req)
	if _, err := auth(); err != nil {
		t.Fatal(err)
	}
	if err := fx.db.RevokeToken(ctx, tokenHash(tok)); err != nil {
		t.Fatal(err)
	}
	_, err = auth()
	wantCode(t, err, kps.ErrBadCredentials, "Incorrect authentication information: the token has been revoked.")
	tok, _ = fx.issue(t, req)
	if _, err := auth(); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.db.UpdateUser(ctx, alice, kps.UserUpdate{Enabled: &off}); err != nil {
		t.Fatal(err)
	}
	if _, err := auth(); kps.ErrorCode(err) != kps.ErrBadCredentials {
		t.Fatalf("a disabled user's token: %v", err)
	}
	if _, err := fx.db.UpdateUser(ctx, alice, kps.UserUpdate{Enabled: &on}); err != nil {
		t.Fatal(err)
	}

	// Expiry needs no write: the cached entry ends with the token.
	tok, _ = fx.issue(t, req)
	if _, err := auth(); err != nil {
		t.Fatal(err)
	}
	fx.clock.Add(25 * time.Hour)
	_, err = auth()
	wantCode(t, err, kps.ErrBadCredentials, "Incorrect authentication information: the token has expired.")
}

// TestValidationCacheAcrossReplicas: two services on two stores on one PostgreSQL schema, as
// two replicas. Replica B remembers a validation (one token lookup for repeated requests), and
// every change made through replica A — a revoked token, a revoked role, a disabled project,
// user or domain, a changed password — refuses B's very next request.
// revokeThenGrant revokes user's member role in project through fx's store, checks that auth
// is then refused, grants the role again and returns what auth then answers: a change to the
// role assignments reaches a remembered validation at once, both ways.
func revokeThenGrant(t *testing.T, fx *fixture, user, project string, auth func() (*kps.Principal, error)) *kps.Principal {
	t.Helper()
	ctx := context.Background()
	member := kps.RoleAssignment{UserID: user, Role: kps.RoleMember, ProjectID: project}
	if err := fx.db.RevokeRole(ctx, member); err != nil {
		t.Fatal(err)
	}
	_, err := auth()
	wantCode(t, err, kps.ErrForbidden, msgForbidden)
	if err := fx.db.GrantRole(ctx, member); err != nil {
		t.Fatal(err)
	}
	p, err := auth()
	if err != nil {
		t.Fatalf("after the grant: %v", err)
	}
	return p
}

func TestValidationCacheAcrossReplicas(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Schema(t)
	openPG := func(t *testing.T, _ string, now func() time.Time) *store.DB {
		t.Helper()
		db, err := store.OpenPostgres(context.Background(), dsn, store.Options{Now: now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	fx := setupOn(t, openPG) // replica A: fx.svc, fx.db
	ctx := context.Background()
	counting := &lookupCountingStore{DB: openPG(t, "", fx.clock.Now)}
	b := &Service{Store: counting, Versions: counting, Now: fx.clock.Now, Params: cheap}
	alice, proj1 := fx.users["alice"].ID, fx.id(p1)
	req := byName("alice", "acme")
	req.Scope = fx.scope(Scope{Kind: ScopeProject, ProjectID: p1})

	// fresh issues a token through A and has B validate it until it is remembered.
	fresh := func() func() (*kps.Principal, error) {
		t.Helper()
		tok, _ := fx.issue(t, req)
		auth := func() (*kps.Principal, error) { return b.Authenticate(ctx, tok, proj1, "") }
		if _, err := auth(); err != nil {
			t.Fatal(err)
		}
		lookups := counting.lookups.Load()
		for range 3 {
			if _, err := auth(); err != nil {
				t.Fatal(err)
			}
		}
		if n := counting.lookups.Load() - lookups; n != 0 {
			t.Fatalf("replica B looked the token up %d times for 3 repeated validations", n)
		}
		return auth
	}
	revoked := "Incorrect authentication information: the token has been revoked."
	off, on := false, true

	auth := fresh()
	tok, _ := fx.issue(t, req) // revoked through A below
	authTok := func() (*kps.Principal, error) { return b.Authenticate(ctx, tok, proj1, "") }
	for range 2 {
		if _, err := authTok(); err != nil {
			t.Fatal(err)
		}
	}
	if err := fx.db.RevokeToken(ctx, tokenHash(tok)); err != nil {
		t.Fatal(err)
	}
	_, err := authTok()
	wantCode(t, err, kps.ErrBadCredentials, revoked)
	if _, err := auth(); err != nil { // another token of the same user is still good
		t.Fatal(err)
	}

	// A role revoked and granted again through A.
	revokeThenGrant(t, fx, alice, proj1, auth)

	// The project, the user, the domain disabled through A; each on a token B remembers.
	for _, c := range []struct {
		name       string
		off, on    func() error
		code, want string
	}{
		{"project", func() error {
			_, err := fx.db.UpdateProject(ctx, proj1, kps.ProjectUpdate{Enabled: &off})
			return err
		}, func() error {
			_, err := fx.db.UpdateProject(ctx, proj1, kps.ProjectUpdate{Enabled: &on})
			return err
		}, kps.ErrBadCredentials, revoked},
		{"user", func() error {
			_, err := fx.db.UpdateUser(ctx, alice, kps.UserUpdate{Enabled: &off})
			return err
		}, func() error {
			_, err := fx.db.UpdateUser(ctx, alice, kps.UserUpdate{Enabled: &on})
			return err
		}, kps.ErrBadCredentials, ""},
		{"domain", func() error {
			_, err := fx.db.UpdateDomain(ctx, fx.id(dAcme), kps.DomainUpdate{Enabled: &off})
			return err
		}, func() error {
			_, err := fx.db.UpdateDomain(ctx, fx.id(dAcme), kps.DomainUpdate{Enabled: &on})
			return err
		}, kps.ErrBadCredentials, ""},
	} {
		auth := fresh()
		if err := c.off(); err != nil {
			t.Fatal(err)
		}
		if _, err := auth(); kps.ErrorCode(err) != c.code || (c.want != "" && kps.ErrorMessage(err) != c.want) {
			t.Fatalf("%s disabled on replica A: replica B answered %v", c.name, err)
		}
		if err := c.on(); err != nil {
			t.Fatal(err)
		}
	}

	// A password change through A revokes the user's tokens (auth.md §5.5).
	auth = fresh()
	self := &kps.Principal{UserID: alice, UserName: "alice", DomainID: fx.id(dAcme)}
	if err := fx.svc.ChangePassword(ctx, self, alice, password, "Another-correct-horse-9", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	_, err = auth()
	wantCode(t, err, kps.ErrBadCredentials, revoked)
}
