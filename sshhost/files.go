package sshhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"time"

	"github.com/openkps/kps"
	"golang.org/x/crypto/ssh"
)

// Reading and writing authorized_keys through the SSH file transfer subsystem (sftp.go): one
// sftp-server process on the host for the whole edit, where the task script (scripts.go)
// starts about ten (sh, getent, ls, od, head, sync twice, sha256sum twice, mv). The steps and
// guarantees are those of the script, §6.2–6.4:
//
//   - the home directory is the user's (home-directory, the password database's entry) and
//     not writable by group or others (StrictModes); ~/.ssh is a directory,
//     not a symbolic link, owned by the user, mode 0700 (made so); authorized_keys is a
//     regular file, not a symbolic link;
//   - the new content is staged in ~/.ssh/.authorized_keys.kps-<random>, created exclusively
//     with mode 0600 by the user, its size and mode checked, flushed (fsync@openssh.com);
//   - the write is announced (HostJob.BeforeWrite) once the staged file is in place, before
//     anything can change authorized_keys;
//   - the file is read again and must still be what the edit started from (else the task
//     edits again; read while the announcement is committed, which the rename waits for),
//     then the staged file is renamed over it (posix-rename@openssh.com, rename(2)), the
//     directory is flushed, and the file is read back.
//
// Requests go out in batches, one round trip each, so that a task takes three after the login
// (the read, the staging, the commit) and one more to check the file: every round trip waits
// for sftp-server to be scheduled on a host that may be busy.
//
// Whatever this path cannot decide the way the script does — a layout the script refuses
// (with its own message), a host with restorecon (SELinux labels), a server without the
// extensions, an answer that is not the protocol, a staged write the server refused — it
// hands to the script, having changed nothing or removed what it staged. A connection lost
// once the staged file may exist is settled as the script's is (settleWrite): the staged
// file is removed over a new connection, which fences a rename still in flight, and the file
// then read is the outcome.

// sftpSession is the task's session of the file transfer subsystem.
type sftpSession struct {
	t      *task
	sess   *ssh.Session
	stdin  io.WriteCloser
	c      *sftpClient
	stderr limitedBuffer
	start  time.Time
	// What the read found, for the write: ~/.ssh's attributes (when it exists) and the size of
	// authorized_keys.
	sshDir    fileAttrs
	sshExists bool
	ended     bool
	// The paths of ~/.ssh and authorized_keys, from the home directory.
	sshPath, akPath string
}

// fallback is the reason the subsystem hands a task to the script.
type fallback struct{ reason string }

func (f *fallback) Error() string { return "file transfer subsystem: " + f.reason }

func fallbackf(format string, args ...any) error { return &fallback{fmt.Sprintf(format, args...)} }

// restoreconPaths are where restorecon lives where SELinux is installed: the script runs it
// after the rename, so such a host is the script's.
var restoreconPaths = []string{"/sbin/restorecon", "/usr/sbin/restorecon"}

// openSFTP starts the subsystem on the task's connection and sends INIT; the first batch
// (read) takes its answer. A host that refuses the subsystem is a *fallback.
func (t *task) openSFTP(ctx context.Context) (*sftpSession, error) {
	sess, err := t.newSession(ctx, stepLocate)
	if err != nil {
		return nil, err
	}
	s := &sftpSession{t: t, sess: sess, start: time.Now()}
	s.stderr.max = 64 << 10
	sess.Stderr = &s.stderr
	stdin, err1 := sess.StdinPipe()
	stdout, err2 := sess.StdoutPipe()
	if err := errors.Join(err1, err2); err != nil {
		sess.Close()
		return nil, fallbackf("%v", err)
	}
	if err := sess.RequestSubsystem("sftp"); err != nil {
		sess.Close()
		if ctx.Err() != nil {
			return nil, &lostError{t.ctxError(ctx, lowerFirst(stepLocate))}
		}
		return nil, fallbackf("the host offers no sftp subsystem")
	}
	s.stdin = stdin
	if s.c, err = newSFTPClient(stdin, stdout); err != nil {
		sess.Close()
		return nil, fallbackf("INIT: %v", err)
	}
	return s, nil
}

