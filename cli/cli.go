// Package cli is the `kps` command line: one command tree (github.com/spf13/cobra) for the
// whole binary — the service (`kps serve`, whose wiring the binary plugs in), its key ring,
// the client commands and the administration — with one set of profiles, global flags and
// output formats. docs/cli.md is generated from the tree.
//
// It talks to the service only through package client, reads Ansible inventories through
// cli/inventory, and may import the domain, sshkey (key formats) and secrets (the key ring);
// it never imports the service's implementation (api, store, tasks, sshhost, iam).
//
// Exit codes: 0 success; 1 failure; 2 usage error (one line on standard error); 3 partial
// failure of batch work; 130 interrupted (Ctrl-C), the service's tasks going on.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/openkps/kps/client"
)

// Console is what a command talks to: the standard streams and the environment.
type Console struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// Serve is how the binary plugs `kps serve` into the tree: the service's wiring lives with the
// binary, which this package does not import. Flags are serve's own (standard library) flags;
// Run starts the service once they are parsed, given which of them the command line set (the
// others may come from the environment, which is serve's business).
type Serve struct {
	Flags *flag.FlagSet
	Run   func(ctx context.Context, con Console, given func(flag string) bool) error
}

// Options are what the binary gives the tree.
type Options struct {
	// Serve returns a fresh `kps serve` (nil: the binary has no service).
	Serve func() Serve
	// Transport carries the client commands' requests; nil means Go's default. The end-to-end
	// tests check every answer against docs/openapi.json with it.
	Transport http.RoundTripper
}

// UsageError is a command line that cannot be run as given: exit code 2, one line. Any
// error with a UsageError() method is one, so that the binary's own errors can be.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// UsageError marks the error as a usage error.
func (UsageError) UsageError() {}

// usage is what marks a usage error.
type usage interface{ UsageError() }

func usagef(format string, args ...any) error { return UsageError{fmt.Errorf(format, args...)} }

// partialError is the failure of part of a batch: exit code 3.
type partialError struct{ error }

// interruptedError is a wait cut short by Ctrl-C: exit code 130. Its message says what goes
// on in the service and how to follow it.
type interruptedError struct{ msg string }

func (e interruptedError) Error() string { return e.msg }

// Exit codes.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitPartial     = 3
	exitInterrupted = 130
)

