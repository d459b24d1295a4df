package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/openkps/kps/internal/sshdtest"
)

// RotateRow is one way of rotating a key over N hosts (part 5). Times are seconds, memory MiB.
type RotateRow struct {
	Hosts       int      `json:"hosts"`
	Tool        string   `json:"tool"` // floor or OpenKPS
	Method      string   `json:"method"`
	Concurrency int      `json:"concurrency"`
	Wall        Stat     `json:"wall_s"`
	CPU         Stat     `json:"cpu_s"`
	PeakRSS     Stat     `json:"peak_rss_mib,omitempty"` // kps serve during the rotation: largest VmRSS sampled, or VmHWM if the rotation raised it
	HWM         Stat     `json:"hwm_mib,omitempty"`      // kps serve: VmHWM after it
	Failed      int      `json:"failed_hosts"`
	Load        []string `json:"load"` // /proc/loadavg before each run
}

// rotationKey is a fresh ed25519 key: the signer, its OpenSSH private key and its line.
type rotationKey struct {
	signer ssh.Signer
	pem    string
	line   string
}

func newRotationKey(comment string) (*rotationKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	return &rotationKey{signer: signer, pem: string(pem.EncodeToMemory(block)),
		line: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))) + " " + comment}, nil
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// rotate measures part 5: one key pair rotated over N hosts in three steps per host — add the
// new key beside the old, log in with the new key, remove the old — by OpenKPS (a staged
// rotation, kps-v3-api.md §8) and by the floor doing the same with bare x/crypto/ssh, at the
// same concurrency, the two interleaved run by run so that they see the same machine.
func (b *bench) rotate(ctx context.Context) ([]RotateRow, error) {
	maxN := b.maxHosts()
	if _, err := b.startHosts(maxN); err != nil {
		return nil, err
	}
	par := b.cfg.FloorParallel
	svc, err := startService(ctx, b.kps, b.scratch("rotate-kps"), "", par)
	if err != nil {
		return nil, err
	}
	defer svc.Stop()

	var rows []RotateRow
	for _, n := range b.cfg.Hosts {
		hosts, err := b.startHosts(n)
		if err != nil {
			return nil, err
		}
		// The servers are registered once (not timed): host keys pinned, the admin key (the
		// "old" key every host accepts) as their service credential.
		ids := make([]string, n)
		b.seq++
		prefix := fmt.Sprintf("rot%d", b.seq)
		err = parallel(n, 8, func(i int) error {
			h := hosts[i]
			ids[i] = fmt.Sprintf("%s-h%04d", prefix, i)
			return svc.call(ctx, "POST", "/servers", map[string]any{"server": map[string]any{"id": ids[i], "address": h.Address,
				"port": h.Port, "user": h.User, "host_keys": []string{h.HostKey}, "sshd_config": h.ConfigPath,
				"credential": map[string]any{"type": "keypair", "key": b.keys.pem}}}, 201, nil)
		})
		if err != nil {
			return nil, err
		}
		floor := RotateRow{Hosts: n, Tool: "floor", Concurrency: par,
			Method: fmt.Sprintf("x/crypto/ssh, %d hosts at a time: a connection with the old key appends the new one; a connection with the new key removes the old (temp file, rename)", par)}
		kpsRow := RotateRow{Hosts: n, Tool: "OpenKPS", Concurrency: par,
			Method: fmt.Sprintf("POST /rotations (from_keypair, batch_size %d, private_key given), GET /rotations?limit=1 every 20 ms until COMPLETED; --workers %d", par, par)}
		var fw, fc, kw, kc, rss, hwm []float64
		for run := range b.cfg.Runs {
			runFloor := func() error {
				if _, err := b.startHosts(n); err != nil {
					return err
				}
				load := loadAvg()
				floor.Load = append(floor.Load, load)
				wall, cpu, bad, err := b.floorRotate(ctx, hosts)
				if err != nil {
					return fmt.Errorf("floor: %w", err)
				}
				fw, fc, floor.Failed = append(fw, wall), append(fc, cpu), floor.Failed+bad
				b.logf("rotate N=%d run %d: floor %.2fs (cpu %.2fs, %d failed), load %s", n, run+1, wall, cpu, bad, load)
				return nil
			}
			runKPS := func() error {
				if _, err := b.startHosts(n); err != nil {
					return err
				}
				load := loadAvg()
				kpsRow.Load = append(kpsRow.Load, load)
				res, err := b.kpsRotate(ctx, svc, hosts, ids, fmt.Sprintf("%s-r%d", prefix, run), par)
				if err != nil {
					return fmt.Errorf("OpenKPS: %w", err)
				}
				kw, kc, rss, hwm = append(kw, res.wall), append(kc, res.cpu), append(rss, res.peakRSS), append(hwm, res.hwm)
				kpsRow.Failed += res.failed
				b.logf("rotate N=%d run %d: OpenKPS %.2fs (cpu %.2fs, RSS %.1f MiB, %d failed), load %s", n, run+1, res.wall, res.cpu, res.peakRSS, res.failed, load)
				return nil
			}
			// The order alternates run by run: on a shared machine whose load drifts, neither
			// tool always goes first.
			order := []func() error{runFloor, runKPS}
			if run%2 == 1 {
				order[0], order[1] = runKPS, runFloor
			}
			for _, step := range order {
				if err := step(); err != nil {
					return nil, err
				}
			}
		}
		floor.Wall, floor.CPU = stat(fw), stat(fc)
		kpsRow.Wall, kpsRow.CPU, kpsRow.PeakRSS, kpsRow.HWM = stat(kw), stat(kc), stat(rss), stat(hwm)
		rows = append(rows, floor, kpsRow)
		if b.rotateCheckpoint != nil {
			if err := b.rotateCheckpoint(rows); err != nil {
				return nil, err
			}
		}
	}
	return rows, nil
}

