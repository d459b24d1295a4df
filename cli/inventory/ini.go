package inventory

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// sectionRE is Ansible's section header: [group] or [group:kind], then an optional comment.
var sectionRE = regexp.MustCompile(`^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$`)

// groupNameRE is a line of a [group:children] section.
var groupNameRE = regexp.MustCompile(`^([^:\]\s]+)\s*(?:#.*)?$`)

// parseINI follows ansible/plugins/inventory/ini.py: the text begins in [ungrouped], [g]
// holds hosts, [g:vars] variables and [g:children] groups; a group may be used as a child
// before it is declared, but [g:vars] needs g declared somewhere.
func (inv *inventory) parseINI(text string) error {
	type pending struct {
		line    int
		kind    string
		parents []*group
	}
	waiting := map[string]*pending{}
	var waitOrder []string
	declared := map[string]bool{"all": true, "ungrouped": true}
	current, kind := inv.group("ungrouped"), "hosts"
	fail := func(n int, format string, args ...any) error {
		return &Error{inv.file, n, fmt.Sprintf(format, args...)}
	}
	for n, raw := range strings.Split(text, "\n") {
		n++
		line := strings.TrimSpace(raw)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if m := sectionRE.FindStringSubmatch(line); m != nil {
			name, k := m[1], m[2]
			if k == "" {
				k = "hosts"
			}
			if k != "hosts" && k != "children" && k != "vars" {
				return fail(n, "section [%s:%s] has unknown type %q (hosts, children or vars)", name, k, k)
			}
			current, kind = inv.group(name), k
			if !declared[name] && k != "vars" {
				declared[name] = true
			}
			if p, ok := waiting[name]; ok && k != "vars" {
				if p.kind == "children" {
					for _, parent := range p.parents {
						if err := inv.addChild(parent, current, p.line); err != nil {
							return err
						}
					}
				}
				delete(waiting, name)
			} else if !declared[name] && k == "vars" && waiting[name] == nil {
				waiting[name] = &pending{line: n, kind: "vars"}
				waitOrder = append(waitOrder, name)
			}
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			return fail(n, "invalid section %s: no spaces or other characters are allowed in a section header", line)
		}
		switch kind {
		case "hosts":
			tokens, err := shlexSplit(line)
			if err != nil {
				return fail(n, "host line %q: %v", line, err)
			}
			names, port, err := expandHostPattern(tokens[0])
			if err != nil {
				return fail(n, "%v", err)
			}
			vars := map[string]any{}
			var keys []string
			for _, t := range tokens[1:] {
				k, v, ok := strings.Cut(t, "=")
				if !ok {
					return fail(n, "expected key=value host variable, got %q", t)
				}
				if _, dup := vars[k]; !dup {
					keys = append(keys, k)
				}
				vars[k] = literal(v)
			}
			for _, h := range names {
				inv.addHost(h, current, port)
				for _, k := range keys {
					inv.hostVars[h][k] = vars[k]
				}
			}
		case "vars":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				return fail(n, "expected key=value, got %q", line)
			}
			current.setVar(strings.TrimSpace(k), literal(strings.TrimSpace(v)))
		case "children":
			m := groupNameRE.FindStringSubmatch(line)
			if m == nil {
				return fail(n, "expected a group name, got %q", line)
			}
			child := m[1]
			if declared[child] {
				if err := inv.addChild(current, inv.group(child), n); err != nil {
					return err
				}
				continue
			}
			p := waiting[child]
			if p == nil || p.kind == "vars" {
				if p == nil {
					waitOrder = append(waitOrder, child)
				}
				p = &pending{line: n, kind: "children"}
				waiting[child] = p
			}
			p.parents = append(p.parents, current)
		}
	}
	for _, name := range waitOrder {
		p, ok := waiting[name]
		if !ok {
			continue
		}
		if p.kind == "vars" {
			return fail(p.line, "section [%s:vars] is for a group that is declared nowhere", name)
		}
		return fail(p.line, "section [%s:children] names group %s, which is declared nowhere", p.parents[len(p.parents)-1].name, name)
	}
	return nil
}

// shlexSplit is Python's shlex.split(line, comments=True) (POSIX mode): words split on
// blanks, '…' and "…" quoting, backslash escapes, and an unquoted # ending the line.
func shlexSplit(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '#':
			i = len(s)
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("no closing quotation")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\\\"$`\n", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("no closing quotation")
			}
			inWord = true
		case c == '\\':
			if i+1 >= len(s) {
				return nil, fmt.Errorf("no escaped character")
			}
			i++
			cur.WriteByte(s[i])
			inWord = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no host name")
	}
	return out, nil
}

// Unparsed is an INI value that Python's ast.literal_eval reads as a structure (a list, a
// tuple, a dict, a set or a complex number) that this package does not rebuild; it keeps the
// text so that a variable kps honours can be refused by name.
type Unparsed string

var (
	pyDecimal = regexp.MustCompile(`^[+-]?(?:0(?:_?0)*|[1-9](?:_?[0-9])*)$`)
	pyRadix   = regexp.MustCompile(`^[+-]?0(?:[xX](?:_?[0-9a-fA-F])+|[oO](?:_?[0-7])+|[bB](?:_?[01])+)$`)
	pyFloat   = regexp.MustCompile(`^[+-]?(?:(?:[0-9](?:_?[0-9])*)?\.[0-9](?:_?[0-9])*|[0-9](?:_?[0-9])*\.?)(?:[eE][+-]?[0-9](?:_?[0-9])*)?$`)
)

