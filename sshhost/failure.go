package sshhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/openkps/kps"
	"golang.org/x/crypto/ssh"
)

// How a task fails: the steps named in messages, the reasons the scripts give, the outcome of
// a session that ended without saying what it did (lostError), and a context that ended.

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
				t.log.Warn("remote step failed", "step", step, "reason", reason, "stderr", clip(stderr, 1024))
				return t.fail("KPS."+code, step, text)
			}
		}
	}
	t.log.Warn("remote step failed", "step", step, "exit_status", exit.ExitStatus(), "stderr", clip(stderr, 1024))
	// The script did not say what it had done (killed, or an unforeseen failure).
	return &lostError{t.fail(kps.TaskRemoteFailed, step, fmt.Sprintf("a remote command exited with status %d", exit.ExitStatus()))}
}

func lowerFirst(s string) string { return strings.ToLower(s[:1]) + s[1:] }

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

// clip shortens what a host printed to at most n bytes for a log line, keeping the end (where
// a failing command says why) and never cutting a UTF-8 sequence in half; bytes that are not
// UTF-8 are replaced, so a log line stays valid text whatever the host sent.
func clip(s string, n int) string {
	if len(s) > n {
		s = s[len(s)-n:]
		// Drop the continuation bytes of a character whose start was cut off.
		for i := 0; i < utf8.UTFMax && len(s) > 0 && !utf8.RuneStart(s[0]); i++ {
			s = s[1:]
		}
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
