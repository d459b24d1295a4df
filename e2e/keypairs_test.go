package e2e

import (
	"archive/zip"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/openkps/kps"
	"github.com/openkps/kps/daemon"
	"github.com/openkps/kps/internal/sshdtest"
)

// newEd25519 returns an OpenSSH private key and its public line.
func newEd25519(t testing.TB, comment string) (priv, pub string) {
	t.Helper()
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(sk, comment)
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := ssh.NewPublicKey(pk)
	return string(pem.EncodeToMemory(block)), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " " + comment
}

func protect(extra map[string]any) map[string]any {
	p := map[string]any{"encryption": map[string]any{"type": "default"}}
	for k, v := range extra {
		p[k] = v
	}
	return p
}

// TestHostedPrivateKeys covers §2.1 with key_protection and §2.7–2.10.
func TestHostedPrivateKeys(t *testing.T) {
	t.Parallel()
	s := setup(t)
	// Generated and hosted: the private key comes back once, and export returns the same.
	gen := s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "gen", "key_protection": protect(nil)}})["keypair"].(map[string]any)
	if d := s.must(200, "GET", "/keypairs/gen", nil)["keypair"].(map[string]any); d["is_key_protection"] != true {
		t.Fatalf("detail: %v", d)
	}
	exp := s.must(200, "POST", "/keypairs/private-key/export", map[string]any{"keypair": map[string]any{"name": "gen"}})["keypair"].(map[string]any)
	if exp["private_key"] != gen["private_key"] || exp["name"] != "gen" {
		t.Fatal("export differs from the generated key")
	}
	// Imported with its private key: export gives back the exact bytes.
	priv, pub := newEd25519(t, "imp")
	imp := s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "imp", "public_key": pub,
		"key_protection": protect(map[string]any{"private_key": priv})}})["keypair"].(map[string]any)
	if _, has := imp["private_key"]; has {
		t.Fatal("import echoed a private key")
	}
	exp = s.must(200, "POST", "/keypairs/private-key/export", map[string]any{"keypair": map[string]any{"name": "imp"}})["keypair"].(map[string]any)
	if exp["private_key"] != priv {
		t.Fatal("export is not the imported bytes")
	}

	otherPriv, otherPub := newEd25519(t, "other")
	bad := []struct {
		body   map[string]any
		status int
		code   string
	}{
		{map[string]any{"name": "x", "public_key": otherPub, "key_protection": protect(map[string]any{"private_key": priv})}, 400, "KPS.6010"},
		{map[string]any{"name": "x", "public_key": otherPub, "key_protection": protect(map[string]any{"private_key": "garbage"})}, 400, "KPS.6010"},
		{map[string]any{"name": "x", "public_key": otherPub, "key_protection": protect(nil)}, 400, "KPS.6002"},
		{map[string]any{"name": "x", "key_protection": protect(map[string]any{"private_key": otherPriv})}, 400, "KPS.6003"},
		{map[string]any{"name": "x", "key_protection": map[string]any{}}, 400, "KPS.6017"},
		{map[string]any{"name": "x", "key_protection": map[string]any{"encryption": nil}}, 400, "KPS.6017"},
		{map[string]any{"name": "x", "key_protection": map[string]any{"encryption": map[string]any{"type": "kms", "kms_key_name": "k"}}}, 400, "KPS.6017"},
		{map[string]any{"name": "x", "key_protection": map[string]any{"encryption": map[string]any{"type": ""}}}, 400, "KPS.6017"},
		{map[string]any{"name": "x", "key_protection": map[string]any{"encryption": map[string]any{"type": "rot13"}}}, 400, "KPS.6017"},
		{map[string]any{"name": "x", "type": "x509", "key_protection": protect(nil)}, 400, "KPS.6017"},
		{map[string]any{"name": "x", "key_protection": "yes"}, 400, "KPS.6003"},
	}
	for _, c := range bad {
		got, out := s.call("POST", "/keypairs", map[string]any{"keypair": c.body})
		if got != c.status || out["error_code"] != c.code {
			t.Errorf("create %v: %d %v, want %d %s", c.body, got, out, c.status, c.code)
		}
		if strings.Contains(fmt.Sprint(out), "PRIVATE KEY") {
			t.Errorf("an error echoed a private key: %v", out)
		}
	}
	s.wantError(404, "KPS.6201", "GET", "/keypairs/x", nil)

	// ImportPrivateKey onto an existing key pair.
	s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "late", "public_key": otherPub}})
	s.wantError(400, "KPS.6018", "POST", "/keypairs/private-key/export", map[string]any{"keypair": map[string]any{"name": "late"}})
	importBody := func(name, key string, extra map[string]any) map[string]any {
		kp := map[string]any{"name": name, "key_protection": protect(map[string]any{"private_key": key})}
		for k, v := range extra {
			kp[k] = v
		}
		return map[string]any{"keypair": kp}
	}
	s.wantError(400, "KPS.6010", "POST", "/keypairs/private-key/import", importBody("late", priv, nil))
	s.wantError(404, "KPS.6201", "POST", "/keypairs/private-key/import", importBody("nobody", otherPriv, nil))
	s.wantError(400, "KPS.6004", "POST", "/keypairs/private-key/import", importBody("no/slash", otherPriv, nil))
	s.wantError(403, "KPS.6104", "POST", "/keypairs/private-key/import", importBody("late", otherPriv, map[string]any{"user_id": "someone-else"}))
	s.wantError(400, "KPS.6002", "POST", "/keypairs/private-key/import", map[string]any{"keypair": map[string]any{"name": "late"}})
	out := s.must(200, "POST", "/keypairs/private-key/import", importBody("late", otherPriv, nil))["keypair"].(map[string]any)
	kp := out["key_protection"].(map[string]any)
	if _, has := kp["private_key"]; has || kp["encryption"].(map[string]any)["type"] != "default" || out["name"] != "late" {
		t.Fatalf("import answered %v", out)
	}
	if d := s.must(200, "GET", "/keypairs/late", nil)["keypair"].(map[string]any); d["is_key_protection"] != true {
		t.Fatalf("detail after import: %v", d)
	}

	// Batch export: a zip with one <name>.pem per key pair, in request order, mode 0600.
	req := []any{map[string]any{"keypair": map[string]any{"name": "imp", "type": "ssh", "frozen_state": "0"}}, map[string]any{"keypair": map[string]any{"name": "gen"}}}
	zipBody := s.rawBytes("POST", "/keypairs/private-key/batch-export", req)
	zr, err := zip.NewReader(bytes.NewReader(zipBody), int64(len(zipBody)))
	if err != nil {
		t.Fatal(err)
	}
	if len(zr.File) != 2 || zr.File[0].Name != "imp.pem" || zr.File[1].Name != "gen.pem" {
		t.Fatalf("zip entries: %v", zr.File)
	}
	for i, want := range []string{priv, gen["private_key"].(string)} {
		f := zr.File[i]
		rc, _ := f.Open()
		got, _ := io.ReadAll(rc)
		rc.Close()
		if string(got) != want || f.Mode().Perm() != 0o600 || f.Method != zip.Deflate {
			t.Fatalf("entry %s: mode %v method %d content ok=%v", f.Name, f.Mode(), f.Method, string(got) == want)
		}
	}
	for _, c := range []struct {
		body   any
		status int
		code   string
	}{
		{[]any{}, 400, "KPS.6008"},
		{make([]any, 11), 400, "KPS.6008"},
		{map[string]any{"keypair": map[string]any{"name": "gen"}}, 400, "KPS.6001"},
		{[]any{map[string]any{"keypair": map[string]any{"name": "gen"}}, map[string]any{"keypair": map[string]any{"name": "gen"}}}, 400, "KPS.6013"},
		{[]any{map[string]any{"keypair": map[string]any{"name": "gen"}}, map[string]any{"keypair": map[string]any{"name": "ghost"}}}, 404, "KPS.6201"},
		{[]any{map[string]any{"keypair": map[string]any{"name": "gen"}}, map[string]any{"keypair": map[string]any{}}}, 400, "KPS.6002"},
		{[]any{map[string]any{"keypair": map[string]any{"name": "bad name"}}}, 400, "KPS.6004"},
	} {
		s.wantError(c.status, c.code, "POST", "/keypairs/private-key/batch-export", c.body)
	}

	// Clear: idempotent, and the key is gone.
	if _, body := s.call("DELETE", "/keypairs/late/private-key", nil); body != nil {
		t.Fatalf("clear answered %v", body)
	}
	s.must(200, "DELETE", "/keypairs/late/private-key", nil)
	s.wantError(400, "KPS.6018", "POST", "/keypairs/private-key/export", map[string]any{"keypair": map[string]any{"name": "late"}})
	s.wantError(400, "KPS.6018", "POST", "/keypairs/private-key/batch-export", []any{map[string]any{"keypair": map[string]any{"name": "gen"}}, map[string]any{"keypair": map[string]any{"name": "late"}}})
	s.wantError(404, "KPS.6201", "DELETE", "/keypairs/ghost/private-key", nil)
	if d := s.must(200, "GET", "/keypairs/late", nil)["keypair"].(map[string]any); d["is_key_protection"] != false {
		t.Fatalf("detail after clear: %v", d)
	}
}

