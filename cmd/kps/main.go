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
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// run dispatches a subcommand and returns the process exit code: 0 success, 1 failure,
// 2 usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: kps <command> [flags]\n\ncommands:\n  serve    run the service (kps serve --help)")
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], stdout, stderr, getenv)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, "usage: kps <command> [flags]\n\ncommands:\n  serve    run the service (kps serve --help)")
		return 0
	default:
		fmt.Fprintf(stderr, "kps: unknown command %q\n", args[0])
		return 2
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintln(stderr, "kps:", err)
		return 2
	case err != nil:
		fmt.Fprintln(stderr, "kps:", err)
		return 1
	}
	return 0
}

type usageError struct{ error }

// serve runs the service until ctx ends (SIGINT/SIGTERM), then stops gracefully.
func serve(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
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
	if err := m.Run(ctx); err != nil {
		m.Close()
		return err
	}
	<-ctx.Done()
	return m.Close()
}
