package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"github.com/openkps/kps"
	"github.com/openkps/kps/client"
	"github.com/openkps/kps/sshkey"
)

func (a *app) keypairCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "keypair", Short: "create, import, list, bind, rotate and manage SSH key pairs",
		Example: "kps keypair list\nkps keypair create web --out web.pem\nkps keypair bind web --servers web-01,web-02\nkps keypair rotate web-2027 --from web"}
	pk := &cobra.Command{Use: "private-key", Short: "host, export and clear private keys kept by the service",
		Example: "kps keypair private-key export web --out web.pem"}
	pk.AddCommand(a.privateKeyImport(), a.privateKeyExport(), a.privateKeyClear(), a.privateKeyBatchExport())
	cmd.AddCommand(a.keypairCreate(), a.keypairImport(), a.keypairList(), a.keypairShow(), a.keypairUpdate(),
		a.keypairDelete(), a.keypairBatchImport(), pk, a.bindCommand(), a.rotateCommand(), a.rotationCommand(), a.unbindCommand())
	return cmd
}

// keyPairView is a key pair as the commands show it: the service's members, and the SHA256
// fingerprint ssh-keygen prints beside the MD5 one the API gives.
type keyPairView struct {
	client.KeyPairDetail
	FingerprintSHA256 string `json:"fingerprint_sha256,omitempty"`
}

// sha256Fingerprint is ssh-keygen's SHA256:… fingerprint of a public key line, "" for what is
// not an OpenSSH key (an x509 certificate).
func sha256Fingerprint(publicKey string) string {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(publicKey))
	if err != nil {
		return ""
	}
	return ssh.FingerprintSHA256(k)
}

func (v keyPairView) table(w io.Writer) {
	details(w, "name", v.Name, "type", v.Type, "algorithm", v.Algorithm, "scope", v.Scope,
		"fingerprint", v.Fingerprint, "fingerprint_sha256", v.FingerprintSHA256,
		"hosted private key", v.IsKeyProtection, "description", v.Description, "user_id", v.UserID,
		"create_time", millis(v.CreateTime), "update_time", millis(v.UpdateTime), "public_key", v.PublicKey)
}

// checkName validates a key pair name before the service is asked.
// clientAndOut is the profile's client and, when out is given, the --out file the private key
// will be written to, opened before anything is asked of the service (nil without --out).
func (a *app) clientAndOut(out string, force bool) (*client.Client, *secretFile, error) {
	cl, err := a.client()
	if err != nil || out == "" {
		return cl, nil, err
	}
	file, err := openSecretFile("--out", out, force)
	return cl, file, err
}

// keyPairArg accepts one positional argument, a valid key pair name.
func keyPairArg(cmd *cobra.Command, args []string) error {
	if err := exactArgs(1, "key pair name")(cmd, args); err != nil {
		return err
	}
	return checkName(args[0])
}

func checkName(name string) error {
	if !kps.ValidKeyPairName(name) {
		return usagef("invalid key pair name %q: 1 to 64 letters, digits, '_' or '-'", name)
	}
	return nil
}

