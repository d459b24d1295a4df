package kpsv3

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api/kpsv3/tasklist"
	"github.com/openkps/kps/internal/pgtest"
	"github.com/openkps/kps/service"
	"github.com/openkps/kps/store"
	"github.com/openkps/kps/store/storetest"
)

// countingReader is the real store's read path of the lists, counting the page reads that
// reach it. Wrapping the store costs the API nothing: the read model is given this reader by
// name, and the page cache keeps working.
type countingReader struct {
	kps.TaskListReader
	scans atomic.Int64
}

func (c *countingReader) ReadTaskList(ctx context.Context, projectID string, phases []kps.Phase, p kps.Page) (kps.TaskListRows, error) {
	c.scans.Add(1)
	return c.TaskListReader.ReadTaskList(ctx, projectID, phases, p)
}

// listEnv is a task store with tasks to list, the API reading it (on PostgreSQL through a
// second store, as another replica would) and a worker's view for changing the tasks.
type listEnv struct {
	t      *testing.T
	writer kps.Store
	reader *countingReader
	lists  *tasklist.Lists
	srv    *API
	db     *sql.DB // the same database, read apart from the store for the reference pages
	clock  *storetest.Clock
	n      int
}

const listProject = "0b7e4c2a91d34f5e8c6a2d1f3e5b7a90"

