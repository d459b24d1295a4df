package sshhost

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/sshkey"
	"golang.org/x/crypto/ssh"
)

// Dialling a host (§6.1 steps 1–4): the allowed targets, the TCP connection, the host key
// check before any credential is sent, the login methods, and how a failed connection is
// named. Everything here happens before the host can change.

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
					if sshkey.SameKeyLine(p, presented) {
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

// pins returns the pinned host keys that can be used (those x/crypto parses; the others can
// never match) and chooses the host key algorithms to ask for: those of the pinned keys (so
// that a host with several keys presents a pinned one), or, for trust on first use, plain key
// algorithms only (a certificate is not something to pin).
func (t *task) pins() ([]string, []string) {
	var keys []string
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
		keys = append(keys, p)
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
