package e2e

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	_ "modernc.org/sqlite"

	"github.com/openkps/kps/internal/openapitest"
	"github.com/openkps/kps/internal/pgtest"
	"github.com/openkps/kps/internal/sshdtest"
)

// The crash rounds of issue 9 item 1: the built `kps serve` binary, real sshd hosts and a few
// faulty ones, a load of bind and unbind tasks through the API, SIGKILL at a random moment,
// restart, and the invariants checked after every round:
//
//   - every task accepted with 200 is in the database, and after recovery every task ends
//     SUCCESS or FAILED with a KPS code, once: a status seen terminal never changes again;
//     nothing stays READY or RUNNING;
//   - on a healthy host a task only fails because it was interrupted (KPS.6609); on a faulty
//     host it fails with the fault's code;
//   - no host ever ran two tasks at once: each host's sshd runs every command through a
//     ForceCommand wrapper that appends "start"/"end" with the SSH connection to a log on the
//     host (one task is one SSH connection), and no two connections' spans may intersect;
//   - every authorized_keys is exactly the unrelated lines it started with, byte for byte,
//     plus the key of the last successful bind (once), or nothing after an unbind;
//   - on the hosts where the login user may use sudo, binds also disable password login:
//     the daemon's configuration is the one the last successful task implies (the drop-in or
//     the marked block of the main file present once after a bind with disable_password,
//     absent after an unbind), never partial, with no temporary file left over; sshd -t
//     accepts it, sshd -T and a real login show the daemon applies it;
//   - the server's binding is the one the last successful task implies;
//   - the failed-task list, paged, holds every FAILED task once with its code, and its total
//     is their number.
//
// The rounds run on SQLite and, when KPS_TEST_POSTGRES is set, on PostgreSQL (a fresh schema);
// KPS_CHAOS_ENGINE=sqlite|postgres picks one. The default run is short; `make chaos` sets
// KPS_CHAOS_ROUNDS, KPS_CHAOS_TASKS and KPS_CHAOS_HOSTS for the long one.

// sessionWrapper is the ForceCommand of the chaos hosts. It runs the command as sshd would and
// records the session's span in ~/.sessions.log, keyed by the client port and the sshd process
// that serves the connection, so that a reused port is not mistaken for the same connection.
// A session that changed the daemon's configuration (the script that runs sshd -t) is logged
// in ~/.config-sessions.log and holds its exit status back for 0.4 s: the change is done but
// the task not yet finished, a window the kills should often hit.
const sessionWrapper = `#!/bin/sh
set -- $SSH_CONNECTION
conn="$2/$(awk '/^PPid:/ { print $2 }' /proc/$PPID/status)"
echo "start $conn" >> "$HOME/.sessions.log"
/bin/sh -c "$SSH_ORIGINAL_COMMAND"
rc=$?
case $SSH_ORIGINAL_COMMAND in
*'sshd -t -f'*)
	echo "$conn" >> "$HOME/.config-sessions.log"
	sleep 0.4 ;;
esac
echo "end $conn" >> "$HOME/.sessions.log"
exit $rc
`

type chaosSettings struct {
	rounds, tasks, hosts int
	roundMax             time.Duration // longest load phase before the kill
	taskTimeout          time.Duration
}

func chaosFromEnv(t *testing.T) chaosSettings {
	c := chaosSettings{rounds: 4, tasks: 400, hosts: 6, roundMax: 5 * time.Second, taskTimeout: 20 * time.Second}
	for name, p := range map[string]*int{"KPS_CHAOS_ROUNDS": &c.rounds, "KPS_CHAOS_TASKS": &c.tasks, "KPS_CHAOS_HOSTS": &c.hosts} {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				t.Fatalf("%s=%q: want a positive number", name, v)
			}
			*p = n
		}
	}
	if c.rounds > 4 || c.hosts > 6 {
		c.roundMax = 15 * time.Second
	}
	return c
}

type chaosHost struct {
	id        string
	kind      string // "ok", "closed", "stall" or "badpw"
	h         *sshdtest.Host
	password  string // what the test hands the service as the login password
	unrelated string // authorized_keys before the first task, to be kept byte for byte
	// priv: the login user may use sudo, and binds may disable password login. The service
	// then logs in with its own key (a password would stop working).
	priv       bool
	mainConfig string // the sshd_config the host started with
}

type chaosTask struct {
	id, server, op, keypair string
	dp                      bool  // disable_password
	auth                    bool  // the caller's password was given (REPLACE, UNBIND with auth)
	order                   int64 // registration order; per server it is creation order
	final                   string
	code                    string
}

type chaosRun struct {
	t        *testing.T
	cfg      chaosSettings
	engine   string // "sqlite" or "postgres"
	dsn      string // KPS_DATABASE for postgres
	bin      string
	dataDir  string
	base     string
	cmd      *exec.Cmd
	token    string
	project  string
	client   *http.Client
	hosts    []*chaosHost
	keypairs map[string]string // name → public key

	mu      sync.Mutex
	tasks   map[string]*chaosTask
	order   atomic.Int64
	quota   atomic.Int64
	refused map[string]int // KPS code → count of refused submissions
	// figures for the report
	kills, adopted, restarts int
}

