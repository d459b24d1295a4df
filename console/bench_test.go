package console_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/client"
)

// serverTiming reads the console's Server-Timing header: what the page cost the API and in
// all, on the server, in milliseconds.
var serverTiming = regexp.MustCompile(`api;dur=([0-9.]+), render;dur=([0-9.]+), total;dur=([0-9.]+)`)

// BenchmarkFailedTaskPage renders the failed-task page of 1,000 rows (limit=1000) from the
// built binary, whose project holds 1,000 failed tasks, and reports the server-side time of
// a page from the console's Server-Timing header (server-ms/page; api-ms/page is the API's
// share) and the processor time the service spent per page (cpu-ms/page). Issue 20 asks for
// under 200 ms on the 2-core machine.
//
//	go test -run '^$' -bench FailedTaskPage -benchtime 20x ./console
func BenchmarkFailedTaskPage(b *testing.B) {
	s := startService(b, "--max-queued-per-project", "0", "--workers", "16")
	seedFailedTasks(b, s, 1000)
	sess := newBrowserless(b, s, "")
	if st := sess.signIn("admin", adminPassword); st != http.StatusSeeOther {
		b.Fatalf("sign-in: %d", st)
	}
	var api, total float64
	n := 0
	cpu0 := s.cpu(b)
	for b.Loop() {
		resp, err := sess.hc.Get(s.base + "/console/tasks/failed?limit=1000")
		if err != nil {
			b.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("page: %d %v", resp.StatusCode, err)
		}
		if rows := strings.Count(string(body), `<tr id="task-`); rows != 1000 {
			b.Fatalf("the page has %d rows, want 1000", rows)
		}
		m := serverTiming.FindStringSubmatch(resp.Header.Get("Server-Timing"))
		if m == nil {
			b.Fatalf("no Server-Timing: %q", resp.Header.Get("Server-Timing"))
		}
		a, _ := strconv.ParseFloat(m[1], 64)
		t, _ := strconv.ParseFloat(m[3], 64)
		api, total, n = api+a, total+t, n+1
	}
	cpu := s.cpu(b) - cpu0
	b.ReportMetric(total/float64(n), "server-ms/page")
	b.ReportMetric(api/float64(n), "api-ms/page")
	// The process's processor time per page: what the page costs whatever else the machine
	// runs (the wall-clock figure above grows when other processes take the cores).
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(n), "cpu-ms/page")
}

// seedFailedTasks makes n failed tasks: n servers on a port nothing listens on, each bound
// with a password, ten per batch; every task fails at once with KPS.6601.
func seedFailedTasks(tb testing.TB, s *service, n int) {
	tb.Helper()
	ctx := context.Background()
	if _, err := s.admin.CreateKeyPair(ctx, client.NewKeyPair{Name: "seed"}); err != nil {
		tb.Fatal(err)
	}
	port := closedPort(tb)
	addr := "127.0.0.1"
	for i := range n {
		name := fmt.Sprintf("host-%04d (rack %d)", i, i%40)
		if _, err := s.admin.CreateServer(ctx, client.ServerSpec{ID: fmt.Sprintf("host-%04d", i), Name: &name, Address: &addr, Port: &port}); err != nil {
			tb.Fatal(err)
		}
	}
	login := &kps.Credential{Type: kps.CredentialPassword, Key: "x"}
	for start := 0; start < n; start += 10 {
		var binds []client.Bind
		for i := start; i < min(start+10, n); i++ {
			binds = append(binds, client.Bind{KeyPairName: "seed", ServerID: fmt.Sprintf("host-%04d", i), Auth: login})
		}
		res, err := s.admin.BatchBind(ctx, binds)
		if err != nil {
			tb.Fatal(err)
		}
		for _, r := range res {
			if !r.Accepted() {
				tb.Fatalf("bind of %s refused: %s %s", r.ServerID, r.ErrorCode, r.ErrorMsg)
			}
		}
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		page, err := s.admin.ListFailedTasks(ctx, 1, 0)
		if err != nil {
			tb.Fatal(err)
		}
		if page.Total == n {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d of %d tasks failed in time", page.Total, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
