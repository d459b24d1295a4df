package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/service"
)

var auditTests = map[string]func(*testing.T, *env){
	"ChangeRecordsItsEvent":       testAuditChangeRecordsItsEvent,
	"RefusedChangeRecordsNothing": testAuditRefusedChangeRecordsNothing,
	"StoreNamesDrawnIDs":          testAuditStoreNamesDrawnIDs,
	"SubmissionsRecordPerItem":    testAuditSubmissionsPerItem,
	"ListFiltersAndPages":         testAuditListFiltersAndPages,
	"Purge":                       testAuditPurge,
}

// event is the request's event of a call by alice in the project.
func event(action, targetType string) *kps.AuditEvent {
	return &kps.AuditEvent{RequestID: "req-" + action, ProjectID: project, UserID: alice, UserName: "alice",
		DomainID: "d1", DomainName: "acme", ActorProjectID: project, AuthMethod: kps.AuthToken, Credential: "0123456789ab",
		ClientIP: "192.0.2.7", Action: action, TargetType: targetType, Status: 200}
}

// events lists every event of the project (or without one: "").
func (e *env) events(projectID string) []kps.AuditEvent {
	e.t.Helper()
	evs, total, err := e.s.ListAuditEvents(e.ctx, kps.AuditFilter{ProjectID: projectID}, kps.Page{Limit: 1000})
	must(e.t, err)
	if total != len(evs) {
		e.t.Fatalf("total %d for %d events", total, len(evs))
	}
	return evs
}

// A change made through Audit(ev) commits ev with it: the event is read back whole, with the
// transaction's time and an ID, and the request's event counts as recorded.
func testAuditChangeRecordsItsEvent(t *testing.T, e *env) {
	req := event(kps.ActionKeyPairCreate, kps.TargetKeyPair)
	ev := req.For(kps.TargetKeyPair, "kp")
	k := &kps.KeyPair{ProjectID: project, Name: "kp", Type: kps.TypeSSH, Scope: kps.ScopeUser, UserID: alice,
		PublicKey: "ssh-ed25519 AAAA kp", Fingerprint: "f", Algorithm: "ED25519"}
	must(t, e.s.Audit(ev).CreateKeyPair(e.ctx, k, kps.KeyPairQuota{}))
	if ev.ID == 0 || !ev.Time.Equal(Epoch) || !req.Recorded() {
		t.Fatalf("after the commit: event %d at %v, request recorded %v", ev.ID, ev.Time, req.Recorded())
	}
	got := e.events(project)
	want := *ev
	want.Time = Epoch
	if len(got) != 1 || fmt.Sprint(got[0]) != fmt.Sprint(stripTemplate(want)) {
		t.Fatalf("events = %+v, want [%+v]", got, want)
	}
	// The store itself, and Audit(nil), record nothing.
	must(t, e.s.Audit(nil).UpdateKeyPairDescription(e.ctx, project, "kp", alice, "d"))
	must(t, e.s.UpdateKeyPairDescription(e.ctx, project, "kp", alice, "e"))
	if n := len(e.events(project)); n != 1 {
		t.Fatalf("%d events after changes without one", n)
	}
}

// stripTemplate drops what the store never returns: the link to the request's event.
func stripTemplate(c kps.AuditEvent) kps.AuditEvent {
	return kps.AuditEvent{ID: c.ID, Time: c.Time, RequestID: c.RequestID, ProjectID: c.ProjectID, UserID: c.UserID,
		UserName: c.UserName, DomainID: c.DomainID, DomainName: c.DomainName, ActorProjectID: c.ActorProjectID,
		AuthMethod: c.AuthMethod, Credential: c.Credential, ClientIP: c.ClientIP, Action: c.Action,
		TargetType: c.TargetType, TargetID: c.TargetID, Status: c.Status, Code: c.Code, TaskID: c.TaskID}
}