func (a *app) keypairCreate() *cobra.Command {
	var typ, desc, out string
	var bits int
	var host, show, force bool
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "generate a key pair; its private key goes to --out (mode 0600) or, with --show, to standard output",
		Long: "An ed25519, RSA or ECDSA key is generated here, on this machine, and its public key imported:\n" +
			"the private key never crosses the network unless --host asks the service to keep an encrypted\n" +
			"copy. It is written to --out before the key pair is created; an existing file is replaced only\n" +
			"with --force. --type x509 asks the service for a self-signed certificate and its key (for the\n" +
			"OpenStack API; such key pairs cannot be bound to servers); if that key cannot be written, the\n" +
			"key pair is deleted again.",
		Example: "kps keypair create web --out ~/.ssh/web.pem\n" +
			"kps keypair create legacy --type rsa --bits 4096 --out legacy.pem\n" +
			"kps keypair create ci --host --out ci.pem -o json\n" +
			"kps keypair create tmp --show | ssh-add -",
		Args: exactArgs(1, "key pair name"),
	}
	f := cmd.Flags()
	f.StringVar(&typ, "type", sshkey.AlgorithmED25519, "key `type`: ed25519, rsa, ecdsa, or x509 (a certificate the service makes)")
	f.IntVar(&bits, "bits", 0, "key size: RSA 2048 to 8192 (default 3072), ECDSA 256, 384 or 521 (default 256)")
	f.StringVar(&desc, "description", "", "description")
	f.BoolVar(&host, "host", false, "keep an encrypted copy of the private key in the service")
	f.StringVar(&out, "out", "", "`file` to write the private key to (mode 0600); it must not exist unless --force")
	f.BoolVar(&force, "force", false, "replace the --out file if it exists")
	f.BoolVar(&show, "show", false, "print the private key on standard output")
	cmd.RegisterFlagCompletionFunc("type", cobra.FixedCompletions([]string{"ed25519", "rsa", "ecdsa", "x509"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.RunE = a.leaf(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		name := args[0]
		if err := checkName(name); err != nil {
			return err
		}
		if out == "" && !show {
			return usagef("the private key is shown only once: give --out FILE (or --show)")
		}
		if force && out == "" {
			return usagef("--force goes with --out")
		}
		if err := kps.ValidateDescription(desc); err != nil {
			return usagef("--description: up to 255 characters without control characters")
		}
		cl, file, err := a.clientAndOut(out, force)
		if err != nil {
			return err
		}
		defer file.abort()
		var private string
		if typ == kps.TypeX509 {
			if bits != 0 || host {
				return usagef("--type x509: the service makes the certificate; --bits and --host do not apply")
			}
			created, err := cl.CreateKeyPair(ctx, client.NewKeyPair{Name: name, Type: kps.TypeX509})
			if err != nil {
				return err
			}
			private = created.PrivateKey
			if err := a.deliver(file, show, private); err != nil {
				return a.undoCreate(cl, name, err)
			}
		} else {
			var public string
			private, public, err = sshkey.Generate(typ, bits, name)
			if err != nil {
				return usagef("--type %s --bits %d: %v", typ, bits, err)
			}
			// The key is on disk before the service knows it: a failure here costs nothing.
			if file != nil {
				if err := file.write([]byte(private)); err != nil {
					return err
				}
			}
			nk := client.NewKeyPair{Name: name, PublicKey: public}
			if host {
				nk.HostPrivateKey, nk.PrivateKey = true, private
			}
			if _, err := cl.CreateKeyPair(ctx, nk); err != nil {
				return err
			}
			if file != nil {
				if err := file.commit(); err != nil {
					return a.undoCreate(cl, name, err)
				}
			}
			if show {
				if err := a.deliver(nil, true, private); err != nil {
					return a.undoCreate(cl, name, err)
				}
			}
		}
		if file != nil {
			fmt.Fprintf(a.con.Stderr, "kps: private key of %s written to %s (mode 0600)\n", name, out)
		}
		if desc != "" {
			if err := cl.UpdateKeyPairDescription(ctx, name, desc); err != nil {
				return fmt.Errorf("key pair %s was created, but setting its description failed: %w", name, err)
			}
		}
		if show && out == "" {
			return nil // standard output holds the private key; nothing else goes there
		}
		return a.showKeyPair(ctx, cl, name)
	})
	return cmd
}

// deliver writes a private key the service returned: to the --out file, and/or on standard
// output with --show.
func (a *app) deliver(file *secretFile, show bool, private string) error {
	if file != nil {
		if err := file.write([]byte(private)); err != nil {
			return err
		}
		if err := file.commit(); err != nil {
			return err
		}
	}
	if show {
		if _, err := io.WriteString(a.con.Stdout, private); err != nil {
			return fmt.Errorf("--show: writing the private key to standard output: %w", err)
		}
	}
	return nil
}

// undoCreate deletes a key pair whose private key could not be delivered, so that no key pair
// exists without anyone holding its private key; when that fails too, it says so loudly.
func (a *app) undoCreate(cl *client.Client, name string, cause error) error {
	// The command's context may be the one that was interrupted: the clean-up gets its own.
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	if err := cl.DeleteKeyPair(ctx, name); err != nil {
		return fmt.Errorf("%v.\nkps: WARNING: key pair %s EXISTS WITHOUT ITS PRIVATE KEY, and deleting it failed (%v): delete it with `kps keypair delete %s` and create it again", cause, name, err, name)
	}
	return fmt.Errorf("%v; key pair %s was deleted again, nothing was created", cause, name)
}

// showKeyPair reads a key pair and prints it.
func (a *app) showKeyPair(ctx context.Context, cl *client.Client, name string) error {
	kp, err := cl.KeyPair(ctx, name)
	if err != nil {
		return err
	}
	v := keyPairView{*kp, sha256Fingerprint(kp.PublicKey)}
	return a.emit(v, v.table)
}

func (a *app) keypairImport() *cobra.Command {
	var pubFile, privFile, desc string
	cmd := &cobra.Command{
		Use:   "import NAME",
		Short: "import a public key (and optionally host its private key)",
		Long: "The file holds one OpenSSH public key line (what ssh-keygen writes to KEY.pub) or a PEM X.509\n" +
			"certificate. --private-key-file also hosts the private key in the service, encrypted.",
		Example: "kps keypair import laptop --public-key-file ~/.ssh/id_ed25519.pub\n" +
			"kps keypair import ops --public-key-file ops.pub --private-key-file ops.pem",
		Args: exactArgs(1, "key pair name"),
	}
	cmd.Flags().StringVar(&pubFile, "public-key-file", "", "public key `file` (- for standard input)")
	cmd.Flags().StringVar(&privFile, "private-key-file", "", "private key `file` to host in the service (encrypted)")
	cmd.Flags().StringVar(&desc, "description", "", "description")
	cmd.RunE = a.leaf(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		name := args[0]
		if err := checkName(name); err != nil {
			return err
		}
		if pubFile == "" && privFile == "" {
			return usagef("give --public-key-file (and optionally --private-key-file)")
		}
		if err := kps.ValidateDescription(desc); err != nil {
			return usagef("--description: up to 255 characters without control characters")
		}
		nk := client.NewKeyPair{Name: name}
		if pubFile != "" {
			pub, err := a.readFlagFile("--public-key-file", pubFile)
			if err != nil {
				return err
			}
			nk.PublicKey = strings.TrimSpace(pub)
			if strings.HasPrefix(nk.PublicKey, "-----BEGIN CERTIFICATE") {
				nk.Type = kps.TypeX509
			} else if _, err := sshkey.ParsePublicKey(nk.PublicKey); err != nil {
				return fmt.Errorf("--public-key-file %s: %s", pubFile, kps.ErrorMessage(err))
			}
		}
		if privFile != "" {
			priv, err := a.readFlagFile("--private-key-file", privFile)
			if err != nil {
				return err
			}
			_, derived, err := sshkey.ParsePrivateKey(priv)
			if err != nil {
				return fmt.Errorf("--private-key-file %s: %s", privFile, kps.ErrorMessage(err))
			}
			if nk.PublicKey == "" {
				nk.PublicKey = derived.Line() + " " + name
			}
			nk.HostPrivateKey, nk.PrivateKey = true, priv
		}
		cl, err := a.client()
		if err != nil {
			return err
		}
		if _, err := cl.CreateKeyPair(ctx, nk); err != nil {
			if client.Code(err) == kps.ErrPrivateKey {
				return fmt.Errorf("--private-key-file %s: %s", privFile, kps.ErrorMessage(err))
			}
			return err
		}
		if desc != "" {
			if err := cl.UpdateKeyPairDescription(ctx, name, desc); err != nil {
				return fmt.Errorf("key pair %s was imported, but setting its description failed: %w", name, err)
			}
		}
		return a.showKeyPair(ctx, cl, name)
	})
	return cmd
}

