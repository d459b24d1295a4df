package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"

	"github.com/openkps/kps/internal/sshdtest"
)

// adminKey is the key pair every test host accepts for its login user: the "key auth" of
// part 1 (the service credential of OpenKPS, the floor's and Ansible's private key).
type adminKey struct {
	signer ssh.Signer
	pem    string // OpenSSH private key
	path   string // the same, in a 0600 file for ssh/Ansible
	line   string // authorized_keys line
}

func newAdminKey(dir string) (*adminKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "bench-admin")
	if err != nil {
		return nil, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	k := &adminKey{signer: signer, pem: string(pem.EncodeToMemory(block)), path: filepath.Join(dir, "admin_ed25519")}
	k.line = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))) + " bench-admin"
	return k, os.WriteFile(k.path, []byte(k.pem), 0o600)
}

// maxHosts is the largest fleet size the run measures (-n); the hosts are started once for it.
func (b *bench) maxHosts() int {
	n := 0
	for _, h := range b.cfg.Hosts {
		n = max(n, h)
	}
	return n
}

// startHosts makes sure at least n sshd test hosts run, each with its own user, and accepting
// the admin key. Hosts are started a few at a time: each is a useradd, a chpasswd and an sshd.
func (b *bench) startHosts(n int) ([]*sshdtest.Host, error) {
	if b.keys == nil {
		k, err := newAdminKey(b.dir)
		if err != nil {
			return nil, err
		}
		b.keys = k
	}
	if missing := n - len(b.hosts); missing > 0 {
		b.logf("starting %d sshd test hosts", missing)
		var mu sync.Mutex
		err := parallel(missing, 8, func(int) error {
			h, err := sshdtest.New(sshdtest.Options{})
			if err != nil {
				return err
			}
			mu.Lock()
			b.hosts = append(b.hosts, h)
			mu.Unlock()
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("starting sshd test hosts: %w", err)
		}
	}
	for _, h := range b.hosts[:n] {
		if err := b.resetHost(h); err != nil {
			return nil, err
		}
	}
	return b.hosts[:n], nil
}

// resetHost leaves the admin key as the only line of the host's authorized_keys, so that every
// run edits a file of the same size.
func (b *bench) resetHost(h *sshdtest.Host) error {
	return h.SetAuthorizedKeys(b.keys.line + "\n")
}

func (b *bench) stopHosts() {
	parallel(len(b.hosts), 16, func(i int) error {
		if err := b.hosts[i].Close(); err != nil {
			b.logf("stopping a test host: %v", err)
		}
		return nil
	})
	b.hosts = nil
}
