package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/openkps/kps/api"
)

func keypairCommand() *cliCommand {
	return &cliCommand{name: "keypair", short: "create, import, list, bind and manage SSH key pairs",
		examples: []string{"kps keypair list", "kps keypair create web --out web.pem", "kps keypair bind web --servers web-01,web-02"},
		subs: []*cliCommand{
			{name: "create", args: "NAME", short: "generate a key pair; the private key goes to --out (mode 0600)",
				long:     "The service generates the key pair and returns its private key once. It is written to --out\nwith mode 0600, or printed with --show. --host keeps an encrypted copy in the service.",
				examples: []string{"kps keypair create web --out ~/.ssh/web.pem", "kps keypair create ci --host --out ci.pem -o json"},
				setup:    keypairCreate},
			{name: "import", args: "NAME", short: "import a public key (and optionally host its private key)",
				examples: []string{"kps keypair import laptop --public-key-file ~/.ssh/id_ed25519.pub", "kps keypair import ops --public-key-file ops.pub --private-key-file ops.pem"},
				setup:    keypairImport},
			{name: "list", short: "list key pairs (all pages unless --limit)",
				examples: []string{"kps keypair list", "kps keypair list --limit 10 -o json"},
				setup:    keypairList},
			{name: "show", args: "NAME", short: "show one key pair",
				examples: []string{"kps keypair show web", "kps keypair show web -o yaml"},
				setup:    keypairShow},
			{name: "update", args: "NAME", short: "set a key pair's description",
				examples: []string{"kps keypair update web --description 'web tier'"},
				setup:    keypairUpdate},
			{name: "delete", args: "NAME...", short: "delete key pairs",
				examples: []string{"kps keypair delete web old-key"},
				setup:    keypairDelete},
			{name: "batch-import", args: "FILE.pub...", short: "import many public keys, named after their files (exit 3 if some fail)",
				examples: []string{"kps keypair batch-import keys/*.pub"},
				setup:    keypairBatchImport},
			{name: "private-key", short: "host, export and clear private keys",
				examples: []string{"kps keypair private-key export web --out web.pem"},
				subs: []*cliCommand{
					{name: "import", args: "NAME", short: "host the private key of an existing key pair",
						examples: []string{"kps keypair private-key import web --private-key-file web.pem"},
						setup:    privateKeyImport},
					{name: "export", args: "NAME", short: "write a hosted private key to --out (mode 0600)",
						examples: []string{"kps keypair private-key export web --out web.pem", "kps keypair private-key export web --show | ssh-add -"},
						setup:    privateKeyExport},
					{name: "clear", args: "NAME", short: "delete the hosted private key",
						examples: []string{"kps keypair private-key clear web"},
						setup:    privateKeyClear},
					{name: "batch-export", args: "NAME...", short: "export up to 10 hosted private keys as a zip (mode 0600)",
						examples: []string{"kps keypair private-key batch-export web db --out keys.zip"},
						setup:    privateKeyBatchExport},
				}},
			{name: "bind", args: "NAME", short: "bind a key pair to servers, in batches of ten, with progress and a summary",
				long: "Without credentials the service uses each server's stored credential (RESET). With\n" +
					"--auth-password-stdin or --auth-key-file it logs in with yours (REPLACE). Exit code 3 when\n" +
					"some servers failed, 1 when all did.",
				examples: []string{"kps keypair bind web --servers web-01,web-02,web-03", "kps keypair bind web --servers-from fleet.txt --disable-password",
					"kps keypair bind web --servers web-01 --auth-key-file old.pem"},
				setup: keypairBind},
			{name: "unbind", short: "remove the bound key pair from servers",
				examples: []string{"kps keypair unbind --servers web-01,web-02", "kps keypair unbind --servers web-01 --auth-key-file web.pem"},
				setup:    keypairUnbind},
		}}
}

// keyPairPath is the path of a named key pair.
func keyPairPath(base, name string) string { return base + "/keypairs/" + url.PathEscape(name) }

// readFileFlag reads a file named by a flag, "-" meaning standard input.
func readFileFlag(con console, name string) (string, error) {
	if name == "-" {
		b, err := io.ReadAll(io.LimitReader(con.stdin, 1<<20))
		return string(b), err
	}
	b, err := os.ReadFile(name)
	return string(b), err
}

// writeSecretOut writes a private key to --out with mode 0600, or to standard output when
// show is set. It refuses a terminal unless show: a key on a screen ends in scrollback.
func writeSecretOut(con console, out string, show bool, data string) error {
	switch {
	case out != "":
		if err := writePrivateFile(out, []byte(data)); err != nil {
			return err
		}
		fmt.Fprintf(con.stderr, "kps: private key written to %s (mode 0600)\n", out)
		return nil
	case show:
		_, err := io.WriteString(con.stdout, data)
		return err
	}
	return usageError{errors.New("a private key is written only to --out FILE, or to standard output with --show")}
}

