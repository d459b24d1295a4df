package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"
	"gopkg.in/yaml.v3"

	"github.com/openkps/kps/api"
)

// The client commands (`kps login`, `kps keypair …`, `kps task …`, `kps server …`) form one
// tree of cliCommand values. The tree is data so that help, shell completion and docs/cli.md
// are all generated from it. The standard flag package is enough: each leaf gets its own
// FlagSet, and flags may come before or after the positional arguments.

// cliCommand is one node of the command tree: a group (subs) or a leaf (setup).
type cliCommand struct {
	name     string
	args     string // synopsis of the positional arguments
	short    string
	long     string
	examples []string
	subs     []*cliCommand
	// setup defines the leaf's own flags on fs and returns what runs it with the positional
	// arguments.
	setup func(fs *flag.FlagSet, c *cliContext) func(ctx context.Context, args []string) error
}

// cliContext is what every leaf shares: the console, the connection and the output format.
type cliContext struct {
	con       console
	profile   string
	endpoint  string
	projectID string
	output    string
}

// partialError is the failure of part of a batch: exit code 3.
type partialError struct{ error }

// commonFlags are on every leaf.
func (c *cliContext) commonFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.profile, "profile", "default", "profile to use (a file under the config directory)")
	fs.StringVar(&c.endpoint, "endpoint", "", "service URL (default: the profile's)")
	fs.StringVar(&c.projectID, "project-id", "", "project ID (default: the profile's)")
	fs.StringVar(&c.output, "output", "table", "output format: table, json or yaml")
	fs.StringVar(&c.output, "o", "table", "short for --output")
}

// runCLI walks the tree down args and runs the leaf it reaches.
func runCLI(ctx context.Context, root *cliCommand, args []string, con console) error {
	node, path := root, []string{"kps", root.name}
	for node.setup == nil {
		if len(args) == 0 {
			return usageError{fmt.Errorf("%s needs a subcommand\n\n%s", strings.Join(path, " "), helpText(node, path))}
		}
		if isHelp(args[0]) {
			fmt.Fprint(con.stdout, helpText(node, path))
			return nil
		}
		var next *cliCommand
		for _, s := range node.subs {
			if s.name == args[0] {
				next = s
			}
		}
		if next == nil {
			return usageError{fmt.Errorf("unknown command %q\n\n%s", strings.Join(append(path, args[0]), " "), helpText(node, path))}
		}
		node, path, args = next, append(path, next.name), args[1:]
	}
	c := &cliContext{con: con}
	fs := flag.NewFlagSet(strings.Join(path, " "), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	runLeaf := node.setup(fs, c)
	c.commonFlags(fs)
	fs.Usage = func() { fmt.Fprint(con.stdout, helpText(node, path)) }
	if err := parseWithEnv(fs, flagsFirst(fs, args), con.getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.Usage()
			return err
		}
		return usageError{fmt.Errorf("%v\n\n%s", err, helpText(node, path))}
	}
	switch c.output {
	case "table", "json", "yaml":
	default:
		return usageError{fmt.Errorf("--output must be table, json or yaml, not %q", c.output)}
	}
	err := runLeaf(ctx, fs.Args())
	if code := kpsCode(err); code == "KPS.6101" || code == "KPS.6102" {
		return fmt.Errorf("%w (log in again: `kps login --profile %s`)", err, c.profile)
	}
	return err
}

func isHelp(a string) bool { return a == "help" || a == "-h" || a == "--help" || a == "-help" }

// flagsFirst moves the flags of args before the positional arguments, so that
// `kps keypair show NAME -o json` parses like `kps keypair show -o json NAME`.
func flagsFirst(fs *flag.FlagSet, args []string) []string {
	var flags, positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			positional = append(positional, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			positional = append(positional, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		if i+1 < len(args) {
			flags = append(flags, args[i+1])
			i++
		}
	}
	return append(append(flags, "--"), positional...)
}

// helpText is the --help of a node: synopsis, description, subcommands or flags, examples.
func helpText(node *cliCommand, path []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: %s", strings.Join(path, " "))
	if node.setup == nil {
		b.WriteString(" <command>")
	} else {
		b.WriteString(" [flags]")
		if node.args != "" {
			b.WriteString(" " + node.args)
		}
	}
	fmt.Fprintf(&b, "\n\n%s\n", node.short)
	if node.long != "" {
		fmt.Fprintf(&b, "\n%s\n", node.long)
	}
	if node.setup == nil {
		b.WriteString("\nCommands:\n")
		w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		for _, s := range node.subs {
			fmt.Fprintf(w, "  %s\t%s\n", s.name, s.short)
		}
		w.Flush()
	} else {
		b.WriteString("\nFlags (each also read from its KPS_* environment variable):\n")
		for _, f := range leafFlags(node) {
			fmt.Fprintf(&b, "  --%s (%s)\n    \t%s", f.Name, envName(f.Name), f.Usage)
			if f.DefValue != "" && f.DefValue != "false" {
				fmt.Fprintf(&b, " (default %q)", f.DefValue)
			}
			b.WriteString("\n")
		}
	}
	if len(node.examples) > 0 {
		b.WriteString("\nExamples:\n")
		for _, e := range node.examples {
			fmt.Fprintf(&b, "  %s\n", e)
		}
	}
	return b.String()
}

// leafFlags lists a leaf's flags, its own first, then the common ones.
func leafFlags(node *cliCommand) []*flag.Flag {
	c := &cliContext{}
	own := flag.NewFlagSet("", flag.ContinueOnError)
	node.setup(own, c)
	common := flag.NewFlagSet("", flag.ContinueOnError)
	c.commonFlags(common)
	var out []*flag.Flag
	own.VisitAll(func(f *flag.Flag) { out = append(out, f) })
	common.VisitAll(func(f *flag.Flag) {
		if f.Name != "o" {
			out = append(out, f)
		}
	})
	return out
}

// client builds the API client from the profile, the flags and the environment
// (KPS_ACCESS_KEY and KPS_SECRET_KEY override the profile's credentials).
func (c *cliContext) client() (*api.Client, string, error) {
	p, err := loadProfile(c.con.getenv, c.profile)
	if err != nil {
		return nil, "", err
	}
	if c.endpoint != "" {
		p.Endpoint = c.endpoint
	}
	if c.projectID != "" {
		p.ProjectID = c.projectID
	}
	if ak := c.con.getenv("KPS_ACCESS_KEY"); ak != "" {
		p.AccessKey, p.SecretKey, p.Token = ak, c.con.getenv("KPS_SECRET_KEY"), ""
	}
	if p.Endpoint == "" || p.ProjectID == "" || (p.Token == "" && p.AccessKey == "") {
		return nil, "", usageError{fmt.Errorf("not logged in: run `kps login --profile %s` (or set KPS_ENDPOINT, KPS_PROJECT_ID, KPS_ACCESS_KEY and KPS_SECRET_KEY)", c.profile)}
	}
	cl := &api.Client{BaseURL: strings.TrimSuffix(p.Endpoint, "/"), Token: p.Token, AccessKey: p.AccessKey, SecretKey: p.SecretKey}
	return cl, "/v3/" + p.ProjectID, nil
}

// emit writes v as JSON or YAML, or calls table for the readable form.
// showResource is a show command: GET the one named resource and print its member (e.g.
// "keypair") as a detail table, or as JSON/YAML.
func (c *cliContext) showResource(what, member string, path func(base, id string) string) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		id, err := exactlyOne(args, what)
		if err != nil {
			return err
		}
		cl, base, err := c.client()
		if err != nil {
			return err
		}
		var resp map[string]map[string]any
		if err := cl.Do(ctx, "GET", path(base, id), nil, &resp); err != nil {
			return err
		}
		obj := resp[member]
		return c.emit(obj, func(w io.Writer) { detailTable(w, obj) })
	}
}