// rawBytes sends a request and returns the body of a 200 answer as bytes.
func (s *service) rawBytes(method, path string, body any) []byte {
	s.t.Helper()
	req, _ := http.NewRequest(method, s.base+"/v3/"+s.project+path, strings.NewReader(jsonText(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Auth-Token", s.token)
	resp, err := apiClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/zip" ||
		resp.Header.Get("Content-Disposition") != `attachment; filename="keypairs.zip"` {
		s.t.Fatalf("%s %s: %d %v %s", method, path, resp.StatusCode, resp.Header, b)
	}
	return b
}

// TestBatchImport covers §2.6: sizes, per-item failures, duplicates inside the batch.
func TestBatchImport(t *testing.T) {
	t.Parallel()
	s := setup(t, func(c *daemon.Config) { c.KeyPairQuota = 12 })
	item := func(name string) map[string]any {
		_, pub := newEd25519(t, name)
		return map[string]any{"keypair": map[string]any{"name": name, "public_key": pub}}
	}
	s.wantError(400, "KPS.6008", "POST", "/keypairs/batch-import", []any{})
	s.wantError(400, "KPS.6001", "POST", "/keypairs/batch-import", map[string]any{"keypair": item("a")})
	eleven := make([]any, 11)
	for i := range eleven {
		eleven[i] = item(fmt.Sprintf("e%d", i))
	}
	s.wantError(400, "KPS.6008", "POST", "/keypairs/batch-import", eleven)
	out := s.must(200, "POST", "/keypairs/batch-import", []any{item("one")})
	if ok := out["succeeded_keypairs"].([]any); len(ok) != 1 || len(out["failed_keypairs"].([]any)) != 0 {
		t.Fatalf("one item: %v", out)
	}
	ten := eleven[:10]
	ten[1] = item("e0")                                                 // repeated name: the later fails
	ten[2] = map[string]any{"keypair": map[string]any{"name": "nokey"}} // import only
	ten[3] = map[string]any{"keypair": map[string]any{"name": "bad name", "public_key": "x"}}
	ten[4] = item("one") // exists
	ten[5] = map[string]any{"keypair": map[string]any{"name": "dss", "public_key": "ssh-dss AAAAB3NzaC1kc3M="}}
	ten[6] = "not an object"
	out = s.must(200, "POST", "/keypairs/batch-import", ten)
	succeeded, failed := out["succeeded_keypairs"].([]any), out["failed_keypairs"].([]any)
	want := map[string]string{"e0": "KPS.6013", "nokey": "KPS.6002", "bad name": "KPS.6004", "one": "KPS.6301", "dss": "KPS.6009", "": "KPS.6003"}
	if len(succeeded) != 4 || len(failed) != len(want) {
		t.Fatalf("batch of ten: %v", out)
	}
	for _, f := range failed {
		m := f.(map[string]any)
		code := want[m["keypair_name"].(string)]
		if !strings.HasPrefix(m["failed_reason"].(string), code+": ") {
			t.Errorf("failure %v, want %s", m, code)
		}
	}
	for _, it := range succeeded {
		kp := it.(map[string]any)["keypair"].(map[string]any)
		if _, has := kp["private_key"]; has || kp["fingerprint"] == "" || kp["user_id"] == "" {
			t.Errorf("succeeded item %v", kp)
		}
	}
	// Quota 12: 5 exist; 8 more → the last one fails with KPS.6401 and nothing else is lost.
	var batch []any
	for i := range 8 {
		batch = append(batch, item(fmt.Sprintf("q%d", i)))
	}
	out = s.must(200, "POST", "/keypairs/batch-import", batch)
	failed = out["failed_keypairs"].([]any)
	if len(out["succeeded_keypairs"].([]any)) != 7 || len(failed) != 1 || !strings.HasPrefix(failed[0].(map[string]any)["failed_reason"].(string), "KPS.6401: ") {
		t.Fatalf("quota: %v", out)
	}
	s.wantError(403, "KPS.6401", "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "over"}})
}

// TestKeyPairMarkerWalk pages through more than three pages the way Terraform does.
func TestKeyPairMarkerWalk(t *testing.T) {
	t.Parallel()
	s := setup(t)
	_, pub := newEd25519(t, "walk")
	var want []string
	for i := range 23 {
		name := fmt.Sprintf("kp-%02d", 22-i) // created out of order
		s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": name, "public_key": pub}})
		want = append([]string{name}, want...)
	}
	var got []string
	marker, pages := "", 0
	for {
		page := s.must(200, "GET", "/keypairs?limit=6&marker="+marker, nil)
		pages++
		for _, it := range page["keypairs"].([]any) {
			got = append(got, it.(map[string]any)["keypair"].(map[string]any)["name"].(string))
		}
		info := page["page_info"].(map[string]any)
		if info["current_count"] != float64(len(page["keypairs"].([]any))) {
			t.Fatalf("current_count %v", info)
		}
		if pages > 1 && info["previous_marker"] == nil {
			t.Fatalf("page %d without previous_marker", pages)
		}
		next, ok := info["next_marker"].(string)
		if !ok {
			break
		}
		marker = next
	}
	if pages != 4 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%d pages: %v", pages, got)
	}
}

// TestBindWithHostedKey: a server without a service credential, bound to a key pair whose
// private key is hosted, can be re-bound with RESET: the service logs in with the hosted key.
func TestBindWithHostedKey(t *testing.T) {
	t.Parallel()
	s := setup(t)
	h := sshdtest.Start(t, sshdtest.Options{})
	s.addHost("app-01", h, nil)
	s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "v1", "key_protection": protect(nil)}})
	v2 := s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "v2"}})["keypair"].(map[string]any)
	s.wantError(400, "KPS.6021", "POST", "/keypairs/associate", map[string]any{"keypair_name": "v1", "server": map[string]any{"id": "app-01"}})
	id := s.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "v1",
		"server": map[string]any{"id": "app-01", "auth": map[string]any{"type": "password", "key": h.Password}}})["task_id"].(string)
	if st := s.waitTask(id); st != "SUCCESS_REPLACE" {
		t.Fatalf("first bind %s", st)
	}
	id = s.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "v2", "server": map[string]any{"id": "app-01"}})["task_id"].(string)
	if st := s.waitTask(id); st != "SUCCESS_RESET" {
		t.Fatalf("reset with the hosted key %s: %v", st, s.failedTask(id))
	}
	content, _ := h.AuthorizedKeys(t)
	if strings.Count(content, keyBlob(t, v2["public_key"])) != 1 || strings.Count(content, "ssh-rsa") != 1 {
		t.Fatalf("authorized_keys: %q", content)
	}
}

