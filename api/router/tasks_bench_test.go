package router

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api/kpsv3/tasklist"
	"github.com/openkps/kps/iam"
	"github.com/openkps/kps/internal/pgtest"
	"github.com/openkps/kps/store"
)

// The failed-task list's hot path (issue 7 part 2), in process: a project with
// KPS_BENCH_FAILED_TASKS (default 100,000) failed tasks on SQLite (on PostgreSQL with
// KPS_BENCH_ENGINE=postgres and KPS_TEST_POSTGRES), a token for it.
//
//	go test -run '^$' -bench 'TaskList' -benchtime 2s ./api/router
//
// BenchmarkTaskListRender and BenchmarkTaskListReference are the uncached read-and-encode
// (the read model's, and the same rows through the item structs and encoding/json); BenchmarkTaskListHandler is one
// request through the whole handler (token check included) with and without the page cache;
// BenchmarkTaskListHTTP serves many clients over loopback HTTP and compares with a bare
// net/http handler writing the same bytes. None of them asserts a timing.

const benchPassword = "bench-admin-password"

// seedFailedPostgres is seedFailed for PostgreSQL (KPS_BENCH_ENGINE=postgres).
const seedFailedPostgres = `INSERT INTO tasks (id, project_id, operation, phase, server_id, server_name,
    keypair_name, public_key, created, updated, error_code, error_msg)
SELECT lpad(to_hex(g), 8, '0') || '-5e4f-4a3b-8c2d-' || lpad(g::text, 12, '0'), $1, 'REPLACE', 'FAILED',
    'web-' || g, 'web-' || g || ' (frontend)', 'web-prod', 'ssh-ed25519 AAAA', 1717172000000 + g,
    1717172000000 + g, 'KPS.6603', 'SSH authentication as ''deploy'' on web-' || g || ':22 failed: no supported methods remain.'
FROM generate_series(1, $2::bigint) g`

// seedFailed inserts n failed tasks of project into the SQLite database at path, generated in
// the database. Items look like the spec's example (about 280 bytes each when listed).
const seedFailed = `WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ?2)
INSERT INTO tasks (id, project_id, operation, phase, server_id, server_name, keypair_name,
    public_key, created, updated, error_code, error_msg)
SELECT printf('%08x-5e4f-4a3b-8c2d-%012d', n, n), ?1, 'REPLACE', 'FAILED', 'web-' || n,
    'web-' || n || ' (frontend)', 'web-prod', 'ssh-ed25519 AAAA', 1717172000000 + n, 1717172000000 + n,
    'KPS.6603', 'SSH authentication as ''deploy'' on web-' || n || ':22 failed: no supported methods remain.'
FROM g`

type benchList struct {
	srv     http.Handler
	lists   *tasklist.Lists // the read model without a cache
	db      *store.DB
	token   string
	project string
	failed  int
}

func benchFailedTasks() int {
	if n, err := strconv.Atoi(os.Getenv("KPS_BENCH_FAILED_TASKS")); err == nil && n > 0 {
		return n
	}
	return 100_000
}

// newBenchList bootstraps a service, takes a token for its project, seeds the failed tasks
// and returns API servers on it: one with the page cache, one without.
func newBenchList(b *testing.B) (cached, uncached *benchList) {
	b.Helper()
	ctx := context.Background()
	dir := b.TempDir()
	path := filepath.Join(dir, "kps.db")
	postgres := os.Getenv("KPS_BENCH_ENGINE") == "postgres"
	var dsn string
	if postgres {
		dsn = pgtest.Schema(b)
	}
	open := func() (*store.DB, *iam.Service) {
		var db *store.DB
		var err error
		if postgres {
			db, err = store.OpenPostgres(ctx, dsn, store.Options{})
		} else {
			db, err = store.OpenSQLite(ctx, path, store.Options{})
		}
		if err != nil {
			b.Fatal(err)
		}
		return db, &iam.Service{Store: db, Versions: db, Params: iam.Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1}, Region: "local-1"}
	}
	db, ids := open()
	if _, err := ids.Bootstrap(ctx, dir, "local-1", benchPassword); err != nil {
		b.Fatal(err)
	}
	token, body, err := ids.IssueToken(ctx, iam.IssueRequest{Method: iam.MethodPassword, UserName: "admin",
		UserDomainName: iam.BootstrapDomain, Password: benchPassword,
		Scope: iam.Scope{Kind: iam.ScopeProject, ProjectName: "local-1", DomainName: iam.BootstrapDomain}})
	if err != nil {
		b.Fatal(err)
	}
	project := body.Project.ID
	db.Close()

	n := benchFailedTasks()
	driver, source, seed := "sqlite", path, seedFailed
	if postgres {
		driver, source, seed = "pgx", dsn, seedFailedPostgres
	}
	raw, err := sql.Open(driver, source)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := raw.ExecContext(ctx, seed, project, n); err != nil {
		b.Fatal(err)
	}
	if _, err := raw.ExecContext(ctx, "ANALYZE"); err != nil {
		b.Fatal(err)
	}
	raw.Close()

	db, ids = open()
	b.Cleanup(func() { db.Close() })
	deps := Deps{Identity: ids, Tokens: ids, Manager: ids, Reads: db, TaskLists: db, Ping: db.Ping}
	lists := tasklist.New(db, -1)
	cached = &benchList{srv: New(Config{}, deps), lists: lists, db: db, token: token, project: project, failed: n}
	uncached = &benchList{srv: New(Config{TaskListCacheBytes: -1}, deps), lists: lists, db: db, token: token, project: project, failed: n}
	return cached, uncached
}

