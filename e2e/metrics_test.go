package e2e

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/openkps/kps"
	"github.com/openkps/kps/daemon"
	"github.com/openkps/kps/internal/pgtest"
	"github.com/openkps/kps/internal/sshdtest"
)

// metricsFamilies is a scrape of /metrics parsed by the Prometheus text parser.
type metricsFamilies map[string]*dto.MetricFamily

// scrape reads url (a /metrics endpoint) and parses it with the Prometheus text parser; the
// answer is checked against docs/openapi.json like every other.
func scrape(t testing.TB, url string) (metricsFamilies, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Accept", "text/plain")
	resp, err := apiClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, raw)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatalf("GET %s: the Prometheus text parser refuses the answer: %v\n%s", url, err, raw)
	}
	return fams, string(raw)
}

// value is the sum over the samples of family name whose labels include want: the value of a
// counter or gauge, the sample count of a histogram. ok is false when no sample matched.
func (f metricsFamilies) value(name string, want map[string]string) (v float64, ok bool) {
	fam := f[name]
	if fam == nil {
		return 0, false
	}
	for _, m := range fam.Metric {
		if !hasLabels(m, want) {
			continue
		}
		ok = true
		switch {
		case m.Counter != nil:
			v += m.Counter.GetValue()
		case m.Gauge != nil:
			v += m.Gauge.GetValue()
		case m.Histogram != nil:
			v += float64(m.Histogram.GetSampleCount())
		case m.Untyped != nil:
			v += m.Untyped.GetValue()
		}
	}
	return v, ok
}

// hasLabels reports whether m has the labels of want; a label m lacks has the value "", as in
// PromQL.
func hasLabels(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		got := ""
		for _, l := range m.Label {
			if l.GetName() == k {
				got = l.GetValue()
			}
		}
		if got != v {
			return false
		}
	}
	return true
}

// total is value summed over several scrapes (the replicas of one database).
func total(scrapes []metricsFamilies, name string, want map[string]string) float64 {
	sum := 0.0
	for _, f := range scrapes {
		v, _ := f.value(name, want)
		sum += v
	}
	return sum
}

// withMetrics turns the metrics on, as the --metrics flag does by default.
func withMetrics(c *daemon.Config) { c.Metrics = true }

// TestMetricsAfterBinds runs binds that succeed and fail against real sshd hosts, on each
// engine, and reads /metrics with the Prometheus text parser: the task counters by operation,
// outcome and code, the duration and SSH connection histograms' counts, the HTTP requests by
// family and route pattern, the refused authentications by reason, the build and process
// metrics, and the queue gauges. On PostgreSQL two replicas share the database: each counts
// the tasks its own workers ended (their sum is the whole), and both export the queue of the
// database they share.
func TestMetricsAfterBinds(t *testing.T) {
	t.Parallel()
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		testMetricsAfterBinds(t, []*service{setup(t, withMetrics, oneWorker)})
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		dsn, dataDir := pgtest.Schema(t), t.TempDir()
		shared := func(c *daemon.Config) { c.Database, c.DataDir = dsn, dataDir }
		a := setup(t, withMetrics, oneWorker, shared)
		b := setup(t, withMetrics, oneWorker, shared)
		testMetricsAfterBinds(t, []*service{a, a.on(b)})
	})
}

// oneWorker runs one task at a time per replica, so that a stalled task holds the replica.
func oneWorker(c *daemon.Config) { c.Workers = 1 }