func (c *cliContext) emit(v any, table func(w io.Writer)) error {
	out := c.con.stdout
	switch c.output {
	case "json":
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(out, string(b))
		return err
	case "yaml":
		b, err := yaml.Marshal(yamlValue(v))
		if err != nil {
			return err
		}
		_, err = out.Write(b)
		return err
	}
	table(out)
	return nil
}

// yamlValue turns a decoded JSON value into one YAML prints well: whole numbers as integers
// (JSON decodes them as float64, which YAML would print as 1.7e+12).
func yamlValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = yamlValue(e)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = yamlValue(e)
		}
		return l
	case []map[string]any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = yamlValue(e)
		}
		return l
	case float64:
		if x == float64(int64(x)) {
			return int64(x)
		}
		return x
	case string, bool, nil:
		return x
	}
	// Structs and typed slices: through JSON, so YAML uses the same member names.
	var generic any
	if b, err := json.Marshal(v); err == nil && json.Unmarshal(b, &generic) == nil {
		return yamlValue(generic)
	}
	return v
}

// cell renders one value for a table: times as UTC, whole numbers without exponent.
func cell(key string, v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case float64:
		if strings.HasSuffix(key, "_time") && x > 1e11 {
			return time.UnixMilli(int64(x)).UTC().Format(time.RFC3339)
		}
		return strconv.FormatFloat(x, 'f', -1, 64)
	case string:
		if strings.HasSuffix(key, "_time") {
			if n, err := strconv.ParseInt(x, 10, 64); err == nil && n > 1e11 {
				return time.UnixMilli(n).UTC().Format(time.RFC3339)
			}
		}
		return x
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = cell("", e)
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(v)
}

// listTable prints items as columns named by their JSON keys.
func listTable(w io.Writer, items []map[string]any, cols ...string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := make([]string, len(cols))
	for i, c := range cols {
		head[i] = strings.ToUpper(c)
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, it := range items {
		row := make([]string, len(cols))
		for i, c := range cols {
			row[i] = cell(c, it[c])
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
}

// detailTable prints one object as KEY: VALUE lines in key order.
func detailTable(w io.Writer, item map[string]any) {
	keys := make([]string, 0, len(item))
	for k := range item {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, k := range keys {
		fmt.Fprintf(tw, "%s:\t%s\n", k, cell(k, item[k]))
	}
	tw.Flush()
}

// isTerminal reports whether a stream of the console is a terminal.
func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// readSecret reads a secret: from standard input when fromStdin, else from the environment
// variable env, else from a prompt without echo when standard input is a terminal.
func readSecret(con console, fromStdin bool, env, prompt string) (string, error) {
	if fromStdin {
		b, err := io.ReadAll(io.LimitReader(con.stdin, 64<<10))
		if err != nil {
			return "", err
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	if env != "" {
		if v := con.getenv(env); v != "" {
			return v, nil
		}
	}
	if f, ok := con.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(con.stderr, prompt)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(con.stderr)
		return string(b), err
	}
	return "", usageError{fmt.Errorf("no terminal to prompt on: give the secret on standard input (--…-stdin)%s", map[bool]string{true: " or in " + env, false: ""}[env != ""])}
}

// exactlyOne checks the number of positional arguments.
func exactlyOne(args []string, what string) (string, error) {
	if len(args) != 1 || args[0] == "" {
		return "", usageError{fmt.Errorf("give exactly one %s", what)}
	}
	return args[0], nil
}

// cliTree is the whole client command tree (the groups below `kps`).
func cliTree() []*cliCommand {
	return []*cliCommand{loginCommand(), configureCommand(), keypairCommand(), taskCommand(), serverCommand(), completionCommand()}
}
