package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/openkps/kps"
	"github.com/openkps/kps/cli/inventory"
	"github.com/openkps/kps/client"
)

// serverRecord is one entry of a JSON or YAML list of servers: the members of inventory.md.
type serverRecord struct {
	ID         string    `json:"id" yaml:"id"`
	Name       *string   `json:"name" yaml:"name"`
	Address    *string   `json:"address" yaml:"address"`
	Port       *int      `json:"port" yaml:"port"`
	User       *string   `json:"user" yaml:"user"`
	HostKeys   *[]string `json:"host_keys" yaml:"host_keys"`
	SSHDConfig *string   `json:"sshd_config" yaml:"sshd_config"`
	Credential *struct {
		Type string `json:"type" yaml:"type"`
		Key  string `json:"key" yaml:"key"`
	} `json:"credential" yaml:"credential"`
}

func (r serverRecord) spec() client.ServerSpec {
	s := client.ServerSpec{ID: r.ID, Name: r.Name, Address: r.Address, Port: r.Port, User: r.User, HostKeys: r.HostKeys, SSHDConfig: r.SSHDConfig}
	if r.Credential != nil {
		s.Credential = &kps.Credential{Type: r.Credential.Type, Key: r.Credential.Key}
	}
	return s
}

// importEntry is one server of an import: what will be registered, or why it cannot be.
type importEntry struct {
	spec    client.ServerSpec
	refused string // set when the entry cannot be honoured
	note    string // said on the side: what kps does differently from Ansible
	credSrc string // where the credential comes from, for --dry-run
}

// importRow is the report of one entry.
type importRow struct {
	ID        string `json:"id"`
	Address   string `json:"address,omitempty"`
	Port      int    `json:"port,omitempty"`
	User      string `json:"user,omitempty"`
	Result    string `json:"result"`
	ErrorCode string `json:"error_code,omitempty"`
	ErrorMsg  string `json:"error_msg,omitempty"`
}

