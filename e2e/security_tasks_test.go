package e2e

// The attacks of docs/SECURITY.md §3 and §5 (issue 13) that go through tasks, run against the
// built binary, real sshd hosts and the hostile host of internal/hostilessh. Each reproduces an
// attack that succeeded before issue 13 (commit db21a14) and fails there.
//
// The limits are given as KPS_* environment variables rather than flags, so that a binary
// without them (the base commit) starts all the same and the test shows the attack itself.

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/openkps/kps/daemon"
	"github.com/openkps/kps/internal/hostilessh"
	"github.com/openkps/kps/internal/sshdtest"
)

const taskAttackAdminPassword = "task-attack-admin-password"

// startTaskAttackService runs the built binary on a fresh data directory with the extra
// environment and logs in as its admin.
func startTaskAttackService(t *testing.T, env ...string) (*service, *exec.Cmd) {
	t.Helper()
	base, cmd := startBinary(t, kpsBinary(t), append([]string{"KPS_DATA_DIR=" + t.TempDir(),
		"KPS_ADMIN_PASSWORD=" + taskAttackAdminPassword}, env...))
	s := &service{t: t, base: base}
	s.login(taskAttackAdminPassword)
	return s, cmd
}

// identity calls an identity route (/v3/...) with the service's token.
func (s *service) identity(status int, method, path string, body any) map[string]any {
	s.t.Helper()
	got, out := s.raw(method, path, body, map[string]string{"X-Auth-Token": s.token})
	if got != status {
		s.t.Fatalf("%s %s: %d %v, want %d", method, path, got, out, status)
	}
	return out
}

// scopedTo logs user in with a token scoped to the project (by ID).
func (s *service) scopedTo(user, password, projectID string) *service {
	s.t.Helper()
	body := map[string]any{"auth": map[string]any{
		"identity": map[string]any{"methods": []string{"password"}, "password": map[string]any{"user": map[string]any{
			"name": user, "domain": map[string]any{"name": "Default"}, "password": password}}},
		"scope": map[string]any{"project": map[string]any{"id": projectID}}}}
	b, _ := json.Marshal(body)
	resp, err := apiClient.Post(s.base+"/v3/auth/tokens", "application/json", strings.NewReader(string(b)))
	if err != nil {
		s.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		s.t.Fatalf("login of %s to %s: %d", user, projectID, resp.StatusCode)
	}
	return &service{t: s.t, base: s.base, token: resp.Header.Get("X-Subject-Token"), project: projectID}
}

// newMember creates a user of domain Default with the role on the admin's project and returns
// a client logged in as that user.
func (s *service) newMember(name, role string) *service {
	s.t.Helper()
	password := name + "-password-1"
	u := s.identity(201, "POST", "/v3/users", map[string]any{"user": map[string]any{"name": name, "password": password}})["user"].(map[string]any)
	s.identity(204, "PUT", "/v3/projects/"+s.project+"/users/"+str(u["id"])+"/roles/"+role, nil)
	return s.scopedTo(name, password, s.project)
}

// newProject creates a project of domain Default, makes the admin its admin and returns a
// client of the admin scoped to it.
func (s *service) newProject(name string) *service {
	s.t.Helper()
	p := s.identity(201, "POST", "/v3/projects", map[string]any{"project": map[string]any{"name": name}})["project"].(map[string]any)
	users := s.identity(200, "GET", "/v3/users?name=admin", nil)["users"].([]any)
	if len(users) != 1 {
		s.t.Fatalf("users named admin: %v", users)
	}
	s.identity(204, "PUT", "/v3/projects/"+str(p["id"])+"/users/"+str(users[0].(map[string]any)["id"])+"/roles/admin", nil)
	return s.scopedTo("admin", taskAttackAdminPassword, str(p["id"]))
}

