package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/openkps/kps"
)

// TestPublicKeyCommentControlCharacters (docs/SECURITY.md 6.4): a public key whose comment holds a
// control character is refused at import with 400 KPS.6009 on every way in — create/import,
// batch import (the item fails), the Nova create of every tree — and nothing is stored; a tab
// inside the comment and printable non-ASCII text stay acceptable.
func TestPublicKeyCommentControlCharacters(t *testing.T) {
	t.Parallel()
	s := setup(t)
	names := func() string {
		var out []string
		for _, it := range s.must(200, "GET", "/keypairs", nil)["keypairs"].([]any) {
			out = append(out, str(it.(map[string]any)["keypair"].(map[string]any)["name"]))
		}
		sort.Strings(out)
		return strings.Join(out, ",")
	}
	bad := map[string]string{
		"escape":    "ops\x1b[2J\x1b[Hroot@host",
		"nul":       "a\x00b",
		"backspace": "deploy\b\b\b\b\b\broot",
		"del":       "x\x7f",
		"nel":       "x\u0085y",
		"csi":       "x\u009b31m",
		"bell":      "\x07",
	}
	for what, comment := range bad {
		line := ed25519Line(t, comment)
		s.wantError(400, "KPS.6009", "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "c-" + what, "public_key": line}})
		s.wantError(400, "KPS.6009", "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "h-" + what, "public_key": line,
			"key_protection": map[string]any{"private_key": privatePEM(t), "encryption": map[string]any{"type": "default"}}}})
		out := s.must(200, "POST", "/keypairs/batch-import", []any{
			map[string]any{"keypair": map[string]any{"name": "b-" + what, "public_key": line}},
			map[string]any{"keypair": map[string]any{"name": "ok-" + what, "public_key": ed25519Line(t, "fine")}},
		})
		failed := out["failed_keypairs"].([]any)
		if len(failed) != 1 || len(out["succeeded_keypairs"].([]any)) != 1 {
			t.Fatalf("%s: batch import %v", what, out)
		}
		if f := failed[0].(map[string]any); f["keypair_name"] != "b-"+what || !strings.HasPrefix(str(f["failed_reason"]), "KPS.6009: ") {
			t.Fatalf("%s: batch failure %v", what, f)
		}
		for _, path := range []string{"/compute/v2.1/" + s.project + "/os-keypairs", "/compute/v2/" + s.project + "/os-keypairs",
			"/v2.1/" + s.project + "/os-keypairs", "/compute/v2.1/os-keypairs"} {
			r := s.nova("POST", path, "2.2", kp(map[string]any{"name": "n-" + what, "public_key": line})).want(t, 400, "badRequest")
			if fault := obj(r.body["badRequest"]); fault["error_code"] != "KPS.6009" || !strings.Contains(str(fault["message"]), "control character") {
				t.Fatalf("%s: Nova %s: %s", what, path, r.raw)
			}
		}
	}
	want := "ok-backspace,ok-bell,ok-csi,ok-del,ok-escape,ok-nel,ok-nul"
	if got := names(); got != want {
		t.Fatalf("key pairs after the refusals: %s, want %s", got, want)
	}
	// Still accepted: a tab inside the comment, non-ASCII letters.
	for name, comment := range map[string]string{"tabbed": "alice\tlaptop", "letters": "ключ-für-ünï 🔑"} {
		line := ed25519Line(t, comment)
		got := s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": name, "public_key": line}})
		if got["keypair"].(map[string]any)["public_key"] != line {
			t.Fatalf("%s: stored %v", name, got)
		}
		s.nova("POST", "/compute/v2.1/"+s.project+"/os-keypairs", "2.2", kp(map[string]any{"name": "n" + name, "public_key": line})).want(t, 201, "")
	}
}

