package sshhost

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openkps/kps"
	"github.com/openkps/kps/internal/sshdtest"
)

// localSFTP runs the host's sftp-server directly (no sshd), in dir, for tests of the client.
func localSFTP(t *testing.T, dir string) *sftpClient {
	t.Helper()
	server := sshdtest.SFTPServer()
	if !filepath.IsAbs(server) {
		t.Skip("no sftp-server installed")
	}
	cmd := exec.Command(server)
	cmd.Dir = dir
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		cmd.Wait()
	})
	c, err := newSFTPClient(in, out)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestReadFileWhateverTheSizeHint: a file is read whole and exactly when the size the read
// started from is right, too small, too large or unknown (it changed since the STAT), across
// several batches of reads; past the limit the read stops with the bound named.
func TestReadFileWhateverTheSizeHint(t *testing.T) {
	dir := t.TempDir()
	c := localSFTP(t, dir)
	var b bytes.Buffer
	for i := 0; b.Len() < 1300<<10; i++ {
		fmt.Fprintf(&b, "# line %d of a long authorized_keys\n", i)
	}
	want := b.Bytes()
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, want, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, hint := range []int64{int64(len(want)), 10, 1 << 30, -1, 0, sftpReadChunk} {
		open := c.open(f, fxfRead, 0)
		if err := c.do(open); err != nil {
			t.Fatal(err)
		}
		h, err := open.handle()
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.readFile(h, hint, MaxAuthorizedKeys, "f")
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("size hint %d: read %d bytes, %v; want %d", hint, len(got), err, len(want))
		}
		_, err = c.readFile(h, hint, 1<<20, "f")
		if _, over := err.(*errOverflow); !over || !strings.Contains(err.Error(), "more than 1 MiB for f") {
			t.Errorf("size hint %d, limit 1 MiB: %v", hint, err)
		}
		if err := c.do(c.close(h)); err != nil {
			t.Fatal(err)
		}
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	open := c.open(empty, fxfRead, 0)
	c.do(open)
	h, _ := open.handle()
	if got, err := c.readFile(h, 0, 10, "e"); err != nil || len(got) != 0 {
		t.Errorf("empty file: %q, %v", got, err)
	}
}

// TestLargeAuthorizedKeysOverSFTP: a file of more than a megabyte is edited through the
// subsystem (several batches of reads and writes); one over MaxAuthorizedKeys fails the task
// as the script's read does (KPS.6610, the bound named), and is left alone.
func TestLargeAuthorizedKeysOverSFTP(t *testing.T) {
	h, e, job, logs := setup(t, sshdtest.Options{})
	var b strings.Builder
	for i := 0; b.Len() < 1500<<10; i++ {
		fmt.Fprintf(&b, "# %d: a long comment to make the file large\n", i)
	}
	old := b.String()
	h.WriteAuthorizedKeys(t, old)
	key := newKey(t, "k")
	job.InstallKey = key.public
	mustExecute(t, e, job)
	if got, _ := h.AuthorizedKeys(t); got != old+normalised(t, key.public)+"\n" {
		t.Fatalf("authorized_keys of %d bytes, want the %d old bytes and the key", len(got), len(old))
	}
	if got := logs.record(t, "host task done")["script"]; got != false {
		t.Fatalf("script = %v: the subsystem did not do the task", got)
	}

	huge := strings.Repeat("# padding padding padding padding padding padding padding\n", (MaxAuthorizedKeys/58)+10)
	h.WriteAuthorizedKeys(t, huge)
	_, err := execute(t, e, job)
	wantCode(t, err, kps.TaskRemoteFailed, h)
	if !strings.Contains(kps.ErrorMessage(err), "more than 4 MiB for ~/.ssh/authorized_keys") {
		t.Errorf("message %q does not name the bound", kps.ErrorMessage(err))
	}
	if got, _ := h.AuthorizedKeys(t); got != huge {
		t.Error("the oversized file changed")
	}
}

// TestSizesAroundAReadChunk: files just under, at and over one read chunk, and empty, are read,
// checked and read back whole through the subsystem (the reads sent ahead of the open's answer
// cover a file by its expected size; any other size is read again).
func TestSizesAroundAReadChunk(t *testing.T) {
	h, e, job, logs := setup(t, sshdtest.Options{})
	key := newKey(t, "k")
	job.InstallKey = key.public
	line := normalised(t, key.public) + "\n"
	for _, size := range []int{0, 100, sftpReadChunk - 1, sftpReadChunk, sftpReadChunk + 1, 3*sftpReadChunk - len(line)} {
		old := strings.Repeat("#", max(size-1, 0)) + "\n"
		if size == 0 {
			old = ""
		}
		h.WriteAuthorizedKeys(t, old)
		mustExecute(t, e, job)
		if got, _ := h.AuthorizedKeys(t); got != old+line {
			t.Fatalf("size %d: authorized_keys of %d bytes, want %d", size, len(got), len(old+line))
		}
		if got := logs.record(t, "host task done")["script"]; got != false {
			t.Fatalf("size %d: script = %v", size, got)
		}
	}
}

// TestHomeThroughASymlink: a home directory whose path in the password database goes through a
// symbolic link is not the session's working directory by name (its real path): the
// subsystem reads the files again by the home directory's path, and binds.
func TestHomeThroughASymlink(t *testing.T) {
	h, e, job, logs := setup(t, sshdtest.Options{})
	link := filepath.Join(h.Dir, "link-"+h.User)
	if err := os.Symlink(h.Home, link); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("usermod", "-d", link, h.User).CombinedOutput(); err != nil {
		t.Skipf("usermod: %v: %s", err, out)
	}
	key := newKey(t, "k")
	h.WriteAuthorizedKeys(t, "# before\n")
	job.InstallKey = key.public
	mustExecute(t, e, job)
	if got, _ := h.AuthorizedKeys(t); got != "# before\n"+normalised(t, key.public)+"\n" {
		t.Fatalf("authorized_keys = %q", got)
	}
	if got := logs.record(t, "host task done")["script"]; got != false {
		t.Fatalf("script = %v: the subsystem did not do the task", got)
	}
	if !h.KeyLoginWorks(t, key.signer) {
		t.Error("the installed key does not log in")
	}
}
