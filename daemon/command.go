package daemon

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// usageError is a setting that cannot be used as given: the command line exits 2 with its
// message (package cli takes any error with a UsageError method for one).
type usageError struct{ error }

// UsageError marks the error as a usage error for the command line.
func (usageError) UsageError() {}

func (e usageError) Unwrap() error { return e.error }

// Command is `kps serve` as a command tree runs it: the tree parses Flags, which set a Config
// of the Command's own, then calls Run.
type Command struct {
	// Flags are serve's flags; Run also reads each from its KPS_* variable.
	Flags *flag.FlagSet
	cfg   Config
}

// NewCommand returns `kps serve` with every flag at its default.
func NewCommand() *Command {
	c := &Command{}
	c.Flags = c.cfg.flags()
	return c
}

// Run sets every flag the command line did not give (given reports which it did) from its
// KPS_* variable, then serves until ctx ends (SIGINT/SIGTERM) and stops gracefully; SIGHUP
// reloads the master key ring and the TLS certificate. The service's stdout and log go to
// stdout and stderr; getenv is the process environment.
func (c *Command) Run(ctx context.Context, stdout, stderr io.Writer, getenv func(string) string, given func(flag string) bool) error {
	if err := applyEnv(c.Flags, given, getenv); err != nil {
		return usageError{err}
	}
	return serve(ctx, &c.cfg, stdout, stderr, getenv)
}

// serve runs the service until ctx ends, then stops gracefully; SIGHUP reloads the master key
// ring and the TLS certificate.
func serve(ctx context.Context, cfg *Config, stdout, stderr io.Writer, getenv func(string) string) error {
	cfg.AdminPassword = getenv("KPS_ADMIN_PASSWORD")
	cfg.MasterKey = getenv("KPS_MASTER_KEY")
	m := NewMain(*cfg, stdout, stderr)
	// Read once, for the bootstrap: nothing started later, nor a look at the process, may find
	// it in the environment (docs/SECURITY.md 6.7).
	if err := forgetSecretEnv("KPS_ADMIN_PASSWORD"); err != nil {
		m.Log.Warn("KPS_ADMIN_PASSWORD is unset but may still show in /proc/<pid>/environ", "err", err)
	}
	limit, source, err := applyMemoryLimit(cfg.MemoryLimit, getenv)
	if err != nil {
		return usageError{fmt.Errorf("--memory-limit: %w", err)}
	}
	m.Log.Info("soft memory limit", "bytes", limit, "source", source)
	if err := m.Run(ctx); err != nil {
		m.Close()
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return m.Close()
		case <-hup:
			if err := m.ReloadKeys(); err != nil {
				m.Log.Error("reloading the master key ring failed; the old one stays in force", "err", err)
			}
			if err := m.ReloadTLS(); err != nil {
				m.Log.Error("reloading the TLS certificate failed; the old one stays in force", "err", err)
			}
		}
	}
}