// TestNovaUserIDOtherDomain (docs/SECURITY.md 6.3): with two domains, the admin of one may not
// use Nova's user_id for a user of the other. A create for them is refused exactly as one for
// an unknown user (400 badRequest, KPS.6003) and stores nothing; list, show and delete answer
// as for an unknown user and touch nothing of the other domain. Users of the admin's own
// domain keep working.
func TestNovaUserIDOtherDomain(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	st := s.main.Store()
	def, err := st.DomainByName(ctx, "Default")
	if err != nil {
		t.Fatal(err)
	}
	other := &kps.Domain{Name: "other", Enabled: true}
	otherProject, err := st.CreateDomain(ctx, other, "local-1")
	if err != nil {
		t.Fatal(err)
	}
	stranger := s.addTenant(other, otherProject.ID, "stranger")
	otherAdmin := s.addTenant(other, otherProject.ID, "other-admin").service
	if err := st.GrantRole(ctx, kps.RoleAssignment{UserID: s.userIDOfDomain(other.ID, "other-admin"), Role: kps.RoleAdmin, ProjectID: otherProject.ID}); err != nil {
		t.Fatal(err)
	}
	otherAdmin.token = s.tokenOf(other.Name, "other-admin", "other-admin-password", otherProject.ID) // with the admin role
	colleague := s.addTenant(def, s.project, "colleague")
	strangerID, colleagueID, adminID := s.userIDOfDomain(other.ID, "stranger"), s.userIDOf("colleague"), s.userIDOf("admin")
	const unknownID = "0123456789abcdef0123456789abcdef"

	P := "/compute/v2.1/" + s.project + "/os-keypairs"
	OP := "/compute/v2.1/" + otherProject.ID + "/os-keypairs"
	stranger.nova("POST", OP, "2.10", kp(map[string]any{"name": "theirs", "public_key": novaP256})).want(t, 201, "")
	s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "shared", "scope": "domain"}})
	s.nova("POST", P, "2.10", kp(map[string]any{"name": "admins-own", "public_key": novaEd25519})).want(t, 201, "")

	// The answer for a user of the other domain is the answer for an unknown user, word for word
	// but the ID.
	same := func(what string, foreign, unknown novaResponse, foreignID string) {
		t.Helper()
		if foreign.status != unknown.status || strings.ReplaceAll(string(foreign.raw), foreignID, unknownID) != string(unknown.raw) {
			t.Fatalf("%s: user of another domain %d %s, unknown user %d %s", what, foreign.status, foreign.raw, unknown.status, unknown.raw)
		}
	}
	create := func(c *service, path, id, name string) novaResponse {
		return c.nova("POST", path, "2.10", kp(map[string]any{"name": name, "public_key": novaEd25519, "user_id": id}))
	}
	r := create(s, P, strangerID, "gift").want(t, 400, "badRequest")
	if obj(r.body["badRequest"])["error_code"] != "KPS.6003" {
		t.Fatalf("create for a user of another domain: %s", r.raw)
	}
	same("create", r, create(s, P, unknownID, "gift"), strangerID)
	for _, q := range []string{"", "?user_id=" + strangerID} {
		s.nova("GET", P+"/gift"+q, "2.10", nil).want(t, 404, "itemNotFound")
	}
	same("list", s.nova("GET", P+"?user_id="+strangerID, "2.10", nil).want(t, 200, ""),
		s.nova("GET", P+"?user_id="+unknownID, "2.10", nil).want(t, 200, ""), strangerID)
	same("show", s.nova("GET", P+"/theirs?user_id="+strangerID, "2.10", nil).want(t, 404, "itemNotFound"),
		s.nova("GET", P+"/theirs?user_id="+unknownID, "2.10", nil), strangerID)
	same("delete", s.nova("DELETE", P+"/theirs?user_id="+strangerID, "2.10", nil).want(t, 404, "itemNotFound"),
		s.nova("DELETE", P+"/theirs?user_id="+unknownID, "2.10", nil), strangerID)
	if got := stranger.nova("GET", OP+"/theirs", "2.10", nil).want(t, 200, "").keypair(); got["user_id"] != strangerID {
		t.Fatalf("the stranger's key pair changed: %v", got)
	}
	// The other way round: the other domain's admin names the operator admin.
	r = create(otherAdmin, OP, adminID, "gift2").want(t, 400, "badRequest")
	same("create from the other domain", r, create(otherAdmin, OP, unknownID, "gift2"), adminID)
	otherAdmin.nova("GET", OP+"/gift2", "2.10", nil).want(t, 404, "itemNotFound")

	// Users of one's own domain still work, both ways.
	if got := create(s, P, colleagueID, "for-colleague").want(t, 201, "").keypair(); got["user_id"] != colleagueID {
		t.Fatalf("create for a colleague: %v", got)
	}
	colleague.nova("GET", P+"/for-colleague", "2.10", nil).want(t, 200, "")
	if got := create(otherAdmin, OP, strangerID, "for-stranger").want(t, 201, "").keypair(); got["user_id"] != strangerID {
		t.Fatalf("create for a user of the admin's domain: %v", got)
	}
}

