// Package kpstest holds the fixtures the end-to-end suites of the modules share (e2e, interop):
// users and access keys made directly in a running service's store, as the identity API would
// make them, and a certificate authority for the TLS tests. Test code only.
package kpstest

import (
	"context"
	"testing"

	"github.com/openkps/kps"
	"github.com/openkps/kps/daemon"
	"github.com/openkps/kps/iam"
)

// AddUser creates an enabled user of domain Default whose password is the name followed by
// "-password", with role on project.
func AddUser(t testing.TB, m *daemon.Main, project, name string, role kps.Role) *kps.User {
	t.Helper()
	ctx := context.Background()
	st := m.Store()
	d, err := st.DomainByName(ctx, "Default")
	if err != nil || d == nil {
		t.Fatalf("domain Default: %v", err)
	}
	hash, err := iam.HashPassword(name + "-password")
	if err != nil {
		t.Fatal(err)
	}
	u := &kps.User{Name: name, DomainID: d.ID, Enabled: true, PasswordHash: hash}
	if err := st.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if err := st.GrantRole(ctx, kps.RoleAssignment{UserID: u.ID, Role: role, ProjectID: project}); err != nil {
		t.Fatal(err)
	}
	return u
}

// AccessKey issues a permanent AK/SK for a user of domain Default, stored as the service stores
// them (the SK sealed under the key ring).
func AccessKey(t testing.TB, m *daemon.Main, userName string) (ak, sk string) {
	t.Helper()
	ctx := context.Background()
	d, _ := m.Store().DomainByName(ctx, "Default")
	u, err := m.Store().UserByName(ctx, d.ID, userName)
	if err != nil || u == nil {
		t.Fatalf("user %s: %v", userName, err)
	}
	const upper, alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	ak, sk = kps.RandomString(upper, 20), kps.RandomString(alnum, 40)
	sealed, err := m.Sealer().Seal([]byte(sk), kps.AccessKeyAAD(ak))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Store().CreateAccessKey(ctx, &kps.AccessKey{Access: ak, UserID: u.ID, Secret: sealed, Status: kps.AccessKeyActive}); err != nil {
		t.Fatal(err)
	}
	return ak, sk
}
