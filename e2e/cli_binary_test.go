package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/openkps/kps/internal/openapitest"
	"github.com/openkps/kps/internal/sshdtest"
	"github.com/openkps/kps/sshkey"
)

// TestCLIBinary drives the command line as an operator does: the built binary, `kps serve`
// started from it, real sshd hosts, a terminal where one is needed. Each subtest is one
// promise of issue 15.
func TestCLIBinary(t *testing.T) {
	t.Parallel()
	bin := kpsBinary(t)
	// Another user (nobody, in Secrets) runs it too: kpsBinary's directory is 0755.
	t.Run("RotateFleet", func(t *testing.T) { t.Parallel(); testRotateFleet(t, bin) })
	t.Run("Secrets", func(t *testing.T) { t.Parallel(); testSecretFiles(t, bin) })
	t.Run("TerminalAndInterrupt", func(t *testing.T) { t.Parallel(); testTerminal(t, bin) })
	t.Run("AnsibleInventory", func(t *testing.T) { t.Parallel(); testAnsibleImport(t, bin) })
	t.Run("TasksAndOutput", func(t *testing.T) { t.Parallel(); testTasksAndOutput(t, bin) })
}

// operator runs the built binary with its own profile directory and environment.
type operator struct {
	t   *testing.T
	bin string
	env []string
	dir string
}

// newOperator starts `kps serve` from bin and logs in as its admin.
func newOperator(t *testing.T, bin string) (*operator, *service) {
	t.Helper()
	base, _ := startBinary(t, bin, []string{"KPS_DATA_DIR=" + t.TempDir(), "KPS_ADMIN_PASSWORD=admin-password-for-tests"}, "--workers", "8")
	s := &service{t: t, base: base}
	s.login("admin-password-for-tests")
	dir := t.TempDir()
	op := &operator{t: t, bin: bin, dir: dir, env: []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "KPS_CONFIG_DIR=" + filepath.Join(dir, "config")}}
	// The binary's answers pass a proxy that checks them against docs/openapi.json.
	target, _ := url.Parse(base)
	px := httptest.NewServer(openapitest.ReverseProxy(target, nil, func(err error) { t.Errorf("kps command line: %v", err) }))
	t.Cleanup(px.Close)
	op.must(0, "admin-password-for-tests\n", "login", "--endpoint", px.URL, "--user", "admin", "--password-stdin")
	return op, s
}

func (op *operator) command(stdin string, args ...string) *exec.Cmd {
	cmd := exec.Command(op.bin, args...)
	cmd.Env = op.env
	cmd.Dir = op.dir
	cmd.Stdin = strings.NewReader(stdin)
	return cmd
}

func (op *operator) exec(cmd *exec.Cmd) result {
	op.t.Helper()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		op.t.Fatal(err)
	}
	return result{code, out.String(), errOut.String()}
}

func (op *operator) run(stdin string, args ...string) result {
	op.t.Helper()
	return op.exec(op.command(stdin, args...))
}