func TestChaosCrashRounds(t *testing.T) {
	cfg := chaosFromEnv(t)
	if testing.Short() && os.Getenv("KPS_CHAOS_ROUNDS") == "" {
		t.Skip("crash rounds skipped in -short")
	}
	t.Parallel()
	engines := []string{"sqlite"}
	if os.Getenv(pgtest.Env) != "" {
		engines = append(engines, "postgres")
	}
	switch e := os.Getenv("KPS_CHAOS_ENGINE"); e {
	case "":
	case "sqlite", "postgres", "both":
		if e != "both" {
			engines = []string{e}
		}
		if e != "sqlite" && os.Getenv(pgtest.Env) == "" {
			t.Fatalf("KPS_CHAOS_ENGINE=%s needs %s (a PostgreSQL server the test may create a schema on)", e, pgtest.Env)
		}
	default:
		t.Fatalf("KPS_CHAOS_ENGINE=%q: want sqlite, postgres or both", e)
	}
	bin := kpsBinary(t)
	long := os.Getenv("KPS_CHAOS_ROUNDS") != ""
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			// The short forms run side by side; the long ones one after the other, so that
			// each has the machine to itself.
			if !long {
				t.Parallel()
			}
			chaosRounds(t, cfg, engine, bin)
		})
	}
}