// keyPairRow is a key pair of the list with its SHA256 fingerprint.
type keyPairRow struct {
	client.KeyPair
	FingerprintSHA256 string `json:"fingerprint_sha256,omitempty"`
}

func (a *app) keypairList() *cobra.Command {
	var limit int
	cmd := &cobra.Command{Use: "list", Short: "list key pairs (all of them, page by page, unless --limit)",
		Example: "kps keypair list\nkps keypair list --limit 10 -o json", Args: noArgs}
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many key pairs")
	cmd.RunE = a.leaf(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		if limit < 0 {
			return usagef("--limit must not be negative")
		}
		cl, err := a.client()
		if err != nil {
			return err
		}
		rows := []keyPairRow{}
		pageSize := 1000
		if limit > 0 {
			pageSize = min(limit, 1000)
		}
		for k, err := range cl.KeyPairs(ctx, pageSize) {
			if err != nil {
				return err
			}
			rows = append(rows, keyPairRow{k, sha256Fingerprint(k.PublicKey)})
			if limit > 0 && len(rows) == limit {
				break
			}
		}
		return a.emit(rows, func(w io.Writer) {
			t := newTable(w, "name", "type", "fingerprint", "sha256", "hosted", "scope")
			for _, r := range rows {
				t.row(r.Name, r.Type, r.Fingerprint, r.FingerprintSHA256, r.IsKeyProtection, r.Scope)
			}
			t.flush()
		})
	})
	return cmd
}

