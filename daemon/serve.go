package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api"
	"github.com/openkps/kps/api/keystone"
	"github.com/openkps/kps/api/router"
	"github.com/openkps/kps/console"
	"github.com/openkps/kps/docs"
	"github.com/openkps/kps/iam"
	"github.com/openkps/kps/metrics"
	"github.com/openkps/kps/secrets"
	kpsservice "github.com/openkps/kps/service"
	"github.com/openkps/kps/sshhost"
	"github.com/openkps/kps/store"
	"github.com/openkps/kps/tasks"
)

// Config is everything `kps serve` can be told; every flag has a KPS_* variable.
type Config struct {
	Listen       string
	DataDir      string
	Database     string // a postgres:// URL that replicas share; "" is the SQLite file <data-dir>/kps.db
	Region       string
	PublicURL    string
	Workers      int
	KeyPairQuota int
	MaxQueued    int
	// ReserveWorkers run, while every worker is busy, only tasks of projects with nothing
	// running (tasks.Config); 0: none.
	ReserveWorkers int
	// MaxQueuedPerProject bounds one project's READY and RUNNING tasks (429 KPS.6403); 0: no
	// limit.
	MaxQueuedPerProject int
	// ServerQuota bounds one project's servers (403 KPS.6402); 0: no limit.
	ServerQuota   int
	TokenTTL      time.Duration
	Lease         time.Duration
	TaskTimeout   time.Duration
	Shutdown      time.Duration
	LogLevel      string
	AdminPassword string // KPS_ADMIN_PASSWORD only: a flag would land in shell history
	MasterKey     string // KPS_MASTER_KEY only, for the same reason

	// DriftInterval runs a drift check of every server of every project this often (0: never;
	// kps-v3-api.md §7.2).
	DriftInterval time.Duration
	// ExpiryInterval is how often the service looks for expired bindings (1s when zero;
	// --expiry-interval, 100ms to 1h).
	ExpiryInterval time.Duration

	// KeyPairUserQuota is Nova's per-user key pair limit (nova-keypairs.md §11): -1 none, 0 no
	// Nova creates; nil (a Config not built from flags) is Nova's default, 100.
	KeyPairUserQuota *int
	// ComputeLinkPrefix is <base> of the Nova API's links and, followed by /v2.1, its catalog
	// URL (nova-keypairs.md §3.3, auth.md §8.4); "" is <public-url>/compute.
	ComputeLinkPrefix string
	// TrustedProxies are the CIDRs of load balancers whose X-Forwarded-For names the client.
	TrustedProxies string
	// AllowedTargets are the networks and ports servers may point at (kps.ParseAllowedTargets);
	// "" allows everything.
	AllowedTargets string
	// LoginQueue is how many logins may wait for a password hash slot before the next is
	// refused with 429 KPS.6105; 0 is four per slot open to logins (iam.Service.LoginQueue).
	LoginQueue int

	// External identity mode (auth.md §10): "" or "local", or "external" with the rest.
	IdentityMode        string
	IdentityURL         string
	IdentityCacheTTL    time.Duration
	IdentityTimeout     time.Duration
	IdentityRoleMap     string
	IdentityDefaultRole string

	// ReadHeaderTimeout and ReadTimeout bound how long a client may take to send its headers
	// and its whole request, which cuts slowloris-style clients; zero means 10s and 30s.
	// Tests shorten them; they are not flags.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration

	// MemoryLimit is the Go runtime's soft memory limit (memlimit.go): "" is
	// GOMEMLIMIT when set, else DefaultMemoryLimit; "off" none. `kps serve` applies it, Main does
	// not (it is the process's, and tests run several Mains in one process).
	MemoryLimit string

	// TLSCert and TLSKey are PEM files; with both the service serves HTTPS (reloaded on SIGHUP).
	TLSCert, TLSKey string

	// MaxConnections and MaxConnectionsPerIP cap the connections open at once, in total and
	// from one client address (api.ConnectionLimits); 0 means no cap.
	MaxConnections, MaxConnectionsPerIP int
	// DatabaseFile names a file holding the --database URL, so that a password in it shows
	// neither in ps nor in the environment of the process.
	DatabaseFile string
	// Console serves the web console at /console/ (package console).
	Console bool

	// Metrics serves the Prometheus metrics (package metrics) at GET /metrics: on the main
	// listener, or on MetricsListen alone when that is set.
	Metrics       bool
	MetricsListen string
	// LogFormat is text (the default) or json; AccessLog writes one line per request.
	LogFormat string
	AccessLog bool
	// AuditRetention is how long audit events are kept (docs/spec/audit.md); zero means
	// DefaultAuditRetention. AuditLog is a file, or "-" for standard output, that also receives
	// every committed audit event as a JSON line; "" none.
	AuditRetention time.Duration
	AuditLog       string
}