// TestKeyRotationAndNoLeak: secrets are sealed at rest, a master key rotation re-wraps them
// while the service runs, old versions can then be dropped, and no secret appears in clear in
// the data directory or the log.
func TestKeyRotationAndNoLeak(t *testing.T) {
	t.Parallel()
	var log lockedBuffer
	s := setupLogged(t, &log, func(c *daemon.Config) { c.LogLevel = "debug" })
	h := sshdtest.Start(t, sshdtest.Options{})
	dataDir := s.main.Config.DataDir
	priv, pub := newEd25519(t, "leak-check")
	gen := s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "gen", "key_protection": protect(nil)}})["keypair"].(map[string]any)
	s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "imp", "public_key": pub, "key_protection": protect(map[string]any{"private_key": priv})}})
	s.addHost("h", h, map[string]any{"credential": map[string]any{"type": "password", "key": h.Password}})
	id := s.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "gen", "server": map[string]any{"id": "h"}})["task_id"].(string)
	if st := s.waitTask(id); st != "SUCCESS_RESET" {
		t.Fatalf("bind: %s", st)
	}
	s.must(200, "POST", "/keypairs/private-key/export", map[string]any{"keypair": map[string]any{"name": "imp"}})
	s.call("POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "bad", "public_key": pub, "key_protection": protect(map[string]any{"private_key": gen["private_key"]})}})

	// Rotate: add v2, reload, and wait until every sealed secret is under it.
	if code := run(t.Context(), []string{"keyring", "add", "--data-dir", dataDir}, console{nil, io.Discard, io.Discard, func(string) string { return "" }}); code != 0 {
		t.Fatalf("kps keyring add exited %d", code)
	}
	if err := s.main.ReloadKeys(); err != nil {
		t.Fatal(err)
	}
	s.main.WaitRewrap()
	n, err := s.main.Store().RewrapSecrets(t.Context(), func(sealed []byte) ([]byte, bool, error) {
		if s.main.Sealer().Stale(sealed) {
			t.Error("a secret is still under the old master key")
		}
		return sealed, false, nil
	})
	if err != nil || n != 0 {
		t.Fatalf("checking secrets: %d %v", n, err)
	}
	// Drop v1: everything still opens.
	mk := filepath.Join(dataDir, "master.key")
	b, _ := os.ReadFile(mk)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "v2:") {
		t.Fatalf("master.key has %d lines", len(lines))
	}
	if err := os.WriteFile(mk, []byte(lines[1]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.main.ReloadKeys(); err != nil {
		t.Fatal(err)
	}
	if exp := s.must(200, "POST", "/keypairs/private-key/export", map[string]any{"keypair": map[string]any{"name": "imp"}})["keypair"].(map[string]any); exp["private_key"] != priv {
		t.Fatal("export after dropping v1")
	}
	id = s.must(200, "POST", "/keypairs/disassociate", map[string]any{"server": map[string]any{"id": "h"}})["task_id"].(string)
	if st := s.waitTask(id); st != "SUCCESS_UNBIND" {
		t.Fatalf("unbind with the re-wrapped service credential: %s", st)
	}

	// The scan: nothing secret in clear anywhere under the data directory or in the log.
	secretsInClear := map[string]string{"imported private key": pemBody(priv), "generated private key": pemBody(gen["private_key"].(string)),
		"host password": h.Password, "admin password": "admin-password-for-tests", "token": s.token}
	s.main.Close()
	scanForSecrets(t, "after the rotation", dataDir, log.String(), secretsInClear) // secrets_scan_test.go
	if !strings.Contains(log.String(), "secrets re-wrapped") {
		t.Errorf("the log does not mention the re-wrap:\n%s", log.String())
	}
}

// pemBody returns the base64 body of a PEM block: what a leak would contain.
func pemBody(p string) string {
	lines := strings.Split(strings.TrimSpace(p), "\n")
	return strings.Join(lines[1:len(lines)-1], "\n")
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestScopeAndRoles: user-scope key pairs are visible to their owner only, domain-scope ones
// to everyone in the project; names are unique across both; a reader cannot write.
func TestScopeAndRoles(t *testing.T) {
	t.Parallel()
	alice := setup(t)
	bob := alice.addUser("bob", kps.RoleMember)
	carol := alice.addUser("carol", kps.RoleReader)
	_, pub := newEd25519(t, "scope")
	alice.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "alice-own", "public_key": pub}})
	alice.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "shared", "public_key": pub, "scope": "domain"}})
	bob.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "bob-own", "key_protection": protect(nil)}})

	names := func(s *service) string {
		var out []string
		for _, it := range s.must(200, "GET", "/keypairs", nil)["keypairs"].([]any) {
			out = append(out, it.(map[string]any)["keypair"].(map[string]any)["name"].(string))
		}
		return strings.Join(out, ",")
	}
	if got := names(alice); got != "alice-own,shared" {
		t.Fatalf("alice sees %s", got)
	}
	if got := names(bob); got != "bob-own,shared" {
		t.Fatalf("bob sees %s", got)
	}
	if got := names(carol); got != "shared" {
		t.Fatalf("carol sees %s", got)
	}
	// Invisible is reported as missing, on every operation.
	bob.wantError(404, "KPS.6201", "GET", "/keypairs/alice-own", nil)
	bob.wantError(404, "KPS.6201", "DELETE", "/keypairs/alice-own", nil)
	bob.wantError(404, "KPS.6201", "PUT", "/keypairs/alice-own", map[string]any{"keypair": map[string]any{"description": "x"}})
	alice.wantError(404, "KPS.6201", "POST", "/keypairs/private-key/export", map[string]any{"keypair": map[string]any{"name": "bob-own"}})
	alice.wantError(404, "KPS.6201", "DELETE", "/keypairs/bob-own/private-key", nil)
	// …but its name is taken.
	bob.wantError(409, "KPS.6301", "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "alice-own", "public_key": pub}})
	// The owner is the caller.
	if d := bob.must(200, "GET", "/keypairs/shared", nil)["keypair"].(map[string]any); d["user_id"] == "" || d["scope"] != "domain" {
		t.Fatalf("shared detail for bob: %v", d)
	}
	// A reader reads but does not write.
	carol.wantError(403, "KPS.9006", "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "carols", "public_key": pub}})
	carol.wantError(403, "KPS.9006", "DELETE", "/failed-tasks", nil)
	carol.wantError(403, "KPS.9006", "POST", "/servers", map[string]any{"server": map[string]any{"address": "h"}})
	carol.must(200, "GET", "/failed-tasks", nil)
	// Storing a service credential needs admin (inventory.md).
	bob.wantError(403, "KPS.9006", "POST", "/servers", map[string]any{"server": map[string]any{"address": "h", "credential": map[string]any{"type": "password", "key": "pw"}}})
	bob.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"id": "h", "address": "h"}})
	bob.wantError(403, "KPS.9006", "PUT", "/servers/h", map[string]any{"server": map[string]any{"credential": nil}})
	alice.must(200, "PUT", "/servers/h", map[string]any{"server": map[string]any{"credential": map[string]any{"type": "password", "key": "pw"}}})
	if srv := bob.must(200, "GET", "/servers/h", nil)["server"].(map[string]any); srv["has_credential"] != true {
		t.Fatalf("server: %v", srv)
	}
}