func (a *app) keypairShow() *cobra.Command {
	cmd := &cobra.Command{Use: "show NAME", Short: "show one key pair", Args: keyPairArg,
		Example: "kps keypair show web\nkps keypair show web -o yaml", ValidArgsFunction: a.completeKeyPairs(1)}
	cmd.RunE = a.withClient(func(ctx context.Context, cmd *cobra.Command, args []string, cl *client.Client) error {
		return a.showKeyPair(ctx, cl, args[0])
	})
	return cmd
}

func (a *app) keypairUpdate() *cobra.Command {
	var desc string
	cmd := &cobra.Command{Use: "update NAME", Short: "set a key pair's description", Args: keyPairArg,
		Example: "kps keypair update web --description 'web tier'\nkps keypair update web --description ''", ValidArgsFunction: a.completeKeyPairs(1)}
	cmd.Flags().StringVar(&desc, "description", "", "new description (may be empty)")
	cmd.RunE = a.leaf(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		if !cmd.Flags().Changed("description") {
			return usagef("give --description")
		}
		if err := kps.ValidateDescription(desc); err != nil {
			return usagef("--description: up to 255 characters without control characters")
		}
		cl, err := a.client()
		if err != nil {
			return err
		}
		if err := cl.UpdateKeyPairDescription(ctx, args[0], desc); err != nil {
			return err
		}
		return a.showKeyPair(ctx, cl, args[0])
	})
	return cmd
}

func (a *app) keypairDelete() *cobra.Command {
	cmd := &cobra.Command{Use: "delete NAME...", Short: "delete key pairs (exit 3 when some could not be)", Args: minArgs(1, "key pair name"),
		Example: "kps keypair delete web old-key", ValidArgsFunction: a.completeKeyPairs(-1)}
	cmd.RunE = a.withClient(func(ctx context.Context, cmd *cobra.Command, args []string, cl *client.Client) error {
		return a.eachName(args, "deleted", func(name string) error {
			if err := checkName(name); err != nil {
				return err
			}
			return cl.DeleteKeyPair(ctx, name)
		})
	})
	return cmd
}

// doneRow is what a command did with one of its arguments.
type doneRow struct {
	Name      string `json:"name"`
	Result    string `json:"result"`
	ErrorCode string `json:"error_code,omitempty"`
	ErrorMsg  string `json:"error_msg,omitempty"`
}

func (a *app) emitDone(rows []doneRow) error {
	return a.emit(rows, func(w io.Writer) {
		for _, r := range rows {
			if r.ErrorMsg == "" {
				fmt.Fprintf(w, "%s %s\n", r.Name, r.Result)
			}
		}
	})
}

// eachName makes one call per name and reports each (done names what a success did); with
// one name its error is the command's, with several a failure of some is exit 3.
func (a *app) eachName(names []string, done string, call func(string) error) error {
	rows := make([]doneRow, 0, len(names))
	var failed int
	var last error
	for _, n := range names {
		if err := call(n); err != nil {
			if errors.Is(err, context.Canceled) {
				return err
			}
			failed, last = failed+1, err
			rows = append(rows, doneRow{Name: n, Result: "failed", ErrorCode: client.Code(err), ErrorMsg: errorText(err)})
			if len(names) > 1 {
				fmt.Fprintf(a.con.Stderr, "kps: %s: %v\n", n, inWords(err.Error()))
			}
			continue
		}
		rows = append(rows, doneRow{Name: n, Result: done})
	}
	if err := a.emitDone(rows); err != nil {
		return err
	}
	if failed > 0 && len(names) == 1 {
		return last
	}
	return batchOutcome(failed, len(names), "")
}

