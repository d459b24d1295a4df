package cli

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/openkps/kps"
	"github.com/openkps/kps/client"
	"github.com/openkps/kps/sshkey"
)

func (a *app) serverCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "server", Short: "the inventory of servers the service manages",
		Example: "kps server add web-01 --address 10.0.0.5 --user deploy --host-key-file <(ssh-keyscan 10.0.0.5)\n" +
			"kps server import /etc/ansible/hosts"}
	cmd.AddCommand(a.serverAdd(), a.serverList(), a.serverShow(), a.serverUpdate(), a.serverRemove(), a.serverImport())
	return cmd
}

// serverFlags are the members a command line can set on a server record.
type serverFlags struct {
	name, address, user, sshdConfig string
	port                            int
	hostKeys                        []string
	hostKeyFile                     string
	credPasswordStdin, askCredPass  bool
	credKeyFile                     string
}

func (f *serverFlags) define(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.name, "name", "", "display name (default: the ID)")
	fl.StringVar(&f.address, "address", "", "host name or IP `address` to connect to")
	fl.IntVar(&f.port, "port", 0, "SSH port (default 22)")
	fl.StringVar(&f.user, "user", "", "login `user` (default root)")
	fl.StringVar(&f.sshdConfig, "sshd-config", "", "path of sshd_config on the host (default /etc/ssh/sshd_config)")
	fl.StringArrayVar(&f.hostKeys, "host-key", nil, "pin this host `key`: '<type> <base64>', or a known_hosts or ssh-keyscan line (repeatable)")
	fl.StringVar(&f.hostKeyFile, "host-key-file", "", "pin the host keys of this `file`: ssh-keyscan output, a known_hosts file (the lines of --address) or .pub files")
	fl.BoolVar(&f.credPasswordStdin, "credential-password-stdin", false, "the service's own login password for the host, from standard input (admin)")
	fl.BoolVar(&f.askCredPass, "ask-credential-password", false, "ask for the service's own login password on the terminal, without echo (admin)")
	fl.StringVar(&f.credKeyFile, "credential-key-file", "", "private key `file` the service logs in with (admin)")
}

// spec returns the members of the flags that were given.
func (a *app) serverSpec(cmd *cobra.Command, f *serverFlags, current *client.Server) (client.ServerSpec, error) {
	var s client.ServerSpec
	ch := cmd.Flags().Changed
	if ch("name") {
		s.Name = &f.name
	}
	if ch("address") {
		if err := kps.ValidateAddress(f.address); err != nil {
			return s, usagef("--address %q: a host name, IPv4 or IPv6 address", f.address)
		}
		s.Address = &f.address
	}
	if ch("port") {
		if !kps.ValidPort(int64(f.port)) {
			return s, usagef("--port %d: a port is from 1 to 65535", f.port)
		}
		s.Port = &f.port
	}
	if ch("user") {
		s.User = &f.user
	}
	if ch("sshd-config") {
		s.SSHDConfig = &f.sshdConfig
	}
	if ch("host-key") || ch("host-key-file") {
		address, port := f.address, f.port
		if current != nil {
			address, port = firstOf(f.address, current.Address), max(f.port, current.Port)
		}
		keys, err := a.hostKeys(f.hostKeys, f.hostKeyFile, address, port)
		if err != nil {
			return s, err
		}
		s.HostKeys = &keys
	}
	n := 0
	for _, given := range []bool{f.credPasswordStdin, f.askCredPass, f.credKeyFile != ""} {
		if given {
			n++
		}
	}
	switch {
	case n > 1:
		return s, usagef("give one of --credential-password-stdin, --ask-credential-password and --credential-key-file")
	case f.credPasswordStdin:
		pw, err := a.secretLine("--credential-password-stdin", "The service's login password for the host: ")
		if err != nil {
			return s, err
		}
		s.Credential = &kps.Credential{Type: kps.CredentialPassword, Key: pw}
	case f.askCredPass:
		pw, err := a.prompt("The service's login password for the host: ")
		if err != nil {
			return s, usagef("--ask-credential-password: %v", err)
		}
		s.Credential = &kps.Credential{Type: kps.CredentialPassword, Key: pw}
	case f.credKeyFile != "":
		key, err := readPrivateKeyFile("--credential-key-file", f.credKeyFile)
		if err != nil {
			return s, err
		}
		s.Credential = &kps.Credential{Type: kps.CredentialKeyPair, Key: key}
	}
	return s, nil
}

// readPrivateKeyFile reads and checks an unencrypted private key; the error names flag and file.
func readPrivateKeyFile(flag, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", flag, path, fileError(err))
	}
	if _, _, err := sshkey.ParsePrivateKey(string(b)); err != nil {
		return "", fmt.Errorf("%s %s: %s", flag, path, kps.ErrorMessage(err))
	}
	return string(b), nil
}

