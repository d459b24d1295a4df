package metrics

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/openkps/kps"
)

// queueFunc reads the queue from a function: the store's TaskQueue is covered by the store's
// conformance suite and the end-to-end tests; here only what the collector makes of it.
type queueFunc func() (kps.TaskQueue, error)

func (f queueFunc) TaskQueue(context.Context) (kps.TaskQueue, error) { return f() }

// scrape serves a scrape of r and parses it with the Prometheus text parser.
func scrape(t *testing.T, r *Registry) (map[string]*dto.MetricFamily, int) {
	t.Helper()
	w := httptest.NewRecorder()
	r.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(io.Reader(w.Body))
	if err != nil {
		t.Fatalf("the exposition does not parse: %v", err)
	}
	return fams, w.Code
}

// labels is the labels of m as a map.
func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.Label {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// TestLabelValuesAreBounded: a value outside its label's set is exported as "other" — an
// unknown operation, a code that is not a KPS code, a status outside 100–599, a reason key of
// another form — so that no input can grow the number of series; success carries no code, and
// a request no route matched is "unmatched".
func TestLabelValuesAreBounded(t *testing.T) {
	r := New(Options{Version: "v1.2.3"})
	r.TaskEnded(kps.OpReset, true, "KPS.6603", time.Second)
	r.TaskEnded(kps.Operation("DROP TABLE"), false, "task 5f0c… failed on 10.0.0.7", time.Second)
	r.TaskEnded(kps.OpUnbind, false, kps.TaskTimeout, 2*time.Minute)
	r.HTTPRequest("kps", "", 404, time.Millisecond)
	r.HTTPRequest("kps", "GET /v3/{project_id}/keypairs", 999, time.Millisecond)
	r.AuthFailure("token-unknown")
	r.AuthFailure("Bad Reason with a user name")
	r.SSHConnected(false, 10*time.Second)
	r.TasksSwept(3)

	fams, code := scrape(t, r)
	if code != 200 {
		t.Fatalf("scrape: %d", code)
	}
	var tasks []map[string]string
	for _, m := range fams["kps_tasks_total"].Metric {
		tasks = append(tasks, labels(m))
	}
	for _, want := range []map[string]string{
		{"operation": "RESET", "outcome": "success", "code": ""},
		{"operation": "other", "outcome": "failed", "code": "other"},
		{"operation": "UNBIND", "outcome": "failed", "code": "KPS.6602"},
	} {
		found := false
		for _, got := range tasks {
			found = found || got["operation"] == want["operation"] && got["outcome"] == want["outcome"] && got["code"] == want["code"]
		}
		if !found {
			t.Errorf("kps_tasks_total has no %v: %v", want, tasks)
		}
	}
	var routes []string
	for _, m := range fams["kps_http_requests_total"].Metric {
		l := labels(m)
		routes = append(routes, l["route"]+" "+l["code"])
	}
	slices.Sort(routes)
	if strings.Join(routes, ",") != "GET /v3/{project_id}/keypairs other,unmatched 404" {
		t.Errorf("kps_http_requests_total routes %v", routes)
	}
	var reasons []string
	for _, m := range fams["kps_auth_failures_total"].Metric {
		reasons = append(reasons, labels(m)["reason"])
	}
	slices.Sort(reasons)
	if strings.Join(reasons, ",") != "other,token-unknown" {
		t.Errorf("kps_auth_failures_total reasons %v", reasons)
	}
	if m := fams["kps_build_info"].Metric[0]; labels(m)["version"] != "v1.2.3" || m.Gauge.GetValue() != 1 {
		t.Errorf("kps_build_info %v", m)
	}
	if v := fams["kps_tasks_swept_total"].Metric[0].Counter.GetValue(); v != 3 {
		t.Errorf("kps_tasks_swept_total %v", v)
	}
	h := fams["kps_task_duration_seconds"]
	if h.GetType() != dto.MetricType_HISTOGRAM || len(h.Metric) != 3 {
		t.Errorf("kps_task_duration_seconds: %v", h)
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "kps_ssh_connect_seconds", "kps_http_request_duration_seconds"} {
		if fams[name] == nil {
			t.Errorf("%s is not exported", name)
		}
	}
	// No queue reader: no queue gauges rather than made-up zeros.
	if fams["kps_tasks_queued"] != nil {
		t.Error("kps_tasks_queued without a queue reader")
	}
}

// TestQueueGauges: the queue's gauges are read at every scrape; the oldest task's age is
// measured on the store's clock; a read that fails leaves them out of that scrape (logged), the
// rest of the scrape is served.
func TestQueueGauges(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	q := kps.TaskQueue{Ready: 7, Running: 3, OldestReady: now.Add(-90 * time.Second), Now: now}
	var err error
	r := New(Options{Queue: queueFunc(func() (kps.TaskQueue, error) { return q, err })})
	fams, _ := scrape(t, r)
	for name, want := range map[string]float64{"kps_tasks_queued": 7, "kps_tasks_running": 3, "kps_tasks_oldest_queued_seconds": 90} {
		if f := fams[name]; f == nil || f.GetType() != dto.MetricType_GAUGE || f.Metric[0].Gauge.GetValue() != want {
			t.Errorf("%s = %v, want gauge %v", name, f, want)
		}
	}
	q = kps.TaskQueue{Now: now}
	fams, _ = scrape(t, r)
	if v := fams["kps_tasks_oldest_queued_seconds"].Metric[0].Gauge.GetValue(); v != 0 {
		t.Errorf("empty queue: oldest %v, want 0", v)
	}
	err = errors.New("database down")
	fams, code := scrape(t, r)
	if fams["kps_tasks_queued"] != nil || fams["kps_tasks_running"] != nil {
		t.Error("queue gauges exported although the read failed")
	}
	if code != 200 || fams["kps_build_info"] == nil {
		t.Errorf("a failed queue read failed the scrape: %d", code)
	}
}

// TestHistogramsObserve: each recorded duration lands in its series' count, sum and buckets
// (in seconds), apart by the labels the series has, and counters count once per call.
func TestHistogramsObserve(t *testing.T) {
	r := New(Options{})
	r.TaskEnded(kps.OpReplace, true, "", 200*time.Millisecond)
	r.TaskEnded(kps.OpReplace, true, "", 3*time.Second)
	r.TaskEnded(kps.OpReplace, false, kps.TaskTimeout, 121*time.Second)
	r.SSHConnected(true, 3*time.Millisecond)
	r.SSHConnected(false, 10*time.Second)
	r.HTTPRequest("nova", "GET /compute/v2.1/os-keypairs", 200, 2*time.Millisecond)
	r.HTTPRequest("nova", "GET /compute/v2.1/os-keypairs", 200, 2*time.Millisecond)
	fams, _ := scrape(t, r)

	histogram := func(name string, want map[string]string) *dto.Histogram {
		t.Helper()
		for _, m := range fams[name].GetMetric() {
			l := labels(m)
			match := true
			for k, v := range want {
				match = match && l[k] == v
			}
			if match {
				return m.Histogram
			}
		}
		t.Fatalf("%s has no series %v", name, want)
		return nil
	}
	below := func(h *dto.Histogram, le float64) uint64 {
		for _, b := range h.Bucket {
			if b.GetUpperBound() == le {
				return b.GetCumulativeCount()
			}
		}
		t.Fatalf("no bucket le=%v", le)
		return 0
	}
	ok := histogram("kps_task_duration_seconds", map[string]string{"operation": "REPLACE", "outcome": "success"})
	if ok.GetSampleCount() != 2 || ok.GetSampleSum() != 3.2 || below(ok, .25) != 1 || below(ok, 5) != 2 {
		t.Errorf("REPLACE success: count %d sum %v ≤0.25s %d ≤5s %d, want 2, 3.2, 1, 2", ok.GetSampleCount(), ok.GetSampleSum(), below(ok, .25), below(ok, 5))
	}
	bad := histogram("kps_task_duration_seconds", map[string]string{"operation": "REPLACE", "outcome": "failed"})
	if bad.GetSampleCount() != 1 || below(bad, 120) != 0 || below(bad, 300) != 1 {
		t.Errorf("REPLACE failed: count %d, ≤120s %d, ≤300s %d, want 1, 0, 1", bad.GetSampleCount(), below(bad, 120), below(bad, 300))
	}
	if c := histogram("kps_ssh_connect_seconds", map[string]string{"outcome": "success"}); c.GetSampleCount() != 1 || below(c, .005) != 1 || below(c, .0025) != 0 {
		t.Errorf("ssh success: %v", c)
	}
	if c := histogram("kps_ssh_connect_seconds", map[string]string{"outcome": "failed"}); c.GetSampleCount() != 1 || below(c, 10) != 1 || below(c, 5) != 0 {
		t.Errorf("ssh failed: %v", c)
	}
	if h := histogram("kps_http_request_duration_seconds", map[string]string{"api": "nova", "route": "GET /compute/v2.1/os-keypairs"}); h.GetSampleCount() != 2 {
		t.Errorf("http duration count %d, want 2", h.GetSampleCount())
	}
	if v := fams["kps_http_requests_total"].GetMetric()[0].GetCounter().GetValue(); v != 2 {
		t.Errorf("kps_http_requests_total %v, want 2", v)
	}
}

// BenchmarkRecord is what the metrics add to each request and task: a request's counter and
// histogram (the route label looked up among the existing series), and a task's.
//
//	go test -run '^$' -bench Record ./metrics
func BenchmarkRecord(b *testing.B) {
	r := New(Options{})
	b.Run("http", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				r.HTTPRequest("kps", "GET /v3/{project_id}/failed-tasks", 200, 3*time.Millisecond)
			}
		})
	})
	b.Run("task", func(b *testing.B) {
		for b.Loop() {
			r.TaskEnded(kps.OpReset, false, "KPS.6603", time.Second)
		}
	})
}
