package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/iam"
)

// TestRoleMatrix calls every KPS and inventory route as reader, member and admin of the
// project, as a user with no role on it (AK/SK) and with a token of another project: each
// answers its success status exactly when the role suffices (auth.md §3.3), else 403.
func TestRoleMatrix(t *testing.T) {
	t.Parallel()
	admin := setup(t)
	callers := map[kps.Role]*service{kps.RoleAdmin: admin, kps.RoleMember: admin.addUser("mem", kps.RoleMember), kps.RoleReader: admin.addUser("rea", kps.RoleReader)}
	_, pub := newEd25519(t, "matrix")
	priv, pub2 := newEd25519(t, "hosted")
	admin.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"id": "srv", "address": "127.0.0.1", "port": closedPort(t),
		"credential": map[string]any{"type": "password", "key": "pw"}}})

	// fixture prepares what one call of one caller needs; tag keeps callers apart.
	type route struct {
		min     kps.Role
		method  string
		path    string
		body    func(tag string) any
		fixture func(tag string)
		status  int
	}
	keypair := func(tag string) {
		admin.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "kp-" + tag, "public_key": pub, "scope": "domain"}})
	}
	hosted := func(tag string) {
		admin.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "kp-" + tag, "public_key": pub2, "scope": "domain",
			"key_protection": protect(map[string]any{"private_key": priv})}})
	}
	server := func(tag string) {
		admin.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"id": "srv-" + tag, "address": "127.0.0.1"}})
	}
	pinnedServer := func(tag string) {
		admin.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"id": "srv-" + tag, "address": "127.0.0.1",
			"host_keys": []string{strings.TrimSpace(ed25519Line(t, ""))}}})
	}
	// update is a PUT of one server member (inventory.md, "Who may do what").
	update := func(member string, value any) func(string) any {
		return func(string) any { return map[string]any{"server": map[string]any{member: value}} }
	}
	failedTask := func(tag string) string {
		admin.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"id": "f-" + tag, "address": "127.0.0.1", "port": closedPort(t)}})
		id := admin.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "shared",
			"server": map[string]any{"id": "f-" + tag, "auth": map[string]any{"type": "password", "key": "x"}}})["task_id"].(string)
		admin.waitTask(id)
		return id
	}
	admin.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "shared", "public_key": pub, "scope": "domain"}})
	taskID := failedTask("seed")
	failedIDs := map[string]string{}
	none := func(string) any { return nil }
	routes := []route{
		{kps.RoleReader, "GET", "/keypairs", none, nil, 200},
		{kps.RoleReader, "GET", "/keypairs/shared", none, nil, 200},
		{kps.RoleMember, "POST", "/keypairs", func(tag string) any {
			return map[string]any{"keypair": map[string]any{"name": "new-" + tag, "public_key": pub}}
		}, nil, 200},
		{kps.RoleMember, "PUT", "/keypairs/kp-{tag}", func(string) any { return map[string]any{"keypair": map[string]any{"description": "d"}} }, keypair, 200},
		{kps.RoleMember, "DELETE", "/keypairs/kp-{tag}", none, keypair, 204},
		{kps.RoleMember, "POST", "/keypairs/batch-import", func(tag string) any {
			return []any{map[string]any{"keypair": map[string]any{"name": "bi-" + tag, "public_key": pub}}}
		}, nil, 200},
		{kps.RoleMember, "POST", "/keypairs/private-key/import", func(tag string) any {
			return map[string]any{"keypair": map[string]any{"name": "kp-" + tag, "key_protection": protect(map[string]any{"private_key": priv})}}
		}, func(tag string) {
			admin.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "kp-" + tag, "public_key": pub2, "scope": "domain"}})
		}, 200},
		{kps.RoleMember, "POST", "/keypairs/private-key/export", func(tag string) any { return map[string]any{"keypair": map[string]any{"name": "kp-" + tag}} }, hosted, 200},
		{kps.RoleMember, "POST", "/keypairs/private-key/batch-export", func(tag string) any { return []any{map[string]any{"keypair": map[string]any{"name": "kp-" + tag}}} }, hosted, 200},
		{kps.RoleMember, "DELETE", "/keypairs/kp-{tag}/private-key", none, hosted, 200},
		{kps.RoleMember, "POST", "/keypairs/associate", func(tag string) any {
			return map[string]any{"keypair_name": "shared", "server": map[string]any{"id": "srv-" + tag, "auth": map[string]any{"type": "password", "key": "x"}}}
		}, server, 200},
		{kps.RoleMember, "POST", "/keypairs/batch-associate", func(tag string) any {
			return map[string]any{"batch_keypairs": []any{map[string]any{"keypair_name": "shared", "server": map[string]any{"id": "srv-" + tag, "auth": map[string]any{"type": "password", "key": "x"}}}}}
		}, server, 200},
		{kps.RoleMember, "POST", "/keypairs/disassociate", func(tag string) any { return map[string]any{"server": map[string]any{"id": "srv-" + tag}} }, server, 409}, // KPS.6304: allowed, nothing bound
		{kps.RoleReader, "GET", "/tasks/" + taskID, none, nil, 200},
		{kps.RoleReader, "GET", "/running-tasks", none, nil, 200},
		{kps.RoleReader, "GET", "/failed-tasks?limit=10", none, nil, 200},
		{kps.RoleMember, "DELETE", "/failed-tasks/{failed}", none, func(tag string) { failedIDs[tag] = failedTask(tag) }, 200},
		{kps.RoleMember, "DELETE", "/failed-tasks", none, nil, 200},
		{kps.RoleReader, "GET", "/servers", none, nil, 200},
		{kps.RoleReader, "GET", "/servers/srv", none, nil, 200},
		{kps.RoleMember, "POST", "/servers", func(tag string) any {
			return map[string]any{"server": map[string]any{"id": "new-" + tag, "address": "h"}}
		}, nil, 201},
		{kps.RoleMember, "PUT", "/servers/srv-{tag}", update("name", "renamed"), server, 200},
		// Repeating how the service reaches a server unchanged is not changing it.
		{kps.RoleMember, "PUT", "/servers/srv-{tag}", update("address", "127.0.0.1"), server, 200},
		// Changing it, or the credential, needs admin: members could aim a stored credential,
		// a hosted key or another caller's password at a host of their own.
		{kps.RoleAdmin, "PUT", "/servers/srv-{tag}", update("address", "localhost"), server, 200},
		{kps.RoleAdmin, "PUT", "/servers/srv-{tag}", update("port", 2222), server, 200},
		{kps.RoleAdmin, "PUT", "/servers/srv-{tag}", update("user", "deploy"), server, 200},
		{kps.RoleAdmin, "PUT", "/servers/srv-{tag}", update("host_keys", []string{}), pinnedServer, 200},
		{kps.RoleAdmin, "PUT", "/servers/srv-{tag}", update("host_keys", []string{strings.TrimSpace(ed25519Line(t, ""))}), server, 200},
		{kps.RoleAdmin, "PUT", "/servers/srv-{tag}", update("sshd_config", "/etc/ssh/other_config"), server, 200},
		{kps.RoleAdmin, "PUT", "/servers/srv-{tag}", update("credential", map[string]any{"type": "password", "key": "pw"}), server, 200},
		{kps.RoleAdmin, "PUT", "/servers/srv-{tag}", update("credential", nil), server, 200},
		{kps.RoleAdmin, "POST", "/servers", func(tag string) any {
			return map[string]any{"server": map[string]any{"id": "cred-" + tag, "address": "h", "credential": map[string]any{"type": "password", "key": "pw"}}}
		}, nil, 201},
		{kps.RoleMember, "DELETE", "/servers/srv-{tag}", none, server, 204},
	}

	// Callers without a role on the project: a user whose only role is on another project
	// (with a token of that project: 403 KPS.6103), and the same user signing with AK/SK
	// (403 KPS.9006: no role on the path project).
	outsider := admin.addUser("out", kps.RoleMember)
	ctx := t.Context()
	d, _ := admin.main.Store().DomainByName(ctx, "Default")
	other := &kps.Project{Name: "local-1_other", DomainID: d.ID, Enabled: true}
	if err := admin.main.Store().CreateProject(ctx, other); err != nil {
		t.Fatal(err)
	}
	u, _ := admin.main.Store().UserByName(ctx, d.ID, "out")
	if err := admin.main.Store().RevokeRole(ctx, kps.RoleAssignment{UserID: u.ID, Role: kps.RoleMember, ProjectID: admin.project}); err != nil {
		t.Fatal(err)
	}
	if err := admin.main.Store().GrantRole(ctx, kps.RoleAssignment{UserID: u.ID, Role: kps.RoleAdmin, ProjectID: other.ID}); err != nil {
		t.Fatal(err)
	}
	ak, sk := admin.accessKey("out")
	outsider.loginScoped("out", "out-password", other.ID)

	for i, r := range routes {
		for _, role := range kps.Roles {
			tag := fmt.Sprintf("%s%d", role, i)
			if r.fixture != nil {
				r.fixture(tag)
			}
			path := strings.ReplaceAll(strings.ReplaceAll(r.path, "{tag}", tag), "{failed}", failedIDs[tag])
			got, body := callers[role].call(r.method, path, r.body(tag))
			allowed := roleRank(role) >= roleRank(r.min)
			if allowed && got != r.status || !allowed && (got != 403 || body["error_code"] != "KPS.9006") {
				t.Errorf("%s %s as %s: %d %v (allowed: %v)", r.method, r.path, role, got, body, allowed)
			}
		}
		tag := fmt.Sprintf("x%d", i)
		path := strings.ReplaceAll(strings.ReplaceAll(r.path, "{tag}", tag), "{failed}", taskID)
		if got, body := outsider.call(r.method, path, r.body(tag)); got != 403 || body["error_code"] != "KPS.6103" {
			t.Errorf("%s %s with another project's token: %d %v", r.method, r.path, got, body)
		}
		if got, code := signedCall(t, admin, ak, sk, r.method, path, r.body(tag)); got != 403 || code != "KPS.9006" {
			t.Errorf("%s %s signed by a user without a role: %d %s", r.method, r.path, got, code)
		}
	}
}