// TestAttackFailedBindDeletesForeignKey (docs/SECURITY.md 3.1): a member imports the public key
// of a break-glass key that someone else put on a host and binds it with a wrong password. The
// bind fails at login (KPS.6603) and writes nothing; the admin's next routine RESET, and the
// unbind after it, must leave the break-glass key alone. Before issue 13 every failed bind
// since the last success counted as "maybe written", and the RESET deleted the key.
func TestAttackFailedBindDeletesForeignKey(t *testing.T) {
	t.Parallel()
	s, _ := startTaskAttackService(t, "KPS_WORKERS=2")
	h := sshdtest.Start(t, sshdtest.Options{})
	_, glassPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	glassSigner, _ := ssh.NewSignerFromKey(glassPriv)
	glass := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(glassSigner.PublicKey()))) + " break-glass@ops"
	original := "# break-glass access, do not remove\n" + glass + "\n"
	h.WriteAuthorizedKeys(t, original)
	s.addHost("web", h, map[string]any{"host_keys": []string{h.HostKey},
		"credential": map[string]any{"type": "password", "key": h.Password}})

	mallory := s.newMember("mallory", "member")
	mallory.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "glass", "public_key": glass}})
	bind := mallory.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "glass",
		"server": map[string]any{"id": "web", "auth": map[string]any{"type": "password", "key": "not-the-password"}}})
	id := str(bind["task_id"])
	if st := mallory.waitTask(id); st != "FAILED_REPLACE" {
		t.Fatalf("the bind with a wrong password ended %s", st)
	}
	if f := mallory.failedTask(id); f["task_error_code"] != "KPS.6603" {
		t.Fatalf("the bind with a wrong password: %v", f)
	}
	if got, _ := h.AuthorizedKeys(t); got != original {
		t.Fatalf("the failed bind changed authorized_keys: %q", got)
	}

	// The admin's routine RESET of the fleet key, then an unbind.
	ops := s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "ops"}})["keypair"].(map[string]any)
	reset := str(s.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "ops", "server": map[string]any{"id": "web"}})["task_id"])
	if st := s.waitTask(reset); st != "SUCCESS_RESET" {
		t.Fatalf("the admin's RESET ended %s: %v", st, s.failedTask(reset))
	}
	got, _ := h.AuthorizedKeys(t)
	if strings.Count(got, keyBlob(t, glass)) != 1 {
		t.Fatalf("the admin's RESET after a failed bind of the break-glass key removed it:\n%s", got)
	}
	if want := original + normalisedLine(t, ops["public_key"]) + "\n"; got != want {
		t.Fatalf("after the RESET authorized_keys is\n%q, want\n%q", got, want)
	}
	if !h.KeyLoginWorks(t, glassSigner) {
		t.Fatal("the break-glass key no longer logs in")
	}
	unbind := str(s.must(200, "POST", "/keypairs/disassociate", map[string]any{"server": map[string]any{"id": "web"}})["task_id"])
	if st := s.waitTask(unbind); st != "SUCCESS_UNBIND" {
		t.Fatalf("the unbind ended %s", st)
	}
	if got, _ := h.AuthorizedKeys(t); got != original {
		t.Fatalf("after the unbind authorized_keys is %q, want the original %q", got, original)
	}
}

// normalisedLine is the line the service writes for a public key: type, blob, comment.
func normalisedLine(t *testing.T, key any) string {
	t.Helper()
	f := strings.Fields(str(key))
	if len(f) < 2 {
		t.Fatalf("not a key: %v", key)
	}
	return strings.Join(f, " ")
}

// runningCount returns how many of the project's tasks are RUNNING.
func (s *service) runningCount() int {
	s.t.Helper()
	n := 0
	for _, it := range s.must(200, "GET", "/running-tasks?limit=1000", nil)["tasks"].([]any) {
		if strings.HasPrefix(str(it.(map[string]any)["operate_type"]), "RUNNING_") {
			n++
		}
	}
	return n
}