func (c *Config) flags() *flag.FlagSet {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:9800", "address to listen on")
	fs.StringVar(&c.DataDir, "data-dir", "./kps-data", "directory holding the database, master key and admin password file")
	fs.StringVar(&c.Database, "database", "", "postgres://user@host:port/db URL of a PostgreSQL database that replicas share (default: the SQLite file kps.db in --data-dir); a URL with a password belongs in KPS_DATABASE or --database-file, not on the command line where ps shows it")
	fs.StringVar(&c.Region, "region", "local-1", "region ID; also the name of each domain's default project")
	fs.StringVar(&c.PublicURL, "public-url", "", "public base URL of the service (default http://<listen>)")
	fs.IntVar(&c.Workers, "workers", 16, "tasks executed concurrently")
	fs.IntVar(&c.KeyPairQuota, "keypair-quota", 1000, "key pairs per project")
	c.KeyPairUserQuota = new(int)
	fs.IntVar(c.KeyPairUserQuota, "keypair-user-quota", 100, "key pairs one user may own in a project, checked on OpenStack (Nova API) creates (-1: no limit, 0: none)")
	fs.StringVar(&c.ComputeLinkPrefix, "compute-link-prefix", "", "public base URL of the OpenStack compute API, used in its links and in the catalog (default <public-url>/compute)")
	fs.IntVar(&c.MaxQueued, "max-queued", 10000, "queued tasks before new ones are refused with 503 (0: no limit)")
	fs.IntVar(&c.MaxQueuedPerProject, "max-queued-per-project", 1000, "queued or running tasks of one project before its new ones are refused with 429 KPS.6403, so that one project cannot fill the queue (0: no limit)")
	fs.IntVar(&c.ReserveWorkers, "reserve-workers", 4, "workers beyond --workers that, while all of those are busy, run only tasks of projects with nothing running (0: none)")
	fs.IntVar(&c.ServerQuota, "server-quota", 10000, "servers per project (0: no limit)")
	fs.DurationVar(&c.TokenTTL, "token-ttl", 24*time.Hour, "token lifetime (5m to 24h)")
	fs.IntVar(&c.LoginQueue, "login-queue", 0, "logins that may wait for a password hash slot before more are refused with 429 (0: four per slot open to logins, half the CPUs)")
	fs.DurationVar(&c.Lease, "lease", 30*time.Second, "task and drift check lease; a worker silent for this long loses its task, a drift check is interrupted")
	fs.DurationVar(&c.TaskTimeout, "task-timeout", 120*time.Second, "deadline of one task")
	fs.DurationVar(&c.DriftInterval, "drift-interval", 0, "run a drift check of every server of every project this often, e.g. 6h (0: only on request)")
	fs.DurationVar(&c.ExpiryInterval, "expiry-interval", time.Second, "how often to look for expired bindings (expires_at) and unbind them, 100ms to 1h")
	fs.DurationVar(&c.Shutdown, "shutdown-grace", 20*time.Second, "time running tasks get to finish on SIGTERM")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.MemoryLimit, "memory-limit", "", "soft memory limit of the Go runtime, e.g. 256MiB or 1GiB, or off (default: GOMEMLIMIT when set, else 128MiB)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate (chain) to serve HTTPS with; needs --tls-key; re-read on SIGHUP")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&c.TrustedProxies, "trusted-proxies", "", "comma-separated CIDRs of load balancers whose X-Forwarded-For gives the client IP (default: none, the TCP peer is the client)")
	fs.StringVar(&c.AllowedTargets, "allowed-targets", "", "comma-separated networks, each with an optional port or port range, that servers may point at, e.g. 10.0.0.0/8,192.168.1.0/24:22,[2001:db8::]/32:22-2222; checked at registration and before every connection (default: everything)")
	fs.StringVar(&c.IdentityMode, "identity-mode", "local", "local (this service issues tokens) or external (tokens of the Keystone/IAM at --identity-url)")
	fs.StringVar(&c.IdentityURL, "identity-url", "", "external mode: base URL of the identity service's v3 API, e.g. https://iam.example.com/v3")
	fs.DurationVar(&c.IdentityCacheTTL, "identity-cache-ttl", iam.DefaultExternalCacheTTL, "external mode: how long a validated token is trusted before it is checked again (0: every request)")
	fs.DurationVar(&c.IdentityTimeout, "identity-timeout", iam.DefaultExternalTimeout, "external mode: deadline of one token validation call")
	fs.StringVar(&c.IdentityRoleMap, "identity-role-map", iam.DefaultRoleMap, "external mode: external role names mapped to admin, member or reader")
	fs.StringVar(&c.IdentityDefaultRole, "identity-default-role", "none", "external mode: role of a token without a mapped role: none, reader, member or admin")

	// Connection caps and the database URL from a file (docs/SECURITY.md 5.3, "What an operator must do").
	fs.IntVar(&c.MaxConnections, "max-connections", 1024, "connections open at once; more are answered 503 and closed (0: no cap)")
	fs.IntVar(&c.MaxConnectionsPerIP, "max-connections-per-ip", 128, "connections open at once from one client IP (IPv6: one /64); trusted proxies are exempt (0: no cap)")
	fs.StringVar(&c.DatabaseFile, "database-file", "", "file holding the --database URL (mode 0600 or 0400, not writable by group or others); keeps the password out of ps")
	fs.BoolVar(&c.Console, "console", true, "serve the web console at /console/ (--console=false: the API only)")

	// Operations (docs/operations.md).
	fs.BoolVar(&c.Metrics, "metrics", true, "serve Prometheus metrics at GET /metrics, without authentication, on the main listener or --metrics-listen (--metrics=false: none)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", "", "address of a listener of its own for GET /metrics, e.g. 127.0.0.1:9801, instead of the main listener (plain HTTP: keep it on an internal network)")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log lines as text (key=value) or json")
	fs.BoolVar(&c.AccessLog, "access-log", false, "log one line per HTTP request: method, route pattern, status, duration, bytes, request ID, client IP")
	fs.DurationVar(&c.AuditRetention, "audit-retention", DefaultAuditRetention, "how long audit events are kept (at least 1h)")
	fs.StringVar(&c.AuditLog, "audit-log", "", "file that also receives every audit event as a JSON line once committed, for a SIEM (-: standard output; default: none)")
	return fs
}

