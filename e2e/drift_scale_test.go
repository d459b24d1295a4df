package e2e

import (
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/openkps/kps/daemon"
	"github.com/openkps/kps/internal/sshdtest"
)

// TestDriftCheckAtScale measures a drift check over KPS_DRIFT_SCALE_HOSTS real sshd hosts
// (skipped when unset) against the floor doing the same read — one SSH login and one session
// that prints authorized_keys — with bare x/crypto/ssh at the same concurrency (the service's
// --workers). The two alternate, three times each; it logs the medians and fails only when the
// check misses a host.
//
//	KPS_DRIFT_SCALE_HOSTS=200 go test -run TestDriftCheckAtScale -v -timeout 30m ./e2e
func TestDriftCheckAtScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("KPS_DRIFT_SCALE_HOSTS"))
	if n <= 0 {
		t.Skip("KPS_DRIFT_SCALE_HOSTS is not set")
	}
	const workers = 32
	s := setup(t, func(c *daemon.Config) { c.Workers = workers; c.MaxQueued = 0 })
	hosts := make([]*sshdtest.Host, n)
	start := time.Now()
	var mu sync.Mutex
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range hosts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			h := sshdtest.Start(t, sshdtest.Options{})
			mu.Lock()
			hosts[i] = h
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("%d hosts started in %v", n, time.Since(start).Round(time.Second))
	for i, h := range hosts {
		s.addHost("h"+strconv.Itoa(i), h, map[string]any{"credential": map[string]any{"type": "password", "key": h.Password},
			"host_keys": []string{h.HostKey}})
	}
	s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "fleet"}})
	var tasks []string
	for i := 0; i < n; i += 10 {
		var items []any
		for j := i; j < min(i+10, n); j++ {
			items = append(items, map[string]any{"keypair_name": "fleet", "server": map[string]any{"id": "h" + strconv.Itoa(j)}})
		}
		for _, tk := range s.must(200, "POST", "/keypairs/batch-associate", map[string]any{"batch_keypairs": items})["tasks"].([]any) {
			tasks = append(tasks, str(tk.(map[string]any)["task_id"]))
		}
	}
	for _, id := range tasks {
		if st := s.waitTask(id); st != "SUCCESS_RESET" {
			t.Fatalf("bind %s: %s", id, st)
		}
	}

	floor := func() time.Duration {
		start := time.Now()
		sem := make(chan struct{}, workers)
		var wg sync.WaitGroup
		for _, h := range hosts {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				c, err := ssh.Dial("tcp", h.Addr(), &ssh.ClientConfig{User: h.User, Auth: []ssh.AuthMethod{ssh.Password(h.Password)},
					HostKeyCallback: ssh.FixedHostKey(h.PublicHostKey()), Timeout: 30 * time.Second})
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				sess, err := c.NewSession()
				if err != nil {
					t.Error(err)
					return
				}
				defer sess.Close()
				if _, err := sess.Output("cat .ssh/authorized_keys; ls -ln .ssh/authorized_keys"); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		return time.Since(start)
	}
	kps := func() time.Duration {
		start := time.Now()
		id := str(s.must(200, "POST", "/drift-checks", map[string]any{})["drift_check"].(map[string]any)["id"])
		c := s.waitDrift(id)
		took := time.Since(start)
		sum := c["summary"].(map[string]any)
		if c["status"] != "DONE" || sum["checked"] != float64(n) || sum["drifted"] != float64(0) {
			t.Fatalf("drift check over %d hosts: %v", n, sum)
		}
		return took
	}
	var fl, kp []time.Duration
	for range 3 {
		fl = append(fl, floor())
		kp = append(kp, kps())
	}
	med := func(d []time.Duration) time.Duration {
		x := append([]time.Duration(nil), d...)
		for i := range x {
			for j := i + 1; j < len(x); j++ {
				if x[j] < x[i] {
					x[i], x[j] = x[j], x[i]
				}
			}
		}
		return x[len(x)/2]
	}
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("drift check over %d hosts, concurrency %d, %d CPUs, load %s: OpenKPS median %v (runs %v), floor median %v (runs %v), ratio %.2f",
		n, workers, runtime.NumCPU(), string(load[:min(len(load), 14)]), med(kp).Round(time.Millisecond), kp, med(fl).Round(time.Millisecond), fl,
		float64(med(kp))/float64(med(fl)))
}
