package sshdtest

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestHostAcceptsPasswordAndKey(t *testing.T) {
	t.Parallel()
	h := Start(t, Options{})

	if !strings.HasPrefix(h.HostKey, "ssh-ed25519 ") {
		t.Errorf("HostKey = %q, want an ssh-ed25519 key", h.HostKey)
	}
	cfg, err := os.ReadFile(h.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(string(cfg), "\n"); first != "Include "+h.DropInDir+"/*.conf" {
		t.Errorf("first line of sshd_config = %q, want the drop-in Include", first)
	}
	fi, err := os.Stat(h.Home)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != h.UID || fi.Mode().Perm() != 0o755 {
		t.Errorf("home: uid %d mode %v, want uid %d mode 0755", st.Uid, fi.Mode().Perm(), h.UID)
	}

	if !h.PasswordLoginWorks(t) {
		t.Fatal("password login failed")
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if h.KeyLoginWorks(t, signer) {
		t.Fatal("key login worked before the key was authorized")
	}
	if _, ok := h.AuthorizedKeys(t); ok {
		t.Fatal("authorized_keys exists on a fresh host")
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	h.WriteAuthorizedKeys(t, "# test\n"+line+" test@kps\n")
	if !h.KeyLoginWorks(t, signer) {
		t.Fatal("key login failed with the key authorized (StrictModes rejects the layout?)")
	}
	if got, ok := h.AuthorizedKeys(t); !ok || got != "# test\n"+line+" test@kps\n" {
		t.Errorf("AuthorizedKeys = %q, %v", got, ok)
	}

	// The login shell is /bin/sh and the user is really who the server says it is.
	c, err := h.Dial(ssh.Password(h.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.Output("id -un; printf %s \"$HOME\"")
	if err != nil {
		t.Fatal(err)
	}
	if want := h.User + "\n" + h.Home; string(out) != want {
		t.Errorf("remote id/HOME = %q, want %q", out, want)
	}
}

func TestHostWithSudo(t *testing.T) {
	t.Parallel()
	h := Start(t, Options{Sudo: true})
	c, err := h.Dial(ssh.Password(h.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.CombinedOutput("sudo -n id -u")
	if err != nil || strings.TrimSpace(string(out)) != "0" {
		t.Fatalf("sudo -n id -u: %q, %v", out, err)
	}
}

func TestHostWithoutSudo(t *testing.T) {
	t.Parallel()
	h := Start(t, Options{})
	c, err := h.Dial(ssh.Password(h.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := s.CombinedOutput("sudo -n true"); err == nil {
		t.Fatalf("sudo -n worked without Options.Sudo: %q", out)
	}
}

func TestStopRefusesAndCleansUp(t *testing.T) {
	t.Parallel()
	var user, dir string
	t.Run("host", func(t *testing.T) {
		h := Start(t, Options{Sudo: true})
		user, dir = h.User, h.Dir
		h.Stop()
		h.Stop() // idempotent
		c, err := net.Dial("tcp", h.Addr())
		if !errors.Is(err, syscall.ECONNREFUSED) {
			if c != nil {
				c.Close()
			}
			t.Fatalf("dial after Stop: %v, want connection refused", err)
		}
		if h.PasswordLoginWorks(t) {
			t.Fatal("password login worked after Stop")
		}
	})
	if user == "" {
		t.Skip("host did not start")
	}
	if err := exec.Command("getent", "passwd", user).Run(); err == nil {
		t.Errorf("user %s still exists after cleanup", user)
	}
	if _, err := os.Stat("/etc/sudoers.d/" + user); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("sudoers rule of %s still exists after cleanup: %v", user, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("host directory %s still exists after cleanup: %v", dir, err)
	}
}

func TestHUPReloadKeepsServing(t *testing.T) {
	t.Parallel()
	h := Start(t, Options{})
	pid, err := os.ReadFile(h.PidFile)
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	if strings.TrimSpace(string(pid)) != strconv.Itoa(h.cmd.Process.Pid) {
		t.Fatalf("pid file has %q, sshd runs as %d", pid, h.cmd.Process.Pid)
	}
	if err := os.WriteFile(h.DropInDir+"/10-test.conf", []byte("PasswordAuthentication no\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := h.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// sshd handles the signal asynchronously, and Dial rides over the moment it re-executes
	// itself without a listener.
	deadline := time.Now().Add(10 * time.Second)
	for h.PasswordLoginWorks(t) {
		if time.Now().After(deadline) {
			t.Fatal("password login still works 10s after the drop-in and SIGHUP")
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

func TestHostWithKbdInteractiveOnly(t *testing.T) {
	t.Parallel()
	h := Start(t, Options{KbdInteractive: true})
	if _, err := h.Dial(ssh.Password(h.Password)); err == nil {
		t.Fatal("the password method worked although only keyboard-interactive is offered")
	}
	if !h.PasswordLoginWorks(t) {
		t.Fatal("keyboard-interactive password login failed")
	}
}

// TestNoInclude: without the drop-in Include the main file holds every setting and the
// daemon still serves password logins.
func TestNoInclude(t *testing.T) {
	t.Parallel()
	h := Start(t, Options{NoInclude: true})
	cfg, err := os.ReadFile(h.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(cfg), "Include") || !strings.Contains(string(cfg), "\nPasswordAuthentication yes\n") {
		t.Errorf("sshd_config with NoInclude:\n%s", cfg)
	}
	if !h.PasswordLoginWorks(t) {
		t.Fatal("password login failed")
	}
}
