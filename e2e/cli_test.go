package e2e

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/sys/unix"

	"github.com/openkps/kps/cli"
	"github.com/openkps/kps/internal/sshdtest"
)

// terminal runs the command tree in process (run) against one service, with its own config
// directory and environment.
type terminal struct {
	t   *testing.T
	s   *service
	env map[string]string
}

// result is what one command did.
type result struct {
	code           int
	stdout, stderr string
}

func newTerminal(t *testing.T, s *service) *terminal {
	return &terminal{t: t, s: s, env: map[string]string{"KPS_CONFIG_DIR": t.TempDir(), "KPS_ENDPOINT": s.base}}
}

func (tm *terminal) runIn(stdin string, args ...string) result {
	tm.t.Helper()
	var out, errOut bytes.Buffer
	con := console{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut, getenv: func(k string) string { return tm.env[k] }}
	code := run(context.Background(), args, con)
	return result{code, out.String(), errOut.String()}
}

// must runs a command that has to end with the exit code.
func (tm *terminal) must(code int, stdin string, args ...string) result {
	tm.t.Helper()
	r := tm.runIn(stdin, args...)
	if r.code != code {
		tm.t.Fatalf("kps %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	return r
}

// login logs the terminal in as the admin of the service.
func (tm *terminal) login() {
	tm.t.Helper()
	tm.must(0, "admin-password-for-tests\n", "login", "--user", "admin", "--password-stdin")
}

func decodeJSON[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, s)
	}
	return v
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestCLILoginAndProfiles(t *testing.T) {
	t.Parallel()
	s := setup(t)
	tm := newTerminal(t, s)

	// Not logged in: a usage error that says what to do.
	if r := tm.must(2, "", "keypair", "list"); !strings.Contains(r.stderr, "kps login") {
		t.Fatalf("stderr: %s", r.stderr)
	}
	// A wrong password is an API error with its KPS code.
	if r := tm.must(1, "wrong\n", "login", "--user", "admin", "--password-stdin"); !strings.Contains(r.stderr, "KPS.") {
		t.Fatalf("stderr: %s", r.stderr)
	}
	// No terminal to prompt on and no --password-stdin: usage error.
	tm.must(2, "", "login", "--user", "admin")
	tm.must(2, "", "login", "--password-stdin")

	tm.login()
	path := filepath.Join(tm.env["KPS_CONFIG_DIR"], "profiles", "default.json")
	if m := fileMode(t, path); m != 0o600 {
		t.Fatalf("profile mode %v", m)
	}
	p := decodeJSON[cli.Profile](t, string(must(os.ReadFile(path))))
	if p.Token == "" || p.ProjectID != s.project || p.User != "admin" {
		t.Fatalf("profile %+v", p)
	}
	// Logging in again reuses the profile's user; a revoked token says to log in again.
	tm.must(0, "admin-password-for-tests\n", "login", "--password-stdin")
	p = decodeJSON[cli.Profile](t, string(must(os.ReadFile(path))))
	s.raw("DELETE", "/v3/auth/tokens", nil, map[string]string{"X-Auth-Token": s.token, "X-Subject-Token": p.Token})
	if r := tm.must(1, "", "keypair", "list"); !strings.Contains(r.stderr, "KPS.") || !strings.Contains(r.stderr, "kps login") {
		t.Fatalf("revoked token: %s", r.stderr)
	}
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("admin-password-for-tests\n"), 0o600)
	tm.must(0, "", "login", "--password-file", pwFile)
	// On a terminal the password is prompted for without echo.
	master, tty := openPTY(t)
	var screen lockedBuffer
	drained := make(chan struct{})
	go func() { io.Copy(&screen, master); close(drained) }()
	var prompt lockedBuffer
	done := make(chan int)
	go func() {
		con := console{stdin: tty, stdout: io.Discard, stderr: &prompt, getenv: func(k string) string { return tm.env[k] }}
		done <- run(context.Background(), []string{"login", "--user", "admin"}, con)
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		st, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
		if err == nil && st.Lflag&unix.ECHO == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("echo was never turned off")
		}
	}
	master.Write([]byte("admin-password-for-tests\n"))
	if code := <-done; code != 0 || !strings.Contains(prompt.String(), "Password for admin: ") {
		t.Fatalf("prompted login: exit %d, stderr %q", code, prompt.String())
	}
	tty.Close() // the copier ends once the terminal has shown everything
	<-drained
	if strings.Contains(screen.String(), "admin-password") {
		t.Fatalf("the password was echoed: %q", screen.String())
	}
	// KPS_PASSWORD works too, and --profile keeps profiles apart.
	tm.env["KPS_PASSWORD"] = "admin-password-for-tests"
	tm.must(0, "", "login", "--user", "admin", "--profile", "second")
	delete(tm.env, "KPS_PASSWORD")
	if m := fileMode(t, filepath.Join(tm.env["KPS_CONFIG_DIR"], "profiles", "second.json")); m != 0o600 {
		t.Fatalf("second profile mode %v", m)
	}
	tm.must(0, "", "keypair", "list", "--profile", "second")
	tm.must(2, "", "keypair", "list", "--profile", "nobody")
	tm.must(2, "", "keypair", "list", "--profile", "../etc")

	// AK/SK: login --access-key stores the key and signs every request.
	ak, sk := s.accessKey("admin")
	tm.must(0, sk+"\n", "login", "--access-key", ak, "--secret-key-stdin", "--project-id", s.project, "--profile", "aksk")
	ap := decodeJSON[cli.Profile](t, string(must(os.ReadFile(filepath.Join(tm.env["KPS_CONFIG_DIR"], "profiles", "aksk.json")))))
	if ap.AccessKey != ak || ap.SecretKey != sk || ap.Token != "" {
		t.Fatalf("AK/SK profile %+v", ap)
	}
	tm.must(0, "", "keypair", "create", "signed", "--out", filepath.Join(t.TempDir(), "k.pem"), "--profile", "aksk")
	if r := tm.must(1, "wrong-secret\n", "configure", "--access-key", ak, "--secret-key-stdin", "--project-id", s.project, "--profile", "bad"); !strings.Contains(r.stderr, "KPS.6102") {
		t.Fatalf("bad SK: %s", r.stderr)
	}
	tm.must(2, "", "configure", "--secret-key-stdin")

	// The environment overrides the profile: a signed request with no profile at all.
	env := newTerminal(t, s)
	env.env["KPS_PROJECT_ID"], env.env["KPS_ACCESS_KEY"], env.env["KPS_SECRET_KEY"] = s.project, ak, sk
	r := env.must(0, "", "keypair", "list", "-o", "json")
	if list := decodeJSON[[]map[string]any](t, r.stdout); len(list) != 1 || list[0]["name"] != "signed" {
		t.Fatalf("list: %v", list)
	}
	// With the AK in the environment, login --user still logs in with the password.
	env.must(0, "admin-password-for-tests\n", "login", "--user", "admin", "--password-stdin")
	if p := decodeJSON[cli.Profile](t, string(must(os.ReadFile(filepath.Join(env.env["KPS_CONFIG_DIR"], "profiles", "default.json"))))); p.Token == "" || p.AccessKey != "" {
		t.Fatalf("profile %+v", p)
	}
	env.env["KPS_SECRET_KEY"] = "nope"
	env.must(1, "", "keypair", "list")
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestCLIKeyPairs(t *testing.T) {
	t.Parallel()
	s := setup(t)
	tm := newTerminal(t, s)
	tm.login()
	dir := t.TempDir()

	// create: the private key only to --out (0600) or with --show.
	tm.must(2, "", "keypair", "create", "web")
	pem := filepath.Join(dir, "web.pem")
	r := tm.must(0, "", "keypair", "create", "web", "--out", pem, "-o", "json")
	kp := decodeJSON[map[string]any](t, r.stdout)
	if kp["name"] != "web" || kp["private_key"] != nil || strings.Contains(r.stdout, "PRIVATE KEY") {
		t.Fatalf("create printed %s", r.stdout)
	}
	if fileMode(t, pem) != 0o600 || !strings.Contains(string(must(os.ReadFile(pem))), "PRIVATE KEY") {
		t.Fatal("private key file")
	}
	// An existing file is never overwritten by accident: without --force the command refuses
	// before any key pair exists; with --force a wider file is replaced by a 0600 one.
	wide := filepath.Join(dir, "wide.pem")
	os.WriteFile(wide, []byte("old"), 0o644)
	if r := tm.must(2, "", "keypair", "create", "hosted", "--host", "--out", wide); !strings.Contains(r.stderr, "--force") {
		t.Fatalf("existing --out: %s", r.stderr)
	}
	s.wantError(404, "KPS.6201", "GET", "/keypairs/hosted", nil)
	if string(must(os.ReadFile(wide))) != "old" {
		t.Fatal("the existing file was touched")
	}
	tm.must(0, "", "keypair", "create", "hosted", "--host", "--out", wide, "--force")
	if fileMode(t, wide) != 0o600 || !strings.Contains(string(must(os.ReadFile(wide))), "PRIVATE KEY") {
		t.Fatalf("mode %v", fileMode(t, wide))
	}
	if r := tm.must(0, "", "keypair", "create", "shown", "--show"); !strings.HasPrefix(r.stdout, "-----BEGIN") {
		t.Fatalf("--show: %.40q", r.stdout)
	}
	if r := tm.must(1, "", "keypair", "create", "web", "--out", filepath.Join(dir, "x.pem")); !strings.Contains(r.stderr, "KPS.6301") {
		t.Fatalf("duplicate: %s", r.stderr)
	}

	// import with a public key file, and with its private key hosted.
	priv, pub := newEd25519(t, "laptop")
	pubFile, privFile := filepath.Join(dir, "laptop.pub"), filepath.Join(dir, "laptop")
	os.WriteFile(pubFile, []byte(pub+"\n"), 0o644)
	os.WriteFile(privFile, []byte(priv), 0o600)
	tm.must(0, "", "keypair", "import", "laptop", "--public-key-file", pubFile, "--description", "my laptop")
	tm.must(2, "", "keypair", "import", "nokey")
	tm.must(1, "not a key", "keypair", "import", "bad", "--public-key-file", "-")

	// show / update / list in every format.
	r = tm.must(0, "", "keypair", "show", "laptop", "-o", "json")
	if d := decodeJSON[map[string]any](t, r.stdout); d["description"] != "my laptop" || d["is_key_protection"] != false {
		t.Fatalf("show: %v", d)
	}
	tm.must(0, "", "keypair", "update", "laptop", "--description", "renamed")
	var y map[string]any
	r = tm.must(0, "", "keypair", "show", "-o", "yaml", "laptop")
	if err := yaml.Unmarshal([]byte(r.stdout), &y); err != nil || y["description"] != "renamed" {
		t.Fatalf("yaml: %v %v\n%s", err, y, r.stdout)
	}
	if _, isInt := y["create_time"].(int); !isInt {
		t.Fatalf("create_time in YAML: %T %v", y["create_time"], y["create_time"])
	}
	if r := tm.must(0, "", "keypair", "show", "laptop"); !strings.Contains(r.stdout, "renamed") || !strings.Contains(r.stdout, "create_time:") {
		t.Fatalf("table: %s", r.stdout)
	}
	tm.must(1, "", "keypair", "show", "ghost")
	tm.must(2, "", "keypair", "show")
	tm.must(2, "", "keypair", "show", "laptop", "-o", "xml")

	// batch-import: named after the files; a bad one makes a partial failure (3).
	var files []string
	for i := range 12 {
		_, p := newEd25519(t, "b")
		f := filepath.Join(dir, fmt.Sprintf("batch%02d.pub", i))
		os.WriteFile(f, []byte(p), 0o644)
		files = append(files, f)
	}
	os.WriteFile(files[11], []byte("garbage"), 0o644)
	r = tm.must(3, "", append([]string{"keypair", "batch-import", "-o", "json"}, files...)...)
	rows := decodeJSON[[]map[string]any](t, r.stdout)
	if len(rows) != 12 || rows[11]["result"] != "failed" || !strings.HasPrefix(str(rows[11]["reason"]), "KPS.") {
		t.Fatalf("batch-import: %v", rows)
	}

	// list pages through everything unless --limit.
	r = tm.must(0, "", "keypair", "list", "-o", "json")
	if list := decodeJSON[[]map[string]any](t, r.stdout); len(list) != 15 {
		t.Fatalf("list: %d", len(list))
	}
	r = tm.must(0, "", "keypair", "list", "--limit", "4", "-o", "json")
	if list := decodeJSON[[]map[string]any](t, r.stdout); len(list) != 4 {
		t.Fatalf("list --limit 4: %d", len(list))
	}
	if r := tm.must(0, "", "keypair", "list"); !strings.HasPrefix(r.stdout, "NAME") || strings.Count(r.stdout, "\n") != 16 {
		t.Fatalf("table:\n%s", r.stdout)
	}

	// private keys: import, export to a 0600 file, batch-export as a 0600 zip, clear.
	tm.must(0, "", "keypair", "private-key", "import", "laptop", "--private-key-file", privFile)
	tm.must(2, "", "keypair", "private-key", "export", "laptop")
	out := filepath.Join(dir, "exported.pem")
	tm.must(0, "", "keypair", "private-key", "export", "laptop", "--out", out)
	if fileMode(t, out) != 0o600 || string(must(os.ReadFile(out))) != priv {
		t.Fatal("exported private key")
	}
	zipPath := filepath.Join(dir, "keys.zip")
	tm.must(0, "", "keypair", "private-key", "batch-export", "laptop", "hosted", "--out", zipPath)
	zr, err := zip.OpenReader(zipPath)
	if err != nil || len(zr.File) != 2 || fileMode(t, zipPath) != 0o600 {
		t.Fatalf("zip: %v", err)
	}
	zr.Close()
	tm.must(0, "", "keypair", "private-key", "clear", "laptop")
	if r := tm.must(1, "", "keypair", "private-key", "export", "laptop", "--out", out, "--force"); !strings.Contains(r.stderr, "KPS.6018") {
		t.Fatalf("export after clear: %s", r.stderr)
	}

	// delete: one missing among several is a partial failure.
	tm.must(0, "", "keypair", "delete", "shown")
	tm.must(3, "", "keypair", "delete", "batch00", "ghost")
	if r := tm.must(1, "", "keypair", "delete", "ghost"); !strings.Contains(r.stderr, "KPS.6201") {
		t.Fatalf("delete ghost: %s", r.stderr)
	}
}

