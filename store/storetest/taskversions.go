package storetest

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/openkps/kps"
)

// The task lists' read path (kps.TaskListReader): ReadTaskList shows what the tasks are, and
// TaskVersion moves with every change a list could show — the API serves cached pages for as
// long as it does not.
var taskVersionTests = map[string]func(*testing.T, *env){
	"ScanMatchesTasks":             testScanMatchesTasks,
	"ScanKeepsBytes":               testScanKeepsBytes,
	"ScanLongestValues":            testScanLongestValues,
	"VersionMovesWithEveryChange":  testVersionMovesWithEveryChange,
	"VersionMovesWithProjectsGone": testVersionMovesWithProjectsGone,
	"ScanVersionIsTheCurrentOne":   testScanVersionIsCurrent,
}

// scanned is one page as ReadTaskList returns it, the rows copied out.
type scanned struct {
	rows    []map[string]string
	total   int
	version int64
}

func (e *env) scan(projectID string, phases []kps.Phase, p kps.Page) scanned {
	e.t.Helper()
	rows, err := e.s.ReadTaskList(e.ctx, projectID, phases, p)
	must(e.t, err)
	defer rows.Close()
	out := scanned{version: rows.Version()}
	for rows.Next() {
		r := rows.Row()
		out.rows = append(out.rows, map[string]string{"id": string(r.ID), "operation": string(r.Operation),
			"phase": string(r.Phase), "created": string(r.Created), "server_id": string(r.ServerID),
			"server_name": string(r.ServerName), "keypair_name": string(r.KeyPairName),
			"error_code": string(r.ErrorCode), "error_msg": string(r.ErrorMsg)})
	}
	must(e.t, rows.Err())
	out.total = rows.Total()
	return out
}

// listTasks is a page of the project's tasks in phases (all of them when none are given) as
// ReadTaskList returns it, each row as a task with the members a list shows, and the total.
func (e *env) listTasks(projectID string, phases []kps.Phase, p kps.Page) ([]kps.Task, int, error) {
	if len(phases) == 0 {
		phases = []kps.Phase{kps.PhaseReady, kps.PhaseRunning, kps.PhaseSuccess, kps.PhaseFailed}
	}
	rows, err := e.s.ReadTaskList(e.ctx, projectID, phases, p)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	tasks := []kps.Task{}
	for rows.Next() {
		r := rows.Row()
		ms, err := strconv.ParseInt(string(r.Created), 10, 64)
		if err != nil {
			return nil, 0, err
		}
		tasks = append(tasks, kps.Task{ID: string(r.ID), ProjectID: projectID, Operation: kps.Operation(r.Operation),
			Phase: kps.Phase(r.Phase), Created: time.UnixMilli(ms).UTC(), ServerID: string(r.ServerID),
			ServerName: string(r.ServerName), KeyPairName: string(r.KeyPairName), ErrorCode: string(r.ErrorCode),
			ErrorMsg: string(r.ErrorMsg)})
	}
	return tasks, rows.Total(), rows.Err()
}

func (e *env) version(projectID string) int64 {
	e.t.Helper()
	v, err := e.s.TaskVersion(e.ctx, projectID)
	must(e.t, err)
	return v
}