func (a *app) serverImport() *cobra.Command {
	var format, defaultUser string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "register many servers from an Ansible inventory (INI or YAML) or a JSON/YAML list of records (exit 3 if some are refused)",
		Long: "An Ansible inventory is read as Ansible reads it: host ranges (web[01:20]) expand, groups inherit\n" +
			"their parents' vars, group_vars/ and host_vars/ beside the file apply, and variables merge in\n" +
			"Ansible's order (compare with `ansible-inventory -i FILE --list`). Each host becomes a server\n" +
			"named after its inventory name:\n" +
			"  ansible_host (ansible_ssh_host)        → address (default: the inventory name)\n" +
			"  ansible_port (ansible_ssh_port)        → port\n" +
			"  ansible_user (ansible_ssh_user)        → user (default: --default-user, else the service's, root)\n" +
			"  ansible_ssh_private_key_file           → the service's credential: that key file (admin)\n" +
			"  ansible_password (ansible_ssh_pass)    → the service's credential: that password (admin)\n" +
			"  kps_name, kps_sshd_config              → name, sshd_config\n" +
			"What kps cannot honour refuses the host by name: ansible_connection other than ssh, extra ssh\n" +
			"arguments (ansible_ssh_common_args…, e.g. a jump host), a become password, a Jinja2 template in\n" +
			"a value it uses; an unknown section or key, or a vault-encrypted value, refuses the file.\n" +
			"A JSON or YAML list of server records (or {\"servers\": [...]}) is also accepted. A server that\n" +
			"exists is updated. --dry-run shows what would be registered.",
		Example: "kps server import /etc/ansible/hosts --dry-run\n" +
			"kps server import inventory.yml --default-user deploy\n" +
			"kps server import servers.json -o json",
		Args: exactArgs(1, "file"),
	}
	cmd.Flags().StringVar(&format, "format", "auto", "auto, ini, yaml (Ansible inventories) or records (a JSON or YAML list)")
	cmd.Flags().StringVar(&defaultUser, "default-user", "", "login user of hosts without ansible_user")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "show the servers that would be registered, and register nothing")
	cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"auto", "ini", "yaml", "records"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.RunE = a.leaf(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		file := args[0]
		entries, err := a.readImport(file, format, defaultUser)
		if err != nil {
			return err
		}
		if len(entries) == 0 {
			return fmt.Errorf("%s: no servers in it", file)
		}
		for _, e := range entries {
			if e.note != "" {
				fmt.Fprintf(a.con.Stderr, "kps: %s: %s\n", e.spec.ID, e.note)
			}
		}
		var cl *client.Client
		if !dryRun {
			if cl, err = a.client(); err != nil {
				return err
			}
		}
		rows := make([]importRow, 0, len(entries))
		refused := 0
		for _, e := range entries {
			row := importRow{ID: e.spec.ID, Address: deref(e.spec.Address), User: deref(e.spec.User)}
			if e.spec.Port != nil {
				row.Port = *e.spec.Port
			}
			switch {
			case e.refused != "":
				row.Result, row.ErrorMsg = "refused", e.refused
			case dryRun:
				row.Result = "would be added or updated"
				if e.credSrc != "" {
					row.Result += ", credential from " + e.credSrc
				}
			default:
				row.Result = "added"
				_, err := cl.CreateServer(ctx, e.spec)
				if client.Code(err) == kps.ErrServerExists && e.spec.ID != "" {
					row.Result = "updated"
					_, err = cl.UpdateServer(ctx, e.spec.ID, e.spec)
				}
				if errors.Is(err, context.Canceled) {
					return err
				}
				if err != nil {
					row.Result, row.ErrorCode, row.ErrorMsg = "refused", client.Code(err), errorText(err)
					if row.ErrorCode != "" {
						row.ErrorMsg = recordWords(kps.ErrorMessage(err))
					}
				}
			}
			if row.Result == "refused" {
				refused++
			}
			rows = append(rows, row)
		}
		if err := a.emit(rows, func(w io.Writer) {
			t := newTable(w, "id", "address", "port", "user", "result", "code", "reason")
			for _, r := range rows {
				port := ""
				if r.Port != 0 {
					port = strconv.Itoa(r.Port)
				}
				t.row(r.ID, r.Address, port, r.User, r.Result, r.ErrorCode, r.ErrorMsg)
			}
			t.flush()
		}); err != nil {
			return err
		}
		switch {
		case refused == len(rows):
			return fmt.Errorf("all %d entries of %s were refused", refused, file)
		case refused > 0:
			return partialError{fmt.Errorf("%d of %d entries of %s were refused", refused, len(rows), file)}
		}
		return nil
	})
	return cmd
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// readImport reads the entries of an import file.
func (a *app) readImport(file, format, defaultUser string) ([]importEntry, error) {
	var data []byte
	var err error
	if file == "-" {
		data, err = io.ReadAll(io.LimitReader(a.con.Stdin, 16<<20))
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, fileError(err))
	}
	switch format {
	case "auto":
		if recordsDocument(data) {
			return readRecords(file, data)
		}
		format = ""
	case "records":
		return readRecords(file, data)
	case "ini", "yaml":
	default:
		return nil, usagef("--format %q: auto, ini, yaml or records", format)
	}
	varsDir := ""
	if file != "-" {
		varsDir = filepath.Dir(file)
	}
	hosts, err := inventory.Parse(file, data, format, varsDir)
	if err != nil {
		return nil, UsageError{err}
	}
	entries := make([]importEntry, 0, len(hosts))
	for _, h := range hosts {
		entries = append(entries, a.ansibleEntry(h, defaultUser))
	}
	return entries, nil
}