func chaosRounds(t *testing.T, cfg chaosSettings, engine, bin string) {
	c := &chaosRun{t: t, cfg: cfg, engine: engine, bin: bin, dataDir: t.TempDir(), tasks: map[string]*chaosTask{},
		keypairs: map[string]string{}, refused: map[string]int{},
		client: &http.Client{Transport: openapitest.NewTransport(nil), Timeout: 20 * time.Second}}
	if engine == "postgres" {
		c.dsn = pgtest.Schema(t)
	}
	// The hosts' users must reach the wrapper: t.TempDir's parents are private.
	dir, err := os.MkdirTemp("", "kps-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	wrapper := filepath.Join(dir, "session-wrapper")
	if err := os.WriteFile(wrapper, []byte(sessionWrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c.start()

	// The service logs in to half of the healthy hosts with a key of its own (service
	// credential of type keypair), to the others with the password. The key hosts let their
	// user sudo, so that binds may disable password login; every other one of them has no
	// drop-in Include, so that the service edits the main file there (§6.5 steps 2 and 3).
	svcPub, svcPriv := chaosServiceKey(t)
	var hostsWG sync.WaitGroup
	hs := make([]*sshdtest.Host, cfg.hosts+1)
	for i := range hs {
		opt := sshdtest.Options{Config: "ForceCommand " + wrapper + "\n"}
		if i < cfg.hosts && i%2 == 1 {
			opt.Sudo, opt.NoInclude = true, i%4 == 3
		}
		hostsWG.Go(func() { hs[i] = sshdtest.Start(t, opt) })
	}
	hostsWG.Wait()
	for i, h := range hs[:cfg.hosts] {
		ch := &chaosHost{id: fmt.Sprintf("h%02d", i), kind: "ok", h: h, password: h.Password, priv: i%2 == 1}
		ch.unrelated = "# keys managed by hand\n" +
			"no-port-forwarding,no-X11-forwarding " + svcPub + " kps-service@chaos\n" +
			"\n" + "this line is not a key, and stays\n" +
			"command=\"/bin/true\" " + ed25519Line(t, "other@chaos") + "\n"
		h.WriteAuthorizedKeys(t, ch.unrelated)
		main, err := os.ReadFile(h.ConfigPath)
		if err != nil {
			t.Fatal(err)
		}
		ch.mainConfig = string(main)
		cred := map[string]any{"type": "password", "key": h.Password}
		if ch.priv {
			cred = map[string]any{"type": "keypair", "key": svcPriv}
		}
		c.addServer(ch, map[string]any{"address": h.Address, "port": h.Port, "user": h.User, "credential": cred})
	}
	// Faulty hosts: nobody listens, a listener that never speaks, a real sshd that refuses the
	// password the service has.
	bad := hs[cfg.hosts]
	c.addServer(&chaosHost{id: "closed", kind: "closed", password: "x"}, map[string]any{"address": "127.0.0.1", "port": closedPort(t), "credential": map[string]any{"type": "password", "key": "x"}})
	c.addServer(&chaosHost{id: "stall", kind: "stall", password: "x"}, map[string]any{"address": "127.0.0.1", "port": silentListener(t), "credential": map[string]any{"type": "password", "key": "x"}})
	c.addServer(&chaosHost{id: "badpw", kind: "badpw", h: bad, password: "wrong-" + bad.Password}, map[string]any{"address": bad.Address, "port": bad.Port, "user": bad.User, "credential": map[string]any{"type": "password", "key": "wrong-" + bad.Password}})
	for i := range 6 {
		name := fmt.Sprintf("kp%d", i)
		_, out, err := c.do("POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": name}})
		if err != nil || out["keypair"] == nil {
			t.Fatalf("creating key pair %s: %v %v", name, out, err)
		}
		c.keypairs[name] = out["keypair"].(map[string]any)["public_key"].(string)
	}

	c.quota.Store(int64(cfg.tasks))
	perRound := int64(cfg.tasks / cfg.rounds)
	for round := 1; round <= cfg.rounds; round++ {
		left := c.quota.Load() - (int64(cfg.rounds-round) * perRound)
		c.load(round, left)
		c.reconcile()
		c.start()
		c.drain()
		c.check(fmt.Sprintf("round %d", round))
		if t.Failed() {
			return
		}
		c.mu.Lock()
		t.Logf("round %d: %d tasks so far, %d found only in the database", round, len(c.tasks), c.adopted)
		c.mu.Unlock()
	}
	// Settle: one more bind on every healthy host must leave exactly the unrelated lines and its
	// key, whatever interrupted tasks left behind; on the sudo hosts it disables password login,
	// and an unbind after it must turn it on again and leave the daemon's configuration as it
	// was at the start.
	var settle sync.WaitGroup
	for _, ch := range c.hosts[:cfg.hosts] {
		settle.Go(func() {
			code, out, err := c.do("POST", "/keypairs/associate", map[string]any{"keypair_name": "kp0", "server": map[string]any{"id": ch.id, "disable_password": ch.priv}})
			if err != nil || code != 200 {
				t.Errorf("settling %s: %d %v %v", ch.id, code, out, err)
				return
			}
			c.register(&chaosTask{id: out["task_id"].(string), server: ch.id, op: "RESET", keypair: "kp0", dp: ch.priv})
			if !ch.priv {
				return
			}
			if st := c.wait(out["task_id"].(string)); st != "SUCCESS_RESET" {
				t.Errorf("settling bind on %s ended %s", ch.id, st)
				return
			}
			if ch.h.PasswordLoginWorks(t) {
				t.Errorf("settling bind on %s with disable_password: password login still works", ch.id)
			}
			code, out, err = c.do("POST", "/keypairs/disassociate", map[string]any{"server": map[string]any{"id": ch.id}})
			if err != nil || code != 200 {
				t.Errorf("settling unbind of %s: %d %v %v", ch.id, code, out, err)
				return
			}
			c.register(&chaosTask{id: out["task_id"].(string), server: ch.id, op: "UNBIND"})
		})
	}
	settle.Wait()
	c.drain()
	c.check("after the settling tasks")
	c.mu.Lock()
	defer c.mu.Unlock()
	byStatus := map[string]int{}
	dp := 0
	for _, tk := range c.tasks {
		k := tk.final + " " + tk.code
		if tk.dp {
			dp++
			k = "disable_password " + k
		}
		byStatus[k]++
	}
	t.Logf("chaos on %s: %d rounds, %d hosts (+3 faulty, %d with sudo), %d tasks (%d with disable_password), %d SIGKILLs, %d tasks found only in the database after a kill, refused submissions %v, outcomes %v",
		c.engine, cfg.rounds, cfg.hosts, cfg.hosts/2, len(c.tasks), dp, c.kills, c.adopted, c.refused, byStatus)
}

// wait follows a task until it ends and returns its status ("" if the service is gone).
func (c *chaosRun) wait(id string) string {
	deadline := time.Now().Add(c.cfg.taskTimeout*2 + 10*time.Second)
	for time.Now().Before(deadline) {
		code, out, err := c.do("GET", "/tasks/"+id, nil)
		if err != nil || code != 200 {
			return ""
		}
		if st := out["task_status"].(string); strings.HasPrefix(st, "SUCCESS_") || strings.HasPrefix(st, "FAILED_") {
			return st
		}
		time.Sleep(25 * time.Millisecond)
	}
	return ""
}

// chaosServiceKey makes the key the service logs in with on half the hosts.
func chaosServiceKey(t *testing.T) (pub, priv string) {
	p, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := ssh.NewPublicKey(p)
	block, err := ssh.MarshalPrivateKey(k, "")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))), string(pem.EncodeToMemory(block))
}

// start runs the binary on the data directory and logs in.
func (c *chaosRun) start() {
	c.t.Helper()
	env := []string{"KPS_DATA_DIR=" + c.dataDir, "KPS_ADMIN_PASSWORD=chaos-test-password"}
	lease := "5s"
	if c.dsn != "" {
		// Not a sole instance: the killed process's RUNNING tasks fail once their lease
		// expires, so a shorter lease (as in the replica tests) keeps the rounds short.
		env, lease = append(env, "KPS_DATABASE="+c.dsn), "3s"
	}
	c.base, c.cmd = startBinary(c.t, c.bin, env,
		"--workers", "8", "--lease", lease, "--task-timeout", c.cfg.taskTimeout.String())
	s := &service{t: c.t, base: c.base}
	s.login("chaos-test-password")
	c.token, c.project = s.token, s.project
	c.restarts++
}