// Run runs one command line and returns the process exit code.
func Run(ctx context.Context, args []string, con Console, opts Options) int {
	if args == nil {
		args = []string{} // nil would make cobra read os.Args
	}
	a := &app{con: con, opts: opts}
	root := a.tree()
	root.SetArgs(args)
	root.SetIn(con.Stdin)
	root.SetOut(con.Stdout)
	root.SetErr(con.Stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	return a.report(cmd, err)
}

// report prints err on standard error, in the command line's words, and returns its exit code.
func (a *app) report(cmd *cobra.Command, err error) int {
	msg := inWords(err.Error())
	var ue usage
	var pe partialError
	var ie interruptedError
	switch {
	case errors.As(err, &ue):
		path := "kps"
		if cmd != nil {
			path = cmd.CommandPath()
		}
		// One line: the help is one --help away, not forty lines of it on every typo.
		fmt.Fprintf(a.con.Stderr, "kps: %s (%s --help)\n", msg, path)
		return exitUsage
	case errors.As(err, &ie):
		fmt.Fprintln(a.con.Stderr, "kps:", msg)
		return exitInterrupted
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(a.con.Stderr, "kps: interrupted")
		return exitInterrupted
	case errors.As(err, &pe):
		fmt.Fprintln(a.con.Stderr, "kps:", msg)
		return exitPartial
	}
	if code := client.Code(err); code == "KPS.6101" || code == "KPS.6102" {
		msg += fmt.Sprintf(" (log in again: kps login --profile %s)", a.profileName())
	}
	fmt.Fprintln(a.con.Stderr, "kps:", msg)
	return exitFailure
}

// app is one run of the tree: the console, the global flags and what the binary plugged in.
type app struct {
	con  Console
	opts Options

	global    *pflag.FlagSet
	profile   string
	endpoint  string
	projectID string
	output    string
	timeout   time.Duration
}

// Global flags and the environment variables that may set them. Only connection, profile,
// output and secrets come from the environment (as for gh, hcloud and openstack): a variable
// named after every flag let KPS_USER of a login shell or a Kubernetes service named kps
// (KPS_PORT=tcp://…) change commands silently.
const (
	envProfile   = "KPS_PROFILE"
	envEndpoint  = "KPS_ENDPOINT"
	envProjectID = "KPS_PROJECT_ID"
	envOutput    = "KPS_OUTPUT"
	envAccessKey = "KPS_ACCESS_KEY"
	envSecretKey = "KPS_SECRET_KEY"
	envPassword  = "KPS_PASSWORD"
	envConfigDir = "KPS_CONFIG_DIR"
)

// fromEnv is the value of a global flag: the command line, else its variable, else def.
func (a *app) fromEnv(flag, env, def string) string {
	if f := a.global.Lookup(flag); f != nil && f.Changed {
		return f.Value.String()
	}
	if v := a.con.Getenv(env); v != "" {
		return v
	}
	return def
}

func (a *app) profileName() string { return a.fromEnv("profile", envProfile, "default") }
func (a *app) outputFormat() string {
	return a.fromEnv("output", envOutput, "table")
}

// checkGlobal validates the global flags before a command runs.
func (a *app) checkGlobal() error {
	switch o := a.outputFormat(); o {
	case "table", "json", "yaml":
	default:
		src := "-o"
		if f := a.global.Lookup("output"); f == nil || !f.Changed {
			src = envOutput
		}
		return usagef("%s must be table, json or yaml, not %q", src, o)
	}
	if !profileNameRE.MatchString(a.profileName()) {
		return usagef("invalid profile name %q: letters, digits, '.', '_' and '-' only", a.profileName())
	}
	if a.timeout <= 0 {
		return usagef("--timeout must be positive")
	}
	return nil
}

// tree builds the whole command tree.
func (a *app) tree() *cobra.Command {
	root := &cobra.Command{
		Use:   "kps",
		Short: "OpenKPS: SSH key pairs for a fleet of Linux servers",
		Long: "One binary: `kps serve` runs the service; the other commands talk to a running service\n" +
			"with the profile `kps login` saves (or KPS_ENDPOINT, KPS_PROJECT_ID, KPS_ACCESS_KEY and\n" +
			"KPS_SECRET_KEY). Global flags go before or after the command.",
		Example: "kps serve\n" +
			"kps login --user admin --password-file kps-data/admin-password\n" +
			"kps -o json keypair list",
		Args:          cobra.ArbitraryArgs,
		RunE:          a.group,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version().String(),
	}
	a.global = root.PersistentFlags()
	a.global.StringVar(&a.profile, "profile", "default", "`name` of the profile to use ("+envProfile+")")
	a.global.StringVar(&a.endpoint, "endpoint", "", "service `URL`, e.g. http://127.0.0.1:9800 (default: the profile's; "+envEndpoint+")")
	a.global.StringVar(&a.projectID, "project-id", "", "project `ID` (default: the profile's; "+envProjectID+")")
	a.global.StringVarP(&a.output, "output", "o", "table", "output `format`: table, json or yaml ("+envOutput+")")
	a.global.DurationVar(&a.timeout, "timeout", client.DefaultTimeout, "deadline of each request to the service")
	root.RegisterFlagCompletionFunc("profile", a.completeProfiles)
	root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return flagError(c, err) })
	root.SetHelpFunc(a.help)
	root.SetHelpCommand(a.helpCommand())
	root.SetVersionTemplate("{{.Version}}\n")

	root.AddGroup(&cobra.Group{ID: "client", Title: "Key pairs, servers and tasks:"},
		&cobra.Group{ID: "service", Title: "The service:"},
		&cobra.Group{ID: "setup", Title: "Profiles and the shell:"})
	add := func(group string, cmds ...*cobra.Command) {
		for _, c := range cmds {
			c.GroupID = group
			root.AddCommand(c)
		}
	}
	add("client", a.keypairCommand(), a.serverCommand(), a.taskCommand(), a.auditCommand(), a.driftCommand())
	add("service", a.adminCommand(), a.keyringCommand())
	if a.opts.Serve != nil {
		add("service", a.serveCommand())
	}
	add("setup", a.loginCommand(), a.configureCommand(), a.profileCommand(), a.completionCommand(), a.versionCommand())
	finish(root)
	return root
}

