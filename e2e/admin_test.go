package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

// TestAdminCommands: a newcomer gets a user, a role and an AK/SK without writing JSON, and the
// AK/SK works.
func TestAdminCommands(t *testing.T) {
	t.Parallel()
	s := setup(t)
	// The admin commands act as the profile's user, like every other command.
	env := map[string]string{"KPS_ENDPOINT": s.base, "KPS_PASSWORD": "admin-password-for-tests", "KPS_CONFIG_DIR": t.TempDir()}
	kps := func(stdin string, args ...string) (string, string, int) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), args, console{strings.NewReader(stdin), &out, &errOut, func(k string) string { return env[k] }})
		return out.String(), errOut.String(), code
	}
	if _, errOut, code := kps("", "login", "--user", "admin"); code != 0 {
		t.Fatalf("login: %d %s", code, errOut)
	}
	admin := func(stdin string, args ...string) (string, string, int) {
		return kps(stdin, append([]string{"admin", "-o", "json"}, args...)...)
	}
	decode := func(out string) map[string]any {
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(out))
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("output %q: %v", out, err)
		}
		return m
	}

	out, errOut, code := admin("", "project", "create", "local-1_ops", "--description", "ops team")
	if code != 0 {
		t.Fatalf("project create: %d %s", code, errOut)
	}
	project := decode(out)
	out, errOut, code = admin("dana-secret-pw-1\n", "user", "create", "dana", "--password-stdin")
	if code != 0 {
		t.Fatalf("user create: %d %s", code, errOut)
	}
	user := decode(out)
	if strings.Contains(out, "dana-secret-pw-1") {
		t.Fatal("the user's password was printed")
	}
	if _, errOut, code = admin("", "role", "grant", "--user-id", str(user["id"]), "--role", "member", "--project-id", s.project); code != 0 {
		t.Fatalf("role grant: %d %s", code, errOut)
	}
	if _, errOut, code = admin("", "role", "grant", "--user-id", str(user["id"]), "--role", "reader", "--project-id", str(project["id"])); code != 0 {
		t.Fatalf("role grant on the new project: %d %s", code, errOut)
	}
	out, errOut, code = kps("", "admin", "credential", "create", "--user-id", str(user["id"]), "--description", "ci")
	if code != 0 {
		t.Fatalf("credential create: %d %s", code, errOut)
	}
	m := regexp.MustCompile(`access key \(AK\): ([A-Z0-9]{20})\nsecret key \(SK\): ([A-Za-z0-9]{40})\n`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("credential output %q", out)
	}
	// The new user's AK/SK signs requests. (With the official SDK, which also discovers the
	// project by region name: TestAdminCredentialSDK in interop.)
	s.signed(m[1], m[2], signedRequest{method: "POST", path: "/keypairs", body: []byte(`{"keypair":{"name":"danas"}}`)}).
		want(t, 200, "", "")
	// The user logs in with the password given on stdin.
	dana := &service{t: t, base: s.base, main: s.main}
	dana.loginAs("dana", "dana-secret-pw-1")
	dana.must(200, "GET", "/keypairs/danas", nil)

	// Errors: usage → 2, API → 1 with the KPS code.
	if _, _, code := admin("", "role", "grant", "--role", "member"); code != 2 {
		t.Fatalf("usage error exited %d", code)
	}
	if _, errOut, code := admin("", "project", "create", "local-1_ops"); code != 1 || !strings.Contains(errOut, "KPS.") {
		t.Fatalf("duplicate project: %d %q", code, errOut)
	}
	env["KPS_PASSWORD"] = "wrong"
	if _, errOut, code := kps("", "login", "--user", "admin", "--profile", "wrong"); code != 1 || !strings.Contains(errOut, "KPS.6107") {
		t.Fatalf("wrong admin password: %d %q", code, errOut)
	}
	// Without a profile the admin commands say how to get one; their help needs none.
	if _, errOut, code := admin("", "project", "create", "x", "--profile", "nobody"); code != 2 || !strings.Contains(errOut, "kps login") {
		t.Fatalf("no profile: %d %q", code, errOut)
	}
	if out, _, code := kps("", "admin", "user", "create", "--help"); code != 0 || !strings.Contains(out, "Usage: kps admin user create") {
		t.Fatalf("admin help: %d %q", code, out)
	}
	// The lists: users, projects, domains, access keys.
	out, _, _ = admin("", "user", "list")
	if !strings.Contains(out, `"name": "dana"`) {
		t.Fatalf("user list: %s", out)
	}
	if out, _, _ = admin("", "project", "list"); !strings.Contains(out, `"name": "local-1_ops"`) {
		t.Fatalf("project list: %s", out)
	}
	if out, _, _ = admin("", "domain", "list"); !strings.Contains(out, `"name": "Default"`) {
		t.Fatalf("domain list: %s", out)
	}
	if out, _, _ = admin("", "credential", "list", "--user-id", str(user["id"])); !strings.Contains(out, m[1]) || strings.Contains(out, m[2]) {
		t.Fatalf("credential list: %s", out)
	}
}
