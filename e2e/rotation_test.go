package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/openkps/kps/daemon"
	"github.com/openkps/kps/internal/pgtest"
	"github.com/openkps/kps/internal/sshdtest"
)

// Rotations (kps-v3-api.md §8) against real sshd hosts: every host ends reachable by exactly one
// of the two keys, proven by real logins; a rotation halts past max_failures and pauses after
// its canaries; a SIGKILL of kps serve mid-rotation loses nothing and runs nothing twice.

// fleet starts n sshd hosts at once (the options of host i from opt), each closed at cleanup.
func fleet(t *testing.T, n int, opt func(i int) sshdtest.Options) []*sshdtest.Host {
	t.Helper()
	hosts := make([]*sshdtest.Host, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4) // the machine is shared: a few useradd at a time
	for i := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			var o sshdtest.Options
			if opt != nil {
				o = opt(i)
			}
			hosts[i], errs[i] = sshdtest.New(o)
		}()
	}
	wg.Wait()
	for i, h := range hosts {
		if h != nil {
			t.Cleanup(func() { h.Close() })
		}
		if errs[i] != nil {
			if _, err := sshdtest.Available(); err != nil && os.Getenv("KPS_REQUIRE_SSHD") != "1" {
				t.Skip(err)
			}
			t.Fatalf("host %d: %v", i, errs[i])
		}
	}
	return hosts
}