// close ends the session: the server sees the end of its input and exits. Like the script's
// session it is not waited for: the task's answers are all in.
func (s *sftpSession) close() {
	if s.ended {
		return
	}
	s.ended = true
	s.stdin.Close()
	s.sess.Close()
}

// abandon ends the session after a failure.
func (s *sftpSession) abandon() {
	s.ended = true
	s.sess.Close()
}

// failed maps a failure of the session (not a status the server answered) to the task's
// outcome: the task's context ended, or the session or connection was lost.
func (s *sftpSession) failed(ctx context.Context, step string, err error) error {
	s.abandon()
	if ctx.Err() != nil {
		return &lostError{s.t.ctxError(ctx, lowerFirst(step))}
	}
	s.t.log.Warn("remote step failed", "step", step, "error", err, "stderr", clip(s.stderr.String(), 1024))
	return &lostError{s.t.fail(kps.TaskRemoteFailed, step, "the SSH session ended unexpectedly")}
}

// read reads the state a task starts from (§6.2, §6.4 steps 1–2) and authorized_keys, in
// one round trip for a file of less than a read chunk: the first batch goes with INIT, names
// the files relative to the session's working directory (sshd starts it in the home
// directory) and asks for the home directory and that directory's real path, to check it;
// where they differ (a home reached through a symbolic link, a home sshd could not enter)
// it reads again by the home directory's path. Anything the script would refuse, or that
// this path does not handle, is a *fallback; a file over MaxAuthorizedKeys fails the task as
// the script's read does.
func (s *sftpSession) read(ctx context.Context) (*hostState, error) {
	c := s.c
	first := s.sshPath == ""
	homePath, sshPath, akPath := ".", ".ssh", ".ssh/authorized_keys"
	var home, cwd *sftpRequest
	var reqs []*sftpRequest
	if first {
		home, cwd = c.homeDir(s.t.job.User), c.realpath(".")
		reqs = append(reqs, home, cwd)
	} else {
		homePath, sshPath, akPath = path.Dir(s.sshPath), s.sshPath, s.akPath
	}
	homeAttrs, dir, ak := c.stat(homePath), c.lstat(sshPath), c.lstat(akPath)
	open := c.open(akPath, fxfRead, 0)
	// No handle is open (the ones before are closed first, c.later): the file gets the first.
	ahead := []*sftpRequest{c.read(firstHandle, 0, sftpReadChunk), c.read(firstHandle, sftpReadChunk, 1)}
	reqs = append(reqs, homeAttrs, dir, ak, open)
	reqs = append(reqs, ahead...)
	var labels []*sftpRequest
	for _, p := range restoreconPaths {
		labels = append(labels, c.stat(p))
	}
	reqs = append(reqs, labels...)
	// A subsystem that never answers is cut after the connect timeout.
	var timer *time.Timer
	if c.versionPending {
		timer = time.AfterFunc(s.t.timeout, func() { s.sess.Close() })
	}
	err := c.do(reqs...)
	if timer != nil && !timer.Stop() && err != nil && ctx.Err() == nil {
		s.abandon()
		return nil, fallbackf("the subsystem did not answer within %s", s.t.timeout)
	}
	if err != nil {
		return nil, s.readFailed(ctx, err)
	}
	for _, ext := range []string{extPosixRename, extFsync, extHomeDir} {
		if !c.has(ext) {
			return nil, fallbackf("the server lacks %s", ext)
		}
	}
	var h string
	if open.answer == fxpHandle {
		h, _ = open.handle()
	}
	// Closed with the next batch, once it has been read.
	defer func() {
		if h != "" {
			c.later = append(c.later, c.close(h))
		}
	}()
	if first {
		dirPath, err1 := home.name()
		cwdPath, err2 := cwd.name()
		if err1 != nil || err2 != nil || !path.IsAbs(dirPath) {
			return nil, fallbackf("the home directory is unknown")
		}
		s.sshPath = path.Join(dirPath, ".ssh")
		s.akPath = s.sshPath + "/authorized_keys"
		if dirPath != cwdPath {
			if h != "" {
				c.later, h = append(c.later, c.close(h)), ""
			}
			return s.read(ctx) // by the home directory's path
		}
	}
	for _, l := range labels {
		if l.answer == fxpAttrs {
			return nil, fallbackf("restorecon is installed (SELinux labels)")
		}
	}
	ha, err := homeAttrs.attrs()
	if err != nil || !ha.dir() {
		return nil, fallbackf("the home directory cannot be read")
	}
	if ha.perm&0o022 != 0 {
		return nil, fallbackf("the home directory is writable by group or others")
	}
	da, err := dir.attrs()
	switch {
	case statusCode(err) == fxNoSuchFile:
		s.sshExists = false
	case err != nil:
		return nil, fallbackf("~/.ssh cannot be read: %v", err)
	case !da.dir() || da.flags&attrUIDGID == 0:
		return nil, fallbackf("~/.ssh is not a directory")
	default:
		s.sshDir, s.sshExists = da, true
	}
	st := &hostState{}
	aa, err := ak.attrs()
	switch {
	case statusCode(err) == fxNoSuchFile && statusCode(open.status()) == fxNoSuchFile:
		return st, nil
	case err != nil:
		return nil, fallbackf("authorized_keys cannot be read: %v", err)
	case !aa.regular():
		return nil, fallbackf("authorized_keys is not a regular file")
	case h == "":
		return nil, fallbackf("authorized_keys cannot be opened")
	}
	size := int64(-1)
	if aa.flags&attrSize != 0 && aa.size <= MaxAuthorizedKeys {
		size = int64(aa.size)
	}
	// Read ahead: the whole file when it is smaller than a chunk and was opened on the first
	// handle (the read at 0 answered with all of it, the one past the chunk with the end).
	if h == firstHandle && size >= 0 && size < sftpReadChunk {
		r0, r1 := ahead[0], ahead[1]
		d, _, ok := takeString(r0.data)
		switch {
		case size == 0 && r0.answer == fxpStatus && statusCode(r0.status()) == fxEOF:
			st.authorizedKeys, st.authorizedKeysExists = []byte{}, true
			return st, nil
		case r0.answer == fxpData && ok && int64(len(d)) == size && r1.answer == fxpStatus && statusCode(r1.status()) == fxEOF:
			st.authorizedKeys, st.authorizedKeysExists = bytes.Clone(d), true
			return st, nil
		}
	}
	content, err := c.readFile(h, size, MaxAuthorizedKeys, sectionFile("authorized_keys"))
	if err != nil {
		return nil, s.readFailed(ctx, err)
	}
	st.authorizedKeys, st.authorizedKeysExists = content, true
	return st, nil
}