func (c *Config) validate() error {
	if c.TokenTTL < 5*time.Minute || c.TokenTTL > 24*time.Hour {
		return usageError{fmt.Errorf("--token-ttl must be from 5m to 24h")}
	}
	if c.Workers < 1 || c.KeyPairQuota < 1 || c.MaxQueued < 0 {
		return usageError{fmt.Errorf("--workers and --keypair-quota must be positive, --max-queued not negative")}
	}
	if c.LoginQueue < 0 {
		return usageError{fmt.Errorf("--login-queue must not be negative")}
	}
	if c.MaxQueuedPerProject < 0 || c.ReserveWorkers < 0 || c.ServerQuota < 0 {
		return usageError{fmt.Errorf("--max-queued-per-project, --reserve-workers and --server-quota must not be negative")}
	}
	if c.KeyPairUserQuota != nil && *c.KeyPairUserQuota < -1 {
		return usageError{fmt.Errorf("--keypair-user-quota must be -1 (no limit) or more")}
	}
	if err := validLinkPrefix(c.ComputeLinkPrefix); err != nil {
		return usageError{fmt.Errorf("--compute-link-prefix: %w", err)}
	}
	if c.Region == "" || strings.ContainsAny(c.Region, " /") {
		return usageError{fmt.Errorf("--region must be a non-empty name without spaces or slashes")}
	}
	if _, err := c.externalIdentity(nil); err != nil {
		return usageError{err}
	}
	if _, err := c.tlsFiles(); err != nil {
		return usageError{err}
	}
	if _, err := api.ParseTrustedProxies(c.TrustedProxies); err != nil {
		return usageError{fmt.Errorf("--trusted-proxies: %w", err)}
	}
	if _, err := kps.ParseAllowedTargets(c.AllowedTargets); err != nil {
		return usageError{fmt.Errorf("--allowed-targets: %w", err)}
	}
	if _, _, err := parseMemoryLimit(c.MemoryLimit); err != nil {
		return usageError{fmt.Errorf("--memory-limit: %w", err)}
	}
	if c.AuditRetention != 0 && c.AuditRetention < time.Hour {
		return usageError{fmt.Errorf("--audit-retention must be at least 1h")}
	}
	if c.DriftInterval < 0 {
		return usageError{fmt.Errorf("--drift-interval must not be negative")}
	}
	if c.ExpiryInterval != 0 && (c.ExpiryInterval < 100*time.Millisecond || c.ExpiryInterval > time.Hour) {
		return usageError{fmt.Errorf("--expiry-interval must be from 100ms to 1h")}
	}
	if c.MaxConnections < 0 || c.MaxConnectionsPerIP < 0 {
		return usageError{fmt.Errorf("--max-connections and --max-connections-per-ip must not be negative")}
	}
	if c.Database != "" && c.DatabaseFile != "" {
		return usageError{fmt.Errorf("--database and --database-file exclude each other")}
	}
	if c.Database != "" && !c.postgres() {
		return usageError{fmt.Errorf("--database must be a postgres:// or postgresql:// URL (or empty for the embedded SQLite file)")}
	}
	if c.LogFormat != "" && c.LogFormat != "text" && c.LogFormat != "json" {
		return usageError{fmt.Errorf("--log-format must be text or json")}
	}
	if c.MetricsListen != "" && !c.Metrics {
		return usageError{fmt.Errorf("--metrics-listen needs --metrics")}
	}
	return nil
}

