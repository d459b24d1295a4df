// Command kps is OpenKPS: a self-hostable SSH Key Pair Service that speaks Huawei Cloud's KPS v3
// API. The command tree is package cli; this package adds `kps serve`, the only place that
// knows every implementation (serve.go).
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
