// Package sshdtest starts real OpenSSH sshd processes for tests: each Host is its own sshd on
// a free 127.0.0.1 port with its own login user, home directory, host key and configuration
// file, so tests of what KPS does on a host run against the real daemon and not a mock.
//
// It needs root (to run sshd and create users). Without root or without sshd the test is
// skipped, unless the environment variable KPS_REQUIRE_SSHD=1 is set (CI sets it), in which
// case the test fails. New and Close start and stop a host outside of a test (the benchmark
// harness, bench/, starts hundreds of them). Test code only; it imports nothing from this
// repository.
package sshdtest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
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

	"golang.org/x/crypto/ssh"
)

// Options selects what a test host offers beyond the defaults.
type Options struct {
	// Sudo gives the login user password-less sudo (for disable_password tests).
	Sudo bool
	// KbdInteractive offers password login only through keyboard-interactive backed by PAM
	// (UsePAM yes, PasswordAuthentication no), as hosts that leave passwords to PAM do. By
	// default the host runs without PAM and offers the password method.
	KbdInteractive bool
	// Config is appended to the generated sshd_config, e.g. a ForceCommand that records
	// sessions. sshd keeps the first value of a keyword, so it cannot override the lines above.
	Config string
	// NoInclude leaves out the "Include <DropInDir>/*.conf" line, as on older distributions:
	// disable_password then edits the main file (kps-v3-api.md §6.5 step 3) instead of writing
	// a drop-in.
	NoInclude bool
	// AuthorizedKeysFile is sshd's AuthorizedKeysFile (relative to the home, or absolute);
	// "" is .ssh/authorized_keys. Another file makes a host whose sshd ignores what KPS writes.
	AuthorizedKeysFile string
	// NoSFTP leaves out the file transfer subsystem. By default the host offers it as the
	// distributions' sshd_config does ("Subsystem sftp" with the packaged sftp-server, a
	// process of its own per session; internal-sftp where none is installed).
	NoSFTP bool
}

// Host is a running sshd with its login user.
type Host struct {
	Address  string // always "127.0.0.1"
	Port     int
	User     string // unique, created with useradd, shell /bin/sh
	Password string // random, set with chpasswd
	UID, GID int
	Home     string // owned by User, mode 0755, under a world-traversable directory
	// HostKey is the host's public key in authorized_keys format ("ssh-ed25519 AAAA...").
	HostKey string
	// ConfigPath is the sshd_config this sshd runs with (what the inventory's sshd_config
	// points to). It begins with "Include <DropInDir>/*.conf" unless Options.NoInclude.
	ConfigPath string
	DropInDir  string
	PidFile    string
	LogPath    string // sshd's own log (-e), for assertions and failure reports
	Dir        string // root of everything this host owns on disk

	hostKey   ssh.PublicKey
	cmd       *exec.Cmd
	exited    chan struct{}
	stopOnce  sync.Once
	stopped   chan struct{} // closed by Stop: login helpers then stop retrying refused dials
	created   bool          // the user exists because this Host created it
	reserved  int           // socket holding the port for the host's lifetime, 0 when none
	sudoers   string
	pam       bool
	extra     string
	akFile    string
	noInclude bool
	noSFTP    bool
}

// sshdCandidates are where distributions install the daemon; sshd must be started
// with an absolute path because it re-executes itself (per connection and on SIGHUP).
var sshdCandidates = []string{"/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"}

// sftpServerCandidates are where distributions install the file transfer server (Debian,
// Red Hat, Arch, others).
var sftpServerCandidates = []string{"/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server",
	"/usr/lib/ssh/sftp-server", "/usr/libexec/sftp-server"}

