package daemon

import (
	"fmt"
	"math"
	"runtime/debug"
	"strconv"
	"strings"
)

// DefaultMemoryLimit is the soft memory limit `kps serve` gives the Go runtime unless told
// otherwise (--memory-limit, KPS_MEMORY_LIMIT, or the runtime's own GOMEMLIMIT). Without one
// the runtime lets the heap grow to twice what was live at the last collection, and one
// password check (Argon2id, 64 MiB, auth.md §12.1) makes that 2 × ~85 MiB: the process kept
// about 150 MiB while 1,000 tasks ran, with about 30 MiB in use. 128 MiB leaves room for the
// live heap of a busy service (tens of MiB), one password check at a time and the task list
// cache's pages, and keeps the resident set under the 150 MB of issue #7. It is soft: a heap
// that needs more gets more, at the price of more frequent collections (the runtime bounds
// their CPU); a service whose page cache or fleet is larger should raise it.
const DefaultMemoryLimit = 128 << 20

// minMemoryLimit refuses limits under which the service would collect garbage without pause:
// one Argon2id check alone holds 64 MiB.
const minMemoryLimit = 64 << 20

// parseMemoryLimit reads a --memory-limit value: "off" (no limit), or a size in bytes with an
// optional unit B, KiB, MiB, GiB or TiB (GOMEMLIMIT's syntax) or KB, MB, GB, TB (powers of
// 1000), at least 64 MiB. "" is the default; ok is false for "off".
func parseMemoryLimit(v string) (limit int64, ok bool, err error) {
	switch strings.TrimSpace(v) {
	case "":
		return DefaultMemoryLimit, true, nil
	case "off":
		return 0, false, nil
	}
	s := strings.TrimSpace(v)
	units := []struct {
		suffix string
		mult   float64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
	}
	mult := 1.0
	for _, u := range units {
		if n, found := strings.CutSuffix(s, u.suffix); found {
			s, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, perr := strconv.ParseFloat(s, 64)
	if perr != nil || s == "" || strings.ContainsAny(s, "eEpPxX_+-") || math.IsNaN(n) || math.IsInf(n, 0) {
		return 0, false, fmt.Errorf("%q is not a size such as 128MiB, 1GiB or 200MB (or off)", v)
	}
	b := n * mult
	if b < minMemoryLimit {
		return 0, false, fmt.Errorf("%q is below the minimum of 64MiB (one password check holds that much)", v)
	}
	if b >= math.MaxInt64 {
		return 0, false, fmt.Errorf("%q is too large", v)
	}
	return int64(b), true, nil
}

// memoryLimit decides the soft memory limit of `kps serve`: the flag (or KPS_MEMORY_LIMIT) when
// given, else GOMEMLIMIT when set (the runtime applied it already: keep it), else the default.
// It returns the limit to set (0: leave the runtime's) and where it came from.
func memoryLimit(flagValue string, getenv func(string) string) (limit int64, source string, err error) {
	if strings.TrimSpace(flagValue) == "" && getenv("GOMEMLIMIT") != "" {
		return 0, "GOMEMLIMIT", nil
	}
	limit, ok, err := parseMemoryLimit(flagValue)
	if err != nil {
		return 0, "", err
	}
	switch {
	case !ok:
		return math.MaxInt64, "off", nil
	case strings.TrimSpace(flagValue) == "":
		return limit, "default", nil
	}
	return limit, "--memory-limit", nil
}

// applyMemoryLimit sets the process's soft memory limit as memoryLimit decides and returns the
// limit in force (math.MaxInt64: none) and its source.
func applyMemoryLimit(flagValue string, getenv func(string) string) (int64, string, error) {
	limit, source, err := memoryLimit(flagValue, getenv)
	if err != nil {
		return 0, "", err
	}
	if limit != 0 {
		debug.SetMemoryLimit(limit)
	}
	return debug.SetMemoryLimit(-1), source, nil
}
