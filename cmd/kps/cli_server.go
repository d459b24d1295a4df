package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/openkps/kps/api"
)

func serverCommand() *cliCommand {
	return &cliCommand{name: "server", short: "the inventory of servers the service manages",
		examples: []string{"kps server add web-01 --address 10.0.0.5", "kps server import inventory.ini"},
		subs: []*cliCommand{
			{name: "add", args: "ID", short: "register a server",
				examples: []string{"kps server add web-01 --address 10.0.0.5 --user ubuntu",
					"kps server add db-01 --address db.internal --port 2222 --credential-key-file svc.pem"},
				setup: serverAdd},
			{name: "list", short: "list servers (all pages unless --limit)",
				examples: []string{"kps server list", "kps server list -o yaml"}, setup: serverList0},
			{name: "show", args: "ID", short: "show one server",
				examples: []string{"kps server show web-01"}, setup: serverShow},
			{name: "update", args: "ID", short: "change members of a server (only the flags given; changing where it is reached needs admin)",
				examples: []string{"kps server update web-01 --port 2222", "kps server update web-01 --clear-host-keys", "kps server update web-01 --clear-credential"},
				setup:    serverUpdate},
			{name: "rm", args: "ID...", short: "remove servers",
				examples: []string{"kps server rm web-01 web-02"}, setup: serverRemove},
			{name: "import", args: "FILE", short: "register many servers from YAML/JSON or an Ansible inventory (exit 3 if some are refused)",
				long: "FILE is a JSON or YAML list of server records (or {\"servers\": [...]}), or an Ansible\n" +
					"inventory in INI or YAML form: each host becomes a server whose ID is the inventory name,\n" +
					"ansible_host/ansible_port/ansible_user giving address/port/user (group vars of [G:vars]\n" +
					"apply to hosts listed directly in G). kps_name and kps_sshd_config set name and\n" +
					"sshd_config. A server that exists is updated. Each entry is reported added, updated or\n" +
					"refused with its KPS code.",
				examples: []string{"kps server import servers.yaml", "kps server import /etc/ansible/hosts --format ini"},
				setup:    serverImport},
		}}
}

// serverFlags are the members a command line can set on a server record.
type serverFlags struct {
	name, address, user, sshdConfig, credKeyFile string
	port                                         int
	hostKeys                                     stringList
	credPasswordStdin                            bool
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func (f *serverFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&f.name, "name", "", "display name (default: the ID)")
	fs.StringVar(&f.address, "address", "", "host name or IP address to connect to")
	fs.IntVar(&f.port, "port", 0, "SSH port (default 22)")
	fs.StringVar(&f.user, "user", "", "login user (default root)")
	fs.StringVar(&f.sshdConfig, "sshd-config", "", "path of sshd_config on the host")
	fs.Var(&f.hostKeys, "host-key", "pinned host public key '<type> <base64>' (repeatable)")
	fs.BoolVar(&f.credPasswordStdin, "credential-password-stdin", false, "read the service's own login password for the host from standard input (admin)")
	fs.StringVar(&f.credKeyFile, "credential-key-file", "", "private key file the service logs in with (admin)")
}

// members returns the record members of the flags that were given.
func (f *serverFlags) members(fs *flag.FlagSet, con console) (map[string]any, error) {
	given := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	m := map[string]any{}
	if given["name"] {
		m["name"] = f.name
	}
	if given["address"] {
		m["address"] = f.address
	}
	if given["port"] {
		m["port"] = f.port
	}
	if given["user"] {
		m["user"] = f.user
	}
	if given["sshd-config"] {
		m["sshd_config"] = f.sshdConfig
	}
	if given["host-key"] {
		m["host_keys"] = []string(f.hostKeys)
	}
	auth, err := (&authFlags{passwordStdin: f.credPasswordStdin, keyFile: f.credKeyFile}).auth(con)
	if err != nil {
		return nil, err
	}
	if auth != nil {
		m["credential"] = auth
	}
	return m, nil
}

func serverPath(base, id string) string { return base + "/servers/" + url.PathEscape(id) }

func serverAdd(fs *flag.FlagSet, c *cliContext) func(context.Context, []string) error {
	var f serverFlags
	f.define(fs)
	return func(ctx context.Context, args []string) error {
		id, err := exactlyOne(args, "server ID")
		if err != nil {
			return err
		}
		m, err := f.members(fs, c.con)
		if err != nil {
			return err
		}
		if m["address"] == nil {
			return usageError{errors.New("give --address")}
		}
		m["id"] = id
		cl, base, err := c.client()
		if err != nil {
			return err
		}
		return c.putServer(ctx, cl, "POST", base+"/servers", m)
	}
}

func (c *cliContext) putServer(ctx context.Context, cl *api.Client, method, path string, m map[string]any) error {
	var resp struct {
		Server map[string]any `json:"server"`
	}
	if err := cl.Do(ctx, method, path, map[string]any{"server": m}, &resp); err != nil {
		return err
	}
	return c.emit(resp.Server, func(w io.Writer) { detailTable(w, resp.Server) })
}

