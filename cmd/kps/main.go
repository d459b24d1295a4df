// Command kps is OpenKPS: a self-hostable SSH Key Pair Service that speaks Huawei Cloud's KPS v3
// API. `kps serve` runs the service; it is the only place that knows every implementation.
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
	"syscall"

	"github.com/openkps/kps/secrets"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], console{os.Stdin, os.Stdout, os.Stderr, os.Getenv}))
}

// console is what a command talks to: the standard streams and the environment.
type console struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

const usage = `usage: kps <command> [flags]

commands:
  serve    run the service (kps serve --help)
  keyring  add a master key version (kps keyring add --help)
  admin    manage domains, projects, users, roles and access keys of a running service (kps admin help)

client commands (kps <command> --help; docs/cli.md):
  login       log in and remember the session in a profile
  configure   store an access key (AK/SK) profile
  keypair     create, import, list, bind and manage SSH key pairs
  task        show, list, retry and delete tasks
  server      the inventory of servers the service manages
  completion  shell completion for bash, zsh or fish`

// run dispatches a subcommand and returns the process exit code: 0 success, 1 failure (an API
// error prints its KPS code and message), 2 usage error, 3 partial failure of batch work.
func run(ctx context.Context, args []string, con console) int {
	stderr := con.stderr
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], con)
	case "keyring":
		err = keyring(args[1:], con)
	case "admin":
		err = admin(ctx, args[1:], con)
	case "help", "-h", "--help":
		fmt.Fprintln(con.stdout, usage)
		return 0
	default:
		if cmd := cliCommandNamed(args[0]); cmd != nil {
			err = runCLI(ctx, cmd, args[1:], con)
			break
		}
		fmt.Fprintf(stderr, "kps: unknown command %q\n", args[0])
		return 2
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintln(stderr, "kps:", err)
		return 2
	case errors.As(err, new(partialError)):
		fmt.Fprintln(stderr, "kps:", err)
		return 3
	case err != nil:
		fmt.Fprintln(stderr, "kps:", err)
		return 1
	}
	return 0
}

type usageError struct{ error }

// serve runs the service until ctx ends (SIGINT/SIGTERM), then stops gracefully.
func serve(ctx context.Context, args []string, con console) error {
	stdout, stderr, getenv := con.stdout, con.stderr, con.getenv
	var cfg Config
	fs := cfg.flags()
	fs.SetOutput(stderr)
	fs.Usage = usageWithEnv(fs, "kps serve [flags]")
	if err := parseWithEnv(fs, args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	cfg.AdminPassword = getenv("KPS_ADMIN_PASSWORD")
	cfg.MasterKey = getenv("KPS_MASTER_KEY")
	m := NewMain(cfg, stdout, stderr)
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

// keyring manages the master key ring of a data directory (docs/keyring.md).
func keyring(args []string, con console) error {
	stdout, stderr, getenv := con.stdout, con.stderr, con.getenv
	if len(args) == 0 || args[0] != "add" {
		return usageError{fmt.Errorf("usage: kps keyring add [--data-dir DIR]")}
	}
	fs := flag.NewFlagSet("keyring add", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "./kps-data", "data directory holding master.key")
	fs.Usage = usageWithEnv(fs, "kps keyring add [flags]")
	if err := parseWithEnv(fs, args[1:], getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	v, err := secrets.AddVersion(*dataDir)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "kps: master key v%d added to %s.\nSend SIGHUP to the running service (or restart it): new secrets use v%d and existing ones are re-wrapped in the background.\n", v, filepath.Join(*dataDir, secrets.MasterKeyFile), v)
	return nil
}
