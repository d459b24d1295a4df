package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/iam"
	"golang.org/x/crypto/ssh"
)

// tenant is one user of one project, with a token scoped to it and an access key.
type tenant struct {
	*service
	name   string
	ak, sk string
}

// addTenant creates a user in domain with the member role on project, logs it in with a token
// scoped to that project and gives it an access key.
func (s *service) addTenant(domain *kps.Domain, projectID, name string) *tenant {
	s.t.Helper()
	ctx := context.Background()
	st := s.main.Store()
	hash, err := iam.HashPassword(name + "-password")
	if err != nil {
		s.t.Fatal(err)
	}
	u := &kps.User{Name: name, DomainID: domain.ID, Enabled: true, PasswordHash: hash}
	if err := st.CreateUser(ctx, u); err != nil {
		s.t.Fatal(err)
	}
	if err := st.GrantRole(ctx, kps.RoleAssignment{UserID: u.ID, Role: kps.RoleMember, ProjectID: projectID}); err != nil {
		s.t.Fatal(err)
	}
	body := `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"` + name + `","domain":{"name":"` +
		domain.Name + `"},"password":"` + name + `-password"}}},"scope":{"project":{"id":"` + projectID + `"}}}}`
	resp, err := apiClient.Post(s.base+"/v3/auth/tokens", "application/json", strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		s.t.Fatalf("login of %s: %d", name, resp.StatusCode)
	}
	b := make([]byte, 20)
	rand.Read(b)
	ak := strings.ToUpper(hex.EncodeToString(b[:10]))
	sk := hex.EncodeToString(b[10:]) + hex.EncodeToString(b[:10])
	sealed, err := s.main.Sealer().Seal([]byte(sk), kps.AccessKeyAAD(ak))
	if err != nil {
		s.t.Fatal(err)
	}
	if err := st.CreateAccessKey(ctx, &kps.AccessKey{Access: ak, UserID: u.ID, Secret: sealed, Status: kps.AccessKeyActive}); err != nil {
		s.t.Fatal(err)
	}
	return &tenant{service: &service{t: s.t, base: s.base, main: s.main, token: resp.Header.Get("X-Subject-Token"), project: projectID},
		name: name, ak: ak, sk: sk}
}

// as returns the tenant's client aimed at another project's path, with its own credentials.
func (tn *tenant) at(projectID string) *service {
	c := *tn.service
	c.project = projectID
	return &c
}

// privatePEM is a fresh ed25519 private key in OpenSSH PEM form.
func privatePEM(t *testing.T) string {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block))
}

