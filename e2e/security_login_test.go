package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openkps/kps/iam"
	"github.com/openkps/kps/internal/openapitest"
	"github.com/openkps/kps/internal/pgtest"
)

// The attacks of docs/SECURITY.md section 4 (issue 13) against the BUILT binary: guessing
// passwords in parallel, through the password change, unseen; tokens without bound; the admin
// password left in the environment. Every request goes over real TCP to `kps serve` started
// from the binary `go build` makes; the assertions count answers, never time them.

// binaryService is a `kps serve` process started from the built binary, with its log.
type binaryService struct {
	t        *testing.T
	base     string
	cmd      *exec.Cmd
	logs     *lockedBuffer
	admin    *idClient
	project  string // the admin's project, local-1 of Default
	password string // the admin's
	client   *http.Client
}

// startServe runs the binary as `kps serve` on a fresh data directory with the admin password
// in KPS_ADMIN_PASSWORD, the extra environment and flags, waits until it serves and logs in as
// its admin.
func startServe(t *testing.T, env []string, flags ...string) *binaryService {
	t.Helper()
	return startServeIn(t, t.TempDir(), "admin-"+randomWord(t), env, flags...)
}

// startServeIn is startServe on dataDir with the admin password given: replicas on one
// PostgreSQL database share both.
func startServeIn(t *testing.T, dataDir, password string, env []string, flags ...string) *binaryService {
	t.Helper()
	args := append([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--log-level", "info", "--workers", "2"}, flags...)
	cmd := exec.Command(kpsBinary(t), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "KPS_ADMIN_PASSWORD=" + password}, env...)
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	listen := regexp.MustCompile(`msg="kps serving" listen=(\S+)`)
	deadline := time.Now().Add(60 * time.Second)
	var m []string
	for m = listen.FindStringSubmatch(logs.String()); m == nil; m = listen.FindStringSubmatch(logs.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("kps serve did not start:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	b := &binaryService{t: t, base: "http://" + m[1], cmd: cmd, logs: logs, password: password,
		client: &http.Client{Transport: openapitest.NewTransport(&http.Transport{MaxIdleConnsPerHost: 256}), Timeout: 90 * time.Second}}
	t.Cleanup(b.client.CloseIdleConnections)
	admin, tok := (&idClient{t: t, base: b.base, tr: newTranscript()}).login("Default", "admin", password, projectScope("local-1", "Default"))
	b.admin, b.project = admin, str(obj(tok["project"])["id"])
	return b
}

func randomWord(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// with returns the service as seen from the (sub)test t, whose failures its helpers report.
func (b *binaryService) with(t *testing.T) *binaryService {
	c := *b
	admin := *b.admin
	c.t, admin.t, c.admin = t, t, &admin
	return &c
}

// addMember creates a user of Default with the password and the member role on the admin's
// project and returns the user's ID.
func (b *binaryService) addMember(name, password string) string {
	b.t.Helper()
	u := obj(b.admin.want(201, "POST", "/v3/users", map[string]any{"user": map[string]any{"name": name, "password": password}})["user"])
	b.admin.want(204, "PUT", "/v3/projects/"+b.project+"/users/"+str(u["id"])+"/roles/member", nil)
	return str(u["id"])
}

// loginAs logs a user of Default in, scoped to local-1.
func (b *binaryService) loginAs(name, password string) *idClient {
	b.t.Helper()
	c, _ := (&idClient{t: b.t, base: b.base, tr: newTranscript()}).login("Default", name, password, projectScope("local-1", "Default"))
	return c
}

// reply is one answer of a flood.
type reply struct {
	status int
	header http.Header
	body   map[string]any
	err    error
}

// send makes one request with the service's client; it never fails the test (floods run it
// from many goroutines).
func (b *binaryService) send(method, path, body string, headers map[string]string) reply {
	req, err := http.NewRequest(method, b.base+path, strings.NewReader(body))
	if err != nil {
		return reply{err: err}
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return reply{err: err}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			r.err = fmt.Errorf("non-JSON body %q", raw)
		}
	}
	return r
}

// request is one request of a flood.
type request struct {
	method, path, body string
	headers            map[string]string
	// to is the replica that receives it; nil is the service atOnce is called on.
	to *binaryService
}

// atOnce sends the requests from as many goroutines, released together once the client holds
// a warm connection for each, and returns their answers in order.
func (b *binaryService) atOnce(reqs []request) []reply {
	b.t.Helper()
	var wg sync.WaitGroup
	warm := make(chan struct{})
	for _, r := range reqs {
		to := b
		if r.to != nil {
			to = r.to
		}
		wg.Go(func() {
			<-warm
			to.send("GET", "/healthz", "", nil)
		})
	}
	close(warm)
	wg.Wait()
	out := make([]reply, len(reqs))
	start := make(chan struct{})
	for i, r := range reqs {
		to := b
		if r.to != nil {
			to = r.to
		}
		wg.Go(func() {
			<-start
			out[i] = to.send(r.method, r.path, r.body, r.headers)
		})
	}
	close(start)
	wg.Wait()
	for i, r := range out {
		if r.err != nil {
			b.t.Fatalf("request %d: %v", i, r.err)
		}
	}
	return out
}

func loginBody(domain, user, password string) string {
	return `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":` + jsonText(user) +
		`,"domain":{"name":` + jsonText(domain) + `},"password":` + jsonText(password) + `}}}}}`
}

// tally counts the answers by status and checks every 429: KPS.6105 with a Retry-After of at
// least one second.
func tally(t *testing.T, replies []reply) map[int]int {
	t.Helper()
	n := map[int]int{}
	for _, r := range replies {
		n[r.status]++
		if r.status == http.StatusTooManyRequests {
			if r.body["error_code"] != "KPS.6105" {
				t.Errorf("429 with %v", r.body)
			}
			if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
				t.Errorf("429 with Retry-After %q", r.header.Get("Retry-After"))
			}
		}
	}
	return n
}

// burstSize is how many requests a burst of the concurrency tests has in flight at once
// (issue 13: at least 50).
const burstSize = 60

// oneUserBurst is 59 wrong guesses and, last, the right password of the user "victim" of
// Default, all from 127.0.0.1; the i-th goes to replicas[i%len(replicas)] when replicas are
// given, else to the service atOnce is called on.
func oneUserBurst(replicas []*binaryService) []request {
	var reqs []request
	for i := range burstSize {
		pw := fmt.Sprint("guess-", i)
		if i == burstSize-1 {
			pw = "victim-password-1"
		}
		r := request{method: "POST", path: "/v3/auth/tokens", body: loginBody("Default", "victim", pw)}
		if len(replicas) > 0 {
			r.to = replicas[i%len(replicas)]
		}
		reqs = append(reqs, r)
	}
	return reqs
}

// checkOneUserBurst checks the answers to oneUserBurst and returns the failures it counted
// against the address (its 401s).
//
// Every guess is reserved under the address (30 a minute), the user as named and the user's
// ID (5 per window, one at a time) before any hash, under all of them or none. The first
// reservation always succeeds (the user is fresh); every other one is 429 unless no
// verification of the user is under way and fewer than 5 failed, and a refused one reserves
// nothing, under the address neither: at most 5 guesses of the burst ever reach the address,
// so its limit of 30 does not bind here, the user's does. Without a success, 1 to 5 are
// evaluated (401) and the rest are 429. The right password is 429 like any other unless it
// happens to win a reservation, as each of the 60 may (the rule bounds guesses, it does not
// refuse the right password): then it is 201 after at most 4 failures, and its success resets
// the user's count, so at most 5 more may follow: at most 9 401s. Which one wins is the
// scheduler's choice, so the test accepts both and counts exactly in each.
func checkOneUserBurst(t *testing.T, what string, replies []reply) int {
	t.Helper()
	n := tally(t, replies)
	right := replies[len(replies)-1]
	t.Logf("%d guesses at once for %s: %v; the right password: %d", len(replies), what, n, right.status)
	for i, r := range replies[:len(replies)-1] {
		if r.status != 401 && r.status != 429 {
			t.Fatalf("%s: wrong guess %d answered %d %v; want 401 or 429", what, i, r.status, r.body)
		}
		if r.status == 401 && r.body["error_code"] != "KPS.6107" {
			t.Errorf("%s: wrong guess %d: 401 with %v; want KPS.6107", what, i, r.body)
		}
	}
	switch right.status {
	case 429:
		if n[401] < 1 || n[401] > 5 || n[401]+n[429] != len(replies) {
			t.Fatalf("%d guesses at once for %s: %v; want 1 to 5 evaluated (401), the rest 429, the right password among them", len(replies), what, n)
		}
	case 201:
		if n[401] > 9 || n[201] != 1 || 1+n[401]+n[429] != len(replies) {
			t.Fatalf("%d guesses at once for %s, the right password accepted: %v; want at most 4+5 failures (401), the rest 429", len(replies), what, n)
		}
	default:
		t.Fatalf("%s: the right password answered %d %v; want 429 or, if it won a reservation, 201", what, right.status, right.body)
	}
	return n[401]
}

// TestAttackParallelPasswordGuessing (docs/SECURITY.md 4.1, 4.2): guesses sent at once are
// bounded as guesses sent one by one. Before issue 13 the lock was checked before the hash and
// counted after it, so every guess of a burst was evaluated.
func TestAttackParallelPasswordGuessing(t *testing.T) {
	t.Parallel()
	t.Run("one user", func(t *testing.T) {
		// 59 wrong guesses and the right password at once from one address: one verification
		// per user at a time, at most 5 per window; the rest are refused before any hash.
		b := startServe(t, nil)
		b.addMember("victim", "victim-password-1")
		checkOneUserBurst(t, "one user", b.atOnce(oneUserBurst(nil)))
	})
	t.Run("one address", func(t *testing.T) {
		// 60 bad logins for 60 names from one address at once, with room in the hash queue for
		// all: at most 30 are evaluated, and the address is locked after them.
		b := startServe(t, nil, "--login-queue", "100")
		b.addMember("victim", "victim-password-1")
		var reqs []request
		for i := range 60 {
			reqs = append(reqs, request{method: "POST", path: "/v3/auth/tokens", body: loginBody("Default", fmt.Sprint("ghost-", i), "guess")})
		}
		n := tally(t, b.atOnce(reqs))
		t.Logf("60 bad logins at once from one address: %v", n)
		if n[401] > 30 || n[401]+n[429] != 60 || n[429] < 30 {
			t.Fatalf("60 bad logins at once from one address: %v; want at most 30 evaluated (401), the rest 429", n)
		}
		r := b.send("POST", "/v3/auth/tokens", loginBody("Default", "victim", "victim-password-1"), nil)
		if r.status != 429 || r.body["error_code"] != "KPS.6105" {
			t.Fatalf("the right password from an address with 30 failures this minute: %d %v", r.status, r.body)
		}
	})
	t.Run("two replicas", func(t *testing.T) {
		// The same bursts spread over two replicas on one PostgreSQL database: the
		// reservations are in the database, so the bounds are the same.
		dsn := pgtest.Schema(t)
		dataDir, password := t.TempDir(), "admin-"+randomWord(t)
		a := startServeIn(t, dataDir, password, nil, "--database", dsn, "--login-queue", "100")
		b := startServeIn(t, dataDir, password, nil, "--database", dsn, "--login-queue", "100")
		a.addMember("victim", "victim-password-1")
		replicas := []*binaryService{a, b}
		first := checkOneUserBurst(t, "one user over two replicas", a.atOnce(oneUserBurst(replicas)))
		var reqs []request
		for i := range 60 {
			reqs = append(reqs, request{method: "POST", path: "/v3/auth/tokens", body: loginBody("Default", fmt.Sprint("ghost-", i), "guess"), to: replicas[i%2]})
		}
		n := tally(t, a.atOnce(reqs))
		t.Logf("then 60 bad logins at once from the same address over two replicas: %v", n)
		// Both bursts come from 127.0.0.1 within seconds, in the address's first minute (its
		// window opened with the first burst's first failure): the first burst's failures
		// count against its 30. The 60 names are distinct and the hash queue holds 100, so
		// the address alone refuses: reservations are admitted until failures and
		// reservations under way reach 30, and every one admitted fails. Exactly 30 minus
		// the first burst's failures are evaluated (401), the rest are 429.
		if n[401] != 30-first || n[401]+n[429] != 60 {
			t.Fatalf("60 bad logins at once from one address over two replicas, after %d failures from it: %v; want exactly %d evaluated (401), the rest 429", first, n, 30-first)
		}
	})
	t.Run("queue", func(t *testing.T) {
		// 60 logins from 60 addresses (through a trusted proxy) for 60 names: no lock applies,
		// the bounded queue of hash slots does. A password change by an authenticated user
		// during the flood is not refused: it goes before the queued logins.
		b := startServe(t, nil, "--trusted-proxies", "127.0.0.1/32")
		b.addMember("alice", "alice-password-1")
		alice := b.loginAs("alice", "alice-password-1")
		aliceID := str(obj(obj(b.admin.want(200, "GET", "/v3/auth/tokens", nil, "X-Subject-Token", alice.token)["token"])["user"])["id"])
		var reqs []request
		for i := range 60 {
			reqs = append(reqs, request{method: "POST", path: "/v3/auth/tokens", body: loginBody("Default", fmt.Sprint("ghost-", i), "guess"),
				headers: map[string]string{"X-Forwarded-For": fmt.Sprintf("10.1.%d.%d", i/200, i%200+1)}})
		}
		reqs = append(reqs, request{method: "POST", path: "/v3/users/" + aliceID + "/password",
			body:    `{"user":{"original_password":"alice-password-1","password":"alice-password-2"}}`,
			headers: map[string]string{"X-Auth-Token": alice.token}})
		replies := b.atOnce(reqs)
		if change := replies[60]; change.status != 204 {
			t.Fatalf("password change during a login flood: %d %v", change.status, change.body)
		}
		n := tally(t, replies[:60])
		queueFull := 0
		for _, r := range replies[:60] {
			if r.status == 429 && strings.HasPrefix(str(r.body["error_msg"]), "Too many authentication attempts in progress; retry after ") {
				queueFull++
			}
		}
		t.Logf("60 logins at once from 60 addresses: %v, %d refused for a full queue", n, queueFull)
		if n[401]+n[429] != 60 || n[401] == 0 || queueFull == 0 || queueFull != n[429] {
			t.Fatalf("60 logins at once from 60 addresses: %v, %d refused for a full queue; want 401s and 429s for a full queue only", n, queueFull)
		}
	})
}

// TestAttackPasswordChangeGuessing (docs/SECURITY.md 4.3): a wrong original password is a
// failed login, in sequence and in parallel; a temporary credential cannot change a password.
func TestAttackPasswordChangeGuessing(t *testing.T) {
	t.Parallel()
	b := startServe(t, nil)
	change := func(c *idClient, id, original string) idResponse {
		return c.do("POST", "/v3/users/"+id+"/password", map[string]any{"user": map[string]any{"original_password": original, "password": "a-new-password-9"}})
	}
	t.Run("in sequence", func(t *testing.T) {
		b := b.with(t)
		aliceID := b.addMember("alice", "alice-password-1")
		alice := b.loginAs("alice", "alice-password-1")
		for i := range 5 {
			if r := change(alice, aliceID, fmt.Sprint("guess-", i)); r.status != 401 || r.body["error_code"] != "KPS.6107" {
				t.Fatalf("wrong original password %d: %d %s", i+1, r.status, r.raw)
			}
		}
		if r := change(alice, aliceID, "alice-password-1"); r.status != 429 || r.body["error_code"] != "KPS.6105" || r.header.Get("Retry-After") == "" {
			t.Fatalf("the right original password after 5 wrong ones: %d %s; want 429 KPS.6105", r.status, r.raw)
		}
		if r := b.send("POST", "/v3/auth/tokens", loginBody("Default", "alice", "alice-password-1"), nil); r.status != 429 {
			t.Fatalf("a login of a user locked by password changes: %d %v", r.status, r.body)
		}
	})
	t.Run("in parallel", func(t *testing.T) {
		// 60 wrong original passwords at once with Bob's token, from 127.0.0.1 like every
		// request of this test. Each is reserved under Bob's user (5 per window, one at a
		// time) and the address (30 a minute) before its hash. Bob's user binds: the first
		// reservation always succeeds (Bob is fresh), each other one either waits for none
		// under way and fewer than 5 failures, or is 429 and reserves nothing, under the
		// address neither (Limiter.Reserve admits under all keys or none). So 1 to 5 are
		// evaluated (401 KPS.6107) and the rest are 429; the address, with at most the 5
		// failures of "in sequence" and these 5, never reaches 30.
		b := b.with(t)
		bobID := b.addMember("bob", "bob-password-1")
		bob := b.loginAs("bob", "bob-password-1")
		var reqs []request
		for i := range 60 {
			reqs = append(reqs, request{method: "POST", path: "/v3/users/" + bobID + "/password",
				body:    fmt.Sprintf(`{"user":{"original_password":"guess-%d","password":"a-new-password-9"}}`, i),
				headers: map[string]string{"X-Auth-Token": bob.token}})
		}
		replies := b.atOnce(reqs)
		n := tally(t, replies)
		t.Logf("60 wrong original passwords at once: %v", n)
		if n[401] < 1 || n[401] > 5 || n[401]+n[429] != 60 {
			t.Fatalf("60 wrong original passwords at once: %v; want 1 to 5 evaluated (401), the rest 429", n)
		}
		for i, r := range replies {
			if r.status == 401 && r.body["error_code"] != "KPS.6107" {
				t.Errorf("wrong original password %d: 401 with %v; want KPS.6107", i, r.body)
			}
		}
	})
	t.Run("temporary credential", func(t *testing.T) {
		// A temporary credential (15 minutes) cannot become a permanent password.
		b := b.with(t)
		carolID := b.addMember("carol", "carol-password-1")
		carol := b.loginAs("carol", "carol-password-1")
		c := obj(carol.want(201, "POST", "/v3.0/OS-CREDENTIAL/securitytokens", map[string]any{"auth": map[string]any{"identity": map[string]any{"methods": []string{"token"}}}})["credential"])
		temp := carol.withKey(str(c["access"]), str(c["secret"]), str(c["securitytoken"]))
		if r := change(temp, carolID, "carol-password-1"); r.status != 403 || r.body["error_code"] != "KPS.9006" {
			t.Fatalf("password change with a temporary credential: %d %s; want 403 KPS.9006", r.status, r.raw)
		}
		b.loginAs("carol", "carol-password-1")
	})
}

// logLine returns the log line of the request with that ID and message, "" when there is none.
func (b *binaryService) logLine(requestID, msg string) string {
	for _, l := range strings.Split(b.logs.String(), "\n") {
		if strings.Contains(l, "request_id="+requestID) && strings.Contains(l, `msg="`+msg+`"`) {
			return l
		}
	}
	return ""
}

// wantLogged checks that the request with the reply's X-Request-Id left one INFO line with the
// message and every attribute.
func (b *binaryService) wantLogged(r reply, msg string, attrs ...string) {
	b.t.Helper()
	id := r.header.Get("X-Request-Id")
	// The log reaches the buffer through a pipe, after the answer may have.
	l := b.logLine(id, msg)
	for deadline := time.Now().Add(10 * time.Second); l == "" && time.Now().Before(deadline); l = b.logLine(id, msg) {
		time.Sleep(10 * time.Millisecond)
	}
	if l == "" {
		b.t.Fatalf("no %q line for request %s (%d %v) in the log:\n%s", msg, id, r.status, r.body, b.logs.String())
	}
	if n := strings.Count(b.logs.String(), "request_id="+id); n != 1 {
		b.t.Errorf("request %s logged %d times", id, n)
	}
	for _, a := range append([]string{"level=INFO"}, attrs...) {
		if !strings.Contains(l, " "+a) {
			b.t.Errorf("line %q lacks %s", l, a)
		}
	}
}

// TestRefusalsAreLogged (docs/SECURITY.md 4.4): every refused login, lockout and refused password
// change leaves one INFO line with the request ID, the reason, the user or token fingerprint and
// the client IP, and no password; Nova's refusals are refusals, never internal errors.
func TestRefusalsAreLogged(t *testing.T) {
	t.Parallel()
	b := startServe(t, nil, "--keypair-user-quota", "0")
	aliceID := b.addMember("alice", "alice-password-1")
	bobID := b.addMember("bob", "bob-password-1")
	bob := b.loginAs("bob", "bob-password-1")
	ip := "client_ip=127.0.0.1"

	wrong := b.send("POST", "/v3/auth/tokens", loginBody("Default", "alice", "wrong-guess-1"), nil)
	b.wantLogged(wrong, "login refused", "code=KPS.6107", "reason=password-wrong", "user="+aliceID, ip)
	ghost := b.send("POST", "/v3/auth/tokens", loginBody("Default", "ghost", "wrong-guess-2"), nil)
	b.wantLogged(ghost, "login refused", "reason=user-unknown", "user=Default/ghost", ip)
	for i := range 4 {
		b.send("POST", "/v3/auth/tokens", loginBody("Default", "alice", fmt.Sprint("wrong-guess-", i+3)), nil)
	}
	locked := b.send("POST", "/v3/auth/tokens", loginBody("Default", "alice", "alice-password-1"), nil)
	if locked.status != 429 {
		t.Fatalf("sixth login: %d %v", locked.status, locked.body)
	}
	b.wantLogged(locked, "login refused", "code=KPS.6105", "reason=locked-out", "user=Default/alice", ip)

	changeBody := `{"user":{"original_password":"wrong-guess-9","password":"bob-password-2"}}`
	refused := b.send("POST", "/v3/users/"+bobID+"/password", changeBody, map[string]string{"X-Auth-Token": bob.token})
	b.wantLogged(refused, "password change refused", "code=KPS.6107", "reason=password-wrong", "user="+bobID,
		"token="+iam.TokenFingerprint(bob.token), ip)
	c := obj(bob.want(201, "POST", "/v3.0/OS-CREDENTIAL/securitytokens", map[string]any{"auth": map[string]any{"identity": map[string]any{"methods": []string{"token"}}}})["credential"])
	temp := bob.withKey(str(c["access"]), str(c["secret"]), str(c["securitytoken"]))
	tr := temp.do("POST", "/v3/users/"+bobID+"/password", changeBody)
	b.wantLogged(reply{status: tr.status, header: tr.header, body: tr.body}, "password change refused",
		"code=KPS.9006", "reason=temporary-credential", "access_key="+str(c["access"]), ip)

	// Nova: a quota refusal (403) is a refusal at INFO, a missing key pair (404) no error line.
	nova := map[string]string{"X-Auth-Token": bob.token, "X-OpenStack-Nova-API-Version": "2.10"}
	quota := b.send("POST", "/compute/v2.1/os-keypairs", `{"keypair":{"name":"k1"}}`, nova)
	if quota.status != 403 {
		t.Fatalf("Nova create over the per-user limit: %d %v", quota.status, quota.body)
	}
	b.wantLogged(quota, "request refused", "status=403", ip)
	missing := b.send("GET", "/compute/v2.1/os-keypairs/nothing-here", "", nova)
	if missing.status != 404 {
		t.Fatalf("Nova show of a missing key pair: %d %v", missing.status, missing.body)
	}

	// A last logged refusal: once its line is in, so is everything the service logged before.
	last := b.send("POST", "/v3/auth/tokens", loginBody("Default", "ghost", "wrong-guess-2"), nil)
	b.wantLogged(last, "login refused", "reason=user-unknown")
	logs := b.logs.String()
	t.Logf("the log:\n%s", logs)
	if strings.Contains(logs, "internal error") || strings.Contains(logs, "level=ERROR") {
		t.Errorf("a refusal was logged as an error:\n%s", logs)
	}
	for _, secret := range []string{"alice-password-1", "bob-password-1", "wrong-guess-1", "wrong-guess-2", "wrong-guess-9",
		"bob-password-2", b.password, bob.token, str(c["secret"]), str(c["securitytoken"])} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds a secret (%d bytes)", len(secret))
		}
	}
}