// validLinkPrefix accepts "" or an absolute http(s) URL without query or fragment.
func validLinkPrefix(v string) error {
	if v == "" {
		return nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q is not an http or https URL without query, fragment or user", v)
	}
	return nil
}

// maxDatabaseFile bounds what --database-file reads: a URL, not a file that happens to be there.
const maxDatabaseFile = 64 << 10

// readDatabaseFile returns the database URL held in path (surrounding blanks and the final
// newline ignored). The file is refused when group or others may write it, since whoever can
// would choose the database the service trusts; readable by them, it is used with a warning.
// No error quotes the file's content: it holds a password.
func readDatabaseFile(path string, log *slog.Logger) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", usageError{fmt.Errorf("--database-file: %w", err)}
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", usageError{fmt.Errorf("--database-file: %w", err)}
	}
	switch mode := st.Mode(); {
	case !mode.IsRegular():
		return "", usageError{fmt.Errorf("--database-file %s is not a regular file", path)}
	case mode.Perm()&0o022 != 0:
		return "", usageError{fmt.Errorf("--database-file %s may be written by group or others (mode %04o): chmod 600 it", path, mode.Perm())}
	case mode.Perm()&0o044 != 0:
		log.Warn("the database file may be read by group or others: chmod 600 it", "path", path, "mode", fmt.Sprintf("%04o", mode.Perm()))
	}
	b, err := io.ReadAll(io.LimitReader(f, maxDatabaseFile+1))
	if err != nil {
		return "", usageError{fmt.Errorf("--database-file: %w", err)}
	}
	v := strings.TrimSpace(string(b))
	switch {
	case len(b) > maxDatabaseFile:
		return "", usageError{fmt.Errorf("--database-file %s is longer than %d bytes", path, maxDatabaseFile)}
	case strings.ContainsAny(v, "\r\n"):
		return "", usageError{fmt.Errorf("--database-file %s must hold one line", path)}
	case !strings.HasPrefix(v, "postgres://") && !strings.HasPrefix(v, "postgresql://"):
		return "", usageError{fmt.Errorf("--database-file %s must hold a postgres:// or postgresql:// URL", path)}
	}
	return v, nil
}

// postgres reports whether the store is a PostgreSQL database that replicas may share.
func (c *Config) postgres() bool {
	return strings.HasPrefix(c.Database, "postgres://") || strings.HasPrefix(c.Database, "postgresql://")
}

// openStore opens the configured database and applies its migrations.
func openStore(ctx context.Context, c *Config, opt store.Options) (*store.DB, error) {
	if c.postgres() {
		return store.OpenPostgres(ctx, c.Database, opt)
	}
	return store.OpenSQLite(ctx, filepath.Join(c.DataDir, "kps.db"), opt)
}

// external reports whether tokens come from an external identity service.
func (c *Config) external() bool { return c.IdentityMode == "external" }

