package sshhost

import (
	"context"
	"net"
	"testing"

	"github.com/openkps/kps"
	"github.com/openkps/kps/internal/sshdtest"
)

// BenchmarkBind measures host jobs against a real local sshd (one connection each): a bind
// that only edits authorized_keys (alternating two keys, so every iteration changes the file),
// and a bind that disables password login alternating with the unbind that restores it.
//
//	go test -run '^$' -bench Bind -benchtime 40x ./sshhost
func BenchmarkBind(b *testing.B) {
	h := sshdtest.Start(b, sshdtest.Options{Sudo: true})
	e := &Executor{}
	keys := []testKey{newKey(b, "a"), newKey(b, "b")}
	password := kps.Credential{Type: kps.CredentialPassword, Key: h.Password}
	job := kps.HostJob{Operation: kps.OpReplace, Address: h.Address, Port: h.Port, User: h.User,
		HostKeys: []string{h.HostKey}, SSHDConfig: h.ConfigPath}
	run := func(b *testing.B, toggle bool) {
		for i := 0; b.Loop(); i++ {
			in, out := keys[i%2], keys[(i+1)%2]
			job.Operation, job.InstallKey, job.RemoveKeys, job.Login = kps.OpReplace, in.public, []string{out.public}, password
			job.DisablePassword, job.RestorePassword = toggle, false
			if toggle && i%2 == 1 {
				// Unbind the key installed last time, logging in with it (password login is
				// off), and turn password login back on.
				job = kps.HostJob{Operation: kps.OpUnbind, Address: h.Address, Port: h.Port, User: h.User,
					HostKeys: job.HostKeys, SSHDConfig: h.ConfigPath, RemoveKeys: []string{out.public},
					RestorePassword: true, Login: kps.Credential{Type: kps.CredentialKeyPair, Key: out.private}}
			}
			if _, err := e.Execute(context.Background(), job); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("keys-only", func(b *testing.B) { run(b, false) })
	b.Run("with-password-toggle", func(b *testing.B) { run(b, true) })
}

// TestDaemonListensAfterReload: when a job that reloaded sshd returns, the daemon accepts
// connections again at once, so the next task is not refused (sshd closes its listener while
// it re-executes itself on SIGHUP).
func TestDaemonListensAfterReload(t *testing.T) {
	h, e, job, _ := setup(t, sshdtest.Options{Sudo: true})
	key := newKey(t, "k")
	job.InstallKey, job.DisablePassword = key.public, true
	for range 3 {
		mustExecute(t, e, job)
		conn, err := net.Dial("tcp", h.Addr())
		if err != nil {
			t.Fatalf("sshd refused a connection right after the job: %v", err)
		}
		conn.Close()
		unbind := job
		unbind.Operation, unbind.InstallKey, unbind.DisablePassword, unbind.RestorePassword = kps.OpUnbind, "", false, true
		unbind.RemoveKeys, unbind.Login = []string{key.public}, kps.Credential{Type: kps.CredentialKeyPair, Key: key.private}
		mustExecute(t, e, unbind)
		if conn, err = net.Dial("tcp", h.Addr()); err != nil {
			t.Fatalf("sshd refused a connection right after the restore: %v", err)
		}
		conn.Close()
	}
}