// SFTPServer is the subsystem command a host offers: the packaged sftp-server, or sshd's
// built-in internal-sftp where none is installed.
func SFTPServer() string {
	for _, p := range sftpServerCandidates {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	return "internal-sftp"
}

// accounts serialises useradd/userdel/chpasswd of this process: the shadow tools lock
// /etc/passwd and fail instead of waiting when another one holds the lock. Other processes
// (other test binaries) are covered by retrying.
var accounts sync.Mutex

// Start starts a real OpenSSH sshd on a free 127.0.0.1 port with its own login user and home,
// and stops it (and removes the user) in t.Cleanup.
func Start(t testing.TB, opt Options) *Host {
	t.Helper()
	requireEnvironment(t)
	h, err := New(opt)
	if err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	t.Cleanup(func() {
		h.Stop()
		if t.Failed() {
			if log, err := os.ReadFile(h.LogPath); err == nil && len(log) > 0 {
				t.Logf("sshdtest: sshd log of %s:%d:\n%s", h.Address, h.Port, tail(log, 8192))
			}
		}
		if err := h.Close(); err != nil {
			t.Errorf("sshdtest: %v", err)
		}
	})
	return h
}

// New starts a host outside of a test (the benchmark harness uses it); Close stops it and
// removes its user and files. It needs what Start needs; Available says whether that is here.
// On error nothing is left behind.
func New(opt Options) (_ *Host, err error) {
	sshd, err := Available()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "kps-sshd-")
	if err != nil {
		return nil, err
	}
	h := &Host{
		Address:    "127.0.0.1",
		Dir:        dir,
		ConfigPath: filepath.Join(dir, "sshd_config"),
		DropInDir:  filepath.Join(dir, "sshd_config.d"),
		PidFile:    filepath.Join(dir, "sshd.pid"),
		LogPath:    filepath.Join(dir, "sshd.log"),
		stopped:    make(chan struct{}),
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, h.Close())
		}
	}()
	// MkdirTemp makes 0700 directories; the login user must be able to traverse to its home.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	if err := h.createUser(opt); err != nil {
		return nil, err
	}
	if err := h.writeHostKey(); err != nil {
		return nil, err
	}
	h.pam = opt.KbdInteractive
	h.extra = opt.Config
	h.noInclude = opt.NoInclude
	h.akFile = opt.AuthorizedKeysFile
	h.noSFTP = opt.NoSFTP
	if err := os.Mkdir(h.DropInDir, 0o755); err != nil {
		return nil, err
	}
	// Privilege separation needs its empty, root-owned chroot directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return nil, err
	}

	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		if h.reserved != 0 {
			syscall.Close(h.reserved)
		}
		fd, port, err := reservePort()
		if err != nil {
			return nil, fmt.Errorf("reserving a port: %v", err)
		}
		h.reserved, h.Port = fd, port
		if err := h.writeConfig(); err != nil {
			return nil, err
		}
		if lastErr = h.start(sshd); lastErr == nil {
			return h, nil
		}
		if !errors.Is(lastErr, errBind) {
			break
		}
	}
	return nil, fmt.Errorf("starting sshd: %w", lastErr)
}

// Close stops sshd (Stop) and removes the login user, its sudoers rule and the host's files.
func (h *Host) Close() error {
	h.Stop()
	if h.reserved != 0 {
		syscall.Close(h.reserved)
		h.reserved = 0
	}
	err := h.removeUser()
	return errors.Join(err, os.RemoveAll(h.Dir))
}

// requireEnvironment skips (or, with KPS_REQUIRE_SSHD=1, fails) a test that cannot run a real
// sshd here.
func requireEnvironment(t testing.TB) {
	t.Helper()
	_, err := Available()
	if err == nil {
		return
	}
	msg := "sshdtest: " + err.Error()
	if os.Getenv("KPS_REQUIRE_SSHD") == "1" {
		t.Fatal(msg + " (KPS_REQUIRE_SSHD=1 requires a real sshd)")
	}
	t.Skip(msg + " (set KPS_REQUIRE_SSHD=1 to make this a failure)")
}

