package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestAuthAndRouting checks the checks that come before any handler: routing, then
// authentication, then the project.
func TestAuthAndRouting(t *testing.T) {
	t.Parallel()
	s := setup(t)
	p := "/v3/" + s.project
	other := strings.Repeat("ab", 16)
	cases := []struct {
		method, path string
		headers      map[string]string
		status       int
		code         string
	}{
		{"GET", p + "/failed-tasks", nil, 401, "KPS.6101"},
		{"GET", p + "/failed-tasks", map[string]string{"X-Auth-Token": "KPT1bogus"}, 401, "KPS.6102"},
		{"GET", p + "/failed-tasks", map[string]string{"X-Auth-Token": strings.Repeat("x", 9000)}, 401, "KPS.6102"},
		{"GET", "/v3/" + other + "/failed-tasks", map[string]string{"X-Auth-Token": s.token}, 403, "KPS.6103"},
		{"GET", p + "/failed-tasks", map[string]string{"X-Auth-Token": s.token, "X-Project-Id": other}, 403, "KPS.6103"},
		{"GET", p + "/nothing-here", map[string]string{"X-Auth-Token": s.token}, 404, "KPS.6205"},
		{"GET", p + "/failed-tasks/", nil, 404, "KPS.6205"},
		{"PATCH", p + "/failed-tasks", nil, 405, "KPS.6206"},
		{"POST", p + "/keypairs/web", map[string]string{"X-Auth-Token": s.token}, 405, "KPS.6206"},
		{"GET", "/nowhere", nil, 404, "KPS.6205"},
		{"GET", p + "/failed-tasks", map[string]string{"Authorization": "SDK-HMAC-SHA256 Access=X, SignedHeaders=x, Signature=y", "X-Auth-Token": s.token}, 401, "KPS.6102"},
	}
	for _, c := range cases {
		got, body := s.raw(c.method, c.path, nil, c.headers)
		if got != c.status || body["error_code"] != c.code {
			t.Errorf("%s %s %v: %d %v, want %d %s", c.method, c.path, c.headers, got, body, c.status, c.code)
		}
	}
	// Identity routes, errors included, carry X-IAM-Trace-Id = X-Request-Id (auth.md §8).
	for _, path := range []string{"/v3", "/v3/auth/nothing"} {
		resp, err := apiClient.Get(s.base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if id := resp.Header.Get("X-IAM-Trace-Id"); len(id) != 32 || id != resp.Header.Get("X-Request-Id") {
			t.Errorf("%s: X-IAM-Trace-Id %q, X-Request-Id %q", path, id, resp.Header.Get("X-Request-Id"))
		}
	}
	// Identity errors carry both conventions.
	got, body := s.raw("POST", "/v3/auth/tokens", `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","domain":{"name":"Default"},"password":"wrong"}}}}}`, nil)
	if got != 401 || body["error_code"] != "KPS.6107" || body["error"] == nil {
		t.Fatalf("wrong password: %d %v", got, body)
	}
}

// TestBadInput checks that malformed requests get the right 4xx and code, never a 500.
func TestBadInput(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"id": "s1", "address": "127.0.0.1"}})
	s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "k"}})
	huge := `{"keypair":{"name":"x","public_key":"` + strings.Repeat("A", 1<<20) + `"}}`
	cases := []struct {
		method, path string
		body         any
		status       int
		code         string
	}{
		{"POST", "/keypairs", `{"keypair":`, 400, "KPS.6001"},
		{"POST", "/keypairs", `[]`, 400, "KPS.6001"},
		{"POST", "/keypairs", `{}`, 400, "KPS.6002"},
		{"POST", "/keypairs", `{"keypair":{"name":""}}`, 400, "KPS.6002"},
		{"POST", "/keypairs", `{"keypair":{"name":7}}`, 400, "KPS.6003"},
		{"POST", "/keypairs", `{"keypair":{"name":"../etc"}}`, 400, "KPS.6004"},
		{"POST", "/keypairs", `{"keypair":{"name":"k"}}`, 409, "KPS.6301"},
		{"POST", "/keypairs", `{"keypair":{"name":"d","public_key":"ssh-dss AAAAB3NzaC1kc3MAAACBAP"}}`, 400, "KPS.6009"},
		{"POST", "/keypairs", `{"keypair":{"name":"d","scope":"world"}}`, 400, "KPS.6003"},
		{"POST", "/keypairs", `{"keypair":{"name":"d","user_id":"someone-else"}}`, 403, "KPS.6104"},
		{"POST", "/keypairs", huge, 413, "KPS.6020"},
		{"GET", "/keypairs/bad%20name", nil, 400, "KPS.6004"},
		{"GET", "/keypairs/missing", nil, 404, "KPS.6201"},
		{"GET", "/keypairs?limit=0", nil, 400, "KPS.6005"},
		{"GET", "/keypairs?marker=a%2Fb", nil, 400, "KPS.6007"},
		{"PUT", "/keypairs/k", `{"keypair":{"description":"bell\u0007"}}`, 400, "KPS.6016"},
		{"POST", "/keypairs/associate", `{"keypair_name":"k","server":{"id":"s1","port":70000}}`, 400, "KPS.6015"},
		{"POST", "/keypairs/associate", `{"keypair_name":"missing","server":{"id":"s1"}}`, 404, "KPS.6201"},
		{"POST", "/keypairs/associate", `{"keypair_name":"k","server":{"id":"nope"}}`, 404, "KPS.6204"},
		{"POST", "/keypairs/associate", `{"keypair_name":"k","server":{"id":"s1"}}`, 400, "KPS.6021"},
		{"POST", "/keypairs/batch-associate", `{"batch_keypairs":[]}`, 400, "KPS.6008"},
		{"POST", "/keypairs/batch-associate", `{"batch_keypairs":{}}`, 400, "KPS.6003"},
		{"POST", "/keypairs/batch-associate", `{"batch_keypairs":[{"keypair_name":"k","server":{"id":"s1"}},{"keypair_name":"j","server":{"id":"s2"}}]}`, 400, "KPS.6012"},
		{"POST", "/keypairs/batch-associate", `{"batch_keypairs":[{"keypair_name":"k","server":{"id":"s1"}},{"keypair_name":"k","server":{"id":"s1"}}]}`, 400, "KPS.6013"},
		{"POST", "/keypairs/disassociate", `{"server":{"id":"s1"}}`, 409, "KPS.6304"},
		{"GET", "/tasks/../../etc/passwd", nil, 404, "KPS.6205"},
		{"GET", "/tasks/nope", nil, 404, "KPS.6202"},
		{"POST", "/servers", `{"server":{"id":"s2"}}`, 400, "KPS.6002"},
		{"POST", "/servers", `{"server":{"id":"s1","address":"127.0.0.1"}}`, 409, "KPS.6306"},
		{"POST", "/servers", `{"server":{"id":"bad id","address":"h"}}`, 400, "KPS.6003"},
		{"POST", "/servers", `{"server":{"address":"h","port":0}}`, 400, "KPS.6015"},
		{"POST", "/servers", `{"server":{"address":"h","user":"Root"}}`, 400, "KPS.6003"},
		{"POST", "/servers", `{"server":{"address":"h; rm -rf /"}}`, 400, "KPS.6003"},
		{"POST", "/servers", `{"server":{"address":"h","host_keys":["nonsense"]}}`, 400, "KPS.6009"},
		{"POST", "/servers", `{"server":{"address":"h","credential":{"type":"otp","key":"1"}}}`, 400, "KPS.6014"},
		{"GET", "/servers/unknown", nil, 404, "KPS.6204"},
		{"GET", "/servers?offset=-1", nil, 400, "KPS.6006"},
	}
	for _, c := range cases {
		got, body := s.call(c.method, c.path, c.body)
		if got != c.status || body["error_code"] != c.code {
			t.Errorf("%s %s %.80v: %d %v, want %d %s", c.method, c.path, c.body, got, body, c.status, c.code)
		}
	}
	got, body := s.raw("POST", "/v3/"+s.project+"/keypairs", nil, map[string]string{"X-Auth-Token": s.token, "Content-Type": "text/plain"})
	if got != 415 || body["error_code"] != "KPS.6019" {
		t.Errorf("text/plain body: %d %v", got, body)
	}
}

