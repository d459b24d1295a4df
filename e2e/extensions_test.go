package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/openkps/kps/daemon"
	"github.com/openkps/kps/internal/hostilessh"
	"github.com/openkps/kps/internal/pgtest"
	"github.com/openkps/kps/internal/sshdtest"
)

// The OpenKPS extensions of kps-v3-api.md §7 — drift checks and expiring bindings — end to end,
// with real sshd hosts, on both engines.

// forEngines runs f on SQLite and, when KPS_TEST_POSTGRES is set, on a fresh PostgreSQL
// schema; engine points a configuration at that store (and the same one on every call, for a
// restart).
func forEngines(t *testing.T, f func(t *testing.T, engine func(*daemon.Config))) {
	t.Run("sqlite", func(t *testing.T) {
		dir := t.TempDir()
		f(t, func(c *daemon.Config) { c.DataDir = dir })
	})
	t.Run("postgres", func(t *testing.T) {
		dsn, dir := pgtest.Schema(t), t.TempDir()
		f(t, func(c *daemon.Config) { c.Database, c.DataDir = dsn, dir })
	})
}

// waitDrift polls a drift check until it is no longer RUNNING and returns it.
func (s *service) waitDrift(id string) map[string]any {
	s.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		c := s.must(200, "GET", "/drift-checks/"+id, nil)["drift_check"].(map[string]any)
		if c["status"] != "RUNNING" {
			return c
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("drift check %s did not end", id)
	return nil
}

// driftResults runs a drift check of body and returns its results by server.
func (s *service) driftResults(body map[string]any) (map[string]any, map[string]map[string]any) {
	s.t.Helper()
	id := str(s.must(200, "POST", "/drift-checks", body)["drift_check"].(map[string]any)["id"])
	c := s.waitDrift(id)
	if c["status"] != "DONE" {
		s.t.Fatalf("drift check %s ended %v", id, c)
	}
	out := map[string]map[string]any{}
	for _, r := range c["results"].([]any) {
		m := r.(map[string]any)
		out[str(m["server_id"])] = m
	}
	return c, out
}

func fingerprint(t *testing.T, line string) string {
	pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	return ssh.FingerprintSHA256(pk)
}

// TestDriftCheck: after a bind of five hosts, one gets a key added by hand, one loses the bound
// key, one has the bound key's line twice; a drift check reports each of these on its host,
// and nothing on the two untouched ones, and records it on the servers.
func TestDriftCheck(t *testing.T) {
	t.Parallel()
	forEngines(t, func(t *testing.T, engine func(*daemon.Config)) {
		s := setup(t, engine)
		ids := []string{"added", "removed", "doubled", "clean-1", "clean-2"}
		hosts := map[string]*sshdtest.Host{}
		var items []any
		for _, id := range ids {
			h := sshdtest.Start(t, sshdtest.Options{})
			hosts[id] = h
			s.addHost(id, h, map[string]any{"credential": map[string]any{"type": "password", "key": h.Password}})
			items = append(items, map[string]any{"keypair_name": "ops", "server": map[string]any{"id": id}})
		}
		s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "ops"}})
		for _, tk := range s.must(200, "POST", "/keypairs/batch-associate", map[string]any{"batch_keypairs": items})["tasks"].([]any) {
			if st := s.waitTask(str(tk.(map[string]any)["task_id"])); !strings.HasPrefix(st, "SUCCESS_") {
				t.Fatalf("bind ended %s", st)
			}
		}

		// Right after the binds, the hosts hold what the service believes.
		_, before := s.driftResults(map[string]any{})
		for _, id := range ids {
			if r := before[id]; r["checked"] != true || r["drift"] != false || r["bound_key"] != "present" {
				t.Fatalf("before any change, %s: %v", id, r)
			}
		}

		handAdded := ed25519Line(t, "added-by-hand")
		ak, _ := hosts["added"].AuthorizedKeys(t)
		hosts["added"].WriteAuthorizedKeys(t, ak+`from="10.0.0.1" `+handAdded+"\n")
		hosts["removed"].WriteAuthorizedKeys(t, "")
		ak, _ = hosts["doubled"].AuthorizedKeys(t)
		hosts["doubled"].WriteAuthorizedKeys(t, ak+ak)

		c, got := s.driftResults(map[string]any{})
		if len(got) != len(ids) {
			t.Fatalf("results for %d servers, want %d: %v", len(got), len(ids), c)
		}
		if sum := c["summary"].(map[string]any); sum["drifted"] != float64(3) || sum["checked"] != float64(5) || sum["unreadable"] != float64(0) {
			t.Fatalf("summary %v", sum)
		}
		r := got["added"]
		un := r["unmanaged_keys"].([]any)
		if r["drift"] != true || r["bound_key"] != "present" || len(un) != 1 {
			t.Fatalf("added: %v", r)
		}
		k := un[0].(map[string]any)
		if k["fingerprint"] != fingerprint(t, handAdded) || k["type"] != "ssh-ed25519" || k["comment"] != "added-by-hand" ||
			k["options"] != `from="10.0.0.1"` || k["line"] != float64(2) {
			t.Fatalf("added: unmanaged key %v", k)
		}
		if r := got["removed"]; r["drift"] != true || r["bound_key"] != "missing" || len(r["unmanaged_keys"].([]any)) != 0 {
			t.Fatalf("removed: %v", r)
		}
		if r := got["doubled"]; r["drift"] != true || r["bound_key"] != "duplicated" || len(r["unmanaged_keys"].([]any)) != 0 {
			t.Fatalf("doubled: %v", r)
		}
		for _, id := range []string{"clean-1", "clean-2"} {
			r := got[id]
			if r["drift"] != false || r["bound_key"] != "present" || len(r["unmanaged_keys"].([]any)) != 0 ||
				len(r["file_problems"].([]any)) != 0 || r["file_mode"] != "-rw-------" {
				t.Fatalf("%s: %v", id, r)
			}
		}

		// The server records carry the last check.
		srv := s.must(200, "GET", "/servers/doubled", nil)["server"].(map[string]any)
		if d, _ := srv["drift"].(map[string]any); srv["last_drift_check"] == float64(0) || d["bound_key"] != "duplicated" {
			t.Fatalf("server record after the check: %v", srv)
		}
		if srv := s.must(200, "GET", "/servers/clean-1", nil)["server"].(map[string]any); srv["drift"].(map[string]any)["drift"] != false {
			t.Fatalf("clean server record: %v", srv)
		}

		// A list of servers checks those only; an unknown one is refused before anything runs.
		if _, one := s.driftResults(map[string]any{"servers": []string{"clean-2"}}); len(one) != 1 || one["clean-2"]["drift"] != false {
			t.Fatalf("check of clean-2: %v", one)
		}
		s.wantError(404, "KPS.6204", "POST", "/drift-checks", map[string]any{"servers": []string{"clean-2", "nope"}})
		s.wantError(400, "KPS.6013", "POST", "/drift-checks", map[string]any{"servers": []string{"clean-2", "clean-2"}})
		s.wantError(404, "KPS.6208", "GET", "/drift-checks/nope", nil)
		list := s.must(200, "GET", "/drift-checks?limit=2", nil)
		if list["total"] != float64(3) || len(list["drift_checks"].([]any)) != 2 {
			t.Fatalf("list: %v", list)
		}
		// Reading them needs only the reader role; starting one, member.
		reader := s.addUser("drift-reader", "reader")
		reader.must(200, "GET", "/drift-checks", nil)
		reader.wantError(403, "KPS.9006", "POST", "/drift-checks", map[string]any{})
	})
}