func roleRank(r kps.Role) int {
	for i, x := range kps.Roles {
		if x == r {
			return i
		}
	}
	return -1
}

// loginScoped logs in as user with a token scoped to the project ID; requests still target
// the service's original project path.
func (s *service) loginScoped(user, password, projectID string) {
	s.t.Helper()
	body := `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"` + user + `","domain":{"name":"Default"},"password":"` + password + `"}}},"scope":{"project":{"id":"` + projectID + `"}}}}`
	resp, err := apiClient.Post(s.base+"/v3/auth/tokens", "application/json", strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		s.t.Fatalf("scoped login: %d", resp.StatusCode)
	}
	s.token = resp.Header.Get("X-Subject-Token")
}

// signedCall sends a request signed with AK/SK as the Huawei SDK does and returns the status
// and KPS code.
func signedCall(t *testing.T, s *service, ak, sk, method, path string, body any) (int, string) {
	t.Helper()
	var raw []byte
	if body != nil {
		raw = []byte(jsonText(body))
	}
	req, _ := http.NewRequest(method, s.base+"/v3/"+s.project+path, strings.NewReader(string(raw)))
	if body != nil {
		req.Header.Set("Content-Type", "application/json;charset=UTF-8")
	}
	req.Header.Set("X-Project-Id", s.project)
	if err := iam.Sign(req, raw, ak, sk, time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := apiClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Code string `json:"error_code"`
	}
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out.Code
}