// TestX509KeyPairs: a certificate is stored and listed, but never bound over SSH.
func TestX509KeyPairs(t *testing.T) {
	t.Parallel()
	s := setup(t)
	certPEM := selfSignedCert(t)
	out := s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "cert", "type": "x509", "public_key": certPEM}})["keypair"].(map[string]any)
	if out["type"] != "x509" || out["public_key"] != certPEM || len(strings.Split(out["fingerprint"].(string), ":")) != 20 {
		t.Fatalf("x509 import: %v", out)
	}
	if d := s.must(200, "GET", "/keypairs/cert", nil)["keypair"].(map[string]any); d["algorithm"] != "X509" || d["type"] != "x509" {
		t.Fatalf("detail: %v", d)
	}
	_, pub := newEd25519(t, "not-a-cert")
	s.wantError(400, "KPS.6009", "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "c2", "type": "x509", "public_key": pub}})
	s.wantError(400, "KPS.6009", "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "c3", "type": "ssh", "public_key": certPEM}})
	s.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"id": "srv", "address": "127.0.0.1"}})
	s.wantError(400, "KPS.6011", "POST", "/keypairs/associate", map[string]any{"keypair_name": "cert",
		"server": map[string]any{"id": "srv", "auth": map[string]any{"type": "password", "key": "x"}}})
	s.wantError(400, "KPS.6011", "POST", "/keypairs/batch-associate", map[string]any{"batch_keypairs": []any{map[string]any{"keypair_name": "cert",
		"server": map[string]any{"id": "srv", "auth": map[string]any{"type": "password", "key": "x"}}}}})
	s.wantError(400, "KPS.6017", "POST", "/keypairs/private-key/import", map[string]any{"keypair": map[string]any{"name": "cert",
		"key_protection": protect(map[string]any{"private_key": mustPriv(t)})}})
}

func mustPriv(t testing.TB) string {
	priv, _ := newEd25519(t, "x")
	return priv
}

func selfSignedCert(t testing.TB) string {
	t.Helper()
	_, sk, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, sk.Public(), sk)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
