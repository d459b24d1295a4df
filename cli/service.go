package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/openkps/kps/secrets"
)

// serveCommand wraps the binary's `kps serve`: its own flags, parsed by the tree, and its own
// KPS_* variables, which the binary applies (they are serve's settings, not the client's).
func (a *app) serveCommand() *cobra.Command {
	s := a.opts.Serve()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "run the service in the foreground until SIGINT or SIGTERM (SIGHUP reloads keys and certificate)",
		Long: "kps serve runs in the foreground and logs to standard error; run it under a service manager,\n" +
			"or in a second terminal for a first try. Every flag may also come from its KPS_* environment\n" +
			"variable (--data-dir ↔ KPS_DATA_DIR); the command line wins. Secrets come only from the\n" +
			"environment: KPS_ADMIN_PASSWORD (first start; otherwise a password is generated into\n" +
			"<data-dir>/admin-password) and KPS_MASTER_KEY (otherwise <data-dir>/master.key, created once).",
		Example: "kps serve\n" +
			"kps serve --listen 0.0.0.0:9800 --data-dir /var/lib/kps --tls-cert kps.crt --tls-key kps.key\n" +
			"KPS_DATABASE=postgres://kps@db/kps kps serve --workers 64",
		Args:        noArgs,
		Annotations: map[string]string{noGlobalFlags: "yes"},
	}
	s.Flags.VisitAll(func(f *flag.Flag) {
		f.Usage += " (" + "KPS_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_")) + ")"
	})
	cmd.Flags().AddGoFlagSet(s.Flags)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		given := func(name string) bool {
			f := cmd.Flags().Lookup(name)
			return f != nil && f.Changed
		}
		return s.Run(cmd.Context(), a.con, given)
	}
	return cmd
}

func (a *app) keyringCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "keyring", Short: "the master key ring that seals the service's secrets (docs/keyring.md)",
		Annotations: map[string]string{noGlobalFlags: "yes"},
		Example:     "kps keyring add --data-dir kps-data && kill -HUP $(pidof kps)"}
	var dataDir string
	add := &cobra.Command{Use: "add", Short: "add a new master key version; SIGHUP makes the running service use it",
		Long:    "Reads and writes <data-dir>/master.key (KPS_DATA_DIR, like kps serve). Existing secrets are\nre-wrapped under the new version in the background after the service reloads.",
		Example: "kps keyring add --data-dir /var/lib/kps", Args: noArgs}
	add.Flags().StringVar(&dataDir, "data-dir", "./kps-data", "data directory holding master.key (KPS_DATA_DIR)")
	add.RunE = a.leaf(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		if !cmd.Flags().Changed("data-dir") {
			if v := a.con.Getenv("KPS_DATA_DIR"); v != "" {
				dataDir = v
			}
		}
		v, err := secrets.AddVersion(dataDir)
		if err != nil {
			return err
		}
		path := filepath.Join(dataDir, secrets.MasterKeyFile)
		fmt.Fprintf(a.con.Stderr, "kps: master key v%d added to %s.\nSend SIGHUP to the running service (or restart it): new secrets use v%d and existing ones are re-wrapped in the background.\n", v, path, v)
		return a.emit(struct {
			Version uint32 `json:"version"`
			File    string `json:"file"`
		}{v, path}, func(w io.Writer) {})
	})
	cmd.AddCommand(add)
	return cmd
}
