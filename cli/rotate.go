package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/openkps/kps"
	"github.com/openkps/kps/client"
	"github.com/openkps/kps/sshkey"
)

// The staged rotation of kps-v3-api.md §8: `kps keypair rotate` starts one and follows it,
// `kps keypair rotation` looks at, pauses, resumes and cancels them.

const rotateLong = `rotate moves servers from the key pair they carry to NEW, in stages, without locking anyone
out: on each server the service adds NEW's key beside the old one, logs in afresh with NEW's
private key, and only then removes the old key. A server where that login fails (an sshd that
reads another authorized_keys file, say) keeps its old key, and NEW's is taken out again; one
that cannot be written keeps its old key too. Each server's step is a task (RESET, or REPLACE
with your credential), so failures also show in kps task list --failed.

--batch-size servers are in flight at once; more than --max-failures failed servers halt the
rotation; --canary N runs N servers first and pauses until you resume (kps keypair rotation
resume ID). The rotation runs in the service and survives its restarts: Ctrl-C stops
following (exit 130), not the rotation.

The fresh login uses NEW's hosted private key, or --new-key-file. The service logs in to the
servers with what it holds (their stored credential, or the hosted key of their key pair), or
with your credential: --auth-password-stdin, --ask-auth-password or --auth-key-file (the key
being replaced, removed with it unless --keep-login-key). A credential given is sealed with
the rotation until it ends. Exit code 3 when some servers failed, 1 when all did.`

func (a *app) rotateCommand() *cobra.Command {
	var (
		f                          fleetFlags
		fromKeyPair, newKeyFile    string
		batch, maxFailures, canary int
	)
	cmd := &cobra.Command{
		Use:   "rotate NEW",
		Short: "rotate servers to key pair NEW in stages: add, verify a login with NEW, then remove the old key",
		Long:  rotateLong,
		Example: "kps keypair rotate web-2027 --from web-2026 --canary 2 --max-failures 3\n" +
			"kps keypair rotate web-2027 --servers web-01,web-02 --new-key-file web-2027.pem --auth-key-file web-2026.pem\n" +
			"kps keypair rotate web-2027 --from web-2026 --batch-size 50 --no-wait -o json",
		Args:              exactArgs(1, "key pair name"),
		ValidArgsFunction: a.completeKeyPairs(1),
	}
	cmd.Flags().StringVar(&fromKeyPair, "from", "", "rotate every server bound to this key pair")
	cmd.RegisterFlagCompletionFunc("from", a.completeKeyPairs(1))
	cmd.Flags().StringVar(&newKeyFile, "new-key-file", "", "private key `file` of NEW, to verify the new logins with (default: NEW's hosted private key)")
	cmd.Flags().IntVar(&batch, "batch-size", 10, "servers in flight at once")
	cmd.Flags().IntVar(&maxFailures, "max-failures", 0, "failed servers tolerated; one more halts the rotation")
	cmd.Flags().IntVar(&canary, "canary", 0, "servers rotated first, after which the rotation pauses until resumed")
	f.defineServers(cmd, a)
	f.defineLogin(cmd, true)
	cmd.RunE = a.leaf(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		name := args[0]
		if err := checkName(name); err != nil {
			return err
		}
		switch {
		case batch < 1 || batch > 1000:
			return usagef("--batch-size %d: from 1 to 1000", batch)
		case maxFailures < 0 || canary < 0:
			return usagef("--max-failures and --canary are not negative")
		}
		req := client.RotationRequest{KeyPairName: name, BatchSize: batch, MaxFailures: maxFailures, Canary: canary}
		var err error
		if fromKeyPair != "" {
			if err := checkName(fromKeyPair); err != nil {
				return err
			}
			if f.servers != "" || f.from != "" {
				return usagef("give --from or --servers/--servers-from, not both")
			}
			req.FromKeyPair = fromKeyPair
		} else if req.Servers, err = a.serverIDs(&f); err != nil {
			return err
		}
		if newKeyFile != "" {
			b, err := os.ReadFile(newKeyFile)
			if err != nil {
				return fmt.Errorf("--new-key-file %s: %w", newKeyFile, fileError(err))
			}
			if _, _, err := sshkey.ParsePrivateKey(string(b)); err != nil {
				return fmt.Errorf("--new-key-file %s: %s", newKeyFile, kps.ErrorMessage(err))
			}
			req.PrivateKey = string(b)
		}
		login, err := a.login(&f)
		if err != nil {
			return err
		}
		if login != nil {
			req.Auth = &client.RotationAuth{Type: login.cred.Type, Key: login.cred.Key}
			req.KeepLoginKey = f.keepLoginKey
		}
		cl, err := a.client()
		if err != nil {
			return err
		}
		if req.Servers != nil {
			// A rotation replaces a key pair: a server without one is a bind's.
			servers, refused, err := a.lookUp(ctx, cl, req.Servers)
			if err != nil {
				return err
			}
			var unbound []string
			for _, o := range refused {
				unbound = append(unbound, fmt.Sprintf("%s (%s)", o.Server, o.ErrorCode))
			}
			for _, id := range req.Servers {
				if s := servers[id]; s != nil && s.KeyPairName == "" {
					unbound = append(unbound, id+" (no key pair)")
				}
			}
			if len(unbound) > 0 {
				return usagef("rotate replaces the key pair of bound servers: %s; use kps keypair bind", strings.Join(unbound, ", "))
			}
		}
		how := login.how("what the service holds (RESET)")
		r, err := cl.CreateRotation(ctx, req)
		if err != nil {
			return err
		}
		w := a.con.Stderr
		fmt.Fprintf(w, "kps: rotation %s of %s to %s, logging in with %s\n", r.ID, plural(r.Totals.Servers, "server"), name, how)
		fmt.Fprintf(w, "kps: per server: add %s beside the old key, log in with it, then remove the old key; %d at a time, halting past %s",
			name, r.BatchSize, plural(r.MaxFailures, "failure"))
		if r.Canary > 0 {
			fmt.Fprintf(w, ", pausing after %s", plural(r.Canary, "canary server"))
		}
		fmt.Fprintln(w)
		return a.followRotation(ctx, cl, r, f.noWait)
	})
	return cmd
}