// readFailed maps a failure of the read: past the bound, the task fails; a status or an
// answer that is not the protocol goes to the script; a lost session is the task's failure.
func (s *sftpSession) readFailed(ctx context.Context, err error) error {
	var over *errOverflow
	switch {
	case errors.As(err, &over):
		s.t.log.Warn("remote step failed", "step", stepLocate, "reason", over.what)
		s.abandon()
		return s.t.fail(kps.TaskRemoteFailed, stepLocate, over.what)
	case ctx.Err() != nil:
		return s.failed(ctx, stepLocate, err)
	case statusCode(err) >= 0 || errors.Is(err, errNotSFTP):
		return fallbackf("reading authorized_keys: %v", err)
	}
	return s.failed(ctx, stepLocate, err)
}

// write replaces authorized_keys with content: stage, announce when the content adds the
// job's key (adds), check that the file is still what was read, rename, flush, read back. It
// returns errChanged when someone else changed the file meanwhile (the staged file removed,
// nothing renamed) and a *fallback when the script must do the write (nothing staged, or the
// staged file removed); a write whose outcome is unknown is settled over a new connection.
func (s *sftpSession) write(ctx context.Context, st *hostState, content []byte, adds bool) error {
	err := s.replace(ctx, st, content, adds)
	if !errors.Is(err, errChanged) {
		s.close() // kept for the next read when the file changed
	}
	return err
}

