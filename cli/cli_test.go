package cli

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/openkps/kps/cli/inventory"
	"github.com/openkps/kps/sshkey"
)

func testApp(t *testing.T, env map[string]string) *app {
	return &app{con: Console{Stdin: strings.NewReader(""), Stdout: &strings.Builder{}, Stderr: &strings.Builder{},
		Getenv: func(k string) string { return env[k] }}}
}

func TestInWords(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"KPS.6014: Invalid parameter batch_keypairs[3].server.auth.key: a private key has at most 16384 bytes.": "KPS.6014: Invalid parameter the login credential (--auth-password-stdin, --ask-auth-password or --auth-key-file): a private key has at most 16384 bytes.",
		"KPS.6015: Invalid parameter server.port: it must be from 1 to 65535.":                                  "KPS.6015: Invalid parameter --port: it must be from 1 to 65535.",
		"KPS.6009: Invalid parameter keypair.public_key: …":                                                     "KPS.6009: Invalid parameter --public-key-file: …",
	} {
		if got := inWords(in); got != want {
			t.Errorf("%q\n got %q\nwant %q", in, got, want)
		}
	}
}

func TestDistance(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"server", "servers", 1}, {"lsit", "list", 2}, {"kaypair", "keypair", 1}, {"abc", "xyz", 3}} {
		if d := distance(c.a, c.b); d != c.d {
			t.Errorf("distance(%q, %q) = %d, want %d", c.a, c.b, d, c.d)
		}
	}
}