// hostKeys reads host keys from --host-key values and --host-key-file: public key lines,
// known_hosts lines and ssh-keyscan output. When the lines name more than one host (a whole
// known_hosts file), only those of address:port are kept, hashed names included.
func (a *app) hostKeys(values []string, file, address string, port int) ([]string, error) {
	type keyLine struct {
		source string
		hosts  []string
		key    ssh.PublicKey
	}
	var lines []keyLine
	parse := func(source, text string) error {
		for n, raw := range strings.Split(text, "\n") {
			line := strings.TrimSpace(raw)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			where := fmt.Sprintf("%s line %d", source, n+1)
			if strings.HasPrefix(line, "@") {
				marker, _, _ := strings.Cut(line, " ")
				return usagef("%s: a %s line is not a host key; give the host's own key", where, marker)
			}
			if first, _, _ := strings.Cut(line, " "); isKeyType(first) {
				k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
				if err != nil {
					return usagef("%s: not a public key: %v", where, err)
				}
				lines = append(lines, keyLine{source: where, key: k})
				continue
			}
			_, hosts, k, _, _, err := ssh.ParseKnownHosts([]byte(line))
			if err != nil {
				return usagef("%s: not a public key, known_hosts or ssh-keyscan line", where)
			}
			lines = append(lines, keyLine{source: where, hosts: hosts, key: k})
		}
		return nil
	}
	for _, v := range values {
		if err := parse("--host-key", v); err != nil {
			return nil, err
		}
	}
	if file != "" {
		text, err := a.readFlagFile("--host-key-file", file)
		if err != nil {
			return nil, err
		}
		if err := parse("--host-key-file "+file, text); err != nil {
			return nil, err
		}
	}
	named := map[string]bool{}
	for _, l := range lines {
		if l.hosts != nil {
			named[strings.Join(l.hosts, ",")] = true
		}
	}
	var out []string
	for _, l := range lines {
		if len(named) > 1 && l.hosts != nil {
			if address == "" {
				return nil, usagef("the host keys name several hosts: give --address so that those of the server are chosen")
			}
			if !hostMatches(l.hosts, address, port) {
				continue
			}
		}
		line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(l.key)))
		if _, err := sshkey.ParsePublicKey(line); err != nil {
			return nil, usagef("%s: %s", l.source, kps.ErrorMessage(err))
		}
		out = append(out, line)
	}
	if len(out) == 0 {
		return nil, usagef("no host key of %s in the keys given", net.JoinHostPort(address, strconv.Itoa(max(port, 22))))
	}
	return out, nil
}

// isKeyType tells a key line ("ssh-ed25519 AAAA…") from a known_hosts line, whose first
// field names hosts.
func isKeyType(s string) bool {
	return strings.HasPrefix(s, "ssh-") || strings.HasPrefix(s, "ecdsa-sha2-") || strings.HasPrefix(s, "sk-")
}

// hostMatches reports whether a known_hosts host list names address:port, plainly or hashed.
func hostMatches(hosts []string, address string, port int) bool {
	want := knownhosts.Normalize(net.JoinHostPort(address, strconv.Itoa(max(port, 22))))
	for _, h := range hosts {
		if strings.HasPrefix(h, "|1|") {
			parts := strings.Split(h, "|")
			if len(parts) != 4 {
				continue
			}
			salt, err1 := base64.StdEncoding.DecodeString(parts[2])
			sum, err2 := base64.StdEncoding.DecodeString(parts[3])
			if err1 != nil || err2 != nil {
				continue
			}
			mac := hmac.New(sha1.New, salt)
			mac.Write([]byte(want))
			if hmac.Equal(mac.Sum(nil), sum) {
				return true
			}
			continue
		}
		if knownhosts.Normalize(h) == want {
			return true
		}
	}
	return false
}

func (a *app) serverAdd() *cobra.Command {
	var f serverFlags
	cmd := &cobra.Command{Use: "add ID", Short: "register a server", Args: exactArgs(1, "server ID"),
		Long: "Without --host-key or --host-key-file the first key the host presents is pinned (trust on\n" +
			"first use). A stored credential (--credential-…) lets the service bind key pairs without yours.",
		Example: "kps server add web-01 --address 10.0.0.5 --user ubuntu\n" +
			"ssh-keyscan -p 2222 db.internal > db.keys; kps server add db-01 --address db.internal --port 2222 --host-key-file db.keys\n" +
			"kps server add db-02 --address 10.0.0.9 --credential-key-file svc.pem"}
	f.define(cmd)
	cmd.RunE = a.leaf(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		if !kps.ValidServerID(args[0]) {
			return usagef("invalid server ID %q: 1 to 255 printable characters without spaces", args[0])
		}
		if f.address == "" {
			return usagef("give --address")
		}
		spec, err := a.serverSpec(cmd, &f, nil)
		if err != nil {
			return err
		}
		spec.ID = args[0]
		cl, err := a.client()
		if err != nil {
			return err
		}
		s, err := cl.CreateServer(ctx, spec)
		if err != nil {
			return err
		}
		return a.emitServer(s)
	})
	return cmd
}

