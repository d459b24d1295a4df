package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openkps/kps/cli"
)

// The binary's command tree as a whole: help, usage errors, completion and docs/cli.md. The
// commands against a running service: package e2e.

var updateDocs = flag.Bool("update", false, "rewrite docs/cli.md from the command tree (TestCLIDocs)")

// terminal runs the binary's command tree in process with its own environment.
type terminal struct {
	t   *testing.T
	env map[string]string
}

// result is what one command did.
type result struct {
	code           int
	stdout, stderr string
}

// must runs a command that has to end with the exit code.
func (tm *terminal) must(code int, stdin string, args ...string) result {
	tm.t.Helper()
	var out, errOut bytes.Buffer
	con := console{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut, getenv: func(k string) string { return tm.env[k] }}
	r := result{run(context.Background(), args, con), out.String(), errOut.String()}
	if r.code != code {
		tm.t.Fatalf("kps %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	return r
}

func TestCLIHelpCompletionDocs(t *testing.T) {
	t.Parallel()
	tm := &terminal{t: t, env: map[string]string{}}
	// Every command answers --help once, on standard output, with exit 0 and its examples.
	paths := cli.CommandPaths(options)
	if len(paths) < 40 {
		t.Fatalf("only %d commands", len(paths))
	}
	for _, path := range paths {
		r := tm.must(0, "", append(append([]string{}, path[1:]...), "--help")...)
		if !strings.HasPrefix(r.stdout, "Usage: "+strings.Join(path, " ")) || strings.Count(r.stdout, "Usage: ") != 1 ||
			!strings.Contains(r.stdout, "Examples:\n  ") || r.stderr != "" {
			t.Errorf("%s --help:\nstdout: %s\nstderr: %s", strings.Join(path, " "), r.stdout, r.stderr)
		}
	}
	if r := tm.must(0, "", "help", "keypair", "bind"); !strings.HasPrefix(r.stdout, "Usage: kps keypair bind NAME") {
		t.Errorf("kps help keypair bind: %s", r.stdout)
	}
	// Usage errors: one line on standard error, nothing on standard output, exit 2.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"keypair"}, "needs a command"},
		{[]string{"keypair", "frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"keypair", "lsit"}, "did you mean list?"},
		{[]string{"kaypair", "list"}, "did you mean keypair?"},
		{[]string{"keypair", "list", "--no-such-flag"}, "unknown flag: --no-such-flag"},
		{[]string{"keypair", "bind", "web", "--server", "a"}, "did you mean --servers?"},
		{[]string{"keypair", "show"}, "give exactly one key pair name"},
		{[]string{"help", "frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"keypair", "list", "-o", "xml"}, "-o must be table, json or yaml"},
	} {
		r := tm.must(2, "", c.args...)
		if r.stdout != "" || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("kps %s:\nstdout: %q\nstderr: %q, want one line with %q", strings.Join(c.args, " "), r.stdout, r.stderr, c.want)
		}
	}

	for _, sh := range []string{"bash", "zsh", "fish", "powershell"} {
		if r := tm.must(0, "", "completion", sh); !strings.Contains(r.stdout, "__complete") {
			t.Errorf("%s completion script:\n%.300s", sh, r.stdout)
		}
	}
	tm.must(2, "", "completion", "tcsh")
	script := filepath.Join(t.TempDir(), "kps.bash")
	os.WriteFile(script, []byte(tm.must(0, "", "completion", "bash").stdout), 0o644)
	if out, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v %s", err, out)
	}
	// The words the scripts ask for: commands, flags, fixed values.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"__complete", "keypair", "priv"}, "private-key"},
		{[]string{"__complete", "keypair", "bind", "web", "--servers-"}, "--servers-from"},
		{[]string{"__complete", "keypair", "create", "web", "--type", ""}, "ed25519"},
		{[]string{"__complete", "-o", ""}, "yaml"},
	} {
		if r := tm.must(0, "", c.args...); !strings.Contains(r.stdout, c.want) {
			t.Errorf("kps %s: %q", strings.Join(c.args, " "), r.stdout)
		}
	}
}

// TestCLIDocs: docs/cli.md is the help of every command, generated from the tree.
func TestCLIDocs(t *testing.T) {
	t.Parallel()
	want := cli.Docs(options)
	path := filepath.Join("..", "..", "docs", "cli.md")
	if *updateDocs {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := os.ReadFile(path); err != nil || string(got) != want {
		t.Fatalf("docs/cli.md is out of date (%v): go test ./cmd/kps -run TestCLIDocs -update", err)
	}
	for _, path := range cli.CommandPaths(options) {
		if !strings.Contains(want, "`"+strings.Join(path, " ")+"`") {
			t.Errorf("docs/cli.md lacks %s", strings.Join(path, " "))
		}
	}
	for _, flag := range []string{"--listen", "--data-dir", "--tls-cert", "--keep-login-key", "--host-key-file", "--ask-auth-password"} {
		if !strings.Contains(want, flag) {
			t.Errorf("docs/cli.md lacks %s", flag)
		}
	}
}