func hashedHost(host string) string {
	salt := []byte("0123456789abcdefghij")
	mac := hmac.New(sha1.New, salt)
	mac.Write([]byte(host))
	return "|1|" + base64.StdEncoding.EncodeToString(salt) + "|" + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func newKeyLine(t *testing.T) string {
	t.Helper()
	_, pub, err := sshkey.Generate(sshkey.AlgorithmED25519, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// TestHostKeys: key lines, known_hosts (plain, hashed, with ports) and ssh-keyscan output;
// from a file naming several hosts only the server's are taken; markers are refused.
func TestHostKeys(t *testing.T) {
	t.Parallel()
	a := testApp(t, nil)
	k1, k2, k3 := newKeyLine(t), newKeyLine(t), newKeyLine(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "known_hosts")
	os.WriteFile(file, []byte("# a known_hosts file\n"+
		"[127.0.0.1]:2222 "+k1+"\n"+
		hashedHost("[127.0.0.1]:2223")+" "+k2+"\n"+
		"db.internal,10.0.0.9 "+k3+"\n"), 0o600)
	for _, c := range []struct {
		address string
		port    int
		want    string
	}{{"127.0.0.1", 2222, k1}, {"127.0.0.1", 2223, k2}, {"10.0.0.9", 22, k3}, {"db.internal", 0, k3}} {
		keys, err := a.hostKeys(nil, file, c.address, c.port)
		if err != nil || len(keys) != 1 || keys[0] != c.want {
			t.Errorf("%s:%d: %v %v, want %s", c.address, c.port, keys, err, c.want)
		}
	}
	if _, err := a.hostKeys(nil, file, "127.0.0.1", 2299); err == nil || !strings.Contains(err.Error(), "no host key of 127.0.0.1:2299") {
		t.Errorf("no matching host: %v", err)
	}
	// ssh-keyscan output of one host, as one --host-key value: every key of it.
	scan := "# 10.0.0.5:22 SSH-2.0-OpenSSH_9.2\n10.0.0.5 " + k1 + "\n10.0.0.5 " + k2 + "\n"
	if keys, err := a.hostKeys([]string{scan}, "", "web.example.net", 22); err != nil || len(keys) != 2 {
		t.Errorf("keyscan value: %v %v", keys, err)
	}
	if keys, err := a.hostKeys([]string{k3 + " comment"}, "", "", 0); err != nil || keys[0] != k3 {
		t.Errorf("plain key: %v %v", keys, err)
	}
	for value, want := range map[string]string{
		"@cert-authority *.example.net " + k1: "@cert-authority line is not a host key",
		"not a key at all":                    "not a public key, known_hosts or ssh-keyscan line",
		"ssh-ed25519 AAAAnotbase64!":          "not a public key",
	} {
		if _, err := a.hostKeys([]string{value}, "", "h", 22); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", value, err, want)
		}
	}
	if _, err := a.hostKeys(nil, filepath.Join(dir, "missing"), "h", 22); err == nil || err.Error() != "--host-key-file "+filepath.Join(dir, "missing")+": no such file or directory" {
		t.Errorf("missing file: %v", err)
	}
	// ssh-keygen -F agrees on the hashed entry.
	if out, err := exec.Command("ssh-keygen", "-F", "[127.0.0.1]:2223", "-f", file).Output(); err == nil && !strings.Contains(string(out), strings.Fields(k2)[1]) {
		t.Errorf("ssh-keygen -F does not find the hashed entry: %s", out)
	}
}

// TestSecretFile: --out never overwrites without --force, not even a file that appears while
// the key is made, and leaves no temporary file behind.
func TestSecretFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "k.pem")
	os.WriteFile(path, []byte("old"), 0o644)
	var ue UsageError
	if _, err := openSecretFile("--out", path, false); !errors.As(err, &ue) || !strings.Contains(err.Error(), "give --force") {
		t.Fatalf("existing file: %v", err)
	}
	f, err := openSecretFile("--out", path, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.write([]byte("new")); err != nil {
		t.Fatal(err)
	}
	if err := f.commit(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Fatalf("--force: %q", b)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	// A file appears between the check and the commit: it is kept, the commit fails.
	other := filepath.Join(dir, "race.pem")
	f, err = openSecretFile("--out", other, false)
	if err != nil {
		t.Fatal(err)
	}
	f.write([]byte("secret"))
	os.WriteFile(other, []byte("theirs"), 0o600)
	if err := f.commit(); err == nil || !strings.Contains(err.Error(), "the file exists") {
		t.Fatalf("commit over a new file: %v", err)
	}
	if b, _ := os.ReadFile(other); string(b) != "theirs" {
		t.Fatalf("the new file was overwritten: %q", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("files left: %v", entries)
	}
	if _, err := openSecretFile("--out", dir, true); err == nil || !strings.Contains(err.Error(), "it is a directory") {
		t.Fatalf("a directory: %v", err)
	}
}

// TestAnsibleEntry: how Ansible variables become a server record, or refuse the host by name.
func TestAnsibleEntry(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	a := testApp(t, map[string]string{"HOME": home})
	key, _, _ := sshkey.Generate(sshkey.AlgorithmED25519, 0, "")
	os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	os.WriteFile(filepath.Join(home, ".ssh", "svc"), []byte(key), 0o600)

	e := a.ansibleEntry(inventory.Host{Name: "web-01", Vars: map[string]any{"ansible_ssh_host": "10.0.0.1", "ansible_ssh_port": "2200",
		"ansible_ssh_user": "deploy", "ansible_private_key_file": "~/.ssh/svc", "kps_name": "Web", "http_port": 80}}, "")
	if e.refused != "" || *e.spec.Address != "10.0.0.1" || *e.spec.Port != 2200 || *e.spec.User != "deploy" || *e.spec.Name != "Web" ||
		e.spec.Credential == nil || e.spec.Credential.Key != key || e.credSrc != filepath.Join(home, ".ssh", "svc") {
		t.Fatalf("aliases: %+v", e)
	}
	e = a.ansibleEntry(inventory.Host{Name: "db.internal", Vars: map[string]any{"ansible_host_key_checking": false}}, "ops")
	if *e.spec.Address != "db.internal" || *e.spec.User != "ops" || e.spec.Port != nil || !strings.Contains(e.note, "pins each host's key") {
		t.Fatalf("defaults: %+v", e)
	}
	for vars, want := range map[string]map[string]any{
		"ansible_connection=local":          {"ansible_connection": "local"},
		"ansible_ssh_common_args is set":    {"ansible_ssh_common_args": "-o ProxyJump=bastion"},
		"Jinja2 template":                   {"ansible_host": "{{ inventory_hostname }}.example.net"},
		"is not a port":                     {"ansible_port": "ssh"},
		"both ansible_ssh_private_key_file": {"ansible_ssh_private_key_file": "x", "ansible_password": "y"},
		"ansible_become_pass is set":        {"ansible_become_pass": "s3cret"},
		"ansible_become_method=su":          {"ansible_become_method": "su"},
		"Python structure":                  {"ansible_user": inventory.Unparsed("['a']")},
		"no such file or directory":         {"ansible_ssh_private_key_file": "/nonexistent/key"},
	} {
		e := a.ansibleEntry(inventory.Host{Name: "h", Vars: want}, "")
		if !strings.Contains(e.refused, vars) {
			t.Errorf("%v: refused %q, want %q", want, e.refused, vars)
		}
	}
	if e := a.ansibleEntry(inventory.Host{Name: "h", Vars: map[string]any{"ansible_connection": "ssh", "ansible_become": true}}, ""); e.refused != "" {
		t.Errorf("ssh connection refused: %s", e.refused)
	}
}

func TestRecordsDocument(t *testing.T) {
	t.Parallel()
	for text, want := range map[string]bool{
		`[{"id":"a","address":"10.0.0.1"}]`:            true,
		"servers:\n  - id: a\n    address: 10.0.0.1\n": true,
		"- id: a\n  address: x\n":                      true,
		"[web]\nweb-01 ansible_host=10.0.0.1\n":        false,
		"all:\n  hosts:\n    a:\n":                     false,
		"[web]\n":                                      false,
	} {
		if got := recordsDocument([]byte(text)); got != want {
			t.Errorf("%q: %v, want %v", text, got, want)
		}
	}
	if _, err := readRecords("f.json", []byte(`[{"id":"a","adress":"x"}]`)); err == nil || !strings.Contains(err.Error(), `unknown field "adress"`) {
		t.Errorf("unknown member: %v", err)
	}
	if _, err := readRecords("f.yaml", []byte("- id: a\n  adress: x\n")); err == nil || !strings.Contains(err.Error(), "adress") {
		t.Errorf("unknown YAML member: %v", err)
	}
}

func TestSHA256Fingerprint(t *testing.T) {
	t.Parallel()
	line := newKeyLine(t)
	k, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(line))
	if got := sha256Fingerprint(line); got != ssh.FingerprintSHA256(k) || !strings.HasPrefix(got, "SHA256:") {
		t.Fatalf("%q", got)
	}
	if sha256Fingerprint("-----BEGIN CERTIFICATE-----") != "" {
		t.Fatal("a certificate has an SSH fingerprint")
	}
}
