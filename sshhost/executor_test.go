package sshhost

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/internal/sshdtest"
	"golang.org/x/crypto/ssh"
)

// testKey is a key pair made at test time.
type testKey struct {
	signer  ssh.Signer
	public  string // authorized_keys line with a comment, as the service stores it
	private string // OpenSSH PEM
}

func newKey(t testing.TB, comment string) testKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))) + " " + comment
	return testKey{signer: signer, public: line, private: string(pem.EncodeToMemory(block))}
}

// logSink collects the executor's JSON log records.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// record returns the last record with message msg.
func (l *logSink) record(t *testing.T, msg string) map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var found map[string]any
	for _, line := range bytes.Split(l.buf.Bytes(), []byte("\n")) {
		var r map[string]any
		if json.Unmarshal(line, &r) == nil && r["msg"] == msg {
			found = r
		}
	}
	if found == nil {
		t.Fatalf("no log record %q in:\n%s", msg, l.buf.String())
	}
	return found
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// setup starts a host and returns an executor and a job for it that pins the host key and
// logs in with the user's password.
func setup(t *testing.T, opt sshdtest.Options) (*sshdtest.Host, *Executor, kps.HostJob, *logSink) {
	t.Helper()
	t.Parallel()
	return setupHost(t, opt)
}

// setupHost is setup for a test that does not run in parallel with others.
func setupHost(t *testing.T, opt sshdtest.Options) (*sshdtest.Host, *Executor, kps.HostJob, *logSink) {
	t.Helper()
	h := sshdtest.Start(t, opt)
	logs := &logSink{}
	e := &Executor{Logger: slogJSON(logs)}
	job := kps.HostJob{
		TaskID:     "task-" + t.Name(),
		Operation:  kps.OpReplace,
		Address:    h.Address,
		Port:       h.Port,
		User:       h.User,
		HostKeys:   []string{h.HostKey},
		Login:      kps.Credential{Type: kps.CredentialPassword, Key: h.Password},
		SSHDConfig: h.ConfigPath,
		PinHostKey: func(context.Context, string) error {
			t.Error("PinHostKey called although a host key is pinned")
			return nil
		},
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("executor log:\n%s", logs.String())
		}
	})
	return h, e, job, logs
}

func execute(t *testing.T, e *Executor, job kps.HostJob) (kps.HostResult, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	return e.Execute(ctx, job)
}

func mustExecute(t *testing.T, e *Executor, job kps.HostJob) kps.HostResult {
	t.Helper()
	res, err := execute(t, e, job)
	if err != nil {
		t.Fatalf("Execute %s: %v", job.Operation, err)
	}
	return res
}

// wantCode checks that err is a task outcome with the code, naming host, port and user.
func wantCode(t *testing.T, err error, code string, h *sshdtest.Host) {
	t.Helper()
	if err == nil {
		t.Fatalf("Execute succeeded, want %s", code)
	}
	if got := kps.ErrorCode(err); got != code {
		t.Fatalf("error %v has code %s, want %s", err, got, code)
	}
	msg := kps.ErrorMessage(err)
	t.Logf("%s: %s", code, msg)
	if !strings.Contains(msg, h.Addr()) || !strings.Contains(msg, "'"+h.User+"'") {
		t.Errorf("message %q does not name %s and '%s'", msg, h.Addr(), h.User)
	}
	if strings.Contains(msg, h.Password) {
		t.Errorf("message %q contains the password", msg)
	}
}

func normalised(t *testing.T, key string) string {
	t.Helper()
	k, err := parsePublicKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return k.line()
}

type fileInfo struct {
	mode     os.FileMode
	uid, gid int
	ino      uint64
	mtime    time.Time
}