// TestCLIFleetBindAndRetry binds one key pair to good and failing servers, then fixes the
// failing one and retries its task.
func TestCLIFleetBindAndRetry(t *testing.T) {
	t.Parallel()
	s := setup(t)
	tm := newTerminal(t, s)
	tm.login()
	h1 := sshdtest.Start(t, sshdtest.Options{})
	h2 := sshdtest.Start(t, sshdtest.Options{})
	h3 := sshdtest.Start(t, sshdtest.Options{})
	for id, h := range map[string]*sshdtest.Host{"good-1": h1, "good-2": h2} {
		tm.must(0, h.Password, "server", "add", id, "--address", h.Address, "--port", fmt.Sprint(h.Port), "--user", h.User,
			"--sshd-config", h.ConfigPath, "--credential-password-stdin")
	}
	// A closed port: the task fails on the host.
	tm.must(0, h3.Password, "server", "add", "bad", "--address", "127.0.0.1", "--port", fmt.Sprint(closedPort(t)), "--user", h3.User,
		"--sshd-config", h3.ConfigPath, "--credential-password-stdin")
	tm.must(0, "", "keypair", "create", "fleet", "--out", filepath.Join(t.TempDir(), "fleet.pem"))

	list := filepath.Join(t.TempDir(), "fleet.txt")
	os.WriteFile(list, []byte("# the fleet\ngood-1\nbad\n"), 0o644)
	tm.must(2, "", "keypair", "bind", "fleet")
	r := tm.must(3, "", "keypair", "bind", "fleet", "--servers-from", list, "--servers", "good-2,unknown", "-o", "json")
	got := map[string]outcome{}
	for _, o := range decodeJSON[[]outcome](t, r.stdout) {
		got[o.Server] = o
	}
	if got["good-1"].Status != "SUCCESS_RESET" || got["good-2"].Status != "SUCCESS_RESET" ||
		got["bad"].Status != "FAILED_RESET" || !strings.HasPrefix(got["bad"].ErrorCode, "KPS.") ||
		got["unknown"].Status != "FAILED" || got["unknown"].ErrorCode != "KPS.6204" {
		t.Fatalf("summary: %+v\nstderr: %s", got, r.stderr)
	}
	// Not a terminal: plain progress lines, no bar.
	if !strings.Contains(r.stderr, "good-1: SUCCESS_RESET") || strings.Contains(r.stderr, "\r") {
		t.Fatalf("progress: %q", r.stderr)
	}
	// The table form carries the same summary.
	r = tm.must(1, "", "keypair", "bind", "fleet", "--servers", "unknown")
	if !strings.Contains(r.stdout, "KPS.6204") || !strings.Contains(r.stdout, "0 succeeded, 1 failed") {
		t.Fatalf("table: %s", r.stdout)
	}

	// The failed task is listed; retry before the fix fails again and keeps the record.
	badTask := got["bad"].TaskID
	r = tm.must(0, "", "task", "list-failed", "-o", "json")
	if l := decodeJSON[[]map[string]any](t, r.stdout); len(l) != 1 || l[0]["task_id"] != badTask {
		t.Fatalf("failed list: %v", l)
	}
	r = tm.must(0, "", "task", "show", badTask, "-o", "json")
	if decodeJSON[map[string]any](t, r.stdout)["task_status"] != "FAILED_RESET" {
		t.Fatalf("task show: %s", r.stdout)
	}
	tm.must(1, "", "task", "show", "no-such-task")
	tm.must(2, "", "task", "retry", "no-such-task")

	// Fix the cause (the right port), retry: success and the failed record is gone.
	tm.must(0, "", "server", "update", "bad", "--port", fmt.Sprint(h3.Port))
	r = tm.must(0, "", "task", "retry", badTask, "-o", "json")
	retried := decodeJSON[[]map[string]any](t, r.stdout)
	if len(retried) != 1 || retried[0]["status"] != "SUCCESS_RESET" || retried[0]["failed_task_id"] != badTask {
		t.Fatalf("retry: %v", retried)
	}
	s.wantError(404, "KPS.6202", "GET", "/tasks/"+badTask, nil)
	if r := tm.must(0, "", "task", "list-failed", "-o", "json"); r.stdout != "[]\n" {
		t.Fatalf("failed after retry: %s", r.stdout)
	}
	if srv := s.must(200, "GET", "/servers/bad", nil)["server"].(map[string]any); srv["keypair_name"] != "fleet" {
		t.Fatalf("server after retry: %v", srv)
	}
	tm.must(0, "", "task", "list-running")

	// Unbind two servers; then the failed-task commands.
	r = tm.must(0, "", "keypair", "unbind", "--servers", "good-1,good-2")
	if !strings.Contains(r.stdout, "SUCCESS_UNBIND") || !strings.Contains(r.stdout, "2 succeeded, 0 failed") {
		t.Fatalf("unbind: %s", r.stdout)
	}
	tm.must(1, "", "keypair", "bind", "fleet", "--servers", "unknown")
	tm.must(0, "", "server", "update", "bad", "--port", fmt.Sprint(closedPort(t)))
	r = tm.must(1, "", "keypair", "unbind", "--servers", "bad", "-o", "json")
	failedID := decodeJSON[[]outcome](t, r.stdout)[0].TaskID
	tm.must(0, "", "task", "delete-failed", failedID)
	tm.must(1, "", "task", "delete-failed", failedID)
	tm.must(1, "", "keypair", "unbind", "--servers", "bad")
	tm.must(0, "", "task", "clear-failed")
	if r := tm.must(0, "", "task", "list-failed"); strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("after clear: %s", r.stdout)
	}

	// On a terminal the progress is a bar redrawn in place.
	master, tty := openPTY(t)
	var screen bytes.Buffer
	read := make(chan struct{})
	go func() { io.Copy(&screen, master); close(read) }()
	var out bytes.Buffer
	con := console{stdin: strings.NewReader(""), stdout: &out, stderr: tty, getenv: func(k string) string { return tm.env[k] }}
	if code := run(context.Background(), []string{"keypair", "bind", "fleet", "--servers", "good-1,good-2"}, con); code != 0 {
		t.Fatalf("bind on a terminal: exit %d: %s", code, out.String())
	}
	tty.Close()
	<-read
	if !strings.Contains(screen.String(), "\r[") || !strings.Contains(screen.String(), "] 2/2") || strings.Contains(screen.String(), "good-1: SUCCESS") {
		t.Fatalf("terminal progress: %q", screen.String())
	}
}