func (op *operator) must(code int, stdin string, args ...string) result {
	op.t.Helper()
	r := op.run(stdin, args...)
	if r.code != code {
		op.t.Fatalf("kps %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	return r
}

// file writes a file in the operator's directory and returns its path.
func (op *operator) file(name, content string, mode os.FileMode) string {
	path := filepath.Join(op.dir, name)
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		op.t.Fatal(err)
	}
	return path
}

func signerOf(t *testing.T, path string) ssh.Signer {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return s
}

// keyscan is `ssh-keyscan -p PORT 127.0.0.1`: what an operator pins host keys with.
func keyscan(t *testing.T, h *sshdtest.Host) string {
	t.Helper()
	out, err := exec.Command("ssh-keyscan", "-p", fmt.Sprint(h.Port), h.Address).Output()
	if err != nil || !strings.Contains(string(out), "ssh-") {
		t.Fatalf("ssh-keyscan: %v %q", err, out)
	}
	return string(out)
}

// testRotateFleet binds a key pair to twelve hosts, then rotates them to a new one logging in
// with the old key: the new key logs in everywhere and the old one nowhere. Host keys come
// from a hashed known_hosts file that names all twelve.
func testRotateFleet(t *testing.T, bin string) {
	op, s := newOperator(t, bin)
	const n = 12
	hosts := make([]*sshdtest.Host, n)
	var ids []string
	var knownHosts strings.Builder
	for i := range hosts {
		hosts[i] = sshdtest.Start(t, sshdtest.Options{})
		knownHosts.WriteString(keyscan(t, hosts[i]))
		ids = append(ids, fmt.Sprintf("web-%02d", i))
	}
	kh := op.file("known_hosts", knownHosts.String(), 0o600)
	if out, err := exec.Command("ssh-keygen", "-H", "-f", kh).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -H: %v %s", err, out)
	}
	if b, _ := os.ReadFile(kh); !strings.HasPrefix(string(b), "|1|") {
		t.Fatalf("known_hosts not hashed: %.60s", b)
	}
	for i, h := range hosts {
		op.must(0, "", "server", "add", ids[i], "--address", h.Address, "--port", fmt.Sprint(h.Port), "--user", h.User,
			"--sshd-config", h.ConfigPath, "--host-key-file", kh)
		srv := s.must(200, "GET", "/servers/"+ids[i], nil)["server"].(map[string]any)
		if keys := srv["host_keys"].([]any); len(keys) != 1 || !strings.HasPrefix(str(keys[0]), strings.Join(strings.Fields(h.HostKey)[:2], " ")) {
			t.Fatalf("%s pinned %v, want %s", ids[i], keys, h.HostKey)
		}
	}
	// First binding: each host's own password, REPLACE, ten at a time.
	op.must(0, "", "keypair", "create", "web-2026", "--out", "web-2026.pem")
	for i, h := range hosts {
		op.must(0, h.Password+"\n", "keypair", "bind", "web-2026", "--servers", ids[i], "--auth-password-stdin")
	}
	old := signerOf(t, filepath.Join(op.dir, "web-2026.pem"))
	for _, h := range hosts {
		if !h.KeyLoginWorks(t, old) {
			t.Fatalf("web-2026 does not log in on %s", h.Addr())
		}
	}
	// Rotation: staged (kps-v3-api.md §8), logging in with the old key, verifying with the new.
	op.must(0, "", "keypair", "create", "web-2027", "--type", "rsa", "--out", "web-2027.pem")
	r := op.must(0, "", "keypair", "rotate", "web-2027", "--from", "web-2026", "--auth-key-file", "web-2026.pem",
		"--new-key-file", "web-2027.pem", "--batch-size", "4", "-o", "json")
	if !regexp.MustCompile(`rotation \S+ of 12 servers to web-2027, logging in with the key of web-2026.pem \(REPLACE\)`).MatchString(r.stderr) ||
		!strings.Contains(r.stderr, "add web-2027 beside the old key, log in with it, then remove the old key; 4 at a time") {
		t.Fatalf("plan:\n%s", r.stderr)
	}
	var rot struct {
		State   string `json:"state"`
		Servers []struct {
			ServerID string `json:"server_id"`
			State    string `json:"state"`
			TaskID   string `json:"task_id"`
		} `json:"servers"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rot); err != nil || rot.State != "COMPLETED" || len(rot.Servers) != n {
		t.Fatalf("summary: %v %s", err, r.stdout)
	}
	for _, o := range rot.Servers {
		if o.State != "SUCCEEDED" || s.must(200, "GET", "/tasks/"+o.TaskID, nil)["task_status"] != "SUCCESS_REPLACE" {
			t.Errorf("%+v", o)
		}
	}
	fresh := signerOf(t, filepath.Join(op.dir, "web-2027.pem"))
	for _, h := range hosts {
		if !h.KeyLoginWorks(t, fresh) {
			t.Errorf("web-2027 does not log in on %s", h.Addr())
		}
		if h.KeyLoginWorks(t, old) {
			t.Errorf("web-2026 still logs in on %s", h.Addr())
		}
	}
	// rotate refuses servers without a key pair; bind binds them.
	op.must(0, "", "server", "add", "spare", "--address", "127.0.0.1", "--port", "1")
	if r := op.must(2, "", "keypair", "rotate", "web-2027", "--servers", "spare,web-00"); !strings.Contains(r.stderr, "spare (no key pair)") {
		t.Fatalf("rotate of an unbound server: %s", r.stderr)
	}

	// A bind logging in with a key of one's own removes it, says so first, and --keep-login-key
	// keeps it.
	bootKey, _, err := sshkey.Generate(sshkey.AlgorithmED25519, 0, "bootstrap")
	if err != nil {
		t.Fatal(err)
	}
	boot := op.file("bootstrap.pem", bootKey, 0o600)
	bootSigner := signerOf(t, boot)
	bootLine := string(ssh.MarshalAuthorizedKey(bootSigner.PublicKey()))
	for _, h := range hosts[:2] {
		content, _ := h.AuthorizedKeys(t)
		h.WriteAuthorizedKeys(t, content+bootLine)
	}
	op.must(0, "", "keypair", "create", "ops", "--out", "ops.pem")
	r = op.must(0, "", "keypair", "bind", "ops", "--servers", "web-00", "--auth-key-file", boot, "--keep-login-key")
	if !strings.Contains(r.stderr, "stays in authorized_keys (--keep-login-key)") {
		t.Fatalf("plan with --keep-login-key: %s", r.stderr)
	}
	// The plan says which key pair each server moves from and to, and whose key leaves.
	if !regexp.MustCompile(`kps: plan for 1 server, logging in with .*bootstrap\.pem.*:\n  web-2027 → ops: web-00\n`).MatchString(r.stderr) ||
		!strings.Contains(r.stderr, "kps: removed from authorized_keys: the key of web-2027\n") {
		t.Fatalf("bind plan: %s", r.stderr)
	}
	if !hosts[0].KeyLoginWorks(t, bootSigner) || !hosts[0].KeyLoginWorks(t, signerOf(t, filepath.Join(op.dir, "ops.pem"))) || hosts[0].KeyLoginWorks(t, fresh) {
		t.Fatal("--keep-login-key: the bootstrap key or the new one does not log in, or the replaced one still does")
	}
	r = op.must(0, "", "keypair", "bind", "ops", "--servers", "web-01", "--auth-key-file", boot)
	if !regexp.MustCompile(`the login key SHA256:\S+ \(.*bootstrap.pem\) will be REMOVED from authorized_keys on 1 server`).MatchString(r.stderr) {
		t.Fatalf("plan without --keep-login-key: %s", r.stderr)
	}
	if hosts[1].KeyLoginWorks(t, bootSigner) {
		t.Fatal("the login key was kept without --keep-login-key")
	}
	// The extension is refused where it means nothing.
	s.wantError(400, "KPS.6003", "POST", "/keypairs/associate", map[string]any{"keypair_name": "ops",
		"server": map[string]any{"id": "web-02", "auth": map[string]any{"type": "password", "key": hosts[2].Password}, "keep_login_key": true}})

	// A rotation with canaries stops after them and says how to go on; resume finishes it.
	op.must(0, "", "keypair", "create", "web-2028", "--out", "web-2028.pem")
	r = op.must(0, "", "keypair", "rotate", "web-2028", "--from", "web-2027", "--canary", "2", "--new-key-file", "web-2028.pem",
		"--auth-key-file", "web-2027.pem", "-o", "json")
	var paused struct {
		ID     string         `json:"id"`
		State  string         `json:"state"`
		Totals map[string]int `json:"totals"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &paused); err != nil || paused.State != "PAUSED" || paused.Totals["succeeded"] != 2 ||
		!strings.Contains(r.stderr, "kps keypair rotation resume "+paused.ID) {
		t.Fatalf("canary rotation: %v %s\n%s", err, r.stdout, r.stderr)
	}
	r = op.must(0, "", "keypair", "rotation", "resume", paused.ID)
	if !strings.Contains(r.stdout, "completed; "+fmt.Sprint(n-2)+" succeeded, 0 failed") {
		t.Fatalf("resume: %s\n%s", r.stdout, r.stderr)
	}
	if r := op.must(0, "", "keypair", "rotation", "list"); !strings.Contains(r.stdout, paused.ID) {
		t.Fatalf("rotation list: %s", r.stdout)
	}
	op.must(1, "", "keypair", "rotation", "cancel", paused.ID) // KPS.6307: completed
}