// externalIdentity returns the token validator of external identity mode, or nil in local
// mode; the error names the flag that is wrong.
func (c *Config) externalIdentity(log *slog.Logger) (*iam.External, error) {
	switch c.IdentityMode {
	case "", "local":
		if c.IdentityURL != "" {
			return nil, fmt.Errorf("--identity-url needs --identity-mode external")
		}
		return nil, nil
	case "external":
	default:
		return nil, fmt.Errorf("--identity-mode must be local or external")
	}
	if c.IdentityURL == "" {
		return nil, fmt.Errorf("--identity-mode external needs --identity-url")
	}
	if err := iam.ValidateExternalURL(c.IdentityURL); err != nil {
		return nil, fmt.Errorf("--identity-url: %w", err)
	}
	if c.IdentityCacheTTL < 0 || c.IdentityCacheTTL > 24*time.Hour {
		return nil, fmt.Errorf("--identity-cache-ttl must be from 0 to 24h")
	}
	if c.IdentityTimeout <= 0 || c.IdentityTimeout > time.Minute {
		return nil, fmt.Errorf("--identity-timeout must be positive and at most 1m")
	}
	roleMap, err := iam.ParseRoleMap(c.IdentityRoleMap)
	if err != nil {
		return nil, fmt.Errorf("--identity-role-map: %w", err)
	}
	def := kps.Role(c.IdentityDefaultRole)
	switch {
	case def == "none" || def == "":
		def = ""
	case !def.Valid():
		return nil, fmt.Errorf("--identity-default-role must be none, reader, member or admin")
	}
	ttl := c.IdentityCacheTTL
	if ttl == 0 {
		ttl = -1 // iam.External reads 0 as its default
	}
	return &iam.External{URL: c.IdentityURL, Timeout: c.IdentityTimeout, CacheTTL: ttl,
		RoleMap: roleMap, DefaultRole: def, Log: log}, nil
}

// Main is the running service. Tests start the real thing with Run on port 0 and a temp data
// directory, and stop it with Close.
type Main struct {
	Config Config
	Log    *slog.Logger

	stdout  io.Writer
	keys    *secrets.LiveKeyRing
	sealer  *secrets.Sealer
	rewraps sync.WaitGroup
	// The background loops of the extensions (kps-v3-api.md §7): the expiry of bindings and
	// the scheduled drift checks.
	drift     *kpsservice.Drift
	stopLoops context.CancelFunc
	loops     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
	store     *store.DB
	runner    *tasks.Runner
	rotations *rotationLoop
	http      *http.Server
	listener  net.Listener
	cert      *certificate // nil without TLS
	served    chan error
	metrics   *metricsServer // nil unless --metrics-listen

	auditLog        *auditLog // nil without --audit-log
	stopAuditSweep  context.CancelFunc
	auditSweepEnded chan struct{}
}

// NewMain returns a service for cfg, logging to stderr in cfg.LogFormat.
func NewMain(cfg Config, stdout, stderr io.Writer) *Main {
	level := slog.LevelInfo
	level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(stderr, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(stderr, opts)
	}
	return &Main{Config: cfg, stdout: stdout, Log: slog.New(h)}
}

