// Package sshhost performs KPS tasks on a Linux host over SSH (kps-v3-api.md §6): it edits the
// login user's ~/.ssh/authorized_keys and turns password login off and on again. It
// implements kps.HostExecutor.
//
// One task is one SSH connection. authorized_keys is read and written through the SSH file
// transfer subsystem where the host offers it (files.go, sftp.go: stage the new file 0600,
// fsync, posix-rename, read back), or through the task script where it does not (scripts.go);
// a second session changes the daemon configuration only when the job asks for it. When the
// connection is lost while authorized_keys is being written, a second connection settles what
// the host holds (see writeAuthorizedKeys).
//
// Two more entry points reuse the same dial and host key rules: Staged (rotate.go) runs a
// rotation's step (add the new key, verify a fresh login with it, only then remove the old),
// and Executor.Inspect (inspect.go) reads a host for a drift check without writing anything.
//
// The files follow a task: executor.go is the plan (read → edit → write → configure → await);
// dial.go connects and logs in; dialogue.go runs the scripts of scripts.go and reads their
// output within the bounds of output.go; failure.go names what went wrong. The edits
// themselves, authorized_keys.go and sshd_config.go, are functions of what was read, and
// whether two keys are the same key is package sshkey's answer. It imports the root package
// and sshkey, never the store: what it learns goes back through kps.HostJob's callbacks.
package sshhost

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
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

// newTask is the connection state of one job on its host, logging with attrs, the host and
// the login user (a task's, or a drift check's read, inspect.go).
func (e *Executor) newTask(job kps.HostJob, attrs ...any) *task {
	t := &task{
		job:     job,
		where:   net.JoinHostPort(strings.Trim(job.Address, "[]"), strconv.Itoa(job.Port)),
		allowed: e.AllowedTargets,
		metrics: e.Metrics,
	}
	t.log = e.logger().With(append(attrs, "host", t.where, "user", job.User)...)
	return t
}

// Execute performs one RESET, REPLACE or UNBIND on the job's host. A failure is a *kps.Error
// with a task outcome code (KPS.6601–KPS.6610); any other error is internal.
func (e *Executor) Execute(ctx context.Context, job kps.HostJob) (kps.HostResult, error) {
	t := e.newTask(job, "task_id", job.TaskID, "server_id", job.ServerID, "project_id", job.ProjectID,
		"operation", string(job.Operation))
	start := time.Now()
	res, err := t.execute(ctx, e.connectTimeout())
	t.close()
	if err != nil {
		t.log.Warn("host task failed", "code", kps.ErrorCode(err), "error", err, "sessions", t.sessions, "duration", time.Since(start))
		return kps.HostResult{}, err
	}
	t.log.Info("host task done", "password_disabled", res.PasswordDisabled, "authorized_keys_written", t.wrote, "sessions", t.sessions, "script", t.scriptOnly || t.job.DisablePassword || t.job.RestorePassword, "duration", time.Since(start))
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
	// files is the file transfer session, while it is open; scriptOnly says the task uses the
	// script from now on (the host has no usable subsystem, or handed a step back).
	files      *sftpSession
	scriptOnly bool
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
	if job.AfterLogin != nil {
		if err := job.AfterLogin(ctx); err != nil {
			return kps.HostResult{}, err
		}
	}

	changeConfig := job.DisablePassword || job.RestorePassword
	var st *hostState
	for attempt := 0; ; attempt++ {
		var ks keysSession
		if ks, st, err = t.readState(ctx, changeConfig); err != nil {
			return kps.HostResult{}, err
		}
		content, err := editAuthorizedKeys(st.authorizedKeys, install, job.RemoveKeys)
		if err != nil {
			ks.close()
			return kps.HostResult{}, fmt.Errorf("sshhost: %w", err)
		}
		if st.authorizedKeysExists && bytes.Equal(content, st.authorizedKeys) {
			ks.close()
			break
		}
		if !st.authorizedKeysExists && len(content) == 0 {
			ks.close()
			break // unbind on a host without the file: the desired state holds
		}
		// The key is written by this task only when the file does not hold it already: a bind
		// of a key the host already holds (someone else's, say) writes at most the removals.
		adds := install != "" && !holdsKey(st.authorizedKeys, install)
		err = ks.write(ctx, st, content, adds)
		var fb *fallback
		if errors.As(err, &fb) {
			// Nothing was changed, or what was staged is removed: the script does it all.
			t.useScript(fb)
			attempt--
			continue
		}
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

// keysSession is the session that reads and writes authorized_keys: the file transfer
// subsystem (files.go) or the task script's dialogue (writeAuthorizedKeys). write replaces
// the file with content, announcing the write first when the content adds the job's key
// (adds); it ends the session, except after errChanged, when the next read may use it again.
type keysSession interface {
	write(ctx context.Context, st *hostState, content []byte, adds bool) error
	close()
}

func (d *dialogue) write(ctx context.Context, st *hostState, content []byte, adds bool) error {
	return d.t.writeAuthorizedKeys(ctx, d, st, content, adds)
}

// useScript makes the rest of the task use the task script, for the reason given.
func (t *task) useScript(fb *fallback) {
	t.log.Info("using the task script", "reason", fb.reason)
	t.scriptOnly = true
	t.files = nil
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

// readState reads the state a task starts from in the session that will write authorized_keys:
// the file transfer subsystem (files.go) where the host offers it and the task does not
// change the daemon configuration, else the task script's dialogue, which with priv also
// checks privileges (before anything is changed, §6.5) and reads the daemon configuration.
// The session stays open for the write (keysSession.write) or is closed with close.
func (t *task) readState(ctx context.Context, priv bool) (keysSession, *hostState, error) {
	if !priv && !t.scriptOnly {
		if t.files == nil {
			s, err := t.openSFTP(ctx)
			var fb *fallback
			switch {
			case errors.As(err, &fb):
				t.useScript(fb)
			case err != nil:
				return nil, nil, err
			default:
				t.files = s
			}
		}
		if s := t.files; s != nil {
			st, err := s.read(ctx)
			var fb *fallback
			switch {
			case errors.As(err, &fb):
				s.close()
				t.useScript(fb)
			case err != nil:
				return nil, nil, err
			default:
				t.log.Debug("remote step", "step", stepLocate, "duration", time.Since(s.start), "file_transfer", "sftp")
				s.start = time.Now()
				return s, st, nil
			}
		}
	}
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
