package e2e

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/openkps/kps/internal/hostilessh"
	"github.com/openkps/kps/internal/sshdtest"
)

// The end-to-end tests of docs/SECURITY.md §1 (a credential goes only where an admin sent it)
// and §2 (a hosted private key logs in only for a caller who could export it). They run the
// built binary against real sshd hosts and, where a host must show what it was sent, the
// hostile SSH server of internal/hostilessh. Each Attack test reproduces an attack that
// succeeded before issue 13 and fails on that code (commit db21a14).

const redirectAdminPassword = "redirect-admin-password"

// startRedirect runs the built binary with a fresh data directory (and the extra environment
// and flags) and logs in as its admin.
func startRedirect(t *testing.T, env []string, flags ...string) *service {
	t.Helper()
	base, _ := startBinary(t, kpsBinary(t),
		append([]string{"KPS_DATA_DIR=" + t.TempDir(), "KPS_ADMIN_PASSWORD=" + redirectAdminPassword}, env...), flags...)
	s := &service{t: t, base: base}
	s.login(redirectAdminPassword)
	return s
}

// userWithRole creates a user of the admin's domain through the identity API, grants it role
// on the project and returns a client logged in as that user.
func (s *service) userWithRole(name, role string) *service {
	s.t.Helper()
	password := name + "-password-1"
	token := map[string]string{"X-Auth-Token": s.token}
	status, out := s.raw("POST", "/v3/users", map[string]any{"user": map[string]any{"name": name, "password": password}}, token)
	if status != 201 {
		s.t.Fatalf("creating user %s: %d %v", name, status, out)
	}
	id := str(obj(out["user"])["id"])
	if status, out := s.raw("PUT", "/v3/projects/"+s.project+"/users/"+id+"/roles/"+role, nil, token); status != 204 {
		s.t.Fatalf("granting %s to %s: %d %v", role, name, status, out)
	}
	u := &service{t: s.t, base: s.base}
	u.loginAs(name, password)
	return u
}

// expect is wantError that goes on after a mismatch, so that an attack test run on code that
// lets the attack through shows where the secret went, not only the first wrong answer.
func (s *service) expect(status int, code, method, path string, body any) map[string]any {
	s.t.Helper()
	got, out := s.call(method, path, body)
	if got != status || (code != "" && out["error_code"] != code) {
		s.t.Errorf("%s %s: %d %v, want %d %s", method, path, got, out, status, code)
	}
	return out
}

// taskCount is how many tasks the project has queued, running or failed.
func (s *service) taskCount() int {
	s.t.Helper()
	running := s.must(200, "GET", "/running-tasks", nil)["total"].(float64)
	failed := s.must(200, "GET", "/failed-tasks", nil)["total"].(float64)
	return int(running + failed)
}

// runTask waits for a task accepted by a call that should have been refused, so that the test
// can show what the task did; it returns the final status ("" when the call was refused).
func (s *service) runTask(out map[string]any) string {
	s.t.Helper()
	if id, ok := out["task_id"].(string); ok && id != "" {
		return s.waitTask(id)
	}
	return ""
}

