// Command kps is OpenKPS: a self-hostable SSH Key Pair Service that speaks Huawei Cloud's KPS v3
// API. The command tree is package cli; this package plugs `kps serve` into it, whose wiring is
// package daemon, the only package that knows every implementation (commands.go).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], console{os.Stdin, os.Stdout, os.Stderr, os.Getenv}))
}