// testScanMatchesTasks compares ReadTaskList with the tasks themselves (Task, one by one,
// sorted and cut into pages here) on every page shape of §4.1, for both lists, with tasks
// created in the same millisecond (the ID tie-break) and across several.
func testScanMatchesTasks(t *testing.T, e *env) {
	if s := e.scan(project, kps.FailedPhases, kps.Page{Limit: 10}); len(s.rows) != 0 || s.total != 0 {
		t.Fatalf("empty project: %+v", s)
	}
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	// Another project's tasks never show.
	e.keyPair(otherProject, "kp", kps.ScopeDomain, alice)
	e.server(otherProject, "x", true)
	e.run(resetOf(otherProject, "kp", "x"), kps.TaskOutcome{ErrorCode: kps.TaskUnreachable, ErrorMsg: "x"})
	// Claims take the oldest READY task, so the tasks left READY come last.
	var ids []string
	for i := range 12 {
		id := fmt.Sprintf("s%02d", i)
		e.server(project, id, true)
		if i%3 == 0 {
			e.clock.Advance(time.Millisecond)
		}
		switch {
		case i >= 9:
			ids = append(ids, e.submit(resetOf(project, "kp", id)).ID)
		case i%3 == 2:
			ids = append(ids, e.claim(e.submit(replaceOf(project, "kp", id)).ID).ID)
		default:
			ids = append(ids, e.run(resetOf(project, "kp", id), kps.TaskOutcome{ErrorCode: kps.TaskUnreachable, ErrorMsg: "down " + id}).ID)
		}
	}

	for _, phases := range [][]kps.Phase{kps.FailedPhases, kps.RunningPhases} {
		var all []*kps.Task
		for _, id := range ids {
			if task := e.task(project, id); slices.Contains(phases, task.Phase) {
				all = append(all, task)
			}
		}
		slices.SortFunc(all, func(a, b *kps.Task) int {
			return cmp.Or(-a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID))
		})
		for _, p := range []kps.Page{{Limit: 1000}, {Limit: 1}, {Limit: 2, Offset: 1}, {Limit: 4, Offset: 3},
			{Limit: 5, Offset: 5}, {Limit: 5, Offset: 6}, {Limit: 1000, Offset: 2147483647}} {
			list := all[min(p.Offset, len(all)):min(p.Offset+p.Limit, len(all))]
			s := e.scan(project, phases, p)
			if s.total != len(all) || len(s.rows) != len(list) {
				t.Fatalf("%v %+v: scan %d rows of %d, want %d of %d", phases, p, len(s.rows), s.total, len(list), len(all))
			}
			for i, task := range list {
				want := map[string]string{"id": task.ID, "operation": string(task.Operation), "phase": string(task.Phase),
					"created": task.TaskTime(), "server_id": task.ServerID, "server_name": task.ServerName,
					"keypair_name": task.KeyPairName, "error_code": task.ErrorCode, "error_msg": task.ErrorMsg}
				if fmt.Sprint(s.rows[i]) != fmt.Sprint(want) {
					t.Fatalf("%v %+v row %d: scan %v, task %v", phases, p, i, s.rows[i], want)
				}
			}
		}
	}
	if s := e.scan(project, kps.FailedPhases, kps.Page{Limit: 1000}); s.total != 6 {
		t.Fatalf("failed total %d, want 6", s.total)
	}
}

