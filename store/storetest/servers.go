package storetest

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/openkps/kps"
)

var serverTests = map[string]func(*testing.T, *env){
	"CreateAndRead":                   testServerCreateAndRead,
	"DuplicateID":                     testServerDuplicateID,
	"NotFound":                        testServerNotFound,
	"ListOrderPagesAndTotal":          testServerList,
	"Update":                          testServerUpdate,
	"BusyServerKeepsItsConnection":    testServerBusyKeepsConnection,
	"BusyServerCannotBeDeleted":       testServerBusyCannotBeDeleted,
	"DeleteDropsTheBinding":           testServerDeleteDropsBinding,
	"ShowsItsBinding":                 testServerShowsBinding,
	"PinHostKeyTrustsOnFirstUse":      testPinHostKey,
	"PinHostKeyKeepsInventoryPins":    testPinHostKeyKeepsInventoryPins,
	"PinHostKeyConcurrentFirstUsers":  testPinHostKeyConcurrent,
	"DeleteKeepsFinishedTasksAndName": testServerDeleteKeepsTasks,
	"ReachByAdminIsKept":              testServerReachByAdmin,
	"LastTaskIsTheNewestKept":         testServerLastTask,
}

func testServerCreateAndRead(t *testing.T, e *env) {
	s := &kps.Server{ProjectID: project, ID: "web-01", Name: "web-01 (frontend)", Address: "2001:db8::1",
		Port: 2222, User: "deploy", HostKeys: []string{"ssh-ed25519 AAAAC3Nza host1", "ssh-rsa AAAAB3Nza host2"},
		SSHDConfig: "/etc/ssh/sshd_config", Credential: []byte{0, 1, 2, 0xff}}
	must(t, e.s.CreateServer(e.ctx, s, 0))
	if !s.Created.Equal(Epoch) || !s.Updated.Equal(Epoch) {
		t.Errorf("created/updated = %v/%v, want the clock %v", s.Created, s.Updated, Epoch)
	}
	got, err := e.s.Server(e.ctx, project, "web-01")
	must(t, err)
	if got.ProjectID != project || got.ID != s.ID || got.Name != s.Name || got.Address != s.Address ||
		got.Port != s.Port || got.User != s.User || !slices.Equal(got.HostKeys, s.HostKeys) ||
		got.SSHDConfig != s.SSHDConfig || !bytes.Equal(got.Credential, s.Credential) ||
		!got.Created.Equal(Epoch) || !got.Updated.Equal(Epoch) || got.KeyPairName != "" || got.PasswordDisabled {
		t.Errorf("server = %+v, want %+v", got, s)
	}

	bare := &kps.Server{ProjectID: project, ID: "bare", Name: "bare", Address: "h", Port: 22, User: "root",
		SSHDConfig: kps.DefaultSSHDConfig}
	must(t, e.s.CreateServer(e.ctx, bare, 0))
	got, err = e.s.Server(e.ctx, project, "bare")
	must(t, err)
	if got.Credential != nil || len(got.HostKeys) != 0 {
		t.Errorf("server without credential and pins = %+v", got)
	}
}

func testServerDuplicateID(t *testing.T, e *env) {
	e.server(project, "web-01", false)
	err := e.s.CreateServer(e.ctx, &kps.Server{ProjectID: project, ID: "web-01", Name: "x", Address: "h",
		Port: 22, User: "root", SSHDConfig: kps.DefaultSSHDConfig}, 0)
	wantCode(t, err, kps.ErrServerExists)
	// IDs are per project; and case-sensitive.
	e.server(otherProject, "web-01", false)
	e.server(project, "WEB-01", false)
}

func testServerNotFound(t *testing.T, e *env) {
	e.server(otherProject, "web-01", false)
	_, err := e.s.Server(e.ctx, project, "web-01")
	wantCode(t, err, kps.ErrServerNotFound)
	_, err = e.s.UpdateServer(e.ctx, project, "web-01", kps.ServerUpdate{Name: ptr("x")})
	wantCode(t, err, kps.ErrServerNotFound)
	wantCode(t, e.s.DeleteServer(e.ctx, project, "web-01"), kps.ErrServerNotFound)
	_, err = e.s.PinHostKey(e.ctx, project, "web-01", "ssh-ed25519 AAAA")
	wantCode(t, err, kps.ErrServerNotFound)
}

