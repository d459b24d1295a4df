package api

import (
	"net/http/httptest"
	"testing"
)

func TestClientIP(t *testing.T) {
	proxies, err := ParseTrustedProxies(" 10.0.0.0/8, 192.0.2.7 ,fd00::/8")
	if err != nil {
		t.Fatal(err)
	}
	trusting := Proxies(proxies)
	var direct Proxies
	for _, c := range []struct {
		name, peer string
		xff        []string
		want       string // with the trusted proxies
		wantDirect string // without any
	}{
		{"no proxy", "203.0.113.5:4000", nil, "203.0.113.5", "203.0.113.5"},
		// Spoofing: a client that is not a trusted proxy sends X-Forwarded-For. Ignored.
		{"untrusted peer's header is ignored", "203.0.113.5:4000", []string{"198.51.100.1"}, "203.0.113.5", "203.0.113.5"},
		{"trusted proxy", "10.1.2.3:4000", []string{"198.51.100.1"}, "198.51.100.1", "10.1.2.3"},
		// The client prepends a forged address; the proxy appends the real one.
		{"forged left part", "10.1.2.3:4000", []string{"1.1.1.1, 198.51.100.1"}, "198.51.100.1", "10.1.2.3"},
		{"forged trusted-looking left part", "10.1.2.3:4000", []string{"10.9.9.9, 198.51.100.1"}, "198.51.100.1", "10.1.2.3"},
		{"two trusted proxies", "192.0.2.7:4000", []string{"198.51.100.1, 10.0.0.2"}, "198.51.100.1", "192.0.2.7"},
		{"headers joined in order", "10.1.2.3:4000", []string{"6.6.6.6", "198.51.100.1,10.0.0.2"}, "198.51.100.1", "10.1.2.3"},
		{"hop with port", "10.1.2.3:4000", []string{"198.51.100.1:5555"}, "198.51.100.1", "10.1.2.3"},
		{"IPv6 client", "[fd00::1]:4000", []string{"[2001:db8::5]:1234"}, "2001:db8::5", "fd00::1"},
		{"IPv4-mapped proxy", "[::ffff:10.1.2.3]:4000", []string{"198.51.100.1"}, "198.51.100.1", "::ffff:10.1.2.3"},
		{"no header from a proxy", "10.1.2.3:4000", nil, "10.1.2.3", "10.1.2.3"},
		{"garbage from a proxy", "10.1.2.3:4000", []string{"198.51.100.1, not-an-ip"}, "10.1.2.3", "10.1.2.3"},
		{"only proxies", "10.1.2.3:4000", []string{"10.0.0.9, 10.0.0.8"}, "10.0.0.9", "10.1.2.3"},
		{"untrusted one next to a proxy", "192.0.2.8:4000", []string{"198.51.100.1"}, "192.0.2.8", "192.0.2.8"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.peer
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := trusting.ClientIP(r); got != c.want {
			t.Errorf("%s: client IP %q, want %q", c.name, got, c.want)
		}
		if got := direct.ClientIP(r); got != c.wantDirect {
			t.Errorf("%s without trusted proxies: client IP %q, want %q", c.name, got, c.wantDirect)
		}
	}
}

func TestParseTrustedProxies(t *testing.T) {
	for _, bad := range []string{"10.0.0.0/33", "proxy.example.com", "10.0.0.0/8;", "::ffff:10.0.0.0/8"} {
		if _, err := ParseTrustedProxies(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	got, err := ParseTrustedProxies("10.1.2.3/8,::ffff:10.0.0.0/104,2001:db8::1,")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "10.0.0.0/8", "2001:db8::1/128"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("prefix %d = %s, want %s", i, got[i], want[i])
		}
	}
}
