package console_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/openkps/kps"
	"github.com/openkps/kps/client"
)

// TestConsoleAuditTrail: the project's admin finds the audit trail in the navigation, a page at
// a time, filtered by target; a member sees no entry and the API's refusal if they ask.
func TestConsoleAuditTrail(t *testing.T) {
	s := startService(t)
	ctx := context.Background()
	for _, name := range []string{"alpha", "bravo", "charlie"} {
		if _, err := s.admin.CreateKeyPair(ctx, client.NewKeyPair{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	b := newBrowserless(t, s, "")
	if st := b.signIn("admin", adminPassword); st != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", st)
	}
	_, body := b.get("/console/")
	if !strings.Contains(body, `href="/console/audit"`) {
		t.Fatal("the admin's navigation has no audit trail")
	}
	rows := regexp.MustCompile(`<tr id="event-\d+">[\s\S]*?<code>([a-z._]+)</code>[\s\S]*?<span class="nowrap">([^<]*)</span>`)
	status, body := b.get("/console/audit?limit=2")
	got := rows.FindAllStringSubmatch(body, -1)
	if status != 200 || len(got) != 2 || got[0][1] != "keypair.create" || got[0][2] != "charlie" || got[1][2] != "bravo" {
		t.Fatalf("first page of two: %d %v\n%s", status, got, body)
	}
	if !strings.Contains(body, "1–2 of 3") || !strings.Contains(body, `href="/console/audit?limit=2&amp;offset=2" rel="next"`) ||
		!strings.Contains(body, "127.0.0.1") {
		t.Fatalf("paging of the audit trail:\n%s", body)
	}
	_, body = b.get("/console/audit?resource=alpha")
	if got := rows.FindAllStringSubmatch(body, -1); len(got) != 1 || got[0][2] != "alpha" || !strings.Contains(body, `value="alpha"`) {
		t.Fatalf("filtered by alpha: %v", got)
	}

	s.addUser(t, "auditmember", "auditmember-password", kps.RoleMember)
	m := newBrowserless(t, s, "")
	if st := m.signIn("auditmember", "auditmember-password"); st != http.StatusSeeOther {
		t.Fatalf("member sign-in: %d", st)
	}
	if _, body := m.get("/console/"); strings.Contains(body, `href="/console/audit"`) {
		t.Error("a member's navigation shows the audit trail")
	}
	if status, body := m.get("/console/audit"); status != http.StatusForbidden || strings.Contains(body, "event-") {
		t.Errorf("a member's audit page: %d\n%s", status, body)
	}
}