func testServerList(t *testing.T, e *env) {
	servers, total, err := e.s.ListServers(e.ctx, project, kps.Page{Limit: 10})
	must(t, err)
	if total != 0 || servers == nil || len(servers) != 0 {
		t.Fatalf("empty list = %v, %d; want [] and 0", servers, total)
	}
	// Inserted out of order; listed by ID in byte order.
	for _, id := range []string{"c", "a", "B", "b", "_x"} {
		e.server(project, id, false)
	}
	e.server(otherProject, "a2", false)
	ids := func(p kps.Page) ([]string, int) {
		t.Helper()
		servers, total, err := e.s.ListServers(e.ctx, project, p)
		must(t, err)
		var ids []string
		for _, s := range servers {
			ids = append(ids, s.ID)
		}
		return ids, total
	}
	for _, c := range []struct {
		page kps.Page
		want []string
	}{
		{kps.Page{Limit: 1000}, []string{"B", "_x", "a", "b", "c"}},
		{kps.Page{Limit: 2}, []string{"B", "_x"}},
		{kps.Page{Limit: 2, Offset: 2}, []string{"a", "b"}},
		{kps.Page{Limit: 2, Offset: 4}, []string{"c"}},
		{kps.Page{Limit: 2, Offset: 5}, nil},
		{kps.Page{Limit: 2, Offset: 2147483647}, nil},
	} {
		got, total := ids(c.page)
		if !slices.Equal(got, c.want) || total != 5 {
			t.Errorf("page %+v = %v, total %d; want %v, total 5", c.page, got, total, c.want)
		}
	}
}

func testServerUpdate(t *testing.T, e *env) {
	s := &kps.Server{ProjectID: project, ID: "web-01", Name: "old", Address: "192.0.2.1", Port: 22,
		User: "root", HostKeys: []string{"ssh-ed25519 AAAA"}, SSHDConfig: kps.DefaultSSHDConfig,
		Credential: []byte("sealed")}
	must(t, e.s.CreateServer(e.ctx, s, 0))
	e.clock.Advance(time.Second)

	// Nothing but the name: everything else, credential included, is kept.
	got, err := e.s.UpdateServer(e.ctx, project, "web-01", kps.ServerUpdate{Name: ptr("new")})
	must(t, err)
	if got.Name != "new" || got.Address != s.Address || !bytes.Equal(got.Credential, s.Credential) ||
		!slices.Equal(got.HostKeys, s.HostKeys) || !got.Created.Equal(Epoch) || !got.Updated.Equal(Epoch.Add(time.Second)) {
		t.Fatalf("after a name update: %+v", got)
	}
	e.clock.Advance(time.Second)

	// Connection, pins cleared, credential removed.
	got, err = e.s.UpdateServer(e.ctx, project, "web-01", kps.ServerUpdate{Address: ptr("web-01.example"),
		Port: ptr(2222), User: ptr("deploy"), HostKeys: ptr([]string{}), SSHDConfig: ptr("/etc/ssh/other"),
		SetCredential: true, Credential: nil})
	must(t, err)
	read, err := e.s.Server(e.ctx, project, "web-01")
	must(t, err)
	for _, s := range []*kps.Server{got, read} {
		if s.Address != "web-01.example" || s.Port != 2222 || s.User != "deploy" || len(s.HostKeys) != 0 ||
			s.SSHDConfig != "/etc/ssh/other" || s.Credential != nil || !s.Updated.Equal(Epoch.Add(2*time.Second)) {
			t.Fatalf("after a full update: %+v", s)
		}
	}

	// Setting a credential again.
	_, err = e.s.UpdateServer(e.ctx, project, "web-01", kps.ServerUpdate{SetCredential: true, Credential: []byte("c2")})
	must(t, err)
	read, err = e.s.Server(e.ctx, project, "web-01")
	must(t, err)
	if string(read.Credential) != "c2" {
		t.Fatalf("credential = %q", read.Credential)
	}
}

