package interop_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/openkps/kps"
	"github.com/openkps/kps/daemon"
	"github.com/openkps/kps/internal/kpstest"
	"github.com/openkps/kps/internal/openapitest"
	"github.com/openkps/kps/internal/sshdtest"
)

// The harness: the real service in process and a client holding a token. It is a subset of
// e2e's (e2e/e2e_test.go), which lives in the tests of another module.

const adminPassword = "admin-password-for-tests"

// apiClient checks every answer it receives against docs/openapi.json (internal/openapitest),
// as e2e's does: the SDKs and gophercloud see the same document the service promises.
var apiClient = openapitest.Client()

// TestMain also fails the run for an answer that did not match the document although the test
// that received it went on.
func TestMain(m *testing.M) { os.Exit(openapitest.Main(m)) }

// service is a running service and a token for one of its users.
type service struct {
	t       testing.TB
	base    string
	client  *http.Client
	token   string
	project string
	main    *daemon.Main
}

// setup starts the real service on a free port with a fresh data directory, logged in as admin.
func setup(t testing.TB, mutate ...func(*daemon.Config)) *service {
	t.Helper()
	s := start(t, mutate...)
	s.loginAs("admin", adminPassword)
	return s
}

// start starts the real service like setup, without logging in (a client over TLS must trust
// the service's CA first).
func start(t testing.TB, mutate ...func(*daemon.Config)) *service {
	t.Helper()
	cfg := daemon.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Region: "local-1", Workers: 4,
		KeyPairQuota: 1000, MaxQueued: 1000, TokenTTL: time.Hour, Lease: 6 * time.Second,
		TaskTimeout: 60 * time.Second, Shutdown: 5 * time.Second, LogLevel: "error", AdminPassword: adminPassword}
	for _, f := range mutate {
		f(&cfg)
	}
	m := daemon.NewMain(cfg, io.Discard, io.Discard)
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	scheme := "http://"
	if cfg.TLSCert != "" {
		scheme = "https://"
	}
	return &service{t: t, base: scheme + m.Addr(), client: apiClient, main: m}
}

// loginAs replaces the service's token with one of the named user of domain Default, scoped to
// the project local-1.
func (s *service) loginAs(user, password string) {
	s.t.Helper()
	body := `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"` + user + `","domain":{"name":"Default"},"password":"` + password + `"}}},"scope":{"project":{"name":"local-1","domain":{"name":"Default"}}}}}`
	resp, err := s.client.Post(s.base+"/v3/auth/tokens", "application/json", strings.NewReader(body))
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

// must sends a request to /v3/{project}<path> with the token, asserts the status and returns
// the decoded JSON answer.
func (s *service) must(status int, method, path string, body any) map[string]any {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, s.base+"/v3/"+s.project+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("X-Auth-Token", s.token)
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			s.t.Fatalf("%s %s: %d non-JSON body %q", method, path, resp.StatusCode, raw)
		}
	}
	if resp.StatusCode != status {
		s.t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, status, raw)
	}
	return out
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

// addUser creates a user of domain Default with a role on the project (the password is the
// name followed by "-password").
func (s *service) addUser(name string, role kps.Role) {
	s.t.Helper()
	kpstest.AddUser(s.t, s.main, s.project, name, role)
}

// userIDOf is the ID of a user of domain Default.
func (s *service) userIDOf(name string) string {
	s.t.Helper()
	ctx := context.Background()
	d, _ := s.main.Store().DomainByName(ctx, "Default")
	u, err := s.main.Store().UserByName(ctx, d.ID, name)
	if err != nil || u == nil {
		s.t.Fatalf("user %s: %v", name, err)
	}
	return u.ID
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

// ed25519Line returns a fresh public key as an authorized_keys line.
func ed25519Line(t testing.TB, comment string) string {
	_, pub := newEd25519(t, comment)
	return pub
}

// newEd25519 returns a fresh key pair: the private key in OpenSSH PEM, the public key as an
// authorized_keys line.
func newEd25519(t testing.TB, comment string) (priv, pub string) {
	t.Helper()
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(sk, comment)
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := ssh.NewPublicKey(pk)
	return string(pem.EncodeToMemory(block)), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " " + comment
}