// TestAttackStarveOtherProjects (docs/SECURITY.md 5.1): project A points 16 servers at a host
// that accepts the login and never answers, holding all 16 workers for the task timeout (120
// s). Project B's bind on a real sshd must complete well before that. Then A fills its own
// queue: A is refused (429 KPS.6403), and B's next bind is still accepted. Before issue 13, B
// waited for A's tasks to time out, and A filled the service-wide queue (503 KPS.6502 for
// everyone).
func TestAttackStarveOtherProjects(t *testing.T) {
	t.Parallel()
	const workers, perProject, queue = 16, 30, 40
	s, _ := startTaskAttackService(t, "KPS_WORKERS="+strconv.Itoa(workers), "KPS_TASK_TIMEOUT=120s",
		"KPS_MAX_QUEUED="+strconv.Itoa(queue), "KPS_MAX_QUEUED_PER_PROJECT="+strconv.Itoa(perProject))
	stall := hostilessh.Start(t, hostilessh.Options{Behavior: hostilessh.Stall})
	a := s
	a.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "a"}})
	const servers = workers + queue + 4 // enough to fill the service-wide queue too
	for i := range servers {
		a.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"id": fmt.Sprintf("stall-%02d", i),
			"address": stall.Address, "port": stall.Port, "host_keys": []string{stall.HostKey}}})
	}
	bindA := func(i int) (int, map[string]any) {
		return a.call("POST", "/keypairs/associate", map[string]any{"keypair_name": "a", "server": map[string]any{
			"id": fmt.Sprintf("stall-%02d", i), "auth": map[string]any{"type": "password", "key": "x"}}})
	}
	for i := range workers {
		if st, out := bindA(i); st != 200 {
			t.Fatalf("A's bind %d: %d %v", i, st, out)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for a.runningCount() < workers {
		if time.Now().After(deadline) {
			t.Fatalf("A's %d tasks did not all start: %d running", workers, a.runningCount())
		}
		time.Sleep(100 * time.Millisecond)
	}

	b := s.newProject("local-1_b")
	h := sshdtest.Start(t, sshdtest.Options{})
	b.addHost("web", h, map[string]any{"host_keys": []string{h.HostKey}})
	kp := b.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "b"}})["keypair"].(map[string]any)
	bindB := func() (int, map[string]any) {
		return b.call("POST", "/keypairs/associate", map[string]any{"keypair_name": "b", "server": map[string]any{
			"id": "web", "auth": map[string]any{"type": "password", "key": h.Password}}})
	}
	start := time.Now()
	st, out := bindB()
	if st != 200 {
		t.Fatalf("B's bind while A's tasks stall: %d %v", st, out)
	}
	// Well before A's tasks time out: B must not wait for a worker A holds.
	const soon = 30 * time.Second
	for id := str(out["task_id"]); ; time.Sleep(100 * time.Millisecond) {
		status := str(b.must(200, "GET", "/tasks/"+id, nil)["task_status"])
		if status == "SUCCESS_REPLACE" {
			break
		}
		if strings.HasPrefix(status, "FAILED_") {
			t.Fatalf("B's bind failed: %v", b.failedTask(id))
		}
		if time.Since(start) > soon {
			t.Fatalf("B's bind is still %s after %s while A's %d tasks hold the workers (task timeout 120s)", status, soon, workers)
		}
	}
	t.Logf("B's bind completed in %s while A's %d tasks stalled", time.Since(start).Round(time.Millisecond), a.runningCount())
	if got, _ := h.AuthorizedKeys(t); !strings.Contains(got, keyBlob(t, kp["public_key"])) {
		t.Fatalf("B's key is not on B's host: %q", got)
	}

	// A fills its own queue: A is refused with its own limit, and B is not.
	refusedAt, refusal := -1, map[string]any(nil)
	for i := workers; i < servers; i++ {
		st, out := bindA(i)
		if st != 200 {
			refusedAt, refusal = i, out
			if st != http.StatusTooManyRequests || out["error_code"] != "KPS.6403" {
				t.Errorf("A's bind %d refused with %d %v, want 429 KPS.6403 (the project's own limit)", i, st, out)
			}
			break
		}
	}
	if refusedAt != perProject {
		t.Errorf("A was refused at its task %d (%v), want at %d (queued or running)", refusedAt, refusal, perProject)
	}
	unbind := str(b.must(200, "POST", "/keypairs/disassociate", map[string]any{"server": map[string]any{"id": "web",
		"auth": map[string]any{"type": "password", "key": h.Password}}})["task_id"])
	if status := b.waitTask(unbind); status != "SUCCESS_UNBIND" {
		t.Fatalf("B's unbind after A filled its queue: %s", status)
	}
	if st, out := bindB(); st != 200 {
		t.Fatalf("B's bind after A filled its queue: %d %v, want 200", st, out)
	}
}

// vmHWM returns the peak resident set size of a process, in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmHWM:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