// Run opens the data directory, applies migrations, bootstraps identity on first start,
// recovers interrupted tasks, starts the workers and serves HTTP in the background.
func (m *Main) Run(ctx context.Context) error {
	cfg := &m.Config
	err := cfg.validate()
	if err != nil {
		return err
	}
	if cfg.DatabaseFile != "" {
		if cfg.Database, err = readDatabaseFile(cfg.DatabaseFile, m.Log); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating the data directory: %w", err)
	}
	ring, err := keyRing(cfg)
	if err != nil {
		return err
	}
	m.keys = secrets.NewLiveKeyRing(ring)
	m.sealer = secrets.NewSealer(m.keys)
	sealer := m.sealer

	if m.auditLog, err = openAuditLog(cfg.AuditLog, m.stdout, m.Log); err != nil {
		return err
	}
	var opt store.Options
	if m.auditLog != nil {
		opt.OnAudit = m.auditLog.write
	}
	m.store, err = openStore(ctx, cfg, opt)
	if err != nil {
		return err
	}
	retention := cfg.AuditRetention
	if retention == 0 {
		retention = DefaultAuditRetention
	}
	sweepCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	m.stopAuditSweep, m.auditSweepEnded = stop, make(chan struct{})
	go sweepAudit(sweepCtx, m.store, retention, m.Log, m.auditSweepEnded)
	// Lockouts and rate limits are counted in the database, so that every replica on it sees
	// every failure (auth.md §12.4).
	ids := &iam.Service{Store: m.store, Versions: m.store, TokenTTL: cfg.TokenTTL, Sealer: sealer, Region: cfg.Region,
		Limiter: m.store.Lockouts(), LoginQueue: cfg.LoginQueue, AuditTrail: m.store}
	pwFile, err := ids.Bootstrap(ctx, cfg.DataDir, cfg.Region, cfg.AdminPassword)
	if err != nil {
		return fmt.Errorf("bootstrapping identity: %w", err)
	}
	cfg.AdminPassword = "" // needed for the bootstrap only
	// In external mode nobody logs in here (auth.md §10.2): the local admin only waits for a
	// switch back to local mode, so announcing it would mislead.
	if pwFile != "" && !cfg.external() {
		// Only the path is printed; the password itself never reaches a log.
		fmt.Fprintf(m.stdout, "kps: created user admin in domain Default; its password is in %s\n", pwFile)
	}
	// In external mode the users are the identity service's: nothing manages them here.
	var identity interface {
		api.Identity
		keystone.Tokens
	} = ids
	var manager keystone.Manager = ids
	var users kpsservice.Users = m.store
	if cfg.external() {
		ext, err := cfg.externalIdentity(m.Log)
		if err != nil {
			return usageError{err}
		}
		ext.Limiter = m.store.Lockouts()
		identity, manager, users = ext, nil, nil
	}

	targets, _ := kps.ParseAllowedTargets(cfg.AllowedTargets) // validated above
	reserve := cfg.ReserveWorkers
	if reserve == 0 {
		reserve = -1 // tasks.Config: none
	}
	if cfg.MaxQueued > 0 && cfg.MaxQueuedPerProject >= cfg.MaxQueued || cfg.MaxQueued > 0 && cfg.MaxQueuedPerProject == 0 {
		m.Log.Warn("one project can fill the task queue: --max-queued-per-project should be below --max-queued",
			"max_queued", cfg.MaxQueued, "max_queued_per_project", cfg.MaxQueuedPerProject)
	}
	// One registry for the whole service, handed to each part through the interface it declares.
	var reg *metrics.Registry
	if cfg.Metrics {
		reg = metrics.New(metrics.Options{Queue: m.store, Log: m.Log})
	}
	// Rotations (kps-v3-api.md §8) advance whenever a task ends; their staged jobs run on the
	// same executor.
	rotations := &rotationLoop{}
	m.rotations = rotations
	executor := &sshhost.Executor{Logger: m.Log, AllowedTargets: targets, Metrics: sshMetrics(reg)}
	m.runner = tasks.New(taskEnds{m.store, rotations}, kpsservice.NewPlanner(m.store, sealer),
		sshhost.Staged{Executor: executor}, m.Log, tasks.Config{
			Workers: cfg.Workers, ReserveWorkers: reserve, Lease: cfg.Lease, TaskTimeout: cfg.TaskTimeout,
			// On a shared PostgreSQL other replicas may hold live leases: only expired ones are
			// failed at start, by the sweeper of any replica.
			SoleInstance: !cfg.postgres(), Metrics: taskMetrics(reg)})
	if err := m.runner.Start(ctx); err != nil {
		return fmt.Errorf("starting the task workers: %w", err)
	}

	scheme := "http"
	if useTLS, err := cfg.tlsFiles(); err != nil {
		return usageError{err}
	} else if useTLS {
		if m.cert, err = loadCertificate(cfg.TLSCert, cfg.TLSKey); err != nil {
			return err
		}
		scheme = "https"
	}
	m.listener, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	proxies, _ := api.ParseTrustedProxies(cfg.TrustedProxies) // validated above
	// Capped below TLS, so that a connection over the cap costs no handshake.
	m.listener = api.LimitConnections(m.listener, api.ConnectionLimits{Total: cfg.MaxConnections,
		PerClient: cfg.MaxConnectionsPerIP, TrustedProxies: proxies, TLS: m.cert != nil, Log: m.Log})
	if m.cert != nil {
		m.listener = tls.NewListener(m.listener, m.cert.tlsConfig())
	}
	if cfg.PublicURL == "" {
		cfg.PublicURL = scheme + "://" + m.listener.Addr().String()
	}
	ids.PublicURL = strings.TrimSuffix(cfg.PublicURL, "/")
	computeBase := strings.TrimSuffix(cfg.ComputeLinkPrefix, "/")
	if computeBase == "" {
		computeBase = ids.PublicURL + "/compute"
	}
	ids.ComputeURL = computeBase + "/v2.1"
	// The KPS side's rules (package service) and the HTTP API on them; every capability is
	// passed by name (the read paths included, docs/architecture.md).
	svc := kpsservice.New(m.store, sealer, m.runner, users, kpsservice.Config{KeyPairQuota: cfg.KeyPairQuota,
		KeyPairsPerUser: cfg.KeyPairUserQuota, MaxQueued: cfg.MaxQueued, MaxProjectTasks: cfg.MaxQueuedPerProject,
		ServerQuota: cfg.ServerQuota, AllowedTargets: targets})
	if err := m.startLoops(ctx, executor, reg); err != nil {
		return err
	}
	rotations.start(kpsservice.NewRotations(m.store, sealer, m.runner, kpsservice.Config{MaxQueued: cfg.MaxQueued,
		MaxProjectTasks: cfg.MaxQueuedPerProject}, m.Log))
	routerCfg := router.Config{PublicURL: cfg.PublicURL, ComputeLinkPrefix: computeBase, TrustedProxies: proxies,
		OpenAPI: docs.OpenAPI, AccessLog: cfg.AccessLog}
	if reg != nil && cfg.MetricsListen == "" {
		routerCfg.Metrics = reg.Handler()
	}
	handler := router.New(routerCfg, router.Deps{Identity: identity, Tokens: identity, Manager: manager,
		KeyPairs: svc, Tasks: svc, Servers: svc, Drift: m.drift, Rotations: rotations.svc, Reads: m.store, TaskLists: m.store, Ping: m.store.Ping,
		Metrics: apiMetrics(reg), Log: m.Log,
		Audit: m.store, AuditReader: svc})
	var access *slog.Logger // the access lines' (api.Edge), nil without --access-log
	if cfg.AccessLog {
		access = m.Log
	}
	if cfg.Console {
		pages := &api.Edge{Family: "console", Proxies: proxies, Metrics: apiMetrics(reg), Access: access}
		handler = console.Mount(handler, console.Config{Region: cfg.Region, PublicURL: cfg.PublicURL, Log: m.Log, Pages: pages.Handler})
	}
	if reg != nil && cfg.MetricsListen != "" {
		if m.metrics, err = serveMetrics(cfg.MetricsListen, reg.Handler(), m.Log, access); err != nil {
			return fmt.Errorf("--metrics-listen: %w", err)
		}
	}
	m.http = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: orDefault(cfg.ReadHeaderTimeout, 10*time.Second),
		ReadTimeout:       orDefault(cfg.ReadTimeout, 30*time.Second),
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(m.Log.Handler(), slog.LevelWarn),
	}
	m.served = make(chan error, 1)
	go func() { m.served <- m.http.Serve(m.listener) }()
	engine := "sqlite" // the URL is not logged: it may carry a password
	if cfg.postgres() {
		engine = "postgres"
	}
	m.Log.Info("kps serving", "listen", m.listener.Addr().String(), "tls", m.cert != nil, "data_dir", cfg.DataDir, "database", engine,
		"region", cfg.Region, "max_connections", cfg.MaxConnections, "max_connections_per_ip", cfg.MaxConnectionsPerIP,
		"metrics", metricsWhere(cfg, m.metrics), "access_log", cfg.AccessLog)
	if targets.Everything() {
		m.Log.Info("servers may point at any address and port; set --allowed-targets to keep members from probing the service's networks")
	} else {
		m.Log.Info("servers may point only at the allowed targets", "allowed_targets", targets.String())
	}
	if cfg.external() {
		m.Log.Info("external identity mode: tokens are validated by the identity service", "identity_url", cfg.IdentityURL,
			"cache_ttl", cfg.IdentityCacheTTL, "role_map", cfg.IdentityRoleMap, "default_role", cfg.IdentityDefaultRole)
	}
	// Secrets sealed under an older master key (a rotation while the service was down) move
	// to the newest one in the background.
	m.rewrap()
	return nil
}