// bindOK submits an associate and waits for its success.
func (s *service) bindOK(body map[string]any) {
	s.t.Helper()
	id := str(s.must(200, "POST", "/keypairs/associate", body)["task_id"])
	if st := s.waitTask(id); !strings.HasPrefix(st, "SUCCESS_") {
		s.t.Fatalf("bind %v ended %s: %v", body, st, s.failedTask(id))
	}
}

// waitUnbound polls the server until it has no binding.
func (s *service) waitUnbound(id string, within time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if s.must(200, "GET", "/servers/"+id, nil)["server"].(map[string]any)["keypair_name"] == "" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("server %s still bound after %v", id, within)
}

// importKeyPair imports a fresh key pair, its private key hosted when hosted is set, and
// returns the signer of that private key.
func (s *service) importKeyPair(t *testing.T, name string, hosted bool) ssh.Signer {
	priv := privatePEM(t)
	signer, err := ssh.ParsePrivateKey([]byte(priv))
	if err != nil {
		t.Fatal(err)
	}
	kp := map[string]any{"name": name, "public_key": strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))}
	if hosted {
		kp["key_protection"] = map[string]any{"private_key": priv, "encryption": map[string]any{"type": "default"}}
	}
	s.must(200, "POST", "/keypairs", map[string]any{"keypair": kp})
	return signer
}