func testServerBusyKeepsConnection(t *testing.T, e *env) {
	e.server(project, "web-01", true)
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	task := e.submit(resetOf(project, "kp", "web-01"))

	for _, u := range []kps.ServerUpdate{
		{Address: ptr("192.0.2.99")},
		{Port: ptr(2222)},
		{User: ptr("deploy")},
	} {
		_, err := e.s.UpdateServer(e.ctx, project, "web-01", u)
		wantCode(t, err, kps.ErrServerBusy)
	}
	// The refused update left the record alone.
	s, err := e.s.Server(e.ctx, project, "web-01")
	must(t, err)
	if s.Address != "192.0.2.10" || s.Port != 22 || s.User != "root" {
		t.Fatalf("refused update changed the server: %+v", s)
	}
	// Other members, and connection members set to their current values, may change.
	_, err = e.s.UpdateServer(e.ctx, project, "web-01", kps.ServerUpdate{Name: ptr("renamed"),
		Address: ptr("192.0.2.10"), Port: ptr(22), HostKeys: ptr([]string{"ssh-ed25519 AAAA"})})
	must(t, err)

	// RUNNING is busy too; a finished task is not.
	e.claim(task.ID)
	_, err = e.s.UpdateServer(e.ctx, project, "web-01", kps.ServerUpdate{Port: ptr(2222)})
	wantCode(t, err, kps.ErrServerBusy)
	running := e.task(project, task.ID)
	must(t, e.s.FinishTask(e.ctx, running, kps.TaskOutcome{ErrorCode: kps.TaskUnreachable, ErrorMsg: "down"}))
	_, err = e.s.UpdateServer(e.ctx, project, "web-01", kps.ServerUpdate{Port: ptr(2222)})
	must(t, err)
}

func testServerBusyCannotBeDeleted(t *testing.T, e *env) {
	e.server(project, "web-01", true)
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	task := e.submit(resetOf(project, "kp", "web-01"))
	wantCode(t, e.s.DeleteServer(e.ctx, project, "web-01"), kps.ErrServerBusy)
	running := e.claim(task.ID)
	wantCode(t, e.s.DeleteServer(e.ctx, project, "web-01"), kps.ErrServerBusy)
	must(t, e.s.FinishTask(e.ctx, running, kps.TaskOutcome{ErrorCode: kps.TaskUnreachable, ErrorMsg: "down"}))
	must(t, e.s.DeleteServer(e.ctx, project, "web-01"))
	_, err := e.s.Server(e.ctx, project, "web-01")
	wantCode(t, err, kps.ErrServerNotFound)
}

func testServerDeleteDropsBinding(t *testing.T, e *env) {
	e.server(project, "web-01", false)
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.bind(project, "kp", "web-01", true)
	if e.binding(project, "web-01") == nil {
		t.Fatal("not bound")
	}
	must(t, e.s.DeleteServer(e.ctx, project, "web-01"))
	if b := e.binding(project, "web-01"); b != nil {
		t.Fatalf("binding survived the server: %+v", b)
	}
	// The key pair is no longer in use, and a server registered again under the ID is unbound.
	e.server(project, "web-01", false)
	s, err := e.s.Server(e.ctx, project, "web-01")
	must(t, err)
	if s.KeyPairName != "" || s.PasswordDisabled {
		t.Fatalf("re-registered server = %+v", s)
	}
	must(t, e.s.DeleteKeyPair(e.ctx, project, "kp", alice))
}