func (c *chaosRun) addServer(ch *chaosHost, fields map[string]any) {
	c.t.Helper()
	srv := map[string]any{"id": ch.id, "name": ch.id}
	if ch.h != nil {
		srv["sshd_config"] = ch.h.ConfigPath
	}
	for k, v := range fields {
		srv[k] = v
	}
	if code, out, err := c.do("POST", "/servers", map[string]any{"server": srv}); err != nil || code != 201 {
		c.t.Fatalf("adding server %s: %d %v %v", ch.id, code, out, err)
	}
	c.hosts = append(c.hosts, ch)
}

// do sends one request to the current process; an error means the process is gone.
func (c *chaosRun) do(method, path string, body any) (int, map[string]any, error) {
	var rd *bytes.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, c.base+"/v3/"+c.project+path, rd)
	req.Header.Set("X-Auth-Token", c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil && resp.StatusCode != 204 {
		return 0, nil, err
	}
	if resp.StatusCode >= 500 && resp.StatusCode != 503 {
		c.t.Errorf("%s %s: %d %v", method, path, resp.StatusCode, out)
	}
	return resp.StatusCode, out, nil
}

func (c *chaosRun) register(tk *chaosTask) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.tasks[tk.id]; ok {
		c.t.Errorf("task ID %s returned twice", tk.id)
		return
	}
	tk.order = c.order.Add(1)
	c.tasks[tk.id] = tk
}

func (c *chaosRun) refuse(code string) {
	c.mu.Lock()
	c.refused[code]++
	c.mu.Unlock()
}

// load submits tasks from one goroutine per host until the process is killed at a random
// moment or the round's quota is spent, then kills it.
func (c *chaosRun) load(round int, quota int64) {
	var roundQuota atomic.Int64
	roundQuota.Store(quota)
	dead := make(chan struct{})
	var wg sync.WaitGroup
	for i, ch := range c.hosts {
		wg.Go(func() {
			rng := mrand.New(mrand.NewPCG(uint64(round), uint64(i)))
			for roundQuota.Add(-1) >= 0 {
				c.quota.Add(-1)
				if !c.submit(rng, ch, dead) {
					return
				}
			}
		})
	}
	// At a random moment in the last two thirds of the load phase.
	killAt := c.cfg.roundMax/3 + time.Duration(mrand.Int64N(int64(c.cfg.roundMax*2/3)))
	allDone := make(chan struct{})
	go func() { wg.Wait(); close(allDone) }()
	select {
	case <-time.After(killAt):
	case <-allDone:
	}
	c.cmd.Process.Signal(syscall.SIGKILL)
	c.cmd.Wait()
	close(dead)
	c.kills++
	wg.Wait()
}

// submit sends one random bind or unbind for ch and follows the task until it ends or the
// process dies; false means the process died.
func (c *chaosRun) submit(rng *mrand.Rand, ch *chaosHost, dead chan struct{}) bool {
	kp := fmt.Sprintf("kp%d", rng.IntN(len(c.keypairs)))
	auth := map[string]any{"type": "password", "key": ch.password}
	var ids []string
	r := rng.Float64()
	var code int
	var out map[string]any
	var err error
	switch {
	case r < 0.35:
		dp := chaosDisable(rng, ch)
		code, out, err = c.do("POST", "/keypairs/associate", map[string]any{"keypair_name": kp, "server": map[string]any{"id": ch.id, "disable_password": dp}})
		if code == 200 {
			c.register(&chaosTask{id: out["task_id"].(string), server: ch.id, op: "RESET", keypair: kp, dp: dp})
		}
	case r < 0.55:
		dp := chaosDisable(rng, ch)
		code, out, err = c.do("POST", "/keypairs/associate", map[string]any{"keypair_name": kp, "server": map[string]any{"id": ch.id, "auth": auth, "disable_password": dp}})
		if code == 200 {
			c.register(&chaosTask{id: out["task_id"].(string), server: ch.id, op: "REPLACE", keypair: kp, dp: dp, auth: true})
		}
	case r < 0.7:
		other := c.hosts[rng.IntN(len(c.hosts))]
		dps := []bool{chaosDisable(rng, ch), chaosDisable(rng, other)}
		items := []any{map[string]any{"keypair_name": kp, "server": map[string]any{"id": ch.id, "disable_password": dps[0]}}}
		if other != ch {
			items = append(items, map[string]any{"keypair_name": kp, "server": map[string]any{"id": other.id, "disable_password": dps[1],
				"auth": map[string]any{"type": "password", "key": other.password}}})
		}
		code, out, err = c.do("POST", "/keypairs/batch-associate", map[string]any{"batch_keypairs": items})
		if code == 200 {
			for j, it := range out["tasks"].([]any) {
				m := it.(map[string]any)
				if m["status"] == "SUCCESS" {
					tk := &chaosTask{id: m["task_id"].(string), server: ch.id, op: "RESET", keypair: kp, dp: dps[0]}
					if j == 1 {
						tk.server, tk.op, tk.dp, tk.auth = other.id, "REPLACE", dps[1], true
					}
					c.register(tk)
					if tk.server == ch.id {
						ids = append(ids, tk.id)
					}
				} else {
					c.refuse(str(m["error_code"]))
				}
			}
			code = 0 // handled
		}
	default:
		body := map[string]any{"server": map[string]any{"id": ch.id}}
		withAuth := rng.IntN(3) == 0
		if withAuth {
			body["server"].(map[string]any)["auth"] = auth
		}
		code, out, err = c.do("POST", "/keypairs/disassociate", body)
		if code == 200 {
			c.register(&chaosTask{id: out["task_id"].(string), server: ch.id, op: "UNBIND", auth: withAuth})
		}
	}
	if err != nil {
		return false
	}
	switch {
	case code == 200:
		ids = append(ids, out["task_id"].(string))
	case code == 0:
	case code == 409 || code == 503:
		c.refuse(str(out["error_code"]))
		time.Sleep(20 * time.Millisecond) // the host is busy; let its task move
	default:
		c.t.Errorf("submitting for %s: %d %v", ch.id, code, out)
		return false
	}
	for _, id := range ids {
		for {
			select {
			case <-dead:
				return false
			default:
			}
			code, out, err := c.do("GET", "/tasks/"+id, nil)
			if err != nil {
				return false
			}
			if code != 200 {
				c.t.Errorf("task %s: %d %v", id, code, out)
				return false
			}
			if st := out["task_status"].(string); strings.HasPrefix(st, "SUCCESS_") || strings.HasPrefix(st, "FAILED_") {
				break
			}
			time.Sleep(25 * time.Millisecond)
		}
	}
	return true
}

