package e2e

import (
	"net/http"
	"strings"
	"testing"

	"github.com/openkps/kps/daemon"
	"github.com/openkps/kps/internal/pgtest"
	"github.com/openkps/kps/internal/sshdtest"
)

// replicas starts n services on one PostgreSQL schema and one data directory (the master key
// and the admin's password file are shared, as docs/deployment.md asks of replicas).
func replicas(t *testing.T, n int) []*service {
	t.Helper()
	dsn, dataDir := pgtest.Schema(t), t.TempDir()
	out := make([]*service, n)
	for i := range out {
		out[i] = setup(t, func(c *daemon.Config) { c.Database, c.DataDir = dsn, dataDir })
	}
	return out
}

// on returns s's session aimed at another replica.
func (s *service) on(other *service) *service {
	c := *s
	c.base, c.main = other.base, other.main
	return &c
}

// TestReplicasOnPostgres runs two replicas of kps serve on one PostgreSQL: what one does the
// other sees (tokens, inventory, key pairs, tasks and their bindings, failed-task lists), and
// each answers its health checks.
func TestReplicasOnPostgres(t *testing.T) {
	t.Parallel()
	rs := replicas(t, 2)
	a, b := rs[0], rs[0].on(rs[1])
	for _, s := range rs {
		for _, path := range []string{"/healthz", "/readyz"} {
			if got, _ := s.raw("GET", path, nil, nil); got != http.StatusOK {
				t.Fatalf("GET %s on %s: %d", path, s.base, got)
			}
		}
	}

	// A token issued by one replica is good on the other, and a revocation applies to both.
	h := sshdtest.Start(t, sshdtest.Options{})
	a.addHost("web-1", h, map[string]any{"credential": map[string]any{"type": "password", "key": h.Password}})
	a.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "ops"}})
	task := b.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "ops",
		"server": map[string]any{"id": "web-1"}})["task_id"].(string)
	if st := a.waitTask(task); !strings.HasPrefix(st, "SUCCESS_") {
		t.Fatalf("task %s ended %s", task, st)
	}
	if got := b.must(200, "GET", "/servers/web-1", nil)["server"].(map[string]any)["keypair_name"]; got != "ops" {
		t.Fatalf("replica b sees web-1 bound to %v", got)
	}

	// A task that cannot connect fails once, and both replicas list it.
	b.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"id": "gone", "address": "127.0.0.1",
		"port": closedPort(t), "credential": map[string]any{"type": "password", "key": "x"}}})
	failed := a.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "ops",
		"server": map[string]any{"id": "gone"}})["task_id"].(string)
	if st := b.waitTask(failed); !strings.HasPrefix(st, "FAILED_") {
		t.Fatalf("task %s ended %s", failed, st)
	}
	la, lb := a.must(200, "GET", "/failed-tasks", nil), b.must(200, "GET", "/failed-tasks", nil)
	if la["total"] != float64(1) || lb["total"] != float64(1) || a.failedTask(failed) == nil || b.failedTask(failed) == nil {
		t.Fatalf("failed tasks: a %v, b %v", la, lb)
	}
}

// TestReadyzFollowsTheDatabase: /readyz fails with 503 KPS.6502 once the replica cannot reach its
// database, while /healthz still answers 200.
func TestReadyzFollowsTheDatabase(t *testing.T) {
	t.Parallel()
	s := replicas(t, 1)[0]
	if got, _ := s.raw("GET", "/readyz", nil, nil); got != http.StatusOK {
		t.Fatalf("GET /readyz: %d", got)
	}
	// The pool closed under the running service stands for a database it cannot reach.
	s.main.Store().Close()
	if got, out := s.raw("GET", "/readyz", nil, nil); got != http.StatusServiceUnavailable || out["error_code"] != "KPS.6502" {
		t.Fatalf("GET /readyz without a database: %d %v", got, out)
	}
	if got, _ := s.raw("GET", "/healthz", nil, nil); got != http.StatusOK {
		t.Fatalf("GET /healthz without a database: %d", got)
	}
}
