package iam

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/openkps/kps"
	"github.com/openkps/kps/store"
)

// countingStore is the real store, counting Bootstrap calls.
type countingStore struct {
	*store.DB
	bootstraps atomic.Int32
}

func (c *countingStore) Bootstrap(ctx context.Context, b kps.Bootstrap) (bool, error) {
	c.bootstraps.Add(1)
	return c.DB.Bootstrap(ctx, b)
}

// domains and users count what the store holds.
func (c *countingStore) domains(t *testing.T) int {
	t.Helper()
	_, n, err := c.ListDomains(context.Background(), kps.DomainFilter{}, kps.Page{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (c *countingStore) users(t *testing.T) int {
	t.Helper()
	_, n, err := c.ListUsers(context.Background(), kps.UserFilter{}, kps.Page{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// newBootstrapService returns a service over a fresh store, kept apart from the data
// directories the tests inspect.
func newBootstrapService(t *testing.T) (*Service, *countingStore) {
	t.Helper()
	f := &countingStore{DB: openStore(t, t.TempDir(), nil)}
	return &Service{Store: f, Params: cheap}, f
}

func adminLogin(t *testing.T, s *Service, pw string) error {
	t.Helper()
	req := IssueRequest{Method: MethodPassword, UserName: "admin", UserDomainName: "Default", Password: pw,
		Scope: Scope{Kind: ScopeProject, ProjectName: "my-region-1"}}
	_, body, err := s.IssueToken(context.Background(), req)
	if err == nil && (body.Project.Name != "my-region-1" || body.Roles[0].Name != string(kps.RoleAdmin)) {
		t.Errorf("admin token %+v", body)
	}
	return err
}

func TestBootstrapGeneratesPasswordOnce(t *testing.T) {
	t.Parallel()
	s, f := newBootstrapService(t)
	dir := t.TempDir()
	path, err := s.Bootstrap(context.Background(), dir, "my-region-1", "")
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, "admin-password") {
		t.Fatalf("password file %q", path)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want 0600", st.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	pw := strings.TrimSuffix(string(b), "\n")
	if len(pw) != 24 || strings.Trim(pw, passwordAlphabet) != "" {
		t.Errorf("generated password has %d characters or leaves the alphabet", len(pw))
	}
	if err := adminLogin(t, s, pw); err != nil {
		t.Fatalf("the password in the file does not log in: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d files in the data dir, want only admin-password", len(entries))
	}

	// A second start changes nothing: no new password, no new identities, no file rewrite.
	stores := f.bootstraps.Load()
	path2, err := s.Bootstrap(context.Background(), dir, "other-region", "ignored-password")
	if err != nil || path2 != "" {
		t.Fatalf("second bootstrap: %q, %v", path2, err)
	}
	if calls := f.bootstraps.Load() - stores; calls != 0 || f.domains(t) != 1 || f.users(t) != 1 {
		t.Errorf("second bootstrap touched the store: %d calls, %d domains, %d users", calls, f.domains(t), f.users(t))
	}
	if b2, _ := os.ReadFile(path); string(b2) != string(b) {
		t.Error("second bootstrap rewrote the password file")
	}
	if err := adminLogin(t, s, "ignored-password"); err == nil {
		t.Error("the second start's password was applied")
	}
}

func TestBootstrapWithConfiguredPassword(t *testing.T) {
	t.Parallel()
	s, _ := newBootstrapService(t)
	dir := t.TempDir()
	path, err := s.Bootstrap(context.Background(), dir, "my-region-1", "from-the-env-1")
	if err != nil || path != "" {
		t.Fatalf("Bootstrap = %q, %v", path, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Error("a password file was written although the password was configured")
	}
	if err := adminLogin(t, s, "from-the-env-1"); err != nil {
		t.Fatal(err)
	}
}

func TestBootstrapRefusesWeakPassword(t *testing.T) {
	t.Parallel()
	for _, pw := range []string{"short", "admin", strings.Repeat("x", 1025)} {
		s, f := newBootstrapService(t)
		if _, err := s.Bootstrap(context.Background(), t.TempDir(), "r", pw); err == nil {
			t.Errorf("password of %d bytes accepted", len(pw))
		} else if pw != "admin" && strings.Contains(err.Error(), pw) {
			t.Errorf("error %q quotes the password", err)
		}
		if f.domains(t) != 0 {
			t.Error("the store was bootstrapped")
		}
	}
	s, _ := newBootstrapService(t)
	if _, err := s.Bootstrap(context.Background(), t.TempDir(), "", ""); err == nil {
		t.Error("an empty region was accepted")
	}
}

// A start that wrote the file but did not bootstrap the store leaves a file whose password the
// next start must use, not replace.
func TestBootstrapReusesLeftoverPasswordFile(t *testing.T) {
	t.Parallel()
	s, _ := newBootstrapService(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "admin-password"), []byte("left-over-password\n"), 0o600)
	path, err := s.Bootstrap(context.Background(), dir, "my-region-1", "")
	if err != nil || path == "" {
		t.Fatalf("Bootstrap = %q, %v", path, err)
	}
	if err := adminLogin(t, s, "left-over-password"); err != nil {
		t.Fatal(err)
	}
}

func TestBootstrapConcurrentStarts(t *testing.T) {
	t.Parallel()
	_, f := newBootstrapService(t)
	dir := t.TempDir()
	const n = 8
	paths := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s := &Service{Store: f, Params: cheap}
			paths[i], errs[i] = s.Bootstrap(context.Background(), dir, "my-region-1", "")
		})
	}
	wg.Wait()
	won := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if paths[i] != "" {
			won++
		}
	}
	if won != 1 || f.users(t) != 1 {
		t.Fatalf("%d starts report a bootstrap, %d users", won, f.users(t))
	}
	b, err := os.ReadFile(filepath.Join(dir, "admin-password"))
	if err != nil {
		t.Fatal(err)
	}
	if err := adminLogin(t, &Service{Store: f, Params: cheap}, strings.TrimSpace(string(b))); err != nil {
		t.Fatalf("the password file does not hold the working password: %v", err)
	}
}

// racingStore plays another start that bootstraps the store between this start's file write
// and its own Bootstrap call, with the password it chooses.
type racingStore struct {
	*store.DB
	otherPassword func() string
}

func (r racingStore) Bootstrap(ctx context.Context, b kps.Bootstrap) (bool, error) {
	h, err := cheap.Hash(ctx, r.otherPassword())
	if err != nil {
		return false, err
	}
	other := b
	other.AdminPasswordHash = h
	if _, err := r.DB.Bootstrap(ctx, other); err != nil {
		return false, err
	}
	return r.DB.Bootstrap(ctx, b)
}

func TestBootstrapLosingTheRace(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "admin-password")
	readFile := func() string { b, _ := os.ReadFile(file); return strings.TrimSpace(string(b)) }

	// The other start read the file this one wrote: the file holds the working password.
	s := &Service{Store: racingStore{openStore(t, t.TempDir(), nil), readFile}, Params: cheap}
	path, err := s.Bootstrap(context.Background(), dir, "my-region-1", "")
	if err != nil || path != "" {
		t.Fatalf("Bootstrap = %q, %v", path, err)
	}
	pw := readFile()
	if pw == "" {
		t.Fatal("the file with the working password was removed")
	}
	if err := adminLogin(t, s, pw); err != nil {
		t.Fatal(err)
	}

	// The other start had its own password: the file this start wrote would mislead.
	dir = t.TempDir()
	file = filepath.Join(dir, "admin-password")
	s = &Service{Store: racingStore{openStore(t, t.TempDir(), nil), func() string { return "configured-elsewhere" }}, Params: cheap}
	if _, err := s.Bootstrap(context.Background(), dir, "my-region-1", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("a password file that does not log in was left: %v", err)
	}
}
