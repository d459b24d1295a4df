package e2e

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/daemon"
)

// TestExternalIdentityFlagsRefused: `kps serve` refuses wrong external identity settings as
// usage errors naming the flag. (Their parsing: TestExternalIdentityFlags in daemon.)
func TestExternalIdentityFlagsRefused(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--identity-mode", "external"},
		{"--identity-mode", "keystone", "--identity-url", "http://h/v3"},
		{"--identity-url", "http://h/v3"}, // local mode
		{"--identity-mode", "external", "--identity-url", "h:5000/v3"},
		{"--identity-mode", "external", "--identity-url", "http://h/v3", "--identity-timeout", "0s"},
		{"--identity-mode", "external", "--identity-url", "http://h/v3", "--identity-cache-ttl", "-1s"},
		{"--identity-mode", "external", "--identity-url", "http://h/v3", "--identity-role-map", "admin=root"},
		{"--identity-mode", "external", "--identity-url", "http://h/v3", "--identity-default-role", "owner"},
	} {
		var out, errOut bytes.Buffer
		args = append([]string{"serve", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0"}, args...)
		if code := run(context.Background(), args, console{nil, &out, &errOut, func(string) string { return "" }}); code != 2 || !strings.Contains(errOut.String(), "--identity-") {
			t.Errorf("%v exited %d: %s", args[5:], code, errOut.String())
		}
	}
}

// startExternal starts `kps serve --identity-mode external --identity-url identityURL` and
// returns a client for it that holds token, scoped to project.
func startExternal(t *testing.T, identityURL, token, project string, out *lockedBuffer) *service {
	t.Helper()
	cfg := daemon.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Region: "local-1", Workers: 4,
		KeyPairQuota: 1000, MaxQueued: 1000, TokenTTL: time.Hour, Lease: 6 * time.Second,
		TaskTimeout: 60 * time.Second, Shutdown: 5 * time.Second, LogLevel: "info",
		IdentityMode: "external", IdentityURL: identityURL, IdentityCacheTTL: time.Minute,
		IdentityTimeout: time.Second, IdentityRoleMap: "admin=admin,member=member,reader=reader", IdentityDefaultRole: "none"}
	m := daemon.NewMain(cfg, out, out)
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return &service{t: t, base: "http://" + m.Addr(), token: token, project: project, main: m}
}

// TestExternalIdentityMode runs two services: a local-mode one stands in for Keystone (it
// issues tokens and answers GET /v3/auth/tokens), and an external-mode one trusts its tokens.
func TestExternalIdentityMode(t *testing.T) {
	t.Parallel()
	keystone := setup(t)
	var log lockedBuffer
	kps2 := startExternal(t, keystone.base+"/v3", keystone.token, keystone.project, &log)
	if strings.Contains(log.String(), "admin-password") || strings.Contains(log.String(), "created user admin") {
		t.Errorf("external mode announced a local admin: %s", log.String())
	}

	// The Keystone token works on the second service, under the Keystone project.
	kp := kps2.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "ext-kp"}})["keypair"].(map[string]any)
	if kp["name"] != "ext-kp" || len(str(kp["user_id"])) != 32 {
		t.Fatalf("created %v", kp)
	}
	if out := kps2.must(200, "GET", "/failed-tasks", nil); out["total"] != float64(0) {
		t.Fatalf("failed tasks %v", out)
	}
	// The resources are the second service's own.
	keystone.wantError(404, "KPS.6201", "GET", "/keypairs/ext-kp", nil)
	kps2.must(200, "GET", "/keypairs/ext-kp", nil)

	// Scope and roles come from the token.
	other := strings.Repeat("ab", 16)
	if code, out := kps2.raw("GET", "/v3/"+other+"/keypairs", nil, map[string]string{"X-Auth-Token": kps2.token}); code != 403 ||
		out["error_msg"] != "Project mismatch: the request targets project "+other+" but the credentials are scoped to project "+kps2.project+"." {
		t.Fatalf("other project: %d %v", code, out)
	}
	reader := keystone.addUser("rita", kps.RoleReader)
	rita := &service{t: t, base: kps2.base, token: reader.token, project: reader.project, main: kps2.main}
	rita.must(200, "GET", "/keypairs", nil)
	rita.wantError(403, "KPS.9006", "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "rita"}})

	// Unknown tokens are 401; tokens are not issued here.
	if code, out := kps2.raw("GET", "/v3/"+kps2.project+"/keypairs", nil, map[string]string{"X-Auth-Token": "KPT1bogus"}); code != 401 ||
		out["error_code"] != "KPS.6102" || out["error_msg"] != "Incorrect authentication information: the token is not valid." {
		t.Fatalf("unknown token: %d %v", code, out)
	}
	login := `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","domain":{"name":"Default"},"password":"admin-password-for-tests"}}}}}`
	if code, out := kps2.raw("POST", "/v3/auth/tokens", login, nil); code != 404 || out["error_code"] != "KPS.6205" {
		t.Fatalf("login on the external-mode service: %d %v", code, out)
	}
	for _, path := range []string{"/v3/auth/catalog", "/v3/projects"} {
		if code, out := kps2.raw("GET", path, nil, map[string]string{"X-Auth-Token": kps2.token, "X-Subject-Token": kps2.token}); code != 404 || out["error_code"] != "KPS.6205" {
			t.Fatalf("GET %s on the external-mode service: %d %v", path, code, out)
		}
	}

	// Keystone goes away: a token the second service has not seen is 503 with Retry-After, the
	// cached ones keep working within the TTL.
	member := keystone.addUser("mike", kps.RoleMember)
	if err := keystone.main.Close(); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", kps2.base+"/v3/"+kps2.project+"/keypairs", nil)
	req.Header.Set("X-Auth-Token", member.token)
	resp, err := apiClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "5" {
		t.Fatalf("identity service down: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if code, out := kps2.raw("GET", "/v3/"+kps2.project+"/keypairs", nil, map[string]string{"X-Auth-Token": member.token}); code != 503 ||
		out["error_code"] != "KPS.6106" || out["error_msg"] != "The identity service is unavailable; retry later." {
		t.Fatalf("identity service down: %d %v", code, out)
	}
	kps2.must(200, "GET", "/keypairs/ext-kp", nil)
	rita.must(200, "GET", "/failed-tasks", nil)
	// The refused token is still refused from the negative cache, not turned into a 503.
	if code, out := kps2.raw("GET", "/v3/"+kps2.project+"/keypairs", nil, map[string]string{"X-Auth-Token": "KPT1bogus"}); code != 401 || out["error_code"] != "KPS.6102" {
		t.Fatalf("unknown token after the outage: %d %v", code, out)
	}
	for _, secret := range []string{kps2.token, member.token, rita.token} {
		if strings.Contains(log.String(), secret) {
			t.Fatal("a token reached the log")
		}
	}
	if !strings.Contains(log.String(), "identity service unavailable") {
		t.Errorf("the outage was not logged: %s", log.String())
	}
}
