package kps

import "testing"

// TestCheckLogin is the rule of docs/SECURITY.md 1.2 and 1.3 as a table: a stored credential or
// hosted key goes to no per-task port and, on first use, only to a reach an admin set; the
// caller's own credential goes to a per-task port only on a pinned server.
func TestCheckLogin(t *testing.T) {
	pins := []string{"ssh-ed25519 AAAA"}
	for _, c := range []struct {
		login   LoginSource
		pinned  bool
		byAdmin bool
		port    int
		want    string
	}{
		{LoginService, false, true, 0, ""},
		{LoginService, false, true, 22, ""}, // the inventory's own port is no override
		{LoginService, false, false, 0, ErrUnconfirmedReach},
		{LoginService, true, false, 0, ""},
		{LoginService, true, true, 2222, ErrPortOverride},
		{LoginHosted, false, false, 0, ErrUnconfirmedReach},
		{LoginHosted, true, false, 0, ""},
		{LoginHosted, true, true, 2222, ErrPortOverride},
		{LoginHosted, false, false, 2222, ErrPortOverride},
		{LoginCaller, false, false, 0, ""},
		{LoginCaller, false, true, 2222, ErrPortOverride},
		{LoginCaller, true, false, 2222, ""},
	} {
		s := &Server{ID: "s", Port: 22, ReachByAdmin: c.byAdmin}
		if c.pinned {
			s.HostKeys = pins
		}
		err := s.CheckLogin(c.login, c.port)
		if got := ""; err != nil {
			got = ErrorCode(err)
			if got != c.want {
				t.Errorf("%+v: %v, want %s", c, err, c.want)
			}
		} else if c.want != "" {
			t.Errorf("%+v: allowed, want %s", c, c.want)
		}
	}
}

// TestChangesReach: what a member may not change (address, port, user, host keys, sshd_config)
// and what they may repeat unchanged.
func TestChangesReach(t *testing.T) {
	s := &Server{ID: "s", Name: "n", Address: "a", Port: 22, User: "root", HostKeys: []string{"k1"}, SSHDConfig: DefaultSSHDConfig}
	str := func(v string) *string { return &v }
	port := func(v int) *int { return &v }
	keys := func(v ...string) *[]string { return &v }
	for _, c := range []struct {
		u       ServerUpdate
		changes bool
	}{
		{ServerUpdate{Name: str("other")}, false},
		{ServerUpdate{SetCredential: true}, false},
		{ServerUpdate{Address: str("a"), Port: port(22), User: str("root"), HostKeys: keys("k1"), SSHDConfig: str(DefaultSSHDConfig)}, false},
		{ServerUpdate{Address: str("b")}, true},
		{ServerUpdate{Port: port(2222)}, true},
		{ServerUpdate{User: str("deploy")}, true},
		{ServerUpdate{HostKeys: keys()}, true},
		{ServerUpdate{HostKeys: keys("k2")}, true},
		{ServerUpdate{HostKeys: keys("k1", "k2")}, true},
		{ServerUpdate{SSHDConfig: str("/etc/ssh/x")}, true},
	} {
		if got := c.u.ChangesReach(s); got != c.changes {
			t.Errorf("%+v: ChangesReach = %v", c.u, got)
		}
	}
	u := ServerUpdate{Name: str("x"), Address: str("a"), Port: port(22), User: str("root"), HostKeys: keys("k1"), SSHDConfig: str("/x")}
	u.DropReach()
	if u.Name == nil || u.NamesReach() || u.SSHDConfig != nil {
		t.Errorf("after DropReach: %+v", u)
	}
}