// TestKeyPairs checks create, import, list with markers, detail types, update and delete.
func TestKeyPairs(t *testing.T) {
	t.Parallel()
	s := setup(t)
	imported := ed25519Line(t, "alice@laptop") + "\n"
	out := s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "alice", "public_key": imported}})["keypair"].(map[string]any)
	if out["public_key"] != imported || out["private_key"] != nil || out["type"] != "ssh" || !strings.Contains(str(out["fingerprint"]), ":") {
		t.Fatalf("import: %v", out)
	}
	for i := range 4 {
		s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": fmt.Sprintf("k%d", i), "public_key": imported}})
	}
	page := s.must(200, "GET", "/keypairs?limit=2", nil)
	info := page["page_info"].(map[string]any)
	if info["next_marker"] != "k0" || info["current_count"] != float64(2) || info["previous_marker"] != nil {
		t.Fatalf("first page: %v", page)
	}
	item := page["keypairs"].([]any)[0].(map[string]any)["keypair"].(map[string]any)
	if item["frozen_state"] != "0" || item["is_key_protection"] != false || item["scope"] != "user" {
		t.Fatalf("list item: %v", item)
	}
	page = s.must(200, "GET", "/keypairs?limit=3&marker=k0", nil)
	info = page["page_info"].(map[string]any)
	if _, has := info["next_marker"]; has || info["current_count"] != float64(3) || info["previous_marker"] != "" {
		t.Fatalf("last page: %v", page)
	}
	d := s.must(200, "GET", "/keypairs/alice", nil)["keypair"].(map[string]any)
	if d["frozen_state"] != float64(0) || d["algorithm"] != "ED25519" || d["deleted"] != false || d["description"] != "" || d["create_time"] != d["update_time"] {
		t.Fatalf("detail: %v", d)
	}
	if _, body := s.call("PUT", "/keypairs/alice", map[string]any{"keypair": map[string]any{"description": "laptop"}}); body != nil {
		t.Fatalf("update answered a body: %v", body)
	}
	if d := s.must(200, "GET", "/keypairs/alice", nil)["keypair"].(map[string]any); d["description"] != "laptop" {
		t.Fatalf("after update: %v", d)
	}
	s.must(204, "DELETE", "/keypairs/alice", nil)
	s.wantError(404, "KPS.6201", "GET", "/keypairs/alice", nil)
}