func testMetricsAfterBinds(t *testing.T, replicas []*service) {
	s := replicas[0]
	h1, h2 := sshdtest.Start(t, sshdtest.Options{}), sshdtest.Start(t, sshdtest.Options{})
	scrapeAll := func() []metricsFamilies {
		var out []metricsFamilies
		for _, r := range replicas {
			f, _ := scrape(t, r.base+"/metrics")
			out = append(out, f)
		}
		return out
	}

	// Binds that succeed and fail: a RESET with the server's password, a REPLACE with the
	// caller's, a RESET whose server credential sshd refuses, a RESET on a port nobody listens
	// on, and an UNBIND.
	s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "metrics-key"}})
	s.addHost("ok-1", h1, map[string]any{"credential": map[string]any{"type": "password", "key": h1.Password}})
	s.addHost("ok-2", h2, nil)
	s.addHost("bad-password", h1, map[string]any{"credential": map[string]any{"type": "password", "key": "not-" + h1.Password}})
	s.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"id": "closed", "address": "127.0.0.1",
		"port": closedPort(t), "credential": map[string]any{"type": "password", "key": "x"}}})
	bind := func(path string, body map[string]any, want string) {
		t.Helper()
		id := str(s.must(200, "POST", path, body)["task_id"])
		if st := s.waitTask(id); st != want {
			t.Fatalf("%s %v: %s, want %s", path, body, st, want)
		}
	}
	bind("/keypairs/associate", map[string]any{"keypair_name": "metrics-key", "server": map[string]any{"id": "ok-1"}}, "SUCCESS_RESET")
	bind("/keypairs/associate", map[string]any{"keypair_name": "metrics-key", "server": map[string]any{"id": "ok-2",
		"auth": map[string]any{"type": "password", "key": h2.Password}}}, "SUCCESS_REPLACE")
	bind("/keypairs/associate", map[string]any{"keypair_name": "metrics-key", "server": map[string]any{"id": "bad-password"}}, "FAILED_RESET")
	bind("/keypairs/associate", map[string]any{"keypair_name": "metrics-key", "server": map[string]any{"id": "closed"}}, "FAILED_RESET")
	bind("/keypairs/disassociate", map[string]any{"server": map[string]any{"id": "ok-1"}}, "SUCCESS_UNBIND")

	// Requests the API refuses or does not route, and one of each other family.
	if code, _ := s.raw("GET", "/v3/"+s.project+"/keypairs", nil, nil); code != 401 {
		t.Fatalf("no token: %d", code)
	}
	if code, _ := s.raw("GET", "/v3/"+s.project+"/keypairs", nil, map[string]string{"X-Auth-Token": "not-a-token"}); code != 401 {
		t.Fatalf("bad token: %d", code)
	}
	s.wantError(404, "KPS.6205", "GET", "/no-such-route", nil)
	if code, _ := s.raw("GET", "/no-such-route", nil, nil); code != 404 {
		t.Fatalf("GET /no-such-route: %d", code)
	}
	if r := s.nova("GET", "/compute/v2.1/"+s.project+"/os-keypairs", "", nil); r.status != 200 {
		t.Fatalf("Nova list: %d %s", r.status, r.raw)
	}

	got := scrapeAll()
	a := got[0]
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"kps_tasks_total", map[string]string{"operation": "RESET", "outcome": "success", "code": ""}, 1},
		{"kps_tasks_total", map[string]string{"operation": "REPLACE", "outcome": "success", "code": ""}, 1},
		{"kps_tasks_total", map[string]string{"operation": "UNBIND", "outcome": "success", "code": ""}, 1},
		{"kps_tasks_total", map[string]string{"operation": "RESET", "outcome": "failed", "code": kps.TaskAuthFailed}, 1},
		{"kps_tasks_total", map[string]string{"operation": "RESET", "outcome": "failed", "code": kps.TaskUnreachable}, 1},
		{"kps_tasks_total", nil, 5},
		{"kps_task_duration_seconds", map[string]string{"operation": "RESET", "outcome": "success"}, 1},
		{"kps_task_duration_seconds", map[string]string{"operation": "RESET", "outcome": "failed"}, 2},
		{"kps_task_duration_seconds", map[string]string{"operation": "REPLACE", "outcome": "success"}, 1},
		{"kps_task_duration_seconds", map[string]string{"operation": "UNBIND", "outcome": "success"}, 1},
		// Three tasks logged in; sshd refused one login, and one connection was refused.
		{"kps_ssh_connect_seconds", map[string]string{"outcome": "success"}, 3},
		{"kps_ssh_connect_seconds", map[string]string{"outcome": "failed"}, 2},
		{"kps_tasks_swept_total", nil, 0},
	} {
		if v := total(got, c.name, c.labels); v != c.want {
			t.Errorf("%s%v summed over the replicas = %v, want %v", c.name, c.labels, v, c.want)
		}
	}
	// The requests of the first replica, by family and route pattern.
	for _, c := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"api": "kps", "route": "POST /v3/{project_id}/keypairs/associate", "code": "200"}, 4},
		{map[string]string{"api": "kps", "route": "POST /v3/{project_id}/keypairs/disassociate", "code": "200"}, 1},
		{map[string]string{"api": "kps", "route": "POST /v3/{project_id}/servers", "code": "201"}, 4},
		{map[string]string{"api": "kps", "route": "GET /v3/{project_id}/keypairs", "code": "401"}, 2},
		{map[string]string{"api": "kps", "route": "unmatched", "code": "404"}, 1},
		{map[string]string{"api": "identity", "route": "unmatched", "code": "404"}, 1},
		{map[string]string{"api": "nova", "route": "GET /compute/v2.1/{project_id}/os-keypairs", "code": "200"}, 1},
		{map[string]string{"api": "identity", "route": "POST /v3/auth/tokens", "code": "201"}, 1},
	} {
		if v, _ := a.value("kps_http_requests_total", c.labels); v != c.want {
			t.Errorf("kps_http_requests_total%v = %v, want %v", c.labels, v, c.want)
		}
	}
	// Every request counted is timed, per route: the histogram's count is the counter's sum.
	for _, route := range []string{"GET /v3/{project_id}/tasks/{task_id}", "POST /v3/{project_id}/keypairs/associate"} {
		n, _ := a.value("kps_http_requests_total", map[string]string{"api": "kps", "route": route})
		d, _ := a.value("kps_http_request_duration_seconds", map[string]string{"api": "kps", "route": route})
		if n == 0 || d != n {
			t.Errorf("%s: %v requests counted, %v timed", route, n, d)
		}
	}
	if v, _ := a.value("kps_auth_failures_total", map[string]string{"reason": "no-credentials"}); v != 1 {
		t.Errorf("kps_auth_failures_total{reason=no-credentials} = %v, want 1", v)
	}
	if v, _ := a.value("kps_auth_failures_total", nil); v != 2 {
		t.Errorf("kps_auth_failures_total = %v, want 2 (no token, a bad one)", v)
	}
	for _, f := range got {
		for _, name := range []string{"kps_build_info", "go_goroutines", "process_cpu_seconds_total", "process_resident_memory_bytes"} {
			if _, ok := f.value(name, nil); !ok {
				t.Errorf("%s is not exported", name)
			}
		}
		for name, want := range map[string]float64{"kps_tasks_queued": 0, "kps_tasks_running": 0, "kps_tasks_oldest_queued_seconds": 0} {
			if v, ok := f.value(name, nil); !ok || v != want {
				t.Errorf("%s = %v (exported: %v), want %v", name, v, ok, want)
			}
		}
	}
	checkCardinality(t, a, s.project, "metrics-key", "ok-1", "ok-2", "bad-password", "closed")

	// The queue gauges come from the database: with every replica's one worker held by a
	// host that never answers the SSH handshake, one more task waits, and every replica
	// exports the same queue.
	var stalled []string
	for i := range replicas {
		id := fmt.Sprintf("stall-%d", i)
		s.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"id": id, "address": "127.0.0.1",
			"port": silentListener(t), "credential": map[string]any{"type": "password", "key": "x"}}})
		stalled = append(stalled, str(s.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "metrics-key",
			"server": map[string]any{"id": id}})["task_id"]))
	}
	pollUntil(t, "every replica's worker to hold a stalled task", func() bool {
		v, _ := scrapeAll()[0].value("kps_tasks_running", nil)
		return v == float64(len(replicas))
	})
	waiting := str(s.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "metrics-key",
		"server": map[string]any{"id": "closed"}})["task_id"])
	// The store's clock counts milliseconds: two of them give the waiting task an age.
	time.Sleep(2 * time.Millisecond)
	for i, f := range scrapeAll() {
		queued, _ := f.value("kps_tasks_queued", nil)
		running, _ := f.value("kps_tasks_running", nil)
		age, _ := f.value("kps_tasks_oldest_queued_seconds", nil)
		if queued != 1 || running != float64(len(replicas)) || age <= 0 || age > 60 {
			t.Errorf("replica %d: queued %v, running %v, oldest queued %vs; want 1, %d and a few milliseconds", i, queued, running, age, len(replicas))
		}
	}
	for _, id := range append(stalled, waiting) {
		if st := s.waitTask(id); !strings.HasPrefix(st, "FAILED_") {
			t.Fatalf("task %s ended %s", id, st)
		}
	}
	got = scrapeAll()
	if v := total(got, "kps_tasks_total", map[string]string{"operation": "RESET", "outcome": "failed", "code": kps.TaskTimeout}); v != float64(len(replicas)) {
		t.Errorf("stalled binds counted %v times as KPS.6602, want %d", v, len(replicas))
	}
	if v := total(got, "kps_tasks_total", nil); v != float64(5+len(replicas)+1) {
		t.Errorf("kps_tasks_total summed = %v, want %d", v, 5+len(replicas)+1)
	}
}