// TestIsolation proves that no read or write crosses a project, a domain or a user-scoped key
// pair, through every KPS route, with a token and with AK/SK.
func TestIsolation(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	st := s.main.Store()
	def, err := st.DomainByName(ctx, "Default")
	if err != nil {
		t.Fatal(err)
	}
	second := &kps.Project{Name: "second", DomainID: def.ID, Enabled: true}
	if err := st.CreateProject(ctx, second); err != nil {
		t.Fatal(err)
	}
	other := &kps.Domain{Name: "other", Enabled: true}
	otherProject, err := st.CreateDomain(ctx, other, "local-1")
	if err != nil {
		t.Fatal(err)
	}

	owner := s.addTenant(def, s.project, "owner")
	sibling := s.addTenant(def, s.project, "sibling") // same project, another user
	neighbour := s.addTenant(def, second.ID, "neighbour")
	stranger := s.addTenant(other, otherProject.ID, "stranger")

	// The owner's state: a user-scoped key pair, a server with a
	// credential (the admin registers it), and a failed task.
	owner.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "mine"}})
	s.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"id": "box", "address": "127.0.0.1",
		"port": closedPort(t), "credential": map[string]any{"type": "password", "key": "pw"}}})
	taskID := str(owner.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "mine", "server": map[string]any{"id": "box"}})["task_id"])
	if got := owner.waitTask(taskID); !strings.HasPrefix(got, "FAILED") {
		t.Fatalf("task %s: %s", taskID, got)
	}
	snapshot := func() string {
		return jsonText(owner.must(200, "GET", "/keypairs", nil)) + jsonText(owner.must(200, "GET", "/servers", nil)) +
			jsonText(owner.must(200, "GET", "/failed-tasks", nil)) + jsonText(owner.must(200, "GET", "/tasks/"+taskID, nil)) +
			jsonText(owner.must(200, "GET", "/keypairs/mine", nil))
	}
	before := snapshot()

	type call struct {
		method, path string
		body         any
	}
	every := []call{
		{"GET", "/keypairs", nil},
		{"POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "intruder"}}},
		{"GET", "/keypairs/mine", nil},
		{"PUT", "/keypairs/mine", map[string]any{"keypair": map[string]any{"description": "pwned"}}},
		{"DELETE", "/keypairs/mine", nil},
		{"POST", "/keypairs/batch-import", []any{map[string]any{"keypair": map[string]any{"name": "intruder2", "public_key": ed25519Line(t, "x")}}}},
		{"POST", "/keypairs/private-key/import", map[string]any{"keypair": map[string]any{"name": "mine", "key_protection": map[string]any{"private_key": "x", "encryption": map[string]any{"type": "default"}}}}},
		{"POST", "/keypairs/private-key/export", map[string]any{"keypair": map[string]any{"name": "mine"}}},
		{"POST", "/keypairs/private-key/batch-export", []any{map[string]any{"keypair": map[string]any{"name": "mine"}}}},
		{"DELETE", "/keypairs/mine/private-key", nil},
		{"POST", "/keypairs/associate", map[string]any{"keypair_name": "mine", "server": map[string]any{"id": "box"}}},
		{"POST", "/keypairs/batch-associate", map[string]any{"batch_keypairs": []any{map[string]any{"keypair_name": "mine", "server": map[string]any{"id": "box"}}}}},
		{"POST", "/keypairs/disassociate", map[string]any{"server": map[string]any{"id": "box"}}},
		{"GET", "/tasks/" + taskID, nil},
		{"GET", "/running-tasks", nil},
		{"GET", "/failed-tasks", nil},
		{"DELETE", "/failed-tasks/" + taskID, nil},
		{"DELETE", "/failed-tasks", nil},
		{"POST", "/servers", map[string]any{"server": map[string]any{"id": "intruder", "address": "h"}}},
		{"GET", "/servers", nil},
		{"GET", "/servers/box", nil},
		{"PUT", "/servers/box", map[string]any{"server": map[string]any{"address": "evil.example"}}},
		{"DELETE", "/servers/box", nil},
	}

	// Across projects and domains: every route on the owner's project path is refused, with
	// the caller's token and with its access key.
	for _, x := range []*tenant{neighbour, stranger} {
		into := x.at(s.project)
		for _, c := range every {
			got, body := into.call(c.method, c.path, c.body)
			if got != 403 {
				t.Errorf("%s token: %s %s on the owner's project: %d %v", x.name, c.method, c.path, got, body)
			}
			var raw any
			if c.body != nil {
				raw = c.body
			}
			if got, code := signedCall(t, into, x.ak, x.sk, c.method, c.path, raw); got != 403 {
				t.Errorf("%s AK/SK: %s %s on the owner's project: %d %s", x.name, c.method, c.path, got, code)
			}
		}
		// In its own project the caller finds none of the owner's things.
		for _, c := range []call{{"GET", "/keypairs/mine", nil}, {"GET", "/servers/box", nil}, {"GET", "/tasks/" + taskID, nil},
			{"DELETE", "/failed-tasks/" + taskID, nil}, {"POST", "/keypairs/private-key/export", map[string]any{"keypair": map[string]any{"name": "mine"}}}} {
			if got, body := x.call(c.method, c.path, c.body); got != 404 {
				t.Errorf("%s: %s %s in its own project: %d %v", x.name, c.method, c.path, got, body)
			}
		}
		for _, list := range []string{"/keypairs", "/servers", "/failed-tasks", "/running-tasks"} {
			if out := jsonText(x.must(200, "GET", list, nil)); strings.Contains(out, "mine") || strings.Contains(out, "box") || strings.Contains(out, taskID) {
				t.Errorf("%s: %s shows the owner's data: %s", x.name, list, out)
			}
		}
	}

	// Within the project, the owner's user-scoped key pair is invisible to another user, by
	// token and by access key; the project's servers are shared by design.
	for _, c := range []call{
		{"GET", "/keypairs/mine", nil},
		{"PUT", "/keypairs/mine", map[string]any{"keypair": map[string]any{"description": "pwned"}}},
		{"DELETE", "/keypairs/mine", nil},
		{"POST", "/keypairs/private-key/export", map[string]any{"keypair": map[string]any{"name": "mine"}}},
		{"POST", "/keypairs/private-key/import", map[string]any{"keypair": map[string]any{"name": "mine", "key_protection": map[string]any{"private_key": privatePEM(t), "encryption": map[string]any{"type": "default"}}}}},
		{"DELETE", "/keypairs/mine/private-key", nil},
		{"POST", "/keypairs/associate", map[string]any{"keypair_name": "mine", "server": map[string]any{"id": "box"}}},
	} {
		if got, body := sibling.call(c.method, c.path, c.body); got != 404 || body["error_code"] != kps.ErrKeyPairNotFound {
			t.Errorf("sibling token: %s %s: %d %v", c.method, c.path, got, body)
		}
		if got, code := signedCall(t, sibling.service, sibling.ak, sibling.sk, c.method, c.path, c.body); got != 404 || code != kps.ErrKeyPairNotFound {
			t.Errorf("sibling AK/SK: %s %s: %d %s", c.method, c.path, got, code)
		}
	}
	if out := jsonText(sibling.must(200, "GET", "/keypairs", nil)); strings.Contains(out, "mine") {
		t.Errorf("sibling lists the owner's key pair: %s", out)
	}

	// Identity routes: another domain's projects are invisible, and nobody but the owner (or
	// an admin) reads, changes or deletes the owner's access key.
	for _, x := range []*tenant{sibling, neighbour, stranger} {
		auth := map[string]string{"X-Auth-Token": x.token}
		for _, c := range []call{
			{"GET", "/v3.0/OS-CREDENTIAL/credentials/" + owner.ak, nil},
			{"PUT", "/v3.0/OS-CREDENTIAL/credentials/" + owner.ak, map[string]any{"credential": map[string]any{"status": "inactive"}}},
			{"DELETE", "/v3.0/OS-CREDENTIAL/credentials/" + owner.ak, nil},
		} {
			if got, body := x.raw(c.method, c.path, c.body, auth); got != 403 && got != 404 {
				t.Errorf("%s: %s %s: %d %v", x.name, c.method, c.path, got, body)
			}
		}
		if out := jsonText(x.raw2(t, "GET", "/v3.0/OS-CREDENTIAL/credentials", auth)); strings.Contains(out, owner.ak) {
			t.Errorf("%s lists the owner's access key: %s", x.name, out)
		}
	}
	for _, pid := range []string{s.project, second.ID} {
		if got, body := stranger.raw("GET", "/v3/projects/"+pid, nil, map[string]string{"X-Auth-Token": stranger.token}); got != 403 {
			t.Errorf("stranger reads project %s: %d %v", pid, got, body)
		}
	}
	if out := jsonText(stranger.raw2(t, "GET", "/v3/projects", map[string]string{"X-Auth-Token": stranger.token})); strings.Contains(out, s.project) || strings.Contains(out, second.ID) {
		t.Errorf("stranger lists another domain's projects: %s", out)
	}
	if got, code := signedCall(t, owner.service, owner.ak, owner.sk, "GET", "/keypairs", nil); got != 200 {
		t.Errorf("the owner's access key stopped working: %d %s", got, code)
	}

	if after := snapshot(); after != before {
		t.Errorf("the owner's state changed:\nbefore %s\nafter  %s", before, after)
	}
}