// batchOutcome is the result of n things of which failed failed: nothing failed, all did (an
// error), or some did (a partial failure, exit 3).
func batchOutcome(failed, n int, noun string) error {
	if noun != "" {
		noun = " " + noun
	}
	singular := map[string]string{" servers": " server", " retries": " retry", " imports": " import", " tasks": " task"}
	switch {
	case failed == 0:
		return nil
	case failed == 1 && n == 1:
		return fmt.Errorf("the%s failed", firstOf(singular[noun], noun))
	case failed == n:
		return fmt.Errorf("all %d%s failed", failed, noun)
	}
	return partialError{fmt.Errorf("%d of %d%s failed", failed, n, noun)}
}

// batchImportRow is one file of a batch import.
type batchImportRow struct {
	Name              string `json:"name"`
	File              string `json:"file"`
	Result            string `json:"result"`
	Fingerprint       string `json:"fingerprint,omitempty"`
	FingerprintSHA256 string `json:"fingerprint_sha256,omitempty"`
	Reason            string `json:"reason,omitempty"`
}

func (a *app) keypairBatchImport() *cobra.Command {
	cmd := &cobra.Command{Use: "batch-import FILE.pub...", Short: "import many public keys, each named after its file (exit 3 if some fail)",
		Example: "kps keypair batch-import keys/*.pub", Args: minArgs(1, "public key file; each key pair is named after its file without .pub")}
	cmd.RunE = a.leaf(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		var keys []client.ImportedKeyPair
		for _, f := range args {
			b, err := os.ReadFile(f)
			if err != nil {
				return fmt.Errorf("%s: %w", f, fileError(err))
			}
			name := strings.TrimSuffix(filepath.Base(f), ".pub")
			if err := checkName(name); err != nil {
				return usagef("%s: the key pair would be named %q: 1 to 64 letters, digits, '_' or '-'", f, name)
			}
			keys = append(keys, client.ImportedKeyPair{Name: name, PublicKey: strings.TrimSpace(string(b))})
		}
		cl, err := a.client()
		if err != nil {
			return err
		}
		fileOf := map[string]string{}
		for i, k := range keys {
			fileOf[k.Name] = args[i]
		}
		var rows []batchImportRow
		failed := 0
		for start := 0; start < len(keys); start += 10 {
			res, err := cl.BatchImportKeyPairs(ctx, keys[start:min(start+10, len(keys))])
			if err != nil {
				return err
			}
			for _, s := range res.Succeeded {
				rows = append(rows, batchImportRow{Name: s.Name, File: fileOf[s.Name], Result: "imported", Fingerprint: s.Fingerprint,
					FingerprintSHA256: sha256Fingerprint(s.PublicKey)})
			}
			for _, f := range res.Failed {
				failed++
				rows = append(rows, batchImportRow{Name: f.Name, File: fileOf[f.Name], Result: "failed", Reason: f.Reason})
			}
		}
		if err := a.emit(rows, func(w io.Writer) {
			t := newTable(w, "name", "file", "result", "sha256", "reason")
			for _, r := range rows {
				t.row(r.Name, r.File, r.Result, r.FingerprintSHA256, r.Reason)
			}
			t.flush()
		}); err != nil {
			return err
		}
		return batchOutcome(failed, len(keys), "imports")
	})
	return cmd
}

func (a *app) privateKeyImport() *cobra.Command {
	var file string
	cmd := &cobra.Command{Use: "import NAME", Short: "host the private key of an existing key pair", Args: keyPairArg,
		Example: "kps keypair private-key import web --private-key-file web.pem", ValidArgsFunction: a.completeKeyPairs(1)}
	cmd.Flags().StringVar(&file, "private-key-file", "", "private key `file` (- for standard input)")
	cmd.RunE = a.leaf(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		if file == "" {
			return usagef("give --private-key-file")
		}
		priv, err := a.readFlagFile("--private-key-file", file)
		if err != nil {
			return err
		}
		if _, _, err := sshkey.ParsePrivateKey(priv); err != nil {
			return fmt.Errorf("--private-key-file %s: %s", file, kps.ErrorMessage(err))
		}
		cl, err := a.client()
		if err != nil {
			return err
		}
		if err := cl.ImportPrivateKey(ctx, args[0], priv); err != nil {
			if client.Code(err) == kps.ErrPrivateKey {
				return fmt.Errorf("--private-key-file %s: %s", file, kps.ErrorMessage(err))
			}
			return err
		}
		return a.emitDone([]doneRow{{Name: args[0], Result: "private key hosted"}})
	})
	return cmd
}

