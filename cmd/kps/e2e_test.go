package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/iam"
	"github.com/openkps/kps/internal/openapitest"
	"github.com/openkps/kps/internal/sshdtest"
)

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
	main    *Main
}

// setup starts the real service on a free port with a fresh data directory.
func setup(t testing.TB, mutate ...func(*Config)) *service {
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
func setupLogged(t testing.TB, out io.Writer, mutate ...func(*Config)) *service {
	t.Helper()
	cfg := Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Region: "local-1", Workers: 4,
		KeyPairQuota: 1000, MaxQueued: 1000, TokenTTL: time.Hour, Lease: 6 * time.Second,
		TaskTimeout: 60 * time.Second, Shutdown: 5 * time.Second, LogLevel: "error",
		AdminPassword: "admin-password-for-tests"}
	for _, f := range mutate {
		f(&cfg)
	}
	m := NewMain(cfg, out, out)
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
	ctx := context.Background()
	st := s.main.store
	d, err := st.DomainByName(ctx, "Default")
	if err != nil || d == nil {
		s.t.Fatalf("domain Default: %v", err)
	}
	hash, err := iam.HashPassword(name + "-password")
	if err != nil {
		s.t.Fatal(err)
	}
	u := &kps.User{Name: name, DomainID: d.ID, Enabled: true, PasswordHash: hash}
	if err := st.CreateUser(ctx, u); err != nil {
		s.t.Fatal(err)
	}
	if err := st.GrantRole(ctx, kps.RoleAssignment{UserID: u.ID, Role: role, ProjectID: s.project}); err != nil {
		s.t.Fatal(err)
	}
	other := &service{t: s.t, base: s.base, main: s.main}
	other.loginAs(name, name+"-password")
	return other
}
