package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/cli"
	"github.com/openkps/kps/daemon"
	"github.com/openkps/kps/internal/kpstest"
	"github.com/openkps/kps/internal/openapitest"
	"github.com/openkps/kps/internal/sshdtest"
)

// console is what a command of the binary talks to: the standard streams and the environment.
type console struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

// run runs one command line of the binary in process and returns its exit code: the command
// tree of package cli with `kps serve` of package daemon plugged in, as cmd/kps/commands.go
// plugs it, its client's answers checked against docs/openapi.json (apiClient).
func run(ctx context.Context, args []string, con console) int {
	return cli.Run(ctx, args, cli.Console{Stdin: con.stdin, Stdout: con.stdout, Stderr: con.stderr, Getenv: con.getenv},
		cli.Options{Serve: serveCommand, Transport: apiClient.Transport})
}

// serveCommand is `kps serve` as cmd/kps/commands.go plugs it into the command tree.
func serveCommand() cli.Serve {
	c := daemon.NewCommand()
	return cli.Serve{Flags: c.Flags, Run: func(ctx context.Context, con cli.Console, given func(string) bool) error {
		return c.Run(ctx, con.Stdout, con.Stderr, con.Getenv, given)
	}}
}

// build is a kps binary the tests run: `go build` of cmd/kps with flags, once per test process.
type build struct {
	name  string
	flags []string
	once  sync.Once
	path  string
	err   error
}

var (
	kpsBuild  = &build{name: "kps"}
	raceBuild = &build{name: "kps-race", flags: []string{"-race"}} // TestSoak
)

// kpsBinary returns the path of the built kps binary.
func kpsBinary(t testing.TB) string {
	t.Helper()
	path, err := kpsBuild.binary()
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// binary builds the binary on first use and returns its path. It lives in a directory named
// after this source tree, so that runs replace it rather than pile up copies (a test process
// killed on its timeout removes nothing); the directory is 0755, since some tests run the
// binary as another user.
func (b *build) binary() (string, error) {
	b.once.Do(func() {
		wd, _ := os.Getwd()
		sum := sha256.Sum256([]byte(wd))
		dir := filepath.Join(os.TempDir(), fmt.Sprintf("kps-e2e-%d-%s", os.Getuid(), hex.EncodeToString(sum[:6])))
		if b.err = os.MkdirAll(dir, 0o755); b.err != nil {
			return
		}
		// The name is predictable: use the directory only if it is ours and nobody else may
		// write in it, so that nobody can swap the binary between the build and its run.
		st, err := os.Lstat(dir)
		if err != nil {
			b.err = err
			return
		}
		if sys, ok := st.Sys().(*syscall.Stat_t); !st.IsDir() || !ok || int(sys.Uid) != os.Getuid() || st.Mode().Perm()&0o022 != 0 {
			b.err = fmt.Errorf("%s is not a directory of this user that only it may write", dir)
			return
		}
		if b.err = os.Chmod(dir, 0o755); b.err != nil {
			return
		}
		tmp := filepath.Join(dir, fmt.Sprintf("%s.%d", b.name, os.Getpid()))
		args := append(append([]string{"build"}, b.flags...), "-o", tmp, "github.com/openkps/kps/cmd/kps")
		if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
			return
		}
		b.path = filepath.Join(dir, b.name)
		b.err = os.Rename(tmp, b.path)
	})
	return b.path, b.err
}

// apiClient is the HTTP client of the end-to-end tests: every answer it receives is checked
// against docs/openapi.json on the way (internal/openapitest), so the document cannot drift from
// the service unnoticed. Clients with transports of their own wrap them in
// openapitest.NewTransport.
var apiClient = openapitest.Client()

// TestMain also fails the run for an answer that did not match the document although the test
// that received it went on (a retry, a tolerated error).
func TestMain(m *testing.M) { os.Exit(openapitest.Main(m)) }

// service is a running `kps serve` (in process or not) and a token for its admin.
type service struct {
	t       testing.TB
	base    string
	token   string
	project string
	main    *daemon.Main
}

// setup starts the real service on a free port with a fresh data directory.
func setup(t testing.TB, mutate ...func(*daemon.Config)) *service {
	t.Helper()
	return setupLogged(t, io.Discard, mutate...)
}

// lockedBuffer collects a service's log safely across goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// setupLogged is setup with the service's stdout and log going to out.
func setupLogged(t testing.TB, out io.Writer, mutate ...func(*daemon.Config)) *service {
	t.Helper()
	cfg := daemon.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Region: "local-1", Workers: 4,
		KeyPairQuota: 1000, MaxQueued: 1000, TokenTTL: time.Hour, Lease: 6 * time.Second,
		TaskTimeout: 60 * time.Second, Shutdown: 5 * time.Second, LogLevel: "error",
		AdminPassword: "admin-password-for-tests"}
	for _, f := range mutate {
		f(&cfg)
	}
	m := daemon.NewMain(cfg, out, out)
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	s := &service{t: t, base: "http://" + m.Addr(), main: m}
	s.login("admin-password-for-tests")
	return s
}

