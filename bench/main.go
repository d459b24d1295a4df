// Command bench measures OpenKPS side by side with the physical floor and with the tools
// operators use today (issue 7), and writes docs/BENCHMARKS.md with PNG charts in docs/bench/.
//
// It starts everything itself on loopback: N OpenSSH sshd test hosts (internal/sshdtest: own
// login user and home each), the `kps serve` binary it builds, PostgreSQL when asked (a
// throwaway cluster of the Debian package's binaries), and installs ansible, sshpass and wrk
// from Debian packages when they are missing. It needs root, like the sshd test hosts.
//
//	go -C bench run . all                   # every part, the figures of docs/BENCHMARKS.md
//	go -C bench run . -n 50 -runs 3 fleet   # one part; the other parts' figures are kept
//
// Every part stores its rows in <out>/bench/results.json; the report and the charts are
// regenerated from that file after each part, so parts can be re-run one at a time.
//
// It is a module of its own (go.mod here, `replace github.com/openkps/kps => ../`), so that its
// chart code (golang.org/x/image) stays out of the service's go.sum and govulncheck report;
// hence `go -C bench run .` from the root of OpenKPS (or `make bench`). The kps binary it
// measures is built in the root module, as the service ships.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Config is everything a run can be told.
type Config struct {
	Hosts         []int    // fleet sizes (part 1)
	Runs          int      // repetitions of every figure; the median is reported with min and max
	Engines       []string // sqlite and/or postgres (parts 2, 3)
	Out           string   // directory of BENCHMARKS.md; charts and results.json go to Out/bench; "": docs/ of the OpenKPS module
	FloorParallel int      // concurrent connections of the floor program
	Forks         int      // Ansible forks
	Workers       int      // kps serve --workers
	FleetWorkers  int      // kps serve --workers in the fleet part; 0: FloorParallel (the same concurrency)
	FailedTasks   int      // failed tasks seeded for part 2
	ScaleSizes    []int    // table sizes of part 3
	MemoryTasks   int      // tasks queued during the memory measurement (part 4)
	MemoryRuns    int      // runs of the memory part; 0: Runs
	MemoryLimit   string   // GOMEMLIMIT of a second memory row ("": none)
	Conns         []int    // wrk connections
	Duration      time.Duration
	Settle        time.Duration // wait before reading idle memory
	SkipAnsible   bool
	SkipWrk       bool
	Keep          bool   // keep the scratch directory (logs of kps serve, Ansible files)
	NoInstall     bool   // never apt-get install a missing tool: leave out what needs it
	Note          string // a line for the report, e.g. "shared machine"
	KPS           string // a built kps binary; empty: build ./cmd/kps
	CompareKPS    string // fleet: another kps binary, run after OpenKPS in every run (tool "OpenKPS-compare")
	Log           io.Writer
}

func defaultConfig() Config {
	return Config{Hosts: []int{50, 200}, Runs: 3, Engines: []string{"sqlite", "postgres"},
		FloorParallel: 32, Forks: 50, Workers: 16, FailedTasks: 100_000, ScaleSizes: []int{1_000, 1_000_000},
		MemoryTasks: 1_000, MemoryLimit: "64MiB", Conns: []int{16, 64}, Duration: 5 * time.Second, Settle: 2 * time.Second, Log: os.Stderr}
}

const usage = `usage: go -C bench run . [flags] fleet|query|scale|memory|all|report

  fleet   part 1: one key pair bound to N hosts: OpenKPS, the x/crypto/ssh floor, Ansible
  query   part 2: GET /failed-tasks with 100,000 failed tasks under wrk, and a bare handler
  scale   part 3: the same query with 1,000 and 1,000,000 tasks in the table, per engine
  memory  part 4: RSS of kps serve idle and while 1,000 tasks run
  rotate  part 5: a staged rotation of one key pair over N hosts (-n) against the x/crypto/ssh floor
  all     the five parts in this order
  report  regenerate BENCHMARKS.md and the charts from <out>/bench/results.json

flags:
`