// A change the store refuses rolls back with its event: neither is there.
func testAuditRefusedChangeRecordsNothing(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeUser, alice)
	req := event(kps.ActionKeyPairCreate, kps.TargetKeyPair)
	dup := &kps.KeyPair{ProjectID: project, Name: "kp", Type: kps.TypeSSH, Scope: kps.ScopeUser, UserID: alice,
		PublicKey: "ssh-ed25519 AAAA kp", Fingerprint: "f", Algorithm: "ED25519"}
	wantCode(t, e.s.Audit(req.For(kps.TargetKeyPair, "kp")).CreateKeyPair(e.ctx, dup, kps.KeyPairQuota{}), kps.ErrKeyPairExists)
	wantCode(t, e.s.Audit(req.For(kps.TargetServer, "nope")).DeleteServer(e.ctx, project, "nope"), kps.ErrServerNotFound)
	if evs := e.events(project); len(evs) != 0 || req.Recorded() {
		t.Fatalf("refused changes recorded %+v", evs)
	}
	// On its own, the refusal is recorded.
	req.Status, req.Code = 409, kps.ErrKeyPairExists
	must(t, e.s.RecordAudit(e.ctx, req))
	if evs := e.events(project); len(evs) != 1 || evs[0].Code != kps.ErrKeyPairExists || evs[0].Status != 409 {
		t.Fatalf("events = %+v", evs)
	}
}

// The IDs a create draws inside the store name the event's target.
func testAuditStoreNamesDrawnIDs(t *testing.T, e *env) {
	ops := &kps.AuditEvent{RequestID: "r", Action: kps.ActionDomainCreate, TargetType: kps.TargetDomain, Status: 201}
	d := &kps.Domain{Name: "acme", Enabled: true}
	dev := ops.For(kps.TargetDomain, "")
	_, err := e.s.Audit(dev).CreateDomain(e.ctx, d, "region-1")
	must(t, err)
	pr := &kps.Project{Name: "dev", DomainID: d.ID, Enabled: true}
	pev := ops.For(kps.TargetProject, "")
	must(t, e.s.Audit(pev).CreateProject(e.ctx, pr))
	u := &kps.User{Name: "alice", DomainID: d.ID, Enabled: true}
	uev := ops.For(kps.TargetUser, "")
	must(t, e.s.Audit(uev).CreateUser(e.ctx, u))
	got := map[string]string{}
	for _, ev := range e.events("") {
		got[ev.TargetType] = ev.TargetID
	}
	if got[kps.TargetDomain] != d.ID || got[kps.TargetProject] != pr.ID || got[kps.TargetUser] != u.ID || len(got) != 3 {
		t.Fatalf("targets %v, want domain %s, project %s, user %s", got, d.ID, pr.ID, u.ID)
	}
}

// A submission's event goes in with its task; in a batch every item has its event, a refused
// item with its code, and a batch refused as a whole records none.
func testAuditSubmissionsPerItem(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeUser, alice)
	e.server(project, "s1", true)
	e.server(project, "s2", true)
	req := event(kps.ActionKeyPairBatchAssociate, kps.TargetKeyPair)
	subs := []kps.TaskSubmission{resetOf(project, "kp", "s1"), resetOf(project, "kp", "s2"), resetOf(project, "kp", "missing")}
	for i := range subs {
		subs[i].Batch = true
		subs[i].Audit = req.For(kps.TargetServer, subs[i].ServerID)
		subs[i].Audit.TaskID = subs[i].ID
	}
	tasks, refused, err := e.s.SubmitTasks(e.ctx, subs, service.AdmitTask)
	must(t, err)
	if tasks[0] == nil || tasks[1] == nil || refused[2] == nil {
		t.Fatalf("tasks %v, refused %v", tasks, refused)
	}
	got := map[string]kps.AuditEvent{}
	for _, ev := range e.events(project) {
		got[ev.TargetID] = ev
	}
	if len(got) != 3 || got["s1"].TaskID != tasks[0].ID || got["s2"].TaskID != tasks[1].ID || got["s1"].Code != "" ||
		got["missing"].TaskID != "" || got["missing"].Code != kps.ErrServerNotFound {
		t.Fatalf("events by target: %+v", got)
	}

	// A single submission refused (the server is busy) records nothing; one accepted records its
	// task.
	single := resetOf(project, "kp", "s1")
	single.Audit = event(kps.ActionKeyPairAssociate, kps.TargetServer).For(kps.TargetServer, "s1")
	_, err = e.s.SubmitTask(e.ctx, single, service.AdmitTask)
	wantCode(t, err, kps.ErrServerBusy)
	e.server(project, "s3", true)
	single = resetOf(project, "kp", "s3")
	single.Audit = event(kps.ActionKeyPairAssociate, kps.TargetServer).For(kps.TargetServer, "s3")
	single.Audit.TaskID = single.ID
	task, err := e.s.SubmitTask(e.ctx, single, service.AdmitTask)
	must(t, err)
	evs := e.events(project)
	if len(evs) != 4 || evs[0].TargetID != "s3" || evs[0].TaskID != task.ID {
		t.Fatalf("events after the single submissions: %+v", evs)
	}
}