func (s *service) login(password string) { s.loginAs("admin", password) }

// loginAs replaces the service's token with one of the named user of domain Default.
func (s *service) loginAs(user, password string) {
	s.t.Helper()
	body := `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"` + user + `","domain":{"name":"Default"},"password":"` + password + `"}}},"scope":{"project":{"name":"local-1","domain":{"name":"Default"}}}}}`
	resp, err := apiClient.Post(s.base+"/v3/auth/tokens", "application/json", strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Token struct {
			Project struct{ ID string } `json:"project"`
		} `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusCreated {
		s.t.Fatalf("login: %d %v", resp.StatusCode, err)
	}
	s.token, s.project = resp.Header.Get("X-Subject-Token"), out.Token.Project.ID
	if s.token == "" || len(s.project) != 32 {
		s.t.Fatalf("login returned token %q project %q", s.token, s.project)
	}
}

// call sends a request to /v3/{project}/<path> with the admin token and decodes the JSON answer.
func (s *service) call(method, path string, body any) (int, map[string]any) {
	s.t.Helper()
	return s.raw(method, "/v3/"+s.project+path, body, map[string]string{"X-Auth-Token": s.token})
}

func (s *service) raw(method, path string, body any, headers map[string]string) (int, map[string]any) {
	s.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, s.base+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json;charset=UTF-8")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := apiClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if len(resp.Header.Get("X-Request-Id")) != 32 {
		s.t.Errorf("%s %s: X-Request-Id %q", method, path, resp.Header.Get("X-Request-Id"))
	}
	var out map[string]any
	if len(raw) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &out); err != nil {
			s.t.Fatalf("%s %s: %d non-JSON body %q", method, path, resp.StatusCode, raw)
		}
	}
	if resp.StatusCode >= 400 {
		if c, _ := out["error_code"].(string); !strings.HasPrefix(c, "KPS.") || out["error_msg"] == "" {
			s.t.Errorf("%s %s: error body %s", method, path, raw)
		}
	}
	return resp.StatusCode, out
}

// must asserts the status of a call and returns its body.
func (s *service) must(status int, method, path string, body any) map[string]any {
	s.t.Helper()
	got, out := s.call(method, path, body)
	if got != status {
		s.t.Fatalf("%s %s: status %d, want %d: %v", method, path, got, status, out)
	}
	return out
}

// wantError asserts an error status and KPS code.
func (s *service) wantError(status int, code, method, path string, body any) {
	s.t.Helper()
	got, out := s.call(method, path, body)
	if got != status || out["error_code"] != code {
		s.t.Fatalf("%s %s: %d %v, want %d %s", method, path, got, out, status, code)
	}
}

// addHost registers a test host in the inventory.
func (s *service) addHost(id string, h *sshdtest.Host, extra map[string]any) {
	s.t.Helper()
	srv := map[string]any{"id": id, "name": id + " (test)", "address": h.Address, "port": h.Port, "user": h.User, "sshd_config": h.ConfigPath}
	for k, v := range extra {
		srv[k] = v
	}
	s.must(201, "POST", "/servers", map[string]any{"server": srv})
}

// waitTask polls a task until it leaves READY/RUNNING and returns its final status.
func (s *service) waitTask(id string) string {
	s.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		out := s.must(200, "GET", "/tasks/"+id, nil)
		st := out["task_status"].(string)
		if strings.HasPrefix(st, "SUCCESS_") || strings.HasPrefix(st, "FAILED_") {
			return st
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("task %s did not end", id)
	return ""
}

// failedTask returns the failed-task entry of a task.
func (s *service) failedTask(id string) map[string]any {
	s.t.Helper()
	out := s.must(200, "GET", "/failed-tasks", nil)
	for _, it := range out["tasks"].([]any) {
		m := it.(map[string]any)
		if m["task_id"] == id {
			return m
		}
	}
	s.t.Fatalf("task %s is not in the failed-task list %v", id, out)
	return nil
}

// silentListener accepts TCP connections and never speaks: an SSH handshake against it stalls.
func silentListener(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().(*net.TCPAddr).Port
}

// closedPort returns a loopback port nobody listens on.
func closedPort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

func str(v any) string { return fmt.Sprint(v) }

// addUser creates a user of domain Default with a role on the default project and returns a
// client logged in as that user.
func (s *service) addUser(name string, role kps.Role) *service {
	s.t.Helper()
	kpstest.AddUser(s.t, s.main, s.project, name, role)
	other := &service{t: s.t, base: s.base, main: s.main}
	other.loginAs(name, name+"-password")
	return other
}