// TestBindingTTL: an 8-second TTL unbinds by itself — a real login with the key stops working
// — and restores password login where the bind disabled it; a bind the service could not undo
// is refused; an expiry that fails is in the failed-task list.
func TestBindingTTL(t *testing.T) {
	t.Parallel()
	forEngines(t, func(t *testing.T, engine func(*daemon.Config)) {
		s := setup(t, engine)
		signer := s.importKeyPair(t, "contractor", true)
		s.importKeyPair(t, "plain", false)
		pwOff := sshdtest.Start(t, sshdtest.Options{Sudo: true})
		s.addHost("pw-off", pwOff, nil)
		stored := sshdtest.Start(t, sshdtest.Options{})
		s.addHost("stored", stored, map[string]any{"credential": map[string]any{"type": "password", "key": stored.Password}})
		broken := sshdtest.Start(t, sshdtest.Options{})
		s.addHost("broken", broken, map[string]any{"credential": map[string]any{"type": "password", "key": broken.Password}})
		bare := sshdtest.Start(t, sshdtest.Options{})
		s.addHost("bare", bare, nil)

		// What the service could never undo, and malformed expiries, are refused up front.
		auth := func(h *sshdtest.Host) map[string]any { return map[string]any{"type": "password", "key": h.Password} }
		s.wantError(409, "KPS.6026", "POST", "/keypairs/associate", map[string]any{"keypair_name": "plain",
			"server": map[string]any{"id": "bare", "auth": auth(bare), "ttl": 8}})
		s.wantError(409, "KPS.6026", "POST", "/keypairs/associate", map[string]any{"keypair_name": "plain",
			"server": map[string]any{"id": "stored", "disable_password": true, "ttl": 8}})
		out := s.must(200, "POST", "/keypairs/batch-associate", map[string]any{"batch_keypairs": []any{
			map[string]any{"keypair_name": "plain", "server": map[string]any{"id": "bare", "auth": auth(bare), "ttl": "1h"}}}})
		if it := out["tasks"].([]any)[0].(map[string]any); it["status"] != "FAILED" || it["error_code"] != "KPS.6026" {
			t.Fatalf("batch item: %v", it)
		}
		for _, bad := range []map[string]any{{"ttl": 0}, {"ttl": "soon"}, {"ttl": 1.5}, {"ttl": -3},
			{"expires_at": "2001-01-01T00:00:00Z"}, {"expires_at": "tomorrow"}, {"ttl": 8, "expires_at": time.Now().Add(time.Hour).Format(time.RFC3339)}} {
			srv := map[string]any{"id": "stored"}
			for k, v := range bad {
				srv[k] = v
			}
			s.wantError(400, "KPS.6003", "POST", "/keypairs/associate", map[string]any{"keypair_name": "contractor", "server": srv})
		}

		start := time.Now()
		s.bindOK(map[string]any{"keypair_name": "contractor", "server": map[string]any{"id": "pw-off", "auth": auth(pwOff),
			"disable_password": true, "ttl": 8}})
		s.bindOK(map[string]any{"keypair_name": "contractor", "server": map[string]any{"id": "stored", "ttl": "8s"}})
		s.bindOK(map[string]any{"keypair_name": "contractor", "server": map[string]any{"id": "broken",
			"expires_at": time.Now().Add(8 * time.Second).UTC().Format(time.RFC3339)}})
		if !pwOff.KeyLoginWorks(t, signer) || pwOff.PasswordLoginWorks(t) || !stored.KeyLoginWorks(t, signer) {
			t.Fatal("after the binds: the key should log in, the password not (pw-off)")
		}
		srv := s.must(200, "GET", "/servers/pw-off", nil)["server"].(map[string]any)
		if at, err := time.Parse(time.RFC3339, str(srv["binding_expires_at"])); err != nil || at.Before(start) || at.After(start.Add(20*time.Second)) {
			t.Fatalf("binding_expires_at of pw-off: %v", srv)
		}
		// The expiry of "broken" will fail: its stored credential no longer logs in.
		s.must(200, "PUT", "/servers/broken", map[string]any{"server": map[string]any{"credential": map[string]any{"type": "password", "key": "wrong-password"}}})

		s.waitUnbound("pw-off", 60*time.Second)
		s.waitUnbound("stored", 60*time.Second)
		if took := time.Since(start); took < 7*time.Second {
			t.Fatalf("unbound after %v, before the TTL", took)
		}
		if pwOff.KeyLoginWorks(t, signer) || stored.KeyLoginWorks(t, signer) {
			t.Fatal("the key still logs in after the expiry")
		}
		if !pwOff.PasswordLoginWorks(t) {
			t.Fatal("password login was not restored on pw-off")
		}
		// The failed expiry is listed (and the binding stays, no longer expiring).
		deadline := time.Now().Add(60 * time.Second)
		for {
			var found map[string]any
			for _, it := range s.must(200, "GET", "/failed-tasks", nil)["tasks"].([]any) {
				if m := it.(map[string]any); m["server_id"] == "broken" {
					found = m
				}
			}
			if found != nil {
				if found["operate_type"] != "FAILED_UNBIND" || found["task_error_code"] != "KPS.6603" {
					t.Fatalf("failed expiry: %v", found)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the failed expiry of broken is not in the failed-task list")
			}
			time.Sleep(100 * time.Millisecond)
		}
		if srv := s.must(200, "GET", "/servers/broken", nil)["server"].(map[string]any); srv["keypair_name"] != "contractor" || srv["binding_expires_at"] != nil {
			t.Fatalf("broken after the failed expiry: %v", srv)
		}
		if !broken.KeyLoginWorks(t, signer) {
			t.Fatal("broken: the key no longer logs in, though the expiry failed")
		}
	})
}

// TestBindingExpiresAcrossRestart: a binding that expires while kps serve is down is unbound
// after it starts again.
func TestBindingExpiresAcrossRestart(t *testing.T) {
	t.Parallel()
	forEngines(t, func(t *testing.T, engine func(*daemon.Config)) {
		s := setup(t, engine)
		signer := s.importKeyPair(t, "k", false)
		h := sshdtest.Start(t, sshdtest.Options{})
		s.addHost("web", h, map[string]any{"credential": map[string]any{"type": "password", "key": h.Password}})
		s.bindOK(map[string]any{"keypair_name": "k", "server": map[string]any{"id": "web", "ttl": 8}})
		due := time.Now().Add(8 * time.Second)
		if err := s.main.Close(); err != nil {
			t.Fatal(err)
		}
		if !h.KeyLoginWorks(t, signer) {
			t.Fatal("the key does not log in after the bind")
		}
		// Down until the expiry has passed.
		time.Sleep(time.Until(due) + time.Second)
		if !h.KeyLoginWorks(t, signer) {
			t.Fatal("the binding was undone while the service was down")
		}
		s2 := setup(t, engine)
		s2.waitUnbound("web", 60*time.Second)
		if h.KeyLoginWorks(t, signer) {
			t.Fatal("the key still logs in after the restart")
		}
	})
}

// TestCLIDriftAndTTL: kps keypair bind --ttl binds for a while, kps drift check finds a key
// added by hand (exit code 3), and the binding ends by itself.
func TestCLIDriftAndTTL(t *testing.T) {
	t.Parallel()
	s := setup(t)
	tm := newTerminal(t, s)
	tm.login()
	hosts := map[string]*sshdtest.Host{"web-1": sshdtest.Start(t, sshdtest.Options{}), "web-2": sshdtest.Start(t, sshdtest.Options{})}
	for id, h := range hosts {
		tm.must(0, h.Password, "server", "add", id, "--address", h.Address, "--port", fmt.Sprint(h.Port), "--user", h.User,
			"--sshd-config", h.ConfigPath, "--credential-password-stdin")
	}
	tm.must(0, "", "keypair", "create", "temp", "--out", filepath.Join(t.TempDir(), "temp.pem"))
	tm.must(2, "", "keypair", "bind", "temp", "--servers", "web-1", "--ttl", "soon")
	tm.must(0, "", "keypair", "bind", "temp", "--servers", "web-1,web-2", "--ttl", "12")

	r := tm.must(0, "", "drift", "check")
	if !strings.Contains(r.stdout, "2 checked, 0 drifted, 0 unreadable") || !strings.Contains(r.stderr, "drift check") {
		t.Fatalf("clean check: %s\n%s", r.stdout, r.stderr)
	}
	ak, _ := hosts["web-2"].AuthorizedKeys(t)
	hosts["web-2"].WriteAuthorizedKeys(t, ak+ed25519Line(t, "intruder")+"\n")
	r = tm.must(3, "", "drift", "check", "-o", "json")
	c := decodeJSON[map[string]any](t, r.stdout)
	if c["summary"].(map[string]any)["drifted"] != float64(1) {
		t.Fatalf("check: %v", c)
	}
	r = tm.must(3, "", "drift", "show")
	if !strings.Contains(r.stdout, "intruder") || !strings.Contains(r.stdout, "web-2") {
		t.Fatalf("drift show: %s", r.stdout)
	}
	if r := tm.must(0, "", "drift", "list", "-o", "json"); decodeJSON[map[string]any](t, r.stdout)["total"] != float64(2) {
		t.Fatalf("drift list: %s", r.stdout)
	}
	s.waitUnbound("web-1", 60*time.Second)
	s.waitUnbound("web-2", 60*time.Second)
}

// TestScheduledDriftCheck: --drift-interval checks every server by itself, and the result goes
// to the server's record.
func TestScheduledDriftCheck(t *testing.T) {
	t.Parallel()
	s := setup(t, func(c *daemon.Config) { c.DriftInterval = time.Second })
	h := sshdtest.Start(t, sshdtest.Options{})
	s.addHost("web", h, map[string]any{"credential": map[string]any{"type": "password", "key": h.Password}})
	h.WriteAuthorizedKeys(t, ed25519Line(t, "by-hand")+"\n")
	deadline := time.Now().Add(60 * time.Second)
	for {
		srv := s.must(200, "GET", "/servers/web", nil)["server"].(map[string]any)
		if d, ok := srv["drift"].(map[string]any); ok {
			if d["drift"] != true || d["bound_key"] != "none" || len(d["unmanaged_keys"].([]any)) != 1 {
				t.Fatalf("scheduled result: %v", d)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no scheduled drift check reached the server's record")
		}
		time.Sleep(200 * time.Millisecond)
	}
	list := s.must(200, "GET", "/drift-checks", nil)["drift_checks"].([]any)
	if len(list) == 0 || list[len(list)-1].(map[string]any)["scheduled"] != true {
		t.Fatalf("drift checks: %v", list)
	}
}

// TestDriftCheckLogin: a drift check logs in as a task without server.auth would — a hosted
// private key only for a caller who could export it, no stored secret on trust on first use to
// a reach no admin set — and says so in the server's result instead of logging in.
func TestDriftCheckLogin(t *testing.T) {
	t.Parallel()
	s := setup(t)
	member := s.addUser("drift-member", "member")
	s.importKeyPair(t, "admins", true) // user scope: the member does not see it
	h := sshdtest.Start(t, sshdtest.Options{})
	s.addHost("hosted", h, nil)
	s.bindOK(map[string]any{"keypair_name": "admins", "server": map[string]any{"id": "hosted",
		"auth": map[string]any{"type": "password", "key": h.Password}}})
	// A member registers a server: its reach is not an admin's, and it has no pinned key.
	m := sshdtest.Start(t, sshdtest.Options{})
	member.addHost("members", m, nil)
	s.must(200, "PUT", "/servers/members", map[string]any{"server": map[string]any{"credential": map[string]any{"type": "password", "key": m.Password}}})

	_, got := member.driftResults(map[string]any{})
	if r := got["hosted"]; r["checked"] != false || r["error_code"] != "KPS.6024" {
		t.Fatalf("member's check of hosted: %v", r)
	}
	if r := got["members"]; r["checked"] != false || r["error_code"] != "KPS.6025" {
		t.Fatalf("member's check of members: %v", r)
	}
	_, got = s.driftResults(map[string]any{"servers": []string{"hosted"}})
	if r := got["hosted"]; r["checked"] != true || r["drift"] != false || r["bound_key"] != "present" {
		t.Fatalf("admin's check of hosted: %v", r)
	}
	if strings.Contains(m.Log(t), "Accepted") {
		t.Fatal("the stored credential was sent to a reach no admin set")
	}
}

// TestDriftCheckOfAStoppedProcess: a drift check RUNNING when the process running it stops does
// not stay RUNNING. While its process lives it stays RUNNING past its lease (renewed); once the
// process is gone, on SQLite the next start INTERRUPTs it, on PostgreSQL another replica does
// when the lease has passed, with no restart.
func TestDriftCheckOfAStoppedProcess(t *testing.T) {
	t.Parallel()
	forEngines(t, func(t *testing.T, engine func(*daemon.Config)) {
		postgres := strings.HasSuffix(t.Name(), "postgres")
		lease := func(c *daemon.Config) { c.Lease = 2 * time.Second }
		a := setup(t, engine, lease)
		var b *service
		if postgres {
			b = setup(t, engine, lease)
		}
		host := hostilessh.Start(t, hostilessh.Options{Behavior: hostilessh.Stall})
		a.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"id": "stalls", "address": host.Address,
			"port": host.Port, "user": "deploy", "host_keys": []string{host.HostKey},
			"credential": map[string]any{"type": "password", "key": "never-answered"}}})
		id := str(a.must(200, "POST", "/drift-checks", map[string]any{"servers": []string{"stalls"}})["drift_check"].(map[string]any)["id"])
		status := func(s *service) any {
			return s.must(200, "GET", "/drift-checks/"+id, nil)["drift_check"].(map[string]any)["status"]
		}
		// Two leases long, the check of a live process stays RUNNING (a sweep runs every
		// third of a lease, on both replicas).
		for end := time.Now().Add(4 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
			if st := status(a); st != "RUNNING" {
				t.Fatalf("the check of a live process is %v", st)
			}
		}
		a.main.Close()
		if !postgres {
			b = setup(t, engine, lease) // the restart
		}
		deadline := time.Now().Add(30 * time.Second)
		for status(b) != "INTERRUPTED" {
			if time.Now().After(deadline) {
				t.Fatalf("the check of a stopped process is still %v", status(b))
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}
