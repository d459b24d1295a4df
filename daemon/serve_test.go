package daemon

import (
	"io"
	"testing"
	"time"

	"github.com/openkps/kps"
)

// TestExternalIdentityFlags: the external identity flags and their KPS_* variables, and the
// defaults of local mode. (What validation refuses, through the command line:
// TestExternalIdentityFlagsRefused in e2e.)
func TestExternalIdentityFlags(t *testing.T) {
	t.Parallel()
	var cfg Config
	env := map[string]string{"KPS_IDENTITY_MODE": "external", "KPS_IDENTITY_URL": "https://iam.example.com/v3",
		"KPS_IDENTITY_CACHE_TTL": "1m", "KPS_IDENTITY_TIMEOUT": "2s", "KPS_IDENTITY_ROLE_MAP": "te_admin=admin",
		"KPS_IDENTITY_DEFAULT_ROLE": "reader"}
	if err := parseWithEnv(cfg.flags(), nil, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	e, err := cfg.externalIdentity(nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.URL != "https://iam.example.com/v3" || e.CacheTTL != time.Minute || e.Timeout != 2*time.Second ||
		len(e.RoleMap) != 1 || e.RoleMap["te_admin"] != kps.RoleAdmin || e.DefaultRole != kps.RoleReader {
		t.Fatalf("external identity %+v", e)
	}

	var defaults Config
	if err := parseWithEnv(defaults.flags(), nil, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if defaults.IdentityMode != "local" || defaults.IdentityCacheTTL != 300*time.Second || defaults.IdentityTimeout != 3*time.Second ||
		defaults.IdentityRoleMap != "admin=admin,member=member,_member_=member,reader=reader" || defaults.IdentityDefaultRole != "none" {
		t.Fatalf("defaults %+v", defaults)
	}
	if e, err := defaults.externalIdentity(nil); e != nil || err != nil {
		t.Fatalf("local mode: %v %v", e, err)
	}
}

// TestNovaServeFlags: the Nova flags and their KPS_* variables, and what validation refuses.
func TestNovaServeFlags(t *testing.T) {
	for _, c := range []struct {
		args    []string
		env     map[string]string
		ok      bool
		prefix  string
		perUser int
	}{
		{nil, nil, true, "", 100},
		{[]string{"--keypair-user-quota", "-1", "--compute-link-prefix", "https://gw.example.net/nova"}, nil, true, "https://gw.example.net/nova", -1},
		{nil, map[string]string{"KPS_KEYPAIR_USER_QUOTA": "0", "KPS_COMPUTE_LINK_PREFIX": "http://10.0.0.1:8774"}, true, "http://10.0.0.1:8774", 0},
		{[]string{"--keypair-user-quota", "-2"}, nil, false, "", 0},
		{[]string{"--compute-link-prefix", "gw.example.net/nova"}, nil, false, "", 0},
		{[]string{"--compute-link-prefix", "ftp://gw.example.net"}, nil, false, "", 0},
		{[]string{"--compute-link-prefix", "https://gw.example.net/nova?x=1"}, nil, false, "", 0},
		{[]string{"--compute-link-prefix", "https://user:pw@gw.example.net"}, nil, false, "", 0},
	} {
		var cfg Config
		fs := cfg.flags()
		fs.SetOutput(io.Discard)
		err := parseWithEnv(fs, c.args, func(k string) string { return c.env[k] })
		if err == nil {
			cfg.Region = "local-1"
			err = cfg.validate()
		}
		if (err == nil) != c.ok {
			t.Errorf("%v %v: %v", c.args, c.env, err)
			continue
		}
		if c.ok && (cfg.ComputeLinkPrefix != c.prefix || *cfg.KeyPairUserQuota != c.perUser) {
			t.Errorf("%v %v: prefix %q, per-user %d", c.args, c.env, cfg.ComputeLinkPrefix, *cfg.KeyPairUserQuota)
		}
	}
}

// TestReadTimeoutDefaults: without ReadHeaderTimeout the service gives clients 10s to send their
// headers (TestSlowClients in e2e serves with shorter ones).
func TestReadTimeoutDefaults(t *testing.T) {
	if d := NewMain(Config{}, io.Discard, io.Discard); orDefault(d.Config.ReadHeaderTimeout, 10*time.Second) != 10*time.Second {
		t.Fatal("default header timeout")
	}
}
