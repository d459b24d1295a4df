package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/openkps/kps/cli"
)

// console is what a command talks to: the standard streams and the environment.
type console struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

// usageError is a command line that cannot be run as given: exit code 2 (cli.UsageError).
type usageError struct{ error }

// UsageError marks the error for cli.Run.
func (usageError) UsageError() {}

func (e usageError) Unwrap() error { return e.error }

// run runs one command line of the binary and returns the process exit code (cli.Run).
func run(ctx context.Context, args []string, con console) int {
	return cli.Run(ctx, args, cli.Console{Stdin: con.stdin, Stdout: con.stdout, Stderr: con.stderr, Getenv: con.getenv}, options)
}

// options plug `kps serve` into the command tree.
var options = cli.Options{Serve: serveCommand}

// serveCommand is `kps serve`: the flags of Config, each also read from its KPS_* variable.
func serveCommand() cli.Serve {
	var cfg Config
	fs := cfg.flags()
	return cli.Serve{Flags: fs, Run: func(ctx context.Context, con cli.Console, given func(string) bool) error {
		if err := applyEnv(fs, given, con.Getenv); err != nil {
			return usageError{err}
		}
		return serve(ctx, &cfg, con)
	}}
}

// serve runs the service until ctx ends (SIGINT/SIGTERM), then stops gracefully; SIGHUP
// reloads the master key ring and the TLS certificate.
func serve(ctx context.Context, cfg *Config, con cli.Console) error {
	cfg.AdminPassword = con.Getenv("KPS_ADMIN_PASSWORD")
	cfg.MasterKey = con.Getenv("KPS_MASTER_KEY")
	m := NewMain(*cfg, con.Stdout, con.Stderr)
	// Read once, for the bootstrap: nothing started later, nor a look at the process, may find
	// it in the environment (docs/SECURITY.md 6.7).
	if err := forgetSecretEnv("KPS_ADMIN_PASSWORD"); err != nil {
		m.Log.Warn("KPS_ADMIN_PASSWORD is unset but may still show in /proc/<pid>/environ", "err", err)
	}
	limit, source, err := applyMemoryLimit(cfg.MemoryLimit, con.Getenv)
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
