package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openkps/kps/daemon"
	"github.com/openkps/kps/internal/sshdtest"
)

// secretForms are the ways a secret could sit in a file or a log: in clear, base64 (standard,
// unpadded, URL-safe) and hex (both cases). A PEM private key also as its base64 body (with
// and without line breaks) and its DER bytes in clear and hex.
func secretForms(secret string) map[string][]byte {
	forms := map[string][]byte{}
	add := func(kind string, b []byte) {
		forms[kind] = b
		forms[kind+", base64"] = []byte(base64.StdEncoding.EncodeToString(b))
		forms[kind+", base64 unpadded"] = []byte(base64.RawStdEncoding.EncodeToString(b))
		forms[kind+", base64 URL"] = []byte(base64.RawURLEncoding.EncodeToString(b))
		forms[kind+", hex"] = []byte(hex.EncodeToString(b))
		forms[kind+", HEX"] = []byte(strings.ToUpper(hex.EncodeToString(b)))
	}
	add("clear", []byte(secret))
	if block, _ := pem.Decode([]byte(secret)); block != nil {
		add("DER", block.Bytes)
		body := pemBody(secret)
		forms["PEM body"] = []byte(body)
		forms["PEM body, one line"] = []byte(strings.ReplaceAll(body, "\n", ""))
	}
	return forms
}

