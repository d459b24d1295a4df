package service

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/openkps/kps"
)

func newKey(t *testing.T, comment string) (line string, private string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := ssh.NewPublicKey(pub)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) + " " + comment, string(pem.EncodeToMemory(block))
}

func compare(b *kps.Binding, login kps.Credential, in kps.HostInspection) kps.DriftResult {
	r := kps.DriftResult{Unmanaged: []kps.DriftKey{}, FileProblems: []string{}, Password: "unknown"}
	Compare(&r, &kps.Server{ID: "s"}, b, login, &in)
	return r
}

func TestCompare(t *testing.T) {
	bound, _ := newKey(t, "bound")
	other, _ := newKey(t, "other")
	loginLine, loginKey := newKey(t, "service-login")
	b := &kps.Binding{KeyPairName: "ops", PublicKey: bound, PasswordDisabled: true}
	keypair := kps.Credential{Type: kps.CredentialKeyPair, Key: loginKey}
	ok := kps.HostInspection{AuthorizedKeysExists: true, Mode: "-rw-------", Owner: "1000:1000", UID: "1000", SSHDir: "drwx------",
		SSHD: map[string]string{"passwordauthentication": "no", "authorizedkeysfile": ".ssh/authorized_keys .ssh/authorized_keys2"}}

	in := ok
	in.AuthorizedKeys = []byte("# managed\n" + bound + "\n" + loginLine + "\n")
	if r := compare(b, keypair, in); r.Drift || r.BoundKey != "present" || len(r.Unmanaged) != 0 || len(r.FileProblems) != 0 || r.Password != "no" {
		t.Fatalf("clean host: %+v", r)
	}
	// The same login key, with a password login, is a key nobody manages.
	if r := compare(b, kps.Credential{Type: kps.CredentialPassword, Key: "x"}, in); !r.Drift || len(r.Unmanaged) != 1 || r.Unmanaged[0].Line != 3 {
		t.Fatalf("login key with a password login: %+v", r)
	}
	in.AuthorizedKeys = []byte(bound + "\n" + `no-pty,command="true" ` + other + "\n" + "  " + bound + "\n")
	r := compare(b, keypair, in)
	if !r.Drift || r.BoundKey != "duplicated" || len(r.Unmanaged) != 1 || r.Unmanaged[0].Options != `no-pty,command="true"` ||
		r.Unmanaged[0].Comment != "other" || !strings.HasPrefix(r.Unmanaged[0].Fingerprint, "SHA256:") || r.Unmanaged[0].Line != 2 {
		t.Fatalf("duplicated and another key: %+v", r)
	}
	in.AuthorizedKeys = []byte("not a key\n")
	if r := compare(b, keypair, in); r.BoundKey != "missing" || len(r.FileProblems) != 1 || !r.Drift {
		t.Fatalf("missing: %+v", r)
	}
	if r := compare(nil, keypair, in); r.BoundKey != "none" {
		t.Fatalf("unbound: %+v", r)
	}

	// What the host wrote is shown without its control characters, and at most 100 keys.
	var many strings.Builder
	for i := range 150 {
		line, _ := newKey(t, "k")
		if i == 0 {
			line += "\x1b[31mred\u009b"
		}
		many.WriteString(line + "\n")
	}
	in.AuthorizedKeys = []byte(many.String())
	r = compare(b, keypair, in)
	if r.UnmanagedCount != 150 || len(r.Unmanaged) != MaxUnmanagedKeys || r.Unmanaged[0].Comment != "k\uFFFD[31mred\uFFFD" {
		t.Fatalf("many keys: count %d, listed %d, first comment %q", r.UnmanagedCount, len(r.Unmanaged), r.Unmanaged[0].Comment)
	}

	// What the binding implies about password login, and what makes sshd ignore the file.
	bad := ok
	bad.AuthorizedKeys = []byte(bound + "\n")
	bad.Mode, bad.Owner, bad.SSHDir = "-rw-rw-r--", "1001:1001", "drwxrwxrwx"
	bad.SSHD = map[string]string{"passwordauthentication": "yes", "authorizedkeysfile": "/etc/ssh/keys/%u"}
	r = compare(b, keypair, bad)
	if !r.Drift || r.Password != "yes" || r.PasswordExpected != "no" || len(r.FileProblems) != 4 {
		t.Fatalf("bad file: %+v", r)
	}
	// Without sshd -T, password login is unknown and not a drift.
	noT := ok
	noT.AuthorizedKeys, noT.SSHD = []byte(bound+"\n"), nil
	if r := compare(b, keypair, noT); r.Drift || r.Password != "unknown" {
		t.Fatalf("without sshd -T: %+v", r)
	}
}

