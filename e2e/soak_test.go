package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openkps/kps/internal/openapitest"
	"github.com/openkps/kps/internal/sshdtest"
)

// The soak of issue 9 item 6: a mixed load (lists, key pair creates and deletes, binds and
// unbinds against real sshd hosts) against the built `kps serve` for a while, the first part
// on a binary built with -race. Every request must succeed and every task must end SUCCESS;
// a race report fails the run. The summary gives requests, errors, p50/p99 per request kind
// and the process's RSS sampled each minute.
//
// The default run is 20 s, to prove the harness; `make soak` runs 10 minutes
// (KPS_SOAK_DURATION) at the rate this 2-core machine sustains alongside its other work.

type soakSettings struct {
	duration  time.Duration // whole load
	raceShare float64       // part of it on the -race binary
	sample    time.Duration // RSS sampling period
	hosts     int           // sshd hosts, one bind/unbind chain each
	listRate  int           // list and show requests per second
	createGap time.Duration // pause between key pair creates
}

func soakFromEnv(t *testing.T) soakSettings {
	s := soakSettings{duration: 20 * time.Second, hosts: 3, listRate: 20, createGap: time.Second}
	// The short run uses the -race binary only when the test itself runs under -race (CI's race
	// step), where the race-instrumented packages are already built; `make soak` always does.
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, kv := range bi.Settings {
			if kv.Key == "-race" && kv.Value == "true" {
				s.raceShare = 0.3
			}
		}
	}
	if v := os.Getenv("KPS_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 5*time.Second {
			t.Fatalf("KPS_SOAK_DURATION=%q: want a duration of at least 5s", v)
		}
		s.duration = d
	}
	if v := os.Getenv("KPS_SOAK_RACE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f > 1 {
			t.Fatalf("KPS_SOAK_RACE=%q: want a fraction from 0 to 1", v)
		}
		s.raceShare = f
	}
	for name, p := range map[string]*int{"KPS_SOAK_HOSTS": &s.hosts, "KPS_SOAK_RATE": &s.listRate} {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				t.Fatalf("%s=%q: want a positive number", name, v)
			}
			*p = n
		}
	}
	s.sample = min(time.Minute, s.duration/4)
	return s
}

// soakStats collects the latency of every request by kind, and every error.
type soakStats struct {
	mu    sync.Mutex
	lat   map[string][]time.Duration
	errs  []string
	nerrs int
	tasks int
	rss   []string
	// plain is the normal binary's RSS, sampled during its load, for the flatness check.
	plain  []float64
	phases []string
}

func (s *soakStats) record(kind string, d time.Duration, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lat[kind] = append(s.lat[kind], d)
	if err != nil {
		s.nerrs++
		if len(s.errs) < 20 {
			s.errs = append(s.errs, kind+": "+err.Error())
		}
	}
}

// soakProc is one running `kps serve` whose whole stderr is kept (race reports go there).
type soakProc struct {
	base   string
	cmd    *exec.Cmd
	stderr *lockedBuffer
	done   chan struct{}
	token  string
	proj   string
	race   bool
}

func startSoakProc(t *testing.T, bin, dataDir string) *soakProc {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--listen", "127.0.0.1:0", "--workers", "4", "--log-level", "info")
	cmd.Env = append(os.Environ(), "KPS_DATA_DIR="+dataDir, "KPS_ADMIN_PASSWORD=soak-test-password", "GORACE=halt_on_error=0")
	pipe, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &soakProc{cmd: cmd, stderr: &lockedBuffer{}, done: make(chan struct{}), race: strings.HasSuffix(bin, "-race")}
	t.Cleanup(func() { cmd.Process.Kill(); <-p.done })
	addr := make(chan string, 1)
	go func() {
		defer close(p.done)
		re := regexp.MustCompile(`msg="kps serving" listen=(\S+)`)
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.stderr.Write(append(sc.Bytes(), '\n'))
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
		io.Copy(io.Discard, pipe)
	}()
	select {
	case a := <-addr:
		p.base = "http://" + a
	case <-time.After(60 * time.Second):
		t.Fatalf("kps serve did not start: %s", p.stderr.String())
	}
	s := &service{t: t, base: p.base}
	s.login("soak-test-password")
	p.token, p.proj = s.token, s.project
	return p
}

// stop ends the process with SIGTERM and fails on a race report, a panic or a non-zero exit.
func (p *soakProc) stop(t *testing.T, what string) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("%s: no exit 60s after SIGTERM", what)
	}
	err := p.cmd.Wait()
	log := p.stderr.String()
	if strings.Contains(log, "WARNING: DATA RACE") || strings.Contains(log, "panic:") {
		i := max(strings.Index(log, "WARNING: DATA RACE"), strings.Index(log, "panic:"))
		t.Errorf("%s: %s", what, log[i:min(len(log), i+8000)])
	}
	if err != nil {
		t.Errorf("%s: exit after SIGTERM: %v", what, err)
	}
}

