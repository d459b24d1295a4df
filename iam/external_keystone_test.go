package iam_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api/router"
	"github.com/openkps/kps/iam"
	"github.com/openkps/kps/store"
)

// These tests run External against a real identity service: this project's own local mode (an
// iam.Service over the SQLite store, behind the real HTTP API), which answers
// GET /v3/auth/tokens as Keystone does. They live outside package iam because api imports it.

// keystone is the stand-in and the fixture it holds, on one clock shared with External:
//
//	alice@acme  member on p1 and p3
//	bob@acme    admin on the acme domain
//	eve@acme    no roles
//	frank@acme  member on p1
type keystone struct {
	db       *store.DB
	svc      *iam.Service
	url      string
	clock    *extClock
	users    map[string]*kps.User
	projects map[string]string // "p1", "p3" → ID
	domainID string
	calls    atomic.Int32 // validation calls received
}

// noLockout is a Limiter that never locks.
type noLockout struct{}

func (noLockout) LockedFor(context.Context, time.Time, ...string) (time.Duration, error) {
	return 0, nil
}
func (noLockout) Reserve(context.Context, time.Time, ...kps.Attempt) (time.Duration, error) {
	return 0, nil
}
func (noLockout) Settle(context.Context, time.Time, ...kps.Attempt) error { return nil }
func (noLockout) Fail(context.Context, time.Time, iam.LockPolicy, string) (time.Duration, error) {
	return 0, nil
}
func (noLockout) Reset(context.Context, time.Time, string) error { return nil }

type extClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *extClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *extClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

const (
	ksPassword = "correct horse battery"
	ip         = "192.0.2.1" // the client of the requests
)

func startKeystone(t *testing.T) *keystone {
	t.Helper()
	ctx := context.Background()
	c := &extClock{now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	db, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "kps.db"), store.Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cheap := iam.Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1}
	// Every validation call comes from 127.0.0.1: the stand-in must not lock its only client
	// out when a test guesses tokens (External's own lockout is what those tests look at).
	ks := &keystone{db: db, svc: &iam.Service{Store: db, Now: c.Now, Params: cheap, Region: "my-region-1", Limiter: noLockout{}}, clock: c,
		users: map[string]*kps.User{}, projects: map[string]string{}}
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	d := &kps.Domain{Name: "acme", Enabled: true}
	p1, err := db.CreateDomain(ctx, d, "my-region-1")
	check(err)
	p3 := &kps.Project{Name: "my-region-1_tmp", DomainID: d.ID, Enabled: true}
	check(db.CreateProject(ctx, p3))
	ks.domainID, ks.projects["p1"], ks.projects["p3"] = d.ID, p1.ID, p3.ID
	hash, err := cheap.Hash(ctx, ksPassword)
	check(err)
	for name, grants := range map[string][]kps.RoleAssignment{
		"alice": {{Role: kps.RoleMember, ProjectID: p1.ID}, {Role: kps.RoleMember, ProjectID: p3.ID}},
		"bob":   {{Role: kps.RoleAdmin, DomainID: d.ID}},
		"eve":   nil,
		"frank": {{Role: kps.RoleMember, ProjectID: p1.ID}},
	} {
		u := &kps.User{Name: name, DomainID: d.ID, Enabled: true, PasswordHash: hash}
		check(db.CreateUser(ctx, u))
		ks.users[name] = u
		for _, g := range grants {
			g.UserID = u.ID
			check(db.GrantRole(ctx, g))
		}
	}

	h := router.New(router.Config{}, router.Deps{Identity: ks.svc, Tokens: ks.svc, Manager: ks.svc})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/v3/auth/tokens" {
			ks.calls.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	ks.url = srv.URL + "/v3"
	return ks
}

// id resolves "p1", "p3" and "acme"; anything else is returned as it is.
func (ks *keystone) id(name string) string {
	if name == "acme" {
		return ks.domainID
	}
	if id, ok := ks.projects[name]; ok {
		return id
	}
	return name
}

