package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Stat is one figure over several runs: the median, with the smallest and largest run.
type Stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	Runs   int     `json:"runs"`
}

// stat summarises the runs' values (the median of an even count is the mean of the middle two).
func stat(v []float64) Stat {
	if len(v) == 0 {
		return Stat{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Stat{Median: m, Min: s[0], Max: s[len(s)-1], Runs: len(s)}
}

// FleetRow is one way of binding a key to N hosts (part 1). Times are seconds.
type FleetRow struct {
	Hosts  int    `json:"hosts"`
	Auth   string `json:"auth"`   // password or key
	Tool   string `json:"tool"`   // floor, OpenKPS or Ansible
	Method string `json:"method"` // how the tool was driven
	Wall   Stat   `json:"wall_s"`
	CPU    Stat   `json:"cpu_s"` // of the tool's own process(es); for OpenKPS of kps serve
	Failed int    `json:"failed_hosts"`
	// RSS is kps serve's largest VmRSS while its tasks ran (OpenKPS rows), in MiB.
	RSS Stat `json:"rss_peak_mib,omitzero"`
	// ProcessMS and LoginMS are what the machine charged, measured before each run (floor
	// rows): a process started by sh, and one SSH login to a test host with the row's method.
	ProcessMS Stat `json:"process_ms,omitzero"`
	LoginMS   Stat `json:"ssh_login_ms,omitzero"`
}

// QueryRow is one wrk measurement of the failed-task list or of the bare handler (part 2).
type QueryRow struct {
	Engine  string `json:"engine"`
	Server  string `json:"server"` // OpenKPS or bare
	Limit   int    `json:"limit"`
	Offset  int    `json:"offset"`
	Conns   int    `json:"conns"`
	Bytes   int    `json:"body_bytes"`
	RPS     Stat   `json:"requests_per_s"`
	P50     Stat   `json:"p50_ms"`
	P99     Stat   `json:"p99_ms"`
	Errors  int    `json:"errors"` // socket errors, timeouts and non-2xx answers over all runs
	Missing string `json:"missing,omitempty"`
}

// ScaleRow is the list query with a given number of tasks in the table (part 3).
type ScaleRow struct {
	Engine string `json:"engine"`
	Tasks  int    `json:"tasks"`
	First  Stat   `json:"first_ms"` // the first request after start: the database path, no cache
	Seq    Stat   `json:"sequential_ms"`
	RPS    Stat   `json:"requests_per_s"`
	P50    Stat   `json:"p50_ms"`
	P99    Stat   `json:"p99_ms"`
	Seed   Stat   `json:"seed_s"`
}

// MemoryRow is the resident memory of kps serve (part 4), in MiB.
type MemoryRow struct {
	Engine    string `json:"engine"`
	Limit     string `json:"gomemlimit,omitempty"` // GOMEMLIMIT of kps serve; "" its --memory-limit default, "off" none
	IdleRSS   Stat   `json:"idle_rss_mib"`         // started on an existing data directory, nobody logged in yet
	LoginRSS  Stat   `json:"login_rss_mib"`        // 2 s after one password login (Argon2id)
	BusyRSS   Stat   `json:"busy_peak_rss_mib"`    // largest VmRSS sampled while the tasks ran
	BusyHWM   Stat   `json:"busy_hwm_mib"`         // VmHWM after they ended
	Tasks     int    `json:"tasks"`
	Failed    int    `json:"failed_tasks"`
	Wall      Stat   `json:"wall_s"`
	HostsUsed int    `json:"hosts"`
}

// Results is what results.json holds: the latest rows of every part and how they were made.
type Results struct {
	Machine  map[string]string   `json:"machine"`
	Versions map[string]string   `json:"versions"`
	Note     string              `json:"note,omitempty"`
	Commands map[string][]string `json:"commands"` // by part: the command lines, each with "  # when"
	Fleet    []FleetRow          `json:"fleet"`
	Query    []QueryRow          `json:"query"`
	Scale    []ScaleRow          `json:"scale"`
	Memory   []MemoryRow         `json:"memory"`
	Rotate   []RotateRow         `json:"rotate,omitempty"`
}

func resultsPath(out string) string { return filepath.Join(out, "bench", "results.json") }

func loadResults(out string) (*Results, error) {
	res := &Results{}
	b, err := os.ReadFile(resultsPath(out))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err == nil {
		if err := json.Unmarshal(b, res); err != nil {
			return nil, err
		}
	}
	if res.Commands == nil {
		res.Commands = map[string][]string{}
	}
	return res, nil
}

func (r *Results) save(out string) error {
	if err := os.MkdirAll(filepath.Join(out, "bench"), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(resultsPath(out), append(b, '\n'), 0o644)
}

// addCommand records that command produced the figures of part that key names ("query",
// "fleet N=50"); an earlier command for the same key is replaced.
func (r *Results) addCommand(part, key, command, when string) {
	r.Commands[part] = slices.DeleteFunc(r.Commands[part], func(c string) bool {
		return strings.Contains(c, "  # "+key+", ")
	})
	r.Commands[part] = append(r.Commands[part], command+"  # "+key+", "+when)
}