// rotationCommand is `kps keypair rotation list|show|pause|resume|cancel`.
func (a *app) rotationCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "rotation", Short: "list, show, pause, resume and cancel staged rotations (kps keypair rotate)",
		Example: "kps keypair rotation list\nkps keypair rotation show ID\nkps keypair rotation resume ID"}
	list := &cobra.Command{Use: "list", Short: "list the project's rotations, newest first", Args: noArgs,
		Example: "kps keypair rotation list\nkps keypair rotation list -o json"}
	list.RunE = a.withClient(func(ctx context.Context, cmd *cobra.Command, args []string, cl *client.Client) error {
		rs, _, err := cl.Rotations(ctx, 1000, 0)
		if err != nil {
			return err
		}
		return a.emit(rs, func(w io.Writer) {
			t := newTable(w, "id", "keypair", "from", "state", "servers", "succeeded", "failed", "pending", "created")
			for _, r := range rs {
				t.row(r.ID, r.KeyPairName, r.FromKeyPair, r.State, r.Totals.Servers, r.Totals.Succeeded, r.Totals.Failed,
					r.Totals.Pending+r.Totals.Running, r.Created)
			}
			t.flush()
		})
	})
	show := &cobra.Command{Use: "show ID", Short: "show a rotation and each server's state", Args: exactArgs(1, "rotation ID"),
		Example: "kps keypair rotation show 9b2c6a7e-5f1d-4c3b-8a2e-1d0f9e8c7b6a -o json"}
	show.RunE = a.withClient(func(ctx context.Context, cmd *cobra.Command, args []string, cl *client.Client) error {
		r, err := cl.Rotation(ctx, args[0])
		if err != nil {
			return err
		}
		return a.emitRotation(r)
	})
	cmd.AddCommand(list, show)
	for _, action := range []string{kps.RotationPause, kps.RotationResume, kps.RotationCancel} {
		var noWait bool
		c := &cobra.Command{Use: action + " ID", Short: action + " a rotation", Args: exactArgs(1, "rotation ID"),
			Example: "kps keypair rotation " + action + " 9b2c6a7e-5f1d-4c3b-8a2e-1d0f9e8c7b6a"}
		if action == kps.RotationResume {
			c.Short = "resume a paused or halted rotation and follow it"
			c.Flags().BoolVar(&noWait, "no-wait", false, "resume and return without following")
		}
		c.RunE = a.withClient(func(ctx context.Context, cmd *cobra.Command, args []string, cl *client.Client) error {
			r, err := cl.RotationAction(ctx, args[0], action)
			if err != nil {
				return err
			}
			if action == kps.RotationResume {
				return a.followRotation(ctx, cl, r, noWait)
			}
			return a.emitRotation(r)
		})
		cmd.AddCommand(c)
	}
	return cmd
}

