package e2e

import (
	"testing"

	"github.com/openkps/kps"
)

// TestAdministrationScope (docs/SECURITY.md 9.2, 9.3, 9.6): the limits of the two
// administrators that the identity tests leave out. A domain admin makes nobody an admin of a
// domain it does not administer — the operator domain least of all, and itself neither —,
// deletes no domain, and reads none of the events without a project; the operator admin, who
// administers every domain's users, never reaches another domain's key pairs: roles never
// cross domains, so it can neither grant itself one there nor scope a token there.
func TestAdministrationScope(t *testing.T) {
	t.Parallel()
	s := setup(t)
	tr := newTranscript()
	operator := as(t, s, tr) // the bootstrap admin: admin on Default, the operator domain
	aliceService := s.addUser("alice", kps.RoleMember)
	defaultDomain, adminID, aliceID := s.defaultDomainID(t), s.userIDOf("admin"), s.userIDOf("alice")
	acme := createDomainAdmin(t, operator, "acme", "bob")
	zeta := createDomainAdmin(t, operator, "zeta", "zed")
	bob, body := operator.login("acme", "bob", "bob-password-1", projectScope("local-1", "acme"))
	acmeProject, bobID := str(obj(body["project"])["id"]), str(obj(body["user"])["id"])

	// A domain admin makes admins of its own domain only (the control: carol becomes one).
	carol := str(obj(bob.want(201, "POST", "/v3/users", map[string]any{"user": map[string]any{"name": "carol", "password": "carol-password-1"}})["user"])["id"])
	bob.want(204, "PUT", "/v3/domains/"+acme+"/users/"+carol+"/roles/admin", nil)
	for _, c := range []struct{ method, domain, user string }{
		{"PUT", defaultDomain, aliceID}, // a user of the operator domain made operator admin
		{"PUT", defaultDomain, bobID},   // itself made operator admin
		{"PUT", zeta, bobID},            // itself made admin of another domain
		{"DELETE", defaultDomain, adminID},
	} {
		bob.wantErr(404, "KPS.6110", c.method, "/v3/domains/"+c.domain+"/users/"+c.user+"/roles/admin", nil)
	}
	alice := as(t, aliceService, tr)
	alice.wantErr(403, "KPS.9006", "GET", "/v3/users", nil) // alice administers nothing
	operator.want(200, "GET", "/v3/users?domain_id="+zeta, nil)
	// Domains are the operator's: a domain admin deletes none, its own included.
	bob.wantErr(403, "KPS.9006", "DELETE", "/v3/domains/"+acme, nil)
	bob.wantErr(403, "KPS.9006", "DELETE", "/v3/domains/"+zeta, nil)
	// The events without a project (logins, identity changes, refusals of every domain) are
	// the operator admin's alone.
	bob.wantErr(403, "KPS.9006", "GET", "/v3/audit-events", nil)
	if events := s.auditEvents("", ""); len(events) == 0 {
		t.Errorf("the operator admin reads no event")
	}

	// The operator admin reaches no key pair of acme. Its project token is refused there; it
	// cannot scope a token to acme's project, nor give itself a role on it or on acme.
	if code, out := s.raw("GET", "/v3/"+acmeProject+"/keypairs", nil, map[string]string{"X-Auth-Token": operator.token}); code != 403 {
		t.Errorf("the operator admin's token on acme's key pairs: %d %v", code, out)
	}
	scope := `{"project":{"id":"` + acmeProject + `"}}`
	if code, tok, out := issue(t, s.base, defaultDomainLogin("admin", "admin-password-for-tests", scope)); code != 401 || tok != "" {
		t.Errorf("the operator admin scoping a token to acme's project: %d %v", code, out)
	}
	operator.wantErr(400, "KPS.6003", "PUT", "/v3/projects/"+acmeProject+"/users/"+adminID+"/roles/admin", nil)
	operator.wantErr(400, "KPS.6003", "PUT", "/v3/domains/"+acme+"/users/"+adminID+"/roles/admin", nil)
	if code, tok, out := issue(t, s.base, defaultDomainLogin("admin", "admin-password-for-tests", scope)); code != 401 || tok != "" {
		t.Errorf("the operator admin scoping a token to acme's project after the refused grants: %d %v", code, out)
	}
}
