package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// Docs renders docs/cli.md from the command tree; a test keeps the file current. The serve
// node is shown with the flags of serve, given by the binary.
func Docs(opts Options) string {
	a := &app{con: Console{Getenv: func(string) string { return "" }}, opts: opts}
	root := a.tree()
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var b strings.Builder
	b.WriteString("# The `kps` command line\n\n")
	b.WriteString("Generated from the command tree (`go test ./cmd/kps -run TestCLIDocs -update`); do not edit.\n\n")
	b.WriteString("Exit codes: 0 success; 1 failure (an error of the service prints its KPS code and message);\n" +
		"2 usage error (one line on standard error: what is wrong and where the help is); 3 partial\n" +
		"failure of batch work (some items failed); 130 interrupted (Ctrl-C): tasks already submitted\n" +
		"go on in the service, and the message says how to follow them.\n\n" +
		"Global flags (`--profile`, `--endpoint`, `--project-id`, `-o`, `--timeout`) go before or after\n" +
		"the command. Environment variables are read for the connection, the profile, the output and\n" +
		"secrets only: `KPS_ENDPOINT`, `KPS_PROFILE`, `KPS_PROJECT_ID`, `KPS_OUTPUT`, `KPS_ACCESS_KEY` and\n" +
		"`KPS_SECRET_KEY` (they override a profile's credentials), `KPS_PASSWORD` (read by `kps login`),\n" +
		"`KPS_CONFIG_DIR` (where profiles live); and by `kps serve`, its own settings (`KPS_DATA_DIR`, …).\n" +
		"No other flag reads the environment.\n\n" +
		"Completion: `source <(kps completion bash)` (or zsh, fish, powershell) completes commands, flags,\n" +
		"and the names of key pairs, servers, tasks and profiles, asked of the service in use.\n\n")
	var walk func(c *cobra.Command, depth int)
	walk = func(c *cobra.Command, depth int) {
		if c.Hidden || c.Name() == "help" && c.Parent() != nil {
			return
		}
		fmt.Fprintf(&b, "%s `%s`\n\n```\n%s```\n\n", strings.Repeat("#", min(depth+1, 4)), c.CommandPath(), helpText(c, false))
		for _, s := range c.Commands() {
			walk(s, depth+1)
		}
	}
	walk(root, 1)
	return b.String()
}

// CommandPaths lists every command of the tree ("kps", "keypair", "bind"), help excluded.
func CommandPaths(opts Options) [][]string {
	a := &app{con: Console{Getenv: func(string) string { return "" }}, opts: opts}
	var out [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		if c.Hidden || c.Name() == "help" && c.Parent() != nil {
			return
		}
		out = append(out, path)
		for _, s := range c.Commands() {
			walk(s, append(append([]string{}, path...), s.Name()))
		}
	}
	walk(a.tree(), []string{"kps"})
	return out
}
