package iam

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openkps/kps"
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
	member := kps.RoleAssignment{UserID: alice, Role: kps.RoleMember, ProjectID: proj1}
	if err := fx.db.RevokeRole(ctx, member); err != nil {
		t.Fatal(err)
	}
	_, err = auth()
	wantCode(t, err, kps.ErrForbidden, msgForbidden)
	if err := fx.db.GrantRole(ctx, member); err != nil {
		t.Fatal(err)
	}
	if p, err := auth(); err != nil || !principalEqual(*p, *first) {
		t.Fatalf("after the grant: %+v, %v", p, err)
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