func main() {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, usage); fs.PrintDefaults() }
	hosts := fs.String("n", "50,200", "fleet sizes (hosts), comma-separated")
	engines := fs.String("engine", "sqlite,postgres", "database engines for query and scale: sqlite, postgres or both")
	sizes := fs.String("scale-sizes", "1000,1000000", "tasks in the table for the scale part")
	conns := fs.String("conns", "16,64", "wrk connections")
	fs.IntVar(&cfg.Runs, "runs", cfg.Runs, "runs of every figure (median, min, max)")
	fs.StringVar(&cfg.Out, "out", cfg.Out, "output directory: BENCHMARKS.md there, charts and results.json in <out>/bench (default: docs/ of the OpenKPS module)")
	fs.IntVar(&cfg.FloorParallel, "floor-parallel", cfg.FloorParallel, "concurrent SSH connections of the floor program")
	fs.IntVar(&cfg.Forks, "forks", cfg.Forks, "Ansible forks")
	fs.IntVar(&cfg.Workers, "workers", cfg.Workers, "kps serve --workers")
	fs.IntVar(&cfg.FleetWorkers, "fleet-workers", 0, "kps serve --workers in the fleet part (default: -floor-parallel, the floor's concurrency)")
	fs.IntVar(&cfg.FailedTasks, "failed-tasks", cfg.FailedTasks, "failed tasks seeded for the query part")
	fs.IntVar(&cfg.MemoryTasks, "memory-tasks", cfg.MemoryTasks, "tasks queued during the memory part")
	fs.IntVar(&cfg.MemoryRuns, "memory-runs", 0, "runs of the memory part (default: -runs)")
	fs.StringVar(&cfg.MemoryLimit, "memory-limit", cfg.MemoryLimit, "also measure memory with this GOMEMLIMIT for kps serve (empty: do not)")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "wrk duration of each measurement")
	fs.BoolVar(&cfg.SkipAnsible, "skip-ansible", false, "do not run (or install) Ansible")
	fs.BoolVar(&cfg.SkipWrk, "skip-wrk", false, "do not run (or install) wrk")
	fs.BoolVar(&cfg.NoInstall, "no-install", false, "do not install missing tools (ansible, sshpass, wrk); leave out what needs them")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the scratch directory (kps serve logs, Ansible files) and print its path")
	fs.StringVar(&cfg.Note, "note", "", "a remark printed in the report (e.g. the machine was shared)")
	fs.StringVar(&cfg.KPS, "kps", "", "a built kps binary (default: go build ./cmd/kps)")
	fs.StringVar(&cfg.CompareKPS, "compare-kps", "", "fleet: also run this kps binary in every run, after OpenKPS, as \"OpenKPS-compare\"")
	fs.Parse(os.Args[1:])
	if fs.NArg() != 1 {
		fs.Usage()
		os.Exit(2)
	}
	var err error
	if cfg.Hosts, err = ints(*hosts); err == nil {
		if cfg.ScaleSizes, err = ints(*sizes); err == nil {
			cfg.Conns, err = ints(*conns)
		}
	}
	cfg.Engines = strings.Split(*engines, ",")
	for _, e := range cfg.Engines {
		if e != "sqlite" && e != "postgres" {
			err = fmt.Errorf("-engine: %q is neither sqlite nor postgres", e)
		}
	}
	if err != nil || cfg.Runs < 1 {
		fmt.Fprintln(os.Stderr, "bench:", errors.Join(err, errIf(cfg.Runs < 1, "-runs must be at least 1")))
		os.Exit(2)
	}
	if cfg.Out == "" {
		root, err := moduleRoot()
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		cfg.Out = filepath.Join(root, "docs")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, fs.Arg(0), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func errIf(cond bool, msg string) error {
	if cond {
		return errors.New(msg)
	}
	return nil
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// run executes one subcommand, merges its rows into results.json and rewrites the report.
func run(ctx context.Context, cfg Config, part string, args []string) error {
	parts := map[string][]string{"fleet": {"fleet"}, "query": {"query"}, "scale": {"scale"}, "memory": {"memory"},
		"rotate": {"rotate"}, "all": {"fleet", "query", "scale", "memory", "rotate"}, "report": nil}
	todo, ok := parts[part]
	if !ok {
		return fmt.Errorf("unknown part %q (fleet, query, scale, memory, rotate, all, report)", part)
	}
	res, err := loadResults(cfg.Out)
	if err != nil {
		return err
	}
	if len(todo) > 0 {
		b, err := newBench(ctx, cfg)
		if err != nil {
			return err
		}
		defer b.Close()
		res.Machine = b.machine()
		res.Versions = b.versions()
		if cfg.Note != "" {
			res.Note = cfg.Note
		}
		save := func() error {
			if err := res.save(cfg.Out); err != nil {
				return err
			}
			return writeReport(cfg.Out, res)
		}
		for _, p := range todo {
			started := time.Now()
			b.logf("== part %s", p)
			key, when := p, fmt.Sprintf("run %s, load %s", started.UTC().Format("2006-01-02 15:04Z"), b.machine()["load at start"])
			if p == "fleet" || p == "rotate" {
				key = fmt.Sprintf("%s N=%s", p, strings.Trim(strings.Join(strings.Fields(fmt.Sprint(cfg.Hosts)), ","), "[]"))
			}
			switch p {
			case "fleet":
				// Rows of other fleet sizes are kept, so that sizes can be measured one at a
				// time; each finished (size, auth) group is saved at once.
				kept := slices.DeleteFunc(slices.Clone(res.Fleet), func(r FleetRow) bool { return slices.Contains(cfg.Hosts, r.Hosts) })
				b.checkpoint = func(rows []FleetRow) error {
					res.Fleet = append(slices.Clone(kept), rows...)
					slices.SortStableFunc(res.Fleet, func(a, b FleetRow) int { return a.Hosts - b.Hosts })
					res.addCommand(p, key, command(args), when+" (partial)")
					return save()
				}
				_, err = b.fleet(ctx)
			case "query":
				res.Query, err = b.query(ctx)
			case "scale":
				res.Scale, err = b.scale(ctx)
			case "memory":
				res.Memory, err = b.memory(ctx)
			case "rotate":
				// As the fleet part: rows of other sizes are kept, each size saved when done.
				kept := slices.DeleteFunc(slices.Clone(res.Rotate), func(r RotateRow) bool { return slices.Contains(cfg.Hosts, r.Hosts) })
				b.rotateCheckpoint = func(rows []RotateRow) error {
					res.Rotate = append(slices.Clone(kept), rows...)
					slices.SortStableFunc(res.Rotate, func(a, b RotateRow) int { return a.Hosts - b.Hosts })
					res.addCommand(p, key, command(args), when+" (partial)")
					return save()
				}
				_, err = b.rotate(ctx)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if p != "fleet" && p != "rotate" {
				res.Commands[p] = nil
			}
			res.addCommand(p, key, command(args), when)
			b.logf("== part %s done in %s", p, time.Since(started).Round(time.Second))
			// Written after every part: a later part that fails keeps the earlier figures.
			if err := save(); err != nil {
				return err
			}
		}
		return nil
	}
	return writeReport(cfg.Out, res)
}

// command is the command line that produced a part, as the report prints it.
func command(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = a
		if a == "" || strings.ContainsAny(a, " \t'\"$`\\") {
			quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return "go -C bench run . " + strings.Join(quoted, " ")
}