// The list is newest first, filtered by project, action, user, target and time, with its total.
func testAuditListFiltersAndPages(t *testing.T, e *env) {
	rec := func(projectID, action, user, target string) {
		ev := event(action, kps.TargetKeyPair)
		ev.ProjectID, ev.UserID, ev.TargetID = projectID, user, target
		must(t, e.s.RecordAudit(e.ctx, ev))
		e.clock.Advance(time.Second)
	}
	rec(project, kps.ActionKeyPairCreate, alice, "a")
	rec(project, kps.ActionKeyPairDelete, alice, "a")
	rec(project, kps.ActionKeyPairCreate, bob, "b")
	rec(otherProject, kps.ActionKeyPairCreate, alice, "a")
	rec("", kps.ActionAuthRefused, "", "admin")

	list := func(f kps.AuditFilter, p kps.Page) ([]string, int) {
		evs, total, err := e.s.ListAuditEvents(e.ctx, f, p)
		must(t, err)
		var out []string
		for _, ev := range evs {
			out = append(out, ev.Action+"/"+(ev.UserID + "-")[:1]+"/"+ev.TargetID)
		}
		return out, total
	}
	check := func(f kps.AuditFilter, p kps.Page, want string, wantTotal int) {
		t.Helper()
		got, total := list(f, p)
		if fmt.Sprint(got) != want || total != wantTotal {
			t.Fatalf("%+v %+v: %v (total %d), want %s (total %d)", f, p, got, total, want, wantTotal)
		}
	}
	all := kps.Page{Limit: 100}
	check(kps.AuditFilter{ProjectID: project}, all, "[keypair.create/b/b keypair.delete/a/a keypair.create/a/a]", 3)
	check(kps.AuditFilter{ProjectID: project}, kps.Page{Limit: 1, Offset: 1}, "[keypair.delete/a/a]", 3)
	check(kps.AuditFilter{ProjectID: project}, kps.Page{Limit: 1, Offset: 5}, "[]", 3)
	check(kps.AuditFilter{ProjectID: project, Action: kps.ActionKeyPairCreate}, all, "[keypair.create/b/b keypair.create/a/a]", 2)
	check(kps.AuditFilter{ProjectID: project, UserID: alice}, all, "[keypair.delete/a/a keypair.create/a/a]", 2)
	check(kps.AuditFilter{ProjectID: project, ResourceID: "b"}, all, "[keypair.create/b/b]", 1)
	check(kps.AuditFilter{ProjectID: project, Since: Epoch.Add(time.Second), Until: Epoch.Add(2 * time.Second)}, all, "[keypair.delete/a/a]", 1)
	check(kps.AuditFilter{ProjectID: ""}, all, "[auth.refused/-/admin]", 1)
}

// The retention sweep deletes what is older than the retention, and only that.
func testAuditPurge(t *testing.T, e *env) {
	must(t, e.s.RecordAudit(e.ctx, event(kps.ActionKeyPairCreate, kps.TargetKeyPair)))
	e.clock.Advance(48 * time.Hour)
	must(t, e.s.RecordAudit(e.ctx, event(kps.ActionKeyPairDelete, kps.TargetKeyPair)))
	n, err := e.s.PurgeAuditEvents(e.ctx, 24*time.Hour)
	must(t, err)
	if evs := e.events(project); n != 1 || len(evs) != 1 || evs[0].Action != kps.ActionKeyPairDelete {
		t.Fatalf("purged %d, left %+v", n, evs)
	}
}