// TestAttackRedirectStoredCredential: a member cannot point a server that holds an admin's
// service credential at a host of their choice — not by moving its address, port or user, not
// by clearing or replacing its pinned host keys, not by changing its sshd_config — and so the
// stored password never reaches the hostile host, neither does an admin's later REPLACE
// password. A server a member registered is never trusted on first use with a stored
// credential. The admin still moves servers, and the recorder does see a credential an admin
// deliberately sends it (the control).
func TestAttackRedirectStoredCredential(t *testing.T) {
	t.Parallel()
	admin := startRedirect(t, nil)
	member := admin.userWithRole("mallory", "member")
	h := sshdtest.Start(t, sshdtest.Options{})
	rec := hostilessh.Start(t, hostilessh.Options{Behavior: hostilessh.Refuse})
	admin.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "ops", "scope": "domain"}})
	mine := member.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "mallorys"}})["keypair"].(map[string]any)

	// "web" holds the real host's password and pins its key; "open" holds it too, unpinned
	// (trust on first use, allowed: an admin set where it points).
	admin.addHost("web", h, map[string]any{"credential": map[string]any{"type": "password", "key": h.Password},
		"host_keys": []string{h.HostKey}})
	admin.addHost("open", h, map[string]any{"credential": map[string]any{"type": "password", "key": h.Password}})

	// Every way of changing where "web" leads is refused to the member.
	for _, change := range []map[string]any{
		{"port": rec.Port},
		{"address": "localhost"},
		{"user": "nobody"},
		{"host_keys": []string{}},
		{"host_keys": []string{rec.HostKey}},
		{"sshd_config": "/tmp/sshd_config"},
		{"address": rec.Address, "port": rec.Port, "host_keys": []string{}},
	} {
		member.expect(403, "KPS.9006", "PUT", "/servers/web", map[string]any{"server": change})
	}
	for _, change := range []map[string]any{{"port": rec.Port}, {"user": "nobody"}} {
		member.expect(403, "KPS.9006", "PUT", "/servers/open", map[string]any{"server": change})
	}
	// What the member may still do: rename, and repeat the reach unchanged (an inventory
	// imported again).
	got := member.must(200, "PUT", "/servers/web", map[string]any{"server": map[string]any{"name": "web (renamed)",
		"address": h.Address, "port": h.Port, "user": h.User, "host_keys": []string{h.HostKey}}})["server"].(map[string]any)
	if got["name"] != "web (renamed)" || got["port"] != float64(h.Port) || got["reach_by_admin"] != true {
		t.Errorf("member's rename: %v", got)
	}

	// The member's RESETs go where the admin sent the credential: the real host.
	for _, id := range []string{"web", "open"} {
		out := member.expect(200, "", "POST", "/keypairs/associate", map[string]any{"keypair_name": "mallorys", "server": map[string]any{"id": id}})
		if st := member.runTask(out); st != "SUCCESS_RESET" {
			t.Errorf("member's RESET of %s ended %s", id, st)
		}
	}
	if content, _ := h.AuthorizedKeys(t); !strings.Contains(content, keyBlob(t, mine["public_key"])) {
		t.Errorf("the member's key is not on the real host: %q", content)
	}
	// An admin's later REPLACE password goes to the real host too.
	out := admin.expect(200, "", "POST", "/keypairs/associate", map[string]any{"keypair_name": "ops",
		"server": map[string]any{"id": "web", "auth": map[string]any{"type": "password", "key": h.Password}}})
	if st := admin.runTask(out); st != "SUCCESS_REPLACE" {
		t.Errorf("admin's REPLACE ended %s", st)
	}

	// A server the member registered, pointing at their host, unpinned: even with a credential
	// an admin stored on it, the credential is not sent on trust on first use.
	member.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"id": "mine", "address": rec.Address, "port": rec.Port}})
	const credentialForMine = "admin-typed-password-for-mine"
	admin.must(200, "PUT", "/servers/mine", map[string]any{"server": map[string]any{"credential": map[string]any{"type": "password", "key": credentialForMine}}})
	before := member.taskCount()
	out = member.expect(409, "KPS.6025", "POST", "/keypairs/associate", map[string]any{"keypair_name": "mallorys", "server": map[string]any{"id": "mine"}})
	member.runTask(out)
	if after := member.taskCount(); after != before {
		t.Errorf("the refused RESET left a task (%d → %d)", before, after)
	}

	if rec.Received(h.Password) || rec.Received(credentialForMine) || rec.Credentialed() {
		t.Errorf("the hostile host received a credential: %+v", rec.Attempts())
	}
	if got := rec.Connections(); got != 0 {
		t.Errorf("the service connected %d times to the member's host", got)
	}

	// The admin still decides where servers lead (and thereby confirms a member's server);
	// the control shows that the recorder sees a password the admin sends it on purpose.
	const decoy = "decoy-password-sent-on-purpose"
	admin.must(200, "PUT", "/servers/open", map[string]any{"server": map[string]any{"address": rec.Address, "port": rec.Port,
		"host_keys": []string{}, "credential": map[string]any{"type": "password", "key": decoy}}})
	out = admin.expect(200, "", "POST", "/keypairs/associate", map[string]any{"keypair_name": "ops", "server": map[string]any{"id": "open"}})
	if st := admin.runTask(out); st != "FAILED_RESET" {
		t.Errorf("control RESET ended %s", st)
	}
	if !rec.Received(decoy) {
		t.Errorf("control: the recorder did not see the admin's credential: %+v", rec.Attempts())
	}
	mineNow := admin.must(200, "PUT", "/servers/mine", map[string]any{"server": map[string]any{"address": rec.Address}})["server"].(map[string]any)
	if mineNow["reach_by_admin"] != true {
		t.Errorf("an admin's PUT of the address did not confirm the member's server: %v", mineNow)
	}
}

