// Package inventory reads Ansible inventories (INI and YAML) with Ansible's semantics, so that
// `kps server import` registers the hosts Ansible would reach, the way Ansible would reach
// them: host ranges expand, children inherit their parents' group variables, group_vars/ and
// host_vars/ beside the file apply, and variables merge in Ansible's order of precedence
// (ansible-core 2.14: inventory/helpers.py sort_groups, vars/manager.py get_vars). What it
// cannot honour — an unknown section or key, a vault-encrypted value, a plugin configuration —
// is refused with its name and line, never skipped. The package depends on nothing of this
// repository; a test compares its reading with `ansible-inventory --list`.
package inventory

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Host is one host of an inventory with its variables merged as Ansible merges them.
type Host struct {
	Name   string
	Vars   map[string]any
	Groups []string // every group the host belongs to, ancestors included, "all" excluded; by name
}

// Error is a construct of the inventory that cannot be honoured or parsed, with where it is.
type Error struct {
	File string
	Line int // 0 when unknown
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return e.File + ": " + e.Msg
}

// group is an Ansible group: its own variables, children and hosts.
type group struct {
	name     string
	vars     map[string]any
	children []*group
	parents  []*group
	hosts    []string
	depth    int
	priority int
}

// setVar is Group.set_variable: ansible_group_priority sets the group's priority instead of
// a variable.
func (g *group) setVar(k string, v any) {
	if k != "ansible_group_priority" {
		g.vars[k] = v
		return
	}
	switch x := v.(type) {
	case int:
		g.priority = x
	case string:
		fmt.Sscanf(x, "%d", &g.priority)
	}
}

// inventory is what a parser builds: groups by name, hosts in first-seen order and their own
// variables (later assignments win, as Host.set_variable does).
type inventory struct {
	file     string
	groups   map[string]*group
	order    []string // host names, first seen first
	hostVars map[string]map[string]any
}

func newInventory(file string) *inventory {
	inv := &inventory{file: file, groups: map[string]*group{}, hostVars: map[string]map[string]any{}}
	inv.group("all")
	inv.group("ungrouped")
	return inv
}

func (inv *inventory) group(name string) *group {
	g, ok := inv.groups[name]
	if !ok {
		g = &group{name: name, vars: map[string]any{}, priority: 1}
		inv.groups[name] = g
	}
	return g
}