func (s *sftpSession) replace(ctx context.Context, st *hostState, content []byte, adds bool) error {
	t, c := s.t, s.c
	suffix := randomSuffix()
	staged := s.sshPath + "/.authorized_keys.kps-" + suffix
	lost := func(err error) error {
		var l *lostError
		if !errors.As(s.failed(ctx, stepWrite, err), &l) {
			return err
		}
		return t.settleWrite(ctx, st, content, suffix, l.err)
	}
	// unstage removes the staged file before a fallback or a failure; when that cannot be
	// done, the outcome is settled as for a lost connection.
	unstage := func(then error) error {
		rm := c.remove(staged)
		if err := c.do(rm); err != nil {
			return lost(err)
		}
		if err := rm.status(); err != nil {
			return lost(err)
		}
		return then
	}

	// Stage, in one round trip: the exclusive create (mode 0600), the content, its attributes,
	// the flush and the close, on the handle the create gets (firstHandle; again on the one it
	// got should the server give another). The flush follows the writes of the same handle in
	// the batch: the server answers a batch in order, as OpenSSH's sftp-server does, whose
	// extensions this path requires.
	var reqs []*sftpRequest
	if !s.sshExists {
		reqs = append(reqs, c.mkdir(s.sshPath, 0o700))
	}
	open := c.open(staged, fxfWrite|fxfCreate|fxfExcl, 0o600)
	writeAll := func(h string) (writes []*sftpRequest, fst, sync, closeH *sftpRequest) {
		for off := 0; off < len(content); off += sftpReadChunk {
			writes = append(writes, c.write(h, uint64(off), content[off:min(off+sftpReadChunk, len(content))]))
		}
		return writes, c.fstat(h), c.fsync(h), c.close(h)
	}
	writes, fst, sync, closeH := writeAll(firstHandle)
	reqs = append(reqs, open)
	reqs = append(reqs, writes...)
	if err := c.do(append(reqs, fst, sync, closeH)...); err != nil {
		return lost(err) // the create may have happened
	}
	h, err := open.handle()
	if err != nil {
		if statusCode(err) >= 0 {
			return fallbackf("the staged file cannot be created: %v", err)
		}
		return lost(err)
	}
	if h != firstHandle {
		writes, fst, sync, closeH = writeAll(h)
		if err := c.do(append(writes, fst, sync, closeH)...); err != nil {
			return lost(err)
		}
	}
	for _, q := range append(writes, sync, closeH) {
		if err := q.status(); err != nil {
			return unstage(fallbackf("writing the staged file: %v", err))
		}
	}
	fa, err := fst.attrs()
	if err != nil || fa.flags&attrUIDGID == 0 || fa.size != uint64(len(content)) || !fa.regular() {
		return unstage(fallbackf("the staged file is not what was written"))
	}
	// The file was created by the user: its owner is the user, whom ~/.ssh must belong to.
	if s.sshExists && s.sshDir.uid != fa.uid {
		return unstage(fallbackf("~/.ssh is not owned by the user"))
	}
	// The modes, where a default ACL or an odd ~/.ssh mode asks for it.
	reqs = reqs[:0]
	if fa.perm&0o7777 != 0o600 {
		reqs = append(reqs, c.chmod(staged, 0o600))
	}
	if s.sshExists && s.sshDir.perm&0o7777 != 0o700 {
		reqs = append(reqs, c.chmod(s.sshPath, 0o700))
	}
	if len(reqs) > 0 {
		if err := c.do(reqs...); err != nil {
			return lost(err)
		}
		for _, q := range reqs {
			if err := q.status(); err != nil {
				return unstage(fallbackf("setting modes: %v", err))
			}
		}
	}
	t.log.Debug("remote step", "step", stepWrite, "duration", time.Since(s.start))
	s.start = time.Now()

	// The announcement (a commit on the service's side) and the check that the file is still
	// what the edit started from (a round trip to the host) run side by side; the rename
	// waits for both.
	announced := make(chan error, 1)
	if adds {
		go func() { announced <- t.beforeWrite(ctx, kps.WriteKey) }()
	} else {
		announced <- nil
	}
	cur, err := s.readCurrent(int64(len(st.authorizedKeys)))
	if merr := <-announced; merr != nil {
		if err != nil {
			return lost(err)
		}
		return unstage(merr)
	}
	if err != nil {
		return lost(err)
	}
	if cur.exists != st.authorizedKeysExists || !bytes.Equal(cur.content, st.authorizedKeys) {
		return unstage(errChanged)
	}

	// Commit, in one round trip: the rename, the flush of ~/.ssh and the read-back, in this
	// order (the server answers in order, see above), each open getting firstHandle after
	// the close before it.
	rename := c.posixRename(staged, s.akPath)
	dirOpen := c.open(s.sshPath, fxfRead, 0)
	dirSync, dirClose := c.fsync(firstHandle), c.close(firstHandle)
	reqs = []*sftpRequest{rename, dirOpen, dirSync, dirClose}
	var backOpen *sftpRequest
	back := c.readAhead(firstHandle, int64(len(content)))
	if len(back) > 0 {
		backOpen = c.open(s.akPath, fxfRead, 0)
		reqs = append(append(append(reqs, backOpen), back...), c.close(firstHandle))
	}
	if err := c.do(reqs...); err != nil {
		return lost(err)
	}
	if err := rename.status(); err != nil {
		if statusCode(err) < 0 {
			return lost(err)
		}
		t.log.Warn("remote step failed", "step", stepWrite, "reason", "rename", "error", err)
		return unstage(t.fail(kps.TaskWriteFailed, stepWrite, reasons["rename"]))
	}
	t.wrote = true
	// A file system that cannot flush a directory is what `sync -- .` ignores too.
	if dh, err := dirOpen.handle(); err == nil && dh != firstHandle {
		if err := c.do(c.fsync(dh), c.close(dh)); err != nil {
			return lost(err)
		}
	}
	var got []byte
	ok := false
	if backOpen != nil {
		got, ok = gathered(back, MaxAuthorizedKeys)
		if bh, err := backOpen.handle(); err == nil && bh != firstHandle {
			c.later, ok = append(c.later, c.close(bh)), false
		} else if err != nil {
			ok = false
		}
	}
	if !ok {
		b, err := s.readCurrent(int64(len(content)))
		if err != nil {
			return lost(err)
		}
		got, ok = b.content, b.exists
	}
	if !ok || !bytes.Equal(got, content) {
		return t.fail(kps.TaskWriteFailed, stepWrite, reasons["read-back"])
	}
	t.log.Debug("remote step", "step", stepWrite, "duration", time.Since(s.start))
	return nil
}