// openPTY opens a pseudo-terminal pair: what is written to tty can be read from master.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return master, tty
}

func TestCLIServers(t *testing.T) {
	t.Parallel()
	s := setup(t)
	tm := newTerminal(t, s)
	tm.login()
	tm.must(0, "", "server", "add", "web-01", "--address", "10.0.0.5", "--user", "ubuntu")
	tm.must(2, "", "server", "add", "web-02")
	if r := tm.must(1, "", "server", "add", "web-01", "--address", "10.0.0.6"); !strings.Contains(r.stderr, "KPS.6306") {
		t.Fatalf("duplicate: %s", r.stderr)
	}
	// A bad flag value is named before anything is sent.
	if r := tm.must(2, "", "server", "add", "web-03", "--address", "10.0.0.7", "--port", "70000"); !strings.Contains(r.stderr, "--port 70000") {
		t.Fatalf("bad port: %s", r.stderr)
	}
	s.wantError(404, "KPS.6204", "GET", "/servers/web-03", nil)
	r := tm.must(0, "", "server", "update", "web-01", "--port", "2222", "-o", "json")
	if srv := decodeJSON[map[string]any](t, r.stdout); srv["port"] != float64(2222) || srv["user"] != "ubuntu" {
		t.Fatalf("update: %v", srv)
	}
	tm.must(2, "", "server", "update", "web-01")
	tm.must(1, "", "server", "show", "ghost")

	// Ansible INI: host vars, group vars, [all:vars], children sections skipped; one refused.
	ini := `# inventory
[web]
web-01 ansible_host=10.0.1.1 ansible_port=2200
web-02 ansible_host=10.0.1.2 ansible_user=deploy

[db]
db-01 ansible_host="db.internal"
broken ansible_host=10.0.1.9 ansible_port=99999

[db:vars]
ansible_user=postgres

[all:vars]
ansible_user=admin

[prod:children]
web
db
`
	dir := t.TempDir()
	iniPath := filepath.Join(dir, "hosts")
	os.WriteFile(iniPath, []byte(ini), 0o644)
	r = tm.must(3, "", "server", "import", iniPath, "-o", "json")
	results := map[string]string{}
	for _, row := range decodeJSON[[]map[string]any](t, r.stdout) {
		results[str(row["id"])] = str(row["result"])
		if row["result"] == "refused" && row["error_code"] != "KPS.6015" {
			t.Errorf("refused %v", row)
		}
	}
	if results["web-01"] != "updated" || results["web-02"] != "added" || results["db-01"] != "added" || results["broken"] != "refused" || len(results) != 4 {
		t.Fatalf("import: %v", results)
	}
	want := map[string][3]any{"web-01": {"10.0.1.1", float64(2200), "admin"}, "web-02": {"10.0.1.2", float64(22), "deploy"}, "db-01": {"db.internal", float64(22), "postgres"}}
	for id, w := range want {
		srv := s.must(200, "GET", "/servers/"+id, nil)["server"].(map[string]any)
		if srv["address"] != w[0] || srv["port"] != w[1] || srv["user"] != w[2] {
			t.Errorf("%s: %v, want %v", id, srv, w)
		}
	}

	// Ansible YAML inventory and a plain JSON list.
	yml := `all:
  vars:
    ansible_user: ops
  children:
    cache:
      hosts:
        cache-01:
          ansible_host: 10.0.2.1
          ansible_port: 2022
        cache-02:
          ansible_host: 10.0.2.2
          kps_name: Cache two
`
	ymlPath := filepath.Join(dir, "inventory.yml")
	os.WriteFile(ymlPath, []byte(yml), 0o644)
	tm.must(0, "", "server", "import", ymlPath)
	if srv := s.must(200, "GET", "/servers/cache-02", nil)["server"].(map[string]any); srv["user"] != "ops" || srv["name"] != "Cache two" || srv["address"] != "10.0.2.2" {
		t.Fatalf("cache-02: %v", srv)
	}
	jsonPath := filepath.Join(dir, "servers.json")
	os.WriteFile(jsonPath, []byte(`[{"id":"json-01","address":"10.0.3.1"},{"id":"json-02","address":"bad address!"}]`), 0o644)
	tm.must(3, "", "server", "import", jsonPath)
	os.WriteFile(jsonPath, []byte(`{not json`), 0o644)
	tm.must(2, "", "server", "import", jsonPath)

	r = tm.must(0, "", "server", "list", "-o", "json")
	if l := decodeJSON[[]map[string]any](t, r.stdout); len(l) != 6 {
		t.Fatalf("list: %d %v", len(l), l)
	}
	if r := tm.must(0, "", "server", "list", "--limit", "2", "-o", "yaml"); strings.Count(r.stdout, "- address:") != 2 {
		t.Fatalf("yaml list: %s", r.stdout)
	}
	tm.must(0, "", "server", "rm", "json-01")
	tm.must(3, "", "server", "rm", "web-02", "json-01")
	tm.must(1, "", "server", "rm", "json-01")
}

