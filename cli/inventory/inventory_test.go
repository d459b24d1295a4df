package inventory

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// inventories are real inventory files in testdata, read by Ansible and by this package.
var inventories = []string{
	"testdata/ini/hosts",
	"testdata/ini-vars/inventory.ini",
	"testdata/yaml/inventory.yml",
	"testdata/yaml-vars/inventory.yaml",
}

// TestSameAsAnsibleInventory reads every inventory with `ansible-inventory --list` and with
// ParseFile: the same hosts, each with the same variables (merged as Ansible merges them).
func TestSameAsAnsibleInventory(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("ansible-inventory")
	if err != nil {
		if os.Getenv("KPS_REQUIRE_SSHD") != "" {
			t.Fatal("ansible-inventory is required (Debian package ansible-core; .ci/run installs it)")
		}
		t.Skip("ansible-inventory is not installed (Debian package ansible-core)")
	}
	for _, file := range inventories {
		t.Run(filepath.Base(filepath.Dir(file)), func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(bin, "-i", file, "--list")
			cmd.Env = append(os.Environ(), "ANSIBLE_HOME="+t.TempDir(), "ANSIBLE_LOCAL_TEMP="+t.TempDir())
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("ansible-inventory: %v\n%s", err, out)
			}
			var want struct {
				Meta struct {
					HostVars map[string]map[string]any `json:"hostvars"`
				} `json:"_meta"`
			}
			if err := json.Unmarshal(out, &want); err != nil {
				t.Fatal(err)
			}
			hosts, err := ParseFile(file, "")
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]map[string]any{}
			for _, h := range hosts {
				got[h.Name] = jsonRoundTrip(t, h.Vars)
			}
			if !reflect.DeepEqual(names(got), names(want.Meta.HostVars)) {
				t.Fatalf("hosts:\n got %v\nwant %v", names(got), names(want.Meta.HostVars))
			}
			for name, w := range want.Meta.HostVars {
				if w == nil {
					w = map[string]any{}
				}
				if !reflect.DeepEqual(got[name], w) {
					t.Errorf("%s:\n got %v\nwant %v", name, got[name], w)
				}
			}
		})
	}
}

func jsonRoundTrip(t *testing.T, v map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]any{}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func names[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestGroupsAndOrder: hosts come in the order of the file, with every group they belong to.
func TestGroupsAndOrder(t *testing.T) {
	t.Parallel()
	hosts, err := ParseFile("testdata/ini/hosts", "")
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	groups := map[string][]string{}
	for _, h := range hosts {
		order = append(order, h.Name)
		groups[h.Name] = h.Groups
	}
	if order[0] != "bastion.example.net" || order[1] != "web-01" || order[4] != "web04.example.com" {
		t.Fatalf("order %v", order)
	}
	if g := groups["web-01"]; !reflect.DeepEqual(g, []string{"frontends", "prod", "web"}) {
		t.Fatalf("groups of web-01: %v", g)
	}
	if g := groups["bastion.example.net"]; !reflect.DeepEqual(g, []string{"ungrouped"}) {
		t.Fatalf("groups of bastion: %v", g)
	}
}

// TestRefusedByName: what this package cannot honour is an error that names the construct and
// its line, never a silent skip.
func TestRefusedByName(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, format, text, want string
		line                     int
	}{
		{"unknown section type", "ini", "[web]\nweb-01\n[web:hostvars]\nx=1\n", "unknown type \"hostvars\"", 3},
		{"vars of an undeclared group", "ini", "[web]\nweb-01\n[ghost:vars]\nx=1\n", "[ghost:vars]", 3},
		{"undeclared child", "ini", "[prod:children]\nweb\n", "names group web", 2},
		{"bad host variable", "ini", "[web]\nweb-01 standalone\n", "key=value", 2},
		{"unclosed quote", "ini", "[web]\nweb-01 a='x\n", "closing quotation", 2},
		{"bad range", "ini", "[web]\nweb[1:]\n", "must have an end", 2},
		{"unequal widths", "ini", "[web]\nweb[01:100]\n", "same width", 2},
		{"port colon", "ini", "[web]\nweb-01:\n", "reserved for a port", 2},
		{"section with a space", "ini", "[web servers]\n", "invalid section", 1},
		{"loop", "ini", "[a:children]\nb\n[b:children]\na\n", "loop", 4},
		{"unknown YAML key", "yaml", "all:\n  hosts:\n    a:\n  host_vars:\n    a: {}\n", `"host_vars"`, 4},
		{"vault value", "yaml", "all:\n  vars:\n    ansible_password: !vault |\n      $ANSIBLE_VAULT;1.1;AES256\n      6134\n", "Ansible Vault", 3},
		{"vault file", "yaml", "$ANSIBLE_VAULT;1.1;AES256\n3131\n", "Ansible Vault", 1},
		{"plugin configuration", "yaml", "plugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n", "inventory plugin", 1},
		{"group not a mapping", "yaml", "all:\n  children:\n    web: [a, b]\n", "group web must be a mapping", 3},
		{"numeric host", "yaml", "all:\n  hosts:\n    123:\n", "quote it", 3},
	}
	for _, c := range cases {
		_, err := Parse("inv", []byte(c.text), c.format, "")
		var e *Error
		if !errors.As(err, &e) || !strings.Contains(e.Msg, c.want) || e.Line != c.line || !strings.HasPrefix(err.Error(), "inv:") {
			t.Errorf("%s: %v (line %d), want %q at line %d", c.name, err, lineOf(e), c.want, c.line)
		}
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "group_vars"), 0o755)
	os.WriteFile(filepath.Join(dir, "group_vars", "all.yml"), []byte("$ANSIBLE_VAULT;1.1;AES256\n3131\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "hosts"), []byte("web-01\n"), 0o644)
	if _, err := ParseFile(filepath.Join(dir, "hosts"), ""); err == nil || !strings.Contains(err.Error(), "group_vars/all.yml") {
		t.Errorf("vaulted group_vars: %v", err)
	}
	if _, err := ParseFile(dir, ""); err == nil || !strings.Contains(err.Error(), "inventory directory") {
		t.Errorf("directory: %v", err)
	}
}

func lineOf(e *Error) int {
	if e == nil {
		return -1
	}
	return e.Line
}

func TestExpandHostPattern(t *testing.T) {
	t.Parallel()
	cases := map[string][]string{
		"web[01:03]":          {"web01", "web02", "web03"},
		"db-[a:c].x":          {"db-a.x", "db-b.x", "db-c.x"},
		"n[0:10:5]":           {"n0", "n5", "n10"},
		"r[1:2]-[a:b]":        {"r1-a", "r1-b", "r2-a", "r2-b"},
		"plain":               {"plain"},
		"fe80::1":             {"fe80::1"},
		"10.0.0.[1:2]":        {"10.0.0.1", "10.0.0.2"},
		"web[8:10].example.x": {"web8.example.x", "web9.example.x", "web10.example.x"},
	}
	for p, want := range cases {
		got, port, err := expandHostPattern(p)
		if err != nil || port != 0 || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %v %d %v, want %v", p, got, port, err, want)
		}
	}
	for p, want := range map[string]int{"h:2222": 2222, "[::1]:2022": 2022, "web[1:2]:22": 22} {
		if _, port, err := expandHostPattern(p); err != nil || port != want {
			t.Errorf("%s: port %d %v", p, port, err)
		}
	}
	if _, _, err := expandHostPattern("h[1:1000000]"); err == nil {
		t.Error("a huge range was expanded")
	}
}