func (l *benchList) request(query string) *http.Request {
	r := httptest.NewRequest("GET", "/v3/"+l.project+"/failed-tasks"+query, nil)
	r.Header.Set("X-Auth-Token", l.token)
	r.RemoteAddr = "127.0.0.1:40000"
	return r
}

// discard is a ResponseWriter that keeps nothing, so that a benchmark measures the handler.
type discard struct {
	h      http.Header
	status int
	n      int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) WriteHeader(status int)      { d.status = status }
func (d *discard) Write(p []byte) (int, error) { d.n += len(p); return len(p), nil }

var benchQueries = []struct{ name, query string }{
	{"limit=1000", "?limit=1000"},
	{"limit=10", "?limit=10"},
	{"limit=1000,last-page", "?limit=1000&offset=%d"},
}

func (l *benchList) query(q string) string {
	if q == "?limit=1000&offset=%d" {
		return fmt.Sprintf(q, max(l.failed-1000, 0))
	}
	return q
}

// page is the page a benchmark query asks for.
func (l *benchList) page(b *testing.B, q string) kps.Page {
	u, err := url.Parse(l.query(q))
	if err != nil {
		b.Fatal(err)
	}
	page, err := kps.ParsePage(u.Query().Get("limit"), u.Query().Has("limit"), u.Query().Get("offset"), u.Query().Has("offset"), 1000)
	if err != nil {
		b.Fatal(err)
	}
	return page
}

func BenchmarkTaskListRender(b *testing.B) {
	_, l := newBenchList(b)
	for _, q := range benchQueries {
		b.Run(q.name, func(b *testing.B) {
			page := l.page(b, q.query)
			for b.Loop() {
				body, err := l.lists.Page(context.Background(), l.project, true, page, nil)
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(len(body)))
			}
		})
	}
}

// BenchmarkTaskListReference is the same page through the item structs and encoding/json:
// what the hand-written encoder saves.
func BenchmarkTaskListReference(b *testing.B) {
	_, l := newBenchList(b)
	for _, q := range benchQueries {
		b.Run(q.name, func(b *testing.B) {
			page := l.page(b, q.query)
			for b.Loop() {
				rows, err := l.db.ReadTaskList(context.Background(), l.project, kps.FailedPhases, page)
				if err != nil {
					b.Fatal(err)
				}
				out := []tasklist.FailedTask{}
				for rows.Next() {
					t := rows.Row()
					name := string(t.ServerName)
					if name == "" {
						name = string(t.ServerID)
					}
					out = append(out, tasklist.FailedTask{TaskID: string(t.ID), OperateType: string(t.Phase) + "_" + string(t.Operation),
						TaskTime: string(t.Created), TaskErrorCode: string(t.ErrorCode), TaskErrorMsg: string(t.ErrorMsg),
						ServerName: name, ServerID: string(t.ServerID), KeyPairName: string(t.KeyPairName)})
				}
				total := rows.Total()
				if err := rows.Close(); err != nil || rows.Err() != nil {
					b.Fatal(err, rows.Err())
				}
				body, err := json.Marshal(struct {
					Total int32                 `json:"total"`
					Tasks []tasklist.FailedTask `json:"tasks"`
				}{int32(total), out})
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(len(body)))
			}
		})
	}
}

// BenchmarkTaskListHandler is one whole request (routing, token validation, roles, the list)
// without the network.
func BenchmarkTaskListHandler(b *testing.B) {
	cached, uncached := newBenchList(b)
	for _, c := range []struct {
		name string
		l    *benchList
	}{{"cached", cached}, {"uncached", uncached}} {
		for _, q := range benchQueries {
			b.Run(c.name+"/"+q.name, func(b *testing.B) {
				h := c.l.srv
				r := c.l.request(c.l.query(q.query))
				for b.Loop() {
					w := &discard{h: http.Header{}}
					h.ServeHTTP(w, r)
					if w.status != http.StatusOK {
						b.Fatalf("status %d", w.status)
					}
					b.SetBytes(int64(w.n))
				}
			})
		}
	}
}

// BenchmarkTaskListHTTP has 8×GOMAXPROCS clients request the first page of 1,000 over
// loopback HTTP; "bare" is a plain net/http handler writing the same bytes, the limit the
// issue compares with. The req/s metric is the throughput.
func BenchmarkTaskListHTTP(b *testing.B) {
	cached, uncached := newBenchList(b)
	w := &discard{h: http.Header{}}
	cached.srv.ServeHTTP(w, cached.request("?limit=1000"))
	page, err := cached.lists.Page(context.Background(), cached.project, true, kps.Page{Limit: 1000}, nil)
	if err != nil {
		b.Fatal(err)
	}
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
		w.Header().Set("Content-Length", strconv.Itoa(len(page)))
		w.Write(page)
	})
	for _, c := range []struct {
		name string
		h    http.Handler
		l    *benchList
	}{{"bare", bare, cached}, {"cached", cached.srv, cached}, {"uncached", uncached.srv, uncached}} {
		b.Run(c.name, func(b *testing.B) {
			ts := httptest.NewServer(c.h)
			defer ts.Close()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
			defer client.CloseIdleConnections()
			url := ts.URL + "/v3/" + c.l.project + "/failed-tasks?limit=1000"
			b.SetParallelism(8)
			b.SetBytes(int64(len(page)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest("GET", url, nil)
					req.Header.Set("X-Auth-Token", c.l.token)
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					n, _ := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK || n != int64(len(page)) {
						b.Errorf("status %d, %d bytes", resp.StatusCode, n)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}