func testServerShowsBinding(t *testing.T, e *env) {
	e.server(project, "a", false)
	e.server(project, "b", false)
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.bind(project, "kp", "b", true)
	s, err := e.s.Server(e.ctx, project, "b")
	must(t, err)
	if s.KeyPairName != "kp" || !s.PasswordDisabled {
		t.Errorf("bound server = %+v", s)
	}
	list, _, err := e.s.ListServers(e.ctx, project, kps.Page{Limit: 10})
	must(t, err)
	if len(list) != 2 || list[0].KeyPairName != "" || list[0].PasswordDisabled || list[1].KeyPairName != "kp" ||
		!list[1].PasswordDisabled {
		t.Errorf("list = %+v", list)
	}
	// UpdateServer returns the binding too.
	u, err := e.s.UpdateServer(e.ctx, project, "b", kps.ServerUpdate{Name: ptr("B")})
	must(t, err)
	if u.KeyPairName != "kp" || !u.PasswordDisabled {
		t.Errorf("updated server = %+v", u)
	}
}

func testPinHostKey(t *testing.T, e *env) {
	e.server(project, "web-01", false)
	e.clock.Advance(time.Second)
	pins, err := e.s.PinHostKey(e.ctx, project, "web-01", "ssh-ed25519 AAAAfirst")
	must(t, err)
	if !slices.Equal(pins, []string{"ssh-ed25519 AAAAfirst"}) {
		t.Fatalf("pins = %v", pins)
	}
	// A later key does not replace the pin: the pins in force come back.
	pins, err = e.s.PinHostKey(e.ctx, project, "web-01", "ssh-ed25519 AAAAsecond")
	must(t, err)
	if !slices.Equal(pins, []string{"ssh-ed25519 AAAAfirst"}) {
		t.Fatalf("pins after a second key = %v", pins)
	}
	s, err := e.s.Server(e.ctx, project, "web-01")
	must(t, err)
	if !slices.Equal(s.HostKeys, []string{"ssh-ed25519 AAAAfirst"}) {
		t.Fatalf("server pins = %v", s.HostKeys)
	}
	// Clearing the pins through the inventory re-arms trust on first use.
	_, err = e.s.UpdateServer(e.ctx, project, "web-01", kps.ServerUpdate{HostKeys: ptr([]string{})})
	must(t, err)
	pins, err = e.s.PinHostKey(e.ctx, project, "web-01", "ssh-ed25519 AAAAthird")
	must(t, err)
	if !slices.Equal(pins, []string{"ssh-ed25519 AAAAthird"}) {
		t.Fatalf("pins after clearing = %v", pins)
	}
	// The pin of one server is not the pin of another project's server with the same ID.
	e.server(otherProject, "web-01", false)
	pins, err = e.s.PinHostKey(e.ctx, otherProject, "web-01", "ssh-ed25519 AAAAother")
	must(t, err)
	if !slices.Equal(pins, []string{"ssh-ed25519 AAAAother"}) {
		t.Fatalf("other project's pins = %v", pins)
	}
}

func testPinHostKeyKeepsInventoryPins(t *testing.T, e *env) {
	s := &kps.Server{ProjectID: project, ID: "web-01", Name: "web-01", Address: "h", Port: 22, User: "root",
		HostKeys: []string{"ssh-ed25519 AAAAa", "ssh-rsa AAAAb"}, SSHDConfig: kps.DefaultSSHDConfig}
	must(t, e.s.CreateServer(e.ctx, s, 0))
	pins, err := e.s.PinHostKey(e.ctx, project, "web-01", "ssh-ed25519 AAAAnew")
	must(t, err)
	if !slices.Equal(pins, s.HostKeys) {
		t.Fatalf("pins = %v, want the inventory's %v", pins, s.HostKeys)
	}
}

func testPinHostKeyConcurrent(t *testing.T, e *env) {
	e.server(project, "web-01", false)
	const n = 8
	results := make([][]string, n)
	errs := make([]error, n)
	done := make(chan struct{})
	for i := range n {
		go func() {
			defer func() { done <- struct{}{} }()
			results[i], errs[i] = e.s.PinHostKey(e.ctx, project, "web-01", "ssh-ed25519 AAAA"+string(rune('a'+i)))
		}()
	}
	for range n {
		<-done
	}
	for i := range n {
		must(t, errs[i])
		if len(results[i]) != 1 || results[i][0] != results[0][0] {
			t.Fatalf("first users saw different pins: %v vs %v", results[i], results[0])
		}
	}
}