// external returns an External for the stand-in with the stand-in's clock.
func (ks *keystone) external(mutate ...func(*iam.External)) *iam.External {
	e := &iam.External{URL: ks.url, Now: ks.clock.Now}
	for _, f := range mutate {
		f(e)
	}
	return e
}

// login issues a token of the user of domain acme: scoped to a project ("p1", "p3"), to the
// domain ("acme") or to nothing ("").
func (ks *keystone) login(t *testing.T, user, scope string) string {
	t.Helper()
	req := iam.IssueRequest{Method: iam.MethodPassword, UserName: user, UserDomainName: "acme", Password: ksPassword}
	switch scope {
	case "":
	case "acme":
		req.Scope = iam.Scope{Kind: iam.ScopeDomain, DomainID: ks.domainID}
	default:
		req.Scope = iam.Scope{Kind: iam.ScopeProject, ProjectID: ks.id(scope)}
	}
	tok, _, err := ks.svc.IssueToken(context.Background(), req)
	if err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return tok
}

func (ks *keystone) revoke(t *testing.T, token string) {
	t.Helper()
	sum := sha256.Sum256([]byte(token))
	if err := ks.db.RevokeToken(context.Background(), hex.EncodeToString(sum[:])); err != nil {
		t.Fatal(err)
	}
}

func (ks *keystone) wantCalls(t *testing.T, n int32) {
	t.Helper()
	if got := ks.calls.Load(); got != n {
		t.Fatalf("%d validation calls, want %d", got, n)
	}
}

func wantKPS(t *testing.T, err error, code, msg string) {
	t.Helper()
	if kps.ErrorCode(err) != code || (msg != "" && kps.ErrorMessage(err) != msg) {
		t.Fatalf("error %v, want %s %q", err, code, msg)
	}
}

func TestExternalProjectToken(t *testing.T) {
	t.Parallel()
	ks := startKeystone(t)
	e := ks.external()
	ctx := context.Background()
	tok := ks.login(t, "alice", "p1")

	p, err := e.Authenticate(ctx, tok, ks.id("p1"), ip)
	if err != nil {
		t.Fatal(err)
	}
	alice := ks.users["alice"]
	if p.UserID != alice.ID || p.UserName != "alice" || p.DomainID != ks.id("acme") || p.DomainName != "acme" ||
		p.ProjectID != ks.id("p1") || p.AuthMethod != "token" || len(p.TokenAuditID) != 22 ||
		!slices.Equal(p.Roles, []kps.Role{kps.RoleMember, kps.RoleReader}) {
		t.Fatalf("principal %+v", p)
	}
	ks.wantCalls(t, 1)

	// The same token is answered from the cache, for every check that follows.
	if _, err := e.Authenticate(ctx, tok, ks.id("p1"), ip); err != nil {
		t.Fatal(err)
	}
	_, err = e.Authenticate(ctx, tok, ks.id("p3"), ip)
	wantKPS(t, err, kps.ErrProjectMismatch, "Project mismatch: the request targets project "+ks.id("p3")+
		" but the credentials are scoped to project "+ks.id("p1")+".")
	// Identity routes: a project-scoped token holds no role on the domain.
	if p, err := e.Authenticate(ctx, tok, "", ip); err != nil || p.ProjectID != "" || len(p.Roles) != 0 || p.UserID != alice.ID {
		t.Fatalf("identity route: %+v %v", p, err)
	}
	ks.wantCalls(t, 1)
}