// testSecretFiles: a private key is never lost and never overwritten by accident.
func testSecretFiles(t *testing.T, bin string) {
	op, s := newOperator(t, bin)
	existing := op.file("existing.pem", "precious\n", 0o600)
	r := op.must(2, "", "keypair", "create", "a", "--out", existing)
	if !strings.Contains(r.stderr, "--out "+existing+": the file exists; give --force") || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("existing --out: %q", r.stderr)
	}
	s.wantError(404, "KPS.6201", "GET", "/keypairs/a", nil)
	if b, _ := os.ReadFile(existing); string(b) != "precious\n" {
		t.Fatal("the existing file changed")
	}
	op.must(0, "", "keypair", "create", "a", "--out", existing, "--force")
	if b, _ := os.ReadFile(existing); !strings.Contains(string(b), "OPENSSH PRIVATE KEY") {
		t.Fatal("--force did not replace the file")
	}
	// The same rule for exports.
	op.must(0, "", "keypair", "create", "hosted", "--host", "--out", "hosted.pem")
	if r := op.must(2, "", "keypair", "private-key", "export", "hosted", "--out", "hosted.pem"); !strings.Contains(r.stderr, "--force") {
		t.Fatalf("export onto an existing file: %s", r.stderr)
	}
	if r := op.must(2, "", "keypair", "private-key", "batch-export", "hosted", "--out", existing); !strings.Contains(r.stderr, "--force") {
		t.Fatalf("batch export onto an existing file: %s", r.stderr)
	}
	op.must(0, "", "keypair", "private-key", "batch-export", "hosted", "--out", "keys.zip")

	// An unwritable place fails before any key pair exists: a directory the user may not write
	// (the binary runs as nobody, with an access key in the environment) and a path through a
	// file.
	ak := op.must(0, "", "admin", "credential", "create", "-o", "json").stdout
	var key struct{ Access, Secret string }
	json.Unmarshal([]byte(ak), &key)
	locked := filepath.Join(t.TempDir(), "locked")
	os.Mkdir(locked, 0o755)
	os.Chmod(filepath.Dir(locked), 0o755)
	cmd := op.command("", "keypair", "create", "b", "--out", filepath.Join(locked, "b.pem"))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "KPS_ENDPOINT=" + s.base, "KPS_PROJECT_ID=" + s.project, "KPS_ACCESS_KEY=" + key.Access, "KPS_SECRET_KEY=" + key.Secret}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if r := op.exec(cmd); r.code != 1 || !strings.Contains(r.stderr, "cannot write in "+locked+": permission denied") {
		t.Fatalf("unwritable --out as nobody: %d %q", r.code, r.stderr)
	}
	if r := op.must(1, "", "keypair", "create", "b", "--out", existing+"/b.pem"); !strings.Contains(r.stderr, "not a directory") {
		t.Fatalf("--out through a file: %q", r.stderr)
	}
	s.wantError(404, "KPS.6201", "GET", "/keypairs/b", nil)

	// A write that fails anyway (no room: a file size limit of 0): a key generated here is
	// never imported; a key the service made (x509) is deleted again.
	limited := func(args ...string) result {
		cmd := exec.Command("/bin/sh", append([]string{"-c", `ulimit -f 0; exec "$0" "$@"`, op.bin}, args...)...)
		cmd.Env, cmd.Dir = op.env, op.dir
		return op.exec(cmd)
	}
	if r := limited("keypair", "create", "c", "--out", "c.pem"); r.code != 1 || !strings.Contains(r.stderr, "file too large") {
		t.Fatalf("write failure: %d %q", r.code, r.stderr)
	}
	s.wantError(404, "KPS.6201", "GET", "/keypairs/c", nil)
	if r := limited("keypair", "create", "cert", "--type", "x509", "--out", "cert.pem"); r.code != 1 ||
		!strings.Contains(r.stderr, "file too large") || !strings.Contains(r.stderr, "key pair cert was deleted again") {
		t.Fatalf("x509 write failure: %d %q", r.code, r.stderr)
	}
	s.wantError(404, "KPS.6201", "GET", "/keypairs/cert", nil)
	for _, f := range []string{"c.pem", "cert.pem"} {
		if _, err := os.Stat(filepath.Join(op.dir, f)); err == nil {
			t.Errorf("%s exists", f)
		}
	}
	if entries, _ := os.ReadDir(op.dir); len(entries) > 0 {
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".tmp") {
				t.Errorf("temporary file left: %s", e.Name())
			}
		}
	}

	// --show: the private key alone on standard output.
	r = op.must(0, "", "keypair", "create", "shown", "--show", "--type", "ecdsa", "--bits", "384")
	if !strings.HasPrefix(r.stdout, "-----BEGIN OPENSSH PRIVATE KEY-----") || strings.Contains(r.stdout, "name:") {
		t.Fatalf("--show: %.60q", r.stdout)
	}
	// Secrets are read in the command line's words.
	os.WriteFile(filepath.Join(op.dir, "encrypted.pem"), []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n"), 0o600)
	if r := op.must(1, "", "keypair", "bind", "a", "--servers", "x", "--auth-key-file", "encrypted.pem"); !strings.HasPrefix(r.stderr, "kps: --auth-key-file encrypted.pem: ") ||
		!strings.Contains(r.stderr, "passphrase") {
		t.Fatalf("encrypted key: %q", r.stderr)
	}
	if r := op.must(1, "", "keypair", "import", "x", "--public-key-file", "missing.pub"); r.stderr != "kps: --public-key-file missing.pub: no such file or directory\n" {
		t.Fatalf("missing file: %q", r.stderr)
	}
}