func testServerDeleteKeepsTasks(t *testing.T, e *env) {
	e.server(project, "web-01", true)
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	failed := e.run(resetOf(project, "kp", "web-01"), kps.TaskOutcome{ErrorCode: kps.TaskUnreachable, ErrorMsg: "down"})
	_, err := e.s.UpdateServer(e.ctx, project, "web-01", kps.ServerUpdate{Name: ptr("renamed")})
	must(t, err)
	must(t, e.s.DeleteServer(e.ctx, project, "web-01"))
	got := e.wantPhase(project, failed.ID, kps.PhaseFailed)
	if got.ServerName != "web-01 (name)" || got.ServerID != "web-01" {
		t.Fatalf("failed task after the server was removed: %+v (the name at submission is kept)", got)
	}
}

// testServerReachByAdmin: whether an admin set the reach is stored at registration, set by an
// update that says so, and left alone by every other update and by a pin learnt on first use.
func testServerReachByAdmin(t *testing.T, e *env) {
	member := &kps.Server{ProjectID: project, ID: "member", Name: "member", Address: "192.0.2.7", Port: 22,
		User: "root", SSHDConfig: kps.DefaultSSHDConfig}
	must(t, e.s.CreateServer(e.ctx, member, 0))
	e.server(project, "admin", true)
	reach := func(id string) bool {
		t.Helper()
		s, err := e.s.Server(e.ctx, project, id)
		must(t, err)
		list, _, err := e.s.ListServers(e.ctx, project, kps.Page{Limit: 10})
		must(t, err)
		for _, l := range list {
			if l.ID == id && l.ReachByAdmin != s.ReachByAdmin {
				t.Fatalf("%s: the list says reach_by_admin %v, the server %v", id, l.ReachByAdmin, s.ReachByAdmin)
			}
		}
		return s.ReachByAdmin
	}
	if reach("member") || !reach("admin") {
		t.Fatalf("at registration: member %v, admin %v", reach("member"), reach("admin"))
	}
	// Updates that do not say so change nothing, either way.
	for _, id := range []string{"member", "admin"} {
		before := reach(id)
		got, err := e.s.UpdateServer(e.ctx, project, id, kps.ServerUpdate{Name: ptr("renamed"), SetCredential: true})
		must(t, err)
		if got.ReachByAdmin != before || reach(id) != before {
			t.Fatalf("%s: a rename changed reach_by_admin to %v", id, got.ReachByAdmin)
		}
	}
	if _, err := e.s.PinHostKey(e.ctx, project, "member", "ssh-ed25519 AAAAfirst"); err != nil {
		t.Fatal(err)
	}
	if reach("member") {
		t.Fatal("a pin learnt on first use made the reach an admin's")
	}
	got, err := e.s.UpdateServer(e.ctx, project, "member", kps.ServerUpdate{Address: ptr("192.0.2.7"), ReachByAdmin: true})
	must(t, err)
	if !got.ReachByAdmin || !reach("member") {
		t.Fatal("an admin's confirmation was not recorded")
	}
}

