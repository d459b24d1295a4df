package daemon

import (
	"errors"
	"io"
	"testing"
	"time"
)

// TestOperationsFlags: the metrics and log flags, their KPS_* variables and defaults (metrics on
// the main listener, text logs, no access log), and what validation refuses.
func TestOperationsFlags(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args    []string
		env     map[string]string
		ok      bool
		metrics bool
		listen  string
		format  string
		access  bool
	}{
		{nil, nil, true, true, "", "text", false},
		{[]string{"--metrics-listen", "127.0.0.1:9801", "--log-format", "json", "--access-log"}, nil, true, true, "127.0.0.1:9801", "json", true},
		{nil, map[string]string{"KPS_METRICS": "false", "KPS_LOG_FORMAT": "json", "KPS_ACCESS_LOG": "true"}, true, false, "", "json", true},
		{[]string{"--log-format", "logfmt"}, nil, false, true, "", "", false},
		{[]string{"--metrics=false", "--metrics-listen", "127.0.0.1:9801"}, nil, false, false, "", "", false},
	} {
		var cfg Config
		fs := cfg.flags()
		fs.SetOutput(io.Discard)
		err := parseWithEnv(fs, c.args, func(k string) string { return c.env[k] })
		if err == nil {
			err = cfg.validate()
		}
		if (err == nil) != c.ok {
			t.Errorf("%v %v: %v", c.args, c.env, err)
			continue
		}
		var usage interface{ UsageError() }
		if err != nil && !errors.As(err, &usage) {
			t.Errorf("%v: %v is not a usage error", c.args, err)
		}
		if c.ok && (cfg.Metrics != c.metrics || cfg.MetricsListen != c.listen || cfg.LogFormat != c.format || cfg.AccessLog != c.access) {
			t.Errorf("%v %v: metrics %v listen %q format %q access %v", c.args, c.env, cfg.Metrics, cfg.MetricsListen, cfg.LogFormat, cfg.AccessLog)
		}
	}
}

// TestExpiryIntervalFlag: --expiry-interval (and KPS_EXPIRY_INTERVAL) sets how often expired
// bindings are looked for, 1s by default, from 100ms to 1h.
func TestExpiryIntervalFlag(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		env  map[string]string
		ok   bool
		want time.Duration
	}{
		{nil, nil, true, time.Second},
		{[]string{"--expiry-interval", "250ms"}, nil, true, 250 * time.Millisecond},
		{nil, map[string]string{"KPS_EXPIRY_INTERVAL": "1m"}, true, time.Minute},
		{[]string{"--expiry-interval", "10ms"}, nil, false, 0},
		{[]string{"--expiry-interval", "2h"}, nil, false, 0},
		{[]string{"--expiry-interval", "-1s"}, nil, false, 0},
	} {
		var cfg Config
		fs := cfg.flags()
		fs.SetOutput(io.Discard)
		err := parseWithEnv(fs, c.args, func(k string) string { return c.env[k] })
		if err == nil {
			err = cfg.validate()
		}
		var usage interface{ UsageError() }
		switch {
		case (err == nil) != c.ok:
			t.Errorf("%v %v: %v", c.args, c.env, err)
		case err != nil && !errors.As(err, &usage):
			t.Errorf("%v: %v is not a usage error", c.args, err)
		case c.ok && cfg.ExpiryInterval != c.want:
			t.Errorf("%v %v: %v, want %v", c.args, c.env, cfg.ExpiryInterval, c.want)
		}
	}
}
