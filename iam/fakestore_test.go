package iam

import (
	"context"
	"sync"

	"github.com/openkps/kps"
)

// fakeIdentityStore is an in-memory kps.IdentityStore for these tests only. The SQLite store
// (store.OpenSQLite) can create nothing but the bootstrap identities through kps.IdentityStore,
// so the fixtures of the scope and error tests (other users, disabled domains, projects
// without roles) live here; store_test.go runs the bootstrap, login and token checks against
// the real store. Lookups return (nil, nil) for a miss, as the real store does.
type fakeIdentityStore struct {
	mu       sync.Mutex
	domains  map[string]*kps.Domain
	projects map[string]*kps.Project
	users    map[string]*kps.User
	// assignments: user ID → project or domain ID → roles.
	assignments map[string]map[string][]kps.Role
	tokens      map[string]*kps.Token
	bootstraps  int
}

func newFakeIdentityStore() *fakeIdentityStore {
	return &fakeIdentityStore{
		domains:     map[string]*kps.Domain{},
		projects:    map[string]*kps.Project{},
		users:       map[string]*kps.User{},
		assignments: map[string]map[string][]kps.Role{},
		tokens:      map[string]*kps.Token{},
	}
}

var _ kps.IdentityStore = (*fakeIdentityStore)(nil)

func (f *fakeIdentityStore) Bootstrap(_ context.Context, b kps.Bootstrap) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bootstraps++
	if len(f.domains) > 0 {
		return false, nil
	}
	d := &kps.Domain{ID: "d0000000000000000000000000000000", Name: b.DomainName, Enabled: true}
	p := &kps.Project{ID: "p0000000000000000000000000000000", Name: b.ProjectName, DomainID: d.ID, Enabled: true}
	u := &kps.User{ID: "u0000000000000000000000000000000", Name: b.AdminName, DomainID: d.ID, Enabled: true,
		PasswordHash: b.AdminPasswordHash, DefaultProjectID: p.ID}
	f.domains[d.ID], f.projects[p.ID], f.users[u.ID] = d, p, u
	f.assignments[u.ID] = map[string][]kps.Role{d.ID: {kps.RoleAdmin}}
	return true, nil
}

func (f *fakeIdentityStore) DomainByID(_ context.Context, id string) (*kps.Domain, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return clone(f.domains[id]), nil
}

func (f *fakeIdentityStore) DomainByName(_ context.Context, name string) (*kps.Domain, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range f.domains {
		if d.Name == name {
			return clone(d), nil
		}
	}
	return nil, nil
}

func (f *fakeIdentityStore) ProjectByID(_ context.Context, id string) (*kps.Project, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return clone(f.projects[id]), nil
}

func (f *fakeIdentityStore) ProjectByName(_ context.Context, domainID, name string) (*kps.Project, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.projects {
		if p.DomainID == domainID && p.Name == name {
			return clone(p), nil
		}
	}
	return nil, nil
}

func (f *fakeIdentityStore) UserByID(_ context.Context, id string) (*kps.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return clone(f.users[id]), nil
}

func (f *fakeIdentityStore) UserByName(_ context.Context, domainID, name string) (*kps.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, u := range f.users {
		if u.DomainID == domainID && u.Name == name {
			return clone(u), nil
		}
	}
	return nil, nil
}

func (f *fakeIdentityStore) EffectiveRoles(_ context.Context, userID, projectID string) ([]kps.Role, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.projects[projectID]
	if p == nil {
		return nil, nil
	}
	a := f.assignments[userID]
	return kps.Implied(append(append([]kps.Role{}, a[p.ID]...), a[p.DomainID]...)), nil
}

func (f *fakeIdentityStore) CreateToken(_ context.Context, t *kps.Token) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens[t.Hash] = clone(t)
	return nil
}

func (f *fakeIdentityStore) TokenByHash(_ context.Context, hash string) (*kps.Token, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return clone(f.tokens[hash]), nil
}

// change runs fn under the lock, for tests that edit fixtures.
func (f *fakeIdentityStore) change(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

func clone[T any](v *T) *T {
	if v == nil {
		return nil
	}
	c := *v
	return &c
}

// fakeWithDomainRoles adds the optional DomainRoleStore and RoleIDStore capabilities.
type fakeWithDomainRoles struct{ *fakeIdentityStore }

func (f fakeWithDomainRoles) DomainRoles(_ context.Context, userID, domainID string) ([]kps.Role, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return kps.Implied(f.assignments[userID][domainID]), nil
}

func (f fakeWithDomainRoles) RoleID(_ context.Context, r kps.Role) (string, error) {
	return "role-id-" + string(r), nil
}