// finish gives every command of the tree the house rules: groups refuse to run without a
// subcommand (cobra would print their help and exit 0), and leaves check the global flags.
func finish(c *cobra.Command) {
	for _, sub := range c.Commands() {
		finish(sub)
	}
	c.DisableFlagsInUseLine = true
	c.SuggestionsMinimumDistance = 2
	c.InitDefaultHelpFlag()
	c.Flags().Lookup("help").Usage = "show this help"
	if c.HasSubCommands() && c.RunE == nil && c.Run == nil {
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(cmd *cobra.Command, args []string) error { return groupError(cmd, args) }
	}
}

// group is the root's RunE: it names the mistyped command.
func (a *app) group(cmd *cobra.Command, args []string) error { return groupError(cmd, args) }

func groupError(cmd *cobra.Command, args []string) error {
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	if len(args) == 0 {
		return usagef("%s needs a command: %s", cmd.CommandPath(), strings.Join(names, ", "))
	}
	msg := fmt.Sprintf("unknown command %q for %s", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		return usagef("%s; did you mean %s?", msg, strings.Join(s, " or "))
	}
	return usagef("%s; the commands are %s", msg, strings.Join(names, ", "))
}

// flagError makes a flag error a one-line usage error, with a suggestion for a mistyped name.
func flagError(c *cobra.Command, err error) error {
	msg := err.Error()
	const unknown = "unknown flag: --"
	if i := strings.Index(msg, unknown); i >= 0 {
		name := msg[i+len(unknown):]
		if s := suggestFlag(c, name); s != "" {
			msg += fmt.Sprintf("; did you mean --%s?", s)
		}
	}
	return UsageError{errors.New(msg)}
}

// suggestFlag is the flag of c whose name is closest to name (at most two edits), else the
// one it begins, "" when none is close.
func suggestFlag(c *cobra.Command, name string) string {
	best, bestD, prefixed := "", 3, ""
	visit := func(f *pflag.Flag) {
		if d := distance(name, f.Name); d < bestD {
			best, bestD = f.Name, d
		}
		if len(name) >= 3 && strings.HasPrefix(f.Name, name) && prefixed == "" {
			prefixed = f.Name
		}
	}
	c.Flags().VisitAll(visit)
	c.InheritedFlags().VisitAll(visit)
	return firstOf(best, prefixed)
}

// distance is the Levenshtein distance of a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// leaf wraps the RunE of a command that does work: the global flags are checked first.
func (a *app) leaf(run func(ctx context.Context, cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := a.checkGlobal(); err != nil {
			return err
		}
		return run(cmd.Context(), cmd, args)
	}
}

// withClient is leaf for a command that calls the service: run gets the client of the selected
// profile.
func (a *app) withClient(run func(ctx context.Context, cmd *cobra.Command, args []string, cl *client.Client) error) func(*cobra.Command, []string) error {
	return a.leaf(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		cl, err := a.client()
		if err != nil {
			return err
		}
		return run(ctx, cmd, args, cl)
	})
}

// exactArgs accepts exactly n positional arguments, named what in the error.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			if n == 1 {
				return usagef("give exactly one %s", what)
			}
			return usagef("give %d arguments: %s", n, what)
		}
		for _, a := range args {
			if a == "" {
				return usagef("the %s must not be empty", what)
			}
		}
		return nil
	}
}

// minArgs accepts at least n positional arguments.
func minArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return usagef("give at least %d %s", n, what)
		}
		return nil
	}
}

// noArgs refuses positional arguments.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q: %s takes none", args[0], cmd.CommandPath())
	}
	return nil
}

// isTerminal reports whether a stream is a terminal.
func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	return ok && termIsTerminal(f)
}
