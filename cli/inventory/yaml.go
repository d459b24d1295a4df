package inventory

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// parseYAML follows ansible/plugins/inventory/yaml.py: top-level keys are groups, each a
// mapping of hosts, vars and children (children being groups again). Where Ansible warns and
// skips (an unexpected key, a group that is not a mapping), this refuses by name.
func (inv *inventory) parseYAML(data []byte) error {
	if strings.HasPrefix(string(data), "$ANSIBLE_VAULT") {
		return &Error{inv.file, 1, "the file is encrypted with Ansible Vault, which kps cannot decrypt"}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return &Error{inv.file, 0, "not YAML: " + err.Error()}
	}
	if len(doc.Content) == 0 {
		return &Error{inv.file, 0, "the inventory is empty"}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return &Error{inv.file, root.Line, "a YAML inventory must be a mapping of groups"}
	}
	for i := 0; i < len(root.Content); i += 2 {
		if root.Content[i].Value == "plugin" {
			return &Error{inv.file, root.Content[i].Line, "this is the configuration of an inventory plugin, not an inventory; kps reads only static INI and YAML inventories"}
		}
	}
	for i := 0; i < len(root.Content); i += 2 {
		if _, err := inv.yamlGroup(root.Content[i], root.Content[i+1]); err != nil {
			return err
		}
	}
	return nil
}

func (inv *inventory) yamlGroup(key, node *yaml.Node) (*group, error) {
	g := inv.group(key.Value)
	if isNull(node) {
		return g, nil
	}
	if node.Kind != yaml.MappingNode {
		return nil, &Error{inv.file, node.Line, fmt.Sprintf("group %s must be a mapping of hosts, vars and children", key.Value)}
	}
	for i := 0; i < len(node.Content); i += 2 {
		k, v := node.Content[i], node.Content[i+1]
		if k.Value != "hosts" && k.Value != "vars" && k.Value != "children" {
			return nil, &Error{inv.file, k.Line, fmt.Sprintf("group %s has the key %q: only hosts, vars and children are valid", key.Value, k.Value)}
		}
		if isNull(v) {
			continue
		}
		if v.Kind == yaml.ScalarNode {
			// A string is allowed for a one-entry section: "hosts: web-01".
			v = &yaml.Node{Kind: yaml.MappingNode, Line: v.Line, Content: []*yaml.Node{v, {Kind: yaml.ScalarNode, Tag: "!!null"}}}
		}
		if v.Kind != yaml.MappingNode {
			return nil, &Error{inv.file, v.Line, fmt.Sprintf("%s of group %s must be a mapping", k.Value, key.Value)}
		}
		if k.Value == "vars" {
			// Decoded as one mapping, so that merge keys (<<: *anchor) apply.
			x, err := yamlValue(inv.file, v)
			if err != nil {
				return nil, err
			}
			for name, val := range x.(map[string]any) {
				g.setVar(name, val)
			}
			continue
		}
		for j := 0; j < len(v.Content); j += 2 {
			name, val := v.Content[j], v.Content[j+1]
			switch k.Value {
			case "children":
				child, err := inv.yamlGroup(name, val)
				if err != nil {
					return nil, err
				}
				if err := inv.addChild(g, child, name.Line); err != nil {
					return nil, err
				}
			case "hosts":
				if name.ShortTag() != "!!str" {
					return nil, &Error{inv.file, name.Line, fmt.Sprintf("host pattern %s must be a string: quote it", name.Value)}
				}
				hosts, port, err := expandHostPattern(name.Value)
				if err != nil {
					return nil, &Error{inv.file, name.Line, err.Error()}
				}
				vars := map[string]any{}
				if !isNull(val) {
					x, err := yamlValue(inv.file, val)
					if err != nil {
						return nil, err
					}
					m, ok := x.(map[string]any)
					if !ok {
						return nil, &Error{inv.file, val.Line, fmt.Sprintf("the variables of host %s must be a mapping", name.Value)}
					}
					vars = m
				}
				for _, h := range hosts {
					inv.addHost(h, g, port)
					merge(inv.hostVars[h], vars)
				}
			}
		}
	}
	return g, nil
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// yamlValue turns a node into a Go value as PyYAML's SafeLoader (YAML 1.1) would, which is
// what Ansible loads inventories with: yes/no/on/off are booleans, 0755 is octal, 1_000 an
// integer. A vault-encrypted value is refused.
func yamlValue(file string, n *yaml.Node) (any, error) {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return yamlValue(file, n.Content[0])
	case yaml.AliasNode:
		return yamlValue(file, n.Alias)
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := yamlValue(file, c)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.MappingNode:
		out := map[string]any{}
		for i := 0; i < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.ScalarNode && k.Value == "<<" && k.ShortTag() == "!!merge" {
				base, err := yamlValue(file, v)
				if err != nil {
					return nil, err
				}
				if m, ok := base.(map[string]any); ok {
					for bk, bv := range m {
						if _, set := out[bk]; !set {
							out[bk] = bv
						}
					}
				}
				continue
			}
			x, err := yamlValue(file, v)
			if err != nil {
				return nil, err
			}
			out[k.Value] = x
		}
		return out, nil
	}
	if n.Style&yaml.TaggedStyle != 0 {
		switch n.ShortTag() {
		case "!vault":
			return nil, &Error{file, n.Line, "a value is encrypted with Ansible Vault (!vault), which kps cannot decrypt"}
		case "!unsafe", "!!str", "!!binary":
			return n.Value, nil
		case "!!null":
			return nil, nil
		case "!!int", "!!float", "!!bool":
			return resolve11(n.Value), nil
		}
		return nil, &Error{file, n.Line, fmt.Sprintf("a value has the tag %s, which kps does not read", n.Tag)}
	}
	if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		return n.Value, nil
	}
	return resolve11(n.Value), nil
}