// chaosDisable draws disable_password for a bind on ch: half the binds on the sudo hosts, a
// few on the other healthy hosts (which must refuse them with KPS.6607 before any change).
func chaosDisable(rng *mrand.Rand, ch *chaosHost) bool {
	switch {
	case ch.priv:
		return rng.IntN(2) == 0
	case ch.kind == "ok":
		return rng.IntN(20) == 0
	}
	return false
}

// reconcile reads the database of the killed process (the SQLite file, or the PostgreSQL schema): every task accepted with 200 must be
// there, and a task whose submission the kill interrupted (no answer reached the client) is
// adopted, so that the checks know every task.
func (c *chaosRun) reconcile() {
	c.t.Helper()
	driver, source, query := "sqlite", "file:"+filepath.Join(c.dataDir, "kps.db")+"?_pragma=busy_timeout(5000)",
		`SELECT id, server_id, operation, keypair_name, disable_password, caller_auth FROM tasks WHERE project_id = ? ORDER BY seq`
	if c.engine == "postgres" {
		driver, source, query = "pgx", c.dsn, strings.Replace(query, "?", "$1", 1)
	}
	db, err := sql.Open(driver, source)
	if err != nil {
		c.t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(query, c.project)
	if err != nil {
		c.t.Fatal(err)
	}
	defer rows.Close()
	seen := map[string]bool{}
	for rows.Next() {
		var id, server, op, kp string
		var dp, auth bool
		if err := rows.Scan(&id, &server, &op, &kp, &dp, &auth); err != nil {
			c.t.Fatal(err)
		}
		seen[id] = true
		c.mu.Lock()
		_, known := c.tasks[id]
		c.mu.Unlock()
		if !known {
			if op == "UNBIND" {
				kp = ""
			}
			c.register(&chaosTask{id: id, server: server, op: op, keypair: kp, dp: dp, auth: auth})
			c.mu.Lock()
			c.adopted++
			c.mu.Unlock()
		}
	}
	if err := rows.Err(); err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.tasks {
		if !seen[id] {
			c.t.Errorf("task %s was accepted with 200 but is not in the database after SIGKILL", id)
		}
	}
}

// drain waits until every task has ended.
func (c *chaosRun) drain() {
	c.t.Helper()
	deadline := time.Now().Add(c.cfg.taskTimeout*4 + 30*time.Second)
	for {
		code, out, err := c.do("GET", "/running-tasks?limit=1", nil)
		if err != nil || code != 200 {
			c.t.Fatalf("running tasks: %d %v %v", code, out, err)
		}
		if out["total"] == float64(0) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("tasks still READY or RUNNING after recovery: %v", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var chaosCode = regexp.MustCompile(`^KPS\.\d{4}$`)

// check verifies the invariants on the idle, restarted service.
func (c *chaosRun) check(when string) {
	t := c.t
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()

	// The failed-task list, paged, against the task records.
	listed := map[string]map[string]any{}
	total := -1
	for offset := 0; ; offset += 50 {
		code, out, err := c.do("GET", fmt.Sprintf("/failed-tasks?limit=50&offset=%d", offset), nil)
		if err != nil || code != 200 {
			t.Fatalf("%s: failed tasks: %d %v %v", when, code, out, err)
		}
		n := int(out["total"].(float64))
		if total >= 0 && n != total {
			t.Errorf("%s: failed-task total changed from %d to %d while paging an idle service", when, total, n)
		}
		total = n
		items := out["tasks"].([]any)
		for _, it := range items {
			m := it.(map[string]any)
			id := m["task_id"].(string)
			if listed[id] != nil {
				t.Errorf("%s: failed task %s listed twice", when, id)
			}
			listed[id] = m
		}
		if len(items) < 50 {
			break
		}
	}
	if total != len(listed) {
		t.Errorf("%s: failed-task total %d, %d listed", when, total, len(listed))
	}

	failed := 0
	for _, tk := range c.tasks {
		code, out, err := c.do("GET", "/tasks/"+tk.id, nil)
		if err != nil || code != 200 {
			t.Fatalf("%s: task %s: %d %v %v", when, tk.id, code, out, err)
		}
		st := out["task_status"].(string)
		if out["server_id"] != tk.server || !strings.HasSuffix(st, "_"+tk.op) {
			t.Errorf("%s: task %s is %v, registered as %s on %s", when, tk.id, out, tk.op, tk.server)
		}
		phase := strings.TrimSuffix(st, "_"+tk.op)
		if phase != "SUCCESS" && phase != "FAILED" {
			t.Errorf("%s: task %s is %s after recovery", when, tk.id, st)
			continue
		}
		code2 := ""
		if phase == "FAILED" {
			failed++
			m := listed[tk.id]
			if m == nil {
				t.Errorf("%s: failed task %s is not in the failed-task list", when, tk.id)
				continue
			}
			code2, _ = m["task_error_code"].(string)
			if !chaosCode.MatchString(code2) || m["task_error_msg"] == "" || m["operate_type"] != "FAILED_"+tk.op || m["server_id"] != tk.server {
				t.Errorf("%s: failed task entry %v", when, m)
			}
		}
		if tk.final != "" && (tk.final != st || tk.code != code2) {
			t.Errorf("%s: task %s ended %s %s, and now is %s %s", when, tk.id, tk.final, tk.code, st, code2)
		}
		tk.final, tk.code = st, code2
	}
	if failed != len(listed) {
		t.Errorf("%s: %d tasks FAILED, the failed-task list holds %d", when, failed, len(listed))
	}

	byServer := map[string][]*chaosTask{}
	for _, tk := range c.tasks {
		byServer[tk.server] = append(byServer[tk.server], tk)
	}
	for _, ch := range c.hosts {
		ts := byServer[ch.id]
		slices.SortFunc(ts, func(a, b *chaosTask) int { return int(a.order - b.order) })
		// pw is what password login may be on a sudo host after the tasks so far: a
		// successful bind with disable_password turns it off, a successful unbind on; an
		// interrupted one may or may not have.
		pw := map[bool]bool{true: true} // password login on?
		var last *chaosTask
		for _, tk := range ts {
			switch {
			case strings.HasPrefix(tk.final, "SUCCESS_"):
				if ch.kind != "ok" {
					t.Errorf("%s: task %s on faulty host %s succeeded", when, tk.id, ch.id)
				}
				if tk.dp && !ch.priv {
					t.Errorf("%s: task %s disabled password login on %s, whose user may not sudo", when, tk.id, ch.id)
				}
				last = tk
				switch {
				case tk.op == "UNBIND":
					pw = map[bool]bool{true: true}
				case tk.dp:
					pw = map[bool]bool{false: true}
				}
			case tk.code == "KPS.6609":
				switch {
				case tk.op == "UNBIND":
					pw[true] = true
				case tk.dp:
					pw[false] = true
				}
			case ch.kind == "ok" && tk.code == "KPS.6607" && tk.dp && !ch.priv:
				// No privileges to change the daemon: refused before any change.
			case ch.kind == "ok" && tk.code == "KPS.6603" && tk.auth && ch.priv && pw[false]:
				// The caller's password, while password login may be off.
			case ch.kind == "ok":
				t.Errorf("%s: task %s on healthy host %s failed with %s: %v", when, tk.id, ch.id, tk.code, listed[tk.id])
			case !slices.Contains(map[string][]string{"closed": {"KPS.6601"}, "stall": {"KPS.6602"}, "badpw": {"KPS.6603"}}[ch.kind], tk.code):
				t.Errorf("%s: task %s on %s failed with %s: %v", when, tk.id, ch.id, tk.code, listed[tk.id])
			}
		}
		if ch.kind != "ok" {
			continue
		}
		var hist []string
		for _, tk := range ts {
			h := fmt.Sprintf("%s %s %s %s", tk.op, tk.keypair, tk.final, tk.code)
			if tk.dp {
				h += " disable_password"
			}
			hist = append(hist, h)
		}
		// The last successful task decides the file. A task interrupted after it (KPS.6609) may
		// or may not have written: then the key lines may be any of the keys in play, each once.
		want, bound := ch.unrelated, ""
		lastIdx := slices.Index(ts, last)
		allowed := map[string]bool{}
		if last != nil && last.op != "UNBIND" {
			want += strings.TrimSpace(c.keypairs[last.keypair]) + "\n"
			bound = last.keypair
			allowed[strings.TrimSpace(c.keypairs[last.keypair])] = true
		}
		unsettled := false
		for _, tk := range ts[lastIdx+1:] {
			if tk.code != "KPS.6609" {
				continue // refused before any write
			}
			unsettled = true
			if tk.op != "UNBIND" {
				allowed[strings.TrimSpace(c.keypairs[tk.keypair])] = true
			}
		}
		got, _ := ch.h.AuthorizedKeys(t)
		ok := got == want
		if !ok && unsettled && strings.HasPrefix(got, ch.unrelated) {
			ok = true
			seen := map[string]bool{}
			for _, l := range strings.Split(strings.TrimSuffix(got[len(ch.unrelated):], "\n"), "\n") {
				if l == "" && len(got) == len(ch.unrelated) {
					break
				}
				if !allowed[l] || seen[l] {
					ok = false
				}
				seen[l] = true
			}
		}
		if !ok {
			t.Errorf("%s: %s authorized_keys after tasks %q:\n got %q\nwant %q", when, ch.id, hist, got, want)
		}
		code, out, err := c.do("GET", "/servers/"+ch.id, nil)
		if err != nil || code != 200 {
			t.Fatalf("%s: server %s: %d %v %v", when, ch.id, code, out, err)
		}
		srv := out["server"].(map[string]any)
		if kp := srv["keypair_name"]; kp != bound {
			t.Errorf("%s: server %s is bound to %q, the last successful task implies %q", when, ch.id, kp, bound)
		}
		if ch.priv {
			// The configuration sessions must be recognised (else the window above is gone).
			b, _ := os.ReadFile(filepath.Join(ch.h.Home, ".config-sessions.log"))
			n := 0
			for _, tk := range ts {
				if tk.dp && strings.HasPrefix(tk.final, "SUCCESS_") {
					n++
				}
			}
			if got := strings.Count(string(b), "\n"); got < n {
				t.Errorf("%s: %s: %d configuration sessions logged, %d successful binds with disable_password", when, ch.id, got, n)
			}
		}
		on := c.checkDaemon(when, ch, hist)
		if !pw[on] {
			t.Errorf("%s: %s: password login on=%v, the tasks imply %v: %q", when, ch.id, on, pw, hist)
		}
		// After a successful bind with disable_password the server says so (an unbind then
		// restores; one after a merely interrupted bind restores too, see pw above).
		if last != nil && last.dp && !unsettled && srv["password_disabled"] != true {
			t.Errorf("%s: %s: bound with disable_password, but the server says password_disabled=%v: %q", when, ch.id, srv["password_disabled"], hist)
		}
		if srv["password_disabled"] == true && bound == "" {
			t.Errorf("%s: %s: unbound, yet password_disabled: %q", when, ch.id, hist)
		}
		c.checkOverlap(when, ch, ts)
	}
}

// kpsDropIn is what the service writes as the drop-in (kps-v3-api.md §6.5 step 2, OpenSSH 8.7
// or later).
const kpsDropIn = "# Managed by KPS. Removed when the key pair is unbound.\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"

// kpsMainDisabled is main with password login disabled by the main file edit of §6.5 step 3:
// the marked block first, the global password keywords commented out.
func kpsMainDisabled(main string) string {
	var b strings.Builder
	b.WriteString("# BEGIN KPS\n" + kpsDropIn + "# END KPS\n")
	for _, l := range strings.SplitAfter(main, "\n") {
		kw, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(l)), " ")
		if kw == "passwordauthentication" || kw == "kbdinteractiveauthentication" || kw == "challengeresponseauthentication" {
			b.WriteString("#KPS-disabled: ")
		}
		b.WriteString(l)
	}
	return b.String()
}

// checkDaemon checks a healthy host's sshd configuration and daemon and returns whether
// password login is on. The main file is the original or (without a drop-in Include) the
// original with the KPS edit; the drop-in directory holds nothing or exactly the KPS drop-in;
// no temporary file or backup is left beside either; sshd -t accepts the configuration and
// sshd -T and a real password login agree with what the files say.
func (c *chaosRun) checkDaemon(when string, ch *chaosHost, hist []string) (on bool) {
	t := c.t
	h := ch.h
	fail := func(format string, args ...any) {
		t.Errorf("%s: %s: %s after tasks %q", when, ch.id, fmt.Sprintf(format, args...), hist)
	}
	main, err := os.ReadFile(h.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	off := false
	switch string(main) {
	case ch.mainConfig:
	case kpsMainDisabled(ch.mainConfig):
		off = true
		if strings.HasPrefix(ch.mainConfig, "Include ") {
			fail("the main file was edited although a drop-in directory is included")
		}
	default:
		fail("sshd_config is neither the original nor the original with the KPS block:\n%s", main)
	}
	if fi, err := os.Stat(h.ConfigPath); err != nil || fi.Mode().Perm() != 0o644 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		fail("sshd_config mode/owner changed: %v %v", fi.Mode(), err)
	}
	entries, err := os.ReadDir(h.DropInDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "00-kps-password.conf" {
			fail("left in the drop-in directory: %s", e.Name())
			continue
		}
		b, err := os.ReadFile(filepath.Join(h.DropInDir, e.Name()))
		fi, _ := os.Stat(filepath.Join(h.DropInDir, e.Name()))
		if err != nil || string(b) != kpsDropIn || fi.Mode().Perm() != 0o644 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
			fail("drop-in %q mode %v (%v)", b, fi.Mode(), err)
		}
		if off {
			fail("both the drop-in and the main file block")
		}
		off = true
	}
	entries, err = os.ReadDir(h.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			fail("left beside sshd_config: %s", e.Name())
		}
	}
	sshd, err := sshdtest.Available()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sshd, "-t", "-f", h.ConfigPath).CombinedOutput(); err != nil {
		fail("sshd -t: %v: %s", err, out)
	}
	eff, err := exec.Command(sshd, "-T", "-f", h.ConfigPath, "-C", "user="+h.User+",host=localhost,addr=127.0.0.1").Output()
	if err != nil {
		fail("sshd -T: %v", err)
	}
	wantPw := map[bool]string{true: "no", false: "yes"}[off]
	for _, kw := range []string{"passwordauthentication", "kbdinteractiveauthentication"} {
		if !regexp.MustCompile(`(?m)^` + kw + ` ` + wantPw + `$`).Match(eff) {
			fail("sshd -T does not say %s %s", kw, wantPw)
		}
	}
	// The daemon runs (the process of its pid file) and serves what its files say.
	pid, err := os.ReadFile(h.PidFile)
	if n, _ := strconv.Atoi(strings.TrimSpace(string(pid))); err != nil || n <= 0 || syscall.Kill(n, 0) != nil {
		fail("the daemon of pid file %q is not running (%v)", pid, err)
	}
	if ch.priv {
		if works := h.PasswordLoginWorks(t); works == off {
			fail("password login works=%v, the configuration says off=%v", works, off)
		}
	}
	return !off
}

