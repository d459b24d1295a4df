package console_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/client"
)

// built is the `kps` binary built once for this test binary, removed by TestMain.
var built struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// kpsBinary builds ./cmd/kps once: the console is tested in the binary users run.
func kpsBinary(t testing.TB) string {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "kps-console-bin-")
		if built.err != nil {
			return
		}
		built.path = filepath.Join(built.dir, "kps")
		out, err := exec.Command("go", "build", "-o", built.path, "github.com/openkps/kps/cmd/kps").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

const adminPassword = "console-admin-password"

// service is a running `kps serve` of the built binary.
type service struct {
	base    string      // http://127.0.0.1:PORT
	tls     *tls.Config // what trusts the service's test certificate; nil without TLS
	pid     int
	admin   *client.Client
	project string
	logMu   sync.Mutex
	log     strings.Builder
}

// cpu is the processor time the service's process has used (user and system).
func (s *service) cpu(tb testing.TB) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.pid))
	if err != nil {
		tb.Skipf("no /proc: %v", err)
	}
	// Fields after the command name (which may hold spaces) start after the last ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * (time.Second / 100) // USER_HZ is 100 on Linux
}

// logs is what the service logged so far.
func (s *service) logs() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.log.String()
}

// startService runs the built binary as `kps serve` on a free loopback port with a fresh data
// directory and the extra flags, and signs its admin in through the API.
func startService(t testing.TB, flags ...string) *service {
	t.Helper()
	return startServiceWith(t, "http", nil, flags...)
}

// startServiceWith is startService for a scheme (https with --tls-cert and --tls-key among the
// flags) and the TLS configuration that trusts the service.
func startServiceWith(t testing.TB, scheme string, tc *tls.Config, flags ...string) *service {
	t.Helper()
	bin := kpsBinary(t)
	args := append([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--log-level", "info"}, flags...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "KPS_ADMIN_PASSWORD="+adminPassword)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	s := &service{tls: tc, pid: cmd.Process.Pid}
	addr := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`msg="kps serving" listen=(\S+)`)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			s.logMu.Lock()
			s.log.WriteString(sc.Text() + "\n")
			s.logMu.Unlock()
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	select {
	case a := <-addr:
		s.base = scheme + "://" + a
	case <-time.After(60 * time.Second):
		t.Fatalf("kps serve did not start:\n%s", s.logs())
	}
	s.admin = client.New(s.base, 0)
	if tc != nil {
		s.admin.HTTP = &http.Client{Timeout: client.DefaultTimeout, Transport: &http.Transport{TLSClientConfig: tc}}
	}
	if err := s.admin.Login(context.Background(), client.PasswordLogin{Domain: "Default", User: "admin", Password: adminPassword, Project: "local-1"}); err != nil {
		t.Fatal(err)
	}
	s.project = s.admin.ProjectID
	return s
}

// addUser creates a user with role on the admin's project.
func (s *service) addUser(t testing.TB, name, password string, role kps.Role) {
	t.Helper()
	ctx := context.Background()
	u, err := s.admin.CreateUser(ctx, client.NewUser{Name: name, Password: password, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.admin.GrantRole(ctx, client.RoleAssignment{UserID: u.ID, Role: role, ProjectID: s.project}); err != nil {
		t.Fatal(err)
	}
}

// browserless is a console session without a browser: an HTTP client with a cookie jar,
// sending what a browser's form would.
type browserless struct {
	t    testing.TB
	base string
	hc   *http.Client
}

func newBrowserless(t testing.TB, s *service, local string) *browserless {
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{TLSClientConfig: s.tls}
	if local != "" {
		d := &netDialer{local: local}
		tr.DialContext = d.dial
	}
	return &browserless{t: t, base: s.base, hc: &http.Client{Jar: jar, Transport: tr, Timeout: 60 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// get fetches a console page and returns its status and body.
func (b *browserless) get(path string) (int, string) {
	b.t.Helper()
	resp, err := b.hc.Get(b.base + path)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// post sends a form as a browser would from a console page (same origin).
func (b *browserless) post(path string, form url.Values, header http.Header) (*http.Response, string) {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, b.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// csrf is the CSRF token of a console page.
func (b *browserless) csrf(path string) string {
	b.t.Helper()
	_, body := b.get(path)
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		b.t.Fatalf("no CSRF token on %s:\n%s", path, body)
	}
	return m[1]
}

// signIn signs in through the console's form and returns the status of the answer.
func (b *browserless) signIn(user, password string) int {
	b.t.Helper()
	resp, _ := b.post("/console/login", url.Values{"csrf": {b.csrf("/console/login")}, "user": {user},
		"password": {password}, "domain": {"Default"}, "project": {"local-1"}, "next": {"/console/"}}, nil)
	return resp.StatusCode
}

// netDialer connects from a chosen loopback address: each of 127.0.0.0/8 is a client of its
// own to the service.
type netDialer struct{ local string }

func (d *netDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(d.local)}, Timeout: 10 * time.Second}
	return nd.DialContext(ctx, network, addr)
}