// TestAttackPortOverride: a per-task server.port is refused, synchronously and without a task,
// when the task would log in with a stored credential or a hosted private key, and when the
// caller's own credential would go to an unpinned host; the caller's credential with a port of
// the task's own works on a pinned server (a real sshd on another port than the inventory's).
func TestAttackPortOverride(t *testing.T) {
	t.Parallel()
	admin := startRedirect(t, nil)
	member := admin.userWithRole("mallory", "member")
	rec := hostilessh.Start(t, hostilessh.Options{Behavior: hostilessh.Refuse})
	h1 := sshdtest.Start(t, sshdtest.Options{})
	h2 := sshdtest.Start(t, sshdtest.Options{})
	h3 := sshdtest.Start(t, sshdtest.Options{})
	member.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "mallorys"}})
	shared := admin.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "shared", "scope": "domain",
		"key_protection": map[string]any{"encryption": map[string]any{"type": "default"}}}})["keypair"].(map[string]any)

	// A stored password ("svc"); a hosted key bound by the admin ("hosted"); neither ("plain").
	admin.addHost("svc", h1, map[string]any{"credential": map[string]any{"type": "password", "key": h1.Password}})
	admin.addHost("hosted", h2, nil)
	out := admin.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "shared",
		"server": map[string]any{"id": "hosted", "auth": map[string]any{"type": "password", "key": h2.Password}}})
	if st := admin.waitTask(str(out["task_id"])); st != "SUCCESS_REPLACE" {
		t.Fatalf("binding the hosted key: %s", st)
	}
	admin.addHost("plain", h3, nil)

	before := member.taskCount()
	const callerSecret = "callers-own-password"
	for _, c := range []struct {
		name  string
		body  map[string]any
		batch bool // a batch binds only unbound servers (KPS.6303 first)
	}{
		{"stored credential", map[string]any{"keypair_name": "mallorys", "server": map[string]any{"id": "svc", "port": rec.Port}}, true},
		{"hosted key", map[string]any{"keypair_name": "mallorys", "server": map[string]any{"id": "hosted", "port": rec.Port}}, false},
		{"caller's password to an unpinned host", map[string]any{"keypair_name": "mallorys", "server": map[string]any{"id": "plain", "port": rec.Port,
			"auth": map[string]any{"type": "password", "key": callerSecret}}}, true},
	} {
		out := member.expect(400, "KPS.6022", "POST", "/keypairs/associate", c.body)
		if st := member.runTask(out); st != "" {
			t.Errorf("%s: a task was created and ended %s", c.name, st)
		}
		if !c.batch {
			continue
		}
		batch := member.must(200, "POST", "/keypairs/batch-associate", map[string]any{"batch_keypairs": []any{c.body}})
		item := batch["tasks"].([]any)[0].(map[string]any)
		if item["status"] != "FAILED" || item["error_code"] != "KPS.6022" {
			t.Errorf("%s in a batch: %v", c.name, item)
		}
		member.runTask(item)
	}
	if after := member.taskCount(); after != before {
		t.Errorf("refused submissions left tasks (%d → %d)", before, after)
	}
	if rec.Received(h1.Password) || rec.Received(callerSecret) || rec.Received(str(shared["public_key"])) || rec.Credentialed() {
		t.Errorf("the host on the overriding port received a credential: %+v", rec.Attempts())
	}
	if got := rec.Connections(); got != 0 {
		t.Errorf("the service connected %d times to the overriding port", got)
	}

	// A pinned server whose inventory port leads nowhere: the caller's password with the port
	// of the task's own reaches the real sshd listening there.
	h4 := sshdtest.Start(t, sshdtest.Options{})
	admin.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"id": "pinned", "address": h4.Address,
		"port": closedPort(t), "user": h4.User, "sshd_config": h4.ConfigPath, "host_keys": []string{h4.HostKey}}})
	mine := member.must(200, "GET", "/keypairs/mallorys", nil)["keypair"].(map[string]any)
	out = member.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "mallorys",
		"server": map[string]any{"id": "pinned", "port": h4.Port, "auth": map[string]any{"type": "password", "key": h4.Password}}})
	if st := member.waitTask(str(out["task_id"])); st != "SUCCESS_REPLACE" {
		t.Fatalf("REPLACE with a port on a pinned server ended %s: %v", st, member.failedTask(str(out["task_id"])))
	}
	if content, _ := h4.AuthorizedKeys(t); !strings.Contains(content, keyBlob(t, mine["public_key"])) {
		t.Errorf("the key is not on the host reached on port %d: %q", h4.Port, content)
	}
}

