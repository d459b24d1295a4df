package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/openkps/kps/internal/sshdtest"
)

// fleet measures part 1: one new key pair bound to N hosts by OpenKPS, by the floor program and
// by Ansible, with password and with key authentication, each run interleaved so that the three
// see the same machine.
func (b *bench) fleet(ctx context.Context) ([]FleetRow, error) {
	maxN := b.maxHosts()
	if _, err := b.startHosts(maxN); err != nil {
		return nil, err
	}
	// ansible-core alone (which .ci/run installs for cli/inventory) has ansible-playbook but
	// not the ansible.posix collection the play uses: every host would fail. Debian's ansible
	// package brings the collections.
	ansible := !b.cfg.SkipAnsible && b.ensureTool("ansible-playbook", "ansible") &&
		b.ensure("the ansible.posix collection", func() bool {
			return exec.Command("ansible-doc", "-t", "module", "ansible.posix.authorized_key").Run() == nil
		}, "ansible") && b.ensureTool("sshpass", "sshpass")
	if !b.cfg.SkipAnsible && !ansible {
		b.logf("Ansible is not available: its rows are left out")
	}
	// OpenKPS gets the floor's concurrency: as many workers as the floor has connections.
	workers := b.cfg.FleetWorkers
	if workers <= 0 {
		workers = b.cfg.FloorParallel
	}
	svc, err := startService(ctx, b.kps, b.scratch("fleet-kps"), "", workers)
	if err != nil {
		return nil, err
	}
	defer svc.Stop()
	var other *service
	if b.cfg.CompareKPS != "" {
		if other, err = startService(ctx, b.cfg.CompareKPS, b.scratch("fleet-kps-compare"), "", workers); err != nil {
			return nil, err
		}
		defer other.Stop()
	}

	var rows []FleetRow
	for _, n := range b.cfg.Hosts {
		for _, auth := range []string{"password", "key"} {
			type series struct{ wall, cpu, rss []float64 }
			var floor, kpsS, ans, cmp series
			var procMS, handshakeMS []float64
			failed := map[string]int{}
			for run := range b.cfg.Runs {
				hosts, err := b.startHosts(n)
				if err != nil {
					return nil, err
				}
				// What a process and an SSH login cost on this machine right now, so that a slow
				// day can be told from a regression (issue 18).
				pm, hm, err := b.machineCosts(ctx, hosts[0], auth)
				if err != nil {
					return nil, err
				}
				procMS, handshakeMS = append(procMS, pm), append(handshakeMS, hm)
				b.logf("N=%d %s run %d: a process costs %.2f ms, an SSH login %.1f ms", n, auth, run+1, pm, hm)
				wall, cpu, bad, err := b.floorBind(ctx, hosts, auth)
				if err != nil {
					return nil, fmt.Errorf("floor: %w", err)
				}
				floor.wall, floor.cpu, failed["floor"] = append(floor.wall, wall), append(floor.cpu, cpu), failed["floor"]+bad
				b.logf("N=%d %s run %d: floor %.2fs (cpu %.2fs, %d failed)", n, auth, run+1, wall, cpu, bad)

				if _, err := b.startHosts(n); err != nil {
					return nil, err
				}
				var rss float64
				wall, cpu, rss, bad, err = b.kpsBind(ctx, svc, hosts, auth)
				if err != nil {
					return nil, fmt.Errorf("OpenKPS: %w", err)
				}
				kpsS.wall, kpsS.cpu, failed["OpenKPS"] = append(kpsS.wall, wall), append(kpsS.cpu, cpu), failed["OpenKPS"]+bad
				kpsS.rss = append(kpsS.rss, rss)
				b.logf("N=%d %s run %d: OpenKPS %.2fs (cpu %.2fs, peak RSS %.1f MiB, %d failed), %.2f× the floor", n, auth, run+1, wall, cpu, rss, bad, wall/floor.wall[len(floor.wall)-1])

				if other != nil {
					if _, err := b.startHosts(n); err != nil {
						return nil, err
					}
					wall, cpu, rss, bad, err = b.kpsBind(ctx, other, hosts, auth)
					if err != nil {
						return nil, fmt.Errorf("OpenKPS-compare: %w", err)
					}
					cmp.wall, cmp.cpu, cmp.rss, failed["OpenKPS-compare"] = append(cmp.wall, wall), append(cmp.cpu, cpu), append(cmp.rss, rss), failed["OpenKPS-compare"]+bad
					b.logf("N=%d %s run %d: OpenKPS-compare %.2fs (cpu %.2fs, peak RSS %.1f MiB, %d failed), %.2f× the floor", n, auth, run+1, wall, cpu, rss, bad, wall/floor.wall[len(floor.wall)-1])
				}
				if ansible {
					if _, err := b.startHosts(n); err != nil {
						return nil, err
					}
					wall, cpu, bad, err = b.ansibleBind(ctx, hosts, auth)
					if err != nil {
						return nil, fmt.Errorf("the Ansible run: %w", err)
					}
					ans.wall, ans.cpu, failed["Ansible"] = append(ans.wall, wall), append(ans.cpu, cpu), failed["Ansible"]+bad
					b.logf("N=%d %s run %d: Ansible %.2fs (cpu %.2fs, %d failed)", n, auth, run+1, wall, cpu, bad)
				}
			}
			rows = append(rows,
				FleetRow{Hosts: n, Auth: auth, Tool: "floor", Wall: stat(floor.wall), CPU: stat(floor.cpu), Failed: failed["floor"],
					Method:    fmt.Sprintf("x/crypto/ssh, %d concurrent connections, one remote command per host", b.cfg.FloorParallel),
					ProcessMS: stat(procMS), LoginMS: stat(handshakeMS)},
				FleetRow{Hosts: n, Auth: auth, Tool: "OpenKPS", Wall: stat(kpsS.wall), CPU: stat(kpsS.cpu), Failed: failed["OpenKPS"],
					RSS: stat(kpsS.rss),
					Method: fmt.Sprintf("batch-associate in tens, %d requests at once, GET /running-tasks every 20 ms until none is left; --workers %d",
						submitConcurrency, workers)})
			if other != nil {
				rows = append(rows, FleetRow{Hosts: n, Auth: auth, Tool: "OpenKPS-compare", Wall: stat(cmp.wall), CPU: stat(cmp.cpu),
					RSS: stat(cmp.rss), Failed: failed["OpenKPS-compare"], Method: "the same, with " + b.cfg.CompareKPS})
			}
			if ansible {
				rows = append(rows, FleetRow{Hosts: n, Auth: auth, Tool: "Ansible", Wall: stat(ans.wall), CPU: stat(ans.cpu),
					Failed: failed["Ansible"], Method: fmt.Sprintf("ansible.posix.authorized_key, forks=%d, pipelining", b.cfg.Forks)})
			}
			if b.checkpoint != nil {
				if err := b.checkpoint(rows); err != nil {
					return nil, err
				}
			}
		}
	}
	return rows, nil
}