// ReloadKeys re-reads the master key ring (on SIGHUP) and re-wraps every secret that is not
// under its newest version, while the service keeps serving (docs/keyring.md).
func (m *Main) ReloadKeys() error {
	if m.Config.MasterKey != "" {
		return fmt.Errorf("the master key comes from KPS_MASTER_KEY: restart with the new value to rotate")
	}
	ring, err := secrets.Load(m.Config.DataDir)
	if err != nil {
		return err
	}
	m.keys.Set(ring)
	m.Log.Info("master key ring reloaded", "versions", fmt.Sprint(ring.Versions()), "newest", ring.Newest())
	m.rewrap()
	return nil
}

// rewrap starts one background pass over the sealed secrets; Close waits for it.
func (m *Main) rewrap() {
	m.rewraps.Add(1)
	go func() {
		defer m.rewraps.Done()
		n, err := m.store.RewrapSecrets(context.Background(), func(sealed []byte) ([]byte, bool, error) {
			if !m.sealer.Stale(sealed) {
				return sealed, false, nil
			}
			out, err := m.sealer.Rewrap(sealed)
			return out, err == nil, err
		})
		if err != nil {
			m.Log.Error("re-wrapping secrets under the newest master key failed", "rewrapped", n, "err", err)
		} else if n > 0 {
			m.Log.Info("secrets re-wrapped under the newest master key", "count", n)
		}
	}()
}

