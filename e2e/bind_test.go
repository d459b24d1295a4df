package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/openkps/kps/internal/sshdtest"
)

// TestBindReplaceUnbind walks the product's main path against a real sshd: bind with a
// password and disable password login, replace with the old private key, unbind and get
// password login back.
func TestBindReplaceUnbind(t *testing.T) {
	t.Parallel()
	s := setup(t)
	h := sshdtest.Start(t, sshdtest.Options{Sudo: true})
	unrelated := "# ops keys\ncommand=\"/bin/true\",no-pty " + ed25519Line(t, "other@host") + "\n\nnot a key line"
	h.WriteAuthorizedKeys(t, unrelated)
	s.addHost("web-01", h, nil)

	first := s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "first"}})["keypair"].(map[string]any)
	firstPriv := first["private_key"].(string)
	if !strings.HasPrefix(firstPriv, "-----BEGIN RSA PRIVATE KEY-----\n") {
		t.Fatalf("generated private key: %.40q", firstPriv)
	}

	// Bind with the login password, disabling password login.
	out := s.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "first",
		"server": map[string]any{"id": "web-01", "disable_password": true, "auth": map[string]any{"type": "password", "key": h.Password}}})
	if out["status"] != "SUCCESS" || out["server_id"] != "web-01" || len(str(out["task_id"])) != 36 {
		t.Fatalf("associate answered %v", out)
	}
	if st := s.waitTask(out["task_id"].(string)); st != "SUCCESS_REPLACE" {
		t.Fatalf("bind ended %s: %v", st, s.failedTask(out["task_id"].(string)))
	}
	content, _ := h.AuthorizedKeys(t)
	if !strings.HasPrefix(content, unrelated+"\n") || strings.Count(content, keyBlob(t, first["public_key"])) != 1 {
		t.Fatalf("authorized_keys after bind:\n%s", content)
	}
	firstSigner, _ := ssh.ParsePrivateKey([]byte(firstPriv))
	if !h.KeyLoginWorks(t, firstSigner) {
		t.Fatal("the bound key does not log in")
	}
	if h.PasswordLoginWorks(t) {
		t.Fatal("password login still works after disable_password")
	}
	srv := s.must(200, "GET", "/servers/web-01", nil)["server"].(map[string]any)
	if srv["keypair_name"] != "first" || srv["password_disabled"] != true {
		t.Fatalf("server after bind: %v", srv)
	}
	if keys := srv["host_keys"].([]any); len(keys) != 1 || !strings.HasPrefix(str(keys[0]), strings.TrimSpace(h.HostKey)) {
		t.Fatalf("host key not pinned on first use: %v (host %s)", keys, h.HostKey)
	}
	if _, ok := srv["credential"]; ok {
		t.Fatal("credential returned")
	}

	// Replace with the old private key: the old key goes, the new one comes.
	second := s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "second"}})["keypair"].(map[string]any)
	out = s.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "second",
		"server": map[string]any{"id": "web-01", "auth": map[string]any{"type": "keypair", "key": firstPriv}}})
	if st := s.waitTask(out["task_id"].(string)); st != "SUCCESS_REPLACE" {
		t.Fatalf("replace ended %s: %v", st, s.failedTask(out["task_id"].(string)))
	}
	content, _ = h.AuthorizedKeys(t)
	if strings.Contains(content, keyBlob(t, first["public_key"])) || strings.Count(content, keyBlob(t, second["public_key"])) != 1 || !strings.HasPrefix(content, unrelated+"\n") {
		t.Fatalf("authorized_keys after replace:\n%s", content)
	}
	// A bound key pair cannot be deleted.
	s.wantError(409, "KPS.6305", "DELETE", "/keypairs/second", nil)

	// Unbind with the new key: the key goes and password login comes back.
	secondPriv := second["private_key"].(string)
	out = s.must(200, "POST", "/keypairs/disassociate", map[string]any{"server": map[string]any{"id": "web-01",
		"auth": map[string]any{"type": "keypair", "key": secondPriv}}})
	if st := s.waitTask(out["task_id"].(string)); st != "SUCCESS_UNBIND" {
		t.Fatalf("unbind ended %s: %v", st, s.failedTask(out["task_id"].(string)))
	}
	content, _ = h.AuthorizedKeys(t)
	if content != unrelated+"\n" {
		t.Fatalf("authorized_keys after unbind:\n%q", content)
	}
	if !h.PasswordLoginWorks(t) {
		t.Fatal("password login not restored by unbind")
	}
	srv = s.must(200, "GET", "/servers/web-01", nil)["server"].(map[string]any)
	if srv["keypair_name"] != "" || srv["password_disabled"] != false {
		t.Fatalf("server after unbind: %v", srv)
	}
	s.wantError(409, "KPS.6304", "POST", "/keypairs/disassociate", map[string]any{"server": map[string]any{"id": "web-01"}})
	s.must(204, "DELETE", "/keypairs/second", nil)
}