func (a *app) privateKeyExport() *cobra.Command {
	var out string
	var show, force bool
	cmd := &cobra.Command{Use: "export NAME", Short: "write a hosted private key to --out (mode 0600) or standard output (--show)",
		Args: keyPairArg, ValidArgsFunction: a.completeKeyPairs(1),
		Example: "kps keypair private-key export web --out web.pem\nkps keypair private-key export web --show | ssh-add -"}
	cmd.Flags().StringVar(&out, "out", "", "`file` to write the private key to (mode 0600); it must not exist unless --force")
	cmd.Flags().BoolVar(&force, "force", false, "replace the --out file if it exists")
	cmd.Flags().BoolVar(&show, "show", false, "print the private key on standard output")
	cmd.RunE = a.leaf(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		if out == "" && !show {
			return usagef("give --out FILE (or --show)")
		}
		cl, file, err := a.clientAndOut(out, force)
		if err != nil {
			return err
		}
		defer file.abort()
		priv, err := cl.ExportPrivateKey(ctx, args[0])
		if err != nil {
			return err
		}
		if err := a.deliver(file, show, priv); err != nil {
			return err // the key stays hosted: nothing is lost
		}
		if file == nil {
			return nil // standard output holds the private key; nothing else goes there
		}
		fmt.Fprintf(a.con.Stderr, "kps: private key of %s written to %s (mode 0600)\n", args[0], out)
		if show {
			return nil
		}
		return a.emitDone([]doneRow{{Name: out, Result: "written"}})
	})
	return cmd
}

func (a *app) privateKeyClear() *cobra.Command {
	cmd := &cobra.Command{Use: "clear NAME", Short: "delete the hosted private key (the key pair stays)", Args: keyPairArg,
		Example: "kps keypair private-key clear web", ValidArgsFunction: a.completeKeyPairs(1)}
	cmd.RunE = a.withClient(func(ctx context.Context, cmd *cobra.Command, args []string, cl *client.Client) error {
		if err := cl.ClearPrivateKey(ctx, args[0]); err != nil {
			return err
		}
		return a.emitDone([]doneRow{{Name: args[0], Result: "private key cleared"}})
	})
	return cmd
}

func (a *app) privateKeyBatchExport() *cobra.Command {
	var out string
	var force bool
	cmd := &cobra.Command{Use: "batch-export NAME...", Short: "export up to 10 hosted private keys as a zip file (mode 0600), one NAME.pem each",
		Args: minArgs(1, "key pair name"), ValidArgsFunction: a.completeKeyPairs(10),
		Example: "kps keypair private-key batch-export web db --out keys.zip"}
	cmd.Flags().StringVar(&out, "out", "", "zip `file` to write (mode 0600); it must not exist unless --force")
	cmd.Flags().BoolVar(&force, "force", false, "replace the --out file if it exists")
	cmd.RunE = a.leaf(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		if len(args) > 10 {
			return usagef("give 1 to 10 key pair names, not %d", len(args))
		}
		for _, n := range args {
			if err := checkName(n); err != nil {
				return err
			}
		}
		if out == "" {
			return usagef("give --out FILE.zip")
		}
		cl, err := a.client()
		if err != nil {
			return err
		}
		file, err := openSecretFile("--out", out, force)
		if err != nil {
			return err
		}
		defer file.abort()
		zip, err := cl.BatchExportPrivateKeys(ctx, args)
		if err != nil {
			return err
		}
		if err := a.deliver(file, false, string(zip)); err != nil {
			return err
		}
		fmt.Fprintf(a.con.Stderr, "kps: %s written to %s (mode 0600)\n", plural(len(args), "private key"), out)
		return a.emitDone([]doneRow{{Name: out, Result: "written"}})
	})
	return cmd
}
