package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// help writes a command's help on standard output, once: usage line, description, commands or
// flags, examples.
func (a *app) help(cmd *cobra.Command, _ []string) {
	io.WriteString(cmd.OutOrStdout(), helpText(cmd, true))
}

// noGlobalFlags marks a command (and its subcommands) that does not talk to a service, whose
// help leaves the connection flags out.
const noGlobalFlags = "kps/no-global-flags"

func usesGlobalFlags(cmd *cobra.Command) bool {
	for c := cmd; c != nil; c = c.Parent() {
		if c.Annotations[noGlobalFlags] != "" {
			return false
		}
	}
	return true
}

// helpText is the help of one command; docs/cli.md is made of these, without the global flags
// under every command (global false).
func helpText(cmd *cobra.Command, global bool) string {
	var b strings.Builder
	use := cmd.UseLine()
	if cmd.HasAvailableSubCommands() {
		use = cmd.CommandPath() + " <command>"
	}
	if !cmd.HasAvailableSubCommands() && cmd.LocalNonPersistentFlags().HasAvailableFlags() {
		use += " [flags]"
	}
	fmt.Fprintf(&b, "Usage: %s\n\n%s\n", use, cmd.Short)
	if cmd.Long != "" {
		fmt.Fprintf(&b, "\n%s\n", strings.TrimRight(cmd.Long, "\n"))
	}
	if cmd.HasAvailableSubCommands() {
		groups := cmd.Groups()
		listed := map[string]bool{}
		section := func(title string, match func(*cobra.Command) bool) {
			tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
			first := true
			for _, c := range cmd.Commands() {
				if !c.IsAvailableCommand() || listed[c.Name()] || !match(c) {
					continue
				}
				if first {
					fmt.Fprintf(&b, "\n%s\n", title)
					first = false
				}
				listed[c.Name()] = true
				fmt.Fprintf(tw, "  %s\t%s\n", c.Name(), c.Short)
			}
			tw.Flush()
		}
		for _, g := range groups {
			section(g.Title, func(c *cobra.Command) bool { return c.GroupID == g.ID })
		}
		section("Commands:", func(*cobra.Command) bool { return true })
	}
	if f := cmd.LocalNonPersistentFlags(); f.HasAvailableFlags() {
		fmt.Fprintf(&b, "\nFlags:\n%s", f.FlagUsagesWrapped(100))
	}
	if cmd.Parent() == nil {
		fmt.Fprintf(&b, "\nGlobal flags (before or after the command):\n%s", cmd.PersistentFlags().FlagUsagesWrapped(100))
	} else if f := cmd.InheritedFlags(); global && f.HasAvailableFlags() && cmd.Runnable() && usesGlobalFlags(cmd) {
		fmt.Fprintf(&b, "\nGlobal flags:\n%s", f.FlagUsagesWrapped(100))
	}
	if cmd.Example != "" {
		b.WriteString("\nExamples:\n")
		for _, line := range strings.Split(strings.TrimRight(cmd.Example, "\n"), "\n") {
			fmt.Fprintf(&b, "  %s\n", line)
		}
	}
	return b.String()
}

// helpCommand is `kps help [command…]`: the help of a command, or a usage error that names a
// mistyped one (cobra's own answers an unknown topic with exit 0).
func (a *app) helpCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "help about any command",
		Args:  cobra.ArbitraryArgs,
		ValidArgsFunction: func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			target, _, err := c.Root().Find(args)
			if err != nil || target == nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var out []cobra.Completion
			for _, sub := range target.Commands() {
				if sub.IsAvailableCommand() && strings.HasPrefix(sub.Name(), toComplete) {
					out = append(out, cobra.CompletionWithDesc(sub.Name(), sub.Short))
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, args []string) error {
			target := c.Root()
			for _, name := range args {
				next := findSub(target, name)
				if next == nil {
					return groupError(target, []string{name})
				}
				target = next
			}
			a.help(target, nil)
			return nil
		},
	}
}

func findSub(c *cobra.Command, name string) *cobra.Command {
	for _, s := range c.Commands() {
		if s.Name() == name || s.HasAlias(name) {
			return s
		}
	}
	return nil
}