// recordsDocument tells a list of server records (a JSON or YAML list, or {"servers": [...]})
// from an Ansible inventory.
func recordsDocument(data []byte) bool {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return false
	}
	root := doc.Content[0]
	if root.Kind == yaml.MappingNode && len(root.Content) == 2 && root.Content[0].Value == "servers" {
		root = root.Content[1]
	}
	if root.Kind != yaml.SequenceNode {
		return false
	}
	// An INI header such as [web] reads as a YAML list of names; records are mappings.
	for _, item := range root.Content {
		if item.Kind != yaml.MappingNode {
			return false
		}
	}
	return true
}

// readRecords decodes a list of server records strictly: an unknown member is named.
func readRecords(file string, data []byte) ([]importEntry, error) {
	var records []serverRecord
	t := bytes.TrimSpace(data)
	if len(t) > 0 && (t[0] == '[' || t[0] == '{') && json.Valid(t) {
		dec := json.NewDecoder(bytes.NewReader(t))
		dec.DisallowUnknownFields()
		var wrapped struct {
			Servers []serverRecord `json:"servers"`
		}
		var err error
		if t[0] == '{' {
			err = dec.Decode(&wrapped)
			records = wrapped.Servers
		} else {
			err = dec.Decode(&records)
		}
		if err != nil {
			return nil, usagef("%s: %v", file, strings.TrimPrefix(err.Error(), "json: "))
		}
	} else {
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return nil, usagef("%s: not JSON or YAML: %v", file, err)
		}
		node := &doc
		if len(doc.Content) > 0 && doc.Content[0].Kind == yaml.MappingNode {
			var wrapped struct {
				Servers yaml.Node `yaml:"servers"`
			}
			if err := doc.Decode(&wrapped); err != nil {
				return nil, usagef("%s: %v", file, err)
			}
			node = &wrapped.Servers
		}
		var buf bytes.Buffer
		enc := yaml.NewEncoder(&buf)
		if err := enc.Encode(node); err != nil {
			return nil, usagef("%s: %v", file, err)
		}
		dec := yaml.NewDecoder(&buf)
		dec.KnownFields(true)
		if err := dec.Decode(&records); err != nil {
			return nil, usagef("%s: %v", file, strings.TrimPrefix(err.Error(), "yaml: "))
		}
	}
	entries := make([]importEntry, 0, len(records))
	for _, r := range records {
		entries = append(entries, importEntry{spec: r.spec()})
	}
	return entries, nil
}

// unsupportedVars change how Ansible reaches a host in ways the service cannot follow.
var unsupportedVars = map[string]string{
	"ansible_ssh_common_args":        "extra ssh arguments (a jump host, options)",
	"ansible_ssh_extra_args":         "extra ssh arguments",
	"ansible_ssh_args":               "ssh arguments",
	"ansible_ssh_executable":         "another ssh program",
	"ansible_become_password":        "a become password (the service uses only password-less sudo)",
	"ansible_become_pass":            "a become password (the service uses only password-less sudo)",
	"ansible_sudo_pass":              "a sudo password (the service uses only password-less sudo)",
	"ansible_private_key_passphrase": "a key passphrase (the service takes only unencrypted keys)",
}

