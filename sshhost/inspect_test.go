package sshhost

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/internal/sshdtest"
)

func inspect(t *testing.T, e *Executor, job kps.HostJob) (kps.HostInspection, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	job.Operation = ""
	return e.Inspect(ctx, job)
}

// TestInspectReadsWithoutWriting: with password-less sudo the inspection reads
// authorized_keys as it is, its mode and owner, and what sshd -T says (here an
// AuthorizedKeysFile elsewhere, which a drift check reports); it changes nothing.
func TestInspectReadsWithoutWriting(t *testing.T) {
	h, e, job, _ := setup(t, sshdtest.Options{Sudo: true})
	// The main file includes the drop-ins first, and sshd keeps the first value of a keyword.
	if err := os.WriteFile(filepath.Join(h.DropInDir, "10-keys.conf"), []byte("AuthorizedKeysFile /etc/ssh/keys/%u\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	content := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO5p2nSJH0v1GvvQx5Q+o0oyJkGx0m0g3B3C8wA5cXqJ one\n\n# a comment\n"
	h.WriteAuthorizedKeys(t, content)
	before, err := os.Stat(h.AuthorizedKeysPath())
	if err != nil {
		t.Fatal(err)
	}
	in, err := inspect(t, e, job)
	if err != nil {
		t.Fatal(err)
	}
	if string(in.AuthorizedKeys) != content || !in.AuthorizedKeysExists || in.Mode != "-rw-------" ||
		!strings.HasPrefix(in.Owner, in.UID+":") || in.SSHDir != "drwx------" {
		t.Fatalf("inspection: %+v", in)
	}
	if in.SSHD == nil || in.SSHD["passwordauthentication"] != "yes" || !strings.HasPrefix(in.SSHD["authorizedkeysfile"], "/etc/ssh/keys/%u") {
		t.Fatalf("sshd -T: %v", in.SSHD)
	}
	after, err := os.Stat(h.AuthorizedKeysPath())
	if err != nil || !after.ModTime().Equal(before.ModTime()) {
		t.Fatalf("authorized_keys changed: %v", err)
	}
}

// TestInspectWithoutPrivileges: without sudo sshd -T is not run, and a missing authorized_keys
// is reported as absent.
func TestInspectWithoutPrivileges(t *testing.T) {
	_, e, job, _ := setup(t, sshdtest.Options{})
	in, err := inspect(t, e, job)
	if err != nil {
		t.Fatal(err)
	}
	if in.SSHD != nil || in.AuthorizedKeysExists || in.UID == "" {
		t.Fatalf("inspection: %+v", in)
	}
}

// TestInspectWrongPassword fails with the task's authentication code.
func TestInspectWrongPassword(t *testing.T) {
	_, e, job, _ := setup(t, sshdtest.Options{})
	job.Login.Key = "wrong"
	if _, err := inspect(t, e, job); kps.ErrorCode(err) != kps.TaskAuthFailed {
		t.Fatalf("got %v, want %s", err, kps.TaskAuthFailed)
	}
}