var (
	yaml11Bool  = map[string]bool{"yes": true, "Yes": true, "YES": true, "true": true, "True": true, "TRUE": true, "on": true, "On": true, "ON": true, "no": false, "No": false, "NO": false, "false": false, "False": false, "FALSE": false, "off": false, "Off": false, "OFF": false}
	yaml11Int   = regexp.MustCompile(`^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$`)
	yaml11Float = regexp.MustCompile(`^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9_]+(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$`)
)

// resolve11 resolves a plain scalar with PyYAML's implicit resolvers.
func resolve11(s string) any {
	switch s {
	case "", "~", "null", "Null", "NULL":
		return nil
	}
	if b, ok := yaml11Bool[s]; ok {
		return b
	}
	if yaml11Int.MatchString(s) {
		if n, ok := int11(s); ok {
			return n
		}
	}
	if yaml11Float.MatchString(s) {
		if f, ok := float11(s); ok {
			return f
		}
	}
	return s
}

func int11(s string) (int, bool) {
	v := strings.ReplaceAll(s, "_", "")
	sign := 1
	if v != "" && (v[0] == '-' || v[0] == '+') {
		if v[0] == '-' {
			sign = -1
		}
		v = v[1:]
	}
	var n int64
	var err error
	switch {
	case v == "0":
		return 0, true
	case strings.HasPrefix(v, "0b"):
		n, err = strconv.ParseInt(v[2:], 2, 64)
	case strings.HasPrefix(v, "0x"):
		n, err = strconv.ParseInt(v[2:], 16, 64)
	case v[0] == '0':
		n, err = strconv.ParseInt(v[1:], 8, 64)
	case strings.Contains(v, ":"):
		for _, part := range strings.Split(v, ":") {
			d, e := strconv.ParseInt(part, 10, 64)
			if e != nil {
				return 0, false
			}
			n = n*60 + d
		}
	default:
		n, err = strconv.ParseInt(v, 10, 64)
	}
	if err != nil {
		return 0, false
	}
	return sign * int(n), true
}

func float11(s string) (float64, bool) {
	v := strings.ReplaceAll(s, "_", "")
	switch strings.ToLower(strings.TrimLeft(v, "+-")) {
	case ".inf":
		if strings.HasPrefix(v, "-") {
			return math.Inf(-1), true
		}
		return math.Inf(1), true
	case ".nan":
		return math.NaN(), true
	}
	if strings.Contains(v, ":") {
		return 0, false // sexagesimal floats: left as text
	}
	f, err := strconv.ParseFloat(v, 64)
	return f, err == nil
}