// testServerLastTask: a server record carries its newest task the service still keeps
// (inventory.md, last_task), the same in the record and in the list, and only its own: not
// another server's, not a task of a server by the same ID in another project.
func testServerLastTask(t *testing.T, e *env) {
	e.server(project, "web-01", true)
	e.server(project, "web-02", true)
	e.server(otherProject, "web-01", true)
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.keyPair(otherProject, "kp", kps.ScopeDomain, alice)
	last := func(id string) *kps.ServerTask {
		t.Helper()
		s, err := e.s.Server(e.ctx, project, id)
		must(t, err)
		list, total, err := e.s.ListServers(e.ctx, project, kps.Page{Limit: 10})
		must(t, err)
		if total != 2 || len(list) != 2 {
			t.Fatalf("list: %d servers of %d", len(list), total)
		}
		for _, l := range list {
			if l.ID == id && !sameServerTask(l.LastTask, s.LastTask) {
				t.Fatalf("%s: the list's last task %s, the server's %s", id, fmtServerTask(l.LastTask), fmtServerTask(s.LastTask))
			}
		}
		return s.LastTask
	}
	want := func(id string, got *kps.ServerTask, task *kps.Task, phase kps.Phase, code string) {
		t.Helper()
		if got == nil || got.ID != task.ID || got.Operation != task.Operation || got.Phase != phase ||
			!got.Created.Equal(task.Created) || got.ErrorCode != code {
			t.Fatalf("%s: last task %s, want %s %s created %v error %q", id, fmtServerTask(got), task.ID,
				kps.Status(phase, task.Operation), task.Created, code)
		}
	}
	if got := last("web-01"); got != nil {
		t.Fatalf("before any task: last task %s", fmtServerTask(got))
	}

	// The other project's web-01 gets a task: it never shows in this project.
	e.run(resetOf(otherProject, "kp", "web-01"), kps.TaskOutcome{ErrorCode: kps.TaskUnreachable, ErrorMsg: "down"})
	if got := last("web-01"); got != nil {
		t.Fatalf("the other project's task leaks in: %s", fmtServerTask(got))
	}

	e.clock.Advance(time.Second)
	submitted := e.submit(resetOf(project, "kp", "web-01"))
	want("web-01", last("web-01"), submitted, kps.PhaseReady, "")
	if got := last("web-02"); got != nil {
		t.Fatalf("web-01's task shows on web-02: %s", fmtServerTask(got))
	}
	failed := e.claim(submitted.ID)
	must(t, e.s.FinishTask(e.ctx, failed, kps.TaskOutcome{ErrorCode: kps.TaskUnreachable, ErrorMsg: "down"}))
	want("web-01", last("web-01"), submitted, kps.PhaseFailed, kps.TaskUnreachable)

	// A later success is the last task; the older failure stays in the failed list only.
	e.clock.Advance(time.Second)
	k, err := e.s.KeyPair(e.ctx, project, "kp", alice)
	must(t, err)
	succeeded := e.run(resetOf(project, "kp", "web-01"), kps.TaskOutcome{Success: true, PublicKey: k.PublicKey})
	want("web-01", last("web-01"), succeeded, kps.PhaseSuccess, "")

	// web-02: a success, then a failure; deleting the failure brings back the success.
	e.clock.Advance(time.Second)
	ok2 := e.run(resetOf(project, "kp", "web-02"), kps.TaskOutcome{Success: true, PublicKey: k.PublicKey})
	e.clock.Advance(time.Second)
	failed2 := e.run(unbindOf(project, "web-02", false), kps.TaskOutcome{ErrorCode: kps.TaskUnreachable, ErrorMsg: "down"})
	want("web-02", last("web-02"), failed2, kps.PhaseFailed, kps.TaskUnreachable)
	want("web-01", last("web-01"), succeeded, kps.PhaseSuccess, "")
	must(t, e.s.DeleteFailedTask(e.ctx, project, failed2.ID))
	want("web-02", last("web-02"), ok2, kps.PhaseSuccess, "")

	// Past the retention of succeeded tasks, a server whose tasks are all gone has none again.
	e.clock.Advance(8 * 24 * time.Hour)
	_, err = e.s.PurgeSucceededTasks(e.ctx, 7*24*time.Hour)
	must(t, err)
	if got := last("web-02"); got != nil {
		t.Fatalf("after the purge: last task %s", fmtServerTask(got))
	}
	// web-01 keeps its old failure: the newest task the service still keeps.
	want("web-01", last("web-01"), submitted, kps.PhaseFailed, kps.TaskUnreachable)
}

func sameServerTask(a, b *kps.ServerTask) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.ID == b.ID && a.Operation == b.Operation && a.Phase == b.Phase && a.Created.Equal(b.Created) &&
		a.ErrorCode == b.ErrorCode
}

func fmtServerTask(t *kps.ServerTask) string {
	if t == nil {
		return "none"
	}
	return t.ID + " " + t.Status() + " " + t.Created.String() + " " + t.ErrorCode
}