// Available returns the path of the sshd binary, or an error saying why test hosts cannot run
// here (not root, no OpenSSH server, no shadow tools).
func Available() (string, error) {
	if os.Geteuid() != 0 {
		return "", errors.New("root is needed to run sshd and create test users; skipping")
	}
	sshd := ""
	for _, p := range sshdCandidates {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			sshd = p
			break
		}
	}
	if sshd == "" {
		return "", fmt.Errorf("OpenSSH sshd not found in %s; install openssh-server", strings.Join(sshdCandidates, ", "))
	}
	for _, tool := range []string{"useradd", "userdel", "chpasswd"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("%s not found; the shadow tools (passwd package) are needed", tool)
		}
	}
	return sshd, nil
}

func (h *Host) createUser(opt Options) error {
	h.Password = randomString(18)
	accounts.Lock()
	defer accounts.Unlock()
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		h.User = "kpst" + randomHex(3)
		h.Home = filepath.Join(h.Dir, "home-"+h.User)
		// -M: the home is made below, under the world-traversable host directory.
		if err = shadowTool(nil, "useradd", "-M", "-d", h.Home, "-s", "/bin/sh", h.User); err == nil {
			h.created = true
			break
		}
	}
	if err != nil {
		return err
	}
	if err := shadowTool([]byte(h.User+":"+h.Password+"\n"), "chpasswd"); err != nil {
		return err
	}
	uid, gid, err := lookupIDs(h.User)
	if err != nil {
		return err
	}
	h.UID, h.GID = uid, gid
	if err := os.Mkdir(h.Home, 0o755); err != nil {
		return err
	}
	if err := os.Chown(h.Home, uid, gid); err != nil {
		return err
	}
	if err := os.Chmod(h.Home, 0o755); err != nil {
		return err
	}
	if opt.Sudo {
		h.sudoers = filepath.Join("/etc/sudoers.d", h.User)
		rule := h.User + " ALL=(ALL) NOPASSWD:ALL\n"
		if err := os.WriteFile(h.sudoers, []byte(rule), 0o440); err != nil {
			return fmt.Errorf("writing %s: %v", h.sudoers, err)
		}
	}
	return nil
}

// removeUser deletes the user and its sudoers rule; the home goes with the host directory.
func (h *Host) removeUser() error {
	var errs []error
	if h.sudoers != "" {
		if err := os.Remove(h.sudoers); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing %s: %v", h.sudoers, err))
		}
		h.sudoers = ""
	}
	if !h.created {
		return errors.Join(errs...)
	}
	accounts.Lock()
	defer accounts.Unlock()
	// -f: a session the test left open must not keep the account alive.
	if err := shadowTool(nil, "userdel", "-f", h.User); err != nil {
		errs = append(errs, err)
	}
	h.created = false
	return errors.Join(errs...)
}

// shadowTool runs useradd, userdel or chpasswd, retrying while another process holds the lock
// of /etc/passwd or /etc/shadow.
func shadowTool(stdin []byte, name string, args ...string) error {
	deadline := time.Now().Add(30 * time.Second)
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, 500*time.Millisecond) {
		cmd := exec.Command(name, args...)
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		out, err := cmd.CombinedOutput()
		if err == nil {
			return nil
		}
		msg := strings.TrimSpace(string(out))
		if !strings.Contains(msg, "lock") || time.Now().After(deadline) {
			return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, msg)
		}
		time.Sleep(delay) // back-off while another process holds the lock
	}
}

// lookupIDs reads the user's UID and GID as the system resolves them.
func lookupIDs(user string) (uid, gid int, err error) {
	out, err := exec.Command("getent", "passwd", user).Output()
	if err != nil {
		return 0, 0, fmt.Errorf("getent passwd %s: %v", user, err)
	}
	f := strings.Split(strings.TrimSpace(string(out)), ":")
	if len(f) < 7 {
		return 0, 0, fmt.Errorf("getent passwd %s: unexpected output", user)
	}
	if uid, err = strconv.Atoi(f[2]); err != nil {
		return 0, 0, err
	}
	gid, err = strconv.Atoi(f[3])
	return uid, gid, err
}

func (h *Host) writeHostKey() error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(h.Dir, "ssh_host_ed25519_key"), pem.EncodeToMemory(block), 0o600); err != nil {
		return err
	}
	h.hostKey, err = ssh.NewPublicKey(pub)
	if err != nil {
		return err
	}
	h.HostKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(h.hostKey)))
	return nil
}