// screen collects what a terminal shows.
func screen(t *testing.T, master *os.File) *lockedBuffer {
	var b lockedBuffer
	go io.Copy(&b, master)
	return &b
}

func waitFor(t *testing.T, b *lockedBuffer, what string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(b.String(), what); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the terminal never showed %q:\n%s", what, b.String())
		}
	}
}

// onTerminal starts the binary with a pseudo-terminal as its controlling terminal and
// standard streams, as an operator's shell would.
func (op *operator) onTerminal(args ...string) (*exec.Cmd, *os.File, *lockedBuffer) {
	op.t.Helper()
	master, tty := openPTY(op.t)
	cmd := exec.Command(op.bin, args...)
	cmd.Env, cmd.Dir = append(op.env, "TERM=xterm"), op.dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		op.t.Fatal(err)
	}
	tty.Close()
	op.t.Cleanup(func() { cmd.Process.Kill() })
	return cmd, master, screen(op.t, master)
}

func exitCode(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(60 * time.Second):
		t.Fatal("the command did not end")
	}
	return -1
}

// testTerminal: a password asked on the terminal without echo, progress redrawn in place, and
// Ctrl-C in the middle of a wait.
func testTerminal(t *testing.T, bin string) {
	op, s := newOperator(t, bin)
	h := sshdtest.Start(t, sshdtest.Options{})
	op.must(0, "", "server", "add", "web", "--address", h.Address, "--port", fmt.Sprint(h.Port), "--user", h.User,
		"--sshd-config", h.ConfigPath, "--host-key", keyscan(t, h))
	op.must(0, "", "keypair", "create", "web", "--out", "web.pem")
	cmd, master, out := op.onTerminal("keypair", "bind", "web", "--servers", "web", "--ask-auth-password")
	waitFor(t, out, "SSH password of the servers' login user: ")
	master.Write([]byte(h.Password + "\r"))
	if code := exitCode(t, cmd); code != 0 {
		t.Fatalf("bind with --ask-auth-password: exit %d\n%s", code, out.String())
	}
	waitFor(t, out, "1 succeeded, 0 failed") // what the terminal still has to show
	if strings.Contains(out.String(), h.Password) {
		t.Fatalf("the password was echoed:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "] 1/1 done, 0 failed") || !strings.Contains(out.String(), "SUCCESS_REPLACE") {
		t.Fatalf("terminal output:\n%s", out.String())
	}
	if !h.KeyLoginWorks(t, signerOf(t, filepath.Join(op.dir, "web.pem"))) {
		t.Fatal("the bind did not happen")
	}
	// --auth-password-stdin on a terminal asks too (one line, no echo) instead of echoing the
	// password and waiting for Ctrl-D.
	cmd, master, out = op.onTerminal("keypair", "bind", "web", "--servers", "web", "--auth-password-stdin")
	waitFor(t, out, "SSH password of the servers' login user: ")
	master.Write([]byte(h.Password + "\r"))
	if code := exitCode(t, cmd); code != 0 {
		t.Fatalf("bind with --auth-password-stdin on a terminal: exit %d\n%s", code, out.String())
	}
	waitFor(t, out, "1 succeeded, 0 failed")
	if strings.Contains(out.String(), h.Password) {
		t.Fatalf("the password was echoed:\n%s", out.String())
	}
	// Without a terminal the prompt says what to do instead.
	if r := op.must(2, "", "keypair", "bind", "web", "--servers", "web", "--ask-auth-password"); !strings.Contains(r.stderr, "--auth-password-stdin") {
		t.Fatalf("no terminal: %q", r.stderr)
	}

	// Ctrl-C while a host stalls: exit 130, the task goes on, and the message says how to follow.
	stalled := silentListener(t)
	op.must(0, "x\n", "server", "add", "stalled", "--address", "127.0.0.1", "--port", fmt.Sprint(stalled), "--credential-password-stdin")
	cmd, master, out = op.onTerminal("keypair", "bind", "web", "--servers", "stalled")
	waitFor(t, out, "waiting on stalled (running")
	master.Write([]byte{3}) // ^C: the terminal sends SIGINT to the command
	if code := exitCode(t, cmd); code != 130 {
		t.Fatalf("Ctrl-C: exit %d\n%s", code, out.String())
	}
	waitFor(t, out, "interrupted: ")

	m := regexp.MustCompile("interrupted: 1 task goes on in the service; follow them with `kps task wait ([0-9a-f-]{36})`").FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("interrupt message:\n%s", out.String())
	}
	if st := s.must(200, "GET", "/tasks/"+m[1], nil)["task_status"]; st != "RUNNING_RESET" {
		t.Fatalf("the task after Ctrl-C: %v", st)
	}
	// Following it as told: the task ends (the handshake times out) and wait says how.
	r := op.run("", "task", "wait", m[1][:8], "-o", "json")
	var rows []outcome
	if json.Unmarshal([]byte(r.stdout), &rows); r.code != 1 || len(rows) != 1 || rows[0].Status != "FAILED_RESET" || rows[0].ErrorCode != "KPS.6602" {
		t.Fatalf("task wait: %d %s %s", r.code, r.stdout, r.stderr)
	}
}

