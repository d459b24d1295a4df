package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/openkps/kps/client"
)

// kps drift: the drift checks of kps-v3-api.md §7.2 (an OpenKPS extension).

func (a *app) driftCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "drift", Short: "check that the servers hold what the service believes",
		Long: "A drift check reads each server read-only — authorized_keys, its mode and owner, and sshd -T where\n" +
			"the login user may run it as root — and reports the bound key present, missing or duplicated, keys\n" +
			"nobody manages, password login against what the binding implies, and file problems.",
		Example: "kps drift check\nkps drift check --servers web-01,web-02 -o json\nkps drift show"}
	cmd.AddCommand(a.driftCheck(), a.driftShow(), a.driftList())
	return cmd
}

func (a *app) driftCheck() *cobra.Command {
	var f fleetFlags
	cmd := &cobra.Command{Use: "check", Short: "run a drift check of every server, or of those listed, and wait for it",
		Long:    "Exit code 3 when a server drifted or could not be read.",
		Example: "kps drift check\nkps drift check --servers-from fleet.txt\nkps drift check --no-wait",
		Args:    cobra.NoArgs}
	cmd.Flags().StringVar(&f.servers, "servers", "", "comma-separated server `IDs` (default: every server)")
	cmd.Flags().StringVar(&f.from, "servers-from", "", "`file` with one server ID a line, # comments (- for standard input)")
	cmd.Flags().BoolVar(&f.noWait, "no-wait", false, "start the check, print its ID and return without waiting")
	cmd.RegisterFlagCompletionFunc("servers", a.completeServerList)
	cmd.RunE = a.leaf(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		var ids []string
		if f.servers != "" || f.from != "" {
			var err error
			if ids, err = a.serverIDs(&f); err != nil {
				return err
			}
		}
		cl, err := a.client()
		if err != nil {
			return err
		}
		c, err := cl.StartDriftCheck(ctx, ids)
		if err != nil {
			return err
		}
		if !f.noWait {
			if c, err = a.waitDrift(ctx, cl, c); err != nil {
				return err
			}
		}
		return a.showDrift(c)
	})
	return cmd
}

// waitDrift polls a check until it ends, with a line of progress on standard error.
func (a *app) waitDrift(ctx context.Context, cl *client.Client, c *client.DriftCheck) (*client.DriftCheck, error) {
	w := a.con.Stderr
	fmt.Fprintf(w, "kps: drift check %s started (Ctrl-C stops waiting; the check goes on)\n", c.ID)
	start := time.Now()
	for c.Status == "RUNNING" {
		select {
		case <-ctx.Done():
			return nil, interruptedError{fmt.Sprintf("interrupted: drift check %s goes on in the service; see it with: kps drift show %s", c.ID, c.ID)}
		case <-time.After(500 * time.Millisecond):
		}
		next, err := cl.DriftCheck(ctx, c.ID)
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			return nil, err
		}
		c = next
	}
	fmt.Fprintf(w, "kps: drift check %s %s after %s\n", c.ID, strings.ToLower(c.Status), time.Since(start).Round(100*time.Millisecond))
	return c, nil
}

// showDrift prints a check: its results as a table, or the whole object with -o; a drift or an
// unreadable server makes the exit code 3.
func (a *app) showDrift(c *client.DriftCheck) error {
	err := a.emit(c, func(w io.Writer) {
		if c.Status == "RUNNING" || len(c.Results) == 0 {
			details(w, "drift_check", c.ID, "status", c.Status, "created", millis(c.CreateTime))
			return
		}
		t := newTable(w, "SERVER", "DRIFT", "BOUND KEY", "UNMANAGED KEYS", "PASSWORD", "FINDINGS")
		for _, r := range c.Results {
			if !r.Checked {
				t.row(r.ServerID, "UNREADABLE", "-", "-", "-", r.ErrorCode+" "+inWords(r.ErrorMsg))
				continue
			}
			drift := "no"
			if r.Drift {
				drift = "YES"
			}
			bound := r.BoundKey
			if r.KeyPairName != "" {
				bound += " (" + r.KeyPairName + ")"
			}
			var keys []string
			for _, k := range r.Unmanaged {
				keys = append(keys, fmt.Sprintf("%s %s %s (line %d)", k.Type, k.Fingerprint, k.Comment, k.Line))
			}
			password := r.Password
			if r.PasswordExpected != "" && r.Password != r.PasswordExpected {
				password += " (expected " + r.PasswordExpected + ")"
			}
			t.row(r.ServerID, drift, bound, strings.Join(keys, "; "), password, strings.Join(r.FileProblems, "; "))
		}
		t.flush()
		fmt.Fprintf(w, "%s: %d checked, %d drifted, %d unreadable\n", c.ID, c.Summary.Checked, c.Summary.Drifted, c.Summary.Unreadable)
	})
	if err != nil {
		return err
	}
	if c.Status == "DONE" && c.Summary.Drifted+c.Summary.Unreadable > 0 {
		return partialError{fmt.Errorf("drift on %d and unreadable %d of %d servers", c.Summary.Drifted, c.Summary.Unreadable, len(c.Results))}
	}
	return nil
}

func (a *app) driftShow() *cobra.Command {
	cmd := &cobra.Command{Use: "show [CHECK_ID]", Short: "show a drift check (the latest one by default) with its results",
		Example: "kps drift show\nkps drift show 5d0c1e2a-… -o json", Args: cobra.MaximumNArgs(1)}
	cmd.RunE = a.withClient(func(ctx context.Context, cmd *cobra.Command, args []string, cl *client.Client) error {
		id := ""
		if len(args) == 1 {
			id = args[0]
		} else {
			checks, _, err := cl.DriftChecks(ctx, 1, 0)
			if err != nil {
				return err
			}
			if len(checks) == 0 {
				return fmt.Errorf("no drift check has run yet (kps drift check)")
			}
			id = checks[0].ID
		}
		c, err := cl.DriftCheck(ctx, id)
		if err != nil {
			return err
		}
		return a.showDrift(c)
	})
	return cmd
}

func (a *app) driftList() *cobra.Command {
	var limit int
	cmd := &cobra.Command{Use: "list", Short: "list the drift checks, newest first", Args: cobra.NoArgs,
		Example: "kps drift list\nkps drift list --limit 100 -o json"}
	cmd.Flags().IntVar(&limit, "limit", 20, "how many checks")
	cmd.RunE = a.leaf(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		if limit < 1 || limit > 1000 {
			return usagef("--limit must be from 1 to 1000")
		}
		cl, err := a.client()
		if err != nil {
			return err
		}
		checks, total, err := cl.DriftChecks(ctx, limit, 0)
		if err != nil {
			return err
		}
		return a.emit(map[string]any{"drift_checks": checks, "total": total}, func(w io.Writer) {
			t := newTable(w, "ID", "STATUS", "SCHEDULED", "CREATED", "CHECKED", "DRIFTED", "UNREADABLE")
			for _, c := range checks {
				t.row(c.ID, c.Status, c.Scheduled, millis(c.CreateTime), c.Summary.Checked, c.Summary.Drifted, c.Summary.Unreadable)
			}
			t.flush()
		})
	})
	return cmd
}