func TestExternalDomainAndUnscopedTokens(t *testing.T) {
	t.Parallel()
	ks := startKeystone(t)
	e := ks.external()
	ctx := context.Background()

	domainTok := ks.login(t, "bob", "acme")
	_, err := e.Authenticate(ctx, domainTok, ks.id("p1"), ip)
	wantKPS(t, err, kps.ErrProjectMismatch, "Project mismatch: the request targets project "+ks.id("p1")+
		" but the token is not scoped to a project.")
	p, err := e.Authenticate(ctx, domainTok, "", ip)
	if err != nil || !slices.Equal(p.Roles, []kps.Role{kps.RoleAdmin, kps.RoleMember, kps.RoleReader}) || p.DomainName != "acme" {
		t.Fatalf("domain token on an identity route: %+v %v", p, err)
	}

	// eve has no role anywhere: her token is unscoped.
	unscoped := ks.login(t, "eve", "")
	_, err = e.Authenticate(ctx, unscoped, ks.id("p1"), ip)
	wantKPS(t, err, kps.ErrProjectMismatch, "Project mismatch: the request targets project "+ks.id("p1")+
		" but the token is not scoped to a project.")
	if p, err := e.Authenticate(ctx, unscoped, "", ip); err != nil || len(p.Roles) != 0 || p.UserName != "eve" {
		t.Fatalf("unscoped token on an identity route: %+v %v", p, err)
	}
	ks.wantCalls(t, 2)
}

func TestExternalRoleMapping(t *testing.T) {
	t.Parallel()
	ks := startKeystone(t)
	ctx := context.Background()
	tok := ks.login(t, "alice", "p1") // roles member, reader

	onlyAdmin := map[string]kps.Role{"admin": kps.RoleAdmin}
	_, err := ks.external(func(e *iam.External) { e.RoleMap = onlyAdmin }).Authenticate(ctx, tok, ks.id("p1"), ip)
	wantKPS(t, err, kps.ErrForbidden, "The user has no permission to perform this operation.")

	p, err := ks.external(func(e *iam.External) { e.RoleMap = onlyAdmin; e.DefaultRole = kps.RoleReader }).Authenticate(ctx, tok, ks.id("p1"), ip)
	if err != nil || !slices.Equal(p.Roles, []kps.Role{kps.RoleReader}) {
		t.Fatalf("default role: %+v %v", p, err)
	}
	p, err = ks.external(func(e *iam.External) { e.RoleMap = map[string]kps.Role{"reader": kps.RoleAdmin} }).Authenticate(ctx, tok, ks.id("p1"), ip)
	if err != nil || !slices.Equal(p.Roles, []kps.Role{kps.RoleAdmin, kps.RoleMember, kps.RoleReader}) {
		t.Fatalf("reader mapped to admin: %+v %v", p, err)
	}
}

// TestExternalCacheLifetime: a valid token is trusted until min(expires_at, now + TTL) without
// asking again, so a revocation at the identity service takes effect within the TTL.
func TestExternalCacheLifetime(t *testing.T) {
	t.Parallel()
	ks := startKeystone(t)
	ctx := context.Background()
	e := ks.external(func(e *iam.External) { e.CacheTTL = time.Minute })
	tok := ks.login(t, "alice", "p1")
	project := ks.id("p1")
	if _, err := e.Authenticate(ctx, tok, project, ip); err != nil {
		t.Fatal(err)
	}
	ks.revoke(t, tok)
	ks.clock.Add(59 * time.Second)
	if _, err := e.Authenticate(ctx, tok, project, ip); err != nil {
		t.Fatalf("within the TTL: %v", err)
	}
	ks.wantCalls(t, 1)
	ks.clock.Add(time.Second)
	_, err := e.Authenticate(ctx, tok, project, ip)
	wantKPS(t, err, kps.ErrBadCredentials, "Incorrect authentication information: the token is not valid.")
	ks.wantCalls(t, 2)

	// A token that expires before the TTL is cached only until it expires.
	ks.svc.TokenTTL = 10 * time.Second
	short := ks.login(t, "alice", "p1")
	if _, err := e.Authenticate(ctx, short, project, ip); err != nil {
		t.Fatal(err)
	}
	ks.clock.Add(9 * time.Second)
	if _, err := e.Authenticate(ctx, short, project, ip); err != nil {
		t.Fatal(err)
	}
	ks.wantCalls(t, 3)
	ks.clock.Add(time.Second)
	_, err = e.Authenticate(ctx, short, project, ip)
	wantKPS(t, err, kps.ErrBadCredentials, "")
	ks.wantCalls(t, 4)

	// A negative TTL caches nothing.
	noCache := ks.external(func(e *iam.External) { e.CacheTTL = -1 })
	fresh := ks.login(t, "alice", "p1")
	for range 2 {
		if _, err := noCache.Authenticate(ctx, fresh, project, ip); err != nil {
			t.Fatal(err)
		}
	}
	ks.wantCalls(t, 6)
}