// TestAttackHostedKeyOfAnotherUser: without a stored credential, a RESET or UNBIND would log in
// with the hosted private key of the bound key pair. A member who cannot export that key (it
// is the admin's user-scope key pair, invisible to them) is refused synchronously with 403
// KPS.6024 and no task, and the host is untouched; a hosted key the member could export (a
// domain key pair) still serves them.
func TestAttackHostedKeyOfAnotherUser(t *testing.T) {
	t.Parallel()
	admin := startRedirect(t, nil)
	member := admin.userWithRole("mallory", "member")
	h := sshdtest.Start(t, sshdtest.Options{})
	hosted := map[string]any{"encryption": map[string]any{"type": "default"}}
	admins := admin.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "admins-own", "scope": "user",
		"key_protection": hosted}})["keypair"].(map[string]any)
	team := admin.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "team", "scope": "domain",
		"key_protection": hosted}})["keypair"].(map[string]any)
	mine := member.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "mallorys"}})["keypair"].(map[string]any)
	member.wantError(404, "KPS.6201", "POST", "/keypairs/private-key/export", map[string]any{"keypair": map[string]any{"name": "admins-own"}})

	admin.addHost("h", h, map[string]any{"host_keys": []string{h.HostKey}})
	out := admin.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "admins-own",
		"server": map[string]any{"id": "h", "auth": map[string]any{"type": "password", "key": h.Password}}})
	if st := admin.waitTask(str(out["task_id"])); st != "SUCCESS_REPLACE" {
		t.Fatalf("binding the admin's key: %s", st)
	}
	keysBefore, _ := h.AuthorizedKeys(t)

	before := member.taskCount()
	out = member.expect(403, "KPS.6024", "POST", "/keypairs/associate", map[string]any{"keypair_name": "mallorys", "server": map[string]any{"id": "h"}})
	member.runTask(out)
	if msg := str(out["error_msg"]); !strings.Contains(msg, "admins-own") || !strings.Contains(msg, "server.auth") {
		t.Errorf("the refusal does not say which key and what to do: %q", msg)
	}
	out = member.expect(403, "KPS.6024", "POST", "/keypairs/disassociate", map[string]any{"server": map[string]any{"id": "h"}})
	member.runTask(out)
	if after := member.taskCount(); after != before {
		t.Errorf("refused submissions left tasks (%d → %d)", before, after)
	}
	if keys, _ := h.AuthorizedKeys(t); keys != keysBefore || strings.Contains(keys, keyBlob(t, mine["public_key"])) ||
		!strings.Contains(keys, keyBlob(t, admins["public_key"])) {
		t.Errorf("the host changed: %q, was %q", keys, keysBefore)
	}

	// The owner may; and once a key pair the member could export is bound, so may the member.
	out = admin.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "team", "server": map[string]any{"id": "h"}})
	if st := admin.waitTask(str(out["task_id"])); st != "SUCCESS_RESET" {
		t.Fatalf("the owner's RESET with their hosted key ended %s: %v", st, admin.failedTask(str(out["task_id"])))
	}
	out = member.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "mallorys", "server": map[string]any{"id": "h"}})
	if st := member.waitTask(str(out["task_id"])); st != "SUCCESS_RESET" {
		t.Fatalf("RESET with the team's hosted key ended %s: %v", st, member.failedTask(str(out["task_id"])))
	}
	keys, _ := h.AuthorizedKeys(t)
	if !strings.Contains(keys, keyBlob(t, mine["public_key"])) || strings.Contains(keys, keyBlob(t, team["public_key"])) {
		t.Errorf("after the member's RESET: %q", keys)
	}
}