// raw2 is raw for a call that must succeed; it returns the body.
func (s *service) raw2(t *testing.T, method, path string, headers map[string]string) map[string]any {
	t.Helper()
	got, body := s.raw(method, path, nil, headers)
	if got != 200 {
		t.Fatalf("%s %s: %d %v", method, path, got, body)
	}
	return body
}

// novaAs sends a Nova request (microversion 2.10) as x, with its token or, when signed, with
// its access key; it returns the status and the raw body.
func novaAs(t *testing.T, x *tenant, signed bool, method, path string, body any) (int, string) {
	t.Helper()
	var raw []byte
	if body != nil {
		raw = []byte(jsonText(body))
	}
	req, _ := http.NewRequest(method, x.base+path, bytes.NewReader(raw))
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("X-OpenStack-Nova-API-Version", "2.10")
	if signed {
		req.Header.Set("X-Project-Id", x.project)
		if err := iam.Sign(req, raw, x.ak, x.sk, time.Now()); err != nil {
			t.Fatal(err)
		}
	} else {
		req.Header.Set("X-Auth-Token", x.token)
	}
	resp, err := apiClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// TestIsolationNovaAndIdentity extends TestIsolation to the Nova key pair routes (all four
// trees, with and without the project in the path, Nova's admin-only user_id parameter) and to
// the identity routes that act on another user, project, domain, token or access key: with two
// domains, three projects and four users, by token and by AK/SK, nothing of the owner is read,
// changed or deleted, and the owner's credentials keep working.
func TestIsolationNovaAndIdentity(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	st := s.main.Store()
	def, err := st.DomainByName(ctx, "Default")
	if err != nil {
		t.Fatal(err)
	}
	second := &kps.Project{Name: "second", DomainID: def.ID, Enabled: true}
	if err := st.CreateProject(ctx, second); err != nil {
		t.Fatal(err)
	}
	other := &kps.Domain{Name: "other", Enabled: true}
	otherProject, err := st.CreateDomain(ctx, other, "local-1")
	if err != nil {
		t.Fatal(err)
	}
	owner := s.addTenant(def, s.project, "owner")
	sibling := s.addTenant(def, s.project, "sibling")
	neighbour := s.addTenant(def, second.ID, "neighbour")
	stranger := s.addTenant(other, otherProject.ID, "stranger")
	ownerUser, err := st.UserByName(ctx, def.ID, "owner")
	if err != nil {
		t.Fatal(err)
	}
	ownerID := ownerUser.ID

	// The owner's Nova key pair, created by token and by AK/SK. A leak is either public key
	// (its base64 blob) in an answer to someone else.
	nkPub, nk2Pub := ed25519Line(t, "nk"), ed25519Line(t, "nk2")
	leaked := func(out string) bool {
		return strings.Contains(out, strings.Fields(nkPub)[1]) || strings.Contains(out, strings.Fields(nk2Pub)[1])
	}
	if code, out := novaAs(t, owner, false, "POST", "/compute/v2.1/"+s.project+"/os-keypairs", kp(map[string]any{"name": "nk", "public_key": nkPub})); code != 201 {
		t.Fatalf("owner's Nova create: %d %s", code, out)
	}
	if code, out := novaAs(t, owner, true, "POST", "/v2.1/"+s.project+"/os-keypairs", kp(map[string]any{"name": "nk-signed", "public_key": nk2Pub})); code != 200 && code != 201 {
		t.Fatalf("owner's signed Nova create: %d %s", code, out)
	}
	ownerView := func() string {
		_, a := novaAs(t, owner, false, "GET", "/compute/v2.1/"+s.project+"/os-keypairs/nk", nil)
		_, b := novaAs(t, owner, false, "GET", "/compute/v2.1/"+s.project+"/os-keypairs/nk-signed", nil)
		return a + b
	}
	before := ownerView()
	if !strings.Contains(before, `"name":"nk"`) || !strings.Contains(before, `"name":"nk-signed"`) {
		t.Fatalf("owner's view: %s", before)
	}

	trees := []string{"/compute/v2.1/", "/compute/v2/", "/v2.1/", "/v2/"}
	for _, x := range []*tenant{sibling, neighbour, stranger} {
		for _, signed := range []bool{false, true} {
			how := map[bool]string{false: "token", true: "AK/SK"}[signed]
			refused := func(method, path string, body any) {
				t.Helper()
				code, out := novaAs(t, x, signed, method, path, body)
				if code < 400 || code >= 500 || leaked(out) {
					t.Errorf("%s %s: %s %s: %d %s", x.name, how, method, path, code, out)
				}
			}
			for _, tree := range trees {
				owners := tree + s.project + "/os-keypairs"
				if x != sibling {
					refused("GET", owners, nil)
					refused("POST", owners, kp(map[string]any{"name": "intruder", "public_key": ed25519Line(t, "x")}))
				}
				refused("GET", owners+"/nk", nil)
				refused("DELETE", owners+"/nk", nil)
				refused("GET", owners+"/nk?user_id="+ownerID, nil)
				refused("DELETE", owners+"/nk-signed?user_id="+ownerID, nil)
				if strings.HasPrefix(tree, "/compute/v2/") || strings.HasPrefix(tree, "/v2/") {
					// The legacy v2.0 API has no microversions: user_id is ignored and the
					// caller's own (empty) list is the answer.
					if code, out := novaAs(t, x, signed, "GET", owners+"?user_id="+ownerID, nil); (code != 200 && code < 400) || code >= 500 || leaked(out) {
						t.Errorf("%s %s: GET %s?user_id=: %d %s", x.name, how, owners, code, out)
					}
				} else {
					// user_id of another user without the admin role: 403 (nova-keypairs.md §5.1.5).
					if code, out := novaAs(t, x, signed, "GET", owners+"?user_id="+ownerID, nil); (x == sibling && code != 403) || code < 400 || code >= 500 || leaked(out) {
						t.Errorf("%s %s: GET %s?user_id=owner: %d %s", x.name, how, owners, code, out)
					}
				}
				// In its own project (and, for the sibling, the owner's own project: Nova key
				// pairs belong to their user) the caller's list and lookups show nothing.
				mine := tree + x.project + "/os-keypairs"
				if code, out := novaAs(t, x, signed, "GET", mine, nil); code != 200 || leaked(out) {
					t.Errorf("%s %s: GET %s: %d %s", x.name, how, mine, code, out)
				}
				refused("GET", mine+"/nk", nil)
			}
			if !signed {
				// The project-less form, scoped by the token.
				refused("GET", "/compute/v2.1/os-keypairs/nk", nil)
				if code, out := novaAs(t, x, false, "GET", "/compute/v2.1/os-keypairs", nil); code != 200 || leaked(out) {
					t.Errorf("%s: project-less Nova list: %d %s", x.name, code, out)
				}
			}
		}
	}

	// Identity routes acting on the owner, its project, its domain, its token and its keys.
	tr := newTranscript()
	for _, x := range []*tenant{sibling, neighbour, stranger} {
		byToken := as(t, x.service, tr)
		for _, c := range []*idClient{byToken, byToken.withKey(x.ak, x.sk, "")} {
			how := map[bool]string{false: "token", true: "AK/SK"}[c.ak != ""]
			xID := str(obj(obj(byToken.want(200, "GET", "/v3/auth/tokens", nil, "X-Subject-Token", x.token)["token"])["user"])["id"])
			for _, r := range []struct {
				method, path string
				body         any
				headers      []string
			}{
				{"GET", "/v3/users/" + ownerID + "/projects", nil, nil},
				{"PATCH", "/v3/users/" + ownerID, map[string]any{"user": map[string]any{"password": "hijacked-password-1"}}, nil},
				{"PATCH", "/v3/users/" + ownerID, map[string]any{"user": map[string]any{"enabled": false}}, nil},
				{"POST", "/v3/users/" + ownerID + "/password", map[string]any{"user": map[string]any{"original_password": "owner-password", "password": "hijacked-password-2"}}, nil},
				{"DELETE", "/v3/users/" + ownerID, nil, nil},
				{"PUT", "/v3/projects/" + s.project + "/users/" + xID + "/roles/admin", nil, nil},
				{"DELETE", "/v3/projects/" + s.project + "/users/" + ownerID + "/roles/member", nil, nil},
				{"PUT", "/v3/domains/" + def.ID + "/users/" + xID + "/roles/admin", nil, nil},
				{"PATCH", "/v3/projects/" + s.project, map[string]any{"project": map[string]any{"enabled": false}}, nil},
				{"DELETE", "/v3/projects/" + s.project, nil, nil},
				{"PATCH", "/v3/domains/" + def.ID, map[string]any{"domain": map[string]any{"enabled": false}}, nil},
				{"DELETE", "/v3/domains/" + def.ID, nil, nil},
				{"GET", "/v3/auth/tokens", nil, []string{"X-Subject-Token", owner.token}},
				{"HEAD", "/v3/auth/tokens", nil, []string{"X-Subject-Token", owner.token}},
				{"DELETE", "/v3/auth/tokens", nil, []string{"X-Subject-Token", owner.token}},
				{"POST", "/v3.0/OS-CREDENTIAL/credentials", map[string]any{"credential": map[string]any{"user_id": ownerID}}, nil},
				{"POST", "/v3.0/OS-CREDENTIAL/securitytokens", map[string]any{"auth": map[string]any{"identity": map[string]any{"methods": []string{"token"}, "token": map[string]any{"id": owner.token}}}}, nil},
			} {
				got := c.do(r.method, r.path, r.body, r.headers...)
				if got.status < 400 || got.status >= 500 {
					t.Errorf("%s %s: %s %s: %d %s", x.name, how, r.method, r.path, got.status, got.raw)
				}
			}
			if x == stranger {
				for _, p := range []string{"/v3/users/" + ownerID, "/v3/domains/" + def.ID, "/v3/projects/" + second.ID} {
					if got := c.do("GET", p, nil); got.status != 403 && got.status != 404 {
						t.Errorf("stranger %s: GET %s: %d %s", how, p, got.status, got.raw)
					}
				}
				if got := c.do("GET", "/v3/users", nil); got.status >= 500 || strings.Contains(got.raw, ownerID) {
					t.Errorf("stranger %s lists users: %d %s", how, got.status, got.raw)
				}
			}
		}
	}

	// The owner is intact: its token, access key and password work, its Nova key pairs are
	// unchanged, and it still holds its role.
	if after := ownerView(); after != before {
		t.Errorf("the owner's Nova key pairs changed:\nbefore %s\nafter  %s", before, after)
	}
	if code, out := novaAs(t, owner, true, "GET", "/v2.1/"+s.project+"/os-keypairs", nil); code != 200 || !strings.Contains(out, `"nk"`) {
		t.Errorf("the owner's signed Nova list: %d %s", code, out)
	}
	ownerClient := as(t, owner.service, tr)
	ownerClient.want(200, "GET", "/v3/auth/tokens", nil, "X-Subject-Token", owner.token)
	ownerClient.login("Default", "owner", "owner-password", projectScope("local-1", "Default"))
	if got, code := signedCall(t, owner.service, owner.ak, owner.sk, "GET", "/keypairs", nil); got != 200 {
		t.Errorf("the owner's access key stopped working: %d %s", got, code)
	}
}