func (a *app) emitServer(s *client.Server) error {
	return a.emit(s, func(w io.Writer) {
		details(w, "id", s.ID, "name", s.Name, "address", s.Address, "port", s.Port, "user", s.User,
			"keypair", s.KeyPairName, "has_credential", s.HasCredential, "password_disabled", s.PasswordDisabled,
			"sshd_config", s.SSHDConfig, "host_keys", strings.Join(s.HostKeys, "; "),
			"create_time", millis(s.CreateTime), "update_time", millis(s.UpdateTime))
	})
}

func (a *app) serverList() *cobra.Command {
	var limit int
	var keyPair string
	cmd := &cobra.Command{Use: "list", Short: "list servers (all pages unless --limit)", Args: noArgs,
		Example: "kps server list\nkps server list --keypair web -o yaml"}
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many servers")
	cmd.Flags().StringVar(&keyPair, "keypair", "", "only the servers bound to this key pair")
	cmd.RegisterFlagCompletionFunc("keypair", a.completeKeyPairs(1))
	cmd.RunE = a.leaf(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		if limit < 0 {
			return usagef("--limit must not be negative")
		}
		cl, err := a.client()
		if err != nil {
			return err
		}
		rows := []client.Server{}
		for s, err := range cl.Servers(ctx, 1000) {
			if err != nil {
				return err
			}
			if keyPair != "" && s.KeyPairName != keyPair {
				continue
			}
			rows = append(rows, s)
			if limit > 0 && len(rows) == limit {
				break
			}
		}
		return a.emit(rows, func(w io.Writer) {
			t := newTable(w, "id", "name", "address", "port", "user", "keypair", "credential")
			for _, s := range rows {
				t.row(s.ID, s.Name, s.Address, s.Port, s.User, s.KeyPairName, s.HasCredential)
			}
			t.flush()
		})
	})
	return cmd
}

func (a *app) serverShow() *cobra.Command {
	cmd := &cobra.Command{Use: "show ID", Short: "show one server", Args: exactArgs(1, "server ID"),
		Example: "kps server show web-01", ValidArgsFunction: a.completeServers(1)}
	cmd.RunE = a.withClient(func(ctx context.Context, cmd *cobra.Command, args []string, cl *client.Client) error {
		s, err := cl.Server(ctx, args[0])
		if err != nil {
			return err
		}
		return a.emitServer(s)
	})
	return cmd
}

func (a *app) serverUpdate() *cobra.Command {
	var f serverFlags
	var clearKeys, clearCred bool
	cmd := &cobra.Command{Use: "update ID", Short: "change members of a server (only the flags given; changing where it is reached needs admin)", Args: exactArgs(1, "server ID"),
		ValidArgsFunction: a.completeServers(1),
		Example:           "kps server update web-01 --port 2222\nkps server update web-01 --clear-host-keys\nkps server update web-01 --host-key-file ~/.ssh/known_hosts"}
	f.define(cmd)
	cmd.Flags().BoolVar(&clearKeys, "clear-host-keys", false, "forget the pinned host keys (the next connection pins again) (admin)")
	cmd.Flags().BoolVar(&clearCred, "clear-credential", false, "remove the service's stored credential (admin)")
	cmd.RunE = a.withClient(func(ctx context.Context, cmd *cobra.Command, args []string, cl *client.Client) error {
		var current *client.Server
		if cmd.Flags().Changed("host-key-file") || cmd.Flags().Changed("host-key") {
			var err error
			if current, err = cl.Server(ctx, args[0]); err != nil {
				return err
			}
		}
		spec, err := a.serverSpec(cmd, &f, current)
		if err != nil {
			return err
		}
		if clearKeys {
			if spec.HostKeys != nil {
				return usagef("--clear-host-keys and new host keys together")
			}
			spec.HostKeys = &[]string{}
		}
		if clearCred {
			if spec.Credential != nil {
				return usagef("--clear-credential and a new credential together")
			}
			spec.ClearCredential = true
		}
		if spec == (client.ServerSpec{}) {
			return usagef("nothing to change: give at least one flag")
		}
		s, err := cl.UpdateServer(ctx, args[0], spec)
		if err != nil {
			return err
		}
		return a.emitServer(s)
	})
	return cmd
}

func (a *app) serverRemove() *cobra.Command {
	cmd := &cobra.Command{Use: "rm ID...", Aliases: []string{"remove", "delete"}, Short: "remove servers from the inventory (exit 3 when some could not be)",
		Args: minArgs(1, "server ID"), ValidArgsFunction: a.completeServers(-1), Example: "kps server rm web-01 web-02"}
	cmd.RunE = a.withClient(func(ctx context.Context, cmd *cobra.Command, args []string, cl *client.Client) error {
		return a.eachName(args, "removed", func(id string) error { return cl.DeleteServer(ctx, id) })
	})
	return cmd
}
