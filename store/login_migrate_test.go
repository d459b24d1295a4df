package store

import (
	"path/filepath"
	"testing"

	"github.com/openkps/kps"
)

// TestLoginSourceMigration upgrades a database an older binary left with a server and queued
// tasks: the server's reach counts as not set by an admin (a member may have edited it), the
// queued task of the caller's credential keeps it as its login, and the other queued task has
// none recorded (the worker refuses it: it was submitted under the old rules).
func TestLoginSourceMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kps.db")
	old := openAtVersion(t, path, 8)
	ctx := t.Context()
	for _, q := range []string{
		`INSERT INTO servers (project_id, id, name, address, port, login_user, host_keys, sshd_config, credential, created, updated)
VALUES ('p', 's', 's', '192.0.2.1', 22, 'root', '[]', '/etc/ssh/sshd_config', x'00', 1, 1)`,
		`INSERT INTO tasks (id, project_id, operation, phase, server_id, server_name, keypair_name, public_key, caller_auth, created, updated)
VALUES ('t-caller', 'p', 'REPLACE', 'READY', 's', 's', 'k', 'ssh-ed25519 AAAA', 1, 1, 1),
       ('t-reset', 'p', 'RESET', 'READY', 's2', 's2', 'k', 'ssh-ed25519 AAAA', 0, 1, 1)`,
	} {
		if _, err := old.write.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	db := openTest(t, path, nil)
	s, err := db.Server(ctx, "p", "s")
	if err != nil || s.ReachByAdmin {
		t.Fatalf("server after migration: %+v, %v", s, err)
	}
	caller, err := db.Task(ctx, "p", "t-caller")
	if err != nil || caller.Login != kps.LoginCaller || caller.LoginKeyPair != "" {
		t.Fatalf("queued task of the caller's credential: %+v, %v", caller, err)
	}
	reset, err := db.Task(ctx, "p", "t-reset")
	if err != nil || reset.Login != "" {
		t.Fatalf("queued RESET: %+v, %v", reset, err)
	}
}