// TestExternalNegativeCache: a token the identity service refuses stays refused for 30 s
// without asking again.
func TestExternalNegativeCache(t *testing.T) {
	t.Parallel()
	ks := startKeystone(t)
	ctx := context.Background()
	e := ks.external()
	for range 3 {
		_, err := e.Authenticate(ctx, "KPT1-not-a-token-of-this-keystone", ks.id("p1"), ip)
		wantKPS(t, err, kps.ErrBadCredentials, "Incorrect authentication information: the token is not valid.")
		if !iam.IsFailure(err) {
			t.Fatal("a refused token must be a *Failure (it counts toward lockouts)")
		}
	}
	ks.wantCalls(t, 1)
	ks.clock.Add(30 * time.Second)
	_, err := e.Authenticate(ctx, "KPT1-not-a-token-of-this-keystone", ks.id("p1"), ip)
	wantKPS(t, err, kps.ErrBadCredentials, "")
	ks.wantCalls(t, 2)
}

// TestExternalConcurrentRequests: requests that carry the same new token at the same time share
// one validation call, and a churned cache stays within its bound; run with -race.
func TestExternalConcurrentRequests(t *testing.T) {
	t.Parallel()
	ks := startKeystone(t)
	ctx := context.Background()
	e := ks.external()
	tok := ks.login(t, "alice", "p1")
	var wg sync.WaitGroup
	for range 30 {
		wg.Go(func() {
			if _, err := e.Authenticate(ctx, tok, ks.id("p1"), ip); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	ks.wantCalls(t, 1)

	small := ks.external(func(e *iam.External) { e.CacheSize = 2 })
	tokens := []string{tok,
		ks.login(t, "alice", "p3"),
		ks.login(t, "frank", "p1"),
	}
	for i := range 30 {
		wg.Go(func() {
			if _, err := small.Authenticate(ctx, tokens[i%3], ks.id("p1"), ip); err != nil && kps.ErrorCode(err) != kps.ErrProjectMismatch {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := small.CacheLen(); n != 2 {
		t.Fatalf("cache holds %d entries, bound 2", n)
	}
}

// TestExternalClientLockout: refused tokens count against the client IP (auth.md §12.4); once
// it is locked, its tokens are refused with 429 before any validation call, and other
// clients are unaffected.
func TestExternalClientLockout(t *testing.T) {
	t.Parallel()
	ks := startKeystone(t)
	ctx := context.Background()
	e := ks.external()
	for i := range 30 {
		_, err := e.Authenticate(ctx, fmt.Sprintf("KPT1-guess-%d", i), ks.id("p1"), "198.51.100.7")
		wantKPS(t, err, kps.ErrBadCredentials, "")
	}
	ks.wantCalls(t, 30)
	good := ks.login(t, "alice", "p1")
	_, err := e.Authenticate(ctx, good, ks.id("p1"), "198.51.100.7")
	wantKPS(t, err, kps.ErrLockedOut, "")
	var locked interface{ RetryAfter() time.Duration }
	if !errors.As(err, &locked) || locked.RetryAfter() <= 0 {
		t.Fatalf("no Retry-After in %v", err)
	}
	_, err = e.AuthenticateSignature(ctx, httptest.NewRequest("GET", "/", nil), nil, ks.id("p1"), "198.51.100.7")
	wantKPS(t, err, kps.ErrLockedOut, "")
	ks.wantCalls(t, 30)
	if _, err := e.Authenticate(ctx, good, ks.id("p1"), ip); err != nil {
		t.Fatalf("another client: %v", err)
	}
	ks.clock.Add(time.Minute)
	if _, err := e.Authenticate(ctx, good, ks.id("p1"), "198.51.100.7"); err != nil {
		t.Fatalf("after the minute: %v", err)
	}
}
