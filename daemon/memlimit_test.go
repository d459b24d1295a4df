package daemon

import (
	"io"
	"math"
	"runtime/debug"
	"strings"
	"testing"
)

// TestMemoryLimitFlag: --memory-limit and KPS_MEMORY_LIMIT, the default, GOMEMLIMIT honoured
// when neither is given, and nonsense refused by validation.
func TestMemoryLimitFlag(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	for _, c := range []struct {
		args   []string
		env    map[string]string
		limit  int64 // 0: the runtime's own (GOMEMLIMIT); math.MaxInt64: none
		source string
		bad    bool
	}{
		{nil, nil, 128 * mib, "default", false},
		{[]string{"--memory-limit", "256MiB"}, nil, 256 * mib, "--memory-limit", false},
		{nil, map[string]string{"KPS_MEMORY_LIMIT": "1GiB"}, 1 << 30, "--memory-limit", false},
		{[]string{"--memory-limit", "200MB"}, map[string]string{"KPS_MEMORY_LIMIT": "1GiB"}, 200e6, "--memory-limit", false},
		{[]string{"--memory-limit", "1.5GiB"}, nil, 3 << 29, "--memory-limit", false},
		{[]string{"--memory-limit", "134217728"}, nil, 128 * mib, "--memory-limit", false},
		{[]string{"--memory-limit", "96 MiB"}, nil, 96 * mib, "--memory-limit", false},
		{[]string{"--memory-limit", "off"}, nil, math.MaxInt64, "off", false},
		{nil, map[string]string{"GOMEMLIMIT": "300MiB"}, 0, "GOMEMLIMIT", false},
		{[]string{"--memory-limit", "512MiB"}, map[string]string{"GOMEMLIMIT": "300MiB"}, 512 * mib, "--memory-limit", false},
		{[]string{"--memory-limit", "lots"}, nil, 0, "", true},
		{[]string{"--memory-limit", "-128MiB"}, nil, 0, "", true},
		{[]string{"--memory-limit", "0"}, nil, 0, "", true},
		{[]string{"--memory-limit", "32MiB"}, nil, 0, "", true},
		{[]string{"--memory-limit", "1e9"}, nil, 0, "", true},
		{[]string{"--memory-limit", "NaN"}, nil, 0, "", true},
		{[]string{"--memory-limit", "Inf GiB"}, nil, 0, "", true},
		{[]string{"--memory-limit", "MiB"}, nil, 0, "", true},
		{[]string{"--memory-limit", "128 Mib"}, nil, 0, "", true},
		{[]string{"--memory-limit", "99999999TiB"}, nil, 0, "", true},
		{nil, map[string]string{"KPS_MEMORY_LIMIT": "12"}, 0, "", true},
	} {
		var cfg Config
		fs := cfg.flags()
		fs.SetOutput(io.Discard)
		getenv := func(k string) string { return c.env[k] }
		if err := parseWithEnv(fs, c.args, getenv); err != nil {
			t.Fatalf("%v %v: %v", c.args, c.env, err)
		}
		err := cfg.validate()
		if c.bad {
			if err == nil || !strings.Contains(err.Error(), "--memory-limit") {
				t.Errorf("%v %v: accepted (%v)", c.args, c.env, err)
			}
			if _, _, err := memoryLimit(cfg.MemoryLimit, getenv); err == nil {
				t.Errorf("%v %v: memoryLimit accepted it", c.args, c.env)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v %v: %v", c.args, c.env, err)
			continue
		}
		limit, source, err := memoryLimit(cfg.MemoryLimit, getenv)
		if err != nil || limit != c.limit || source != c.source {
			t.Errorf("%v %v: limit %d from %q (%v), want %d from %q", c.args, c.env, limit, source, err, c.limit, c.source)
		}
	}
}

// TestApplyMemoryLimit sets the runtime's limit and reports it; GOMEMLIMIT's own stays.
func TestApplyMemoryLimit(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	env := func(k string) string { return "" }
	if got, source, err := applyMemoryLimit("", env); err != nil || got != DefaultMemoryLimit || source != "default" ||
		debug.SetMemoryLimit(-1) != DefaultMemoryLimit {
		t.Fatalf("default: %d from %s (%v)", got, source, err)
	}
	debug.SetMemoryLimit(300 << 20) // as the runtime does for GOMEMLIMIT=300MiB
	gomem := func(k string) string {
		if k == "GOMEMLIMIT" {
			return "300MiB"
		}
		return ""
	}
	if got, source, err := applyMemoryLimit("", gomem); err != nil || got != 300<<20 || source != "GOMEMLIMIT" {
		t.Fatalf("GOMEMLIMIT: %d from %s (%v)", got, source, err)
	}
	if got, _, err := applyMemoryLimit("off", env); err != nil || got != math.MaxInt64 {
		t.Fatalf("off: %d (%v)", got, err)
	}
	if _, _, err := applyMemoryLimit("tiny", env); err == nil {
		t.Fatal("nonsense applied")
	}
}