// addHost adds a host to a group; port, when not 0, becomes its ansible_port (data.py add_host).
func (inv *inventory) addHost(name string, g *group, port int) {
	if _, ok := inv.hostVars[name]; !ok {
		inv.hostVars[name] = map[string]any{}
		inv.order = append(inv.order, name)
	}
	if g != nil && !contains(g.hosts, name) {
		g.hosts = append(g.hosts, name)
	}
	if port != 0 {
		inv.hostVars[name]["ansible_port"] = port
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// addChild makes child a child of parent, refusing cycles as Ansible does.
func (inv *inventory) addChild(parent, child *group, line int) error {
	if parent == child || child.ancestor(parent) {
		return &Error{inv.file, line, fmt.Sprintf("adding group '%s' as a child of '%s' creates a loop", child.name, parent.name)}
	}
	for _, c := range parent.children {
		if c == child {
			return nil
		}
	}
	parent.children = append(parent.children, child)
	child.parents = append(child.parents, parent)
	return nil
}

// ancestor reports whether g is an ancestor of a (or a itself).
func (a *group) ancestor(g *group) bool {
	if a == g {
		return true
	}
	for _, c := range a.children {
		if c.ancestor(g) {
			return true
		}
	}
	return false
}

// finish attaches top-level groups to all and hosts without a group to ungrouped, computes
// the depths (the longest path from all) and returns every host with its variables merged.
func (inv *inventory) finish(varsDir string) ([]Host, error) {
	all, ungrouped := inv.groups["all"], inv.groups["ungrouped"]
	names := make([]string, 0, len(inv.groups))
	for n := range inv.groups {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if g := inv.groups[n]; g != all && len(g.parents) == 0 {
			if err := inv.addChild(all, g, 0); err != nil {
				return nil, err
			}
		}
	}
	member := map[string]bool{}
	for _, g := range inv.groups {
		if g != all {
			for _, h := range g.hosts {
				member[h] = true
			}
		}
	}
	for _, h := range inv.order {
		if !member[h] {
			ungrouped.hosts = append(ungrouped.hosts, h)
		}
	}
	var setDepth func(g *group, d int)
	setDepth = func(g *group, d int) {
		if d < g.depth {
			return
		}
		g.depth = d
		for _, c := range g.children {
			setDepth(c, d+1)
		}
	}
	setDepth(all, 0)

	files := &varsFiles{dir: varsDir, file: inv.file, cache: map[string]map[string]any{}}
	allGroupFiles, err := files.vars("group_vars", "all")
	if err != nil {
		return nil, err
	}
	hosts := make([]Host, 0, len(inv.order))
	for _, name := range inv.order {
		groups := inv.groupsOf(name)
		// vars/manager.py get_vars with the default VARIABLE_PRECEDENCE: all, the other
		// groups (by depth, priority, name), group_vars/all, group_vars/<group>, then the
		// host's own variables and host_vars/<host>.
		vars := map[string]any{}
		merge(vars, all.vars)
		for _, g := range groups {
			merge(vars, g.vars)
		}
		merge(vars, allGroupFiles)
		for _, g := range groups {
			gv, err := files.vars("group_vars", g.name)
			if err != nil {
				return nil, err
			}
			merge(vars, gv)
		}
		merge(vars, inv.hostVars[name])
		hv, err := files.vars("host_vars", name)
		if err != nil {
			return nil, err
		}
		merge(vars, hv)
		h := Host{Name: name, Vars: vars}
		for _, g := range groups {
			h.Groups = append(h.Groups, g.name)
		}
		sort.Strings(h.Groups)
		hosts = append(hosts, h)
	}
	return hosts, nil
}

// groupsOf returns the groups of a host and all their ancestors except all, in the order
// Ansible merges their variables: depth, then ansible_group_priority, then name.
func (inv *inventory) groupsOf(host string) []*group {
	set := map[*group]bool{}
	var up func(g *group)
	up = func(g *group) {
		if set[g] {
			return
		}
		set[g] = true
		for _, p := range g.parents {
			up(p)
		}
	}
	for _, g := range inv.groups {
		if contains(g.hosts, host) {
			up(g)
		}
	}
	var out []*group
	for g := range set {
		if g.name != "all" {
			out = append(out, g)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.depth != b.depth {
			return a.depth < b.depth
		}
		if a.priority != b.priority {
			return a.priority < b.priority
		}
		return a.name < b.name
	})
	return out
}

// merge is combine_vars with hash_behaviour=replace: top-level keys replace.
func merge(dst, src map[string]any) {
	for k, v := range src {
		dst[k] = v
	}
}

// varsFiles reads group_vars/ and host_vars/ beside the inventory file (the host_group_vars
// vars plugin): NAME, NAME.yml, NAME.yaml or NAME.json — the first that exists — or every file
// of a directory NAME/ in name order.
type varsFiles struct {
	dir, file string
	cache     map[string]map[string]any
}

func (f *varsFiles) vars(sub, name string) (map[string]any, error) {
	if f.dir == "" || strings.HasPrefix(name, "/") {
		return nil, nil
	}
	key := sub + "/" + name
	if v, ok := f.cache[key]; ok {
		return v, nil
	}
	base := filepath.Join(f.dir, sub, name)
	var found []string
	for _, ext := range []string{"", ".yml", ".yaml", ".json"} {
		st, err := os.Stat(base + ext)
		if err != nil {
			continue
		}
		if st.IsDir() {
			found = dirFiles(base + ext)
		} else {
			found = []string{base + ext}
		}
		break
	}
	out := map[string]any{}
	for _, path := range found {
		v, err := readVarsFile(path)
		if err != nil {
			return nil, err
		}
		merge(out, v)
	}
	f.cache[key] = out
	return out, nil
}

func dirFiles(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries { // ReadDir sorts by name
		n := e.Name()
		if strings.HasPrefix(n, ".") || strings.HasSuffix(n, "~") {
			continue
		}
		ext := filepath.Ext(n)
		p := filepath.Join(dir, n)
		switch {
		case e.IsDir() && ext == "":
			out = append(out, dirFiles(p)...)
		case !e.IsDir() && (ext == "" || ext == ".yml" || ext == ".yaml" || ext == ".json"):
			out = append(out, p)
		}
	}
	return out
}

// readVarsFile reads one variables file: a YAML (or JSON) mapping.
func readVarsFile(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{path, 0, err.Error()}
	}
	if strings.HasPrefix(string(b), "$ANSIBLE_VAULT") {
		return nil, &Error{path, 1, "the file is encrypted with Ansible Vault, which kps cannot decrypt"}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, &Error{path, 0, "not YAML: " + err.Error()}
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	v, err := yamlValue(path, doc.Content[0])
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok && v != nil {
		return nil, &Error{path, doc.Content[0].Line, "a variables file must hold a mapping"}
	}
	return m, nil
}

// ParseFile reads the inventory at path: format "ini", "yaml" or "" to decide as Ansible's
// plugins do (a YAML inventory ends in .yml, .yaml or .json; anything else is tried as INI).
// The group_vars/ and host_vars/ directories beside the file apply.
func ParseFile(path, format string) ([]Host, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, &Error{path, 0, "an inventory directory is not read; import its files one at a time"}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, b, format, filepath.Dir(path))
}

// Parse reads an inventory from data; file names it in errors, and varsDir ("" for none) is
// where group_vars/ and host_vars/ are looked for.
func Parse(file string, data []byte, format, varsDir string) ([]Host, error) {
	if format == "" {
		format = DetectFormat(file, data)
	}
	inv := newInventory(file)
	var err error
	switch format {
	case "ini":
		err = inv.parseINI(string(data))
	case "yaml":
		err = inv.parseYAML(data)
	default:
		return nil, &Error{file, 0, fmt.Sprintf("unknown inventory format %q (ini or yaml)", format)}
	}
	if err != nil {
		return nil, err
	}
	return inv.finish(varsDir)
}

// DetectFormat tells YAML from INI as Ansible's plugins do: by extension, and for a file
// without one (Ansible's default /etc/ansible/hosts) the YAML plugin is tried first and wins
// when the text is a YAML mapping.
func DetectFormat(file string, data []byte) string {
	switch strings.ToLower(filepath.Ext(file)) {
	case ".yml", ".yaml", ".json":
		return "yaml"
	case "":
		var doc yaml.Node
		if yaml.Unmarshal(data, &doc) == nil && len(doc.Content) == 1 && doc.Content[0].Kind == yaml.MappingNode {
			return "yaml"
		}
	}
	return "ini"
}