// TestTokenCapPerUser (docs/SECURITY.md 4.5; auth.md §5.3): the 1001st live token of a user
// revokes the oldest. Re-scoping issues a token without a password hash, so a thousand are cheap;
// the store's own cases (storetest TokenCap*) check the rule with a small cap on both engines.
func TestTokenCapPerUser(t *testing.T) {
	t.Parallel()
	b := startServe(t, nil)
	first := b.admin.token
	latest := first
	var second string
	for i := range iam.DefaultMaxTokensPerUser {
		r := b.send("POST", "/v3/auth/tokens?nocatalog", `{"auth":{"identity":{"methods":["token"],"token":{"id":`+jsonText(latest)+`}}}}`, nil)
		if r.status != 201 {
			t.Fatalf("re-scope %d: %d %v", i+1, r.status, r.body)
		}
		latest = r.header.Get("X-Subject-Token")
		if i == 0 {
			second = latest
		}
	}
	check := func(subject string) int {
		return b.send("GET", "/v3/auth/tokens?nocatalog", "", map[string]string{"X-Auth-Token": latest, "X-Subject-Token": subject}).status
	}
	if got := check(first); got != 404 {
		t.Fatalf("the oldest of 1001 live tokens: %d, want 404 (revoked)", got)
	}
	if got := check(second); got != 200 {
		t.Fatalf("the second oldest of 1001: %d, want 200", got)
	}
}

// TestAdminPasswordLeavesEnvironment (docs/SECURITY.md 6.7): once read, KPS_ADMIN_PASSWORD is no
// longer in the environment of `kps serve`: not in /proc/<pid>/environ (the block the kernel set
// up at exec, which os.Unsetenv alone leaves as it was). Not in os.Environ nor inherited by a
// child process either: TestForgetSecretEnv in daemon, which runs the same code in a process of
// its own.
func TestAdminPasswordLeavesEnvironment(t *testing.T) {
	t.Parallel()
	t.Run("kps serve", func(t *testing.T) {
		marker := "KPS_TEST_MARKER=kept-" + randomWord(t)
		b := startServe(t, []string{marker})
		environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", b.cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(environ, []byte(b.password)) || bytes.Contains(environ, []byte("KPS_ADMIN_PASSWORD=")) {
			t.Fatalf("/proc/<pid>/environ of kps serve still holds the admin password")
		}
		if !bytes.Contains(environ, []byte("\x00"+marker+"\x00")) && !bytes.HasPrefix(environ, []byte(marker+"\x00")) {
			t.Fatalf("the rest of the environment was damaged: %q", environ)
		}
		// The bootstrap had it: the admin logged in with it (startServe).
	})
}
