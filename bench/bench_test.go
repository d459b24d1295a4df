package main

import (
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openkps/kps/internal/sshdtest"
)

// TestHarness runs every part of the harness on a tiny scale (two hosts, one run, small
// tables) and checks what it measured and wrote. Ansible and wrk take part when installed;
// the test never installs them. The parts run side by side, sharing one kps binary.
func TestHarness(t *testing.T) {
	if _, err := sshdtest.Available(); err != nil {
		if os.Getenv("KPS_REQUIRE_SSHD") == "1" {
			t.Fatalf("%v (KPS_REQUIRE_SSHD=1 requires a real sshd)", err)
		}
		t.Skip(err)
	}
	if testing.Short() {
		t.Skip("starts sshd hosts, kps serve and load generators")
	}
	_, errAnsible := exec.LookPath("ansible-playbook")
	_, errSshpass := exec.LookPath("sshpass")
	_, errWrk := exec.LookPath("wrk")
	ansible, wrk := errAnsible == nil && errSshpass == nil, errWrk == nil

	bin := filepath.Join(t.TempDir(), "kps")
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", bin, "./cmd/kps")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	harness := func(t *testing.T, part string) (*Results, string) {
		out := t.TempDir()
		cfg := defaultConfig()
		cfg.Hosts, cfg.Runs, cfg.Engines, cfg.Out, cfg.KPS = []int{2}, 1, []string{"sqlite"}, out, bin
		cfg.FailedTasks, cfg.ScaleSizes, cfg.MemoryTasks = 120, []int{100, 2000}, 6
		cfg.Conns, cfg.Duration, cfg.Settle = []int{4}, time.Second, 100*time.Millisecond
		cfg.NoInstall, cfg.Log = true, testLog{t}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := run(ctx, cfg, part, []string{"-n", "2", part}); err != nil {
			t.Fatal(err)
		}
		res, err := loadResults(out)
		if err != nil {
			t.Fatal(err)
		}
		report, err := os.ReadFile(filepath.Join(out, "BENCHMARKS.md"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(report), "go -C bench run . -n 2 "+part) || !strings.Contains(string(report), "| openssh | OpenSSH_") {
			t.Errorf("BENCHMARKS.md lacks the command or the versions:\n%s", report)
		}
		return res, string(report)
	}
	chart := func(t *testing.T, res *Results, name string) {
		t.Helper()
		dir := t.TempDir()
		if err := writeReport(dir, res); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(filepath.Join(dir, "bench", name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if img, err := png.Decode(f); err != nil || img.Bounds().Dx() != chartW {
			t.Errorf("%s: %v", name, err)
		}
	}

	t.Run("fleet", func(t *testing.T) {
		t.Parallel()
		res, report := harness(t, "fleet")
		tools := map[string]int{}
		for _, r := range res.Fleet {
			tools[r.Tool]++
			if r.Hosts != 2 || r.Failed != 0 || r.Wall.Runs != 1 || r.Wall.Median <= 0 {
				t.Errorf("fleet row %+v", r)
			}
			if r.Tool == "OpenKPS" && (r.CPU.Median <= 0 || r.RSS.Median <= 0) {
				t.Errorf("no CPU time or RSS of kps serve: %+v", r)
			}
			if r.Tool == "floor" && (r.ProcessMS.Median <= 0 || r.LoginMS.Median <= 0) {
				t.Errorf("no cost of a process or an SSH login: %+v", r)
			}
		}
		if tools["floor"] != 2 || tools["OpenKPS"] != 2 || (ansible && tools["Ansible"] != 2) || (!ansible && tools["Ansible"] != 0) {
			t.Errorf("fleet rows by tool %v (Ansible installed: %v)", tools, ansible)
		}
		for _, want := range []string{"## 1. Fleet bind", "| 2 | password | OpenKPS |", "| 2 | key | floor |"} {
			if !strings.Contains(report, want) {
				t.Errorf("BENCHMARKS.md lacks %q:\n%s", want, report)
			}
		}
		chart(t, res, "fleet-2.png")
	})
	t.Run("query and scale", func(t *testing.T) {
		t.Parallel()
		res, report := harness(t, "query")
		if !wrk && len(res.Query) != 0 || wrk && len(res.Query) != 6 {
			t.Errorf("%d query rows (wrk installed: %v)", len(res.Query), wrk)
		}
		for _, r := range res.Query {
			if r.RPS.Median <= 0 || r.P50.Median <= 0 || r.P99.Median < r.P50.Median || r.Errors != 0 || r.Bytes == 0 {
				t.Errorf("query row %+v", r)
			}
		}
		if wrk {
			if !strings.Contains(report, "| sqlite | 1000 | 0 | 4 |") {
				t.Errorf("BENCHMARKS.md lacks the query table:\n%s", report)
			}
			chart(t, res, "query.png")
		}
		res, report = harness(t, "scale")
		if len(res.Scale) != 2 {
			t.Fatalf("scale rows %+v", res.Scale)
		}
		for _, r := range res.Scale {
			if r.First.Median <= 0 || r.Seq.Median <= 0 || (wrk && r.RPS.Median <= 0) {
				t.Errorf("scale row %+v", r)
			}
		}
		if !strings.Contains(report, "| sqlite | 2000 |") {
			t.Errorf("BENCHMARKS.md lacks the scale table:\n%s", report)
		}
		chart(t, res, "scale.png")
	})
	t.Run("rotate", func(t *testing.T) {
		t.Parallel()
		res, report := harness(t, "rotate")
		if len(res.Rotate) != 2 || res.Rotate[0].Tool != "floor" || res.Rotate[1].Tool != "OpenKPS" {
			t.Fatalf("rotate rows %+v", res.Rotate)
		}
		for _, r := range res.Rotate {
			if r.Hosts != 2 || r.Failed != 0 || r.Wall.Median <= 0 || len(r.Load) != 1 {
				t.Errorf("rotate row %+v", r)
			}
		}
		if res.Rotate[1].PeakRSS.Median <= 1 || res.Rotate[1].CPU.Median <= 0 {
			t.Errorf("no RSS or CPU of kps serve: %+v", res.Rotate[1])
		}
		if !strings.Contains(report, "## 5. Staged rotation") || !strings.Contains(report, "| 2 | OpenKPS |") {
			t.Errorf("BENCHMARKS.md lacks the rotate table:\n%s", report)
		}
		chart(t, res, "rotate.png")
	})
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		res, report := harness(t, "memory")
		if len(res.Memory) != 3 || res.Memory[0].Limit != "" || res.Memory[1].Limit != "off" || res.Memory[2].Limit != "64MiB" {
			t.Fatalf("memory rows %+v", res.Memory)
		}
		for _, m := range res.Memory {
			if m.IdleRSS.Median <= 1 || m.BusyHWM.Median < m.IdleRSS.Median || m.LoginRSS.Median <= 1 || m.Failed != 0 || m.Tasks != 6 {
				t.Errorf("memory row %+v", m)
			}
		}
		if !strings.Contains(report, "| sqlite | GOMEMLIMIT=64MiB |") || !strings.Contains(report, "| sqlite | kps default (128MiB) |") {
			t.Errorf("BENCHMARKS.md lacks the memory table:\n%s", report)
		}
	})
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func TestParseWrk(t *testing.T) {
	out := `Running 5s test @ http://127.0.0.1:1/v3/p/failed-tasks?limit=10
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.10ms    1.20ms  40.00ms   90.00%
  Latency Distribution
     50%  812.00us
     75%    3.00ms
     90%    4.00ms
     99%    1.02s
  12345 requests in 5.00s, 10.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 4
Requests/sec:   2469.00
Transfer/sec:      2.00MB
`
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.rps != 2469 || r.p50 != 0.812 || r.p99 != 1020 || r.errors != 9 {
		t.Errorf("%+v", r)
	}
	if _, err := parseWrk("unable to connect to 127.0.0.1:1 Connection refused"); err == nil {
		t.Error("no error without figures")
	}
}

func TestStat(t *testing.T) {
	if s := stat([]float64{3, 1, 2}); s != (Stat{Median: 2, Min: 1, Max: 3, Runs: 3}) {
		t.Errorf("%+v", s)
	}
	if s := stat([]float64{4, 1, 2, 3}); s.Median != 2.5 {
		t.Errorf("%+v", s)
	}
	if s := stat(nil); s.Runs != 0 {
		t.Errorf("%+v", s)
	}
	for raw, want := range map[float64]float64{0.3: 0.5, 7: 10, 120: 200, 1500: 2000} {
		if got := niceStep(raw); got != want {
			t.Errorf("niceStep(%v) = %v, want %v", raw, got, want)
		}
	}
}