// ansibleEntry maps one Ansible host onto a server record, or refuses it by name.
func (a *app) ansibleEntry(h inventory.Host, defaultUser string) importEntry {
	e := importEntry{spec: client.ServerSpec{ID: h.Name}}
	refuse := func(format string, args ...any) importEntry {
		e.refused = fmt.Sprintf(format, args...)
		return e
	}
	str := func(names ...string) (string, string, bool, error) {
		for _, n := range names {
			v, ok := h.Vars[n]
			if !ok || v == nil {
				continue
			}
			switch x := v.(type) {
			case string:
				if strings.Contains(x, "{{") || strings.Contains(x, "{%") {
					return "", n, true, fmt.Errorf("%s is a Jinja2 template (%q), which kps does not evaluate", n, x)
				}
				return x, n, true, nil
			case int:
				return strconv.Itoa(x), n, true, nil
			case inventory.Unparsed:
				return "", n, true, fmt.Errorf("%s is a Python structure (%s), not a value kps can use", n, string(x))
			default:
				return "", n, true, fmt.Errorf("%s is %v, not a string", n, v)
			}
		}
		return "", "", false, nil
	}
	if v, _, ok, err := str("ansible_connection"); err != nil {
		return refuse("%v", err)
	} else if ok && v != "ssh" && v != "smart" && v != "paramiko" {
		return refuse("ansible_connection=%s: kps reaches hosts over SSH only", v)
	}
	for name, what := range unsupportedVars {
		if v, ok := h.Vars[name]; ok && v != nil && v != "" {
			return refuse("%s is set: %s cannot be honoured", name, what)
		}
	}
	if m, ok := h.Vars["ansible_become_method"]; ok && m != "sudo" && m != nil {
		return refuse("ansible_become_method=%v: the service uses sudo only", m)
	}
	address, _, ok, err := str("ansible_host", "ansible_ssh_host")
	if err != nil {
		return refuse("%v", err)
	}
	if !ok {
		address = h.Name
	}
	e.spec.Address = &address
	if v, name, ok, err := str("ansible_port", "ansible_ssh_port"); err != nil {
		return refuse("%v", err)
	} else if ok {
		p, err := strconv.Atoi(v)
		if err != nil {
			return refuse("%s=%s is not a port (1 to 65535)", name, v)
		}
		e.spec.Port = &p // out of range: the service refuses it with its code (KPS.6015)
	}
	if v, _, ok, err := str("ansible_user", "ansible_ssh_user"); err != nil {
		return refuse("%v", err)
	} else if ok {
		e.spec.User = &v
	} else if defaultUser != "" {
		e.spec.User = &defaultUser
	}
	if v, _, ok, err := str("kps_name"); err != nil {
		return refuse("%v", err)
	} else if ok {
		e.spec.Name = &v
	}
	if v, _, ok, err := str("kps_sshd_config"); err != nil {
		return refuse("%v", err)
	} else if ok {
		e.spec.SSHDConfig = &v
	}
	keyFile, keyVar, hasKey, err := str("ansible_ssh_private_key_file", "ansible_private_key_file")
	if err != nil {
		return refuse("%v", err)
	}
	password, pwVar, hasPassword, err := str("ansible_password", "ansible_ssh_pass")
	if err != nil {
		return refuse("%v", err)
	}
	switch {
	case hasKey && hasPassword:
		return refuse("both %s and %s are set: the service keeps one credential per server", keyVar, pwVar)
	case hasKey:
		path := a.expandHome(keyFile)
		key, err := readPrivateKeyFile(keyVar, path)
		if err != nil {
			return refuse("%v", err)
		}
		e.spec.Credential = &kps.Credential{Type: kps.CredentialKeyPair, Key: key}
		e.credSrc = path
	case hasPassword:
		e.spec.Credential = &kps.Credential{Type: kps.CredentialPassword, Key: password}
		e.credSrc = pwVar
	}
	for _, n := range []string{"ansible_host_key_checking", "ansible_ssh_host_key_checking"} {
		if v, ok := h.Vars[n]; ok && v == false {
			e.note = n + "=false is not followed: the service pins each host's key on first use and checks it afterwards"
		}
	}
	return e
}

// expandHome expands ~/ as ssh does; a relative path is relative to the working directory, as
// for ansible's ssh -i.
func (a *app) expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home := a.con.Getenv("HOME"); home != "" {
			return filepath.Join(home, strings.TrimPrefix(p[1:], "/"))
		}
	}
	return p
}

// recordWords rewrites a service message about a record in the words of the import file.
func recordWords(msg string) string {
	return strings.NewReplacer("Invalid parameter server.", "Invalid ", "server.port", "port", "server.address", "address",
		"server.user", "user", "server.host_keys", "host_keys", "server.credential", "credential", "server.id", "id").Replace(msg)
}
