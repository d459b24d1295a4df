package e2e

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openkps/kps/daemon"
	"github.com/openkps/kps/internal/openapitest"
	"github.com/openkps/kps/internal/pgtest"
	"github.com/openkps/kps/internal/sshdtest"
)

// startReplica runs the built binary as one `kps serve` replica on the PostgreSQL dsn, sharing
// dataDir (and so the master key) with the other replicas.
func startReplica(t *testing.T, bin, dataDir, dsn string) (string, *exec.Cmd) {
	t.Helper()
	return startBinary(t, bin, []string{"KPS_DATA_DIR=" + dataDir, "KPS_DATABASE=" + dsn,
		"KPS_ADMIN_PASSWORD=replica-test-password"}, "--workers", "4", "--lease", "3s")
}

// balancer spreads requests over the live replicas, as a load balancer would, and drops a
// replica it has killed.
type balancer struct {
	mu    sync.Mutex
	live  []string
	next  int
	token string
	proj  string
}

func (b *balancer) pick() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.next++
	return b.live[b.next%len(b.live)]
}

func (b *balancer) drop(base string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.live = slices.DeleteFunc(b.live, func(s string) bool { return s == base })
}

// do sends a request to a live replica, retrying on another one when the connection fails (the
// replica just died).
func (b *balancer) do(method, path string, body any) (int, map[string]any, error) {
	_, code, out, err := b.doOn(method, path, body)
	return code, out, err
}

// doOn is do, and says which replica answered. Like a real load balancer (nginx's
// proxy_next_upstream without non_idempotent) it retries a POST only when the connection could
// not be made: once the request was sent, the replica may have acted on it before it died, and
// doOn returns the error with the replica that took it.
func (b *balancer) doOn(method, path string, body any) (string, int, map[string]any, error) {
	var last error
	for range 5 {
		base := b.pick()
		var rd *strings.Reader
		if body != nil {
			j, _ := json.Marshal(body)
			rd = strings.NewReader(string(j))
		} else {
			rd = strings.NewReader("")
		}
		req, _ := http.NewRequest(method, base+"/v3/"+b.proj+path, rd)
		req.Header.Set("X-Auth-Token", b.token)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := apiClient.Do(req)
		if err != nil {
			var op *net.OpError
			if method != "GET" && !(errors.As(err, &op) && op.Op == "dial") {
				return base, 0, nil, err
			}
			last = err
			time.Sleep(50 * time.Millisecond)
			continue
		}
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		return base, resp.StatusCode, out, nil
	}
	return "", 0, nil, last
}

// lostTask returns the task a replica stored for server after the task last, if it stored one
// before dying without answering.
func lostTask(t *testing.T, dsn, server, last string) string {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var id string
	err = db.QueryRow(`SELECT id FROM tasks WHERE server_id = $1 AND seq > COALESCE((SELECT seq FROM tasks WHERE id = $2), 0)
		ORDER BY seq DESC LIMIT 1`, server, last).Scan(&id)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		t.Error(err)
	}
	return id
}