// orDefault is d, or def when d is not positive.
func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Addr is the address the service listens on.
func (m *Main) Addr() string { return m.listener.Addr().String() }

// Close stops accepting requests, lets running tasks finish within the shutdown grace, and
// closes the database. Nothing is left RUNNING.
func (m *Main) Close() error {
	m.closeOnce.Do(func() { m.closeErr = m.close() })
	return m.closeErr
}

func (m *Main) close() error {
	var errs []error
	grace := m.Config.Shutdown
	if grace <= 0 {
		grace = 20 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if m.http != nil {
		errs = append(errs, m.http.Shutdown(ctx))
		if err := <-m.served; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	if m.rotations != nil {
		m.rotations.stop()
	}
	if m.stopLoops != nil {
		m.stopLoops()
		m.loops.Wait()
		m.drift.Stop()
	}
	if m.metrics != nil {
		errs = append(errs, m.metrics.close(ctx))
	}
	if m.runner != nil {
		m.runner.Stop(ctx)
	}
	m.rewraps.Wait()
	if m.stopAuditSweep != nil {
		m.stopAuditSweep()
		<-m.auditSweepEnded
	}
	if m.store != nil {
		errs = append(errs, m.store.Close())
	}
	if m.auditLog != nil {
		errs = append(errs, m.auditLog.close())
	}
	m.Log.Info("kps stopped")
	return errors.Join(errs...)
}

// keyRing loads the master key from KPS_MASTER_KEY or <data-dir>/master.key (created once).
func keyRing(cfg *Config) (*secrets.KeyRing, error) {
	if cfg.MasterKey != "" {
		return secrets.Parse(cfg.MasterKey)
	}
	ring, _, err := secrets.LoadOrCreate(cfg.DataDir)
	return ring, err
}

var (
	_ api.Identity          = (*iam.Service)(nil)
	_ api.Identity          = (*iam.External)(nil)
	_ keystone.Tokens       = (*iam.External)(nil)
	_ keystone.Manager      = (*iam.Service)(nil)
	_ kpsservice.Dispatcher = (*tasks.Runner)(nil)
	_ kps.Store             = (*store.DB)(nil)
)

// startLoops starts the expiry of bindings and, with --drift-interval, the scheduled drift
// checks (kps-v3-api.md §7). A sole instance first marks the drift checks a previous process
// left RUNNING as INTERRUPTED.
func (m *Main) startLoops(ctx context.Context, executor *sshhost.Executor, reg *metrics.Registry) error {
	cfg := &m.Config
	// A drift check's lease is the tasks' (--lease): a replica that dies leaves its checks
	// RUNNING for that long at most.
	m.drift = &kpsservice.Drift{Store: m.store, Sealer: m.sealer, Inspector: executor, Log: m.Log,
		Concurrency: cfg.Workers, Timeout: cfg.TaskTimeout, Lease: cfg.Lease}
	if reg != nil {
		m.drift.Observe = reg.DriftChecked
	}
	if !cfg.postgres() {
		if _, err := m.store.InterruptDriftChecks(ctx, true); err != nil {
			return fmt.Errorf("recovering drift checks: %w", err)
		}
	}
	loops, stop := context.WithCancel(context.Background())
	m.stopLoops = stop
	expirer := &kpsservice.Expirer{Store: m.store, Dispatcher: m.runner, Log: m.Log, Interval: cfg.ExpiryInterval}
	m.loops.Add(2)
	go func() {
		defer m.loops.Done()
		m.drift.Maintain(loops)
	}()
	go func() {
		defer m.loops.Done()
		expirer.Run(loops)
	}()
	if cfg.DriftInterval > 0 {
		m.loops.Add(1)
		go func() {
			defer m.loops.Done()
			m.drift.RunSchedule(loops, cfg.DriftInterval)
		}()
	}
	return nil
}