// outcome is a line of a fleet command's JSON summary.
type outcome struct {
	Server       string `json:"server_id"`
	FailedTaskID string `json:"failed_task_id"`
	Previous     string `json:"previous_keypair"`
	KeyPair      string `json:"keypair_name"`
	TaskID       string `json:"task_id"`
	Status       string `json:"status"`
	ErrorCode    string `json:"error_code"`
	ErrorMsg     string `json:"error_msg"`
}

// TestCLIRetryReplace retries a failed REPLACE: the caller's credential must be given again.
func TestCLIRetryReplace(t *testing.T) {
	t.Parallel()
	s := setup(t)
	tm := newTerminal(t, s)
	tm.login()
	h := sshdtest.Start(t, sshdtest.Options{})
	tm.must(0, "", "server", "add", "r-1", "--address", h.Address, "--port", fmt.Sprint(closedPort(t)), "--user", h.User, "--sshd-config", h.ConfigPath)
	tm.must(0, "", "keypair", "create", "rk", "--out", filepath.Join(t.TempDir(), "rk.pem"))
	r := tm.must(1, h.Password, "keypair", "bind", "rk", "--servers", "r-1", "--auth-password-stdin", "-o", "json")
	o := decodeJSON[[]outcome](t, r.stdout)
	if len(o) != 1 || o[0].Status != "FAILED_REPLACE" || o[0].ErrorCode == "" {
		t.Fatalf("bind: %+v", o)
	}
	if r := tm.must(2, "", "task", "retry", o[0].TaskID); !strings.Contains(r.stderr, "REPLACE") {
		t.Fatalf("retry without credential: %s", r.stderr)
	}
	tm.must(0, "", "server", "update", "r-1", "--port", fmt.Sprint(h.Port))
	r = tm.must(0, h.Password, "task", "retry", o[0].TaskID, "--auth-password-stdin")
	if !strings.Contains(r.stdout, "SUCCESS_REPLACE") {
		t.Fatalf("retry: %s", r.stdout)
	}
	if srv := s.must(200, "GET", "/servers/r-1", nil)["server"].(map[string]any); srv["keypair_name"] != "rk" {
		t.Fatalf("server after the retry: %v", srv)
	}
	if r := tm.must(0, "", "task", "list-failed", "-o", "json"); r.stdout != "[]\n" {
		t.Fatalf("failed list: %s", r.stdout)
	}
	// A failed UNBIND is retried as an UNBIND, with the credential given again.
	tm.must(0, "", "server", "update", "r-1", "--port", fmt.Sprint(closedPort(t)))
	r = tm.must(1, h.Password, "keypair", "unbind", "--servers", "r-1", "--auth-password-stdin", "-o", "json")
	o = decodeJSON[[]outcome](t, r.stdout)
	if len(o) != 1 || o[0].Status != "FAILED_UNBIND" {
		t.Fatalf("unbind: %+v", o)
	}
	tm.must(0, "", "server", "update", "r-1", "--port", fmt.Sprint(h.Port))
	if r := tm.must(0, h.Password, "task", "retry", o[0].TaskID, "--auth-password-stdin"); !strings.Contains(r.stdout, "SUCCESS_UNBIND") {
		t.Fatalf("retry unbind: %s", r.stdout)
	}
	if srv := s.must(200, "GET", "/servers/r-1", nil)["server"].(map[string]any); srv["keypair_name"] != "" {
		t.Fatalf("server after the unbind: %v", srv)
	}
}