// TestAdmitExpiry: an expiring bind needs a login the service could undo it with.
func TestAdmitExpiry(t *testing.T) {
	at := func(s kps.TaskSubmission) *kps.TaskSubmission {
		s.ExpiresAt = s.ExpiresAt.AddDate(2100, 0, 0)
		return &s
	}
	kp := &kps.KeyPair{Name: "k", PublicKey: "ssh-ed25519 AAAA k", Type: kps.TypeSSH}
	hosted := &kps.KeyPair{Name: "h", PublicKey: "ssh-ed25519 AAAA h", Type: kps.TypeSSH, PrivateKey: []byte("sealed")}
	withCred := &kps.Server{ID: "c", Port: 22, Credential: []byte("sealed"), ReachByAdmin: true}
	noCred := &kps.Server{ID: "n", Port: 22, ReachByAdmin: true}
	memberTOFU := &kps.Server{ID: "m", Port: 22, Credential: []byte("sealed")}
	caller := kps.TaskSubmission{Operation: kps.OpReplace, CallerAuth: true, MayExport: true}
	cases := []struct {
		name string
		s    *kps.TaskSubmission
		f    kps.TaskFacts
		want string
	}{
		{"stored credential", at(caller), kps.TaskFacts{KeyPair: kp, Server: withCred}, ""},
		{"nothing to undo it with", at(caller), kps.TaskFacts{KeyPair: kp, Server: noCred}, kps.ErrUndoableExpiry},
		{"hosted key", at(caller), kps.TaskFacts{KeyPair: hosted, Server: noCred}, ""},
		{"hosted key, caller may not export", at(kps.TaskSubmission{Operation: kps.OpReplace, CallerAuth: true}), kps.TaskFacts{KeyPair: hosted, Server: noCred}, kps.ErrUndoableExpiry},
		{"reach no admin set", at(caller), kps.TaskFacts{KeyPair: kp, Server: memberTOFU}, kps.ErrUndoableExpiry},
		{"disable_password needs the hosted key", at(kps.TaskSubmission{Operation: kps.OpReplace, CallerAuth: true, MayExport: true, DisablePassword: true}), kps.TaskFacts{KeyPair: kp, Server: withCred}, kps.ErrUndoableExpiry},
		{"disable_password with the hosted key", at(kps.TaskSubmission{Operation: kps.OpReplace, CallerAuth: true, MayExport: true, DisablePassword: true}), kps.TaskFacts{KeyPair: hosted, Server: withCred}, ""},
		{"no expiry", &caller, kps.TaskFacts{KeyPair: kp, Server: noCred}, ""},
	}
	for _, c := range cases {
		err := AdmitTask(c.s, &c.f, &kps.Task{})
		if got := ""; err != nil {
			got = kps.ErrorCode(err)
			if got != c.want {
				t.Errorf("%s: %v, want %s", c.name, err, c.want)
			}
		} else if c.want != "" {
			t.Errorf("%s: admitted, want %s", c.name, c.want)
		}
	}
	// The expiry's own UNBIND uses the hosted key first when the bind disabled password login,
	// and is never refused for its login: it fails when it runs, in the failed list.
	unbind := kps.TaskSubmission{Operation: kps.OpUnbind, Expiry: true, MayExport: true}
	task := &kps.Task{}
	if err := AdmitTask(&unbind, &kps.TaskFacts{Server: withCred, Binding: &kps.Binding{KeyPairName: "h", PasswordDisabled: true, PrivateKey: []byte("sealed")}}, task); err != nil || task.Login != kps.LoginHosted {
		t.Fatalf("expiry of a binding that disabled passwords: %v %q", err, task.Login)
	}
	task = &kps.Task{}
	if err := AdmitTask(&unbind, &kps.TaskFacts{Server: noCred, Binding: &kps.Binding{KeyPairName: "k"}}, task); err != nil || task.Login != kps.LoginService {
		t.Fatalf("expiry without a login: %v %q", err, task.Login)
	}
}