func (h *Host) writeConfig() error {
	// The Include comes first, as on current distributions, so that the drop-in path of
	// kps-v3-api.md §6.5 step 2 applies (unless NoInclude asks for step 3's main file edit).
	pam, password := "no", "yes"
	if h.pam {
		pam, password = "yes", "no"
	}
	include := "Include " + h.DropInDir + "/*.conf\n"
	akFile := ".ssh/authorized_keys"
	if h.akFile != "" {
		akFile = h.akFile
	}
	if h.noInclude {
		include = ""
	}
	subsystem := "Subsystem sftp " + SFTPServer() + "\n"
	if h.noSFTP {
		subsystem = ""
	}
	cfg := include + fmt.Sprintf(`ListenAddress 127.0.0.1
Port %[1]d
HostKey %[2]s/ssh_host_ed25519_key
PidFile %[3]s
UsePAM %[5]s
PasswordAuthentication %[6]s
KbdInteractiveAuthentication yes
PubkeyAuthentication yes
AuthorizedKeysFile %[7]s
PermitRootLogin no
AllowUsers %[4]s
StrictModes yes
LogLevel VERBOSE
LoginGraceTime 30
MaxStartups 64:30:128
PrintMotd no
`, h.Port, h.Dir, h.PidFile, h.User, pam, password, akFile) + subsystem + h.extra
	return os.WriteFile(h.ConfigPath, []byte(cfg), 0o644)
}

var errBind = errors.New("port already in use")

// start runs sshd in the foreground (-D) with its log in LogPath (-e) and waits until the port
// accepts connections.
func (h *Host) start(sshd string) error {
	if out, err := exec.Command(sshd, "-t", "-f", h.ConfigPath).CombinedOutput(); err != nil {
		return fmt.Errorf("sshd -t: %v: %s", err, bytes.TrimSpace(out))
	}
	log, err := os.OpenFile(h.LogPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(sshd, "-D", "-e", "-f", h.ConfigPath)
	cmd.Stdout, cmd.Stderr = log, log
	// Its own process group, so that Stop also ends the per-connection children.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()

	deadline := time.Now().Add(15 * time.Second)
	addr := net.JoinHostPort(h.Address, strconv.Itoa(h.Port))
	for {
		// sshd writes its pid file after it starts listening; wait for both, so that a test
		// may signal the daemon through the pid file right away.
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			if pid, err := os.ReadFile(h.PidFile); err == nil && strings.TrimSpace(string(pid)) == strconv.Itoa(cmd.Process.Pid) {
				h.cmd, h.exited = cmd, exited
				return nil
			}
		}
		select {
		case <-exited:
			out, _ := os.ReadFile(h.LogPath)
			if bytes.Contains(out, []byte("Address already in use")) {
				return errBind
			}
			return fmt.Errorf("sshd exited: %s", tail(out, 2048))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
			return fmt.Errorf("sshd did not accept connections on %s within 15s", addr)
		}
	}
}

// Stop kills sshd and its connection processes now (for "connection refused" tests). It is
// idempotent and also runs at cleanup.
func (h *Host) Stop() {
	h.stopOnce.Do(func() {
		close(h.stopped)
		if h.cmd == nil {
			return
		}
		pgid := h.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-h.exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-h.exited
		}
		// Connection children that outlived the listener belong to the same group. One that
		// was forked a moment ago may still hold the listening socket, and the kernel goes
		// on completing handshakes for it until it dies: wait until connecting is refused.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			c, err := net.DialTimeout("tcp", h.Addr(), time.Second)
			if err != nil {
				break
			}
			c.Close()
			time.Sleep(5 * time.Millisecond) // poll interval
		}
	})
}

// Addr is "127.0.0.1:<port>".
func (h *Host) Addr() string { return net.JoinHostPort(h.Address, strconv.Itoa(h.Port)) }

// PublicHostKey is the host's public key.
func (h *Host) PublicHostKey() ssh.PublicKey { return h.hostKey }