// newPublicKey is a fresh key line to install, as a user binding a new key would have.
func newPublicKey(comment string) (string, error) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) + " " + comment, nil
}

// floorBind is the physical floor: connect to every host (FloorParallel at a time), check its
// host key, authenticate, and append the key with one remote command. It returns the wall
// time and this process's CPU time in seconds, and how many hosts failed.
func (b *bench) floorBind(ctx context.Context, hosts []*sshdtest.Host, auth string) (wall, cpu float64, failed int, err error) {
	key, err := newPublicKey("floor")
	if err != nil {
		return 0, 0, 0, err
	}
	remote := "umask 077 && mkdir -p .ssh && printf '%s\\n' '" + key + "' >> .ssh/authorized_keys"
	errs := make([]error, len(hosts))
	cpu0 := selfCPU()
	start := time.Now()
	parallel(len(hosts), b.cfg.FloorParallel, func(i int) error {
		h := hosts[i]
		methods := []ssh.AuthMethod{ssh.PublicKeys(b.keys.signer)}
		if auth == "password" {
			methods = []ssh.AuthMethod{ssh.Password(h.Password)}
		}
		c, err := ssh.Dial("tcp", h.Addr(), &ssh.ClientConfig{User: h.User, Auth: methods,
			HostKeyCallback: ssh.FixedHostKey(h.PublicHostKey()), Timeout: 30 * time.Second})
		if err != nil {
			errs[i] = err
			return nil
		}
		defer c.Close()
		s, err := c.NewSession()
		if err != nil {
			errs[i] = err
			return nil
		}
		defer s.Close()
		errs[i] = s.Run(remote)
		return nil
	})
	wall = time.Since(start).Seconds()
	cpu = (selfCPU() - cpu0).Seconds()
	for i, e := range errs {
		if e != nil {
			failed++
			b.logf("floor: %s: %v", hosts[i].Addr(), e)
		} else if !hasKey(hosts[i], key) {
			failed++
			b.logf("floor: %s: key not in authorized_keys", hosts[i].Addr())
		}
	}
	return wall, cpu, failed, ctx.Err()
}