// TestAllowedTargets: with --allowed-targets (here from KPS_ALLOWED_TARGETS) a server may be
// registered or moved only inside the allowed networks and ports (IP literals, 400 KPS.6023),
// and a task connects only to allowed addresses after name resolution: a host name that
// resolves elsewhere, or a port of the task's own outside the list, fails KPS.6601 with a
// message saying the target is not allowed, and no TCP connection reaches the target. A real
// sshd inside the list is bound as usual; a malformed list stops the service from starting.
func TestAllowedTargets(t *testing.T) {
	t.Parallel()
	h := sshdtest.Start(t, sshdtest.Options{})
	rec := hostilessh.Start(t, hostilessh.Options{Behavior: hostilessh.Refuse})
	port := strconv.Itoa(h.Port)
	s := startRedirect(t, []string{"KPS_ALLOWED_TARGETS=127.0.0.1/32:" + port + ",[::1]/128:" + port + ",192.0.2.0/24"})
	member := s.userWithRole("mallory", "member")

	s.addHost("ok", h, map[string]any{"credential": map[string]any{"type": "password", "key": h.Password}, "host_keys": []string{h.HostKey}})
	member.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"id": "doc-net", "address": "192.0.2.44", "port": 2222}})
	for _, srv := range []map[string]any{
		{"id": "probe-port", "address": rec.Address, "port": rec.Port},
		{"id": "probe-net", "address": "10.0.0.1"},
		{"id": "probe-v6", "address": "[::1]", "port": rec.Port},
		{"id": "probe-mapped", "address": "::ffff:127.0.0.1", "port": rec.Port},
	} {
		member.expect(400, "KPS.6023", "POST", "/servers", map[string]any{"server": srv})
		s.expect(400, "KPS.6023", "POST", "/servers", map[string]any{"server": srv})
	}
	s.expect(400, "KPS.6023", "PUT", "/servers/ok", map[string]any{"server": map[string]any{"port": rec.Port}})
	s.expect(400, "KPS.6023", "PUT", "/servers/doc-net", map[string]any{"server": map[string]any{"address": "198.51.100.1"}})

	// Inside the list: a RESET with the stored credential works on the real sshd.
	kp := s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "ops", "scope": "domain"}})["keypair"].(map[string]any)
	out := s.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "ops", "server": map[string]any{"id": "ok"}})
	if st := s.waitTask(str(out["task_id"])); st != "SUCCESS_RESET" {
		t.Fatalf("RESET inside the allowed targets ended %s: %v", st, s.failedTask(str(out["task_id"])))
	}
	if content, _ := h.AuthorizedKeys(t); !strings.Contains(content, keyBlob(t, kp["public_key"])) {
		t.Errorf("authorized_keys: %q", content)
	}

	// A host name passes registration; what it resolves to is refused before connecting. So
	// is a port of the task's own outside the list.
	s.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"id": "by-name", "address": "localhost", "port": rec.Port}})
	for _, c := range []map[string]any{
		{"id": "by-name", "auth": map[string]any{"type": "password", "key": "x"}},
		{"id": "ok", "port": rec.Port, "auth": map[string]any{"type": "password", "key": "x"}},
	} {
		out := member.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "ops", "server": c})
		id := str(out["task_id"])
		if st := member.waitTask(id); st != "FAILED_REPLACE" {
			t.Errorf("%v: task ended %s", c, st)
			continue
		}
		f := member.failedTask(id)
		if f["task_error_code"] != "KPS.6601" || !strings.Contains(str(f["task_error_msg"]), "not allowed") {
			t.Errorf("%v: failed with %v %q", c, f["task_error_code"], f["task_error_msg"])
		}
	}
	if got := rec.Connections(); got != 0 {
		t.Errorf("the service connected %d times to a target outside the list", got)
	}

	// A malformed list is a usage error at start.
	cmd := exec.Command(kpsBinary(t), "serve", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(),
		"--allowed-targets", "10.0.0.0/8,localhost")
	out2, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out2), "--allowed-targets") {
		t.Errorf("serve with a malformed --allowed-targets: %v\n%s", err, out2)
	}
}
