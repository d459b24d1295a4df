package main

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver, as the store uses it
)

// Seeding statements: $2 projects of $1 tasks each, in the order of the listing index (project,
// then rank) so that the inserts append to the indexes instead of scattering over them. Project
// 0 is the measured one ($3, its real ID); in every project the first $4 tasks are FAILED and
// the rest SUCCESS. Task n of a project is created at $5 + n (epoch ms). The measured project's
// rows do not depend on the number of projects, so its answer is the same bytes at every size.
const (
	seedSQLite = `WITH RECURSIVE g(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM g WHERE n + 1 < ?1 * ?2)
INSERT INTO tasks (id, project_id, operation, phase, server_id, server_name, keypair_name, public_key,
    created, updated, error_code, error_msg)
SELECT printf('bench-%030d', n), CASE WHEN n / ?1 = 0 THEN ?3 ELSE 'bench-p' || (n / ?1) END, 'RESET',
    CASE WHEN n % ?1 < ?4 THEN 'FAILED' ELSE 'SUCCESS' END,
    'web-' || n, 'web-' || n, 'deploy', 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBench bench', ?5 + n % ?1, ?5 + n % ?1,
    'KPS.6601', 'The connection to 10.0.' || (n % 250) || '.' || (n % 200) || ':22 was refused.'
FROM g`
	seedPostgres = `INSERT INTO tasks (id, project_id, operation, phase, server_id, server_name, keypair_name, public_key,
    created, updated, error_code, error_msg)
SELECT 'bench-' || lpad(n::text, 30, '0'), CASE WHEN n / $1 = 0 THEN $3 ELSE 'bench-p' || (n / $1) END, 'RESET',
    CASE WHEN n % $1 < $4 THEN 'FAILED' ELSE 'SUCCESS' END,
    'web-' || n, 'web-' || n, 'deploy', 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBench bench', $5 + n % $1, $5 + n % $1,
    'KPS.6601', 'The connection to 10.0.' || (n % 250) || '.' || (n % 200) || ':22 was refused.'
FROM generate_series(0, $1::bigint * $2 - 1) n`
)

// seeded is a kps serve whose tasks table was filled directly in the database while the
// service was stopped (so no cache of the running service can hold an older answer).
type seeded struct {
	*service
	engine, dataDir, database string
	seedTime                  time.Duration
}

