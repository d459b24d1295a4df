package kps

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// AllowedTargets is the operator's allow-list of the networks and ports servers may point at
// (`kps serve --allowed-targets`): without it a member could register any address and port and
// use the service to probe the networks it reaches. The zero value allows everything.
//
// It is checked twice: when a server is registered or its address or port change (IP literals;
// KPS.6023), and when a task connects, on every address a host name resolves to, before any TCP
// connection is made (the task fails with KPS.6601).
type AllowedTargets struct {
	rules []targetRule
}

// targetRule is one entry: a network and a port range (lo = 0: every port).
type targetRule struct {
	prefix netip.Prefix
	lo, hi uint16
}

// ParseAllowedTargets reads a comma-separated list of entries, each a network with an optional
// port or port range:
//
//	10.0.0.0/8              every port of a network
//	192.168.1.0/24:22       one port
//	10.1.2.3:2200-2299      a single address (a /32 or /128), a range of ports
//	2001:db8::/32           an IPv6 network, every port
//	[2001:db8::]/32:22-2222 an IPv6 network with ports: the address in brackets
//
// An empty list allows everything; a list that names nothing (",") is an error, since it
// would otherwise read as "everything".
func ParseAllowedTargets(list string) (AllowedTargets, error) {
	var a AllowedTargets
	if strings.TrimSpace(list) == "" {
		return a, nil
	}
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		r, err := parseTargetRule(item)
		if err != nil {
			return AllowedTargets{}, err
		}
		a.rules = append(a.rules, r)
	}
	if len(a.rules) == 0 {
		return AllowedTargets{}, fmt.Errorf("%q names no network", list)
	}
	return a, nil
}

func parseTargetRule(item string) (targetRule, error) {
	bad := func(why string) error {
		return fmt.Errorf("%q: %s (want CIDR, CIDR:PORT, CIDR:LOW-HIGH or [IPv6]/BITS:PORTS)", item, why)
	}
	var network, ports string
	if rest, ok := strings.CutPrefix(item, "["); ok {
		addr, after, ok := strings.Cut(rest, "]")
		if !ok {
			return targetRule{}, bad("unclosed '['")
		}
		network = addr
		if b, ok := strings.CutPrefix(after, "/"); ok {
			var bits string
			bits, after, _ = strings.Cut(b, ":")
			network += "/" + bits
			if strings.Contains(b, ":") {
				after = ":" + after
			}
		}
		switch {
		case after == "":
		case strings.HasPrefix(after, ":") && len(after) > 1:
			ports = after[1:]
		default:
			return targetRule{}, bad("a port must follow ':'")
		}
	} else if strings.Count(item, ":") >= 2 {
		network = item // an IPv6 network without ports
	} else {
		var colon bool
		network, ports, colon = strings.Cut(item, ":")
		if colon && ports == "" {
			return targetRule{}, bad("a port must follow ':'")
		}
	}
	var r targetRule
	if strings.Contains(network, "/") {
		p, err := netip.ParsePrefix(network)
		if err != nil {
			return targetRule{}, bad("not a network")
		}
		if p.Addr().Zone() != "" {
			return targetRule{}, bad("no zone is allowed")
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		r.prefix = p.Masked()
	} else {
		a, err := netip.ParseAddr(network)
		if err != nil || a.Zone() != "" {
			return targetRule{}, bad("not an IP address or network")
		}
		a = a.Unmap()
		r.prefix = netip.PrefixFrom(a, a.BitLen())
	}
	if ports != "" {
		lo, hi, isRange := strings.Cut(ports, "-")
		if !isRange {
			hi = lo
		}
		l, err1 := strconv.ParseUint(lo, 10, 16)
		h, err2 := strconv.ParseUint(hi, 10, 16)
		if err1 != nil || err2 != nil || l < 1 || h < l {
			return targetRule{}, bad("ports are 1 to 65535, a range LOW-HIGH with LOW <= HIGH")
		}
		r.lo, r.hi = uint16(l), uint16(h)
	}
	return r, nil
}

// Everything reports whether the list allows every target (no --allowed-targets).
func (a AllowedTargets) Everything() bool { return len(a.rules) == 0 }

// Allows reports whether the service may connect to addr on port. An IPv4 address written as
// IPv6 (::ffff:10.0.0.1) is the IPv4 address; a zone is ignored.
func (a AllowedTargets) Allows(addr netip.Addr, port int) bool {
	if len(a.rules) == 0 {
		return true
	}
	addr = addr.Unmap().WithZone("")
	for _, r := range a.rules {
		if r.prefix.Contains(addr) && (r.lo == 0 || port >= int(r.lo) && port <= int(r.hi)) {
			return true
		}
	}
	return false
}

// String is the list in the syntax ParseAllowedTargets reads ("" for everything).
func (a AllowedTargets) String() string {
	items := make([]string, 0, len(a.rules))
	for _, r := range a.rules {
		net := r.prefix.String()
		if r.prefix.Addr().Is6() && r.lo != 0 {
			net = "[" + r.prefix.Addr().String() + "]/" + strconv.Itoa(r.prefix.Bits())
		}
		switch {
		case r.lo == 0:
			items = append(items, net)
		case r.lo == r.hi:
			items = append(items, net+":"+strconv.Itoa(int(r.lo)))
		default:
			items = append(items, net+":"+strconv.Itoa(int(r.lo))+"-"+strconv.Itoa(int(r.hi)))
		}
	}
	return strings.Join(items, ",")
}

// CheckServer returns KPS.6023 when address is an IP literal that the list does not allow with
// port. A host name passes: what it resolves to is checked when a task connects.
func (a AllowedTargets) CheckServer(address string, port int) error {
	if len(a.rules) == 0 {
		return nil
	}
	ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(address, "["), "]"))
	if err != nil {
		return nil
	}
	if !a.Allows(ip, port) {
		return Errorf(ErrTargetNotAllowed,
			"Address %s port %d is outside the networks and ports this service may connect to (the operator's allowed targets).",
			ip.WithZone(""), port)
	}
	return nil
}