// pollUntil polls cond until it holds, for at most 30 seconds.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 30s for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkCardinality holds the service's own metrics to the label names of docs/operations.md,
// and fails when a label value names a project, key pair or server of the run.
func checkCardinality(t *testing.T, f metricsFamilies, names ...string) {
	t.Helper()
	allowed := map[string][]string{
		"kps_tasks_total": {"operation", "outcome", "code"}, "kps_task_duration_seconds": {"operation", "outcome"},
		"kps_ssh_connect_seconds": {"outcome"}, "kps_http_requests_total": {"api", "route", "code"},
		"kps_http_request_duration_seconds": {"api", "route"}, "kps_auth_failures_total": {"reason"},
		"kps_build_info": {"version"}, "kps_tasks_swept_total": nil, "kps_tasks_queued": nil, "kps_tasks_running": nil,
		"kps_tasks_oldest_queued_seconds": nil, "kps_drift_checks_total": {"trigger", "outcome"}, "kps_drift_servers": {"state"},
	}
	for name, fam := range f {
		if !strings.HasPrefix(name, "kps_") {
			continue
		}
		labels, known := allowed[name]
		if !known {
			t.Errorf("%s is not a metric docs/operations.md lists", name)
			continue
		}
		for _, m := range fam.Metric {
			for _, l := range m.Label {
				if !slices.Contains(labels, l.GetName()) {
					t.Errorf("%s has a label %q", name, l.GetName())
				}
				for _, n := range names {
					if strings.Contains(l.GetValue(), n) {
						t.Errorf("%s{%s=%q} names %q: a label per project, key pair or server", name, l.GetName(), l.GetValue(), n)
					}
				}
			}
		}
	}
}