func hasKey(h *sshdtest.Host, line string) bool {
	b, err := os.ReadFile(h.AuthorizedKeysPath())
	return err == nil && strings.Contains(string(b), line)
}

// selfCPU is the CPU time of this process (user + system).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// submitConcurrency is how many batch-associate requests the harness has in flight at once,
// as the CLI's fleet commands (cli/bind.go).
const submitConcurrency = 4

// kpsBind binds a new key pair to the hosts through the API as a user would: servers are
// registered first (not timed; with their host keys pinned, and for key authentication with
// the admin key as service credential), then the clock runs from the first batch-associate
// to the moment no task of the project is READY or RUNNING. The batches go out
// submitConcurrency at a time, as `kps keypair bind` sends them. CPU is that of kps serve; rss
// its largest VmRSS (MiB), sampled every 50 ms while the tasks run.
func (b *bench) kpsBind(ctx context.Context, svc *service, hosts []*sshdtest.Host, auth string) (wall, cpu, rss float64, failed int, err error) {
	b.seq++
	name := fmt.Sprintf("fleet-%d", b.seq)
	var kp struct {
		Keypair struct {
			PublicKey string `json:"public_key"`
		} `json:"keypair"`
	}
	if err := svc.call(ctx, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": name}}, 200, &kp); err != nil {
		return 0, 0, 0, 0, err
	}
	ids := make([]string, len(hosts))
	err = parallel(len(hosts), 8, func(i int) error {
		h := hosts[i]
		ids[i] = fmt.Sprintf("%s-h%d", name, i)
		srv := map[string]any{"id": ids[i], "address": h.Address, "port": h.Port, "user": h.User,
			"host_keys": []string{h.HostKey}, "sshd_config": h.ConfigPath}
		if auth == "key" {
			srv["credential"] = map[string]any{"type": "keypair", "key": b.keys.pem}
		}
		return svc.call(ctx, "POST", "/servers", map[string]any{"server": srv}, 201, nil)
	})
	if err != nil {
		return 0, 0, 0, 0, err
	}

	stopSampling := sampleRSS(svc.pid())
	cpu0, err := cpuTime(svc.pid())
	if err != nil {
		return 0, 0, 0, 0, err
	}
	start := time.Now()
	taskIDs := make([]string, len(hosts))
	err = parallel((len(hosts)+9)/10, submitConcurrency, func(batch int) error {
		lo := batch * 10
		var items []map[string]any
		for i := lo; i < min(lo+10, len(hosts)); i++ {
			srv := map[string]any{"id": ids[i]}
			if auth == "password" {
				srv["auth"] = map[string]any{"type": "password", "key": hosts[i].Password}
			}
			items = append(items, map[string]any{"keypair_name": name, "server": srv})
		}
		var out struct {
			Tasks []struct {
				TaskID    string `json:"task_id"`
				Status    string `json:"status"`
				ErrorCode string `json:"error_code"`
			} `json:"tasks"`
		}
		if err := svc.call(ctx, "POST", "/keypairs/batch-associate", map[string]any{"batch_keypairs": items}, 200, &out); err != nil {
			return err
		}
		for i, t := range out.Tasks {
			if t.Status != "SUCCESS" {
				return fmt.Errorf("batch-associate refused an item: %s", t.ErrorCode)
			}
			taskIDs[lo+i] = t.TaskID
		}
		return nil
	})
	if err != nil {
		stopSampling()
		return 0, 0, 0, 0, err
	}
	submitted := time.Since(start)
	if err := waitTasks(ctx, svc); err != nil {
		stopSampling()
		return 0, 0, 0, 0, err
	}
	wall = time.Since(start).Seconds()
	rss = stopSampling()
	b.logf("OpenKPS: %d tasks submitted in %.2fs", len(taskIDs), submitted.Seconds())
	cpu1, err := cpuTime(svc.pid())
	if err != nil {
		return 0, 0, 0, 0, err
	}
	for i, id := range taskIDs {
		var st struct {
			Status string `json:"task_status"`
		}
		if err := svc.call(ctx, "GET", "/tasks/"+id, nil, 200, &st); err != nil {
			return 0, 0, 0, 0, err
		}
		if !strings.HasPrefix(st.Status, "SUCCESS_") || !hasKey(hosts[i], kp.Keypair.PublicKey) {
			failed++
			b.logf("OpenKPS: %s: task %s", hosts[i].Addr(), st.Status)
		}
	}
	return wall, (cpu1 - cpu0).Seconds(), rss, failed, nil
}