// literal is ini.py's _parse_value: ast.literal_eval of the text, or the text itself when it
// is not a Python literal.
func literal(v string) any {
	t := strings.TrimSpace(v)
	switch t {
	case "True":
		return true
	case "False":
		return false
	case "None":
		return nil
	case "":
		return v
	}
	switch {
	case pyDecimal.MatchString(t) || pyRadix.MatchString(t):
		n, err := strconv.ParseInt(strings.ReplaceAll(t, "_", ""), 0, 64)
		if err == nil {
			return int(n)
		}
		return v
	case pyFloat.MatchString(t) && strings.ContainsAny(t, ".eE"):
		f, err := strconv.ParseFloat(strings.ReplaceAll(t, "_", ""), 64)
		if err == nil && !math.IsInf(f, 0) {
			return f
		}
		return v
	case len(t) >= 2 && (t[0] == '\'' || t[0] == '"') && t[len(t)-1] == t[0]:
		if s, ok := pyString(t); ok {
			return s
		}
		return v
	case t[0] == '[' || t[0] == '(' || t[0] == '{':
		return Unparsed(v)
	}
	return v
}

// pyString reads one quoted Python string literal with the common escapes.
func pyString(t string) (string, bool) {
	q := t[0]
	body := t[1 : len(t)-1]
	if len(t) >= 6 && strings.HasPrefix(t, strings.Repeat(string(q), 3)) {
		return "", false // a triple-quoted string: left as text
	}
	var b strings.Builder
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c == q {
			return "", false // two adjacent literals, or a stray quote
		}
		if c != '\\' || i+1 == len(body) {
			b.WriteByte(c)
			continue
		}
		i++
		switch body[i] {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case '\\', '\'', '"':
			b.WriteByte(body[i])
		case '\n':
		default:
			b.WriteByte('\\')
			b.WriteByte(body[i])
		}
	}
	return b.String(), true
}

// expandHostPattern splits an optional :port off a host pattern (parse_address) and expands
// its [a:b] and [a:b:step] ranges (expand_hostname_range), numeric with Ansible's padding or
// alphabetic.
func expandHostPattern(p string) ([]string, int, error) {
	host, port := p, 0
	if i := lastColonOutsideBrackets(p); i > 0 {
		h, digits := p[:i], p[i+1:]
		if digits == "" {
			return nil, 0, fmt.Errorf("invalid host pattern %q: ending in ':' is not allowed, the character is reserved for a port", p)
		}
		n, err := strconv.Atoi(digits)
		switch {
		case err != nil || n <= 0 || n > 65535:
		case strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") && strings.Contains(h, ":"):
			host, port = h[1:len(h)-1], n // [IPv6]:port
		case lastColonOutsideBrackets(h) < 0:
			host, port = h, n
		}
	}
	if host == "---" {
		return nil, 0, fmt.Errorf("invalid host pattern '---': that is the start of a YAML document")
	}
	if !strings.Contains(host, "[") {
		return []string{host}, port, nil
	}
	names, err := expandRange(host)
	return names, port, err
}

func lastColonOutsideBrackets(s string) int {
	depth, last := 0, -1
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[':
			depth++
		case ']':
			depth--
		case ':':
			if depth == 0 {
				last = i
			}
		}
	}
	return last
}

const asciiLetters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

// maxRange bounds the hosts one pattern may expand to, so that a typo like [1:100000000]
// is an error and not an import of a hundred million servers.
const maxRange = 100000

func expandRange(s string) ([]string, error) {
	open := strings.IndexByte(s, '[')
	close := strings.IndexByte(s, ']')
	if open < 0 || close < open {
		return nil, fmt.Errorf("host pattern %q: unbalanced brackets", s)
	}
	head, nrange, tail := s[:open], s[open+1:close], s[close+1:]
	bounds := strings.Split(nrange, ":")
	if len(bounds) != 2 && len(bounds) != 3 {
		return nil, fmt.Errorf("host range [%s]: it must be begin:end or begin:end:step", nrange)
	}
	beg, end, step := bounds[0], bounds[1], 1
	if len(bounds) == 3 {
		n, err := strconv.Atoi(bounds[2])
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("host range [%s]: the step must be a positive number", nrange)
		}
		step = n
	}
	if beg == "" {
		beg = "0"
	}
	if end == "" {
		return nil, fmt.Errorf("host range [%s]: it must have an end", nrange)
	}
	width := 0
	if beg[0] == '0' && len(beg) > 1 {
		width = len(beg)
		if width != len(end) {
			return nil, fmt.Errorf("host range [%s]: begin and end must have the same width", nrange)
		}
	}
	var seq []string
	ib, ie := strings.Index(asciiLetters, beg), strings.Index(asciiLetters, end)
	if len(beg) == 1 && len(end) == 1 && ib >= 0 && ie >= 0 {
		if ib > ie {
			return nil, fmt.Errorf("host range [%s]: begin must not be after end", nrange)
		}
		for i := ib; i <= ie; i += step {
			seq = append(seq, asciiLetters[i:i+1])
		}
	} else {
		b, err1 := strconv.Atoi(beg)
		e, err2 := strconv.Atoi(end)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("host range [%s]: begin and end must be numbers or single letters", nrange)
		}
		if (e-b)/step >= maxRange {
			return nil, fmt.Errorf("host range [%s] expands to more than %d hosts", nrange, maxRange)
		}
		for i := b; i <= e; i += step {
			seq = append(seq, fmt.Sprintf("%0*d", width, i))
		}
	}
	var out []string
	for _, x := range seq {
		name := head + x + tail
		if strings.Contains(name, "[") {
			more, err := expandRange(name)
			if err != nil {
				return nil, err
			}
			out = append(out, more...)
			continue
		}
		out = append(out, name)
	}
	if len(out) > maxRange {
		return nil, fmt.Errorf("host pattern %q expands to more than %d hosts", s, maxRange)
	}
	return out, nil
}
