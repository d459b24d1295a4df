package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/openkps/kps"
)

// The operator's documents, read from the module's docs/.
const (
	dashboardFile  = "../docs/grafana/openkps.json"
	operationsFile = "../docs/operations.md"
)

// exported is every series name a scrape of a registry with one value of each metric holds:
// the families' names, and for histograms and summaries the names of their series.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	r := New(Options{Queue: queueFunc(func() (kps.TaskQueue, error) { return kps.TaskQueue{Ready: 1, Now: time.Now()}, nil })})
	r.TaskEnded(kps.OpReset, false, "KPS.6601", time.Second)
	r.TasksSwept(1)
	r.SSHConnected(true, time.Millisecond)
	r.HTTPRequest("kps", "GET /v3/{project_id}/failed-tasks", 200, time.Millisecond)
	r.AuthFailure("password-wrong")
	r.DriftChecked(&kps.DriftCheck{Results: []kps.DriftResult{{Checked: true}}})
	fams, err := r.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range fams {
		names[f.GetName()] = true
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[f.GetName()+s] = true
			}
		case dto.MetricType_SUMMARY:
			names[f.GetName()+"_sum"], names[f.GetName()+"_count"] = true, true
		}
	}
	return names
}

var (
	// What in a PromQL expression is not a metric name: string literals, label matchers and
	// grouping lists, range and subquery brackets, and Grafana's variables.
	promqlString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promqlMatchers = regexp.MustCompile(`\{[^{}]*\}`)
	promqlGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promqlRange    = regexp.MustCompile(`\[[^\[\]]*\]`)
	// An identifier; a function when a parenthesis follows it.
	promqlIdent = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?`)
	// Words of the language that are neither functions nor metrics.
	promqlKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true}
)

// metricNames is the metric names expr selects. It also reports whether expr's brackets balance,
// the one syntax check the test can make without a PromQL parser.
func metricNames(expr string) (names []string, balanced bool) {
	depth := map[rune]int{}
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	for _, c := range promqlString.ReplaceAllString(expr, `""`) {
		switch c {
		case '(', '[', '{':
			depth[c]++
		case ')', ']', '}':
			if depth[pairs[c]]--; depth[pairs[c]] < 0 {
				return nil, false
			}
		}
	}
	if depth['('] != 0 || depth['['] != 0 || depth['{'] != 0 {
		return nil, false
	}
	e := promqlString.ReplaceAllString(expr, `""`)
	e = promqlMatchers.ReplaceAllString(e, " ")
	e = promqlGrouping.ReplaceAllString(e, " ")
	e = promqlRange.ReplaceAllString(e, " ")
	e = strings.ReplaceAll(e, "$", " ")
	for _, m := range promqlIdent.FindAllStringSubmatchIndex(e, -1) {
		word := e[m[0]:m[1]]
		if m[2] >= 0 || promqlKeywords[word] {
			continue // a function, or a keyword
		}
		if m[0] > 0 && (e[m[0]-1] >= '0' && e[m[0]-1] <= '9' || e[m[0]-1] == '.') {
			continue // the exponent or unit of a number (1e3)
		}
		names = append(names, word)
	}
	return names, true
}

// TestDashboard: the Grafana dashboard of docs/ is valid JSON whose every query (panels and
// template variables) names only metrics the service exports, and shows every kps_ metric; the
// PromQL blocks of docs/operations.md name only exported metrics (and Prometheus's up). A
// metric renamed or dropped in the code fails here until the documents follow.
func TestDashboard(t *testing.T) {
	have := exported(t)
	check := func(where, expr string, extra ...string) []string {
		t.Helper()
		names, ok := metricNames(expr)
		if !ok {
			t.Errorf("%s: unbalanced brackets in %q", where, expr)
		}
		if len(names) == 0 {
			t.Errorf("%s: no metric in %q", where, expr)
		}
		for _, n := range names {
			if !have[n] && !strings.Contains(" "+strings.Join(extra, " ")+" ", " "+n+" ") {
				t.Errorf("%s: %q names %s, which the service does not export", where, expr, n)
			}
		}
		return names
	}

	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title      string `json:"title"`
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s is not valid JSON: %v", dashboardFile, err)
	}
	if dash.Title == "" || dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("%s: no title, uid or panels", dashboardFile)
	}
	shown := map[string]bool{}
	exprs := 0
	for _, p := range dash.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs++
			for _, n := range check("panel "+p.Title, tg.Expr) {
				shown[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_count"), "_sum")] = true
			}
		}
	}
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Errorf("variable %s: query %s: %v", v.Name, v.Query, err)
			continue
		}
		// label_values(metric{…}, label): the label is a name, not a metric.
		sel, _, _ := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(q.Query, "label_values("), ")"), ",")
		check("variable "+v.Name, sel)
	}
	for n := range have {
		if strings.HasPrefix(n, "kps_") && !strings.HasSuffix(n, "_bucket") && !strings.HasSuffix(n, "_sum") &&
			!strings.HasSuffix(n, "_count") && !shown[n] {
			t.Errorf("the dashboard shows nothing of %s", n)
		}
	}

	md, err := os.ReadFile(operationsFile)
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```promql\n(.*?)```").FindAllStringSubmatch(string(md), -1)
	if len(blocks) < 6 {
		t.Fatalf("%s: %d PromQL blocks, want the alerts (failed tasks, queue depth and age, auth failures, task duration, 5xx)", operationsFile, len(blocks))
	}
	for _, b := range blocks {
		check(operationsFile, b[1], "up")
	}
	t.Logf("%d dashboard queries and %d PromQL blocks checked against %d exported series names", exprs, len(blocks), len(have))
}

// TestMetricNames: the check of TestDashboard finds the metrics of an expression and nothing
// else, and would catch a misspelt one.
func TestMetricNames(t *testing.T) {
	for expr, want := range map[string]string{
		`sum by (le, operation) (rate(kps_task_duration_seconds_bucket{job="$job", outcome=~"fa.+"}[$__rate_interval]))`: "kps_task_duration_seconds_bucket",
		`absent(kps_tasks_queued) or up{job="openkps"} == 0`:                                                             "kps_tasks_queued up",
		`(sum(rate(a_total[5m])) / sum(rate(b_total[5m]))) > 1e3 and sum(increase(c[1h] offset 1d)) >= 10`:               "a_total b_total c",
	} {
		got, ok := metricNames(expr)
		if !ok || strings.Join(got, " ") != want {
			t.Errorf("metricNames(%q) = %q %v, want %q", expr, got, ok, want)
		}
	}
	if _, ok := metricNames(`sum(rate(x[5m])`); ok {
		t.Error("unbalanced brackets accepted")
	}
	have := exported(t)
	if have["kps_task_total"] || !have["kps_tasks_total"] || !have["kps_ssh_connect_seconds_count"] || !have["process_cpu_seconds_total"] {
		t.Error("the exported names are not what a scrape holds")
	}
}
