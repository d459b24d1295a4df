package main

import (
	"context"

	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openkps/kps/internal/sshdtest"
)

// memory measures part 4: VmRSS of a fresh kps serve (SQLite) once idle, then the largest
// VmRSS sampled every 50 ms while MemoryTasks RESET tasks are queued and run, and VmHWM when
// they have ended. The tasks go to servers spread over the test hosts, so that the workers
// edit different hosts at the same time.
func (b *bench) memory(ctx context.Context) ([]MemoryRow, error) {
	nHosts := b.maxHosts()
	nHosts = min(nHosts, b.cfg.MemoryTasks)
	hosts, err := b.startHosts(nHosts)
	if err != nil {
		return nil, err
	}
	var rows []MemoryRow
	// kps serve's own default soft limit, none at all (the Go runtime's default), and the
	// GOMEMLIMIT of -memory-limit.
	for i, limit := range []string{"", "off", b.cfg.MemoryLimit} {
		if limit == "" && i > 0 {
			break
		}
		row, err := b.memoryRows(ctx, hosts, limit)
		if err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// memoryRows measures one configuration: limit is kps serve's GOMEMLIMIT, "" for kps serve's
// default soft limit, "off" for none (--memory-limit off).
func (b *bench) memoryRows(ctx context.Context, hosts []*sshdtest.Host, limit string) (MemoryRow, error) {
	row := MemoryRow{Engine: "sqlite", Limit: limit, Tasks: b.cfg.MemoryTasks, HostsUsed: len(hosts)}
	var env []string
	switch limit {
	case "":
	case "off":
		env = []string{"KPS_MEMORY_LIMIT=off"}
	default:
		env = []string{"GOMEMLIMIT=" + limit}
	}
	runs := b.cfg.MemoryRuns
	if runs < 1 {
		runs = b.cfg.Runs
	}
	var idle, login, busy, hwm, wall []float64
	for run := range runs {
		// The first start bootstraps the identity store (hashing the admin password); the
		// measured process starts on that data directory, as a service usually does.
		dir := b.scratch("kps-memory")
		svc, err := launchService(ctx, b.kps, dir, "", b.cfg.Workers, env)
		if err != nil {
			return row, err
		}
		svc.Stop()
		if svc, err = launchService(ctx, b.kps, dir, "", b.cfg.Workers, env); err != nil {
			return row, err
		}
		b.seq++
		r, failed, err := b.memoryRun(ctx, svc, b.seq)
		svc.Stop()
		if err != nil {
			return row, err
		}
		idle, login, busy, hwm, wall = append(idle, r[0]), append(login, r[4]), append(busy, r[1]), append(hwm, r[2]), append(wall, r[3])
		row.Failed += failed
		b.logf("memory run %d (GOMEMLIMIT=%s): idle %.1f MiB, after a login %.1f MiB, busy peak %.1f MiB, HWM %.1f MiB, %d tasks in %.1fs (%d failed)",
			run+1, limit, r[0], r[4], r[1], r[2], b.cfg.MemoryTasks, r[3], failed)
	}
	row.IdleRSS, row.LoginRSS, row.BusyRSS, row.BusyHWM, row.Wall = stat(idle), stat(login), stat(busy), stat(hwm), stat(wall)
	return row, nil
}

// memoryRun returns idle RSS, busy peak RSS, VmHWM (MiB), the tasks' wall time (s) and the
// RSS after one login (MiB), of a service nobody has logged in to yet.
func (b *bench) memoryRun(ctx context.Context, svc *service, run int) ([5]float64, int, error) {
	var r [5]float64
	const mib = 1 << 20
	settle := func() error { // let start-up work (migrations, first GC) or the login settle
		select {
		case <-time.After(b.cfg.Settle):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := settle(); err != nil {
		return r, 0, err
	}
	rss, _, err := memory(svc.pid())
	if err != nil {
		return r, 0, err
	}
	r[0] = float64(rss) / mib
	if err := svc.login(); err != nil {
		return r, 0, err
	}
	if err := settle(); err != nil {
		return r, 0, err
	}
	if rss, _, err = memory(svc.pid()); err != nil {
		return r, 0, err
	}
	r[4] = float64(rss) / mib

	name := fmt.Sprintf("memory-%d", run)
	if err := svc.call(ctx, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": name}}, 200, nil); err != nil {
		return r, 0, err
	}
	ids := make([]string, b.cfg.MemoryTasks)
	err = parallel(len(ids), 8, func(i int) error {
		h := b.hosts[i%len(b.hosts)]
		ids[i] = fmt.Sprintf("%s-s%d", name, i)
		return svc.call(ctx, "POST", "/servers", map[string]any{"server": map[string]any{"id": ids[i], "address": h.Address,
			"port": h.Port, "user": h.User, "host_keys": []string{h.HostKey}, "sshd_config": h.ConfigPath,
			"credential": map[string]any{"type": "keypair", "key": b.keys.pem}}}, 201, nil)
	})
	if err != nil {
		return r, 0, err
	}

	var peak atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if rss, _, err := memory(svc.pid()); err == nil && rss > peak.Load() {
				peak.Store(rss)
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond): // sampling interval
			}
		}
	}()
	start := time.Now()
	for lo := 0; lo < len(ids); lo += 10 {
		var items []map[string]any
		for _, id := range ids[lo:min(lo+10, len(ids))] {
			items = append(items, map[string]any{"keypair_name": name, "server": map[string]any{"id": id}})
		}
		if err = svc.call(ctx, "POST", "/keypairs/batch-associate", map[string]any{"batch_keypairs": items}, 200, nil); err != nil {
			break
		}
	}
	if err == nil {
		err = waitTasks(ctx, svc)
	}
	r[3] = time.Since(start).Seconds()
	close(stop)
	wg.Wait()
	if err != nil {
		return r, 0, err
	}
	_, hwm, err := memory(svc.pid())
	if err != nil {
		return r, 0, err
	}
	r[1], r[2] = float64(peak.Load())/mib, float64(hwm)/mib
	var failed struct {
		Total int `json:"total"`
	}
	if err := svc.call(ctx, "GET", "/failed-tasks?limit=1", nil, 200, &failed); err != nil {
		return r, 0, err
	}
	return r, failed.Total, nil
}
