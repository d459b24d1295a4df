package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"

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
	st := s.main.store
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
	resp, err := http.Post(s.base+"/v3/auth/tokens", "application/json", strings.NewReader(body))
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
	sealed, err := s.main.sealer.Seal([]byte(sk), kps.AccessKeyAAD(ak))
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
	st := s.main.store
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