func serverList0(fs *flag.FlagSet, c *cliContext) func(context.Context, []string) error {
	limit := fs.Int("limit", 0, "at most this many servers (default: all, page by page)")
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return usageError{fmt.Errorf("unexpected arguments %q", args)}
		}
		cl, base, err := c.client()
		if err != nil {
			return err
		}
		all := []map[string]any{}
		for {
			size := 1000
			if *limit > 0 {
				size = min(size, *limit-len(all))
			}
			var resp struct {
				Total   int              `json:"total"`
				Servers []map[string]any `json:"servers"`
			}
			q := url.Values{"limit": {strconv.Itoa(size)}, "offset": {strconv.Itoa(len(all))}}
			if err := cl.Do(ctx, "GET", base+"/servers?"+q.Encode(), nil, &resp); err != nil {
				return err
			}
			all = append(all, resp.Servers...)
			if len(resp.Servers) == 0 || len(all) >= resp.Total || (*limit > 0 && len(all) >= *limit) {
				break
			}
		}
		return c.emit(all, func(w io.Writer) {
			listTable(w, all, "id", "name", "address", "port", "user", "keypair_name", "has_credential")
		})
	}
}

func serverShow(fs *flag.FlagSet, c *cliContext) func(context.Context, []string) error {
	return c.showResource("server ID", "server", serverPath)
}

func serverUpdate(fs *flag.FlagSet, c *cliContext) func(context.Context, []string) error {
	var f serverFlags
	var clearKeys, clearCred bool
	f.define(fs)
	fs.BoolVar(&clearKeys, "clear-host-keys", false, "forget the pinned host keys (the next connection pins again) (admin)")
	fs.BoolVar(&clearCred, "clear-credential", false, "remove the service's stored credential (admin)")
	return func(ctx context.Context, args []string) error {
		id, err := exactlyOne(args, "server ID")
		if err != nil {
			return err
		}
		m, err := f.members(fs, c.con)
		if err != nil {
			return err
		}
		if clearKeys {
			m["host_keys"] = []string{}
		}
		if clearCred {
			if m["credential"] != nil {
				return usageError{errors.New("--clear-credential and a new credential together")}
			}
			m["credential"] = nil
		}
		if len(m) == 0 {
			return usageError{errors.New("nothing to change: give at least one flag")}
		}
		cl, base, err := c.client()
		if err != nil {
			return err
		}
		return c.putServer(ctx, cl, "PUT", serverPath(base, id), m)
	}
}

var serverRemove = deleteEach("server ID", "removed", serverPath)

func serverImport(fs *flag.FlagSet, c *cliContext) func(context.Context, []string) error {
	format := fs.String("format", "auto", "auto, json, yaml or ini (ini and YAML Ansible inventories are recognised)")
	return func(ctx context.Context, args []string) error {
		file, err := exactlyOne(args, "file")
		if err != nil {
			return err
		}
		text, err := readFileFlag(c.con, file)
		if err != nil {
			return err
		}
		records, err := parseInventory(text, *format, filepath.Ext(file))
		if err != nil {
			return usageError{fmt.Errorf("%s: %w", file, err)}
		}
		if len(records) == 0 {
			return usageError{fmt.Errorf("%s: no servers found", file)}
		}
		cl, base, err := c.client()
		if err != nil {
			return err
		}
		var rows []map[string]any
		refused := 0
		for _, r := range records {
			id, _ := r["id"].(string)
			row := map[string]any{"id": id, "result": "added"}
			err := cl.Do(ctx, "POST", base+"/servers", map[string]any{"server": r}, nil)
			if err != nil && kpsCode(err) == "KPS.6306" && id != "" {
				upd := map[string]any{}
				for k, v := range r {
					if k != "id" {
						upd[k] = v
					}
				}
				row["result"] = "updated"
				err = cl.Do(ctx, "PUT", serverPath(base, id), map[string]any{"server": upd}, nil)
			}
			if err != nil {
				refused++
				row["result"], row["error_code"], row["error_msg"] = "refused", kpsCode(err), err.Error()
			}
			rows = append(rows, row)
		}
		if err := c.emit(rows, func(w io.Writer) { listTable(w, rows, "id", "result", "error_code", "error_msg") }); err != nil {
			return err
		}
		switch {
		case refused == len(records):
			return fmt.Errorf("all %d entries refused", refused)
		case refused > 0:
			return partialError{fmt.Errorf("%d of %d entries refused", refused, len(records))}
		}
		return nil
	}
}

// parseInventory reads server records from JSON, YAML or an Ansible inventory (INI or YAML).
func parseInventory(text, format, ext string) ([]map[string]any, error) {
	if format == "auto" {
		switch strings.ToLower(ext) {
		case ".json":
			format = "json"
		case ".yaml", ".yml":
			format = "yaml"
		case ".ini", ".cfg":
			format = "ini"
		default:
			// Ansible's default inventory has no extension; a [section] line tells INI.
			format = "yaml"
			if iniSection.MatchString(text) {
				format = "ini"
			}
		}
	}
	var doc any
	switch format {
	case "ini":
		return ansibleINI(text)
	case "json":
		if err := json.Unmarshal([]byte(text), &doc); err != nil {
			return nil, err
		}
	case "yaml":
		if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown format %q", format)
	}
	switch d := doc.(type) {
	case []any:
		return recordList(d)
	case map[string]any:
		if list, ok := d["servers"].([]any); ok {
			return recordList(list)
		}
		hosts := map[string]map[string]any{}
		var order []string
		for _, g := range sortedKeys(d) {
			ansibleYAMLGroup(d[g], map[string]any{}, hosts, &order)
		}
		return ansibleRecords(hosts, order), nil
	case nil:
		return nil, nil
	}
	return nil, errors.New("not a list of servers or an Ansible inventory")
}