// checkOverlap reads the host's session log and fails on any overlap sessionOverlaps finds.
func (c *chaosRun) checkOverlap(when string, ch *chaosHost, ts []*chaosTask) {
	t := c.t
	b, err := os.ReadFile(filepath.Join(ch.h.Home, ".sessions.log"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	problems, conns := sessionOverlaps(string(b))
	for _, p := range problems {
		t.Errorf("%s: %s %s", when, ch.id, p)
	}
	succeeded := 0
	for _, tk := range ts {
		if strings.HasPrefix(tk.final, "SUCCESS_") {
			succeeded++
		}
	}
	// The recorder must see at least every task that did its work on the host.
	if conns < succeeded {
		t.Errorf("%s: %s: %d connections in the session log, %d successful tasks", when, ch.id, conns, succeeded)
	}
}

// sessionOverlaps reads a session log of the wrapper: the span of a connection runs from its
// first session's start to its last session's end (a session that never ended runs to the
// end of the log), and no two spans may intersect. It returns what overlaps and the number of
// connections.
func sessionOverlaps(log string) (problems []string, conns int) {
	type span struct {
		conn        string
		first, last int
	}
	spans := map[string]*span{}
	open := map[string]int{}
	lines := strings.Split(strings.TrimSpace(log), "\n")
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		s := spans[f[1]]
		if s == nil {
			s = &span{conn: f[1], first: i, last: -1}
			spans[f[1]] = s
		}
		switch f[0] {
		case "start":
			open[f[1]]++
			s.last = -1
		case "end":
			open[f[1]]--
			if open[f[1]] == 0 {
				s.last = i
			}
		}
	}
	sorted := make([]*span, 0, len(spans))
	for _, s := range spans {
		if s.last < 0 {
			problems = append(problems, fmt.Sprintf("never ended a session of connection %s", s.conn))
			s.last = len(lines)
		}
		sorted = append(sorted, s)
	}
	slices.SortFunc(sorted, func(a, b *span) int { return a.first - b.first })
	var reach *span // the span reaching furthest so far
	for _, s := range sorted {
		if reach != nil && s.first < reach.last {
			problems = append(problems, fmt.Sprintf("ran two tasks at once: connections %s (lines %d–%d) and %s (lines %d–%d) overlap",
				reach.conn, reach.first+1, reach.last+1, s.conn, s.first+1, s.last+1))
		}
		if reach == nil || s.last > reach.last {
			reach = s
		}
	}
	return problems, len(spans)
}

// TestSessionOverlaps checks the overlap detector of the crash rounds on hand-made logs.
func TestSessionOverlaps(t *testing.T) {
	for _, c := range []struct {
		log      string
		problems int
	}{
		{"start a/1\nend a/1\nstart a/1\nend a/1\nstart b/2\nend b/2\n", 0}, // sessions of one task, then another
		{"start a/1\nstart b/2\nend b/2\nend a/1\n", 1},                     // b inside a
		{"start a/1\nend a/1\nstart b/2\nstart a/1\nend a/1\nend b/2\n", 1}, // a's second session during b
		{"start a/1\nstart b/2\nend a/1\nstart c/3\nend c/3\nend b/2\n", 2}, // a with b, c inside b
		{"start a/1\nend a/1\nstart b/2\n", 1},                              // b never ended
		{"start a/1\nstart b/2\nend b/2\nstart c/3\nend c/3\n", 3},          // a never ended: open to the end
		{"start a/1\nend a/1\nstart a/9\nend a/9\n", 0},                     // a reused port is another connection
	} {
		if got, _ := sessionOverlaps(c.log); len(got) != c.problems {
			t.Errorf("%q: %q, want %d problems", c.log, got, c.problems)
		}
	}
}