func stat(t *testing.T, path string) fileInfo {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fileInfo{mode: fi.Mode(), uid: int(st.Uid), gid: int(st.Gid), ino: st.Ino, mtime: fi.ModTime()}
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

func TestBindWithPassword(t *testing.T) {
	h, e, job, logs := setup(t, sshdtest.Options{})
	other := newKey(t, "other@example")
	key := newKey(t, "kps-key")
	before := "# managed by hand\n\n" +
		`command="echo hi",no-pty ` + other.public + "\r\n" +
		"this line is not a key\n" +
		"  # indented comment without trailing newline"
	h.WriteAuthorizedKeys(t, before)

	job.InstallKey = key.public
	if res := mustExecute(t, e, job); res.PasswordDisabled {
		t.Error("PasswordDisabled without DisablePassword")
	}

	got, _ := h.AuthorizedKeys(t)
	if want := before + "\n" + normalised(t, key.public) + "\n"; got != want {
		t.Errorf("authorized_keys =\n%q\nwant\n%q", got, want)
	}
	file := stat(t, h.AuthorizedKeysPath())
	dir := stat(t, filepath.Dir(h.AuthorizedKeysPath()))
	if file.mode != 0o600 || file.uid != h.UID || file.gid != h.GID {
		t.Errorf("authorized_keys mode %v owner %d:%d, want 0600 %d:%d", file.mode, file.uid, file.gid, h.UID, h.GID)
	}
	if dir.mode.Perm() != 0o700 || dir.uid != h.UID {
		t.Errorf("~/.ssh mode %v owner %d, want 0700 %d", dir.mode.Perm(), dir.uid, h.UID)
	}
	if !h.KeyLoginWorks(t, key.signer) {
		t.Error("the installed key does not log in")
	}
	if !h.PasswordLoginWorks(t) {
		t.Error("password login stopped working without DisablePassword")
	}
	if n := logs.record(t, "host task done")["sessions"]; n != 1.0 {
		t.Errorf("sessions = %v, want 1 (read, stage and commit in one dialogue)", n)
	}
	entries, _ := os.ReadDir(filepath.Dir(h.AuthorizedKeysPath()))
	if len(entries) != 1 {
		t.Errorf("~/.ssh holds %d entries, want only authorized_keys (no temporary files)", len(entries))
	}
}

func TestBindCreatesSSHDirectory(t *testing.T) {
	h, e, job, _ := setup(t, sshdtest.Options{})
	key := newKey(t, "fresh")
	job.Operation = kps.OpReset
	job.InstallKey = key.public
	mustExecute(t, e, job)
	got, ok := h.AuthorizedKeys(t)
	if !ok || got != normalised(t, key.public)+"\n" {
		t.Errorf("authorized_keys = %q, %v", got, ok)
	}
	if dir := stat(t, filepath.Join(h.Home, ".ssh")); dir.mode.Perm() != 0o700 || dir.uid != h.UID || dir.gid != h.GID {
		t.Errorf("~/.ssh mode %v owner %d:%d", dir.mode.Perm(), dir.uid, dir.gid)
	}
	if !h.KeyLoginWorks(t, key.signer) {
		t.Error("the installed key does not log in")
	}
}

func TestBindFixesSSHDirectoryMode(t *testing.T) {
	h, e, job, _ := setup(t, sshdtest.Options{})
	h.WriteAuthorizedKeys(t, "")
	if err := os.Chmod(filepath.Join(h.Home, ".ssh"), 0o755); err != nil {
		t.Fatal(err)
	}
	job.InstallKey = newKey(t, "k").public
	mustExecute(t, e, job)
	if dir := stat(t, filepath.Join(h.Home, ".ssh")); dir.mode.Perm() != 0o700 {
		t.Errorf("~/.ssh mode %v, want 0700", dir.mode.Perm())
	}
}

// TestBindUnderDefaultACL: a default ACL on ~/.ssh, or on the home directory that a new
// ~/.ssh inherits, overrides the umask of the file the task creates; the script then checks the
// staged file and makes it 0600 before the rename (without an ACL it skips that check). Needs
// setfacl (Debian package acl, which .ci/run installs).
func TestBindUnderDefaultACL(t *testing.T) {
	setfacl, err := exec.LookPath("setfacl")
	if err != nil {
		t.Skip("setfacl not installed (Debian package acl)")
	}
	for _, where := range []string{".ssh", "home"} {
		t.Run(where, func(t *testing.T) {
			h, e, job, _ := setup(t, sshdtest.Options{})
			dir := h.Home
			if where == ".ssh" {
				h.WriteAuthorizedKeys(t, "")
				dir = filepath.Join(h.Home, ".ssh")
			}
			if out, err := exec.Command(setfacl, "-d", "-m", "u::rwx,g::rwx,o::rx,m::rwx", dir).CombinedOutput(); err != nil {
				t.Skipf("setfacl: %v: %s (no ACL support on this file system)", err, out)
			}
			job.Operation, job.InstallKey = kps.OpReset, newKey(t, "acl").public
			mustExecute(t, e, job)
			if f := stat(t, h.AuthorizedKeysPath()); f.mode.Perm() != 0o600 || f.uid != h.UID {
				t.Errorf("authorized_keys mode %v owner %d, want 0600 %d", f.mode.Perm(), f.uid, h.UID)
			}
		})
	}
}

func TestReplaceWithKeyPairAuthRemovesOldKey(t *testing.T) {
	h, e, job, _ := setup(t, sshdtest.Options{})
	old, next, other := newKey(t, "old"), newKey(t, "new"), newKey(t, "other")
	h.WriteAuthorizedKeys(t, other.public+"\nfrom=\"127.0.0.1\" "+old.public+"\n")

	job.Login = kps.Credential{Type: kps.CredentialKeyPair, Key: old.private}
	job.InstallKey = next.public
	job.RemoveKeys = []string{old.public}
	mustExecute(t, e, job)

	got, _ := h.AuthorizedKeys(t)
	if want := other.public + "\n" + normalised(t, next.public) + "\n"; got != want {
		t.Errorf("authorized_keys = %q, want %q", got, want)
	}
	if h.KeyLoginWorks(t, old.signer) {
		t.Error("the replaced key still logs in")
	}
	if !h.KeyLoginWorks(t, next.signer) {
		t.Error("the new key does not log in")
	}
}

func TestRebindIsIdempotent(t *testing.T) {
	h, e, job, logs := setup(t, sshdtest.Options{})
	key := newKey(t, "k")
	h.WriteAuthorizedKeys(t, "# x\n")
	job.InstallKey = key.public
	job.RemoveKeys = []string{key.public} // the bound key is the key being bound
	mustExecute(t, e, job)
	first, _ := h.AuthorizedKeys(t)
	before := stat(t, h.AuthorizedKeysPath())

	mustExecute(t, e, job)
	second, _ := h.AuthorizedKeys(t)
	after := stat(t, h.AuthorizedKeysPath())
	if first != second || strings.Count(second, blob64(key.public)) != 1 {
		t.Errorf("second bind changed the file: %q -> %q", first, second)
	}
	if before.ino != after.ino || !before.mtime.Equal(after.mtime) {
		t.Error("second bind rewrote an unchanged file")
	}
	if n := logs.record(t, "host task done")["sessions"]; n != 1.0 {
		t.Errorf("sessions of the no-op bind = %v, want 1", n)
	}
}

func TestUnbind(t *testing.T) {
	h, e, job, _ := setup(t, sshdtest.Options{})
	key, other := newKey(t, "bound"), newKey(t, "other")
	before := "# c\n" + key.public + "\n" + other.public + "\nno-pty " + key.public + " again\n# tail"
	h.WriteAuthorizedKeys(t, before)

	job.Operation = kps.OpUnbind
	job.RemoveKeys = []string{key.public}
	if res := mustExecute(t, e, job); res.PasswordDisabled {
		t.Error("PasswordDisabled after unbind")
	}
	got, _ := h.AuthorizedKeys(t)
	if want := "# c\n" + other.public + "\n# tail"; got != want {
		t.Errorf("authorized_keys = %q, want %q", got, want)
	}

	// Unbinding again finds nothing to remove and succeeds without writing.
	ino := stat(t, h.AuthorizedKeysPath()).ino
	mustExecute(t, e, job)
	if got2, _ := h.AuthorizedKeys(t); got2 != got || stat(t, h.AuthorizedKeysPath()).ino != ino {
		t.Error("unbind of an absent key changed the file")
	}
}

func TestUnbindWithoutFile(t *testing.T) {
	h, e, job, _ := setup(t, sshdtest.Options{})
	job.Operation = kps.OpUnbind
	job.RemoveKeys = []string{newKey(t, "k").public}
	mustExecute(t, e, job)
	if _, ok := h.AuthorizedKeys(t); ok {
		t.Error("unbind created authorized_keys")
	}
	if _, err := os.Stat(filepath.Join(h.Home, ".ssh")); err == nil {
		t.Error("unbind created ~/.ssh")
	}
}

func TestDisablePasswordWithDropInAndRestoreByUnbind(t *testing.T) {
	h, e, job, logs := setup(t, sshdtest.Options{Sudo: true})
	key := newKey(t, "k")
	mainBefore, err := os.ReadFile(h.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}

	job.Operation = kps.OpReset
	job.InstallKey = key.public
	job.DisablePassword = true
	res := mustExecute(t, e, job)
	if !res.PasswordDisabled {
		t.Fatal("PasswordDisabled = false after DisablePassword")
	}
	if n := logs.record(t, "host task done")["sessions"]; n != 2.0 {
		t.Errorf("sessions = %v, want 2 (read and write authorized_keys, sshd config)", n)
	}
	dropIn := filepath.Join(h.DropInDir, dropInName)
	b, err := os.ReadFile(dropIn)
	if err != nil {
		t.Fatalf("drop-in: %v", err)
	}
	if string(b) != string(dropInContent(false)) {
		t.Errorf("drop-in content %q", b)
	}
	if fi := stat(t, dropIn); fi.mode != 0o644 || fi.uid != 0 || fi.gid != 0 {
		t.Errorf("drop-in mode %v owner %d:%d, want 0644 root", fi.mode, fi.uid, fi.gid)
	}
	if mainAfter, _ := os.ReadFile(h.ConfigPath); !bytes.Equal(mainAfter, mainBefore) {
		t.Error("the main sshd_config changed although the drop-in applies")
	}
	// The reload is asynchronous: sshd re-executes itself on SIGHUP.
	eventually(t, "password login refused by the live sshd", func() bool { return !h.PasswordLoginWorks(t) })
	if !h.KeyLoginWorks(t, key.signer) {
		t.Fatal("key login fails after disabling passwords")
	}
	if entries, _ := os.ReadDir(filepath.Dir(h.ConfigPath)); len(entries) != 6 {
		names := []string{}
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("host directory holds %v; a backup or temporary file was left", names)
	}

	// Unbind: the password does not work any more, so the key pair logs in.
	unbind := job
	unbind.Operation = kps.OpUnbind
	unbind.InstallKey = ""
	unbind.DisablePassword = false
	unbind.RestorePassword = true
	unbind.RemoveKeys = []string{key.public}
	unbind.Login = kps.Credential{Type: kps.CredentialKeyPair, Key: key.private}
	if res := mustExecute(t, e, unbind); res.PasswordDisabled {
		t.Error("PasswordDisabled after restore")
	}
	if _, err := os.Stat(dropIn); !os.IsNotExist(err) {
		t.Errorf("drop-in still there after restore: %v", err)
	}
	eventually(t, "password login accepted again", func() bool { return h.PasswordLoginWorks(t) })
	if h.KeyLoginWorks(t, key.signer) {
		t.Error("the unbound key still logs in")
	}

	// Restoring again finds nothing of the service's and succeeds.
	unbind.Login = job.Login
	if res := mustExecute(t, e, unbind); res.PasswordDisabled {
		t.Error("PasswordDisabled after second restore")
	}
}

func TestDisablePasswordEditsMainFileAndRestores(t *testing.T) {
	h, e, job, _ := setup(t, sshdtest.Options{Sudo: true})
	orig, err := os.ReadFile(h.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	// A global password keyword before the Include: the drop-in would not win (§6.5 step 3).
	before := append([]byte("# site policy\nPasswordAuthentication yes\n"), orig...)
	if err := os.WriteFile(h.ConfigPath, before, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(h.ConfigPath, 0o640); err != nil {
		t.Fatal(err)
	}
	key := newKey(t, "k")
	job.InstallKey = key.public
	job.DisablePassword = true
	mustExecute(t, e, job)

	after, _ := os.ReadFile(h.ConfigPath)
	wantPrefix := beginMarker + "\n" + managedComment + "\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n" + endMarker + "\n# site policy\n" + disabledPrefix + "PasswordAuthentication yes\n"
	if !strings.HasPrefix(string(after), wantPrefix) {
		t.Errorf("sshd_config begins\n%s\nwant\n%s", after[:min(len(after), len(wantPrefix)+40)], wantPrefix)
	}
	if !strings.Contains(string(after), "\n"+disabledPrefix+"KbdInteractiveAuthentication yes\n") {
		t.Error("the global KbdInteractiveAuthentication line was not commented out")
	}
	if fi := stat(t, h.ConfigPath); fi.mode != 0o640 || fi.uid != 0 {
		t.Errorf("sshd_config mode %v owner %d, want 0640 root (kept)", fi.mode, fi.uid)
	}
	if _, err := os.Stat(filepath.Join(h.DropInDir, dropInName)); !os.IsNotExist(err) {
		t.Error("a drop-in was written although the main file was edited")
	}
	eventually(t, "password login refused by the live sshd", func() bool { return !h.PasswordLoginWorks(t) })

	unbind := job
	unbind.Operation = kps.OpUnbind
	unbind.InstallKey, unbind.DisablePassword, unbind.RestorePassword = "", false, true
	unbind.RemoveKeys = []string{key.public}
	unbind.Login = kps.Credential{Type: kps.CredentialKeyPair, Key: key.private}
	mustExecute(t, e, unbind)
	if restored, _ := os.ReadFile(h.ConfigPath); !bytes.Equal(restored, before) {
		t.Errorf("sshd_config after restore differs from before:\n%s", restored)
	}
	eventually(t, "password login accepted again", func() bool { return h.PasswordLoginWorks(t) })
}

func TestDisablePasswordRollsBackWhenNotEffective(t *testing.T) {
	h, e, job, _ := setup(t, sshdtest.Options{Sudo: true})
	// A drop-in sorting before the service's one keeps passwords on: sshd -T shows it, and
	// the change is rolled back.
	early := filepath.Join(h.DropInDir, "0-site.conf")
	if err := os.WriteFile(early, []byte("PasswordAuthentication yes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	key := newKey(t, "k")
	job.InstallKey = key.public
	job.DisablePassword = true
	_, err := execute(t, e, job)
	wantCode(t, err, kps.TaskSSHDConfig, h)
	if _, err := os.Stat(filepath.Join(h.DropInDir, dropInName)); !os.IsNotExist(err) {
		t.Error("the drop-in stayed after a failed confirmation")
	}
	// The key installed before stays (§6.5 step 4).
	if got, _ := h.AuthorizedKeys(t); !strings.Contains(got, blob64(key.public)) {
		t.Error("the key was not installed")
	}
	if !h.PasswordLoginWorks(t) {
		t.Error("password login broken after the rollback")
	}
}

func TestDisablePasswordWithoutPrivileges(t *testing.T) {
	h, e, job, _ := setup(t, sshdtest.Options{})
	before := "# untouched\n"
	h.WriteAuthorizedKeys(t, before)
	ino := stat(t, h.AuthorizedKeysPath()).ino
	job.InstallKey = newKey(t, "k").public
	job.DisablePassword = true
	_, err := execute(t, e, job)
	wantCode(t, err, kps.TaskPrivileges, h)
	if !strings.Contains(kps.ErrorMessage(err), "sudo") {
		t.Errorf("message %q does not say what is needed", kps.ErrorMessage(err))
	}
	if got, _ := h.AuthorizedKeys(t); got != before || stat(t, h.AuthorizedKeysPath()).ino != ino {
		t.Error("authorized_keys was touched although the task lacked privileges")
	}
	if !h.PasswordLoginWorks(t) {
		t.Error("password login broken")
	}
}

func TestRefused(t *testing.T) {
	h, e, job, _ := setup(t, sshdtest.Options{})
	h.Stop()
	job.InstallKey = newKey(t, "k").public
	_, err := execute(t, e, job)
	wantCode(t, err, kps.TaskUnreachable, h)
}

// TestAllowedTargets: an address outside the executor's allowed targets is refused before any
// TCP connection (KPS.6601, the message says so), also when a host name resolves to it; inside
// them the job runs.
func TestAllowedTargets(t *testing.T) {
	h, e, job, _ := setup(t, sshdtest.Options{})
	job.InstallKey = newKey(t, "k").public
	var err error
	if e.AllowedTargets, err = kps.ParseAllowedTargets("127.0.0.1/32:1-21,[::1]/128:1-21,192.0.2.0/24"); err != nil {
		t.Fatal(err)
	}
	for _, address := range []string{h.Address, "localhost"} {
		job.Address = address
		_, err = execute(t, e, job)
		if kps.ErrorCode(err) != kps.TaskUnreachable || !strings.Contains(kps.ErrorMessage(err), "not allowed") {
			t.Errorf("%s outside the allowed targets: %v", address, err)
		}
	}
	if log := h.Log(t); strings.Contains(log, "Connection from") {
		t.Errorf("the host saw a connection:\n%s", log)
	}
	job.Address = h.Address
	if e.AllowedTargets, err = kps.ParseAllowedTargets("127.0.0.1/32:" + strconv.Itoa(h.Port)); err != nil {
		t.Fatal(err)
	}
	mustExecute(t, e, job)
}

// blackHole accepts TCP connections and never says anything.
func blackHole(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

func blackHoleJob(t *testing.T) kps.HostJob {
	addr := blackHole(t)
	host, port, _ := net.SplitHostPort(addr)
	p, _ := net.LookupPort("tcp", port)
	return kps.HostJob{
		Operation: kps.OpReplace, Address: host, Port: p, User: "nobody",
		HostKeys:   []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDb6hcKjEgNfX6xEdqBB8DPYsOAeTMdvJ2FnLa5Mp6UO"},
		Login:      kps.Credential{Type: kps.CredentialPassword, Key: "secret"},
		InstallKey: seedKey(t, 1, "k"),
	}
}

func TestConnectTimeout(t *testing.T) {
	t.Parallel()
	job := blackHoleJob(t)
	e := &Executor{ConnectTimeout: 300 * time.Millisecond}
	start := time.Now()
	_, err := e.Execute(context.Background(), job)
	if kps.ErrorCode(err) != kps.TaskTimeout {
		t.Fatalf("error %v, want %s", err, kps.TaskTimeout)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 3*time.Second {
		t.Errorf("timed out after %v, want about 300ms", d)
	}
}

func TestTaskDeadline(t *testing.T) {
	t.Parallel()
	job := blackHoleJob(t)
	e := &Executor{ConnectTimeout: time.Minute}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := e.Execute(ctx, job)
	if kps.ErrorCode(err) != kps.TaskTimeout {
		t.Fatalf("error %v, want %s", err, kps.TaskTimeout)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("ended after %v, want about 300ms", d)
	}
}

func TestWrongPassword(t *testing.T) {
	h, e, job, _ := setup(t, sshdtest.Options{})
	job.Login.Key = "not-the-password"
	job.InstallKey = newKey(t, "k").public
	_, err := execute(t, e, job)
	wantCode(t, err, kps.TaskAuthFailed, h)
	if strings.Contains(kps.ErrorMessage(err), "not-the-password") {
		t.Error("message contains the password")
	}
}

func TestWrongKeyPair(t *testing.T) {
	h, e, job, _ := setup(t, sshdtest.Options{})
	job.Login = kps.Credential{Type: kps.CredentialKeyPair, Key: newKey(t, "unknown").private}
	job.InstallKey = newKey(t, "k").public
	_, err := execute(t, e, job)
	wantCode(t, err, kps.TaskAuthFailed, h)
}

func TestUnusablePrivateKey(t *testing.T) {
	h, e, job, _ := setup(t, sshdtest.Options{})
	job.Login = kps.Credential{Type: kps.CredentialKeyPair, Key: "-----BEGIN OPENSSH PRIVATE KEY-----\ngarbage\n-----END OPENSSH PRIVATE KEY-----\n"}
	job.InstallKey = newKey(t, "k").public
	_, err := execute(t, e, job)
	wantCode(t, err, kps.TaskAuthFailed, h)
	if strings.Contains(kps.ErrorMessage(err), "garbage") {
		t.Error("message contains the key")
	}
}

func TestHostKeyMismatchSendsNoCredential(t *testing.T) {
	h, e, job, _ := setup(t, sshdtest.Options{})
	job.HostKeys = []string{seedKey(t, 9, "someone-else")}
	job.InstallKey = newKey(t, "k").public
	_, err := execute(t, e, job)
	wantCode(t, err, kps.TaskHostKeyMismatch, h)
	if !strings.Contains(kps.ErrorMessage(err), "SHA256:") {
		t.Errorf("message %q does not name the presented key", kps.ErrorMessage(err))
	}
	// sshd logs every authentication attempt at LogLevel VERBOSE; the client gave up during
	// key exchange, before any.
	eventually(t, "sshd logged the closed connection", func() bool {
		return strings.Contains(h.Log(t), "Connection closed by 127.0.0.1")
	})
	log := h.Log(t)
	for _, s := range []string{"password", "Accepted", "Failed", "Postponed", h.User} {
		if strings.Contains(log, s) {
			t.Errorf("sshd log mentions %q: a credential was tried\n%s", s, log)
		}
	}
	if _, ok := h.AuthorizedKeys(t); ok {
		t.Error("authorized_keys written despite the mismatch")
	}
}

func TestUnparseablePinIsAMismatch(t *testing.T) {
	h, e, job, _ := setup(t, sshdtest.Options{})
	job.HostKeys = []string{"not a key"}
	job.InstallKey = newKey(t, "k").public
	_, err := execute(t, e, job) // setup's PinHostKey fails the test if trust on first use kicks in
	wantCode(t, err, kps.TaskHostKeyMismatch, h)
}

// TestHostKeyOfAnotherType: the pin is RSA and the host now offers only ed25519. Only the
// pinned types are asked for, so key exchange finds no common host key algorithm: that is a
// changed host key (KPS.6604), not an unreachable host.
func TestHostKeyOfAnotherType(t *testing.T) {
	h, e, job, _ := setup(t, sshdtest.Options{})
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := ssh.NewPublicKey(&priv.PublicKey)
	job.HostKeys = []string{string(ssh.MarshalAuthorizedKey(pub))}
	job.InstallKey = newKey(t, "k").public
	_, err = execute(t, e, job)
	wantCode(t, err, kps.TaskHostKeyMismatch, h)
	if !strings.Contains(kps.ErrorMessage(err), "ssh-ed25519") {
		t.Errorf("message %q does not name what the host offers", kps.ErrorMessage(err))
	}
}

func TestTrustOnFirstUse(t *testing.T) {
	h, e, job, _ := setup(t, sshdtest.Options{})
	var pinned []string
	job.HostKeys = nil
	job.PinHostKey = func(_ context.Context, key string) error {
		pinned = append(pinned, key)
		return nil
	}
	job.InstallKey = newKey(t, "k").public
	mustExecute(t, e, job)
	if len(pinned) != 1 || pinned[0] != h.HostKey {
		t.Errorf("pinned %q, want [%q]", pinned, h.HostKey)
	}

	// A pin failure (say, another worker pinned a different key first) ends the task.
	job.PinHostKey = func(context.Context, string) error {
		return kps.Errorf(kps.TaskHostKeyMismatch, "pinned meanwhile")
	}
	_, err := execute(t, e, job)
	if kps.ErrorCode(err) != kps.TaskHostKeyMismatch {
		t.Errorf("error %v, want the pin error", err)
	}
}

func TestUnsafeLayoutsAreRefused(t *testing.T) {
	tests := []struct {
		name    string
		arrange func(t *testing.T, h *sshdtest.Host)
		reason  string
	}{
		{"~/.ssh is a symlink", func(t *testing.T, h *sshdtest.Host) {
			target := filepath.Join(h.Home, "elsewhere")
			if err := os.Mkdir(target, 0o700); err != nil {
				t.Fatal(err)
			}
			os.Chown(target, h.UID, h.GID)
			if err := os.Symlink(target, filepath.Join(h.Home, ".ssh")); err != nil {
				t.Fatal(err)
			}
		}, "~/.ssh is a symbolic link"},
		{"authorized_keys is a symlink", func(t *testing.T, h *sshdtest.Host) {
			h.WriteAuthorizedKeys(t, "")
			ak := h.AuthorizedKeysPath()
			os.Remove(ak)
			if err := os.Symlink("/etc/hostname", ak); err != nil {
				t.Fatal(err)
			}
		}, "authorized_keys is a symbolic link"},
		{"~/.ssh owned by root", func(t *testing.T, h *sshdtest.Host) {
			if err := os.Mkdir(filepath.Join(h.Home, ".ssh"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, "~/.ssh is owned by another user"},
		{"group-writable home", func(t *testing.T, h *sshdtest.Host) {
			if err := os.Chmod(h.Home, 0o775); err != nil {
				t.Fatal(err)
			}
		}, "writable by group or others"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, e, job, _ := setup(t, sshdtest.Options{})
			tt.arrange(t, h)
			job.InstallKey = newKey(t, "k").public
			_, err := execute(t, e, job)
			wantCode(t, err, kps.TaskWriteFailed, h)
			if msg := kps.ErrorMessage(err); !strings.Contains(msg, tt.reason) || !strings.Contains(msg, "'"+h.User+"'") {
				t.Errorf("message %q does not name the user and %q", msg, tt.reason)
			}
		})
	}
}

func TestDeadlineDuringHandshake(t *testing.T) {
	h, e, job, _ := setup(t, sshdtest.Options{})
	// The pin callback runs mid-handshake and lets the task deadline pass.
	job.HostKeys = nil
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	job.PinHostKey = func(ctx context.Context, _ string) error {
		<-ctx.Done()
		return nil
	}
	job.InstallKey = newKey(t, "k").public
	_, err := e.Execute(ctx, job)
	wantCode(t, err, kps.TaskTimeout, h)
}

func TestDeadlineBetweenRemoteSteps(t *testing.T) {
	h, e, job, logs := setup(t, sshdtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	e.Logger = slog.New(hookHandler{slogJSON(logs).Handler(), func(r slog.Record) {
		if r.Message == "remote step" && stepOf(r) == stepLocate {
			<-ctx.Done()
		}
	}})
	job.InstallKey = newKey(t, "k").public
	_, err := e.Execute(ctx, job)
	wantCode(t, err, kps.TaskTimeout, h)
	if !strings.Contains(kps.ErrorMessage(err), "during writing") {
		t.Errorf("message %q does not name the write step", kps.ErrorMessage(err))
	}
	if _, ok := h.AuthorizedKeys(t); ok {
		t.Error("authorized_keys written after the deadline")
	}
}

// TestScriptsAreValidShell checks the remote scripts with sh -n and, where installed,
// shellcheck.
func TestScriptsAreValidShell(t *testing.T) {
	scripts := map[string]string{"task": taskScript, "privRead": privReadScript, "verify": verifyScript, "config": configScript, "asRoot": asRootScript}
	dir := t.TempDir()
	shellcheck, _ := exec.LookPath("shellcheck")
	for name, s := range scripts {
		if out, err := exec.Command("/bin/sh", "-n", "-c", s).CombinedOutput(); err != nil {
			t.Errorf("%s: sh -n: %v\n%s", name, err, out)
		}
		if shellcheck == "" {
			continue
		}
		f := filepath.Join(dir, name+".sh")
		if err := os.WriteFile(f, []byte("#!/bin/sh\n"+s), 0o600); err != nil {
			t.Fatal(err)
		}
		// SC2016: single-quoted $ is meant literally (awk programs, traps).
		if out, err := exec.Command(shellcheck, "-s", "sh", "-e", "SC2016", f).CombinedOutput(); err != nil {
			t.Errorf("%s: shellcheck: %v\n%s", name, err, out)
		}
	}
	if shellcheck == "" {
		t.Log("shellcheck not installed; checked syntax only")
	}
}

func slogJSON(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// hookHandler calls hook for every record before passing it on; the executor logs each
// remote step right after it ends, which lets a test act between two sessions.
type hookHandler struct {
	slog.Handler
	hook func(slog.Record)
}

func (h hookHandler) Handle(ctx context.Context, r slog.Record) error {
	h.hook(r)
	return h.Handler.Handle(ctx, r)
}

func (h hookHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return hookHandler{h.Handler.WithAttrs(as), h.hook}
}

func (h hookHandler) WithGroup(name string) slog.Handler {
	return hookHandler{h.Handler.WithGroup(name), h.hook}
}

func stepOf(r slog.Record) string {
	var step string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "step" {
			step = a.Value.String()
		}
		return true
	})
	return step
}

func TestConcurrentChangeIsNotLost(t *testing.T) {
	h, e, job, logs := setup(t, sshdtest.Options{})
	key, theirs := newKey(t, "ours"), newKey(t, "theirs")
	h.WriteAuthorizedKeys(t, "# before\n")
	reads := 0
	e.Logger = slog.New(hookHandler{slogJSON(logs).Handler(), func(r slog.Record) {
		if r.Message == "remote step" && stepOf(r) == stepLocate {
			if reads++; reads == 1 {
				// Someone else adds a key between our read and our write.
				h.WriteAuthorizedKeys(t, "# before\n"+theirs.public+"\n")
			}
		}
	}})
	job.InstallKey = key.public
	mustExecute(t, e, job)
	got, _ := h.AuthorizedKeys(t)
	if want := "# before\n" + theirs.public + "\n" + normalised(t, key.public) + "\n"; got != want {
		t.Errorf("authorized_keys = %q, want %q", got, want)
	}
	if reads != 2 {
		t.Errorf("read the file %d times, want 2 (edit again after the concurrent change)", reads)
	}
}

func TestKeyboardInteractivePassword(t *testing.T) {
	h, e, job, _ := setup(t, sshdtest.Options{KbdInteractive: true})
	key := newKey(t, "k")
	job.InstallKey = key.public
	mustExecute(t, e, job)
	if !h.KeyLoginWorks(t, key.signer) {
		t.Error("the installed key does not log in")
	}

	job.Login.Key = "wrong"
	_, err := execute(t, e, job)
	wantCode(t, err, kps.TaskAuthFailed, h)
}

func TestDisablePasswordWithPAMKeyboardInteractive(t *testing.T) {
	h, e, job, _ := setup(t, sshdtest.Options{Sudo: true, KbdInteractive: true})
	key := newKey(t, "k")
	job.InstallKey = key.public
	job.DisablePassword = true
	mustExecute(t, e, job)
	eventually(t, "keyboard-interactive password login refused", func() bool { return !h.PasswordLoginWorks(t) })
	if !h.KeyLoginWorks(t, key.signer) {
		t.Error("key login fails after disabling passwords")
	}
}

func TestExpiredPasswordIsNotChanged(t *testing.T) {
	h, e, job, _ := setup(t, sshdtest.Options{KbdInteractive: true})
	// PAM then asks for a new password during keyboard-interactive; the service must not
	// answer that (§6.1 step 5).
	if out, err := exec.Command("chage", "-d", "0", h.User).CombinedOutput(); err != nil {
		t.Skipf("chage: %v %s", err, out)
	}
	job.InstallKey = newKey(t, "k").public
	_, err := execute(t, e, job)
	wantCode(t, err, kps.TaskAuthFailed, h)
	if !strings.Contains(kps.ErrorMessage(err), "other than the password") {
		t.Errorf("message %q does not say why", kps.ErrorMessage(err))
	}
}