// seededService starts a fresh kps serve on engine, stops it, inserts total tasks over
// projects projects (the first failed of each FAILED) in one transaction, and starts it again.
func (b *bench) seededService(ctx context.Context, engine string, total, projects, failed int) (*seeded, error) {
	s := &seeded{engine: engine, dataDir: b.scratch("kps-" + engine)}
	if engine == "postgres" {
		pg, err := b.postgres(ctx)
		if err != nil {
			return nil, err
		}
		if s.database, err = pg.newDatabase(ctx); err != nil {
			return nil, err
		}
	}
	svc, err := startService(ctx, b.kps, s.dataDir, s.database, b.cfg.Workers)
	if err != nil {
		return nil, err
	}
	project := svc.project
	svc.Stop()

	driver, dsn, seed := "sqlite", filepath.Join(s.dataDir, "kps.db"), seedSQLite
	if engine == "postgres" {
		driver, dsn, seed = "pgx", s.database, seedPostgres
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if engine == "sqlite" {
		// One connection, so that the pragmas apply to the seeding transaction: a page cache
		// large enough for the indexes, and no fsync (the service is stopped; a crash here
		// only loses the benchmark's own data).
		db.SetMaxOpenConns(1)
		for _, pragma := range []string{"PRAGMA cache_size = -262144", "PRAGMA synchronous = OFF", "PRAGMA temp_store = MEMORY"} {
			if _, err := db.ExecContext(ctx, pragma); err != nil {
				return nil, err
			}
		}
	}
	b.logf("seeding %d tasks (%s, %d projects, %d failed each)", total, engine, projects, failed)
	start := time.Now()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	// Inside the service's default retention of SUCCESS tasks (7 days): its purge, at the
	// first sweep after a start, must not delete the seeded table while it is measured.
	created := time.Now().Add(-2 * 24 * time.Hour).UnixMilli()
	if _, err := tx.ExecContext(ctx, seed, total/projects, projects, project, failed, created); err != nil {
		return nil, fmt.Errorf("seeding: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	// What the database's own maintenance does after a bulk load, before it is measured:
	// statistics for the planner, and on PostgreSQL a VACUUM as autovacuum would run, which
	// sets the visibility map that index-only scans need (and leaves autovacuum nothing to do
	// while the service answers its first requests).
	analyze := "ANALYZE"
	if engine == "postgres" {
		analyze = "VACUUM ANALYZE tasks"
	}
	if _, err := db.ExecContext(ctx, analyze); err != nil {
		return nil, err
	}
	// Closed before the service starts: closing SQLite's last connection checkpoints the
	// seeding's WAL (hundreds of MB for a million tasks), which must not run during the
	// service's first request.
	if err := db.Close(); err != nil {
		return nil, err
	}
	s.seedTime = time.Since(start)
	if s.service, err = startService(ctx, b.kps, s.dataDir, s.database, b.cfg.Workers); err != nil {
		return nil, err
	}
	return s, nil
}

// restart stops and starts the service on the same data (an empty cache, the same rows).
func (s *seeded) restart(ctx context.Context, b *bench) error {
	s.Stop()
	var err error
	s.service, err = startService(ctx, b.kps, s.dataDir, s.database, b.cfg.Workers)
	return err
}

// query measures part 2: GET /failed-tasks with FailedTasks failed tasks in the project, under
// wrk, for both limits at offset 0 and at the last page, against kps serve and against a bare
// net/http handler serving the same bytes.
func (b *bench) query(ctx context.Context) ([]QueryRow, error) {
	if b.cfg.SkipWrk || !b.ensureTool("wrk", "wrk") {
		b.logf("wrk is not available: the query part is skipped")
		return nil, nil
	}
	var rows []QueryRow
	for _, engine := range b.cfg.Engines {
		s, err := b.seededService(ctx, engine, b.cfg.FailedTasks, 1, b.cfg.FailedTasks)
		if err != nil {
			return nil, err
		}
		for _, limit := range []int{1000, 10} {
			last := (b.cfg.FailedTasks - 1) / limit * limit
			offsets := []int{0, last}
			if last == 0 {
				offsets = offsets[:1]
			}
			for _, offset := range offsets {
				path := fmt.Sprintf("/v3/%s/failed-tasks?limit=%d&offset=%d", s.project, limit, offset)
				body, ctype, err := s.get(ctx, path)
				if err != nil {
					s.Stop()
					return nil, err
				}
				if !strings.Contains(string(body), fmt.Sprintf(`"total":%d`, b.cfg.FailedTasks)) {
					s.Stop()
					return nil, fmt.Errorf("%s: the answer does not count %d failed tasks: %.200s", path, b.cfg.FailedTasks, body)
				}
				for _, conns := range b.cfg.Conns {
					row := QueryRow{Engine: engine, Server: "OpenKPS", Limit: limit, Offset: offset, Conns: conns, Bytes: len(body)}
					br := QueryRow{Engine: engine, Server: "bare", Limit: limit, Offset: offset, Conns: conns, Bytes: len(body)}
					if err := b.pairedRuns(ctx, s.base+path, s.token, path, body, ctype, conns, &row, &br); err != nil {
						s.Stop()
						return nil, err
					}
					rows = append(rows, row, br)
				}
			}
		}
		s.Stop()
	}
	return rows, nil
}

// pairedRuns runs wrk cfg.Runs times against kps serve (url) and as often against a bare
// net/http handler answering path with body, pre-encoded, in turn: on a shared machine whose
// load changes from minute to minute, each ratio then compares measurements seconds apart.
func (b *bench) pairedRuns(ctx context.Context, url, token, path string, body []byte, ctype string, conns int, row, bare *QueryRow) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	length := strconv.Itoa(len(body))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("Content-Length", length)
		w.Write(body)
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	bareURL := "http://" + ln.Addr().String() + path
	var kps, plain wrkSamples
	for range b.cfg.Runs {
		if err := kps.add(b.wrk(ctx, url, token, conns)); err != nil {
			return err
		}
		if err := plain.add(b.wrk(ctx, bareURL, "", conns)); err != nil {
			return err
		}
	}
	kps.store(row)
	plain.store(bare)
	for _, r := range []*QueryRow{row, bare} {
		b.logf("%s limit=%d offset=%d c=%d (%s): %.0f req/s, p50 %.2f ms, p99 %.2f ms, %d errors", r.Server, r.Limit, r.Offset,
			conns, r.Engine, r.RPS.Median, r.P50.Median, r.P99.Median, r.Errors)
	}
	return nil
}

// wrkSamples collects the runs of one row.
type wrkSamples struct {
	rps, p50, p99 []float64
	errors        int
}

func (s *wrkSamples) add(r wrkResult, err error) error {
	if err != nil {
		return err
	}
	s.rps, s.p50, s.p99 = append(s.rps, r.rps), append(s.p50, r.p50), append(s.p99, r.p99)
	s.errors += r.errors
	return nil
}

func (s *wrkSamples) store(row *QueryRow) {
	row.RPS, row.P50, row.P99, row.Errors = stat(s.rps), stat(s.p50), stat(s.p99), row.Errors+s.errors
}

type wrkResult struct {
	rps, p50, p99 float64 // requests per second; latencies in ms
	errors        int
}

var (
	wrkRPS     = regexp.MustCompile(`Requests/sec:\s*([0-9.]+)`)
	wrkPct     = regexp.MustCompile(`(?m)^\s*(50|99)%\s+([0-9.]+)(us|ms|s|m)\s*$`)
	wrkSocket  = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkLatency = map[string]float64{"us": 0.001, "ms": 1, "s": 1000, "m": 60000}
)

// wrk runs the load generator once (two threads: the machine's cores are shared with the
// server) with --latency, the token in the X-Auth-Token header.
func (b *bench) wrk(ctx context.Context, url, token string, conns int) (wrkResult, error) {
	args := []string{"-t", strconv.Itoa(min(2, conns)), "-c", strconv.Itoa(conns), "-d", b.cfg.Duration.String(),
		"--timeout", "10s", "--latency"}
	if token != "" {
		args = append(args, "-H", "X-Auth-Token: "+token)
	}
	out, err := exec.CommandContext(ctx, "wrk", append(args, url)...).CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %v: %s", err, out)
	}
	return parseWrk(string(out))
}

func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	m := wrkRPS.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk printed no Requests/sec: %s", out)
	}
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	for _, p := range wrkPct.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(p[2], 64)
		v *= wrkLatency[p[3]]
		if p[1] == "50" {
			r.p50 = v
		} else {
			r.p99 = v
		}
	}
	if r.p50 == 0 || r.p99 == 0 {
		return r, fmt.Errorf("wrk printed no latency distribution: %s", out)
	}
	if m := wrkSocket.FindStringSubmatch(out); m != nil {
		for _, f := range m[1:] {
			n, _ := strconv.Atoi(f)
			r.errors += n
		}
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		n, _ := strconv.Atoi(m[1])
		r.errors += n
	}
	return r, nil
}