// TestMetricsListenerOfItsOwn: with --metrics-listen the metrics are served there alone (the
// main listener answers 404), and --metrics=false serves none.
func TestMetricsListenerOfItsOwn(t *testing.T) {
	t.Parallel()
	s := setup(t, withMetrics, func(c *daemon.Config) { c.MetricsListen = "127.0.0.1:0" })
	if code, out := s.raw("GET", "/metrics", nil, nil); code != 404 || out["error_code"] != "KPS.6205" {
		t.Fatalf("GET /metrics on the main listener: %d %v, want 404 KPS.6205", code, out)
	}
	f, _ := scrape(t, "http://"+s.main.MetricsAddr()+"/metrics")
	if v, ok := f.value("kps_build_info", nil); !ok || v != 1 {
		t.Fatalf("kps_build_info on --metrics-listen: %v %v", v, ok)
	}
	// The main listener's requests are counted there.
	if v, _ := f.value("kps_http_requests_total", map[string]string{"api": "identity", "route": "unmatched", "code": "404"}); v != 1 {
		t.Errorf("the main listener's GET /metrics counted %v times, want 1", v)
	}

	off := setup(t)
	if code, _ := off.raw("GET", "/metrics", nil, nil); code != 404 {
		t.Fatalf("GET /metrics without --metrics: %d, want 404", code)
	}
	if off.main.MetricsAddr() != "" {
		t.Fatalf("a metrics listener without --metrics-listen: %s", off.main.MetricsAddr())
	}
}

// TestDriftMetrics: every drift check this replica finishes is counted by its outcome (the
// worst of its servers), and kps_drift_servers holds the servers of the last one per state —
// with no label naming a server or project.
func TestDriftMetrics(t *testing.T) {
	t.Parallel()
	s := setup(t, withMetrics)
	clean, byHand, gone := sshdtest.Start(t, sshdtest.Options{}), sshdtest.Start(t, sshdtest.Options{}), sshdtest.Start(t, sshdtest.Options{})
	for id, h := range map[string]*sshdtest.Host{"drift-clean": clean, "drift-by-hand": byHand, "drift-gone": gone} {
		s.addHost(id, h, map[string]any{"credential": map[string]any{"type": "password", "key": h.Password}})
	}
	byHand.WriteAuthorizedKeys(t, ed25519Line(t, "by-hand")+"\n")
	gone.Stop()

	check := func(ids ...string) {
		t.Helper()
		id := str(s.must(200, "POST", "/drift-checks", map[string]any{"servers": ids})["drift_check"].(map[string]any)["id"])
		if c := s.waitDrift(id); c["status"] != "DONE" {
			t.Fatalf("drift check ended %v", c)
		}
	}
	want := func(f metricsFamilies, name string, labels map[string]string, v float64) {
		t.Helper()
		if got, _ := f.value(name, labels); got != v {
			t.Errorf("%s%v = %v, want %v", name, labels, got, v)
		}
	}
	check("drift-clean")
	f, _ := scrape(t, s.base+"/metrics")
	want(f, "kps_drift_checks_total", map[string]string{"trigger": "request", "outcome": "in_sync"}, 1)
	want(f, "kps_drift_servers", map[string]string{"state": "in_sync"}, 1)
	want(f, "kps_drift_servers", map[string]string{"state": "drifted"}, 0)

	check("drift-clean", "drift-by-hand")
	check("drift-clean", "drift-by-hand", "drift-gone")
	f, _ = scrape(t, s.base+"/metrics")
	want(f, "kps_drift_checks_total", map[string]string{"trigger": "request", "outcome": "in_sync"}, 1)
	want(f, "kps_drift_checks_total", map[string]string{"trigger": "request", "outcome": "drifted"}, 1)
	want(f, "kps_drift_checks_total", map[string]string{"trigger": "request", "outcome": "unreadable"}, 1)
	want(f, "kps_drift_checks_total", nil, 3)
	for state, n := range map[string]float64{"in_sync": 1, "drifted": 1, "unreadable": 1} {
		want(f, "kps_drift_servers", map[string]string{"state": state}, n)
	}
	checkCardinality(t, f, "drift-clean", "drift-by-hand", "drift-gone")
}