// sampleRSS samples the VmRSS of pid every 50 ms until the returned function is called, which
// returns the largest sample in MiB.
func sampleRSS(pid int) func() float64 {
	done, peak := make(chan struct{}), make(chan int64, 1)
	go func() {
		var most int64
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if rss, _, err := memory(pid); err == nil {
				most = max(most, rss)
			}
			select {
			case <-done:
				peak <- most
				return
			case <-tick.C:
			}
		}
	}()
	return func() float64 {
		close(done)
		return float64(<-peak) / (1 << 20)
	}
}

// machineCosts measures what a process and an SSH login cost on this machine now: the
// median wall time of a process started by sh (`/bin/ls /`, as in `time (for i in $(seq
// 1000); do /bin/ls / >/dev/null; done)`, 300 of them) and of one SSH connection to h with
// auth's method (TCP, key exchange, host key check, authentication; 15 in a row), in ms.
func (b *bench) machineCosts(ctx context.Context, h *sshdtest.Host, auth string) (processMS, loginMS float64, err error) {
	const procs = 300
	start := time.Now()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", fmt.Sprintf("i=0; while [ $i -lt %d ]; do /bin/ls / >/dev/null; i=$((i+1)); done", procs))
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("timing processes: %v: %s", err, out)
	}
	processMS = float64(time.Since(start).Microseconds()) / 1000 / procs
	methods := []ssh.AuthMethod{ssh.PublicKeys(b.keys.signer)}
	if auth == "password" {
		methods = []ssh.AuthMethod{ssh.Password(h.Password)}
	}
	var logins []float64
	for range 15 {
		t0 := time.Now()
		c, err := ssh.Dial("tcp", h.Addr(), &ssh.ClientConfig{User: h.User, Auth: methods,
			HostKeyCallback: ssh.FixedHostKey(h.PublicHostKey()), Timeout: 30 * time.Second})
		if err != nil {
			return 0, 0, fmt.Errorf("timing SSH logins: %w", err)
		}
		c.Close()
		logins = append(logins, float64(time.Since(t0).Microseconds())/1000)
	}
	return processMS, stat(logins).Median, nil
}