// current is authorized_keys as read by its path.
type current struct {
	content []byte
	exists  bool
}

// readCurrent reads authorized_keys by its path, in one round trip when it has the size
// expected (size) and is opened on the first handle. A status other than "no such file" is an
// error like a lost session: the file cannot be checked.
func (s *sftpSession) readCurrent(size int64) (current, error) {
	c := s.c
	open := c.open(s.akPath, fxfRead, 0)
	ahead := c.readAhead(firstHandle, size)
	reqs := append([]*sftpRequest{open}, ahead...)
	if len(ahead) > 0 {
		reqs = append(reqs, c.close(firstHandle))
	}
	if err := c.do(reqs...); err != nil {
		return current{}, err
	}
	h, err := open.handle()
	if statusCode(err) == fxNoSuchFile {
		return current{}, nil
	}
	if err != nil {
		return current{}, err
	}
	if len(ahead) > 0 {
		if b, ok := gathered(ahead, MaxAuthorizedKeys); ok && h == firstHandle {
			return current{content: b, exists: true}, nil
		}
		if h == firstHandle {
			return s.readCurrent(-1) // closed with the batch: open it again and read it whole
		}
	}
	b, err := c.readFile(h, size, MaxAuthorizedKeys, sectionFile("authorized_keys"))
	c.later = append(c.later, c.close(h))
	if err != nil {
		return current{}, err
	}
	return current{content: b, exists: true}, nil
}