// TestReplicasSurviveSIGKILL is the multi-replica test of issue 5: three `kps serve` processes on
// one PostgreSQL, requests spread over them, a few hundred bind tasks against real sshd hosts,
// one replica killed with SIGKILL mid-run. Half of the binds are RESETs with the inventory's
// stored credential, half carry the caller's password (server.auth), which only the replica
// that accepted the request keeps, in memory.
//
// Until the kill every task succeeds, whichever replica accepted it and whichever worker was
// idle: a task with the caller's password waits for its holder. After the kill the only
// failures are KPS.6609 of tasks the killed replica held (its caller passwords) or was running;
// every task ends exactly once, none stays READY or RUNNING, the replicas that remain agree on
// the failed tasks, and every host ends with the key installed exactly once.
func TestReplicasSurviveSIGKILL(t *testing.T) {
	dsn := pgtest.Schema(t)
	t.Parallel()
	bin := kpsBinary(t)
	dataDir := t.TempDir()
	// The first replica migrates and bootstraps; the others join it.
	first, _ := startReplica(t, bin, dataDir, dsn)
	second, victim := startReplica(t, bin, dataDir, dsn)
	third, _ := startReplica(t, bin, dataDir, dsn)
	admin := &service{t: t, base: first}
	admin.login("replica-test-password")
	lb := &balancer{live: []string{first, second, third}, token: admin.token, proj: admin.project}

	const hosts, perHost = 8, 26
	hs := make([]*sshdtest.Host, hosts)
	for i := range hs {
		hs[i] = sshdtest.Start(t, sshdtest.Options{})
		admin.addHost(fmt.Sprintf("h%d", i), hs[i], map[string]any{"credential": map[string]any{"type": "password", "key": hs[i].Password}})
	}
	kp := admin.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "ops"}})["keypair"].(map[string]any)

	type outcome struct {
		status     string
		accepted   string // the replica that accepted the request
		callerAuth bool
		beforeKill bool // ended before the kill
	}
	var (
		mu     sync.Mutex
		final  = map[string]outcome{} // task ID → how it ended
		done   int
		dead   bool
		killed = make(chan struct{})
		gone   = make(chan struct{})   // closed once the victim is dead
		prev   = make([]string, hosts) // each host's last task
	)
	var wg sync.WaitGroup
	for i := range hosts {
		wg.Go(func() {
			for n := range perHost {
				server := map[string]any{"id": fmt.Sprintf("h%d", i)}
				callerAuth := n%2 == 1
				if callerAuth {
					server["auth"] = map[string]any{"type": "password", "key": hs[i].Password}
				}
				base, id := "", ""
				for lost := false; id == ""; {
					took, code, out, err := lb.doOn("POST", "/keypairs/associate", map[string]any{"keypair_name": "ops", "server": server})
					if err != nil && took != "" || lost && code == 409 && out["error_code"] == "KPS.6302" {
						// The replica that took the request died before answering (only the
						// victim dies), or a retry finds the task it stored: like a client,
						// look for the task before submitting again.
						if !lost {
							base, lost = took, true
						}
						<-gone
						time.Sleep(500 * time.Millisecond) // a COMMIT the victim sent settles
						id = lostTask(t, dsn, server["id"].(string), prev[i])
						continue
					}
					if err != nil || code != 200 {
						t.Errorf("associate h%d: %d %v %v", i, code, out, err)
						return
					}
					base, id = took, out["task_id"].(string)
				}
				prev[i] = id
				deadline := time.Now().Add(60 * time.Second)
				for {
					code, out, err := lb.do("GET", "/tasks/"+id, nil)
					if err != nil || code != 200 {
						t.Errorf("task %s: %d %v %v", id, code, out, err)
						return
					}
					st := out["task_status"].(string)
					if strings.HasPrefix(st, "SUCCESS_") || strings.HasPrefix(st, "FAILED_") {
						mu.Lock()
						if _, again := final[id]; again {
							t.Errorf("task %s ended twice", id)
						}
						final[id] = outcome{status: st, accepted: base, callerAuth: callerAuth, beforeKill: !dead}
						done++
						if done == hosts*perHost/3 {
							close(killed)
						}
						mu.Unlock()
						break
					}
					if time.Now().After(deadline) {
						t.Errorf("task %s stuck in %s", id, st)
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	<-killed
	mu.Lock()
	dead = true // whatever ends from now on may have been the victim's
	mu.Unlock()
	victim.Process.Signal(syscall.SIGKILL)
	victim.Wait()
	close(gone)
	lb.drop(second)
	wg.Wait()
	if t.Failed() {
		return
	}
	if len(final) != hosts*perHost {
		t.Fatalf("%d tasks ended, want %d", len(final), hosts*perHost)
	}

	// Who held and who ran each task, from the database: the API does not show it.
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT id, holder, lease_owner, error_code FROM tasks`)
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ holder, leaseOwner, code string }
	stored := map[string]row{}
	victimID := ""
	for rows.Next() {
		var id string
		var r row
		if err := rows.Scan(&id, &r.holder, &r.leaseOwner, &r.code); err != nil {
			t.Fatal(err)
		}
		stored[id] = r
		if o := final[id]; o.callerAuth && o.accepted == second {
			victimID = r.holder
		}
	}
	rows.Close()
	if victimID == "" {
		t.Fatal("no task with the caller's password was accepted by the killed replica")
	}

	var succeeded, callerAuthOK, heldByVictim, ranByVictim int
	failed := map[string]bool{}
	for id, o := range final {
		r := stored[id]
		if o.callerAuth && r.holder == "" || !o.callerAuth && r.holder != "" {
			t.Errorf("task %s (caller auth %v) has holder %q", id, o.callerAuth, r.holder)
		}
		if strings.HasPrefix(o.status, "SUCCESS_") {
			succeeded++
			if o.callerAuth {
				callerAuthOK++
			}
			continue
		}
		failed[id] = true
		switch {
		case o.beforeKill:
			t.Errorf("task %s (caller auth %v, accepted by %s) failed before any replica died: %s %s", id, o.callerAuth, o.accepted, o.status, r.code)
		case r.code != "KPS.6609":
			t.Errorf("task %s failed with %s, want KPS.6609 of the killed replica", id, r.code)
		case o.callerAuth && r.holder == victimID:
			heldByVictim++
		case r.leaseOwner == victimID:
			ranByVictim++
		default:
			t.Errorf("task %s (caller auth %v, holder %q, run by %q) failed, but the killed replica %s neither held nor ran it",
				id, o.callerAuth, r.holder, r.leaseOwner, victimID)
		}
	}
	t.Logf("%d tasks: %d succeeded (%d with the caller's password), %d failed with KPS.6609: %d held by the killed replica, %d running on it",
		len(final), succeeded, callerAuthOK, len(failed), heldByVictim, ranByVictim)
	if callerAuthOK == 0 {
		t.Error("no task with the caller's password succeeded")
	}

	// Nothing is left READY or RUNNING, and every remaining replica lists the same failed tasks
	// with the same outcome as the task itself.
	for _, base := range []string{first, third} {
		s := &service{t: t, base: base, token: admin.token, project: admin.project}
		if out := s.must(200, "GET", "/running-tasks", nil); out["total"] != float64(0) {
			t.Fatalf("%s: tasks left running: %v", base, out)
		}
		list := s.must(200, "GET", "/failed-tasks?limit=1000", nil)
		got := map[string]bool{}
		for _, it := range list["tasks"].([]any) {
			id := it.(map[string]any)["task_id"].(string)
			if got[id] {
				t.Fatalf("%s lists failed task %s twice", base, id)
			}
			got[id] = true
		}
		for id := range failed {
			if !got[id] {
				t.Errorf("%s does not list failed task %s", base, id)
			}
		}
		if len(got) != len(failed) {
			t.Errorf("%s lists %d failed tasks, want %d", base, len(got), len(failed))
		}
	}
	// Each host ran its tasks one after another: the idempotent edit left one copy of the key.
	for i, h := range hs {
		if content, _ := h.AuthorizedKeys(t); strings.Count(content, keyBlob(t, kp["public_key"])) != 1 {
			t.Errorf("host h%d authorized_keys: %q", i, content)
		}
	}
}

// fromClient sends a request to s from the loopback address ip (a client of its own) with the
// given headers and returns the status, the Retry-After header and the error code.
func (s *service) fromClient(ip, method, path, body string, headers map[string]string) (int, string, string) {
	s.t.Helper()
	req, _ := http.NewRequest(method, s.base+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	client := &http.Client{Transport: openapitest.NewTransport(&http.Transport{DialContext: d.DialContext})}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	code, _ := out["error_code"].(string)
	return resp.StatusCode, resp.Header.Get("Retry-After"), code
}

// TestReplicasShareLockouts: the lockouts and rate limits of auth.md §12.4 are counted in the
// database, so failures on replica A lock the user, the (AK, client IP) pair and the client IP
// on replica B. Both replicas trust the load balancer at 127.0.0.1 for X-Forwarded-For; other
// loopback addresses are clients that connect directly, and what they put in X-Forwarded-For
// is ignored.
func TestReplicasShareLockouts(t *testing.T) {
	t.Parallel()
	dsn, dataDir := pgtest.Schema(t), t.TempDir()
	replica := func() *service {
		return setup(t, func(c *daemon.Config) { c.Database, c.DataDir, c.TrustedProxies = dsn, dataDir, "127.0.0.1/32" })
	}
	a := replica()
	b := a.on(replica())
	const lb = "127.0.0.1"
	login := func(s *service, password, client string) (int, string, string) {
		body := `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","domain":{"name":"Default"},"password":"` +
			password + `"}}},"scope":{"project":{"name":"local-1","domain":{"name":"Default"}}}}}`
		return s.fromClient(lb, "POST", "/v3/auth/tokens", body, map[string]string{"X-Forwarded-For": client})
	}

	// The user: five wrong passwords on A, from five clients, lock admin on B, even with the
	// right password from a sixth client.
	for i := range 5 {
		if st, _, code := login(a, "wrong-password", fmt.Sprintf("198.51.100.%d", i+1)); st != 401 {
			t.Fatalf("wrong password %d on A: %d %s", i+1, st, code)
		}
	}
	st, retry, code := login(b, "admin-password-for-tests", "198.51.100.9")
	if n, _ := strconv.Atoi(retry); st != 429 || code != "KPS.6105" || n < 240 || n > 300 {
		t.Fatalf("right password on B after 5 failures on A: %d %s Retry-After %q, want 429 KPS.6105", st, code, retry)
	}

	// The (AK, client IP) pair: five signature mismatches on A from 127.0.0.3 lock the pair on B.
	ak, sk := a.accessKey("admin")
	wrong := sk[:39] + "x"
	if wrong == sk {
		wrong = sk[:39] + "y"
	}
	for range 5 {
		a.signed(ak, wrong, signedRequest{method: "GET", path: "/keypairs", from: "127.0.0.3"}).want(t, 401, "KPS.6102", "")
	}
	b.signed(ak, sk, signedRequest{method: "GET", path: "/keypairs", from: "127.0.0.3"}).want(t, 429, "KPS.6105", "")
	b.signed(ak, sk, signedRequest{method: "GET", path: "/keypairs", from: "127.0.0.4"}).want(t, 200, "", "")

	// The client IP behind the balancer: 30 refused tokens on A lock 203.0.113.7 on B, and
	// only that client.
	keypairs := "/v3/" + a.project + "/keypairs"
	for i := range 30 {
		if st, _, code := a.fromClient(lb, "GET", keypairs, "", map[string]string{"X-Auth-Token": "not-a-token",
			"X-Forwarded-For": "203.0.113.7"}); st != 401 {
			t.Fatalf("refused token %d on A: %d %s", i+1, st, code)
		}
	}
	good := func(client string) map[string]string {
		return map[string]string{"X-Auth-Token": a.token, "X-Forwarded-For": client}
	}
	if st, retry, code := b.fromClient(lb, "GET", keypairs, "", good("203.0.113.7")); st != 429 || code != "KPS.6105" || retry == "" {
		t.Fatalf("locked client on B: %d %s Retry-After %q, want 429 KPS.6105", st, code, retry)
	}
	// A client left of the locked one in the list cannot hide it: the rightmost untrusted
	// address counts.
	if st, _, _ := b.fromClient(lb, "GET", keypairs, "", good("192.0.2.200, 203.0.113.7")); st != 429 {
		t.Fatalf("locked client behind a forged hop on B: %d, want 429", st)
	}
	if st, _, code := b.fromClient(lb, "GET", keypairs, "", good("203.0.113.8")); st != 200 {
		t.Fatalf("another client on B: %d %s", st, code)
	}

	// Spoofing: a client that is not a trusted proxy names the locked address in
	// X-Forwarded-For; it is counted as itself, and is not locked.
	if st, _, code := b.fromClient("127.0.0.6", "GET", keypairs, "", good("203.0.113.7")); st != 200 {
		t.Fatalf("direct client 127.0.0.6 claiming to be 203.0.113.7: %d %s, want 200", st, code)
	}
	// Nor can it escape its own lock by naming other addresses.
	for i := range 30 {
		b.fromClient("127.0.0.6", "GET", keypairs, "", map[string]string{"X-Auth-Token": "not-a-token",
			"X-Forwarded-For": fmt.Sprintf("192.0.2.%d", i)})
	}
	if st, _, code := a.fromClient("127.0.0.6", "GET", keypairs, "", good("192.0.2.99")); st != 429 || code != "KPS.6105" {
		t.Fatalf("direct client locked on B, on A with a new X-Forwarded-For: %d %s, want 429", st, code)
	}
}
