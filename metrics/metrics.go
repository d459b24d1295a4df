// Package metrics is the Prometheus side of OpenKPS: one Registry per running service, holding
// the counters and histograms that the task runner, the SSH executor and the HTTP API record
// through interfaces each of them declares (tasks.Metrics, sshhost.Metrics, api.Metrics), the
// task queue gauges read from the database at scrape time, the build information, and the Go
// and process collectors. daemon builds one Registry and hands it to each; nothing here is a
// package-level singleton, so several services in one process (the end-to-end tests) each
// export their own.
//
// Cardinality is bounded by construction: no label carries a task, key pair, server, project
// or user; a label value is one of a fixed set (operations, outcomes, KPS codes, HTTP statuses,
// the routes the muxes register, the reason keys of auth.md §11.4), and a value outside its
// set is exported as "other". docs/operations.md lists every metric and what to alert on.
//
// It imports the domain package only (and the Prometheus client).
package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"regexp"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/openkps/kps"
)

// QueueReader reads the task queue's depth from the database, which every replica on it
// shares (store.DB implements it).
type QueueReader interface {
	TaskQueue(ctx context.Context) (kps.TaskQueue, error)
}

// Options configure a Registry.
type Options struct {
	// Queue, when set, exports kps_tasks_queued, kps_tasks_running and
	// kps_tasks_oldest_queued_seconds, read from it at every scrape.
	Queue QueueReader
	// Version is kps_build_info's version label; "" reads the binary's module version.
	Version string
	// Log receives the errors of a scrape (a queue read that failed); nil discards them.
	Log *slog.Logger
}

// queueTimeout bounds the queue read of one scrape: a database that hangs must not hold the
// scrape until Prometheus gives up on the whole target.
const queueTimeout = 2 * time.Second

// Buckets, in seconds. A task runs from tens of milliseconds (a key on a near host) to the
// task timeout (120 s by default); an SSH connection from a millisecond on loopback to the
// connect timeout (10 s); an API request from well under a millisecond (a cached task list) to
// the password hash of a login.
var (
	taskBuckets    = []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	connectBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	httpBuckets    = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
)

// Registry is the service's metrics; its methods are safe for concurrent use.
type Registry struct {
	reg *prometheus.Registry
	log *slog.Logger

	tasks        *prometheus.CounterVec
	taskDuration *prometheus.HistogramVec
	swept        prometheus.Counter
	sshConnect   *prometheus.HistogramVec
	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	authFailures *prometheus.CounterVec
	driftChecks  *prometheus.CounterVec
	driftServers *prometheus.GaugeVec
}

// New returns a Registry with every metric of the service registered.
func New(o Options) *Registry {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Version == "" {
		o.Version = "(devel)"
		if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
			o.Version = info.Main.Version
		}
	}
	r := &Registry{
		reg: prometheus.NewRegistry(),
		log: o.Log,
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kps_tasks_total",
			Help: "Tasks this replica's workers ended, by operation (RESET, REPLACE, UNBIND), outcome (success, failed) and KPS code of a failure (\"\" on success)."},
			[]string{"operation", "outcome", "code"}),
		taskDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kps_task_duration_seconds",
			Help: "Time from a task's submission to its end (queue and host job), of the tasks this replica's workers ended.", Buckets: taskBuckets},
			[]string{"operation", "outcome"}),
		swept: prometheus.NewCounter(prometheus.CounterOpts{Name: "kps_tasks_swept_total",
			Help: "Tasks this replica's sweeper failed with KPS.6609 because their worker vanished (its lease expired) or the service restarted."}),
		sshConnect: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kps_ssh_connect_seconds",
			Help: "Time to connect to a host, check its host key and log in over SSH, by outcome (success, failed).", Buckets: connectBuckets},
			[]string{"outcome"}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kps_http_requests_total",
			Help: "HTTP requests served, by API family (kps, identity, nova, console), route (the ServeMux pattern; \"unmatched\" when none) and status code."},
			[]string{"api", "route", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kps_http_request_duration_seconds",
			Help: "Time to serve an HTTP request, from its headers read to its answer written, by API family and route.", Buckets: httpBuckets},
			[]string{"api", "route"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kps_auth_failures_total",
			Help: "Refused authentications and authorizations, by the reason key their log line carries (auth.md §11.4)."},
			[]string{"reason"}),
		driftChecks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kps_drift_checks_total",
			Help: "Drift checks this replica finished, by trigger (request, schedule) and outcome: unreadable when a server could not be read, else drifted when a server drifted, else in_sync."},
			[]string{"trigger", "outcome"}),
		driftServers: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kps_drift_servers",
			Help: "Servers of the last drift check this replica finished (of any project), by state (in_sync, drifted, unreadable)."},
			[]string{"state"}),
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{Name: "kps_build_info",
		Help: "Always 1; the version label is the binary's.", ConstLabels: prometheus.Labels{"version": o.Version}})
	buildInfo.Set(1)
	r.reg.MustRegister(r.tasks, r.taskDuration, r.swept, r.sshConnect, r.httpRequests, r.httpDuration, r.authFailures, r.driftChecks, r.driftServers, buildInfo,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if o.Queue != nil {
		r.reg.MustRegister(&queueCollector{queue: o.Queue, log: o.Log})
	}
	return r
}

// Handler serves the registry in the Prometheus exposition formats. A collector that fails (the
// queue read) leaves its metrics out of that scrape and logs why; the rest is served.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(r.log.Handler(), slog.LevelWarn),
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}