// waitTasks waits until none of the project's tasks is READY or RUNNING, reading the running
// task list (one GET /running-tasks?limit=1 every 20 ms). Polling each task's status instead
// (GET /tasks/{id} per task per round) put as much load on the service as the work it waited
// for; the status of each task is read once at the end.
func waitTasks(ctx context.Context, svc *service) error {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		var out struct {
			Total int `json:"total"`
		}
		if err := svc.call(ctx, "GET", "/running-tasks?limit=1", nil, 200, &out); err != nil {
			return err
		}
		if out.Total == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d tasks still running after 10 minutes", out.Total)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond): // poll interval
		}
	}
}

// ansibleBind runs ansible-playbook with a generated inventory (host keys pinned through a
// known_hosts file), forks and pipelining as configured, and ansible.posix.authorized_key.
// CPU is that of ansible-playbook and every process it waited for (its ssh clients).
func (b *bench) ansibleBind(ctx context.Context, hosts []*sshdtest.Host, auth string) (wall, cpu float64, failed int, err error) {
	dir := b.scratch("ansible")
	key, err := newPublicKey("ansible")
	if err != nil {
		return 0, 0, 0, err
	}
	var inv, known strings.Builder
	inv.WriteString("[targets]\n")
	for i, h := range hosts {
		fmt.Fprintf(&inv, "h%d ansible_host=%s ansible_port=%d ansible_user=%s", i, h.Address, h.Port, h.User)
		if auth == "password" {
			fmt.Fprintf(&inv, " ansible_password=%s", h.Password)
		}
		inv.WriteString("\n")
		fmt.Fprintf(&known, "[%s]:%d %s\n", h.Address, h.Port, h.HostKey)
	}
	sshArgs := "-o UserKnownHostsFile=" + filepath.Join(dir, "known_hosts") + " -o StrictHostKeyChecking=yes"
	if auth == "password" {
		sshArgs += " -o PubkeyAuthentication=no"
	} else {
		sshArgs += " -o PasswordAuthentication=no -o IdentitiesOnly=yes"
	}
	fmt.Fprintf(&inv, "[targets:vars]\nansible_python_interpreter=/usr/bin/python3\nansible_ssh_common_args=%s\n", sshArgs)
	if auth == "key" {
		fmt.Fprintf(&inv, "ansible_ssh_private_key_file=%s\n", b.keys.path)
	}
	// A control directory of its own per run: masters left by an earlier run are not reused.
	cfg := fmt.Sprintf(`[defaults]
forks = %d
host_key_checking = True
gathering = explicit
retry_files_enabled = False
stdout_callback = default
[ssh_connection]
pipelining = True
control_path_dir = %s
ssh_args = -C -o ControlMaster=auto -o ControlPersist=2s
`, b.cfg.Forks, filepath.Join(dir, "cp"))
	play := fmt.Sprintf(`- hosts: targets
  gather_facts: false
  tasks:
    - ansible.posix.authorized_key:
        user: "{{ ansible_user }}"
        key: %q
        state: present
`, key)
	for name, content := range map[string]string{"inventory": inv.String(), "known_hosts": known.String(),
		"ansible.cfg": cfg, "play.yml": play} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return 0, 0, 0, err
		}
	}
	cmd := exec.CommandContext(ctx, "ansible-playbook", "-i", "inventory", "play.yml")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ANSIBLE_CONFIG="+filepath.Join(dir, "ansible.cfg"), "HOME="+dir)
	start := time.Now()
	out, runErr := cmd.CombinedOutput()
	wall = time.Since(start).Seconds()
	if cmd.ProcessState == nil {
		return 0, 0, 0, runErr
	}
	cpu = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	for _, h := range hosts {
		if !hasKey(h, key) {
			failed++
		}
	}
	if failed > 0 {
		b.logf("Ansible: %d hosts failed: %v\n%s", failed, runErr, tailString(string(out), 3000))
	}
	return wall, cpu, failed, nil
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
