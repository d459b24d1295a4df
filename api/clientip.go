package api

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Proxies are the load balancers and reverse proxies whose X-Forwarded-For names the client
// (auth.md §12.4, auth.trusted_proxies); empty: the TCP peer is the client.
type Proxies []netip.Prefix

// ClientIP is the address of the client of r: the one the lockout of auth.md §12.4 counts
// failures against and the logs show. It is the TCP peer, unless the peer is a trusted proxy: then X-Forwarded-For is read from the right, every proxy appending
// the address it was reached from, and the first address that is not a trusted proxy is the
// client. Addresses left of it were written by the client or by proxies nobody vouches for,
// so they are never believed: a client cannot choose the address it is counted as by sending
// X-Forwarded-For itself. (auth.md says "the left-most untrusted address"; read literally that
// is the address a client forges, see docs/decisions.md.)
func (ps Proxies) ClientIP(r *http.Request) string {
	peer := r.RemoteAddr
	if host, _, err := net.SplitHostPort(peer); err == nil {
		peer = host
	}
	if len(ps) == 0 {
		return peer
	}
	addr, err := netip.ParseAddr(peer)
	if err != nil || !ps.trusted(addr) {
		return peer
	}
	// Several X-Forwarded-For headers are one list, in order (RFC 9110 §5.3).
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, ok := parseHop(hops[i])
		if !ok {
			// A trusted proxy wrote something that is not an address (or the list is empty):
			// the nearest address known for sure is that proxy's.
			break
		}
		if !ps.trusted(hop) {
			return hop.String()
		}
		addr = hop
	}
	return addr.String()
}

// trusted reports whether a is in one of the proxy ranges.
func (ps Proxies) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseHop parses one X-Forwarded-For element: an IP address, possibly with a port
// ("192.0.2.1:4711", "[2001:db8::1]:4711"), as some proxies write it.
func parseHop(h string) (netip.Addr, bool) {
	h = strings.TrimSpace(h)
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(h); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	return netip.Addr{}, false
}

// ParseTrustedProxies parses a comma-separated list of CIDR ranges or single addresses
// ("10.0.0.0/8, 192.0.2.7, fd00::/8") into Proxies.
func ParseTrustedProxies(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if p, err := netip.ParsePrefix(item); err == nil {
			if p.Addr().Is4In6() {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			if !p.IsValid() {
				return nil, fmt.Errorf("%q is not a CIDR range or an IP address", item)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(item)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR range or an IP address", item)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