// Gatherer is the registry, for tests that read what a scrape would.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// Outcome label values.
const (
	success = "success"
	failed  = "failed"
	other   = "other"
)

func outcome(ok bool) string {
	if ok {
		return success
	}
	return failed
}

// TaskEnded counts a task a worker ended (tasks.Metrics): its operation, whether it succeeded,
// the KPS code of its failure, and the time since its submission.
func (r *Registry) TaskEnded(op kps.Operation, ok bool, code string, sinceSubmission time.Duration) {
	operation := string(op)
	switch op {
	case kps.OpReset, kps.OpReplace, kps.OpUnbind:
	default:
		operation = other
	}
	if ok {
		code = ""
	} else if !kpsCode.MatchString(code) {
		code = other
	}
	r.tasks.WithLabelValues(operation, outcome(ok), code).Inc()
	r.taskDuration.WithLabelValues(operation, outcome(ok)).Observe(sinceSubmission.Seconds())
}

// kpsCode is the form of a KPS error code: a code is a label value only in that form.
var kpsCode = regexp.MustCompile(`^KPS\.[0-9]{4}$`)

// TasksSwept counts tasks a sweeper failed because their worker vanished (tasks.Metrics).
func (r *Registry) TasksSwept(n int) { r.swept.Add(float64(n)) }

// SSHConnected records one SSH connection attempt (sshhost.Metrics): whether it ended logged
// in, and how long it took.
func (r *Registry) SSHConnected(ok bool, took time.Duration) {
	r.sshConnect.WithLabelValues(outcome(ok)).Observe(took.Seconds())
}

// HTTPRequest records one served request (api.Metrics): the family that served it, its route
// pattern ("" when no route matched), its status and how long it took.
func (r *Registry) HTTPRequest(family, route string, status int, took time.Duration) {
	if route == "" {
		route = "unmatched"
	}
	r.httpRequests.WithLabelValues(family, route, statusText(status)).Inc()
	r.httpDuration.WithLabelValues(family, route).Observe(took.Seconds())
}

// statusText is the code label of an HTTP status; a status outside 100–599 is "other".
func statusText(status int) string {
	if status < 100 || status > 599 {
		return other
	}
	return strconv.Itoa(status)
}

// AuthFailure counts a refused authentication or authorization (api.Metrics) by its reason
// key; a key not in the form of auth.md §11.4 (lower-case words joined by hyphens) is "other".
func (r *Registry) AuthFailure(reason string) {
	if !reasonKey.MatchString(reason) {
		reason = other
	}
	r.authFailures.WithLabelValues(reason).Inc()
}

// Drift states, of a server and (the worst of its servers) of a check.
const (
	inSync     = "in_sync"
	drifted    = "drifted"
	unreadable = "unreadable"
)

// DriftChecked records a finished drift check (service.Drift.Observe): counted by its trigger
// and outcome, and its servers per state become kps_drift_servers. The three states are
// always exported, 0 included, so that a check that found nothing resets what the one before
// it found.
func (r *Registry) DriftChecked(c *kps.DriftCheck) {
	n := map[string]int{inSync: 0, drifted: 0, unreadable: 0}
	for _, res := range c.Results {
		switch {
		case !res.Checked:
			n[unreadable]++
		case res.Drift:
			n[drifted]++
		default:
			n[inSync]++
		}
	}
	out := inSync
	switch {
	case n[unreadable] > 0:
		out = unreadable
	case n[drifted] > 0:
		out = drifted
	}
	trigger := "request"
	if c.Scheduled {
		trigger = "schedule"
	}
	r.driftChecks.WithLabelValues(trigger, out).Inc()
	for state, v := range n {
		r.driftServers.WithLabelValues(state).Set(float64(v))
	}
}

// reasonKey is the form of a refusal's reason key.
var reasonKey = regexp.MustCompile(`^[a-z]+(-[a-z]+)*$`)

// queueCollector exports the task queue read from the database at scrape time: on PostgreSQL
// every replica exports the same figures, those of the queue they share (docs/operations.md:
// aggregate them with max, not sum).
type queueCollector struct {
	queue QueueReader
	log   *slog.Logger
}

var (
	queuedDesc = prometheus.NewDesc("kps_tasks_queued",
		"Tasks READY in the database, waiting for a worker of any replica.", nil, nil)
	runningDesc = prometheus.NewDesc("kps_tasks_running",
		"Tasks RUNNING in the database, on any replica.", nil, nil)
	oldestDesc = prometheus.NewDesc("kps_tasks_oldest_queued_seconds",
		"Age of the oldest READY task in the database (0 when none waits).", nil, nil)
)

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queuedDesc
	ch <- runningDesc
	ch <- oldestDesc
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), queueTimeout)
	defer cancel()
	q, err := c.queue.TaskQueue(ctx)
	if err != nil {
		// Left out of this scrape, so that an alert on absent() or on the scrape's errors
		// fires rather than one on a made-up zero.
		c.log.Warn("reading the task queue for the metrics failed", "err", err)
		ch <- prometheus.NewInvalidMetric(queuedDesc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(queuedDesc, prometheus.GaugeValue, float64(q.Ready))
	ch <- prometheus.MustNewConstMetric(runningDesc, prometheus.GaugeValue, float64(q.Running))
	age := 0.0
	if !q.OldestReady.IsZero() {
		age = max(0, q.Now.Sub(q.OldestReady).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, age)
}