// testScanKeepsBytes: names and messages come back byte for byte, whatever they hold.
func testScanKeepsBytes(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	s := &kps.Server{ProjectID: project, ID: "odd", Name: `<b>"&'\` + "\u2028 naïve \t", Address: "192.0.2.10",
		Port: 22, User: "root", SSHDConfig: kps.DefaultSSHDConfig, Credential: []byte("c"), ReachByAdmin: true}
	must(t, e.s.CreateServer(e.ctx, s, 0))
	msg := "line 1\nline 2 \x01 «»"
	e.run(resetOf(project, "kp", "odd"), kps.TaskOutcome{ErrorCode: kps.TaskRemoteFailed, ErrorMsg: msg})
	got := e.scan(project, kps.FailedPhases, kps.Page{Limit: 10})
	if len(got.rows) != 1 || got.rows[0]["server_name"] != s.Name || got.rows[0]["error_msg"] != msg {
		t.Fatalf("rows %q", got.rows)
	}
	if _, err := strconv.ParseInt(got.rows[0]["created"], 10, 64); err != nil {
		t.Fatalf("created %q", got.rows[0]["created"])
	}
}

// testScanLongestValues: a failed task with the longest server name and ID the API accepts (255
// four-byte characters; 255 bytes) and a message of 8,000 bytes that a host could provoke is
// recorded and listed, by FinishTask as by the sweeper's path. The names come back
// whole; the message is cut to at most 1,000 bytes at a character boundary, marked with "…".
// The text is random, so that no engine can compress it: on PostgreSQL the failed-task index
// holds these columns and refuses an entry over about 2,700 bytes.
func testScanLongestValues(t *testing.T, e *env) {
	rnd := rand.New(rand.NewPCG(1, 2))
	var name, msg, id strings.Builder
	for range 255 {
		name.WriteRune(rune(0x1F300 + rnd.IntN(0x300)))
		id.WriteByte(byte('!' + rnd.IntN('~'-'!'+1)))
	}
	for msg.Len() < 8000 {
		msg.WriteRune(rune(0x4E00 + rnd.IntN(0x5000)))
		msg.WriteByte(byte('a' + rnd.IntN(26)))
	}
	keyPair := strings.Repeat("k", 64)
	e.keyPair(project, keyPair, kps.ScopeDomain, alice)
	for _, serverID := range []string{id.String(), id.String()[:254] + "-"} {
		must(t, e.s.CreateServer(e.ctx, &kps.Server{ProjectID: project, ID: serverID, Name: name.String(),
			Address: "192.0.2.10", Port: 22, User: "root", SSHDConfig: kps.DefaultSSHDConfig, Credential: []byte("c"),
			ReachByAdmin: true}, 0))
	}
	e.run(resetOf(project, keyPair, id.String()), kps.TaskOutcome{ErrorCode: kps.TaskRemoteFailed, ErrorMsg: msg.String()})
	lost := e.claim(e.submit(resetOf(project, keyPair, id.String()[:254]+"-")).ID)
	must(t, e.s.FinishTask(e.ctx, lost, kps.TaskOutcome{ErrorCode: kps.TaskInterrupted, ErrorMsg: msg.String()}))
	if len(lost.ErrorMsg) > 1000 || lost.ErrorMsg != e.task(project, lost.ID).ErrorMsg {
		t.Fatalf("FinishTask left %d bytes in the task, the store %d", len(lost.ErrorMsg),
			len(e.task(project, lost.ID).ErrorMsg))
	}
	got := e.scan(project, kps.FailedPhases, kps.Page{Limit: 10})
	if got.total != 2 || len(got.rows) != 2 {
		t.Fatalf("%d rows of %d, want 2", len(got.rows), got.total)
	}
	for _, r := range got.rows {
		m := r["error_msg"]
		if r["server_name"] != name.String() || r["keypair_name"] != keyPair || len(r["server_id"]) != 255 {
			t.Errorf("names changed: %q, %q, %q", r["server_name"], r["keypair_name"], r["server_id"])
		}
		if len(m) > 1000 || len(m) < 990 || !utf8.ValidString(m) || !strings.HasSuffix(m, "…") ||
			!strings.HasPrefix(msg.String(), strings.TrimSuffix(m, "…")) {
			t.Errorf("message of %d bytes, valid UTF-8 %v: %q…", len(m), utf8.ValidString(m), m[max(0, len(m)-12):])
		}
	}
}

// testVersionMovesWithEveryChange makes each kind of change to the project's tasks and checks
// that the project's version grew and another project's did not; a lease renewal and a refused
// submission change nothing a list shows and leave it alone.
func testVersionMovesWithEveryChange(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.keyPair(otherProject, "kp", kps.ScopeDomain, alice)
	e.server(otherProject, "x", true)
	e.run(resetOf(otherProject, "kp", "x"), kps.TaskOutcome{ErrorCode: kps.TaskUnreachable, ErrorMsg: "x"})
	for _, id := range []string{"a", "b", "c", "d", "e", "f"} {
		e.server(project, id, true)
	}

	step := func(what string, moves bool, change func()) {
		t.Helper()
		before, other := e.version(project), e.version(otherProject)
		change()
		after := e.version(project)
		if moves && after <= before {
			t.Fatalf("%s: version %d → %d, want it to grow", what, before, after)
		}
		if !moves && after != before {
			t.Fatalf("%s: version %d → %d, want it unchanged", what, before, after)
		}
		if got := e.version(otherProject); got != other {
			t.Fatalf("%s: the other project's version moved %d → %d", what, other, got)
		}
	}
	var ready, running *kps.Task
	step("submit", true, func() { ready = e.submit(resetOf(project, "kp", "a")) })
	step("refused submit", false, func() {
		if err := e.submitErr(resetOf(project, "kp", "a")); kps.ErrorCode(err) != kps.ErrServerBusy {
			t.Fatalf("second task for a busy server: %v", err)
		}
	})
	step("claim", true, func() { running = e.claim(ready.ID) })
	step("lease renewal", false, func() { must(t, e.s.ExtendLease(e.ctx, running, lease)) })
	step("finish failed", true, func() {
		must(t, e.s.FinishTask(e.ctx, running, kps.TaskOutcome{ErrorCode: kps.TaskUnreachable, ErrorMsg: "x"}))
	})
	step("finish succeeded", true, func() {
		t := e.claim(e.submit(resetOf(project, "kp", "b")).ID)
		before := e.version(project)
		must(e.t, e.s.FinishTask(e.ctx, t, kps.TaskOutcome{Success: true, PublicKey: "pk"}))
		if e.version(project) <= before {
			e.t.Fatal("finishing a task as SUCCESS did not move the version")
		}
	})
	step("claim and fail at once (a lost caller credential)", true, func() {
		r := e.claim(e.submit(replaceOf(project, "kp", "c")).ID)
		before := e.version(project)
		must(t, e.s.FinishTask(e.ctx, r, kps.TaskOutcome{ErrorCode: kps.TaskInterrupted, ErrorMsg: "lost"}))
		if e.version(project) <= before {
			t.Fatal("failing a claimed task did not move the version")
		}
	})
	step("sweep an expired lease", true, func() {
		e.claim(e.submit(resetOf(project, "kp", "d")).ID)
		e.clock.Advance(lease + time.Second)
		before := e.version(project)
		n, err := e.s.FailExpiredTasks(e.ctx, false)
		must(t, err)
		if n != 1 || e.version(project) <= before {
			t.Fatalf("sweeper failed %d tasks; version %d → %d", n, before, e.version(project))
		}
	})
	step("sweep with nothing expired", false, func() {
		n, err := e.s.FailExpiredTasks(e.ctx, false)
		must(t, err)
		if n != 0 {
			t.Fatalf("sweeper failed %d tasks", n)
		}
	})
	step("fail every running task at start", true, func() {
		e.claim(e.submit(resetOf(project, "kp", "e")).ID)
		before := e.version(project)
		n, err := e.s.FailExpiredTasks(e.ctx, true)
		must(t, err)
		if n != 1 || e.version(project) <= before {
			t.Fatalf("start sweep failed %d tasks; version %d → %d", n, before, e.version(project))
		}
	})
	failed := e.scan(project, kps.FailedPhases, kps.Page{Limit: 1000})
	if failed.total != 4 {
		t.Fatalf("%d failed tasks, want 4", failed.total)
	}
	step("delete a failed task", true, func() { must(t, e.s.DeleteFailedTask(e.ctx, project, failed.rows[0]["id"])) })
	step("delete a missing failed task", false, func() {
		wantCode(t, e.s.DeleteFailedTask(e.ctx, project, failed.rows[0]["id"]), kps.ErrFailedNotFound)
	})
	step("delete all failed tasks", true, func() { must(t, e.s.DeleteFailedTasks(e.ctx, project)) })
	step("delete all failed tasks again", false, func() { must(t, e.s.DeleteFailedTasks(e.ctx, project)) })
	step("purge succeeded tasks", true, func() {
		e.clock.Advance(8 * 24 * time.Hour)
		n, err := e.s.PurgeSucceededTasks(e.ctx, 7*24*time.Hour)
		must(t, err)
		if n != 1 {
			t.Fatalf("purged %d, want 1", n)
		}
	})
	step("purge with nothing to purge", false, func() {
		_, err := e.s.PurgeSucceededTasks(e.ctx, 7*24*time.Hour)
		must(t, err)
	})
}

// testVersionMovesWithProjectsGone: deleting a project, or a domain, deletes its finished tasks;
// their lists changed too.
func testVersionMovesWithProjectsGone(t *testing.T, e *env) {
	d, _ := e.domain("gone")
	withTasks := func(p string) {
		e.keyPair(p, "kp", kps.ScopeDomain, alice)
		e.server(p, "s", true)
		e.run(resetOf(p, "kp", "s"), kps.TaskOutcome{ErrorCode: kps.TaskUnreachable, ErrorMsg: "x"})
		must(t, e.s.DeleteServer(e.ctx, p, "s"))
		must(t, e.s.DeleteKeyPair(e.ctx, p, "kp", alice))
	}
	p1, p2 := e.project(d.ID, "one"), e.project(d.ID, "two")
	withTasks(p1.ID)
	withTasks(p2.ID)
	v1, v2 := e.version(p1.ID), e.version(p2.ID)
	must(t, e.s.DeleteProject(e.ctx, p1.ID))
	if e.version(p1.ID) <= v1 || e.version(p2.ID) != v2 {
		t.Fatalf("delete project: versions %d → %d and %d → %d", v1, e.version(p1.ID), v2, e.version(p2.ID))
	}
	if s := e.scan(p1.ID, kps.FailedPhases, kps.Page{Limit: 10}); s.total != 0 {
		t.Fatalf("deleted project still lists %d failed tasks", s.total)
	}
	_, err := e.s.UpdateDomain(e.ctx, d.ID, kps.DomainUpdate{Enabled: ptr(false)})
	must(t, err)
	must(t, e.s.DeleteDomain(e.ctx, d.ID))
	if e.version(p2.ID) <= v2 {
		t.Fatalf("delete domain: version %d → %d", v2, e.version(p2.ID))
	}
}

// testScanVersionIsCurrent: the version ReadTaskList returns is the project's version when nothing
// changes in between, and a page read after a change carries a newer version and shows it.
func testScanVersionIsCurrent(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.server(project, "a", true)
	first := e.scan(project, kps.FailedPhases, kps.Page{Limit: 10})
	if first.version != e.version(project) {
		t.Fatalf("scan version %d, TaskVersion %d", first.version, e.version(project))
	}
	e.run(resetOf(project, "kp", "a"), kps.TaskOutcome{ErrorCode: kps.TaskUnreachable, ErrorMsg: "x"})
	second := e.scan(project, kps.FailedPhases, kps.Page{Limit: 10})
	if second.version <= first.version || second.total != 1 || second.version != e.version(project) {
		t.Fatalf("after a failure: version %d → %d (now %d), total %d", first.version, second.version,
			e.version(project), second.total)
	}
}
