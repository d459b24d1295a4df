package store

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/openkps/kps"
)

// openAtVersion opens path migrated only up to version: the database an older binary left.
func openAtVersion(t *testing.T, path string, version int) *DB {
	t.Helper()
	e := sqliteEngine()
	onlyUpTo(t, e, version)
	release, err := lockFile(path + ".lock")
	if err != nil {
		t.Fatal(err)
	}
	db := &DB{eng: e, now: time.Now, release: release}
	if err := db.openSQLite(t.Context(), path); err != nil {
		db.Close()
		t.Fatal(err)
	}
	return db
}

// TestIdentityMigrationKeepsBootstrap upgrades a database bootstrapped under 0001: the roles
// keep their IDs, the bootstrap project becomes the default project, tokens keep their state
// and gain their audit ID, and a deleted user's tokens then stay, revoked.
func TestIdentityMigrationKeepsBootstrap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kps.db")
	old := openAtVersion(t, path, 1)
	ctx := t.Context()
	const (
		roleAdmin = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		domain    = "dddddddddddddddddddddddddddddddd"
		project   = "pppppppppppppppppppppppppppppppp"
		user      = "uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu"
	)
	for _, q := range []string{
		`INSERT INTO roles (id, name) VALUES ('` + roleAdmin + `', 'admin')`,
		`INSERT INTO domains (id, name, enabled, created) VALUES ('` + domain + `', 'Default', 1, 1)`,
		`INSERT INTO projects (id, name, domain_id, enabled, created) VALUES ('` + project + `', 'my-region-1', '` + domain + `', 1, 1)`,
		`INSERT INTO users (id, name, domain_id, enabled, password_hash, password_changed, default_project_id, created)
VALUES ('` + user + `', 'admin', '` + domain + `', 1, 'h', 1, '` + project + `', 1)`,
		`INSERT INTO role_assignments (user_id, role_id, domain_id) VALUES ('` + user + `', '` + roleAdmin + `', '` + domain + `')`,
		`INSERT INTO tokens (hash, user_id, project_id, methods, audit_ids, issued_at, expires_at, revoked)
VALUES ('live', '` + user + `', '` + project + `', '["password"]', '["a1","a0"]', 1, 9000000000000, 0),
       ('dead', '` + user + `', '', '["password"]', '[]', 1, 9000000000000, 1)`,
	} {
		if _, err := old.write.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	db := openTest(t, path, nil)
	if id, err := db.RoleID(ctx, kps.RoleAdmin); err != nil || id != roleAdmin {
		t.Errorf("admin role ID %q, %v; want the installed %s", id, err, roleAdmin)
	}
	for _, r := range []kps.Role{kps.RoleMember, kps.RoleReader} {
		if id, err := db.RoleID(ctx, r); err != nil || !kps.ValidIdentityID(id) {
			t.Errorf("role %s: ID %q, %v", r, id, err)
		}
	}
	p, err := db.ProjectByID(ctx, project)
	if err != nil || p == nil || !p.IsDefault {
		t.Fatalf("bootstrap project after migration: %+v, %v", p, err)
	}
	if err := db.DeleteProject(ctx, project); kps.ErrorCode(err) != kps.ErrIdentityConflict {
		t.Errorf("deleting the migrated default project: %v", err)
	}
	u, err := db.UserByID(ctx, user)
	if err != nil || u == nil || u.Description != "" || u.DefaultProjectID != project {
		t.Fatalf("user after migration: %+v, %v", u, err)
	}
	if roles, _ := db.DomainRoles(ctx, user, domain); len(roles) != 3 {
		t.Errorf("admin's domain roles %v", roles)
	}
	live, err := db.TokenByHash(ctx, "live")
	if err != nil || live == nil || live.Revoked() || live.ProjectID != project || len(live.AuditIDs) != 2 {
		t.Fatalf("live token after migration: %+v, %v", live, err)
	}
	dead, err := db.TokenByHash(ctx, "dead")
	if err != nil || dead == nil || !dead.Revoked() {
		t.Fatalf("revoked token after migration: %+v, %v", dead, err)
	}
	var audit string
	if err := db.read.QueryRowContext(ctx, `SELECT audit_id FROM tokens WHERE hash = 'live'`).Scan(&audit); err != nil || audit != "a1" {
		t.Errorf("audit_id %q, %v; want the token's own, a1", audit, err)
	}

	// Tokens no longer go with their user: they stay, revoked.
	if err := db.DeleteUser(ctx, user); err != nil {
		t.Fatal(err)
	}
	if live, _ := db.TokenByHash(ctx, "live"); live == nil || !live.Revoked() {
		t.Errorf("token of the deleted user: %+v", live)
	}
}

// TestAccessKeyLimitTrigger checks the backstop of the two-key limit, past CreateAccessKey's
// own count.
func TestAccessKeyLimitTrigger(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "kps.db"), nil)
	ctx := t.Context()
	d := &kps.Domain{Name: "acme", Enabled: true}
	if _, err := db.CreateDomain(ctx, d, "r"); err != nil {
		t.Fatal(err)
	}
	u := &kps.User{Name: "alice", DomainID: d.ID, Enabled: true}
	if err := db.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	insert := `INSERT INTO access_keys (access, user_id, secret, status, created) VALUES (?, ?, x'00', 'active', 1)`
	for i, ak := range []string{"AK000000000000000001", "AK000000000000000002", "AK000000000000000003"} {
		_, err := db.write.ExecContext(ctx, insert, ak, u.ID)
		if (err == nil) != (i < 2) {
			t.Fatalf("key %d: %v", i+1, err)
		}
	}
}
