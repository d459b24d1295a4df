package console_test

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/client"
)

// TestConsolePagingExportAndDelete: the lists page as the API does (key pairs by marker,
// failed tasks by limit and offset), a hosted private key is exported as a file, a key pair is
// described and deleted — through the console's forms, as a browser sends them.
func TestConsolePagingExportAndDelete(t *testing.T) {
	s := startService(t, "--max-queued-per-project", "0")
	ctx := context.Background()
	for _, name := range []string{"alpha", "bravo", "charlie"} {
		if _, err := s.admin.CreateKeyPair(ctx, client.NewKeyPair{Name: name, HostPrivateKey: name == "bravo"}); err != nil {
			t.Fatal(err)
		}
	}
	seedFailedTasks(t, s, 5)
	b := newBrowserless(t, s, "")
	if st := b.signIn("admin", adminPassword); st != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", st)
	}

	// Key pairs, two a page: the next link carries the API's marker, the previous one goes back.
	names := regexp.MustCompile(`<a class="strong" href="/console/keypairs/([^"]+)">`)
	link := func(body, rel string) string {
		m := regexp.MustCompile(`href="([^"]+)" rel="` + rel + `"`).FindStringSubmatch(body)
		if m == nil {
			return ""
		}
		return strings.ReplaceAll(m[1], "&amp;", "&")
	}
	_, body := b.get("/console/keypairs?limit=2")
	if got := names.FindAllStringSubmatch(body, -1); len(got) != 2 || got[0][1] != "alpha" || got[1][1] != "bravo" {
		t.Fatalf("first page of two: %v", got)
	}
	next := link(body, "next")
	if next != "/console/keypairs?limit=2&marker=bravo" {
		t.Fatalf("next link %q", next)
	}
	_, body = b.get(next)
	if got := names.FindAllStringSubmatch(body, -1); len(got) != 2 || got[0][1] != "charlie" || got[1][1] != "seed" {
		t.Fatalf("second page: %v", got)
	}
	if prev := link(body, "prev"); prev != "/console/keypairs?limit=2" {
		t.Fatalf("previous link %q", prev)
	}
	if link(body, "next") != "" {
		t.Fatal("the last page has a next link")
	}

	// Failed tasks, two a page from the third: rows 3–4 of 5, newest first as the API lists them.
	page, err := s.admin.ListFailedTasks(ctx, 1000, 0)
	if err != nil || page.Total != 5 {
		t.Fatalf("failed tasks: %+v %v", page, err)
	}
	_, body = b.get("/console/tasks/failed?limit=2&offset=2")
	rows := regexp.MustCompile(`<tr id="task-([0-9a-f-]+)">`).FindAllStringSubmatch(body, -1)
	if len(rows) != 2 || rows[0][1] != page.Tasks[2].TaskID || rows[1][1] != page.Tasks[3].TaskID {
		t.Fatalf("rows 3–4: %v, want %s and %s", rows, page.Tasks[2].TaskID, page.Tasks[3].TaskID)
	}
	if !strings.Contains(body, "3–4 of 5") || link(body, "prev") != "/console/tasks/failed?limit=2&offset=0" ||
		link(body, "next") != "/console/tasks/failed?limit=2&offset=4" {
		t.Fatalf("paging of failed tasks:\n%s", body)
	}
	// Each row shows its task as the API lists it: the time (UTC, to the second, and as a
	// machine-readable datetime), the server, the key pair with the operation, the code and
	// the message.
	for i, m := range regexp.MustCompile(`(?s)<tr id="task-[0-9a-f-]+">(.*?)</tr>`).FindAllStringSubmatch(body, -1) {
		task, c := page.Tasks[2+i], cells(m[1])
		created := task.Created()
		if created.IsZero() || task.ErrorMsg == "" || task.KeyPairName != "seed" {
			t.Fatalf("the API's failed task: %+v", task)
		}
		wantTime := `<time datetime="` + created.UTC().Format(time.RFC3339) + `">` + created.UTC().Format("2006-01-02 15:04:05Z") + `</time>`
		if c["Time"] != wantTime {
			t.Errorf("task %s: time cell %q, want %q", task.TaskID, c["Time"], wantTime)
		}
		if got := text(c["Server"]); got != task.ServerID+" "+task.ServerName {
			t.Errorf("task %s: server cell %q, want %s and %s", task.TaskID, got, task.ServerID, task.ServerName)
		}
		if got, want := text(c["Task"]), task.KeyPairName+" "+string(task.Operation()); got != want {
			t.Errorf("task %s: task cell %q, want %q", task.TaskID, got, want)
		}
		if got := text(c["Code"]); got != task.ErrorCode || got != "KPS.6601" {
			t.Errorf("task %s: code cell %q, want %s (KPS.6601)", task.TaskID, got, task.ErrorCode)
		}
		if got := html.UnescapeString(c["Message"]); got != task.ErrorMsg {
			t.Errorf("task %s: message cell %q, want %q", task.TaskID, got, task.ErrorMsg)
		}
	}

	// Export the hosted key: a file, byte for byte what the API exports.
	token := b.csrf("/console/keypairs/bravo")
	want, err := s.admin.ExportPrivateKey(ctx, "bravo")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, s.base+"/console/keypairs/bravo/export", strings.NewReader(url.Values{"csrf": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := b.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(got) != want || resp.Header.Get("Content-Disposition") != `attachment; filename=bravo.pem` ||
		resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("export: %d %q %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Disposition"), resp.Header.Get("Cache-Control"), len(got))
	}
	if _, body := b.get("/console/keypairs/alpha"); strings.Contains(body, "/export") {
		t.Error("a key pair without a hosted key offers an export")
	}

	// Describe, then delete.
	r, _ := b.post("/console/keypairs/alpha/description", url.Values{"csrf": {token}, "description": {"old laptop"}}, nil)
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("description: %d", r.StatusCode)
	}
	if k, err := s.admin.KeyPair(ctx, "alpha"); err != nil || k.Description != "old laptop" {
		t.Fatalf("description: %+v %v", k, err)
	}
	r, _ = b.post("/console/keypairs/alpha/delete", url.Values{"csrf": {token}}, nil)
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("delete: %d", r.StatusCode)
	}
	if _, err := s.admin.KeyPair(ctx, "alpha"); client.Code(err) != kps.ErrKeyPairNotFound {
		t.Fatalf("alpha after delete: %v", err)
	}

	// Switch to another project of the user: a new token scoped to it, the old one revoked, and
	// the page of one project (a key pair) gives way to its list in the other.
	staging, err := s.admin.CreateProject(ctx, "staging", "", "")
	if err != nil {
		t.Fatal(err)
	}
	consoleURL, _ := url.Parse(s.base + "/console/")
	old := ""
	for _, c := range b.hc.Jar.Cookies(consoleURL) {
		if c.Name == "kps_console" {
			old = c.Value
		}
	}
	r, _ = b.post("/console/project", url.Values{"csrf": {token}, "project_id": {staging.ID}, "next": {"/console/keypairs/bravo"}}, nil)
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/console/keypairs" {
		t.Fatalf("project switch: %d to %q", r.StatusCode, r.Header.Get("Location"))
	}
	if _, err := s.admin.TokenDetails(ctx, old); client.Code(err) != kps.ErrTokenNotFound {
		t.Fatalf("the token of the project left still works: %v", err)
	}
	_, body = b.get("/console/")
	if !strings.Contains(body, "Project <strong>staging</strong>") || !strings.Contains(body, `value="`+staging.ID+`" selected`) {
		t.Fatalf("after the switch the overview shows another project:\n%s", body)
	}
	if _, body = b.get("/console/keypairs"); strings.Contains(body, "bravo") {
		t.Error("the key pairs of local-1 show in staging")
	}

	// A member edits a server's name, and nothing of how it is reached: the form has no such
	// field, and a forged one is refused by the API (inventory.md, "Who may do what").
	s.addUser(t, "mia", "member-password-2026", kps.RoleMember)
	m := newBrowserless(t, s, "")
	if st := m.signIn("mia", "member-password-2026"); st != http.StatusSeeOther {
		t.Fatalf("member sign-in: %d", st)
	}
	_, body = m.get("/console/servers/host-0001")
	if !strings.Contains(body, `id="name"`) || strings.Contains(body, `id="address"`) || strings.Contains(body, `name="credential"`) {
		t.Fatalf("the member's edit form offers more than the name:\n%s", body)
	}
	mtoken := m.csrf("/console/servers/host-0001")
	r, _ = m.post("/console/servers/host-0001", url.Values{"csrf": {mtoken}, "name": {"renamed by mia"}}, nil)
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("member rename: %d", r.StatusCode)
	}
	r, body = m.post("/console/servers/host-0001", url.Values{"csrf": {mtoken}, "name": {"renamed by mia"},
		"address": {"10.9.9.9"}, "port": {"22"}, "user": {"root"}, "host_keys": {""}}, nil)
	if r.StatusCode != http.StatusForbidden || !strings.Contains(body, "KPS.9006") {
		t.Fatalf("a member's forged change of address: %d\n%s", r.StatusCode, body)
	}
	if srv, err := s.admin.Server(ctx, "host-0001"); err != nil || srv.Name != "renamed by mia" || srv.Address != "127.0.0.1" {
		t.Fatalf("host-0001 after the member's edits: %+v %v", srv, err)
	}
}