func keypairCreate(fs *flag.FlagSet, c *cliContext) func(context.Context, []string) error {
	var typ, desc, out string
	var host, show bool
	fs.StringVar(&typ, "type", "ssh", "ssh or x509")
	fs.StringVar(&desc, "description", "", "description")
	fs.BoolVar(&host, "host", false, "keep an encrypted copy of the private key in the service")
	fs.StringVar(&out, "out", "", "file to write the private key to (mode 0600)")
	fs.BoolVar(&show, "show", false, "print the private key on standard output")
	return func(ctx context.Context, args []string) error {
		name, err := exactlyOne(args, "key pair name")
		if err != nil {
			return err
		}
		if out == "" && !show {
			return usageError{errors.New("the private key is returned only once: give --out FILE (or --show)")}
		}
		cl, base, err := c.client()
		if err != nil {
			return err
		}
		kp := map[string]any{"name": name, "type": typ}
		if host {
			kp["key_protection"] = map[string]any{"encryption": map[string]any{"type": "default"}}
		}
		var resp struct {
			KeyPair map[string]any `json:"keypair"`
		}
		if err := cl.Do(ctx, "POST", base+"/keypairs", map[string]any{"keypair": kp}, &resp); err != nil {
			return err
		}
		priv, _ := resp.KeyPair["private_key"].(string)
		delete(resp.KeyPair, "private_key")
		if err := writeSecretOut(c.con, out, show, priv); err != nil {
			return err
		}
		if err := setDescription(ctx, cl, base, name, desc, resp.KeyPair); err != nil {
			return err
		}
		if show && out == "" {
			return nil // standard output holds the key; nothing else goes there
		}
		return c.emit(resp.KeyPair, func(w io.Writer) { detailTable(w, resp.KeyPair) })
	}
}

func keypairImport(fs *flag.FlagSet, c *cliContext) func(context.Context, []string) error {
	var pubFile, privFile, desc, typ string
	fs.StringVar(&pubFile, "public-key-file", "", "public key file (- for standard input)")
	fs.StringVar(&privFile, "private-key-file", "", "private key file to host in the service (encrypted)")
	fs.StringVar(&desc, "description", "", "description")
	fs.StringVar(&typ, "type", "ssh", "ssh or x509")
	return func(ctx context.Context, args []string) error {
		name, err := exactlyOne(args, "key pair name")
		if err != nil {
			return err
		}
		if pubFile == "" && privFile == "" {
			return usageError{errors.New("give --public-key-file (and optionally --private-key-file)")}
		}
		kp := map[string]any{"name": name, "type": typ}
		if pubFile != "" {
			pub, err := readFileFlag(c.con, pubFile)
			if err != nil {
				return err
			}
			kp["public_key"] = strings.TrimSpace(pub)
		}
		if privFile != "" {
			priv, err := readFileFlag(c.con, privFile)
			if err != nil {
				return err
			}
			kp["key_protection"] = map[string]any{"private_key": priv, "encryption": map[string]any{"type": "default"}}
		}
		cl, base, err := c.client()
		if err != nil {
			return err
		}
		var resp struct {
			KeyPair map[string]any `json:"keypair"`
		}
		if err := cl.Do(ctx, "POST", base+"/keypairs", map[string]any{"keypair": kp}, &resp); err != nil {
			return err
		}
		if err := setDescription(ctx, cl, base, name, desc, resp.KeyPair); err != nil {
			return err
		}
		return c.emit(resp.KeyPair, func(w io.Writer) { detailTable(w, resp.KeyPair) })
	}
}

// setDescription sets a new key pair's description: CreateKeypair has no such member, so it
// is a second call (UpdateKeypairDescription).
func setDescription(ctx context.Context, cl *api.Client, base, name, desc string, shown map[string]any) error {
	if desc == "" {
		return nil
	}
	if err := cl.Do(ctx, "PUT", keyPairPath(base, name), map[string]any{"keypair": map[string]any{"description": desc}}, nil); err != nil {
		return fmt.Errorf("key pair %s created, but setting its description failed: %w", name, err)
	}
	shown["description"] = desc
	return nil
}

