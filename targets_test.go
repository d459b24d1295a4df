package kps

import (
	"net/netip"
	"testing"
)

func TestParseAllowedTargets(t *testing.T) {
	a, err := ParseAllowedTargets(" 10.0.0.0/8, 192.168.1.0/24:22 ,10.1.2.3:2200-2299,2001:db8::/32,[2001:db9::]/32:22-2222,[2001:dba::1]:2222,[::ffff:172.16.0.0]/108 ")
	if err != nil {
		t.Fatal(err)
	}
	if a.Everything() {
		t.Fatal("a list allows everything")
	}
	for _, c := range []struct {
		addr string
		port int
		want bool
	}{
		{"10.200.0.1", 1, true},
		{"10.200.0.1", 65535, true},
		{"11.0.0.1", 22, false},
		{"192.168.1.7", 22, true},
		{"192.168.1.7", 23, false},
		{"192.168.2.7", 22, false},
		{"10.1.2.3", 2250, true}, // also in 10.0.0.0/8
		{"::ffff:10.9.9.9", 22, true},
		{"2001:db8:1::5", 4444, true},
		{"2001:db9::5", 22, true},
		{"2001:db9::5", 2222, true},
		{"2001:db9::5", 2223, false},
		{"2001:db9::5", 21, false},
		{"2001:dba::1", 2222, true},
		{"2001:dba::2", 2222, false},
		{"fe80::1%eth0", 22, false},
		{"172.16.3.4", 22, true}, // an IPv4-mapped network is the IPv4 network
		{"127.0.0.1", 22, false},
		{"::1", 22, false},
	} {
		if got := a.Allows(netip.MustParseAddr(c.addr), c.port); got != c.want {
			t.Errorf("Allows(%s, %d) = %v, want %v", c.addr, c.port, got, c.want)
		}
	}
	if got, want := a.String(), "10.0.0.0/8,192.168.1.0/24:22,10.1.2.3/32:2200-2299,2001:db8::/32,[2001:db9::]/32:22-2222,[2001:dba::1]/128:2222,172.16.0.0/12"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	again, err := ParseAllowedTargets(a.String())
	if err != nil || again.String() != a.String() {
		t.Errorf("String() does not parse back: %q %v", again.String(), err)
	}

	var everything AllowedTargets
	for _, list := range []string{"", "  "} {
		e, err := ParseAllowedTargets(list)
		if err != nil || !e.Everything() || !e.Allows(netip.MustParseAddr("127.0.0.1"), 22) {
			t.Errorf("%q: %v %v", list, e, err)
		}
	}
	if !everything.Allows(netip.MustParseAddr("::1"), 1) || everything.CheckServer("::1", 1) != nil {
		t.Error("the zero value does not allow everything")
	}
	for _, bad := range []string{",", "10.0.0.0/33", "10.0.0.0/8:", "10.0.0.0/8:0", "10.0.0.0/8:70000",
		"10.0.0.0/8:30-20", "10.0.0.0/8:a", "host.example", "[2001:db8::/32", "[2001:db8::]x",
		"[2001:db8::]/32:", "fe80::1%eth0", "10.0.0.0/8:22-", "1.2.3.4:22:23"} {
		if _, err := ParseAllowedTargets(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestAllowedTargetsCheckServer(t *testing.T) {
	a, err := ParseAllowedTargets("10.0.0.0/8:22,[2001:db8::]/32")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		address string
		port    int
		code    string
	}{
		{"10.1.1.1", 22, ""},
		{"10.1.1.1", 2222, ErrTargetNotAllowed},
		{"127.0.0.1", 22, ErrTargetNotAllowed},
		{"[2001:db8::1]", 2222, ""},
		{"::1", 22, ErrTargetNotAllowed},
		{"[::ffff:10.0.0.1]", 22, ""},
		{"host.example", 2222, ""}, // names are checked when a task connects
	} {
		err := a.CheckServer(c.address, c.port)
		if got := ""; err != nil {
			got = ErrorCode(err)
			if got != c.code {
				t.Errorf("CheckServer(%s, %d) = %v, want %s", c.address, c.port, err, c.code)
			}
		} else if c.code != "" {
			t.Errorf("CheckServer(%s, %d) = nil, want %s", c.address, c.port, c.code)
		}
	}
}