// openStores returns the writer's store and the reader's: one SQLite store (its only writer
// is this process), or two PostgreSQL stores on one schema; and the database for reading apart.
func openStores(t *testing.T, engine string, now func() time.Time) (kps.Store, kps.Store, *sql.DB) {
	open := func(dsn string) kps.Store {
		db, err := store.OpenPostgres(t.Context(), dsn, store.Options{Now: now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	raw := func(driver, dsn string) *sql.DB {
		db, err := sql.Open(driver, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	if engine == "postgres" {
		dsn := pgtest.Schema(t)
		return open(dsn), open(dsn), raw("pgx", dsn)
	}
	path := filepath.Join(t.TempDir(), "kps.db")
	db, err := store.OpenSQLite(t.Context(), path, store.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, db, raw("sqlite", "file:"+path+"?mode=ro")
}

func newListEnv(t *testing.T, engine string, cacheBytes int64) *listEnv {
	clock := storetest.NewClock(storetest.Epoch)
	w, r, db := openStores(t, engine, clock.Now)
	e := &listEnv{t: t, writer: w, reader: &countingReader{TaskListReader: r}, db: db, clock: clock}
	e.lists = tasklist.New(e.reader, cacheBytes)
	e.srv = New(Services{Lists: e.lists}, nil, nil)
	if err := w.CreateKeyPair(t.Context(), &kps.KeyPair{ProjectID: listProject, Name: "kp", Type: kps.TypeSSH,
		Scope: kps.ScopeDomain, UserID: "u", PublicKey: "ssh-ed25519 AAAA", Fingerprint: "f", Algorithm: "ED25519"}, kps.KeyPairQuota{}); err != nil {
		t.Fatal(err)
	}
	return e
}

// submit creates a server (its name with characters JSON escapes) and a READY task on it.
func (e *listEnv) submit() *kps.Task {
	e.t.Helper()
	e.n++
	id := fmt.Sprintf("s%03d", e.n)
	if err := e.writer.CreateServer(e.t.Context(), &kps.Server{ProjectID: listProject, ID: id, Name: id + ` <"&">` + "\u2028é",
		Address: "192.0.2.1", Port: 22, User: "root", SSHDConfig: kps.DefaultSSHDConfig, Credential: []byte("c"), ReachByAdmin: true}, 0); err != nil {
		e.t.Fatal(err)
	}
	e.clock.Advance(time.Millisecond)
	task, err := e.writer.SubmitTask(e.t.Context(), kps.TaskSubmission{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", e.n),
		ProjectID: listProject, UserID: "u", Operation: kps.OpReset, KeyPairName: "kp", ServerID: id}, service.AdmitTask)
	if err != nil {
		e.t.Fatal(err)
	}
	return task
}

func (e *listEnv) claim() *kps.Task {
	e.t.Helper()
	task, err := e.writer.ClaimTask(e.t.Context(), "w", 30*time.Second)
	if err != nil || task == nil {
		e.t.Fatalf("claim: %v, %v", task, err)
	}
	return task
}

func (e *listEnv) fail(task *kps.Task) {
	e.t.Helper()
	if err := e.writer.FinishTask(e.t.Context(), task, kps.TaskOutcome{ErrorCode: kps.TaskUnreachable,
		ErrorMsg: "Connection to <" + task.ServerID + "> refused.\n\tretry"}); err != nil {
		e.t.Fatal(err)
	}
}

// get calls the handler as the router would after authentication.
func (e *listEnv) get(failed bool, query string) []byte {
	e.t.Helper()
	path := "/v3/" + listProject + "/running-tasks"
	h := e.srv.listRunningTasks
	if failed {
		path, h = "/v3/"+listProject+"/failed-tasks", e.srv.listFailedTasks
	}
	w := httptest.NewRecorder()
	if err := h(w, httptest.NewRequest("GET", path+query, nil), &kps.Principal{ProjectID: listProject, UserID: "u"}, nil); err != nil {
		e.t.Fatalf("GET %s%s: %v", path, query, err)
	}
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json;charset=UTF-8" ||
		w.Header().Get("Content-Length") != fmt.Sprint(w.Body.Len()) {
		e.t.Fatalf("GET %s%s: %d %v", path, query, w.Code, w.Header())
	}
	return w.Body.Bytes()
}

// reference renders a page from the database read apart, without the store: the tasks of the
// list in §4.1 order (newest first, ties by ID), cut to the page, as the reference structs
// json.Marshal renders.
func (e *listEnv) reference(failed bool, p kps.Page) []byte {
	t := e.t
	t.Helper()
	phases := "'READY', 'RUNNING'"
	if failed {
		phases = "'FAILED'"
	}
	rows, err := e.db.QueryContext(t.Context(), `SELECT id, operation, phase, created, server_id, server_name,
    keypair_name, error_code, error_msg FROM tasks
WHERE project_id = '`+listProject+`' AND phase IN (`+phases+`) ORDER BY created DESC, id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var running []tasklist.RunningTask
	var failures []tasklist.FailedTask
	total := 0
	for ; rows.Next(); total++ {
		var id, op, phase, serverID, serverName, keyPair, code, msg string
		var created int64
		if err := rows.Scan(&id, &op, &phase, &created, &serverID, &serverName, &keyPair, &code, &msg); err != nil {
			t.Fatal(err)
		}
		if total < p.Offset || total >= p.Offset+p.Limit {
			continue
		}
		if serverName == "" {
			serverName = serverID
		}
		status, taskTime := kps.Status(kps.Phase(phase), kps.Operation(op)), strconv.FormatInt(created, 10)
		running = append(running, tasklist.RunningTask{TaskID: id, OperateType: status, TaskTime: taskTime,
			ServerName: serverName, ServerID: serverID, KeyPairName: keyPair})
		failures = append(failures, tasklist.FailedTask{TaskID: id, OperateType: status, TaskTime: taskTime,
			TaskErrorCode: code, TaskErrorMsg: msg, ServerName: serverName, ServerID: serverID, KeyPairName: keyPair})
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var b []byte
	if failed {
		b, err = json.Marshal(struct {
			Total int32                 `json:"total"`
			Tasks []tasklist.FailedTask `json:"tasks"`
		}{int32(total), append([]tasklist.FailedTask{}, failures...)})
	} else {
		b, err = json.Marshal(struct {
			Total int32                  `json:"total"`
			Tasks []tasklist.RunningTask `json:"tasks"`
		}{int32(total), append([]tasklist.RunningTask{}, running...)})
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var listQueries = []struct {
	query string
	page  kps.Page
}{
	{"", kps.Page{Limit: 1000}},
	{"?limit=2&offset=1", kps.Page{Limit: 2, Offset: 1}},
	{"?offset=50", kps.Page{Limit: 1000, Offset: 50}},
}

// wantCurrent checks that every page of both lists is what a fresh read renders, byte for
// byte, and that asking again is answered from the cache.
func (e *listEnv) wantCurrent(step string) {
	e.t.Helper()
	for _, failed := range []bool{true, false} {
		for _, q := range listQueries {
			want := e.reference(failed, q.page)
			if got := e.get(failed, q.query); !bytes.Equal(got, want) {
				e.t.Fatalf("%s: failed=%v %q:\n got %s\nwant %s", step, failed, q.query, got, want)
			}
			scans := e.reader.scans.Load()
			if got := e.get(failed, q.query); !bytes.Equal(got, want) || e.reader.scans.Load() != scans {
				e.t.Fatalf("%s: failed=%v %q: the second read was not served from the cache", step, failed, q.query)
			}
		}
	}
}

// TestTaskListCache: pages are served from the cache until the project's tasks change, and
// after every kind of change the next response is the current list, on both engines (on
// PostgreSQL the changes go through another store, as from another replica).
func TestTaskListCache(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			e := newListEnv(t, engine, 0)
			ctx := t.Context()
			e.wantCurrent("empty")

			first := e.submit()
			e.wantCurrent("submit")
			running := e.claim()
			e.wantCurrent("claim")
			scans := e.reader.scans.Load()
			if err := e.writer.ExtendLease(ctx, running, 30*time.Second); err != nil {
				t.Fatal(err)
			}
			e.get(false, "")
			if e.reader.scans.Load() != scans {
				t.Fatal("a lease renewal invalidated the running list")
			}
			e.fail(running)
			e.wantCurrent("finish as FAILED")
			for range 4 {
				e.submit()
				e.fail(e.claim())
			}
			e.wantCurrent("four more failures")
			e.submit()
			if err := e.writer.FinishTask(ctx, e.claim(), kps.TaskOutcome{Success: true, PublicKey: "pk"}); err != nil {
				t.Fatal(err)
			}
			e.wantCurrent("finish as SUCCESS")
			e.submit()
			e.wantCurrent("submit again")
			if err := e.writer.FinishTask(ctx, e.claim(), kps.TaskOutcome{ErrorCode: kps.TaskInterrupted,
				ErrorMsg: "Task interrupted by a service restart."}); err != nil {
				t.Fatal(err)
			}
			e.wantCurrent("claim and fail at once")
			e.submit()
			e.claim()
			e.wantCurrent("claim again")
			e.clock.Advance(time.Minute)
			if n, err := e.writer.FailExpiredTasks(ctx, false); n != 1 || err != nil {
				t.Fatalf("sweeper: %d, %v", n, err)
			}
			e.wantCurrent("sweep an expired lease")
			e.submit()
			e.claim()
			if n, err := e.writer.FailExpiredTasks(ctx, true); n != 1 || err != nil {
				t.Fatalf("start sweep: %d, %v", n, err)
			}
			e.wantCurrent("fail all running tasks")
			if err := e.writer.DeleteFailedTask(ctx, listProject, first.ID); err != nil {
				t.Fatal(err)
			}
			e.wantCurrent("delete a failed task")
			e.clock.Advance(8 * 24 * time.Hour)
			if n, err := e.writer.PurgeSucceededTasks(ctx, 7*24*time.Hour); n != 1 || err != nil {
				t.Fatalf("purge: %d, %v", n, err)
			}
			e.wantCurrent("purge")
			if err := e.writer.DeleteFailedTasks(ctx, listProject); err != nil {
				t.Fatal(err)
			}
			e.wantCurrent("delete all failed tasks")
			if n, _ := e.lists.CachedPages(); n == 0 {
				t.Fatal("nothing cached")
			}
		})
	}
}

// TestTaskListCacheUnderChanges reads pages while tasks fail concurrently: once a change has
// returned, no read that starts afterwards may show the list from before it.
func TestTaskListCacheUnderChanges(t *testing.T) {
	t.Parallel()
	e := newListEnv(t, "sqlite", 0)
	const changes = 40
	var done atomic.Int64 // failures that have returned
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				min := done.Load()
				var out struct{ Total int }
				if err := json.Unmarshal(e.get(true, "?limit=1"), &out); err != nil {
					t.Error(err)
					return
				}
				if int64(out.Total) < min {
					t.Errorf("a read after %d failures shows %d", min, out.Total)
					return
				}
			}
		})
	}
	for range changes {
		e.submit()
		e.fail(e.claim())
		done.Add(1)
	}
	close(stop)
	wg.Wait()
	e.wantCurrent("after the storm")
}

// TestTaskListCacheIsBounded: the cache keeps at most its byte budget, evicting the least
// recently used pages, and a disabled cache serves the same bytes from the database.
func TestTaskListCacheIsBounded(t *testing.T) {
	t.Parallel()
	e := newListEnv(t, "sqlite", 16<<10)
	for range 20 {
		e.submit()
		e.fail(e.claim())
	}
	for off := range 20 {
		e.get(true, fmt.Sprintf("?limit=3&offset=%d", off))
	}
	n, size := e.lists.CachedPages()
	if size > 16<<10 || n == 0 || n == 20 {
		t.Fatalf("%d pages of %d bytes kept in a 16 KiB cache", n, size)
	}
	// The most recent page is kept; the first was evicted.
	scans := e.reader.scans.Load()
	e.get(true, "?limit=3&offset=19")
	if e.reader.scans.Load() != scans {
		t.Fatal("the most recent page was evicted")
	}
	e.get(true, "?limit=3&offset=0")
	if e.reader.scans.Load() != scans+1 {
		t.Fatal("the least recently used page was kept")
	}

	off := newListEnv(t, "sqlite", -1)
	for range 3 {
		off.submit()
		off.fail(off.claim())
	}
	if off.lists.Caching() {
		t.Fatal("a negative budget still caches")
	}
	off.wantCurrentUncached()
}

func (e *listEnv) wantCurrentUncached() {
	e.t.Helper()
	for _, q := range listQueries {
		if got, want := e.get(true, q.query), e.reference(true, q.page); !bytes.Equal(got, want) {
			e.t.Fatalf("uncached %q:\n got %s\nwant %s", q.query, got, want)
		}
	}
}