func keypairList(fs *flag.FlagSet, c *cliContext) func(context.Context, []string) error {
	limit := fs.Int("limit", 0, "at most this many key pairs (default: all, page by page)")
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usageError{fmt.Errorf("unexpected arguments %q", args)}
		}
		cl, base, err := c.client()
		if err != nil {
			return err
		}
		var all []map[string]any
		marker := ""
		for {
			size := 1000
			if *limit > 0 {
				size = min(size, *limit-len(all))
			}
			q := url.Values{"limit": {strconv.Itoa(size)}}
			if marker != "" {
				q.Set("marker", marker)
			}
			var resp struct {
				KeyPairs []struct {
					KeyPair map[string]any `json:"keypair"`
				} `json:"keypairs"`
				PageInfo struct {
					NextMarker *string `json:"next_marker"`
				} `json:"page_info"`
			}
			if err := cl.Do(ctx, "GET", base+"/keypairs?"+q.Encode(), nil, &resp); err != nil {
				return err
			}
			for _, k := range resp.KeyPairs {
				all = append(all, k.KeyPair)
			}
			if resp.PageInfo.NextMarker == nil || *resp.PageInfo.NextMarker == "" || len(resp.KeyPairs) == 0 || (*limit > 0 && len(all) >= *limit) {
				break
			}
			marker = *resp.PageInfo.NextMarker
		}
		if all == nil {
			all = []map[string]any{}
		}
		return c.emit(all, func(w io.Writer) { listTable(w, all, "name", "type", "fingerprint", "is_key_protection") })
	}
}

func keypairShow(fs *flag.FlagSet, c *cliContext) func(context.Context, []string) error {
	return c.showResource("key pair name", "keypair", keyPairPath)
}

func keypairUpdate(fs *flag.FlagSet, c *cliContext) func(context.Context, []string) error {
	desc := fs.String("description", "", "new description (may be empty)")
	return func(ctx context.Context, args []string) error {
		name, err := exactlyOne(args, "key pair name")
		if err != nil {
			return err
		}
		given := false
		fs.Visit(func(f *flag.Flag) { given = given || f.Name == "description" })
		if !given && c.con.getenv("KPS_DESCRIPTION") == "" {
			return usageError{errors.New("give --description")}
		}
		cl, base, err := c.client()
		if err != nil {
			return err
		}
		body := map[string]any{"keypair": map[string]any{"description": *desc}}
		if err := cl.Do(ctx, "PUT", keyPairPath(base, name), body, nil); err != nil {
			return err
		}
		var resp struct {
			KeyPair map[string]any `json:"keypair"`
		}
		if err := cl.Do(ctx, "GET", keyPairPath(base, name), nil, &resp); err != nil {
			return err
		}
		return c.emit(resp.KeyPair, func(w io.Writer) { detailTable(w, resp.KeyPair) })
	}
}

var keypairDelete = deleteEach("key pair name", "deleted", keyPairPath)

// deleteEach is the setup of a command that sends one DELETE per argument (a name or an ID,
// what), to the path pathOf gives under the project's base, and reports each as done.
func deleteEach(what, done string, pathOf func(base, arg string) string) func(*flag.FlagSet, *cliContext) func(context.Context, []string) error {
	return func(_ *flag.FlagSet, c *cliContext) func(context.Context, []string) error {
		return func(ctx context.Context, args []string) error {
			if len(args) == 0 {
				return usageError{fmt.Errorf("give at least one %s", what)}
			}
			cl, base, err := c.client()
			if err != nil {
				return err
			}
			return eachName(c, args, done, func(arg string) error {
				return cl.Do(ctx, "DELETE", pathOf(base, arg), nil, nil)
			})
		}
	}
}

// eachName runs one call per name and reports each; with one name its error is the command's,
// with several a failure of some is a partial failure (exit 3).
func eachName(c *cliContext, names []string, done string, call func(string) error) error {
	var failed int
	var last error
	for _, n := range names {
		if err := call(n); err != nil {
			failed++
			last = err
			if len(names) > 1 {
				fmt.Fprintf(c.con.stderr, "kps: %s: %v\n", n, err)
			}
			continue
		}
		fmt.Fprintf(c.con.stdout, "%s %s\n", n, done)
	}
	if failed > 0 && len(names) == 1 {
		return last
	}
	return batchOutcome(failed, len(names), "")
}

// batchOutcome is the result of a command that did n things of which failed failed: nothing
// failed, all failed (an error), or some did (a partial failure, exit 3). noun, when not
// empty, names the things in the message ("servers", "retries").
func batchOutcome(failed, n int, noun string) error {
	if noun != "" {
		noun = " " + noun
	}
	switch {
	case failed == 0:
		return nil
	case failed == n:
		return fmt.Errorf("all %d%s failed", failed, noun)
	}
	return partialError{fmt.Errorf("%d of %d%s failed", failed, n, noun)}
}