// Log returns what sshd has logged so far (LogLevel VERBOSE).
func (h *Host) Log(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(h.LogPath)
	if err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	return string(b)
}

// AuthorizedKeysPath is ~/.ssh/authorized_keys of the login user.
func (h *Host) AuthorizedKeysPath() string {
	return filepath.Join(h.Home, ".ssh", "authorized_keys")
}

// AuthorizedKeys returns the content of the user's ~/.ssh/authorized_keys and whether it exists.
func (h *Host) AuthorizedKeys(t testing.TB) (content string, exists bool) {
	t.Helper()
	b, err := os.ReadFile(h.AuthorizedKeysPath())
	if errors.Is(err, os.ErrNotExist) {
		return "", false
	}
	if err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	return string(b), true
}

// WriteAuthorizedKeys writes ~/.ssh/authorized_keys as the user would: ~/.ssh 0700 and the file
// 0600, both owned by the user.
func (h *Host) WriteAuthorizedKeys(t testing.TB, content string) {
	t.Helper()
	if err := h.SetAuthorizedKeys(content); err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
}

// SetAuthorizedKeys is WriteAuthorizedKeys outside of a test.
func (h *Host) SetAuthorizedKeys(content string) error {
	dir := filepath.Join(h.Home, ".ssh")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	file := h.AuthorizedKeysPath()
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		return err
	}
	for _, p := range []string{dir, file} {
		if err := os.Chown(p, h.UID, h.GID); err != nil {
			return err
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	return os.Chmod(file, 0o600)
}

// Dial opens an SSH connection as the login user with the given methods, checking the host
// key. Refused and reset connections are retried for a few seconds unless the host was
// stopped: sshd closes its listener, and resets connections it had not yet accepted, while
// it re-executes itself after SIGHUP.
func (h *Host) Dial(auth ...ssh.AuthMethod) (*ssh.Client, error) {
	cfg := &ssh.ClientConfig{
		User:            h.User,
		Auth:            auth,
		HostKeyCallback: ssh.FixedHostKey(h.hostKey),
		Timeout:         10 * time.Second,
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := ssh.Dial("tcp", h.Addr(), cfg)
		if err == nil || !transient(err) || time.Now().After(deadline) {
			return c, err
		}
		select {
		case <-h.stopped:
			return nil, err
		case <-time.After(20 * time.Millisecond): // poll interval
		}
	}
}

// rejected reports whether the server refused the credentials. Besides x/crypto's "unable to
// authenticate", a USERAUTH_FAILURE (type 51) answering keyboard-interactive, which this sshd
// offers without any device behind it (UsePAM no), surfaces as an unexpected message.
func rejected(err error) bool {
	return strings.Contains(err.Error(), "unable to authenticate") || strings.Contains(err.Error(), "unexpected message type 51")
}

func transient(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF)
}

// PasswordLoginWorks tries a real password login (password method, then keyboard-interactive
// answering the password prompt) with x/crypto/ssh. It is false when the server rejects the
// password or the host was stopped; any other failure fails the test, so that "false" never
// hides a connection problem.
func (h *Host) PasswordLoginWorks(t testing.TB) bool {
	t.Helper()
	answer := func(_, _ string, questions []string, _ []bool) ([]string, error) {
		a := make([]string, len(questions))
		for i := range a {
			a[i] = h.Password
		}
		return a, nil
	}
	return h.loginWorks(t, ssh.Password(h.Password), ssh.KeyboardInteractive(answer))
}

// KeyLoginWorks tries a real public key login with signer; see PasswordLoginWorks.
func (h *Host) KeyLoginWorks(t testing.TB, signer ssh.Signer) bool {
	t.Helper()
	return h.loginWorks(t, ssh.PublicKeys(signer))
}