// TestInventory covers the server records of inventory.md: defaults, list order and pages,
// update rules, removal, and that the credential is write-only.
func TestInventory(t *testing.T) {
	t.Parallel()
	s := setup(t)
	out := s.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"address": "db.example.com"}})["server"].(map[string]any)
	if len(str(out["id"])) != 36 || out["name"] != out["id"] || out["port"] != float64(22) || out["user"] != "root" ||
		out["sshd_config"] != "/etc/ssh/sshd_config" || out["has_credential"] != false || out["keypair_name"] != "" ||
		len(out["host_keys"].([]any)) != 0 || out["create_time"] != out["update_time"] {
		t.Fatalf("defaults: %v", out)
	}
	hostKey := ed25519Line(t, "host")
	for _, id := range []string{"web-2", "web-10", "api"} {
		s.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"id": id, "address": "2001:db8::1", "port": 2222,
			"user": "deploy", "host_keys": []string{hostKey}, "credential": map[string]any{"type": "password", "key": "s3cret"}}})
	}
	idsOf := func(list map[string]any) []string {
		ids := []string{}
		for _, it := range list["servers"].([]any) {
			m := it.(map[string]any)
			ids = append(ids, m["id"].(string))
			if _, leaked := m["credential"]; leaked {
				t.Fatalf("listed server %v", m)
			}
		}
		return ids
	}
	all := idsOf(s.must(200, "GET", "/servers", nil))
	if !slices.IsSorted(all) || len(all) != 4 || !slices.Contains(all, "web-10") {
		t.Fatalf("servers not ordered by id: %v", all)
	}
	list := s.must(200, "GET", "/servers?limit=2&offset=1", nil)
	if page := idsOf(list); list["total"] != float64(4) || !slices.Equal(page, all[1:3]) {
		t.Fatalf("page: %v of %v", page, all)
	}
	if raw := fmt.Sprint(s.must(200, "GET", "/servers", nil)); strings.Contains(raw, "s3cret") {
		t.Fatal("a credential was returned")
	}
	// Update: any member but the ID; [] clears the pins, null removes the credential.
	up := s.must(200, "PUT", "/servers/api", map[string]any{"server": map[string]any{"name": "API", "host_keys": []string{}, "credential": nil, "port": 22}})["server"].(map[string]any)
	if up["name"] != "API" || len(up["host_keys"].([]any)) != 0 || up["has_credential"] != false || up["port"] != float64(22) || up["address"] != "2001:db8::1" {
		t.Fatalf("after update: %v", up)
	}
	s.wantError(400, "KPS.6003", "PUT", "/servers/api", map[string]any{"server": map[string]any{"id": "other"}})
	s.wantError(400, "KPS.6015", "PUT", "/servers/api", map[string]any{"server": map[string]any{"port": -1}})
	s.wantError(404, "KPS.6204", "PUT", "/servers/nope", map[string]any{"server": map[string]any{"name": "x"}})
	s.must(204, "DELETE", "/servers/api", nil)
	s.wantError(404, "KPS.6204", "GET", "/servers/api", nil)
	s.wantError(404, "KPS.6204", "DELETE", "/servers/api", nil)

	// The API description is served.
	resp, err := apiClient.Get(s.base + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || !strings.HasPrefix(str(doc["openapi"]), "3.") {
		t.Fatalf("openapi.json: %v %v", err, doc["openapi"])
	}
}