// TestAttackHostOutputFlood (docs/SECURITY.md 5.2): 16 tasks at once against hosts that print
// without end — junk lines (hostilessh Flood), and an authorized_keys that never ends (31 MiB
// of hex) — fail with KPS.6610 saying why, and `kps serve` stays within 200 MB (its VmHWM,
// which includes the start-up's Argon2id hashing). Before issue 13 each such task kept up to
// 32 MiB of output, and copies of it, in memory: 8 of them took the service to 701 MB.
func TestAttackHostOutputFlood(t *testing.T) {
	t.Parallel()
	const tasks, bound = 16, 200 << 20
	s, cmd := startTaskAttackService(t, "KPS_WORKERS="+strconv.Itoa(tasks))
	hexFlood := []byte("begin authorized_keys\n")
	line := []byte(" 73 73 68 2d 65 64 32 35 35 31 39 20 41 41 41 41\n")
	for len(hexFlood) < 31<<20 {
		hexFlood = append(hexFlood, line...)
	}
	hosts := []*hostilessh.Server{
		hostilessh.Start(t, hostilessh.Options{Behavior: hostilessh.Flood}),
		hostilessh.Start(t, hostilessh.Options{Behavior: hostilessh.Fake, Output: hexFlood}),
	}
	s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "k"}})
	for i := range tasks {
		h := hosts[i%2]
		s.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"id": fmt.Sprintf("flood-%02d", i),
			"address": h.Address, "port": h.Port, "host_keys": []string{h.HostKey}}})
	}
	before := vmHWM(t, cmd.Process.Pid)
	var ids []string
	for i := range tasks {
		ids = append(ids, str(s.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "k", "server": map[string]any{
			"id": fmt.Sprintf("flood-%02d", i), "auth": map[string]any{"type": "password", "key": "x"}}})["task_id"]))
	}
	for i, id := range ids {
		if st := s.waitTask(id); st != "FAILED_REPLACE" {
			t.Fatalf("task %d against a flooding host ended %s", i, st)
		}
	}
	peak := vmHWM(t, cmd.Process.Pid)
	failed := map[string]map[string]any{}
	for _, it := range s.must(200, "GET", "/failed-tasks?limit=100", nil)["tasks"].([]any) {
		failed[str(it.(map[string]any)["task_id"])] = it.(map[string]any)
	}
	for i, id := range ids {
		f := failed[id]
		want := "more output than a task needs"
		if i%2 == 1 {
			want = "more than 4 MiB for ~/.ssh/authorized_keys"
		}
		if f["task_error_code"] != "KPS.6610" || !strings.Contains(str(f["task_error_msg"]), want) {
			t.Errorf("task %d: %v, want KPS.6610 saying %q", i, f, want)
		}
	}
	var sent int64
	for _, h := range hosts {
		sent += h.BytesSent()
	}
	t.Logf("kps serve VmHWM %.1f MiB before the tasks, %.1f MiB after %d tasks against flooding hosts (they sent %.1f MiB)",
		float64(before)/(1<<20), float64(peak)/(1<<20), tasks, float64(sent)/(1<<20))
	if peak > bound {
		t.Fatalf("kps serve peaked at %.1f MiB (VmHWM), over %d MiB", float64(peak)/(1<<20), bound>>20)
	}
}

// TestProjectLimits: the per-project limits answer with their KPS codes — a project's servers
// beyond --server-quota (403 KPS.6402), its tasks beyond --max-queued-per-project (429
// KPS.6403, with Retry-After) — and count nothing of another project's.
func TestProjectLimits(t *testing.T) {
	t.Parallel()
	s := setup(t, func(c *daemon.Config) { c.Workers, c.ServerQuota, c.MaxQueuedPerProject = 1, 2, 1 })
	stalled := silentListener(t)
	s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "k"}})
	for _, id := range []string{"a", "b"} {
		s.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"id": id, "address": "127.0.0.1", "port": stalled}})
	}
	s.wantError(403, "KPS.6402", "POST", "/servers", map[string]any{"server": map[string]any{"id": "c", "address": "127.0.0.1", "port": stalled}})
	s.wantError(409, "KPS.6306", "POST", "/servers", map[string]any{"server": map[string]any{"id": "a", "address": "127.0.0.1", "port": stalled}})
	bind := func(id string) map[string]any {
		return map[string]any{"keypair_name": "k", "server": map[string]any{"id": id, "auth": map[string]any{"type": "password", "key": "x"}}}
	}
	s.must(200, "POST", "/keypairs/associate", bind("a"))
	st, out := s.raw("POST", "/v3/"+s.project+"/keypairs/associate", bind("b"), map[string]string{"X-Auth-Token": s.token})
	if st != http.StatusTooManyRequests || out["error_code"] != "KPS.6403" {
		t.Fatalf("a second task of a project limited to one: %d %v", st, out)
	}
	resp, err := apiClient.Do(func() *http.Request {
		r, _ := http.NewRequest("POST", s.base+"/v3/"+s.project+"/keypairs/associate", strings.NewReader(`{"keypair_name":"k","server":{"id":"b","auth":{"type":"password","key":"x"}}}`))
		r.Header.Set("X-Auth-Token", s.token)
		r.Header.Set("Content-Type", "application/json")
		return r
	}())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("429 without Retry-After: %d %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// A batch refuses the item over the limit with the same code.
	batch := s.must(200, "POST", "/keypairs/batch-associate", map[string]any{"batch_keypairs": []any{bind("b")}})
	if it := batch["tasks"].([]any)[0].(map[string]any); it["status"] != "FAILED" || it["error_code"] != "KPS.6403" {
		t.Fatalf("batch item over the project's limit: %v", it)
	}
}