// testAnsibleImport registers real hosts from an Ansible INI inventory — ports on host lines,
// the user in a parent group's vars, passwords per host, a range — and binds them: the binds
// succeed only if kps read the inventory as Ansible does.
func testAnsibleImport(t *testing.T, bin string) {
	op, s := newOperator(t, bin)
	a, b := sshdtest.Start(t, sshdtest.Options{}), sshdtest.Start(t, sshdtest.Options{})
	// app-b is reached with a key file, as Ansible would: its public half is on the host.
	bKey, _, err := sshkey.Generate(sshkey.AlgorithmED25519, 0, "ansible")
	if err != nil {
		t.Fatal(err)
	}
	bKeyFile := op.file("app-b.pem", bKey, 0o600)
	b.WriteAuthorizedKeys(t, string(ssh.MarshalAuthorizedKey(signerOf(t, bKeyFile).PublicKey())))
	// The parent group's vars give a user and port that only the db hosts keep: the web host
	// lines override them, as in Ansible.
	inv := fmt.Sprintf(`[db]
db-[1:2] ansible_host=127.0.0.1

[web]
app-a ansible_port=%d ansible_password=%s ansible_user=%s
app-b ansible_port=%d ansible_ssh_private_key_file=%s ansible_user=%s

[web:vars]
ansible_host=127.0.0.1

[prod:children]
web
db

[prod:vars]
ansible_user=nobody-here
ansible_port=22
kps_sshd_config=/etc/ssh/sshd_config
`, a.Port, a.Password, a.User, b.Port, bKeyFile, b.User)
	path := op.file("hosts", inv, 0o600)
	r := op.must(0, "", "server", "import", path, "--dry-run", "-o", "json")
	var rows []struct {
		ID     string `json:"id"`
		Port   int    `json:"port"`
		User   string `json:"user"`
		Result string `json:"result"`
	}
	json.Unmarshal([]byte(r.stdout), &rows)
	if len(rows) != 4 || rows[0].ID != "db-1" || rows[1].ID != "db-2" || rows[0].User != "nobody-here" || rows[0].Port != 22 ||
		rows[2].ID != "app-a" || rows[2].Port != a.Port || rows[2].User != a.User || !strings.Contains(rows[2].Result, "credential from ansible_password") ||
		rows[3].ID != "app-b" || !strings.Contains(rows[3].Result, "credential from "+bKeyFile) {
		t.Fatalf("dry run: %s", r.stdout)
	}
	s.wantError(404, "KPS.6204", "GET", "/servers/app-a", nil)
	op.must(0, "", "server", "import", path)
	for id, h := range map[string]*sshdtest.Host{"app-a": a, "app-b": b} {
		srv := s.must(200, "GET", "/servers/"+id, nil)["server"].(map[string]any)
		if srv["port"] != float64(h.Port) || srv["user"] != h.User || srv["has_credential"] != true || srv["sshd_config"] != "/etc/ssh/sshd_config" {
			t.Fatalf("%s: %v", id, srv)
		}
	}
	op.must(0, "", "keypair", "create", "inv", "--out", "inv.pem")
	r = op.must(0, "", "keypair", "bind", "inv", "--servers", "app-a,app-b")
	if !strings.Contains(r.stdout, "2 succeeded, 0 failed") {
		t.Fatalf("bind: %s", r.stdout)
	}
	// The stored credentials logged in: the password on app-a, the key file on app-b.
	bound := signerOf(t, filepath.Join(op.dir, "inv.pem"))
	if !a.KeyLoginWorks(t, bound) || !b.KeyLoginWorks(t, bound) {
		t.Fatal("the bound key does not log in on app-a and app-b")
	}
	// A construct kps cannot honour refuses the host by name.
	op.file("jump", "[web]\nhidden ansible_ssh_common_args='-o ProxyJump=bastion'\nshown\n", 0o600)
	r = op.must(3, "", "server", "import", "jump")
	if !strings.Contains(r.stdout, "ansible_ssh_common_args is set") {
		t.Fatalf("jump host: %s", r.stdout)
	}
}