// rss is the process's VmRSS in MiB, 0 when it cannot be read.
func (p *soakProc) rss() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

var soakClient = &http.Client{Transport: openapitest.NewTransport(nil), Timeout: 30 * time.Second}

// do sends one request and records it under kind; a status other than want is an error.
func (p *soakProc) do(st *soakStats, kind string, want int, method, path string, body any) map[string]any {
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, p.base+"/v3/"+p.proj+path, rd)
	req.Header.Set("X-Auth-Token", p.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := soakClient.Do(req)
	var out map[string]any
	if err == nil {
		raw, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case rerr != nil:
			err = rerr
		case resp.StatusCode != want:
			err = fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, raw)
		case len(raw) > 0:
			err = json.Unmarshal(raw, &out)
		}
	}
	st.record(kind, time.Since(start), err)
	if err != nil {
		return nil
	}
	return out
}

func TestSoak(t *testing.T) {
	cfg := soakFromEnv(t)
	if testing.Short() && os.Getenv("KPS_SOAK_DURATION") == "" {
		t.Skip("soak skipped in -short")
	}
	t.Parallel()
	var bin, raceBin string
	var builds sync.WaitGroup
	for _, b := range []*build{kpsBuild, raceBuild} {
		if b == raceBuild && cfg.raceShare == 0 {
			continue
		}
		builds.Go(func() {
			path, err := b.binary()
			if err != nil {
				t.Error(err)
			}
			if b == raceBuild {
				raceBin = path
			} else {
				bin = path
			}
		})
	}
	hosts := make([]*sshdtest.Host, cfg.hosts)
	for i := range hosts {
		builds.Go(func() { hosts[i] = sshdtest.Start(t, sshdtest.Options{}) })
	}
	builds.Wait()
	if t.Failed() {
		return
	}

	st := &soakStats{lat: map[string][]time.Duration{}}
	dataDir := t.TempDir()
	first := bin
	raceDur := time.Duration(float64(cfg.duration) * cfg.raceShare)
	if raceDur > 0 {
		first = raceBin
	}
	p := startSoakProc(t, first, dataDir)
	// Fixtures: the hosts, a key pair per host to bind, and some key pairs to list.
	unrelated := "# soak\n" + ed25519Line(t, "other@soak") + "\n"
	for i, h := range hosts {
		h.WriteAuthorizedKeys(t, unrelated)
		p.do(st, "setup", 201, "POST", "/servers", map[string]any{"server": map[string]any{"id": fmt.Sprintf("s%d", i),
			"address": h.Address, "port": h.Port, "user": h.User, "sshd_config": h.ConfigPath,
			"credential": map[string]any{"type": "password", "key": h.Password}}})
	}
	for i := range 20 + cfg.hosts {
		// Imported (an ed25519 key made here), so the setup spends no time generating RSA keys.
		name := fmt.Sprintf("fixed-%02d", i)
		p.do(st, "setup", 200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": name, "public_key": ed25519Line(t, name)}})
	}
	if st.nerrs > 0 {
		t.Fatalf("setup: %v", st.errs)
	}
	delete(st.lat, "setup")

	start := time.Now()
	if raceDur > 0 {
		st.phases = append(st.phases, fmt.Sprintf("%s on the -race binary", raceDur.Round(time.Second)))
		soakLoad(t, p, cfg, st, raceDur, start)
		p.stop(t, "the -race binary")
		p = startSoakProc(t, bin, dataDir)
	}
	if rest := cfg.duration - raceDur; rest > 0 {
		st.phases = append(st.phases, fmt.Sprintf("%s on the normal binary", rest.Round(time.Second)))
		soakLoad(t, p, cfg, st, rest, start)
	}
	end := p.rss()
	st.rss = append(st.rss, fmt.Sprintf("%s: %.1f MiB (end)", time.Since(start).Round(time.Second), end))
	if !p.race {
		st.plain = append(st.plain, end)
	}
	for i, h := range hosts {
		if got, _ := h.AuthorizedKeys(t); got != unrelated {
			t.Errorf("host s%d after the soak: %q", i, got)
		}
	}
	p.stop(t, "the normal binary")

	// Summary.
	var b strings.Builder
	total := 0
	kinds := make([]string, 0, len(st.lat))
	for k, v := range st.lat {
		kinds = append(kinds, k)
		total += len(v)
	}
	slices.Sort(kinds)
	fmt.Fprintf(&b, "soak: %s (%s), %d requests (%.1f/s), %d errors, %d tasks\n", cfg.duration, strings.Join(st.phases, ", "),
		total, float64(total)/cfg.duration.Seconds(), st.nerrs, st.tasks)
	fmt.Fprintf(&b, "  %-22s %7s %9s %9s %9s\n", "request", "count", "p50", "p99", "max")
	for _, k := range kinds {
		v := st.lat[k]
		slices.Sort(v)
		q := func(f float64) time.Duration { return v[min(len(v)-1, int(f*float64(len(v))))] }
		fmt.Fprintf(&b, "  %-22s %7d %9s %9s %9s\n", k, len(v), q(0.5).Round(10*time.Microsecond),
			q(0.99).Round(10*time.Microsecond), v[len(v)-1].Round(10*time.Microsecond))
	}
	fmt.Fprintf(&b, "  RSS: %s", strings.Join(st.rss, "; "))
	t.Log(b.String())
	if st.nerrs > 0 {
		t.Errorf("%d errors, the first: %s", st.nerrs, strings.Join(st.errs, "\n"))
	}
	// Memory stays flat: on a run of several samples, the normal binary's last sample is within
	// half again of its smallest one after the first (which still holds the start-up's garbage).
	if n := len(st.plain); n >= 4 {
		low := slices.Min(st.plain[1:])
		if last := st.plain[n-1]; last > 1.5*low {
			t.Errorf("RSS grew from %.1f to %.1f MiB under a steady load", low, last)
		}
	}
	if out := os.Getenv("KPS_SOAK_SUMMARY"); out != "" {
		os.WriteFile(out, []byte(b.String()+"\n"), 0o644)
	}
}

// soakLoad runs the mixed load against p for d and returns once every task it started ended.
func soakLoad(t *testing.T, p *soakProc, cfg soakSettings, st *soakStats, d time.Duration, start time.Time) {
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	sample := func() {
		st.mu.Lock()
		defer st.mu.Unlock()
		mib := p.rss()
		st.rss = append(st.rss, fmt.Sprintf("%s: %.1f MiB", time.Since(start).Round(time.Second), mib))
		if !p.race {
			st.plain = append(st.plain, mib)
		}
	}
	sample()

	// RSS each sampling period.
	wg.Go(func() {
		tick := time.NewTicker(cfg.sample)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
			case <-time.After(time.Until(deadline)):
				return
			}
			sample()
		}
	})
	// Lists and shows, at listRate per second over four clients.
	lists := []struct{ kind, path string }{
		{"list keypairs", "/keypairs?limit=20"},
		{"show keypair", "/keypairs/fixed-07"},
		{"list servers", "/servers"},
		{"list running tasks", "/running-tasks"},
		{"list failed tasks", "/failed-tasks?limit=50"},
		{"list keypairs page 2", "/keypairs?limit=10&offset=10"},
	}
	for c := range 4 {
		wg.Go(func() {
			tick := time.NewTicker(4 * time.Second / time.Duration(cfg.listRate))
			defer tick.Stop()
			for i := c; time.Now().Before(deadline); i++ {
				l := lists[i%len(lists)]
				p.do(st, l.kind, 200, "GET", l.path, nil)
				<-tick.C
			}
		})
	}
	// Key pair creates (the service generates the key) and deletes.
	wg.Go(func() {
		for i := 0; time.Now().Before(deadline); i++ {
			name := fmt.Sprintf("soak-%d-%d", time.Now().UnixNano(), i)
			if p.do(st, "create keypair", 200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": name}}) != nil {
				p.do(st, "delete keypair", 204, "DELETE", "/keypairs/"+name, nil)
			}
			time.Sleep(cfg.createGap)
		}
	})
	// One bind/unbind chain per host: RESET with the service credential, then UNBIND.
	for i := range cfg.hosts {
		wg.Go(func() {
			server, kp := fmt.Sprintf("s%d", i), fmt.Sprintf("fixed-%02d", i)
			for time.Now().Before(deadline) {
				for _, step := range []struct{ kind, path string }{{"associate", "/keypairs/associate"}, {"disassociate", "/keypairs/disassociate"}} {
					body := map[string]any{"server": map[string]any{"id": server}}
					if step.kind == "associate" {
						body["keypair_name"] = kp
					}
					began := time.Now()
					out := p.do(st, step.kind, 200, "POST", step.path, body)
					if out == nil {
						return
					}
					id, _ := out["task_id"].(string)
					for {
						task := p.do(st, "show task", 200, "GET", "/tasks/"+id, nil)
						if task == nil {
							return
						}
						s, _ := task["task_status"].(string)
						if strings.HasPrefix(s, "SUCCESS_") {
							st.record(step.kind+" to SUCCESS", time.Since(began), nil)
							break
						}
						if strings.HasPrefix(s, "FAILED_") {
							st.record(step.kind+" to SUCCESS", time.Since(began), fmt.Errorf("task %s on %s ended %s", id, server, s))
							return
						}
						time.Sleep(50 * time.Millisecond)
					}
					st.mu.Lock()
					st.tasks++
					st.mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
}