func keypairBatchImport(fs *flag.FlagSet, c *cliContext) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if len(args) == 0 {
			return usageError{errors.New("give public key files; each key pair is named after its file without .pub")}
		}
		var items []any
		for _, f := range args {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			name := strings.TrimSuffix(filepath.Base(f), ".pub")
			items = append(items, map[string]any{"keypair": map[string]any{"name": name, "public_key": strings.TrimSpace(string(b))}})
		}
		cl, base, err := c.client()
		if err != nil {
			return err
		}
		var rows []map[string]any
		failed := 0
		for start := 0; start < len(items); start += 10 {
			var resp struct {
				Succeeded []struct {
					KeyPair map[string]any `json:"keypair"`
				} `json:"succeeded_keypairs"`
				Failed []map[string]any `json:"failed_keypairs"`
			}
			if err := cl.Do(ctx, "POST", base+"/keypairs/batch-import", items[start:min(start+10, len(items))], &resp); err != nil {
				return err
			}
			for _, s := range resp.Succeeded {
				rows = append(rows, map[string]any{"name": s.KeyPair["name"], "result": "imported", "fingerprint": s.KeyPair["fingerprint"]})
			}
			for _, f := range resp.Failed {
				failed++
				rows = append(rows, map[string]any{"name": f["keypair_name"], "result": "failed", "reason": f["failed_reason"]})
			}
		}
		if err := c.emit(rows, func(w io.Writer) { listTable(w, rows, "name", "result", "fingerprint", "reason") }); err != nil {
			return err
		}
		switch {
		case failed == len(items):
			return fmt.Errorf("all %d imports failed", failed)
		case failed > 0:
			return partialError{fmt.Errorf("%d of %d imports failed", failed, len(items))}
		}
		return nil
	}
}

func privateKeyImport(fs *flag.FlagSet, c *cliContext) func(context.Context, []string) error {
	file := fs.String("private-key-file", "", "private key file (- for standard input)")
	return func(ctx context.Context, args []string) error {
		name, err := exactlyOne(args, "key pair name")
		if err != nil {
			return err
		}
		if *file == "" {
			return usageError{errors.New("give --private-key-file")}
		}
		priv, err := readFileFlag(c.con, *file)
		if err != nil {
			return err
		}
		cl, base, err := c.client()
		if err != nil {
			return err
		}
		body := map[string]any{"keypair": map[string]any{"name": name,
			"key_protection": map[string]any{"private_key": priv, "encryption": map[string]any{"type": "default"}}}}
		var resp struct {
			KeyPair map[string]any `json:"keypair"`
		}
		if err := cl.Do(ctx, "POST", base+"/keypairs/private-key/import", body, &resp); err != nil {
			return err
		}
		return c.emit(resp.KeyPair, func(w io.Writer) { fmt.Fprintf(w, "private key of %s hosted\n", name) })
	}
}

func privateKeyExport(fs *flag.FlagSet, c *cliContext) func(context.Context, []string) error {
	out := fs.String("out", "", "file to write the private key to (mode 0600)")
	show := fs.Bool("show", false, "print the private key on standard output")
	return func(ctx context.Context, args []string) error {
		name, err := exactlyOne(args, "key pair name")
		if err != nil {
			return err
		}
		if *out == "" && !*show {
			return usageError{errors.New("give --out FILE (or --show)")}
		}
		cl, base, err := c.client()
		if err != nil {
			return err
		}
		var resp struct {
			KeyPair struct {
				PrivateKey string `json:"private_key"`
			} `json:"keypair"`
		}
		if err := cl.Do(ctx, "POST", base+"/keypairs/private-key/export", map[string]any{"keypair": map[string]any{"name": name}}, &resp); err != nil {
			return err
		}
		return writeSecretOut(c.con, *out, *show, resp.KeyPair.PrivateKey)
	}
}

func privateKeyClear(fs *flag.FlagSet, c *cliContext) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		name, err := exactlyOne(args, "key pair name")
		if err != nil {
			return err
		}
		cl, base, err := c.client()
		if err != nil {
			return err
		}
		if err := cl.Do(ctx, "DELETE", keyPairPath(base, name)+"/private-key", nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(c.con.stdout, "private key of %s cleared\n", name)
		return nil
	}
}

func privateKeyBatchExport(fs *flag.FlagSet, c *cliContext) func(context.Context, []string) error {
	out := fs.String("out", "", "zip file to write (mode 0600), one NAME.pem per key pair")
	return func(ctx context.Context, args []string) error {
		if len(args) == 0 || len(args) > 10 {
			return usageError{errors.New("give 1 to 10 key pair names")}
		}
		if *out == "" {
			return usageError{errors.New("give --out FILE.zip")}
		}
		cl, base, err := c.client()
		if err != nil {
			return err
		}
		body := make([]any, len(args))
		for i, n := range args {
			body[i] = map[string]any{"keypair": map[string]any{"name": n}}
		}
		zip, err := cl.DoBytes(ctx, "POST", base+"/keypairs/private-key/batch-export", body)
		if err != nil {
			return err
		}
		if err := writePrivateFile(*out, zip); err != nil {
			return err
		}
		fmt.Fprintf(c.con.stderr, "kps: %d private keys written to %s (mode 0600)\n", len(args), *out)
		return nil
	}
}
