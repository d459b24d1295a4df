package daemon

import (
	"flag"
	"strings"
	"testing"
	"time"
)

func TestFlagsFromEnvironment(t *testing.T) {
	t.Parallel()
	var cfg Config
	fs := cfg.flags()
	env := map[string]string{"KPS_LISTEN": "127.0.0.1:1", "KPS_DATA_DIR": "/env", "KPS_WORKERS": "3", "KPS_TOKEN_TTL": "1h"}
	if err := parseWithEnv(fs, []string{"--data-dir", "/flag"}, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:1" || cfg.DataDir != "/flag" || cfg.Workers != 3 || cfg.TokenTTL != time.Hour || cfg.Region != "local-1" {
		t.Fatalf("config %+v", cfg)
	}
	// Every flag has its variable.
	fs.VisitAll(func(f *flag.Flag) {
		if !strings.HasPrefix(envName(f.Name), "KPS_") || strings.Contains(envName(f.Name), "-") {
			t.Errorf("flag %s has no proper variable", f.Name)
		}
	})
	bad := map[string]string{"KPS_WORKERS": "many"}
	if err := parseWithEnv(cfg.flags(), nil, func(k string) string { return bad[k] }); err == nil || !strings.Contains(err.Error(), "KPS_WORKERS") {
		t.Fatalf("bad environment value: %v", err)
	}
}
