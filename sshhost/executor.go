// Package sshhost performs KPS tasks on a Linux host over SSH (kps-v3-api.md §6): it edits the
// login user's ~/.ssh/authorized_keys and turns password login off and on again. It
// implements kps.HostExecutor.
//
// One task is one SSH connection and at most two sessions: one reads the state and writes
// authorized_keys (only when its content changes: stage the new file, then rename it into
// place, in one dialogue with the executor), one changes the daemon configuration (only when
// the job asks for it). When the connection is lost while authorized_keys is being written, a
// second connection settles what the host holds (see writeAuthorizedKeys).
package sshhost

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/openkps/kps"
	"golang.org/x/crypto/ssh"
)

// DefaultConnectTimeout bounds TCP connect plus SSH handshake (§6.1 step 2).
const DefaultConnectTimeout = 10 * time.Second

// Executor performs jobs on hosts over SSH. The zero value is ready to use.
type Executor struct {
	// ConnectTimeout bounds TCP connect and SSH handshake; DefaultConnectTimeout when zero.
	ConnectTimeout time.Duration
	// Logger receives one line per task and per failed step; nil discards. Secrets and file
	// contents are never logged.
	Logger *slog.Logger
	// AllowedTargets are the addresses and ports the executor may connect to (the operator's
	// --allowed-targets), checked on every address a host name resolves to, before the TCP
	// connection is attempted; the zero value allows everything.
	AllowedTargets kps.AllowedTargets
	// Metrics records every SSH connection attempted; nil records nothing.
	Metrics Metrics
}

// Metrics records the executor's SSH connections (package metrics implements it).
type Metrics interface {
	// SSHConnected records one connection attempted: whether it ended logged in, and the time
	// from the TCP connect to the end of authentication (or the failure).
	SSHConnected(ok bool, took time.Duration)
}

var _ kps.HostExecutor = (*Executor)(nil)

// Execute performs one RESET, REPLACE or UNBIND on the job's host. A failure is a *kps.Error
// with a task outcome code (KPS.6601–KPS.6610); any other error is internal.
func (e *Executor) Execute(ctx context.Context, job kps.HostJob) (kps.HostResult, error) {
	t := &task{
		job:     job,
		where:   net.JoinHostPort(strings.Trim(job.Address, "[]"), strconv.Itoa(job.Port)),
		log:     e.logger(),
		allowed: e.AllowedTargets,
		metrics: e.Metrics,
	}
	t.log = t.log.With("task_id", job.TaskID, "server_id", job.ServerID, "project_id", job.ProjectID,
		"operation", string(job.Operation), "host", t.where, "user", job.User)
	start := time.Now()
	res, err := t.execute(ctx, e.connectTimeout())
	t.close()
	if err != nil {
		t.log.Warn("host task failed", "code", kps.ErrorCode(err), "error", err, "sessions", t.sessions, "duration", time.Since(start))
		return kps.HostResult{}, err
	}
	t.log.Info("host task done", "password_disabled", res.PasswordDisabled, "authorized_keys_written", t.wrote, "sessions", t.sessions, "duration", time.Since(start))
	return res, nil
}

func (e *Executor) connectTimeout() time.Duration {
	if e.ConnectTimeout > 0 {
		return e.ConnectTimeout
	}
	return DefaultConnectTimeout
}

func (e *Executor) logger() *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// task is one job in progress.
type task struct {
	job      kps.HostJob
	where    string // host:port
	log      *slog.Logger
	allowed  kps.AllowedTargets
	metrics  Metrics       // nil: none
	timeout  time.Duration // connect and handshake
	auth     []ssh.AuthMethod
	closers  []func() // of every connection made, in order
	client   *ssh.Client
	local    net.Addr // our end of the connection, as the host sees it (for sshd -T -C)
	sessions int
	wrote    bool
	// promptRefused says why a keyboard-interactive question went unanswered.
	promptRefused string
}