var iniSection = regexp.MustCompile(`(?m)^\s*\[[A-Za-z0-9_.:-]+\]\s*$`)

func recordList(list []any) ([]map[string]any, error) {
	out := make([]map[string]any, 0, len(list))
	for i, it := range list {
		m, ok := it.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("entry %d is not an object", i+1)
		}
		out = append(out, m)
	}
	return out, nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ansibleYAMLGroup walks a YAML inventory group: hosts, vars and children.
func ansibleYAMLGroup(g any, inherited map[string]any, hosts map[string]map[string]any, order *[]string) {
	gm, ok := g.(map[string]any)
	if !ok {
		return
	}
	vars := map[string]any{}
	for k, v := range inherited {
		vars[k] = v
	}
	if v, ok := gm["vars"].(map[string]any); ok {
		for k, x := range v {
			vars[k] = x
		}
	}
	if hm, ok := gm["hosts"].(map[string]any); ok {
		for _, name := range sortedKeys(hm) {
			h, ok := hosts[name]
			if !ok {
				h = map[string]any{}
				hosts[name] = h
				*order = append(*order, name)
			}
			for k, v := range vars {
				if _, set := h[k]; !set {
					h[k] = v
				}
			}
			if hv, ok := hm[name].(map[string]any); ok {
				for k, v := range hv {
					h[k] = v
				}
			}
		}
	}
	if ch, ok := gm["children"].(map[string]any); ok {
		for _, name := range sortedKeys(ch) {
			ansibleYAMLGroup(ch[name], vars, hosts, order)
		}
	}
}

// ansibleINI reads an INI inventory: host lines with key=value vars under [group] headers,
// [group:vars] sections, [group:children] sections (skipped).
func ansibleINI(text string) ([]map[string]any, error) {
	hosts := map[string]map[string]any{}
	var order []string
	groupHosts := map[string][]string{}
	groupVars := map[string]map[string]any{}
	section, kind := "ungrouped", ""
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("line %d: bad section %q", n, line)
			}
			section, kind, _ = strings.Cut(line[1:len(line)-1], ":")
			continue
		}
		fields := strings.Fields(line)
		switch kind {
		case "children":
			continue
		case "vars":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				return nil, fmt.Errorf("line %d: want key=value", n)
			}
			if groupVars[section] == nil {
				groupVars[section] = map[string]any{}
			}
			groupVars[section][strings.TrimSpace(k)] = unquote(strings.TrimSpace(v))
		case "":
			name := fields[0]
			h, ok := hosts[name]
			if !ok {
				h = map[string]any{}
				hosts[name] = h
				order = append(order, name)
			}
			for _, f := range fields[1:] {
				k, v, ok := strings.Cut(f, "=")
				if !ok {
					return nil, fmt.Errorf("line %d: want key=value, not %q", n, f)
				}
				h[k] = unquote(v)
			}
			groupHosts[section] = append(groupHosts[section], name)
		default:
			return nil, fmt.Errorf("line %d: unknown section kind %q", n, kind)
		}
	}
	// Host vars win over group vars, group vars over [all:vars].
	for g, names := range groupHosts {
		for _, name := range names {
			for k, v := range groupVars[g] {
				if _, set := hosts[name][k]; !set {
					hosts[name][k] = v
				}
			}
		}
	}
	for _, h := range hosts {
		for k, v := range groupVars["all"] {
			if _, set := h[k]; !set {
				h[k] = v
			}
		}
	}
	return ansibleRecords(hosts, order), nil
}

func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}

// ansibleRecords maps Ansible host vars onto server records.
func ansibleRecords(hosts map[string]map[string]any, order []string) []map[string]any {
	out := make([]map[string]any, 0, len(order))
	for _, name := range order {
		h := hosts[name]
		r := map[string]any{"id": name, "address": name}
		if v, ok := h["ansible_host"]; ok {
			r["address"] = fmt.Sprint(v)
		}
		if v, ok := h["ansible_port"]; ok {
			if p, err := strconv.Atoi(fmt.Sprint(v)); err == nil {
				r["port"] = p
			} else {
				r["port"] = fmt.Sprint(v) // the service refuses it with its code
			}
		}
		if v, ok := h["ansible_user"]; ok {
			r["user"] = fmt.Sprint(v)
		}
		if v, ok := h["kps_name"]; ok {
			r["name"] = fmt.Sprint(v)
		}
		if v, ok := h["kps_sshd_config"]; ok {
			r["sshd_config"] = fmt.Sprint(v)
		}
		out = append(out, r)
	}
	return out
}