func (h *Host) loginWorks(t testing.TB, auth ...ssh.AuthMethod) bool {
	t.Helper()
	c, err := h.Dial(auth...)
	if err == nil {
		c.Close()
		return true
	}
	select {
	case <-h.stopped:
		return false
	default:
	}
	if !rejected(err) {
		t.Errorf("sshdtest: login as %s on %s: %v", h.User, h.Addr(), err)
	}
	return false
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// reservePort binds a socket to a free 127.0.0.1 port without listening on it, and the host
// keeps it until cleanup. sshd, which also sets SO_REUSEADDR, can still bind and listen there,
// but the kernel hands the port to no other bind(0) meanwhile: without this, parallel hosts
// got the same port (Linux readily reissues a just-freed port), and a stopped host's port
// could be taken over instead of refusing connections.
func reservePort() (fd, port int, err error) {
	fd, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, 0, err
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		syscall.Close(fd)
		return 0, 0, err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return 0, 0, err
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		return 0, 0, err
	}
	return fd, sa.(*syscall.SockaddrInet4).Port, nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// Process is one process the host's sshd started while it was traced, with the programs it
// executed in order (none for a process sshd forked without executing anything).
type Process struct {
	PID   int
	Execs []string
}

// Program is the last program the process executed, "" when it executed none.
func (p Process) Program() string {
	if len(p.Execs) == 0 {
		return ""
	}
	return p.Execs[len(p.Execs)-1]
}

// TraceProcesses records every process the host's sshd starts (strace -f on the daemon) until
// the returned function is called, which stops the trace and returns them. The daemon itself
// is not among them. It needs strace (Debian package strace): without it the test is skipped,
// or fails under KPS_REQUIRE_SSHD=1.
func (h *Host) TraceProcesses(t testing.TB) func() []Process {
	t.Helper()
	strace, err := exec.LookPath("strace")
	if err != nil {
		if os.Getenv("KPS_REQUIRE_SSHD") == "1" {
			t.Fatal("sshdtest: strace not found (KPS_REQUIRE_SSHD=1 requires it to count processes; Debian package strace)")
		}
		t.Skip("sshdtest: strace not found (Debian package strace)")
	}
	dir := t.TempDir()
	pid := h.cmd.Process.Pid
	cmd := exec.Command(strace, "-f", "-ff", "-e", "trace=execve", "-e", "signal=none", "-o", filepath.Join(dir, "p"), "-p", strconv.Itoa(pid))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("sshdtest: strace: %v", err)
	}
	// strace says "Process <pid> attached" once it traces the daemon.
	attached := make(chan error, 1)
	go func() {
		buf := make([]byte, 4096)
		var seen []byte
		signalled := false
		for {
			n, err := stderr.Read(buf)
			seen = append(seen, buf[:n]...)
			if !signalled && bytes.Contains(seen, []byte("attached")) {
				attached <- nil
				signalled = true
			}
			if err != nil {
				if !signalled {
					attached <- fmt.Errorf("strace ended: %s", seen)
				}
				return
			}
		}
	}()
	select {
	case err := <-attached:
		if err != nil {
			t.Fatalf("sshdtest: %v", err)
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("sshdtest: strace did not attach within 10s")
	}
	stopped := false
	stop := func() []Process {
		if !stopped {
			stopped = true
			_ = cmd.Process.Signal(syscall.SIGINT) // strace detaches and exits
			_ = cmd.Wait()
		}
		files, _ := filepath.Glob(filepath.Join(dir, "p.*"))
		var procs []Process
		for _, f := range files {
			p, err := strconv.Atoi(strings.TrimPrefix(filepath.Ext(f), "."))
			if err != nil || p == pid {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatalf("sshdtest: %v", err)
			}
			proc := Process{PID: p}
			for _, l := range strings.Split(string(b), "\n") {
				// execve("/bin/sh", ["sh", "-c", …], 0x… /* 5 vars */) = 0
				if prog, ok := strings.CutPrefix(l, `execve("`); ok && strings.HasSuffix(l, "= 0") {
					prog, _, _ = strings.Cut(prog, `"`)
					proc.Execs = append(proc.Execs, prog)
				}
			}
			procs = append(procs, proc)
		}
		return procs
	}
	t.Cleanup(func() { stop() })
	return stop
}
