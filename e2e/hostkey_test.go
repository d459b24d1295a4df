package e2e

import (
	"strings"
	"testing"

	"github.com/openkps/kps"
	"github.com/openkps/kps/internal/hostilessh"
)

// TestChangedHostKeyReceivesNoCredential binds through every credential path against an SSH
// server whose pinned host key no longer matches: the caller's password, the caller's
// private key, the service's password credential, and RESET of a key pair with a hosted
// private key using the service's key credential. The server records every authentication attempt: it sees none, and every task fails with
// KPS.6604. The control binds once with the server's real key pinned, to show that the
// recorder does see a password when one is sent.
func TestChangedHostKeyReceivesNoCredential(t *testing.T) {
	t.Parallel()
	s := setup(t)
	rec := hostilessh.Start(t, hostilessh.Options{Behavior: hostilessh.Refuse})
	callerKey, serviceKey := privatePEM(t), privatePEM(t)
	const password = "caller-password-never-sent"

	pinned := strings.TrimSpace(ed25519Line(t, "")) // the host's old key
	for _, srv := range []map[string]any{
		{"id": "changed-pw", "credential": map[string]any{"type": "password", "key": "service-password-never-sent"}},
		{"id": "changed-key", "credential": map[string]any{"type": "keypair", "key": serviceKey}},
		// The host's key changed type too: the pin is RSA, the host offers only ed25519.
		{"id": "changed-type", "host_keys": []string{strings.TrimSpace(newRSAPublicKey(t, 2048, ""))}},
		{"id": "control"},
	} {
		srv["address"], srv["port"], srv["user"] = rec.Address, rec.Port, "deploy"
		if srv["host_keys"] == nil {
			srv["host_keys"] = []string{pinned}
		}
		if srv["id"] == "control" {
			srv["host_keys"] = []string{rec.HostKey}
		}
		s.must(201, "POST", "/servers", map[string]any{"server": srv})
	}
	s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "plain"}})
	s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "hosted",
		"key_protection": map[string]any{"encryption": map[string]any{"type": "default"}}}})

	run := func(path string, body map[string]any) string {
		t.Helper()
		id := str(s.must(200, "POST", path, body)["task_id"])
		s.waitTask(id)
		return str(s.failedTask(id)["task_error_code"])
	}
	cases := []struct {
		name string
		path string
		body map[string]any
	}{
		{"caller password", "/keypairs/associate", map[string]any{"keypair_name": "plain",
			"server": map[string]any{"id": "changed-pw", "auth": map[string]any{"type": "password", "key": password}}}},
		{"caller key", "/keypairs/associate", map[string]any{"keypair_name": "plain",
			"server": map[string]any{"id": "changed-pw", "auth": map[string]any{"type": "keypair", "key": callerKey}}}},
		{"service password", "/keypairs/associate", map[string]any{"keypair_name": "plain",
			"server": map[string]any{"id": "changed-pw"}}},
		{"caller password, pinned key of another type", "/keypairs/associate", map[string]any{"keypair_name": "plain",
			"server": map[string]any{"id": "changed-type", "auth": map[string]any{"type": "password", "key": password}}}},
		{"hosted key, service key", "/keypairs/associate", map[string]any{"keypair_name": "hosted",
			"server": map[string]any{"id": "changed-key"}}},
	}
	for _, c := range cases {
		before := rec.Connections()
		if code := run(c.path, c.body); code != kps.TaskHostKeyMismatch {
			t.Errorf("%s: task failed with %s, want %s", c.name, code, kps.TaskHostKeyMismatch)
		}
		if rec.Connections() == before {
			t.Errorf("%s: the task never connected to the host", c.name)
		}
		if got := rec.Attempts(); len(got) > 0 {
			t.Fatalf("%s: a host with a changed key saw authentication attempts: %+v", c.name, got)
		}
	}

	// Control: with the presented key pinned, the same recorder sees the password arrive.
	code := run("/keypairs/associate", map[string]any{"keypair_name": "plain",
		"server": map[string]any{"id": "control", "auth": map[string]any{"type": "password", "key": password}}})
	if code != kps.TaskAuthFailed {
		t.Errorf("control: task failed with %s, want %s", code, kps.TaskAuthFailed)
	}
	var methods []string
	sent := false
	for _, a := range rec.Attempts() {
		methods = append(methods, a.Method)
		sent = sent || (a.Method == "password" && a.Credential && a.User == "deploy")
	}
	if !sent {
		t.Errorf("control: the recorder did not see the password (attempts: %s)", strings.Join(methods, ", "))
	}
}