// signer parses a private key the service returned.
func signer(t testing.TB, pem string) ssh.Signer {
	t.Helper()
	s, err := ssh.ParsePrivateKey([]byte(pem))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// waitRotation polls a rotation until its state is one of want and nothing is in flight.
func (s *service) waitRotation(id string, want ...string) map[string]any {
	s.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		r := s.must(200, "GET", "/rotations/"+id, nil)["rotation"].(map[string]any)
		running := r["totals"].(map[string]any)["running"]
		for _, w := range want {
			if r["state"] == w && running == float64(0) {
				return r
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("rotation %s did not reach %v: %v", id, want, r)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// serverStates maps a rotation's servers to their entries.
func serverStates(r map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, it := range r["servers"].([]any) {
		m := it.(map[string]any)
		out[m["server_id"].(string)] = m
	}
	return out
}

// exactlyOne asserts, by real logins, that h accepts one of the two keys and not the other:
// want names which ("old" or "new").
func exactlyOne(t *testing.T, name string, h *sshdtest.Host, old, new ssh.Signer, want string) {
	t.Helper()
	o, n := h.KeyLoginWorks(t, old), h.KeyLoginWorks(t, new)
	if o == n || (want == "old") != o {
		t.Errorf("%s: login with the old key %v, with the new key %v; want only the %s key", name, o, n, want)
	}
}

func TestRotationSQLite(t *testing.T) {
	t.Parallel()
	testRotation(t, setup(t), false)
}

func TestRotationPostgres(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Schema(t)
	testRotation(t, setup(t, func(c *daemon.Config) { c.Database = dsn }), true)
}

// testRotation rotates 22 hosts from one key pair to another, as a member, with two canaries:
// 20 succeed, the host whose sshd reads another authorized_keys file and the host with a
// read-only ~/.ssh fail and keep their old key. Then a rotation of the failing hosts halts past
// max_failures and is cancelled. hosted says the new key pair's hosted private key verifies
// the logins (else the rotation is given it).
func testRotation(t *testing.T, admin *service, hosted bool) {
	const n = 22
	hosts := fleet(t, n, func(i int) sshdtest.Options {
		if i == n-2 {
			return sshdtest.Options{AuthorizedKeysFile: ".ssh/authorized_keys2"}
		}
		return sshdtest.Options{}
	})
	names := make([]string, n)
	for i, h := range hosts {
		names[i] = fmt.Sprintf("h-%02d", i)
		admin.addHost(names[i], h, map[string]any{"credential": map[string]any{"type": "password", "key": h.Password}})
	}
	akf, ro := names[n-2], names[n-1] // last in server ID order: after the canaries
	member := admin.addUser("rotator", "member")

	oldKP := member.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "old", "scope": "domain"}})["keypair"].(map[string]any)
	newKP := member.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "new"}})["keypair"].(map[string]any)
	oldS, newS := signer(t, oldKP["private_key"].(string)), signer(t, newKP["private_key"].(string))
	for i := 0; i < n; i += 10 {
		var batch []any
		for j := i; j < min(i+10, n); j++ {
			batch = append(batch, map[string]any{"keypair_name": "old", "server": map[string]any{"id": names[j]}})
		}
		out := member.must(200, "POST", "/keypairs/batch-associate", map[string]any{"batch_keypairs": batch})
		for _, it := range out["tasks"].([]any) {
			if st := member.waitTask(it.(map[string]any)["task_id"].(string)); st != "SUCCESS_RESET" {
				t.Fatalf("bind of old ended %s", st)
			}
		}
	}
	// The host whose sshd reads ~/.ssh/authorized_keys2 gets the old key there, as its own
	// configuration tool would put it; the other gets a ~/.ssh that only root may change.
	h := hosts[n-2]
	content, _ := h.AuthorizedKeys(t)
	if err := os.WriteFile(filepath.Join(h.Home, ".ssh", "authorized_keys2"), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chown(filepath.Join(h.Home, ".ssh", "authorized_keys2"), h.UID, h.GID)
	r := hosts[n-1]
	for _, p := range []string{filepath.Join(r.Home, ".ssh", "authorized_keys"), filepath.Join(r.Home, ".ssh")} {
		if err := os.Chown(p, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(r.Home, ".ssh", "authorized_keys"), 0o644)
	os.Chmod(filepath.Join(r.Home, ".ssh"), 0o555)
	for i, h := range hosts {
		exactlyOne(t, names[i], h, oldS, newS, "old")
	}

	body := map[string]any{"keypair_name": "new", "from_keypair": "old", "batch_size": 5, "max_failures": 2, "canary": 2}
	if hosted {
		// Without the hosted key and without private_key there is nothing to verify with.
		member.wantError(400, "KPS.6018", "POST", "/rotations", map[string]any{"rotation": body})
		member.must(200, "POST", "/keypairs/private-key/import", map[string]any{"keypair": map[string]any{"name": "new",
			"key_protection": map[string]any{"private_key": newKP["private_key"], "encryption": map[string]any{"type": "default"}}}})
		// A reader may look but not rotate.
		admin.addUser("looker", "reader").wantError(403, "KPS.9006", "POST", "/rotations", map[string]any{"rotation": body})
	} else {
		body["private_key"] = newKP["private_key"]
		bad := map[string]any{"keypair_name": "new", "from_keypair": "old", "private_key": oldKP["private_key"]}
		member.wantError(400, "KPS.6010", "POST", "/rotations", map[string]any{"rotation": bad})
	}
	member.wantError(400, "KPS.6003", "POST", "/rotations", map[string]any{"rotation": map[string]any{"keypair_name": "new", "private_key": newKP["private_key"]}})
	member.wantError(404, "KPS.6204", "POST", "/rotations", map[string]any{"rotation": map[string]any{"keypair_name": "new", "servers": []string{"nowhere"}, "private_key": newKP["private_key"]}})
	member.wantError(404, "KPS.6207", "GET", "/rotations/00000000-0000-0000-0000-000000000000", nil)

	created := member.must(201, "POST", "/rotations", map[string]any{"rotation": body})["rotation"].(map[string]any)
	id := created["id"].(string)
	if created["totals"].(map[string]any)["servers"] != float64(n) || strings.Contains(fmt.Sprint(created), "PRIVATE KEY") {
		t.Fatalf("created: %v", created)
	}
	// The canaries alone, then a pause until resumed.
	paused := member.waitRotation(id, "PAUSED")
	if tot := paused["totals"].(map[string]any); tot["succeeded"] != float64(2) || tot["pending"] != float64(n-2) {
		t.Fatalf("after the canaries: %v", paused)
	}
	exactlyOne(t, names[0], hosts[0], oldS, newS, "new")
	exactlyOne(t, names[2], hosts[2], oldS, newS, "old")
	member.wantError(409, "KPS.6307", "POST", "/rotations/"+id+"/action", map[string]any{"action": "pause"})
	member.must(200, "POST", "/rotations/"+id+"/action", map[string]any{"action": "resume"})
	done := member.waitRotation(id, "COMPLETED")
	if tot := done["totals"].(map[string]any); tot["succeeded"] != float64(n-2) || tot["failed"] != float64(2) {
		t.Fatalf("completed: %v", done)
	}
	states := serverStates(done)
	if st := states[akf]; st["state"] != "FAILED" || st["error_code"] != "KPS.6603" {
		t.Errorf("%s (AuthorizedKeysFile elsewhere): %v", akf, st)
	}
	if st := states[ro]; st["state"] != "FAILED" || st["error_code"] != "KPS.6605" {
		t.Errorf("%s (read-only ~/.ssh): %v", ro, st)
	}
	for i, h := range hosts {
		want := "new"
		if names[i] == akf || names[i] == ro {
			want = "old"
		}
		exactlyOne(t, names[i], h, oldS, newS, want)
		bound := admin.must(200, "GET", "/servers/"+names[i], nil)["server"].(map[string]any)["keypair_name"]
		if bound != want {
			t.Errorf("%s is bound to %v, want %s", names[i], bound, want)
		}
	}
	// The failures are tasks like any: RESET in the failed-task list.
	for _, name := range []string{akf, ro} {
		f := member.failedTask(states[name]["task_id"].(string))
		if f["operate_type"] != "FAILED_RESET" && f["operate_type"] != "RESET" {
			t.Errorf("failed task of %s: %v", name, f)
		}
	}
	if content, _ := hosts[n-2].AuthorizedKeys(t); strings.Contains(content, keyBlob(t, newKP["public_key"])) {
		t.Errorf("the new key was left in the file sshd ignores: %q", content)
	}
	list := member.must(200, "GET", "/rotations", nil)
	if list["total"] != float64(1) {
		t.Fatalf("list: %v", list)
	}

	// A rotation of the two failing hosts and two good ones, to a third key pair, one at a
	// time: the second failure is past max_failures (1) and halts it before the good hosts.
	third := member.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "third"}})["keypair"].(map[string]any)
	halting := member.must(201, "POST", "/rotations", map[string]any{"rotation": map[string]any{"keypair_name": "third",
		"servers": []string{akf, ro, names[0], names[1]}, "batch_size": 1, "max_failures": 1,
		"private_key": third["private_key"]}})["rotation"].(map[string]any)
	halted := member.waitRotation(halting["id"].(string), "HALTED")
	if tot := halted["totals"].(map[string]any); tot["failed"] != float64(2) || tot["pending"] != float64(2) || tot["succeeded"] != float64(0) {
		t.Fatalf("halted: %v", halted)
	}
	cancelled := member.must(200, "POST", "/rotations/"+halting["id"].(string)+"/action", map[string]any{"action": "cancel"})["rotation"].(map[string]any)
	if cancelled["state"] != "CANCELLED" || cancelled["totals"].(map[string]any)["skipped"] != float64(2) {
		t.Fatalf("cancelled: %v", cancelled)
	}
	thirdS := signer(t, third["private_key"].(string))
	for i, h := range hosts[:2] {
		exactlyOne(t, names[i], h, thirdS, newS, "new")
	}
	exactlyOne(t, akf, hosts[n-2], oldS, thirdS, "old")
	exactlyOne(t, ro, hosts[n-1], oldS, thirdS, "old")
}