// floorRotate is the physical floor of a rotation: per host, a connection with the old key
// appends the new key (unless present), then a fresh connection with the new key — the
// verification — removes the old key through a temporary file and a rename. The hosts
// accept the admin key, the old one.
func (b *bench) floorRotate(ctx context.Context, hosts []*sshdtest.Host) (wall, cpu float64, failed int, err error) {
	nk, err := newRotationKey("floor-new")
	if err != nil {
		return 0, 0, 0, err
	}
	oldBlob := strings.Fields(b.keys.line)[1]
	add := "umask 077 && mkdir -p .ssh && { grep -qF '" + strings.Fields(nk.line)[1] + "' .ssh/authorized_keys || printf '%s\\n' '" + nk.line + "' >> .ssh/authorized_keys; }"
	remove := "umask 077 && grep -vF '" + oldBlob + "' .ssh/authorized_keys > .ssh/.ak.tmp; mv .ssh/.ak.tmp .ssh/authorized_keys"
	run := func(h *sshdtest.Host, signer ssh.Signer, cmd string) error {
		c, err := ssh.Dial("tcp", h.Addr(), &ssh.ClientConfig{User: h.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
			HostKeyCallback: ssh.FixedHostKey(h.PublicHostKey()), Timeout: 30 * time.Second})
		if err != nil {
			return err
		}
		defer c.Close()
		s, err := c.NewSession()
		if err != nil {
			return err
		}
		defer s.Close()
		return s.Run(cmd)
	}
	errs := make([]error, len(hosts))
	cpu0 := selfCPU()
	start := time.Now()
	parallel(len(hosts), b.cfg.FloorParallel, func(i int) error {
		if errs[i] = run(hosts[i], b.keys.signer, add); errs[i] == nil {
			errs[i] = run(hosts[i], nk.signer, remove)
		}
		return nil
	})
	wall = time.Since(start).Seconds()
	cpu = (selfCPU() - cpu0).Seconds()
	for i, e := range errs {
		if e == nil && (!hasKey(hosts[i], strings.Fields(nk.line)[1]) || hasKey(hosts[i], oldBlob)) {
			e = fmt.Errorf("authorized_keys does not hold the new key alone")
		}
		if e != nil {
			failed++
			b.logf("floor rotate: %s: %v", hosts[i].Addr(), e)
		}
	}
	return wall, cpu, failed, ctx.Err()
}