func (t *task) execute(ctx context.Context, timeout time.Duration) (kps.HostResult, error) {
	job := t.job
	var install string
	switch job.Operation {
	case kps.OpReset, kps.OpReplace:
		if job.InstallKey == "" {
			return kps.HostResult{}, fmt.Errorf("sshhost: %s job without a key to install", job.Operation)
		}
		if job.RestorePassword {
			return kps.HostResult{}, fmt.Errorf("sshhost: %s job asks to restore password login", job.Operation)
		}
		install = job.InstallKey
	case kps.OpUnbind:
		if job.DisablePassword {
			return kps.HostResult{}, errors.New("sshhost: UNBIND job asks to disable password login")
		}
	default:
		return kps.HostResult{}, fmt.Errorf("sshhost: unknown operation %q", job.Operation)
	}
	// A key the editor cannot read is a bug upstream, found before touching the host.
	if _, err := editAuthorizedKeys(nil, install, job.RemoveKeys); err != nil {
		return kps.HostResult{}, fmt.Errorf("sshhost: %w", err)
	}
	var err error
	if t.auth, err = t.authMethods(); err != nil {
		return kps.HostResult{}, err
	}
	t.timeout = timeout
	if err := t.dial(ctx); err != nil {
		return kps.HostResult{}, err
	}

	changeConfig := job.DisablePassword || job.RestorePassword
	var st *hostState
	for attempt := 0; ; attempt++ {
		var d *dialogue
		if d, st, err = t.readState(ctx, changeConfig); err != nil {
			return kps.HostResult{}, err
		}
		content, err := editAuthorizedKeys(st.authorizedKeys, install, job.RemoveKeys)
		if err != nil {
			d.close()
			return kps.HostResult{}, fmt.Errorf("sshhost: %w", err)
		}
		if st.authorizedKeysExists && bytes.Equal(content, st.authorizedKeys) {
			d.close()
			break
		}
		if !st.authorizedKeysExists && len(content) == 0 {
			d.close()
			break // unbind on a host without the file: the desired state holds
		}
		// The key is written by this task only when the file does not hold it already: a bind
		// of a key the host already holds (someone else's, say) writes at most the removals.
		adds := install != "" && !holdsKey(st.authorizedKeys, install)
		err = t.writeAuthorizedKeys(ctx, d, st, content, adds)
		if errors.Is(err, errChanged) && attempt == 0 {
			t.log.Info("authorized_keys changed while being edited; editing again")
			continue
		}
		if errors.Is(err, errChanged) {
			return kps.HostResult{}, t.fail(kps.TaskWriteFailed, stepWrite, "the file kept changing while it was being edited")
		}
		if err != nil {
			return kps.HostResult{}, err
		}
		t.wrote = true
		break
	}

	switch {
	case job.DisablePassword:
		if err := t.beforeWrite(ctx, kps.WriteConfig); err != nil {
			return kps.HostResult{}, err
		}
		if err := t.disablePassword(ctx, st); err != nil {
			return kps.HostResult{}, err
		}
		if err := t.awaitDaemon(ctx, stepDisable); err != nil {
			return kps.HostResult{}, err
		}
		return kps.HostResult{PasswordDisabled: true}, nil
	case job.RestorePassword:
		if err := t.restorePassword(ctx, st); err != nil {
			return kps.HostResult{}, err
		}
		if err := t.awaitDaemon(ctx, stepRestore); err != nil {
			return kps.HostResult{}, err
		}
	}
	return kps.HostResult{PasswordDisabled: false}, nil
}

// beforeWrite tells the job's owner that the host is about to be changed (HostJob.BeforeWrite),
// and fails when it says no.
func (t *task) beforeWrite(ctx context.Context, step kps.HostWrite) error {
	if t.job.BeforeWrite == nil {
		return nil
	}
	if err := t.job.BeforeWrite(ctx, step); err != nil {
		t.log.Warn("the write step was not recorded; nothing written", "step", string(step), "error", err)
		return err
	}
	return nil
}

// daemonBackTimeout bounds the wait for sshd to listen again after a reload; restartGrace
// bounds the wait for it to start restarting.
const (
	daemonBackTimeout = 10 * time.Second
	restartGrace      = 2 * time.Second
)