// TestRotationSurvivesSIGKILL kills the built kps serve with SIGKILL while a rotation runs and
// starts it again, on each engine: the rotation completes, every host ends with the new key
// alone, and no server that had succeeded before the kill is logged in to again.
func TestRotationSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	bin := kpsBinary(t)
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			var flags []string
			if engine == "postgres" {
				flags = []string{"--database", pgtest.Schema(t)}
			}
			testRotationKill(t, bin, flags)
		})
	}
}

func testRotationKill(t *testing.T, bin string, flags []string) {
	const n = 10
	dataDir := t.TempDir()
	start := func() (*service, *exec.Cmd) {
		base, cmd := startBinary(t, bin, []string{"KPS_DATA_DIR=" + dataDir, "KPS_ADMIN_PASSWORD=crash-test-password"},
			append([]string{"--workers", "2", "--lease", "5s"}, flags...)...)
		s := &service{t: t, base: base}
		s.login("crash-test-password")
		return s, cmd
	}
	s, cmd := start()
	hosts := fleet(t, n, nil)
	names := make([]string, n)
	for i, h := range hosts {
		names[i] = fmt.Sprintf("k-%02d", i)
		s.addHost(names[i], h, map[string]any{"credential": map[string]any{"type": "password", "key": h.Password}})
	}
	newKP := s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "new"}})["keypair"].(map[string]any)
	newS := signer(t, newKP["private_key"].(string))
	// The hosts start with an old key the service knows nothing of but a binding of "old".
	s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "old"}})
	var batch []any
	for _, name := range names {
		batch = append(batch, map[string]any{"keypair_name": "old", "server": map[string]any{"id": name}})
	}
	for _, it := range s.must(200, "POST", "/keypairs/batch-associate", map[string]any{"batch_keypairs": batch})["tasks"].([]any) {
		if st := s.waitTask(it.(map[string]any)["task_id"].(string)); st != "SUCCESS_RESET" {
			t.Fatalf("bind ended %s", st)
		}
	}
	id := s.must(201, "POST", "/rotations", map[string]any{"rotation": map[string]any{"keypair_name": "new",
		"from_keypair": "old", "batch_size": 2, "private_key": newKP["private_key"]}})["rotation"].(map[string]any)["id"].(string)

	// Kill once some servers are done and some are still to come.
	var before map[string]any
	deadline := time.Now().Add(2 * time.Minute)
	for {
		before = s.must(200, "GET", "/rotations/"+id, nil)["rotation"].(map[string]any)
		tot := before["totals"].(map[string]any)
		if tot["succeeded"].(float64) >= 2 && tot["pending"].(float64) >= 2 {
			break
		}
		if before["state"] != "RUNNING" || time.Now().After(deadline) {
			t.Fatalf("the rotation ran past the point of the kill: %v", before)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	logins := make([]int, n)
	for i, h := range hosts {
		logins[i] = acceptedLogins(t, h)
	}
	s, _ = start()
	done := s.waitRotation(id, "COMPLETED")
	if tot := done["totals"].(map[string]any); tot["succeeded"] != float64(n) {
		t.Fatalf("after the restart: %v", done)
	}
	beforeStates, after := serverStates(before), serverStates(done)
	var retried []string
	for i, h := range hosts {
		name := names[i]
		if beforeStates[name]["state"] == "SUCCEEDED" {
			if got := acceptedLogins(t, h); got != logins[i] {
				t.Errorf("%s had succeeded before the kill, yet was logged in to %d more times", name, got-logins[i])
			}
			if after[name]["attempts"] != float64(1) || after[name]["task_id"] != beforeStates[name]["task_id"] {
				t.Errorf("%s ran again: before %v, after %v", name, beforeStates[name], after[name])
			}
		}
		if after[name]["attempts"] != float64(1) {
			retried = append(retried, name)
			if beforeStates[name]["state"] != "RUNNING" {
				t.Errorf("%s was retried although it was not in flight at the kill: %v", name, beforeStates[name])
			}
		}
		content, _ := h.AuthorizedKeys(t)
		if c := strings.Count(content, keyBlob(t, newKP["public_key"])); c != 1 || len(strings.Fields(content)) != 3 {
			t.Errorf("%s authorized_keys after the rotation: %q", name, content)
		}
		if !h.KeyLoginWorks(t, newS) {
			t.Errorf("%s refuses the new key", name)
		}
	}
	sort.Strings(retried)
	t.Logf("servers in flight at the kill and retried: %v", retried)
}

var acceptedLine = regexp.MustCompile(`(?m)Accepted (password|publickey) for `)

// acceptedLogins counts the logins sshd accepted so far.
func acceptedLogins(t *testing.T, h *sshdtest.Host) int {
	return len(acceptedLine.FindAllString(h.Log(t), -1))
}

// TestRotationLoginRules: a rotation's tasks are admitted per server as its creator's associate
// would be (issue 13): a member may not have the service log in with the hosted key of a key
// pair she cannot see, so her rotation fails that server with KPS.6024 and touches nothing;
// the admin who owns the key pair rotates it, logging in with that hosted key.
func TestRotationLoginRules(t *testing.T) {
	t.Parallel()
	admin := setup(t)
	member := admin.addUser("rotating-member", "member")
	h := sshdtest.Start(t, sshdtest.Options{})
	admin.addHost("web", h, nil) // no stored credential: only the bound key pair's hosted key logs in
	own := admin.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "admins-own"}})["keypair"].(map[string]any)
	admin.must(200, "POST", "/keypairs/private-key/import", map[string]any{"keypair": map[string]any{"name": "admins-own",
		"key_protection": map[string]any{"private_key": own["private_key"], "encryption": map[string]any{"type": "default"}}}})
	bind := admin.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "admins-own",
		"server": map[string]any{"id": "web", "auth": map[string]any{"type": "password", "key": h.Password}}})["task_id"].(string)
	if st := admin.waitTask(bind); st != "SUCCESS_REPLACE" {
		t.Fatalf("bind ended %s", st)
	}
	next := member.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "next", "scope": "domain"}})["keypair"].(map[string]any)
	ownS, nextS := signer(t, own["private_key"].(string)), signer(t, next["private_key"].(string))
	body := map[string]any{"rotation": map[string]any{"keypair_name": "next", "servers": []string{"web"}, "private_key": next["private_key"]}}

	r := member.must(201, "POST", "/rotations", body)["rotation"].(map[string]any)
	done := member.waitRotation(r["id"].(string), "HALTED", "COMPLETED")
	if st := serverStates(done)["web"]; st["state"] != "FAILED" || st["error_code"] != "KPS.6024" || st["task_id"] != nil {
		t.Fatalf("member's rotation: %v", st)
	}
	exactlyOne(t, "web", h, ownS, nextS, "old")

	r = admin.must(201, "POST", "/rotations", body)["rotation"].(map[string]any)
	done = admin.waitRotation(r["id"].(string), "COMPLETED")
	if st := serverStates(done)["web"]; st["state"] != "SUCCEEDED" {
		t.Fatalf("admin's rotation: %v", st)
	}
	exactlyOne(t, "web", h, ownS, nextS, "new")
}
