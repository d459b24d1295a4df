package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/openkps/kps/internal/sshdtest"
)

// bench is one harness run: its scratch directory, the kps binary, and what it started
// (test hosts, PostgreSQL), stopped by Close.
type bench struct {
	cfg     Config
	dir     string // scratch, removed by Close
	kps     string // the kps binary
	hosts   []*sshdtest.Host
	keys    *adminKey // the key every test host accepts for its login user
	pg      *postgres
	pgError error
	seq     int
	// checkpoint receives the fleet rows measured so far after each (size, auth) group.
	checkpoint func([]FleetRow) error
	// rotateCheckpoint receives the rotate rows measured so far after each fleet size.
	rotateCheckpoint func([]RotateRow) error
}

func newBench(ctx context.Context, cfg Config) (*bench, error) {
	if _, err := sshdtest.Available(); err != nil {
		return nil, fmt.Errorf("sshd test hosts: %w", err)
	}
	dir, err := os.MkdirTemp("", "kps-bench-")
	if err != nil {
		return nil, err
	}
	b := &bench{cfg: cfg, dir: dir, kps: cfg.KPS}
	if b.kps == "" {
		b.kps = filepath.Join(dir, "kps")
		root, err := moduleRoot()
		if err != nil {
			b.Close()
			return nil, err
		}
		b.logf("building kps serve (go build ./cmd/kps)")
		build := exec.CommandContext(ctx, "go", "build", "-o", b.kps, "./cmd/kps")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			b.Close()
			return nil, fmt.Errorf("go build ./cmd/kps: %v\n%s", err, out)
		}
	}
	return b, nil
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.cfg.Log, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// Close stops everything the run started and removes its scratch directory.
func (b *bench) Close() {
	b.stopHosts()
	if b.pg != nil {
		b.pg.Stop()
	}
	if b.cfg.Keep {
		b.logf("scratch directory kept: %s", b.dir)
		return
	}
	os.RemoveAll(b.dir)
}

// scratch returns a new directory under the run's scratch directory.
func (b *bench) scratch(name string) string {
	b.seq++
	d := filepath.Join(b.dir, fmt.Sprintf("%s-%d", name, b.seq))
	os.MkdirAll(d, 0o700)
	return d
}

// moduleRoot is the directory of the OpenKPS module, which this module replaces with ../ (its
// go.mod): where `go build ./cmd/kps` builds the service as it ships, with the service's own
// go.mod, and where docs/ is.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/openkps/kps").Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		return "", errors.New("run the harness inside its module, from the root of OpenKPS: go -C bench run . …")
	}
	return dir, nil
}

// ensureTool finds a command, installing its Debian package (saying so) when it is missing.
// It returns false when the command is still missing.
func (b *bench) ensureTool(command string, packages ...string) bool {
	return b.ensure(command, func() bool { _, err := exec.LookPath(command); return err == nil }, packages...)
}

// ensure installs the Debian packages (saying so) when present reports what is named missing.
// It returns false when it is still missing.
func (b *bench) ensure(what string, present func() bool, packages ...string) bool {
	if present() {
		return true
	}
	if b.cfg.NoInstall {
		b.logf("%s is missing (and -no-install): what needs it is left out", what)
		return false
	}
	b.logf("%s is missing: installing the Debian package(s) %s (apt-get install)", what, strings.Join(packages, " "))
	install := func() error {
		if out, err := exec.Command("apt-get", "update", "-qq").CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get update: %v: %s", err, out)
		}
		cmd := exec.Command("apt-get", append([]string{"install", "-y", "-qq", "--no-install-recommends"}, packages...)...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get install: %v: %s", err, out)
		}
		return nil
	}
	if err := install(); err != nil {
		b.logf("could not install %s: %v", what, err)
		return false
	}
	return present()
}

// machine describes where the figures were measured.
func (b *bench) machine() map[string]string {
	m := map[string]string{"cores": fmt.Sprint(runtime.NumCPU()), "os": runtime.GOOS + "/" + runtime.GOARCH}
	if cpu, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if g := regexp.MustCompile(`(?m)^model name\s*:\s*(.+)$`).FindSubmatch(cpu); g != nil {
			m["cpu"] = string(g[1])
		}
	}
	if out, err := exec.Command("uname", "-sr").Output(); err == nil {
		m["kernel"] = strings.TrimSpace(string(out))
	}
	if mem, err := os.ReadFile("/proc/meminfo"); err == nil {
		if g := regexp.MustCompile(`(?m)^MemTotal:\s*(\d+) kB`).FindSubmatch(mem); g != nil {
			var kb int64
			fmt.Sscan(string(g[1]), &kb)
			m["memory"] = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	if load, err := os.ReadFile("/proc/loadavg"); err == nil {
		m["load at start"] = strings.Join(strings.Fields(string(load))[:3], " ")
	}
	return m
}

// versions of everything measured, as the tools print them.
func (b *bench) versions() map[string]string {
	v := map[string]string{"go": runtime.Version()}
	first := func(name string, args ...string) string {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil && len(out) == 0 {
			return ""
		}
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return line
	}
	v["openssh"] = first("ssh", "-V")
	if s := first("ansible", "--version"); s != "" {
		v["ansible"] = s
	}
	if s := first("wrk", "-v"); s != "" {
		v["wrk"] = strings.Split(s, " Copyright")[0]
	}
	if bin, err := pgBin(); err == nil {
		v["postgresql"] = first(filepath.Join(bin, "postgres"), "--version")
	}
	v["kps"] = first("git", "-C", filepath.Dir(b.kps), "rev-parse", "--short", "HEAD")
	if root, err := moduleRoot(); err == nil {
		v["kps"] = first("git", "-C", root, "log", "-1", "--format=%h %s")
	}
	return v
}

// pgBin is the newest /usr/lib/postgresql/*/bin with initdb, as .ci/run picks it.
func pgBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(dirs) == 0 {
		return "", errors.New("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb)")
	}
	sort.Slice(dirs, func(i, j int) bool { return versionLess(dirs[i], dirs[j]) })
	return filepath.Dir(dirs[len(dirs)-1]), nil
}

func versionLess(a, b string) bool {
	na, nb := 0, 0
	fmt.Sscanf(strings.TrimPrefix(a, "/usr/lib/postgresql/"), "%d", &na)
	fmt.Sscanf(strings.TrimPrefix(b, "/usr/lib/postgresql/"), "%d", &nb)
	return na < nb
}