// scanForSecrets reports every form of every secret found in any file under dir or in the
// logs. It returns the number of files scanned.
func scanForSecrets(t *testing.T, when, dir string, logs string, secrets map[string]string) int {
	t.Helper()
	files := 0
	check := func(where string, b []byte) {
		for what, secret := range secrets {
			for form, needle := range secretForms(secret) {
				if bytes.Contains(b, needle) {
					t.Errorf("%s: the %s (%s) is in %s", when, what, form, where)
				}
			}
		}
	}
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.IsDir() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		check(path, b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	check("the log", []byte(logs))
	return files
}

// TestNoSecretInClearAfterFullRun exercises every path that carries a secret, with debug
// logging, then scans every file of the data directory (the SQLite database with its -wal
// and -shm files while the service runs, and again after it stopped) and the whole log
// output for each secret in clear, base64 and hex: the admin password, user passwords (set,
// changed by the user, reset by the admin, and a wrong one), tokens, an access key's SK and
// the requests it signs, a temporary credential, private keys returned once (KPS and Nova
// creates), hosted private keys (generated, imported on create, imported later, exported),
// service credentials of servers (password and private key), caller password and caller key
// binds against a real sshd, and a master key rotation (kps keyring add, then the reload
// SIGHUP triggers).
func TestNoSecretInClearAfterFullRun(t *testing.T) {
	t.Parallel()
	var log lockedBuffer
	s := setupLogged(t, &log, func(c *daemon.Config) { c.LogLevel = "debug" })
	h := sshdtest.Start(t, sshdtest.Options{})
	tr := newTranscript()
	admin := as(t, s, tr)
	secrets := map[string]string{"admin password": "admin-password-for-tests", "admin token": s.token, "host password": h.Password}

	// Users and passwords.
	const first, second, third, wrong = "scan-first-password-1", "scan-second-password-2", "scan-third-password-3", "scan-wrong-password-4"
	secrets["user's first password"], secrets["user's second password"], secrets["user's third password"], secrets["wrong password"] = first, second, third, wrong
	id := str(obj(admin.want(201, "POST", "/v3/users", map[string]any{"user": map[string]any{"name": "scanner", "password": first}})["user"])["id"])
	admin.want(204, "PUT", "/v3/projects/"+s.project+"/users/"+id+"/roles/member", nil)
	scope := projectScope("local-1", "Default")
	user, _ := admin.login("Default", "scanner", first, scope)
	secrets["user's first token"] = user.token
	user.want(204, "POST", "/v3/users/"+id+"/password", map[string]any{"user": map[string]any{"original_password": first, "password": second}})
	admin.want(200, "PATCH", "/v3/users/"+id, map[string]any{"user": map[string]any{"password": third}})
	bad := `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"scanner","domain":{"name":"Default"},"password":"` + wrong + `"}}}}}`
	if resp, err := apiClient.Post(s.base+"/v3/auth/tokens", "application/json", strings.NewReader(bad)); err != nil || resp.StatusCode != 401 {
		t.Fatalf("login with a wrong password: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	user, _ = admin.login("Default", "scanner", third, scope)
	secrets["user's token"] = user.token

	// An access key and requests it signs; a temporary credential and a request it signs.
	c := obj(user.want(201, "POST", "/v3.0/OS-CREDENTIAL/credentials", map[string]any{"credential": map[string]any{"description": "scan"}})["credential"])
	ak, sk := str(c["access"]), str(c["secret"])
	secrets["SK"] = sk
	for _, p := range []string{"/keypairs", "/servers"} {
		if code, out := signedCall(t, s, ak, sk, "GET", p, nil); code != 200 {
			t.Fatalf("signed GET %s: %d %s", p, code, out)
		}
	}
	tc := obj(user.want(201, "POST", "/v3.0/OS-CREDENTIAL/securitytokens", map[string]any{"auth": map[string]any{"identity": map[string]any{"methods": []string{"token"}, "token": map[string]any{"duration_seconds": 900}}}})["credential"])
	secrets["temporary SK"], secrets["security token"] = str(tc["secret"]), str(tc["securitytoken"])
	if code, out := signedKPS(t, s, user.withKey(str(tc["access"]), str(tc["secret"]), str(tc["securitytoken"])), "GET", "/v3/"+s.project+"/keypairs"); code != 200 {
		t.Fatalf("request signed with the temporary credential: %d %v", code, out)
	}

	// Private keys: returned once, hosted (generated, imported on create, imported later),
	// exported; a Nova create that generates one.
	plain := obj(s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "plain"}})["keypair"])
	gen := obj(s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "gen", "key_protection": protect(nil)}})["keypair"])
	impPriv, impPub := newEd25519(t, "scan-imp")
	s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "imp", "public_key": impPub, "key_protection": protect(map[string]any{"private_key": impPriv})}})
	laterPriv, laterPub := newEd25519(t, "scan-later")
	s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "later", "public_key": laterPub}})
	s.must(200, "POST", "/keypairs/private-key/import", map[string]any{"keypair": map[string]any{"name": "later", "key_protection": protect(map[string]any{"private_key": laterPriv})}})
	if exp := obj(s.must(200, "POST", "/keypairs/private-key/export", map[string]any{"keypair": map[string]any{"name": "imp"}})["keypair"]); exp["private_key"] != impPriv {
		t.Fatal("export returned another key")
	}
	nova := s.nova("POST", "/compute/v2.1/"+s.project+"/os-keypairs", "2.2", kp(map[string]any{"name": "nova-gen"})).want(t, 201, "").keypair()
	secrets["private key returned once"], secrets["generated hosted private key"] = str(plain["private_key"]), str(gen["private_key"])
	secrets["imported hosted private key"], secrets["private key imported later"] = impPriv, laterPriv
	secrets["Nova private key"] = str(nova["private_key"])

	// Servers with service credentials, and binds against a real sshd: the caller's password,
	// the service's private key (RESET of a hosted key pair), the caller's key, then an unbind
	// with the service's password.
	s.addHost("h", h, map[string]any{"credential": map[string]any{"type": "password", "key": h.Password}})
	s.addHost("h-key", h, map[string]any{"credential": map[string]any{"type": "keypair", "key": impPriv}})
	for _, b := range []struct {
		path string
		body map[string]any
		want string
	}{
		{"/keypairs/associate", map[string]any{"keypair_name": "imp", "server": map[string]any{"id": "h", "auth": map[string]any{"type": "password", "key": h.Password}}}, "SUCCESS_REPLACE"},
		{"/keypairs/associate", map[string]any{"keypair_name": "gen", "server": map[string]any{"id": "h-key"}}, "SUCCESS_RESET"},
		{"/keypairs/associate", map[string]any{"keypair_name": "later", "server": map[string]any{"id": "h", "auth": map[string]any{"type": "keypair", "key": impPriv}}}, "SUCCESS_REPLACE"},
		{"/keypairs/disassociate", map[string]any{"server": map[string]any{"id": "h"}}, "SUCCESS_UNBIND"},
	} {
		id := str(s.must(200, "POST", b.path, b.body)["task_id"])
		if st := s.waitTask(id); st != b.want {
			t.Fatalf("%s %v: %s, want %s: %v", b.path, b.body, st, b.want, s.failedTask(id))
		}
	}

	// A master key rotation while serving.
	if code := run(t.Context(), []string{"keyring", "add", "--data-dir", s.main.Config.DataDir}, console{nil, io.Discard, io.Discard, func(string) string { return "" }}); code != 0 {
		t.Fatalf("kps keyring add exited %d", code)
	}
	if err := s.main.ReloadKeys(); err != nil {
		t.Fatal(err)
	}
	s.main.WaitRewrap()

	dir := s.main.Config.DataDir
	wal := false
	if _, err := os.Stat(filepath.Join(dir, "kps.db-wal")); err == nil {
		wal = true
	}
	running := scanForSecrets(t, "while serving", dir, log.String(), secrets)
	s.main.Close()
	stopped := scanForSecrets(t, "after stopping", dir, log.String(), secrets)
	t.Logf("%d secrets in %d forms each, scanned in %d files while serving (WAL present: %v), %d after stopping, and %d bytes of log",
		len(secrets), len(secretForms("x")), running, wal, stopped, len(log.String()))
	if !wal || running < 3 {
		t.Errorf("the scan while serving saw %d files (WAL %v): the database files were not there to scan", running, wal)
	}
	if !strings.Contains(log.String(), `"level":"DEBUG"`) && !strings.Contains(log.String(), "level=DEBUG") {
		t.Error("the log has no debug records: the scan did not cover debug logging")
	}
}