// tokenOf logs a user of the named domain in with a token scoped to projectID.
func (s *service) tokenOf(domain, user, password, projectID string) string {
	s.t.Helper()
	body := `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"` + user + `","domain":{"name":"` + domain +
		`"},"password":"` + password + `"}}},"scope":{"project":{"id":"` + projectID + `"}}}}`
	resp, err := apiClient.Post(s.base+"/v3/auth/tokens", "application/json", strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		s.t.Fatalf("login of %s: %d", user, resp.StatusCode)
	}
	return resp.Header.Get("X-Subject-Token")
}

// userIDOfDomain is the ID of a user of the given domain.
func (s *service) userIDOfDomain(domainID, name string) string {
	s.t.Helper()
	u, err := s.main.Store().UserByName(context.Background(), domainID, name)
	if err != nil || u == nil {
		s.t.Fatalf("user %s: %v", name, err)
	}
	return u.ID
}

// TestRepeatedQueryParameter (docs/SECURITY.md 6.5): a query parameter that a route reads,
// given more than once, is 400 with the route family's error body (KPS, identity, Nova) and a
// KPS code — never silently one of the values — on every route that reads query parameters,
// KPS, identity and Nova alike. Repeating a parameter the route does not read changes nothing.
func TestRepeatedQueryParameter(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "k1"}})
	s.nova("POST", "/compute/v2.1/"+s.project+"/os-keypairs", "2.10", kp(map[string]any{"name": "victim", "public_key": novaP256})).want(t, 201, "")
	adminID := s.userIDOf("admin")
	login := `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","domain":{"name":"Default"},` +
		`"password":"admin-password-for-tests"}}},"scope":{"project":{"name":"local-1","domain":{"name":"Default"}}}}}`

	const (
		kpsBody      = "kps"
		identityBody = "identity"
		novaBody     = "nova"
	)
	P, N := "/v3/"+s.project, "/compute/v2.1/"+s.project+"/os-keypairs"
	tests := []struct {
		method, path, version, body string
		status                      int
		family, code                string
	}{
		{"GET", P + "/keypairs?limit=1&limit=x", "", "", 400, kpsBody, "KPS.6005"},
		{"GET", P + "/keypairs?limit=1&limit=1", "", "", 400, kpsBody, "KPS.6005"},
		{"GET", P + "/keypairs?marker=a&marker=b", "", "", 400, kpsBody, "KPS.6007"},
		{"GET", P + "/keypairs?marker=&marker=k1", "", "", 400, kpsBody, "KPS.6007"},
		{"GET", P + "/servers?limit=5&limit=1", "", "", 400, kpsBody, "KPS.6005"},
		{"GET", P + "/servers?offset=0&offset=1", "", "", 400, kpsBody, "KPS.6006"},
		{"GET", P + "/running-tasks?limit=1000&limit=1", "", "", 400, kpsBody, "KPS.6005"},
		{"GET", P + "/failed-tasks?offset=0&limit=1&offset=7", "", "", 400, kpsBody, "KPS.6006"},
		{"GET", P + "/failed-tasks?limit=1000&offset=2147483647&limit=abc", "", "", 400, kpsBody, "KPS.6005"},
		{"GET", P + "/keypairs?unread=1&unread=2", "", "", 200, "", ""},
		{"GET", P + "/failed-tasks?limit=2&x=1&x=2", "", "", 200, "", ""},

		{"GET", "/v3/projects?name=local-1&name=other", "", "", 400, identityBody, "KPS.6003"},
		{"GET", "/v3/projects?domain_id=a&domain_id=b", "", "", 400, identityBody, "KPS.6003"},
		{"GET", "/v3/projects?parent_id=a&parent_id=b", "", "", 400, identityBody, "KPS.6003"},
		{"GET", "/v3/projects?enabled=true&enabled=false", "", "", 400, identityBody, "KPS.6003"},
		{"GET", "/v3/projects?is_domain=false&is_domain=true", "", "", 400, identityBody, "KPS.6003"},
		{"GET", "/v3/projects?page=1&page=2", "", "", 400, identityBody, "KPS.6003"},
		{"GET", "/v3/projects?per_page=1&per_page=1", "", "", 400, identityBody, "KPS.6003"},
		{"GET", "/v3/users?name=admin&name=root", "", "", 400, identityBody, "KPS.6003"},
		{"GET", "/v3/users?enabled=true&enabled=true", "", "", 400, identityBody, "KPS.6003"},
		{"GET", "/v3/domains?name=Default&name=other", "", "", 400, identityBody, "KPS.6003"},
		{"GET", "/v3.0/OS-CREDENTIAL/credentials?user_id=" + adminID + "&user_id=x", "", "", 400, identityBody, "KPS.6003"},
		{"GET", "/v3/auth/tokens?nocatalog&nocatalog=1", "", "", 400, identityBody, "KPS.6003"},
		{"POST", "/v3/auth/tokens?nocatalog&nocatalog", "", login, 400, identityBody, "KPS.6003"},
		{"GET", "/v3/projects?unread=1&unread=2", "", "", 200, "", ""},

		{"GET", N + "?limit=1&limit=5", "2.35", "", 400, novaBody, "KPS.6005"},
		{"GET", N + "?marker=a&marker=victim", "2.35", "", 400, novaBody, "KPS.6007"},
		{"GET", N + "?user_id=" + adminID + "&user_id=x", "2.10", "", 400, novaBody, "KPS.6003"},
		{"GET", "/compute/v2.1/os-keypairs?user_id=" + adminID + "&user_id=" + adminID, "2.92", "", 400, novaBody, "KPS.6003"},
		{"GET", "/v2.1/" + s.project + "/os-keypairs?limit=1&limit=2", "2.75", "", 400, novaBody, "KPS.6005"},
		{"GET", N + "/victim?user_id=" + adminID + "&user_id=x", "2.10", "", 400, novaBody, "KPS.6003"},
		{"DELETE", N + "/victim?user_id=x&user_id=" + adminID, "2.10", "", 400, novaBody, "KPS.6003"},
		// Parameters a microversion does not read are not read, repeated or not.
		{"GET", N + "?user_id=a&user_id=b", "2.9", "", 200, "", ""},
		{"GET", N + "?limit=1&limit=x", "2.34", "", 200, "", ""},
		{"GET", "/compute/v2/" + s.project + "/os-keypairs?user_id=a&user_id=b&limit=1&limit=2", "", "", 200, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, s.base+tt.path, strings.NewReader(tt.body))
			if tt.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			req.Header.Set("X-Auth-Token", s.token)
			req.Header.Set("X-Subject-Token", s.token)
			if tt.version != "" {
				req.Header.Set("X-OpenStack-Nova-API-Version", tt.version)
			}
			resp, err := apiClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, raw)
			}
			if tt.status < 400 {
				return
			}
			if tt.method == "POST" && resp.Header.Get("X-Subject-Token") != "" {
				t.Fatal("a token was issued")
			}
			var body map[string]any
			if err := json.Unmarshal(raw, &body); err != nil {
				t.Fatalf("body %q: %v", raw, err)
			}
			var code, msg any
			switch tt.family {
			case kpsBody:
				if len(body) != 2 {
					t.Fatalf("KPS body %s", raw)
				}
				code, msg = body["error_code"], body["error_msg"]
			case identityBody:
				if e := obj(body["error"]); e["code"] != float64(400) || e["message"] != body["error_msg"] {
					t.Fatalf("identity body %s", raw)
				}
				code, msg = body["error_code"], body["error_msg"]
			case novaBody:
				fault := obj(body["badRequest"])
				if len(body) != 1 || fault["code"] != float64(400) {
					t.Fatalf("Nova body %s", raw)
				}
				code, msg = fault["error_code"], fault["message"]
			}
			if code != tt.code || !strings.Contains(str(msg), "more than once") && !strings.HasPrefix(str(msg), "Invalid parameter: ") {
				t.Fatalf("code %v message %v, want %s: %s", code, msg, tt.code, raw)
			}
			u, _ := url.Parse(tt.path)
			for name, vs := range u.Query() {
				if len(vs) > 1 && !strings.Contains(str(msg), name) {
					t.Errorf("message %q does not name %s", msg, name)
				}
			}
		})
	}
	// The refused delete deleted nothing.
	s.nova("GET", N+"/victim", "2.10", nil).want(t, 200, "")
}