// awaitDaemon waits until the SSH daemon accepts connections again after a reload: OpenSSH
// re-executes itself on SIGHUP and closes its listener meanwhile, so the next task (or the
// user's next login) would otherwise be refused. A daemon that does not come back is reported,
// since the host may now be unreachable over SSH.
func (t *task) awaitDaemon(ctx context.Context, step string) error {
	// First see the restart happen: right after `kill -HUP` the old listener may still accept
	// for a moment, until sshd handles the signal. A daemon that reloads without closing its
	// listener (socket activation) is given restartGrace and then taken as restarted.
	down := time.Now().Add(restartGrace)
	for time.Now().Before(down) && ctx.Err() == nil {
		conn, err := t.dialer(net.Dialer{Timeout: 200 * time.Millisecond}).DialContext(ctx, "tcp", t.where)
		if err != nil {
			break
		}
		conn.Close()
		time.Sleep(5 * time.Millisecond)
	}
	deadline := time.Now().Add(daemonBackTimeout)
	for {
		conn, err := t.dialer(net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", t.where)
		if err == nil {
			conn.Close()
			return nil
		}
		if ctx.Err() != nil {
			return t.ctxError(ctx, "waiting for the SSH daemon after the reload")
		}
		if time.Now().After(deadline) {
			return t.fail(kps.TaskSSHDConfig, step, "the SSH daemon did not accept connections within 10s of the reload")
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// authMethods builds the login methods of §6.1 step 4. A private key that cannot be used is
// an authentication failure found before connecting.
func (t *task) authMethods() ([]ssh.AuthMethod, error) {
	switch t.job.Login.Type {
	case kps.CredentialPassword:
		password := t.job.Login.Key
		rounds := 0
		answer := func(_, _ string, questions []string, echos []bool) ([]string, error) {
			// Only the password prompt is ever answered (§6.1 step 5): a question whose answer
			// is not echoed, and not the new-password questions of an expired password.
			// Prompts are localised ("Passwort:"), so the echo flag is what identifies them.
			if rounds++; rounds > 3 {
				t.promptRefused = "more than three keyboard-interactive rounds"
				return nil, errors.New(t.promptRefused)
			}
			answers := make([]string, len(questions))
			for i, q := range questions {
				lq := strings.ToLower(q)
				if echos[i] || strings.Contains(lq, "new") || strings.Contains(lq, "again") || strings.Contains(lq, "retype") {
					t.promptRefused = "the host asked a keyboard-interactive question other than the password (an expired password?)"
					return nil, errors.New(t.promptRefused)
				}
				answers[i] = password
			}
			return answers, nil
		}
		return []ssh.AuthMethod{ssh.Password(password), ssh.KeyboardInteractive(answer)}, nil
	case kps.CredentialKeyPair:
		signer, err := ssh.ParsePrivateKey([]byte(t.job.Login.Key))
		if err != nil {
			return nil, kps.Errorf(kps.TaskAuthFailed, "SSH authentication as '%s' on %s failed: the private key cannot be used (unparseable or passphrase-protected).", t.job.User, t.where)
		}
		return []ssh.AuthMethod{ssh.PublicKeys(signer)}, nil
	default:
		return nil, fmt.Errorf("sshhost: unknown credential type %q", t.job.Login.Type)
	}
}

// errHostKeyMismatch ends a handshake whose host key is not pinned.
var errHostKeyMismatch = errors.New("host key mismatch")

// close closes every connection the task made.
func (t *task) close() {
	for _, c := range t.closers {
		c()
	}
	t.closers = nil
}

// dial connects, checks the host key and authenticates, and makes the connection the task's
// client. The connection is closed by close, and as soon as ctx ends, which ends any session
// in progress. A host key accepted on first use is required from then on: a second
// connection of the same task checks it as strictly as a pinned one.
func (t *task) dial(ctx context.Context) (err error) {
	timeout := t.timeout
	start := time.Now()
	deadline := start.Add(timeout)
	attempted := true
	if t.metrics != nil {
		defer func() {
			if attempted {
				t.metrics.SSHConnected(err == nil, time.Since(start))
			}
		}()
	}
	conn, err := t.dialer(net.Dialer{Deadline: deadline}).DialContext(ctx, "tcp", t.where)
	if err != nil {
		if ctx.Err() != nil {
			return t.ctxError(ctx, "connecting")
		}
		// A target the operator forbids was never connected to: no attempt to record.
		var refused *targetRefused
		attempted = !errors.As(err, &refused)
		return t.dialError(err)
	}
	closeOnDone := context.AfterFunc(ctx, func() { conn.Close() })
	var client *ssh.Client
	stop := func() {
		closeOnDone()
		if client != nil {
			client.Close()
		}
		conn.Close()
	}
	_ = conn.SetDeadline(deadline)

	var (
		hostKeySeen string // presented key once the callback accepted it
		mismatch    string // presented key when it was refused
		pinErr      error
	)
	pins, algorithms := t.pins()
	cfg := &ssh.ClientConfig{
		User:              t.job.User,
		Auth:              t.auth,
		HostKeyAlgorithms: algorithms,
		ClientVersion:     "SSH-2.0-OpenKPS",
		// Runs during key exchange, before any credential is sent (§6.1 step 3).
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			presented := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
			// Pinned keys decide even when none of them parses: that is a mismatch, never a
			// reason to trust on first use.
			if len(t.job.HostKeys) > 0 {
				for _, p := range pins {
					if bytes.Equal(p.Marshal(), key.Marshal()) {
						hostKeySeen = presented
						return nil
					}
				}
				mismatch = key.Type() + " " + ssh.FingerprintSHA256(key)
				return errHostKeyMismatch
			}
			if t.job.PinHostKey == nil {
				pinErr = errors.New("sshhost: no pinned host key and no PinHostKey to record one")
				return pinErr
			}
			if err := t.job.PinHostKey(ctx, presented); err != nil {
				pinErr = err
				return err
			}
			hostKeySeen = presented
			return nil
		},
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, t.where, cfg)
	if err != nil {
		stop()
		var noCommon *ssh.AlgorithmNegotiationError
		switch {
		case mismatch != "":
			return kps.Errorf(kps.TaskHostKeyMismatch, "Verifying the host key of %s before logging in as '%s' failed: the host presented %s, which is not a pinned host key.", t.where, t.job.User, mismatch)
		case errors.As(err, &noCommon) && noCommon.What == "host key" && len(t.job.HostKeys) > 0:
			// Only the pinned key types are asked for: a host whose key changed type has
			// none of them. That is a changed host key too, and no credential was sent.
			return kps.Errorf(kps.TaskHostKeyMismatch, "Verifying the host key of %s before logging in as '%s' failed: the host offers no key of the pinned types (it offers %s).", t.where, t.job.User, strings.Join(noCommon.RequestedAlgorithms, ", "))
		case pinErr != nil:
			var ke *kps.Error
			if errors.As(pinErr, &ke) {
				return ke
			}
			return fmt.Errorf("sshhost: recording the host key of %s: %w", t.where, pinErr)
		case ctx.Err() != nil:
			return t.ctxError(ctx, "the SSH handshake")
		case errors.Is(err, os.ErrDeadlineExceeded):
			return t.fail(kps.TaskTimeout, stepConnect, fmt.Sprintf("the SSH handshake did not complete within %s", timeout))
		case hostKeySeen == "":
			return t.fail(kps.TaskUnreachable, stepConnect, connReason(err)+" before the SSH handshake completed")
		case t.promptRefused != "":
			return kps.Errorf(kps.TaskAuthFailed, "SSH authentication as '%s' on %s failed: %s.", t.job.User, t.where, t.promptRefused)
		case isAuthFailure(err):
			return kps.Errorf(kps.TaskAuthFailed, "SSH authentication as '%s' on %s failed.", t.job.User, t.where)
		default:
			// The host key was accepted, so the connection ended during authentication.
			return kps.Errorf(kps.TaskAuthFailed, "SSH authentication as '%s' on %s failed: the connection closed during authentication.", t.job.User, t.where)
		}
	}
	_ = conn.SetDeadline(time.Time{})
	client = ssh.NewClient(c, chans, reqs)
	t.closers = append(t.closers, stop)
	t.client = client
	t.local = conn.LocalAddr()
	if len(t.job.HostKeys) == 0 {
		t.job.HostKeys = []string{hostKeySeen}
	}
	t.log.Debug("connected", "host_key", hostKeySeen)
	return nil
}

// pins parses the pinned host keys and chooses the host key algorithms to ask for: those of
// the pinned keys (so that a host with several keys presents a pinned one), or, for trust on
// first use, plain key algorithms only (a certificate is not something to pin).
func (t *task) pins() ([]ssh.PublicKey, []string) {
	var keys []ssh.PublicKey
	var algos []string
	seen := map[string]bool{}
	add := func(a ...string) {
		for _, x := range a {
			if !seen[x] {
				seen[x] = true
				algos = append(algos, x)
			}
		}
	}
	for _, p := range t.job.HostKeys {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(p))
		if err != nil {
			t.log.Warn("ignoring an unparseable pinned host key")
			continue
		}
		keys = append(keys, k)
		if k.Type() == ssh.KeyAlgoRSA {
			add(ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		} else {
			add(k.Type())
		}
	}
	if len(t.job.HostKeys) > 0 {
		if len(algos) == 0 {
			// Nothing usable is pinned: every presented key will mismatch.
			add(ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoRSASHA512)
		}
		return keys, algos
	}
	add(ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
		ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
	return nil, algos
}

// dialer returns d with the operator's allowed targets checked on every address it is about
// to connect to: after name resolution (so a name cannot lead elsewhere than its addresses
// say), before the TCP connection is attempted (Control runs between socket and connect).
func (t *task) dialer(d net.Dialer) *net.Dialer {
	if t.allowed.Everything() {
		return &d
	}
	allowed := t.allowed
	d.Control = func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil || !allowed.Allows(ap.Addr(), int(ap.Port())) {
			return &targetRefused{address: address}
		}
		return nil
	}
	return &d
}

// targetRefused is a connection the allowed targets forbid; it was never attempted.
type targetRefused struct{ address string }

func (e *targetRefused) Error() string { return "target " + e.address + " is not allowed" }

// dialError classifies a failed TCP connect (§6.1 step 2).
func (t *task) dialError(err error) error {
	var dns *net.DNSError
	var refused *targetRefused
	switch {
	case errors.As(err, &refused):
		return t.fail(kps.TaskUnreachable, stepConnect, "the target "+refused.address+" is not allowed: it is outside the networks and ports this service may connect to (the operator's allowed targets), so no connection was attempted")
	case errors.As(err, &dns):
		return t.fail(kps.TaskUnreachable, stepConnect, "the host name cannot be resolved")
	case errors.Is(err, os.ErrDeadlineExceeded) || isTimeout(err):
		return t.fail(kps.TaskTimeout, stepConnect, "the TCP connection timed out")
	default:
		return t.fail(kps.TaskUnreachable, stepConnect, connReason(err))
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// connReason names a connection failure without echoing arbitrary error text.
func connReason(err error) string {
	var errno syscall.Errno
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "the connection was refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "the connection was reset by the host"
	case errors.As(err, &errno):
		return errno.Error()
	default:
		return "the host closed the connection"
	}
}

// isAuthFailure recognises a rejected credential. x/crypto reports a USERAUTH_FAILURE (type 51)
// answering keyboard-interactive as an unexpected message when the server offers the method
// with nothing behind it (sshd without PAM); that is a rejection too.
func isAuthFailure(err error) bool {
	s := err.Error()
	return strings.Contains(s, "unable to authenticate") || strings.Contains(s, "unexpected message type 51")
}

// ctxError is the outcome of a task whose context ended: its deadline (KPS.6602) or a
// cancellation, which only a shutting-down service does (KPS.6609).
func (t *task) ctxError(ctx context.Context, during string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return kps.Errorf(kps.TaskTimeout, "The task on %s as '%s' exceeded its deadline during %s.", t.where, t.job.User, during)
	}
	return kps.Errorf(kps.TaskInterrupted, "The task on %s as '%s' was interrupted during %s.", t.where, t.job.User, during)
}

// Steps, as they appear in messages.
const (
	stepConnect = "Connecting over SSH"
	stepHome    = "Locating the home directory"
	stepLocate  = "Reading ~/.ssh/authorized_keys"
	stepWrite   = "Writing ~/.ssh/authorized_keys"
	stepDisable = "Disabling SSH password login"
	stepRestore = "Restoring SSH password login"
)

// fail builds the one-sentence message of a failed step.
func (t *task) fail(code, step, reason string) error {
	return kps.Errorf(code, "%s as '%s' on %s failed: %s.", step, t.job.User, t.where, reason)
}

// reasons are the failures the scripts recognise, in words.
var reasons = map[string]string{
	"no-user":                    "the user is unknown to getent passwd",
	"no-home":                    "the user has no home directory",
	"home-writable":              "the home directory is writable by group or others, so sshd (StrictModes) would ignore the key",
	"ssh-dir-symlink":            "~/.ssh is a symbolic link",
	"ssh-dir-not-directory":      "~/.ssh is not a directory",
	"ssh-dir-owner":              "~/.ssh is owned by another user",
	"ssh-dir-create":             "~/.ssh cannot be created",
	"ssh-dir-mode":               "the mode of ~/.ssh cannot be set to 0700",
	"authorized-keys-symlink":    "~/.ssh/authorized_keys is a symbolic link",
	"authorized-keys-not-file":   "~/.ssh/authorized_keys is not a regular file",
	"authorized-keys-unreadable": "~/.ssh/authorized_keys cannot be read",
	"write-temp":                 "the temporary file cannot be written (disk full or read-only?)",
	"write-incomplete":           "the new content did not arrive intact",
	"fsync":                      "the temporary file cannot be flushed to disk",
	"rename":                     "the temporary file cannot be renamed over authorized_keys",
	"read-back":                  "the file read back differs from what was written",
	"file-mode":                  "the file does not have mode 0600 after writing",
	"file-owner":                 "the file is not owned by the user after writing",
	"no-digest":                  "neither sha256sum nor openssl is installed",
	"no-id":                      "the user's ID cannot be read (id -u)",
	"no-privileges":              "root or password-less sudo (sudo -n) is needed to change the SSH daemon configuration",
	"no-sshd":                    "the sshd binary cannot be found",
	"sshd-config-symlink":        "the sshd configuration file is a symbolic link",
	"sshd-config-missing":        "the sshd configuration file does not exist",
	"sshd-config-unreadable":     "the sshd configuration file cannot be read",
	"staged-missing":             "the staged temporary file is gone",
	"target-symlink":             "the file to write is a symbolic link",
	"changed":                    "the sshd configuration changed while it was being edited",
	"write":                      "the configuration file cannot be written; the change was rolled back",
	"validate":                   "sshd -t rejected the configuration; the change was rolled back",
	"not-effective":              "sshd -T does not show password authentication off (another setting takes precedence); the change was rolled back",
	"reload":                     "the SSH daemon could not be reloaded; the change was rolled back",
}

// errChanged reports that authorized_keys changed between reading and renaming.
var errChanged = errors.New("authorized_keys changed concurrently")

// run executes a script in a new session with the given arguments and stdin, and returns its
// standard output, parsed as it arrives and within the bounds of output.go (a host that
// sends more has its session closed at once). Failures are mapped to task outcomes with step
// in the message.
func (t *task) run(ctx context.Context, step, script string, args []string, stdin []byte) (*scriptOutput, error) {
	sess, err := t.newSession(ctx, step)
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	var stderr limitedBuffer
	stderr.max = 64 << 10
	sess.Stderr = &stderr
	sess.Stdin = bytes.NewReader(stdin)
	start := time.Now()
	stdout, err := sess.StdoutPipe()
	if err == nil {
		err = sess.Start(command(script, args))
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, &lostError{t.ctxError(ctx, lowerFirst(step))}
		}
		return nil, &lostError{t.fail(kps.TaskRemoteFailed, step, "the remote command cannot be started")}
	}
	counted := &countingReader{r: stdout}
	out := newScriptOutput()
	rerr := out.read(bufio.NewReaderSize(counted, 64<<10), "")
	if bad := t.badOutput(step, rerr); bad != nil {
		sess.Close()
		if ctx.Err() != nil {
			return nil, &lostError{t.ctxError(ctx, lowerFirst(step))}
		}
		return nil, bad
	}
	err = sess.Wait()
	if ctx.Err() != nil {
		return nil, &lostError{t.ctxError(ctx, lowerFirst(step))}
	}
	t.log.Debug("remote step", "step", step, "duration", time.Since(start), "stdout_bytes", counted.n)
	if err == nil {
		if out.complete() != nil {
			return nil, t.fail(kps.TaskRemoteFailed, step, "the host's answer cannot be parsed")
		}
		return out, nil
	}
	return nil, t.exitError(step, err, out.other, stderr.String())
}

// badOutput maps a host's output past the bounds, or unlike anything the scripts print, to the
// task's failure; nil for anything else (the output ended).
func (t *task) badOutput(step string, err error) error {
	var over *errOverflow
	var bad *errMalformed
	switch {
	case errors.As(err, &over):
		t.log.Warn("remote step failed", "step", step, "reason", over.what)
		return t.fail(kps.TaskRemoteFailed, step, over.what)
	case errors.As(err, &bad):
		t.log.Warn("remote step failed", "step", step, "reason", bad.Error())
		return t.fail(kps.TaskRemoteFailed, step, "the host's answer cannot be parsed")
	}
	return nil
}

// countingReader counts what passes through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// newSession opens a session on the task's connection.
func (t *task) newSession(ctx context.Context, step string) (*ssh.Session, error) {
	sess, err := t.client.NewSession()
	if err != nil {
		if ctx.Err() != nil {
			return nil, &lostError{t.ctxError(ctx, lowerFirst(step))}
		}
		return nil, &lostError{t.fail(kps.TaskRemoteFailed, step, "an SSH session cannot be opened")}
	}
	t.sessions++
	return sess, nil
}

// command is the remote command line running script with args as its positional parameters.
func command(script string, args []string) string {
	cmd := "/bin/sh -c " + shellQuote(script) + " kps"
	for _, a := range args {
		cmd += " " + shellQuote(a)
	}
	return cmd
}

// exitError maps the end of a session that did not succeed (err from Wait or Run) to a task
// outcome, from the "kps-fail" line of its output when the script printed one.
func (t *task) exitError(step string, err error, stdout []byte, stderr string) error {
	var exit *ssh.ExitError
	if !errors.As(err, &exit) {
		return &lostError{t.fail(kps.TaskRemoteFailed, step, "the SSH session ended unexpectedly")}
	}
	if exit.ExitStatus() == 3 {
		if code, reason, ok := failure(stdout); ok {
			if code == "retry" {
				return errChanged
			}
			if text, known := reasons[reason]; known {
				t.log.Warn("remote step failed", "step", step, "reason", reason, "stderr", tail(stderr, 1024))
				return t.fail("KPS."+code, step, text)
			}
		}
	}
	t.log.Warn("remote step failed", "step", step, "exit_status", exit.ExitStatus(), "stderr", tail(stderr, 1024))
	// The script did not say what it had done (killed, or an unforeseen failure).
	return &lostError{t.fail(kps.TaskRemoteFailed, step, fmt.Sprintf("a remote command exited with status %d", exit.ExitStatus()))}
}

func lowerFirst(s string) string { return strings.ToLower(s[:1]) + s[1:] }

// dialogue is the task script's session (taskScript): the executor reads the state the
// script prints, then answers on its stdin.
type dialogue struct {
	t      *task
	ctx    context.Context
	sess   *ssh.Session
	stdin  io.WriteCloser
	stdout *bufio.Reader
	read   *countingReader // under stdout: the output read so far
	stderr limitedBuffer
	out    *scriptOutput // everything the script printed so far, parsed
	start  time.Time
}

// startDialogue starts taskScript with args in a new session.
func (t *task) startDialogue(ctx context.Context, args []string) (*dialogue, error) {
	sess, err := t.newSession(ctx, stepLocate)
	if err != nil {
		return nil, err
	}
	d := &dialogue{t: t, ctx: ctx, sess: sess, start: time.Now(), out: newScriptOutput()}
	d.stderr.max = 64 << 10
	sess.Stderr = &d.stderr
	stdin, err1 := sess.StdinPipe()
	stdout, err2 := sess.StdoutPipe()
	if err = errors.Join(err1, err2); err == nil {
		err = sess.Start(command(taskScript, args))
	}
	if err != nil {
		sess.Close()
		if ctx.Err() != nil {
			return nil, &lostError{t.ctxError(ctx, lowerFirst(stepLocate))}
		}
		return nil, &lostError{t.fail(kps.TaskRemoteFailed, stepLocate, "the remote command cannot be started")}
	}
	d.read = &countingReader{r: stdout}
	d.stdin, d.stdout = stdin, bufio.NewReaderSize(d.read, 64<<10)
	return d, nil
}

// close ends the session; the script, told nothing more, ends without writing.
func (d *dialogue) close() {
	d.stdin.Close()
	d.sess.Close()
}

// until reads the script's output up to the line marker, parsing it into d.out as it
// arrives. When the output ends first, the session's exit status says why; when it passes the
// bounds of output.go, the session is closed at once and the task fails.
func (d *dialogue) until(step, marker string) error {
	err := d.out.read(d.stdout, marker)
	if err == nil {
		d.t.log.Debug("remote step", "step", step, "duration", time.Since(d.start), "stdout_bytes", d.read.n)
		d.start = time.Now()
		return nil
	}
	if bad := d.t.badOutput(step, err); bad != nil {
		d.sess.Close()
		if d.ctx.Err() != nil {
			return &lostError{d.t.ctxError(d.ctx, lowerFirst(step))}
		}
		return bad
	}
	return d.ended(step)
}

// ended waits for the exit status of a script whose output ended before the expected line.
func (d *dialogue) ended(step string) error {
	err := d.sess.Wait()
	d.sess.Close()
	if d.ctx.Err() != nil {
		return &lostError{d.t.ctxError(d.ctx, lowerFirst(step))}
	}
	if err == nil {
		return &lostError{d.t.fail(kps.TaskRemoteFailed, step, "the remote command ended early")}
	}
	return d.t.exitError(step, err, d.out.other, d.stderr.String())
}

// send writes to the script's stdin.
func (d *dialogue) send(step string, b []byte) error {
	if _, err := d.stdin.Write(b); err != nil {
		d.sess.Close()
		if d.ctx.Err() != nil {
			return &lostError{d.t.ctxError(d.ctx, lowerFirst(step))}
		}
		return &lostError{d.t.fail(kps.TaskRemoteFailed, step, "the SSH session ended unexpectedly")}
	}
	return nil
}

// lostError is the failure of a session whose script may or may not have done its work: the
// connection or the task's context ended before an exit status arrived, or the script ended
// without saying why. err is the failure to report when that cannot be settled.
type lostError struct{ err error }

func (e *lostError) Error() string { return e.err.Error() }
func (e *lostError) Unwrap() error { return e.err }

// failure finds the "kps-fail <code> <reason>" line a script prints before exiting with 3.
func failure(out []byte) (code, reason string, ok bool) {
	for _, l := range bytes.Split(out, []byte("\n")) {
		if f := strings.Fields(string(l)); len(f) == 3 && f[0] == "kps-fail" {
			code, reason, ok = f[1], f[2], true
		}
	}
	if ok && code != "retry" && (len(code) != 4 || strings.Trim(code, "0123456789") != "") {
		return "", "", false
	}
	return code, reason, ok
}

// hostState is what the read session found.
type hostState struct {
	authorizedKeys       []byte
	authorizedKeysExists bool
	sshdConfig           []byte
	sshdConfigMode       string // octal
	sshdConfigOwner      string // uid:gid
	version              string
}

func (t *task) sshdConfigPath() string {
	if t.job.SSHDConfig != "" {
		return t.job.SSHDConfig
	}
	return kps.DefaultSSHDConfig
}

// readState starts the task's session and reads the state it prints; with priv it also checks
// privileges (before anything is changed, §6.5) and reads the daemon configuration. The
// session stays open for the write (writeAuthorizedKeys) or is closed with d.close.
func (t *task) readState(ctx context.Context, priv bool) (*dialogue, *hostState, error) {
	args := []string{t.job.User, "-"}
	if priv {
		args = []string{t.job.User, "priv", t.sshdConfigPath(), privReadScript}
	}
	d, err := t.startDialogue(ctx, args)
	if err != nil {
		return nil, nil, err
	}
	err = d.until(stepLocate, "ready")
	var ke *kps.Error
	if errors.As(err, &ke) {
		// The read checks ahead for the later steps; name the step a failure is about.
		switch ke.Code {
		case kps.TaskNoUser:
			ke.Message = strings.Replace(ke.Message, stepLocate, stepHome, 1)
		case kps.TaskWriteFailed:
			ke.Message = strings.Replace(ke.Message, stepLocate, stepWrite, 1)
		case kps.TaskPrivileges, kps.TaskSSHDConfig:
			ke.Message = strings.Replace(ke.Message, stepLocate, t.passwordStep(), 1)
		}
	}
	if err != nil {
		return nil, nil, err
	}
	st := &hostState{}
	sections, fields := d.out.sections, d.out.fields
	st.authorizedKeys, st.authorizedKeysExists = sections["authorized_keys"]
	if priv {
		var ok bool
		if st.sshdConfig, ok = sections["sshd_config"]; !ok {
			d.close()
			return nil, nil, t.fail(kps.TaskRemoteFailed, t.passwordStep(), "the host's answer cannot be parsed")
		}
		st.version = fields["version"]
		st.sshdConfigMode, st.sshdConfigOwner, ok = parseLS(fields["stat"])
		if !ok {
			d.close()
			return nil, nil, t.fail(kps.TaskRemoteFailed, t.passwordStep(), "the mode of the sshd configuration file cannot be read")
		}
	}
	return d, st, nil
}

func (t *task) passwordStep() string {
	if t.job.RestorePassword {
		return stepRestore
	}
	return stepDisable
}

// settleTimeout bounds the check of a write whose connection was lost after the task's
// context ended (deadline or shutdown): connecting again and reading the file.
const settleTimeout = 10 * time.Second

// writeAuthorizedKeys replaces authorized_keys with content in the task's session, which
// readState left waiting (taskScript): send the new content, which the script stages; once it
// says "staged", tell it to commit (rename the staged file into place). When the outcome is
// unknown (the connection was lost, or the context ended, before "done"), the task connects
// again and settles it with verifyScript: the staged file is removed, so a rename still
// pending on the host can no longer happen, and the file then read is the outcome. It holds
// the new content: the write succeeded. It holds the old content: the write failed, with
// KPS.6605. No connection can be made: the outcome stays unknown and the task fails with the
// code of the failed connection.
//
// It was two sessions (stage, then commit) until the dialogue: what makes a lost connection
// safe is that the rename waits for the executor's "commit", sent only after the staged file
// exists, so verifyScript's removal always comes after the staging and fences the rename.
//
// adds says that the new content holds the job's key where the old did not: then the job's
// owner records that before "commit" is sent (beforeWrite), which is before the host can
// change the file.
func (t *task) writeAuthorizedKeys(ctx context.Context, d *dialogue, st *hostState, content []byte, adds bool) error {
	defer d.close()
	expect := "absent"
	if st.authorizedKeysExists {
		expect = sha256Hex(st.authorizedKeys)
	}
	suffix, want := randomSuffix(), sha256Hex(content)
	msg := make([]byte, 0, len(content)+200)
	msg = fmt.Appendf(msg, "write %d %s %s %s\n", len(content), want, expect, suffix)
	msg = append(msg, content...)
	err := d.send(stepWrite, msg)
	if err == nil {
		err = d.until(stepWrite, "staged")
	}
	if err == nil && adds {
		if merr := t.beforeWrite(ctx, kps.WriteKey); merr != nil {
			// Without "commit" the script removes the staged file and renames nothing.
			return merr
		}
	}
	if err == nil {
		err = d.send(stepWrite, []byte("commit\n"))
	}
	if err == nil {
		d.stdin.Close()
		err = d.until(stepWrite, "done")
	}
	var lost *lostError
	if !errors.As(err, &lost) {
		return err
	}
	d.close()
	return t.settleWrite(ctx, st, content, suffix, lost.err)
}

// settleWrite finds out over a new connection what a write whose outcome is unknown did.
func (t *task) settleWrite(ctx context.Context, st *hostState, content []byte, suffix string, cause error) error {
	t.log.Warn("the outcome of writing authorized_keys is unknown; connecting again to check the file", "code", kps.ErrorCode(cause), "error", cause)
	sctx := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		sctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
		defer cancel()
	}
	unknown := func(err error) error {
		return kps.Errorf(kps.ErrorCode(err), "%s as '%s' on %s failed: the connection was lost during the write, and checking the file over a new connection failed (%s); authorized_keys holds either the old or the new content, never a mix.",
			stepWrite, t.job.User, t.where, strings.TrimSuffix(kps.ErrorMessage(err), "."))
	}
	if err := t.dial(sctx); err != nil {
		return unknown(err)
	}
	out, err := t.run(sctx, stepWrite, verifyScript, []string{t.job.User, suffix}, nil)
	if err != nil {
		return unknown(err)
	}
	fields := out.fields
	got, exists := out.sections["authorized_keys"]
	switch {
	case exists && bytes.Equal(got, content):
		t.log.Info("checked over a new connection: authorized_keys holds the new content")
		if !strings.HasPrefix(fields["mode"], "-rw-------") {
			return t.fail(kps.TaskWriteFailed, stepWrite, reasons["file-mode"])
		}
		if fields["owner"] != fields["uid"] {
			return t.fail(kps.TaskWriteFailed, stepWrite, reasons["file-owner"])
		}
		if ctx.Err() != nil && (t.job.DisablePassword || t.job.RestorePassword) {
			return cause // the key is in place; the daemon configuration was not reached
		}
		return nil
	case exists == st.authorizedKeysExists && bytes.Equal(got, st.authorizedKeys):
		t.log.Info("checked over a new connection: authorized_keys is unchanged")
		if ctx.Err() != nil {
			return cause // the deadline or the shutdown is what ended the task
		}
		return t.fail(kps.TaskWriteFailed, stepWrite, "the connection was lost during the write; checked over a new connection, the file is unchanged")
	default:
		return t.fail(kps.TaskWriteFailed, stepWrite, "the connection was lost during the write, and the file changed meanwhile (edited by someone else?)")
	}
}

// disablePassword runs the configuration session of §6.5.
func (t *task) disablePassword(ctx context.Context, st *hostState) error {
	challenge := needsChallengeResponse(st.version)
	plan := planDisable(st.sshdConfig, challenge)
	main := t.sshdConfigPath()
	var target, expect, mode, owner string
	var content []byte
	switch {
	case plan.DropInDir != "":
		target, content, expect, mode, owner = plan.DropInDir+"/"+dropInName, dropInContent(challenge), "-", "644", "0:0"
	case plan.Main != nil:
		target, content, expect, mode, owner = main, plan.Main, sha256Hex(st.sshdConfig), st.sshdConfigMode, st.sshdConfigOwner
	default:
		target = "-" // the main file already carries the KPS block: validate, confirm, reload
	}
	t.log.Debug("disabling password login", "drop_in", plan.DropInDir != "", "main_edit", plan.Main != nil)
	return t.changeConfig(ctx, stepDisable, "disable", target, content, expect, mode, owner, challenge, nil)
}

// restorePassword runs the configuration session of §6.6: remove the drop-in and undo the main
// file edit, whichever exists. Finding neither means it is already restored.
func (t *task) restorePassword(ctx context.Context, st *hostState) error {
	main := t.sshdConfigPath()
	restored, changed, err := restoreMain(st.sshdConfig)
	if err != nil {
		return t.fail(kps.TaskSSHDConfig, stepRestore, "the sshd configuration has '# BEGIN KPS' without '# END KPS'")
	}
	target, expect := "-", "-"
	var content []byte
	if changed {
		target, content, expect = main, restored, sha256Hex(st.sshdConfig)
	}
	var dropIns []string
	for _, d := range dropInDirs(st.sshdConfig) {
		dropIns = append(dropIns, d+"/"+dropInName)
	}
	if !changed && len(dropIns) == 0 {
		t.log.Info("no KPS change to the sshd configuration found; password login counts as restored")
		return nil
	}
	return t.changeConfig(ctx, stepRestore, "restore", target, content, expect, st.sshdConfigMode, st.sshdConfigOwner, needsChallengeResponse(st.version), dropIns)
}

func (t *task) changeConfig(ctx context.Context, step, action, target string, content []byte, expect, mode, owner string, challenge bool, remove []string) error {
	second := "kbd"
	if challenge {
		second = "challenge"
	}
	addr := "127.0.0.1"
	if ta, ok := t.local.(*net.TCPAddr); ok {
		addr = ta.IP.String()
	}
	spec := "user=" + t.job.User + ",host=" + addr + ",addr=" + addr
	args := append([]string{configScript, action, t.sshdConfigPath(), target, sha256Hex(content), expect, mode, owner, randomSuffix(), spec, second}, remove...)
	_, err := t.run(ctx, step, asRootScript, args, content)
	return err
}

// asRootScript runs the script in $1 as root with the remaining arguments.
var asRootScript = prelude + `me=''
myid() { [ -n "$me" ] || me=$(id -u) || fail 6610 no-id; }
s=$1
shift
` + asRoot + `
`

// parseLS reads the mode and owner of "ls -ln" output ("sshd_config -rw-r--r-- 1 0 0 …").
func parseLS(s string) (mode, owner string, ok bool) {
	f := strings.Fields(s)
	if len(f) < 5 || len(f[1]) < 10 {
		return "", "", false
	}
	perm := f[1][1:10]
	m := 0
	for i, c := range perm {
		if c != '-' && c != 'S' && c != 'T' {
			m |= 1 << (8 - i)
		}
	}
	return strconv.FormatInt(int64(m), 8), f[3] + ":" + f[4], true
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func randomSuffix() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// shellQuote quotes s as one POSIX sh word.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// limitedBuffer keeps at most max bytes and remembers that more came.
type limitedBuffer struct {
	bytes.Buffer
	max      int
	overflow bool
}

// Write always reports success: a short write would make the session fail instead of
// reporting the overflow.
func (b *limitedBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if b.Len()+n > b.max {
		b.overflow = true
		p = p[:max(0, b.max-b.Len())]
	}
	b.Buffer.Write(p)
	return n, nil
}
