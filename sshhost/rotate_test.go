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

// A staged job (a rotation's, kps-v3-api.md §8.3) on a real sshd: the new key goes in beside
// the old, the old one goes only after a fresh login with the new key, and where that login is
// refused the new key is taken out again and the old one stays.

func stagedJob(job kps.HostJob, old, new testKey) kps.HostJob {
	job.Operation = kps.OpReset
	job.InstallKey = new.public
	// The old key, and the new one as a failed earlier attempt's: the new one must stay.
	job.RemoveKeys = []string{old.public, new.public}
	job.Verify = &kps.Credential{Type: kps.CredentialKeyPair, Key: new.private}
	return job
}

func executeStaged(t *testing.T, s Staged, job kps.HostJob) (kps.HostResult, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	return s.Execute(ctx, job)
}

func TestStagedRotation(t *testing.T) {
	h, e, job, _ := setup(t, sshdtest.Options{})
	old, new, other := newKey(t, "old"), newKey(t, "new"), newKey(t, "someone-else")
	h.WriteAuthorizedKeys(t, old.public+"\n"+other.public+"\n")
	var marks []kps.HostWrite
	job = stagedJob(job, old, new)
	job.BeforeWrite = func(_ context.Context, step kps.HostWrite) error {
		marks = append(marks, step)
		return nil
	}
	if _, err := executeStaged(t, Staged{e}, job); err != nil {
		t.Fatal(err)
	}
	content, _ := h.AuthorizedKeys(t)
	if content != other.public+"\n"+new.public+"\n" {
		t.Fatalf("authorized_keys after the rotation:\n%s", content)
	}
	if len(marks) != 1 || marks[0] != kps.WriteKey {
		t.Fatalf("write marks %v, want the add's only", marks)
	}
	if !h.KeyLoginWorks(t, new.signer) || h.KeyLoginWorks(t, old.signer) {
		t.Fatal("the new key does not log in, or the old one still does")
	}
	// Again, as a retry after a crash would: nothing left to do, nothing written.
	marks = nil
	if _, err := executeStaged(t, Staged{e}, job); err != nil || len(marks) != 0 {
		t.Fatalf("second run: %v, marks %v", err, marks)
	}
	if again, _ := h.AuthorizedKeys(t); again != content {
		t.Fatalf("second run changed the file:\n%s", again)
	}
}

func TestStagedRotationRefusedKeepsOldKey(t *testing.T) {
	// sshd reads another file: the key written to ~/.ssh/authorized_keys never logs in.
	h, e, job, _ := setup(t, sshdtest.Options{AuthorizedKeysFile: ".ssh/authorized_keys2"})
	old, new := newKey(t, "old"), newKey(t, "new")
	h.WriteAuthorizedKeys(t, old.public+"\n")
	if err := os.WriteFile(filepath.Join(h.Home, ".ssh", "authorized_keys2"), []byte(old.public+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chown(filepath.Join(h.Home, ".ssh", "authorized_keys2"), h.UID, h.GID)
	_, err := executeStaged(t, Staged{e}, stagedJob(job, old, new))
	wantCode(t, err, kps.TaskAuthFailed, h)
	if !strings.Contains(kps.ErrorMessage(err), "taken out again") {
		t.Errorf("message %q does not say the new key was taken out", kps.ErrorMessage(err))
	}
	if content, _ := h.AuthorizedKeys(t); content != old.public+"\n" {
		t.Fatalf("authorized_keys after the refused verification:\n%s", content)
	}
	if !h.KeyLoginWorks(t, old.signer) || h.KeyLoginWorks(t, new.signer) {
		t.Fatal("the old key no longer logs in, or the new one does")
	}
}
