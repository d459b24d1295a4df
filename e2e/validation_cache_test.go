package e2e

import "testing"

// TestRevocationsAcrossReplicas: two replicas on one PostgreSQL, each remembering the token
// validations it made. A role revoked, a token revoked, a user disabled through replica a
// refuses the very next request of that token on replica b, which had just served it.
func TestRevocationsAcrossReplicas(t *testing.T) {
	t.Parallel()
	rs := replicas(t, 2)
	a := rs[0]
	admin := map[string]string{"X-Auth-Token": a.token}
	want := func(status int, method, path string, body any) map[string]any {
		t.Helper()
		code, out := a.raw(method, path, body, admin)
		if code != status {
			t.Fatalf("%s %s on a: %d, want %d: %v", method, path, code, status, out)
		}
		return out
	}
	const password = "Rita-password-12"
	user := want(201, "POST", "/v3/users", map[string]any{"user": map[string]any{"name": "rita", "password": password}})
	id := user["user"].(map[string]any)["id"].(string)
	role := "/v3/projects/" + a.project + "/users/" + id + "/roles/reader"
	want(204, "PUT", role, nil)

	// rita works through replica b only.
	rita := *rs[1]
	login := func() {
		t.Helper()
		rita.loginAs("rita", password)
		for range 3 { // remembered by b after the first
			if code, out := rita.call("GET", "/failed-tasks", nil); code != 200 {
				t.Fatalf("rita's list on b: %d %v", code, out)
			}
		}
	}
	refused := func(status int, code string) {
		t.Helper()
		got, out := rita.call("GET", "/failed-tasks", nil)
		if got != status || out["error_code"] != code {
			t.Fatalf("rita's next list on b: %d %v, want %d %s", got, out, status, code)
		}
	}

	login()
	want(204, "DELETE", role, nil)
	refused(403, "KPS.9006")
	want(204, "PUT", role, nil)
	if code, _ := rita.call("GET", "/failed-tasks", nil); code != 200 {
		t.Fatalf("after the role was granted again: %d", code)
	}

	login()
	if code, out := a.raw("DELETE", "/v3/auth/tokens", nil, map[string]string{"X-Auth-Token": a.token, "X-Subject-Token": rita.token}); code != 204 {
		t.Fatalf("revoking rita's token on a: %d %v", code, out)
	}
	refused(401, "KPS.6102")

	login()
	want(200, "PATCH", "/v3/users/"+id, map[string]any{"user": map[string]any{"enabled": false}})
	refused(401, "KPS.6102")
}