// testTasksAndOutput: --no-wait, task lists and retries, prefixes, -o everywhere, global flags
// before the command, SHA256 fingerprints, and the environment variables that must not count.
func testTasksAndOutput(t *testing.T, bin string) {
	op, s := newOperator(t, bin)
	h := sshdtest.Start(t, sshdtest.Options{})
	closed := closedPort(t)
	op.must(0, h.Password+"\n", "server", "add", "w1", "--address", h.Address, "--port", fmt.Sprint(closed), "--user", h.User,
		"--sshd-config", h.ConfigPath, "--name", "web one", "--credential-password-stdin")
	op.must(0, "", "keypair", "create", "k", "--out", "k.pem")

	// --no-wait says SUBMITTED with the task ID.
	r := op.must(0, "", "-o", "json", "keypair", "bind", "k", "--servers", "w1", "--no-wait")
	var rows []outcome
	json.Unmarshal([]byte(r.stdout), &rows)
	if len(rows) != 1 || rows[0].Status != "SUBMITTED" || len(rows[0].TaskID) != 36 || !strings.Contains(r.stderr, "kps task wait "+rows[0].TaskID) {
		t.Fatalf("--no-wait: %s %s", r.stdout, r.stderr)
	}
	first := rows[0].TaskID
	s.waitTask(first)
	// list-failed shows the time and the server's name; show gives the code and message.
	r = op.must(0, "", "task", "list-failed")
	if !regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+` + first + `\s+FAILED_RESET\s+w1\s+web one\s+k\s+KPS.6601`).MatchString(r.stdout) {
		t.Fatalf("list-failed:\n%s", r.stdout)
	}
	r = op.must(0, "", "task", "show", first[:6])
	if !strings.Contains(r.stdout, "error_code:   KPS.6601") || !strings.Contains(r.stdout, "error_msg:    ") || !strings.Contains(r.stdout, "127.0.0.1:"+fmt.Sprint(closed)) {
		t.Fatalf("task show:\n%s", r.stdout)
	}
	// The shell completes the names the service knows: real bash, the script kps prints.
	complete := func(words ...string) []string {
		script := `_get_comp_words_by_ref() { cur="${COMP_WORDS[COMP_CWORD]}"; prev="${COMP_WORDS[COMP_CWORD-1]}"; words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD; }
source <(kps completion bash)
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
__start_kps 2>/dev/null
printf '%s\n' "${COMPREPLY[@]}"`
		cmd := exec.Command("bash", append([]string{"-c", script, "kps"}, words...)...)
		cmd.Env, cmd.Dir = append([]string{"PATH=" + filepath.Dir(op.bin) + ":" + os.Getenv("PATH")}, op.env[1:]...), op.dir
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("bash completion of %q: %v", words, err)
		}
		return strings.Fields(string(out))
	}
	for _, c := range []struct {
		words []string
		want  string
	}{
		{[]string{"kps", "keypair", "show", ""}, "k"},
		{[]string{"kps", "keypair", "bind", "k", "--servers", "w"}, "w1"},
		{[]string{"kps", "task", "retry", first[:4]}, first},
		{[]string{"kps", "--profile", ""}, "default"},
		{[]string{"kps", "keyp"}, "keypair"},
	} {
		if got := complete(c.words...); !slices.Contains(got, c.want) {
			t.Errorf("completion of %q: %q, want %s", c.words, got, c.want)
		}
	}

	// A retry that fails again leaves one record, its own.
	r = op.must(1, "", "task", "retry", first[:8], "-o", "json")
	json.Unmarshal([]byte(r.stdout), &rows)
	if len(rows) != 1 || rows[0].FailedTaskID != first || rows[0].Status != "FAILED_RESET" {
		t.Fatalf("retry: %s", r.stdout)
	}
	second := rows[0].TaskID
	failed := s.must(200, "GET", "/failed-tasks", nil)
	if failed["total"] != float64(1) || failed["tasks"].([]any)[0].(map[string]any)["task_id"] != second {
		t.Fatalf("failed list after a failed retry: %v", failed)
	}
	// Fixed, retried by filter: the record goes, the key is on the host.
	op.must(0, "", "server", "update", "w1", "--port", fmt.Sprint(h.Port))
	op.must(2, "", "task", "retry")
	op.must(1, "", "task", "retry", "--all", "--server", "nothing-like-it")
	r = op.must(0, "", "task", "retry", "--all", "--code", "KPS.66", "--keypair", "k")
	if !strings.Contains(r.stdout, "SUCCESS_RESET") || !strings.Contains(r.stdout, second) {
		t.Fatalf("retry --all: %s", r.stdout)
	}
	if r := op.must(0, "", "task", "list-failed", "-o", "json"); r.stdout != "[]\n" {
		t.Fatalf("failed after retry: %s", r.stdout)
	}
	if !h.KeyLoginWorks(t, signerOf(t, filepath.Join(op.dir, "k.pem"))) {
		t.Fatal("the retried bind did not happen")
	}

	// SHA256 fingerprints as ssh-keygen prints them.
	out, err := exec.Command("ssh-keygen", "-l", "-f", filepath.Join(op.dir, "k.pem")).Output()
	if err != nil {
		t.Fatal(err)
	}
	fp := strings.Fields(string(out))[1]
	if r := op.must(0, "", "keypair", "list"); !strings.Contains(r.stdout, fp) {
		t.Fatalf("list lacks %s:\n%s", fp, r.stdout)
	}
	// Every command honours -o json, the delete commands included; global flags go first.
	op.must(0, "", "keypair", "create", "gone", "--out", "gone.pem")
	r = op.must(0, "", "--output", "json", "keypair", "delete", "gone")
	if r.stdout != "[\n  {\n    \"name\": \"gone\",\n    \"result\": \"deleted\"\n  }\n]\n" {
		t.Fatalf("delete -o json: %q", r.stdout)
	}
	r = op.must(0, "", "-o", "yaml", "server", "rm", "w1")
	if r.stdout != "- name: w1\n  result: removed\n" {
		t.Fatalf("rm -o yaml: %q", r.stdout)
	}
	if r := op.must(0, "", "-o", "json", "version"); !strings.Contains(r.stdout, `"go": "go1.`) {
		t.Fatalf("version: %s", r.stdout)
	}
	// Variables named after flags do nothing: a login user, a description, a Kubernetes
	// service's KPS_PORT, KPS_SHOW.
	op.env = append(op.env, "KPS_USER=evil", "KPS_DESCRIPTION=set-from-env", "KPS_PORT=tcp://10.0.0.1:80", "KPS_SHOW=1", "KPS_FORCE=1")
	r = op.must(0, "", "server", "add", "e1", "--address", "127.0.0.1", "-o", "json")
	if !strings.Contains(r.stdout, `"user": "root"`) || !strings.Contains(r.stdout, `"port": 22`) {
		t.Fatalf("server add under KPS_USER/KPS_PORT: %s", r.stdout)
	}
	r = op.must(0, "", "keypair", "create", "e2", "--out", "e2.pem", "-o", "json")
	if strings.Contains(r.stdout, "PRIVATE KEY") || strings.Contains(r.stdout, "set-from-env") {
		t.Fatalf("keypair create under KPS_SHOW/KPS_DESCRIPTION: %s", r.stdout)
	}
	op.must(2, "", "keypair", "create", "e3", "--out", "e2.pem")
	// The connection, profile and output variables do count.
	op.env = append(op.env, "KPS_OUTPUT=yaml")
	if r := op.must(0, "", "keypair", "show", "e2"); !strings.Contains(r.stdout, "name: e2\n") {
		t.Fatalf("KPS_OUTPUT=yaml: %s", r.stdout)
	}
	op.env = append(op.env, "KPS_PROFILE=nobody")
	if r := op.must(2, "", "keypair", "list"); !strings.Contains(r.stderr, "kps login --profile nobody") {
		t.Fatalf("KPS_PROFILE: %s", r.stderr)
	}
}