type rotateResult struct {
	wall, cpu, peakRSS, hwm float64
	failed                  int
}

// kpsRotate binds key pair <name>-old (the admin key, which the hosts hold) to the servers
// (not timed), then times a rotation of every server bound to it to <name>-new, from POST
// /rotations until it is COMPLETED, sampling the RSS of kps serve at every poll.
func (b *bench) kpsRotate(ctx context.Context, svc *service, hosts []*sshdtest.Host, ids []string, name string, par int) (rotateResult, error) {
	var res rotateResult
	old, newName := name+"-old", name+"-new"
	if err := svc.call(ctx, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": old, "public_key": b.keys.line}}, 200, nil); err != nil {
		return res, err
	}
	for lo := 0; lo < len(ids); lo += 10 {
		var items []map[string]any
		for _, id := range ids[lo:min(lo+10, len(ids))] {
			items = append(items, map[string]any{"keypair_name": old, "server": map[string]any{"id": id}})
		}
		// Rebinding a bound server goes through the single associate.
		for _, it := range items {
			if err := svc.call(ctx, "POST", "/keypairs/associate", it, 200, nil); err != nil {
				return res, err
			}
		}
		if err := waitTasks(ctx, svc); err != nil {
			return res, err
		}
	}
	nk, err := newRotationKey(newName)
	if err != nil {
		return res, err
	}
	if err := svc.call(ctx, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": newName, "public_key": nk.line}}, 200, nil); err != nil {
		return res, err
	}
	cpu0, err := cpuTime(svc.pid())
	if err != nil {
		return res, err
	}
	// VmHWM before the rotation: a peak of kps serve's life that came earlier (the password
	// login's Argon2id, registering the servers) is not the rotation's.
	_, hwm0, err := memory(svc.pid())
	if err != nil {
		return res, err
	}
	start := time.Now()
	var created struct {
		Rotation struct {
			ID string `json:"id"`
		} `json:"rotation"`
	}
	if err := svc.call(ctx, "POST", "/rotations", map[string]any{"rotation": map[string]any{"keypair_name": newName,
		"from_keypair": old, "batch_size": par, "max_failures": len(ids), "private_key": nk.pem}}, 201, &created); err != nil {
		return res, err
	}
	deadline := time.Now().Add(30 * time.Minute)
	for {
		var list struct {
			Rotations []struct {
				ID     string `json:"id"`
				State  string `json:"state"`
				Totals struct {
					Failed int `json:"failed"`
				} `json:"totals"`
			} `json:"rotations"`
		}
		if err := svc.call(ctx, "GET", "/rotations?limit=1", nil, 200, &list); err != nil {
			return res, err
		}
		if rss, _, err := memory(svc.pid()); err == nil {
			res.peakRSS = max(res.peakRSS, float64(rss)/(1<<20))
		}
		if len(list.Rotations) == 1 && list.Rotations[0].ID == created.Rotation.ID && list.Rotations[0].State == "COMPLETED" {
			if n := list.Rotations[0].Totals.Failed; n > 0 {
				b.logf("OpenKPS rotate: %d servers failed; see GET /rotations/%s", n, created.Rotation.ID)
			}
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("rotation %s not completed after 30 minutes", created.Rotation.ID)
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	res.wall = time.Since(start).Seconds()
	cpu1, err := cpuTime(svc.pid())
	if err != nil {
		return res, err
	}
	res.cpu = (cpu1 - cpu0).Seconds()
	if _, hwm, err := memory(svc.pid()); err == nil {
		res.hwm = float64(hwm) / (1 << 20)
		if hwm > hwm0 {
			// A new high of the process's life was set during the rotation, perhaps between
			// two samples.
			res.peakRSS = max(res.peakRSS, res.hwm)
		}
	}
	newBlob, oldBlob := strings.Fields(nk.line)[1], strings.Fields(b.keys.line)[1]
	for i, h := range hosts {
		if !hasKey(h, newBlob) || hasKey(h, oldBlob) {
			res.failed++
			b.logf("OpenKPS rotate: %s (%s): authorized_keys does not hold the new key alone", h.Addr(), ids[i])
		}
	}
	return res, nil
}