// TestResetWithServiceCredential binds without a caller credential: the inventory's
// credential is used, and unbind without auth uses it too.
func TestResetWithServiceCredential(t *testing.T) {
	t.Parallel()
	s := setup(t)
	h := sshdtest.Start(t, sshdtest.Options{})
	s.addHost("db-01", h, map[string]any{"host_keys": []string{h.HostKey}})
	s.addHost("db-02", h, nil)
	s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "ops", "scope": "domain"}})
	if last := lastTask(s, "db-01"); last != nil {
		t.Fatalf("db-01's last task before any: %v", last)
	}

	// RESET needs the service credential.
	s.wantError(400, "KPS.6021", "POST", "/keypairs/associate", map[string]any{"keypair_name": "ops", "server": map[string]any{"id": "db-02"}})
	s.must(200, "PUT", "/servers/db-01", map[string]any{"server": map[string]any{"credential": map[string]any{"type": "password", "key": h.Password}}})
	if db, _ := os.ReadFile(filepath.Join(s.main.Config.DataDir, "kps.db")); strings.Contains(string(db), h.Password) {
		t.Fatal("the service credential is stored in clear")
	}

	out := s.must(200, "POST", "/keypairs/batch-associate", map[string]any{"batch_keypairs": []any{
		map[string]any{"keypair_name": "ops", "server": map[string]any{"id": "db-01"}},
		map[string]any{"keypair_name": "ops", "server": map[string]any{"id": "db-02"}},
		map[string]any{"keypair_name": "ops", "server": map[string]any{"id": "nope"}},
	}})
	items := out["tasks"].([]any)
	if len(items) != 3 {
		t.Fatalf("batch answered %v", out)
	}
	ok := items[0].(map[string]any)
	if ok["status"] != "SUCCESS" || s.waitTask(ok["task_id"].(string)) != "SUCCESS_RESET" {
		t.Fatalf("batch item 0: %v", ok)
	}
	for i, code := range map[int]string{1: "KPS.6021", 2: "KPS.6204"} {
		it := items[i].(map[string]any)
		if it["status"] != "FAILED" || it["error_code"] != code || it["task_id"] != nil {
			t.Fatalf("batch item %d: %v, want %s", i, it, code)
		}
	}
	// The server records carry their last task, a succeeded one too (kept 7 days); a refused
	// batch item submitted none.
	wantLastTask(t, lastTask(s, "db-01"), ok["task_id"], "SUCCESS_RESET", "")
	if last := lastTask(s, "db-02"); last != nil {
		t.Fatalf("db-02's last task after a refused item: %v", last)
	}
	// A failure is the last task, with its code; db-01's stays its own.
	out = s.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "ops",
		"server": map[string]any{"id": "db-02", "auth": map[string]any{"type": "password", "key": "not " + h.Password}}})
	if st := s.waitTask(out["task_id"].(string)); st != "FAILED_REPLACE" {
		t.Fatalf("a bind with a wrong password ended %s", st)
	}
	failure := s.failedTask(out["task_id"].(string))
	wantLastTask(t, lastTask(s, "db-02"), out["task_id"], "FAILED_REPLACE", str(failure["task_error_code"]))
	wantLastTask(t, lastTask(s, "db-01"), ok["task_id"], "SUCCESS_RESET", "")
	// A bound server is refused by batch associate (KPS.6303).
	out = s.must(200, "POST", "/keypairs/batch-associate", map[string]any{"batch_keypairs": []any{
		map[string]any{"keypair_name": "ops", "server": map[string]any{"id": "db-01"}}}})
	if it := out["tasks"].([]any)[0].(map[string]any); it["error_code"] != "KPS.6303" {
		t.Fatalf("re-binding a bound server in a batch: %v", it)
	}

	out = s.must(200, "POST", "/keypairs/disassociate", map[string]any{"server": map[string]any{"id": "db-01"}})
	if st := s.waitTask(out["task_id"].(string)); st != "SUCCESS_UNBIND" {
		t.Fatalf("unbind ended %s: %v", st, s.failedTask(out["task_id"].(string)))
	}
	if content, _ := h.AuthorizedKeys(t); strings.TrimSpace(content) != "" {
		t.Fatalf("authorized_keys after unbind: %q", content)
	}
	wantLastTask(t, lastTask(s, "db-01"), out["task_id"], "SUCCESS_UNBIND", "")
}

// lastTask returns a server's last_task (nil for null) as GET /servers/{id} shows it, after
// checking that GET /servers shows the same.
func lastTask(s *service, id string) map[string]any {
	s.t.Helper()
	srv := s.must(200, "GET", "/servers/"+id, nil)["server"].(map[string]any)
	last, present := srv["last_task"]
	if !present {
		s.t.Fatalf("server %s without last_task: %v", id, srv)
	}
	for _, it := range s.must(200, "GET", "/servers", nil)["servers"].([]any) {
		if m := it.(map[string]any); m["id"] == id && !reflect.DeepEqual(m["last_task"], last) {
			s.t.Fatalf("server %s: the list's last_task %v, the record's %v", id, m["last_task"], last)
		}
	}
	if last == nil {
		return nil
	}
	return last.(map[string]any)
}

// wantLastTask asserts a last_task's task, status and error code (absent unless it failed).
func wantLastTask(t *testing.T, last map[string]any, id any, status, code string) {
	t.Helper()
	gotCode, hasCode := last["error_code"]
	if last == nil || last["id"] != id || last["task_status"] != status || (code == "") == hasCode ||
		(hasCode && gotCode != code) || last["create_time"] == nil || last["create_time"].(float64) <= 0 {
		t.Fatalf("last_task %v, want task %v %s error code %q", last, id, status, code)
	}
}

// keyBlob returns the base64 blob of an authorized_keys line.
func keyBlob(t testing.TB, line any) string {
	f := strings.Fields(str(line))
	if len(f) < 2 {
		t.Fatalf("not a key line: %v", line)
	}
	return f[1]
}

// ed25519Line returns a fresh public key as an authorized_keys line.
func ed25519Line(t testing.TB, comment string) string {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := ssh.NewPublicKey(pub)
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) + " " + comment
}
