package cli

import (
	"context"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/openkps/kps/client"
)

// Shell completion is cobra's: `kps completion bash|zsh|fish|powershell` prints a script that
// asks the binary (`kps __complete …`) for words as the user types. Commands, flags and fixed
// values come from the tree; key pair, server and task names from the service, through the
// profile in use; profile names from the profile directory.

// completionCommand prints the scripts; cobra's own would do, but this one speaks like the
// rest of the tree.
func (a *app) completionCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "completion", Short: "print a shell completion script (bash, zsh, fish or powershell)",
		Annotations: map[string]string{noGlobalFlags: "yes"},
		Long: "The script completes commands and flags, and asks kps for the names of key pairs, servers,\n" +
			"tasks and profiles as you type (through the profile in use, with a 3 s deadline).",
		Example: "source <(kps completion bash)\n" +
			"kps completion zsh > \"${fpath[1]}/_kps\"\n" +
			"kps completion fish > ~/.config/fish/completions/kps.fish"}
	for _, sh := range []struct {
		name string
		gen  func(root *cobra.Command, w io.Writer) error
	}{
		{"bash", func(root *cobra.Command, w io.Writer) error { return root.GenBashCompletionV2(w, true) }},
		{"zsh", func(root *cobra.Command, w io.Writer) error { return root.GenZshCompletion(w) }},
		{"fish", func(root *cobra.Command, w io.Writer) error { return root.GenFishCompletion(w, true) }},
		{"powershell", func(root *cobra.Command, w io.Writer) error { return root.GenPowerShellCompletionWithDesc(w) }},
	} {
		c := &cobra.Command{Use: sh.name, Short: "print the " + sh.name + " completion script", Args: noArgs,
			Example: map[string]string{"bash": "source <(kps completion bash)", "zsh": "kps completion zsh > \"${fpath[1]}/_kps\"",
				"fish": "kps completion fish | source", "powershell": "kps completion powershell | Out-String | Invoke-Expression"}[sh.name]}
		gen := sh.gen
		c.RunE = func(cmd *cobra.Command, args []string) error { return gen(cmd.Root(), a.con.Stdout) }
		cmd.AddCommand(c)
	}
	return cmd
}

// completionTimeout bounds the service's answer to a completion: a slow service must not
// freeze a shell.
const completionTimeout = 3 * time.Second

type completer func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective)

// fromService completes with names listed by the service; any failure completes nothing.
func (a *app) fromService(limit int, list func(ctx context.Context, cl *client.Client) ([]cobra.Completion, error)) completer {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if limit >= 0 && len(args) >= limit {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		cl, err := a.client()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(context.Background(), completionTimeout)
		defer cancel()
		names, err := list(ctx, cl)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		taken := map[string]bool{}
		for _, a := range args {
			taken[a] = true
		}
		var out []cobra.Completion
		for _, n := range names {
			word, _, _ := strings.Cut(n, "\t")
			if strings.HasPrefix(word, toComplete) && !taken[word] {
				out = append(out, n)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeKeyPairs completes key pair names, for at most limit arguments (-1: any number).
func (a *app) completeKeyPairs(limit int) completer {
	return a.fromService(limit, func(ctx context.Context, cl *client.Client) ([]cobra.Completion, error) {
		var out []cobra.Completion
		for k, err := range cl.KeyPairs(ctx, 1000) {
			if err != nil {
				return nil, err
			}
			out = append(out, k.Name)
		}
		return out, nil
	})
}

func serverNames(ctx context.Context, cl *client.Client) ([]cobra.Completion, error) {
	var out []cobra.Completion
	for s, err := range cl.Servers(ctx, 1000) {
		if err != nil {
			return nil, err
		}
		desc := s.Address
		if s.KeyPairName != "" {
			desc += ", " + s.KeyPairName
		}
		out = append(out, cobra.CompletionWithDesc(s.ID, desc))
	}
	return out, nil
}

// completeServers completes server IDs.
func (a *app) completeServers(limit int) completer { return a.fromService(limit, serverNames) }

// completeServerList completes the last ID of a comma-separated --servers value.
func (a *app) completeServerList(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	done, last := "", toComplete
	if i := strings.LastIndex(toComplete, ","); i >= 0 {
		done, last = toComplete[:i+1], toComplete[i+1:]
	}
	names, _ := a.fromService(-1, serverNames)(cmd, nil, last)
	taken := map[string]bool{}
	for _, id := range strings.Split(done, ",") {
		taken[id] = true
	}
	var out []cobra.Completion
	for _, n := range names {
		word, _, _ := strings.Cut(n, "\t")
		if !taken[word] {
			out = append(out, done+word)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
}

// completeTasks completes the IDs of failed and/or running tasks, with what they are about.
func (a *app) completeTasks(failed, running bool) completer {
	return a.fromService(-1, func(ctx context.Context, cl *client.Client) ([]cobra.Completion, error) {
		var out []cobra.Completion
		var lists []taskLister
		if failed {
			lists = append(lists, cl.FailedTasks)
		}
		if running {
			lists = append(lists, cl.RunningTasks)
		}
		for _, list := range lists {
			for t, err := range list(ctx, 1000) {
				if err != nil {
					return nil, err
				}
				desc := t.Status + " " + t.ServerID
				if t.ErrorCode != "" {
					desc += " " + t.ErrorCode
				}
				out = append(out, cobra.CompletionWithDesc(t.TaskID, desc))
			}
		}
		return out, nil
	})
}

// completeProfiles completes the --profile flag.
func (a *app) completeProfiles(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	var out []cobra.Completion
	for _, n := range a.profileNames() {
		if strings.HasPrefix(n, toComplete) {
			out = append(out, n)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeProfileArgs completes one profile name argument.
func (a *app) completeProfileArgs(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return a.completeProfiles(cmd, args, toComplete)
}