// followRotation polls a rotation until it stops (completed, cancelled, paused or halted with
// nothing in flight), drawing progress on standard error as waitTasks does, then prints each
// server's outcome.
func (a *app) followRotation(ctx context.Context, cl *client.Client, r *client.Rotation, noWait bool) error {
	w := a.con.Stderr
	bar := isTerminal(w)
	start := time.Now()
	news, last := time.Now(), -1
	for !noWait && !rotationStopped(r) {
		select {
		case <-ctx.Done():
			if bar {
				fmt.Fprintln(w)
			}
			return interruptedError{fmt.Sprintf("interrupted: rotation %s goes on in the service; follow it with kps keypair rotation show %s", r.ID, r.ID)}
		case <-time.After(pollInterval):
		}
		next, err := cl.Rotation(ctx, r.ID)
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			return err
		}
		r = next
		t := r.Totals
		done := t.Succeeded + t.Failed + t.Skipped
		elapsed := time.Since(start).Round(time.Second)
		if bar {
			const width = 20
			n := done * width / max(t.Servers, 1)
			fmt.Fprintf(w, "\r[%s%s] %d/%d done, %d failed, %d running, %s, %s\x1b[K", strings.Repeat("#", n), strings.Repeat(" ", width-n),
				done, t.Servers, t.Failed, t.Running, strings.ToLower(r.State), elapsed)
		} else if done != last || time.Since(news) >= heartbeat {
			fmt.Fprintf(w, "kps: %d/%d done, %d failed, %d running, %s after %s\n", done, t.Servers, t.Failed, t.Running, strings.ToLower(r.State), elapsed)
			news, last = time.Now(), done
		}
	}
	if bar && !noWait {
		fmt.Fprintln(w)
	}
	if err := a.emitRotation(r); err != nil {
		return err
	}
	switch r.State {
	case "PAUSED", "HALTED":
		fmt.Fprintf(w, "kps: rotation %s is %s: %s\nkps: resume it with kps keypair rotation resume %s, or cancel it with kps keypair rotation cancel %s\n",
			r.ID, strings.ToLower(r.State), r.Reason, r.ID, r.ID)
	case "RUNNING":
		fmt.Fprintf(w, "kps: rotation %s runs in the service; follow it with kps keypair rotation show %s\n", r.ID, r.ID)
	}
	if r.Totals.Failed > 0 {
		return batchOutcome(r.Totals.Failed, r.Totals.Servers, "servers")
	}
	if r.State == "HALTED" {
		return partialError{fmt.Errorf("rotation %s halted", r.ID)}
	}
	return nil
}

// rotationStopped reports whether a rotation will change no more without an action.
func rotationStopped(r *client.Rotation) bool {
	switch r.State {
	case "COMPLETED", "CANCELLED", "PAUSED", "HALTED":
		return r.Totals.Running == 0
	}
	return false
}

// emitRotation prints a rotation: in a table, its servers and a summary line; otherwise the
// whole rotation.
func (a *app) emitRotation(r *client.Rotation) error {
	return a.emit(r, func(w io.Writer) {
		t := newTable(w, "server", "state", "task", "attempts", "code", "message")
		for _, s := range r.Servers {
			t.row(s.ServerID, s.State, s.TaskID, s.Attempts, s.ErrorCode, s.ErrorMsg)
		}
		t.flush()
		fmt.Fprintf(w, "rotation %s to %s: %s; %d succeeded, %d failed, %d pending, %d skipped\n", r.ID, r.KeyPairName,
			strings.ToLower(r.State), r.Totals.Succeeded, r.Totals.Failed, r.Totals.Pending+r.Totals.Running, r.Totals.Skipped)
	})
}
