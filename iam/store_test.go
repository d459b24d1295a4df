package iam_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/iam"
	"github.com/openkps/kps/store"
)

// This test runs the first start end to end against the real SQLite store, from outside the
// package: bootstrap, login, re-scope, checks and expiry.

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func openStore(t *testing.T, dir string, c *testClock) *store.DB {
	t.Helper()
	db, err := store.OpenSQLite(context.Background(), filepath.Join(dir, "kps.db"), store.Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestWithSQLiteStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	c := &testClock{now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	db := openStore(t, dir, c)
	svc := &iam.Service{Store: db, Now: c.Now, Params: iam.Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1}}

	file, err := svc.Bootstrap(ctx, dir, "my-region-1", "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pw := strings.TrimSpace(string(b))
	if again, err := svc.Bootstrap(ctx, dir, "my-region-1", ""); err != nil || again != "" {
		t.Fatalf("second bootstrap = %q, %v", again, err)
	}
	if b2, _ := os.ReadFile(file); string(b2) != string(b) {
		t.Fatal("second bootstrap rewrote the password file")
	}

	login := func(pw string, sc iam.Scope) (string, *iam.TokenBody, error) {
		return svc.IssueToken(ctx, iam.IssueRequest{Method: iam.MethodPassword, UserName: "admin",
			UserDomainName: "Default", Password: pw, Scope: sc})
	}
	// No scope: the admin's default project, the region project.
	tok, body, err := login(pw, iam.Scope{})
	if err != nil {
		t.Fatal(err)
	}
	if body.Project == nil || body.Project.Name != "my-region-1" || body.User.Domain.Name != "Default" {
		t.Fatalf("token body %+v", body)
	}
	project := body.Project.ID
	if _, byName, err := login(pw, iam.Scope{Kind: iam.ScopeProject, ProjectName: "my-region-1", DomainName: "Default"}); err != nil || byName.Project.ID != project {
		t.Fatalf("scope by name: %v", err)
	}

	p, err := svc.Authenticate(ctx, tok, project, "")
	if err != nil {
		t.Fatal(err)
	}
	if p.UserName != "admin" || p.ProjectID != project || !p.Has(kps.RoleAdmin) || p.TokenAuditID != body.AuditIDs[0] {
		t.Errorf("principal %+v", p)
	}
	_, err = svc.Authenticate(ctx, tok, strings.Repeat("0", 32), "")
	if kps.ErrorCode(err) != kps.ErrProjectMismatch {
		t.Errorf("other project: %v", err)
	}

	for _, bad := range []iam.IssueRequest{
		{Method: iam.MethodPassword, UserName: "admin", UserDomainName: "Default", Password: pw + "x"},
		{Method: iam.MethodPassword, UserName: "nobody", UserDomainName: "Default", Password: pw},
		{Method: iam.MethodPassword, UserName: "admin", UserDomainName: "Nowhere", Password: pw},
	} {
		if _, _, err := svc.IssueToken(ctx, bad); kps.ErrorCode(err) != kps.ErrLoginFailed {
			t.Errorf("bad login: %v", err)
		}
	}
	if _, _, err := login(pw, iam.Scope{Kind: iam.ScopeProject, ProjectID: strings.Repeat("0", 32)}); kps.ErrorCode(err) != kps.ErrScope {
		t.Errorf("unknown project scope: %v", err)
	}

	// Re-scoping keeps the expiry; the store round-trips the record.
	tok2, body2, err := svc.IssueToken(ctx, iam.IssueRequest{Method: iam.MethodToken, Token: tok,
		Scope: iam.Scope{Kind: iam.ScopeProject, ProjectID: project}})
	if err != nil {
		t.Fatal(err)
	}
	if !body2.ExpiresAt.Equal(body.ExpiresAt.Time) || len(body2.AuditIDs) != 2 {
		t.Errorf("re-scoped body %+v", body2)
	}

	c.add(24 * time.Hour)
	for _, tk := range []string{tok, tok2} {
		_, err = svc.Authenticate(ctx, tk, project, "")
		if kps.ErrorMessage(err) != "Incorrect authentication information: the token has expired." {
			t.Errorf("after 24 h: %v", err)
		}
	}
}
