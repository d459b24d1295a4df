package main

import (
	"context"
	"io"

	"github.com/openkps/kps/cli"
	"github.com/openkps/kps/daemon"
)

// console is what a command talks to: the standard streams and the environment.
type console struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

// run runs one command line of the binary and returns the process exit code (cli.Run).
func run(ctx context.Context, args []string, con console) int {
	return cli.Run(ctx, args, cli.Console{Stdin: con.stdin, Stdout: con.stdout, Stderr: con.stderr, Getenv: con.getenv}, options)
}

// options plug `kps serve` into the command tree.
var options = cli.Options{Serve: serveCommand}

// serveCommand is `kps serve` (package daemon) as a node of the tree: daemon's flags, each also
// read from its KPS_* variable.
func serveCommand() cli.Serve {
	c := daemon.NewCommand()
	return cli.Serve{Flags: c.Flags, Run: func(ctx context.Context, con cli.Console, given func(string) bool) error {
		return c.Run(ctx, con.Stdout, con.Stderr, con.Getenv, given)
	}}
}
