package kps

import (
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
)

// Server is a Linux host of the inventory (inventory.md).
type Server struct {
	ProjectID  string
	ID         string
	Name       string
	Address    string
	Port       int
	User       string
	HostKeys   []string
	SSHDConfig string
	// Credential is the service's own credential for the host, sealed by a Sealer; nil when
	// none is stored. It never leaves the service.
	Credential []byte
	// ReachByAdmin records that a project admin set the server's reach (address, port, user
	// and host keys) last: an admin registered the server or named one of them in an update.
	// Only such a server may be trusted on first use with a stored credential or a hosted key
	// (CheckLogin). False for a server a member registered, and for every server registered
	// before the flag existed (migration 0009).
	ReachByAdmin bool
	Created      time.Time
	Updated      time.Time

	// Read-only, from the binding.
	KeyPairName      string
	PasswordDisabled bool
	BindingExpires   time.Time // zero: the binding does not expire (or there is none)

	// Read-only, from the last drift check (kps-v3-api.md §7.2): when, and its result as JSON
	// ("" before the first).
	LastDriftCheck time.Time
	Drift          string

	// LastTask is the server's newest task the service still keeps (an OpenKPS inventory
	// extension, inventory.md): a succeeded one for its retention (kps-v3-api.md §3), a failed
	// one until it is deleted. Read-only; nil when none is kept.
	LastTask *ServerTask
}

// ServerTask is the summary of a task a server record carries as its last task.
type ServerTask struct {
	ID        string
	Operation Operation
	Phase     Phase
	Created   time.Time
	ErrorCode string // "" unless the task failed
}

// Status is the task's status in the KPS form (SUCCESS_RESET).
func (t *ServerTask) Status() string { return Status(t.Phase, t.Operation) }

// Credential is a login secret for a host: a password or a private key. It exists in clear
// only in memory.
type Credential struct {
	Type string // "password" or "keypair"
	Key  string
	// KeepOnHost leaves the public key of a caller's keypair credential in authorized_keys,
	// where a REPLACE removes it by default (kps-v3-api.md §6.3, server.keep_login_key). It
	// travels with the credential held in memory, and is never part of a stored one.
	KeepOnHost bool `json:"-"`
}

// CredentialPassword and CredentialKeyPair are the two credential types of §2.11.
const (
	CredentialPassword = "password"
	CredentialKeyPair  = "keypair"
)

// String hides the secret from any accidental formatting.
func (c Credential) String() string { return "Credential{" + c.Type + ", ***}" }

// GoString hides the secret from %#v.
func (c Credential) GoString() string { return c.String() }

// DefaultSSHDConfig is the main sshd configuration file unless the inventory says otherwise.
const DefaultSSHDConfig = "/etc/ssh/sshd_config"

var loginUser = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// ValidServerID reports whether id follows the server ID rule: 1–255 printable ASCII, no spaces.
func ValidServerID(id string) bool {
	if len(id) < 1 || len(id) > 255 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= 0x20 || id[i] >= 0x7f {
			return false
		}
	}
	return true
}

// ValidateServerID returns the KPS error for an invalid server ID.
func ValidateServerID(id string) error {
	if id == "" {
		return Errorf(ErrMissing, "Missing required parameter: server.id.")
	}
	if !ValidServerID(id) {
		return Errorf(ErrInvalid, "Invalid server.id: 1 to 255 printable ASCII characters without spaces are allowed.")
	}
	return nil
}

// ValidPort reports whether p is a TCP port.
func ValidPort(p int64) bool { return p >= 1 && p <= 65535 }

// Validate checks the members of a server record (not the credential, not the ID).
func (s *Server) Validate() error {
	if s.Name == "" || len([]rune(s.Name)) > 255 || strings.IndexFunc(s.Name, unicode.IsControl) >= 0 {
		return Errorf(ErrInvalid, "Invalid server.name: 1 to 255 characters without control characters are allowed.")
	}
	if err := ValidateAddress(s.Address); err != nil {
		return err
	}
	if !ValidPort(int64(s.Port)) {
		return Errorf(ErrPort, "Invalid server.port %d: it must be from 1 to 65535.", s.Port)
	}
	if !loginUser.MatchString(s.User) {
		return Errorf(ErrInvalid, "Invalid server.user: it must match ^[a-z_][a-z0-9_-]{0,31}$.")
	}
	if !strings.HasPrefix(s.SSHDConfig, "/") || len(s.SSHDConfig) > 4096 || strings.ContainsAny(s.SSHDConfig, "\x00\n\r'") {
		return Errorf(ErrInvalid, "Invalid server.sshd_config: an absolute path is required.")
	}
	return nil
}

var hostName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$`)

// ValidateAddress accepts a host name, an IPv4 literal or an IPv6 literal (with or without
// brackets).
func ValidateAddress(a string) error {
	if a == "" {
		return Errorf(ErrMissing, "Missing required parameter: server.address.")
	}
	trimmed := strings.TrimSuffix(strings.TrimPrefix(a, "["), "]")
	if len(a) <= 253 && (hostName.MatchString(a) || (strings.Contains(trimmed, ":") && isIPv6(trimmed))) {
		return nil
	}
	return Errorf(ErrInvalid, "Invalid server.address: a host name, IPv4 or IPv6 address is required.")
}

func isIPv6(s string) bool {
	for _, c := range s {
		if !(c == ':' || c == '.' || c == '%' || unicode.Is(unicode.ASCII_Hex_Digit, c) || unicode.IsLetter(c) || unicode.IsDigit(c)) {
			return false
		}
	}
	return true
}

// ServerUpdate holds the members a PUT changes; nil means unchanged.
type ServerUpdate struct {
	Name       *string
	Address    *string
	Port       *int
	User       *string
	HostKeys   *[]string
	SSHDConfig *string
	// Credential: SetCredential false leaves it; true with nil removes it.
	SetCredential bool
	Credential    []byte
	// ReachByAdmin marks the reach as a project admin's (Server.ReachByAdmin); false leaves
	// the mark as it is.
	ReachByAdmin bool
}

// NamesReach reports whether the update names a member of the server's reach: address, port,
// user or host keys.
func (u *ServerUpdate) NamesReach() bool {
	return u.Address != nil || u.Port != nil || u.User != nil || u.HostKeys != nil
}

// ChangesReach reports whether the update changes how the service reaches the host — its
// address, port, user, pinned host keys (clearing them included) or sshd_config path — which
// only a project admin may do (inventory.md, "Who may do what").
func (u *ServerUpdate) ChangesReach(s *Server) bool {
	return u.ChangesConnection(s) || (u.HostKeys != nil && !slices.Equal(*u.HostKeys, s.HostKeys)) ||
		(u.SSHDConfig != nil && *u.SSHDConfig != s.SSHDConfig)
}

// DropReach removes the reach members and sshd_config from the update. A non-admin's update
// that repeats them unchanged (an inventory imported again) then writes none of them, even if
// an admin changes them meanwhile.
func (u *ServerUpdate) DropReach() {
	u.Address, u.Port, u.User, u.HostKeys, u.SSHDConfig = nil, nil, nil, nil, nil
}

// Apply writes the update onto s.
func (u *ServerUpdate) Apply(s *Server) {
	if u.Name != nil {
		s.Name = *u.Name
	}
	if u.Address != nil {
		s.Address = *u.Address
	}
	if u.Port != nil {
		s.Port = *u.Port
	}
	if u.User != nil {
		s.User = *u.User
	}
	if u.HostKeys != nil {
		s.HostKeys = *u.HostKeys
	}
	if u.SSHDConfig != nil {
		s.SSHDConfig = *u.SSHDConfig
	}
	if u.SetCredential {
		s.Credential = u.Credential
	}
	if u.ReachByAdmin {
		s.ReachByAdmin = true
	}
}

// ChangesConnection reports whether the update touches how the service reaches the host, which
// is refused while a task runs (KPS.6302).
func (u *ServerUpdate) ChangesConnection(s *Server) bool {
	return (u.Address != nil && *u.Address != s.Address) || (u.Port != nil && *u.Port != s.Port) || (u.User != nil && *u.User != s.User)
}

// CredentialAAD binds a sealed service credential to its server, so sealed values cannot be
// moved between rows.
func CredentialAAD(projectID, serverID string) []byte {
	return []byte("kps/server-credential/v1/" + projectID + "/" + serverID)
}

// LoginSource is what a task logs in to its host with. It is decided when the task is
// submitted and recorded on the task, so that the worker uses exactly that and nothing else
// (docs/SECURITY.md §1–2).
type LoginSource string

// The login sources of kps-v3-api.md §6.1 step 4.
const (
	LoginCaller  LoginSource = "caller"  // the caller's server.auth, held in memory
	LoginService LoginSource = "service" // the server's stored service credential
	LoginHosted  LoginSource = "hosted"  // the hosted private key of the key pair Task.LoginKeyPair
)

// describe names the source in a message.
func (l LoginSource) describe() string {
	switch l {
	case LoginService:
		return "the service credential stored for it"
	case LoginHosted:
		return "a hosted private key"
	}
	return "the caller's credential"
}

// CheckLogin returns why the service may not log in to s with login on port (0: the inventory
// port), or nil when it may. A stored credential or hosted key goes only where a project admin
// sent it: never to a per-task port, and never on trust on first use to a host whose reach a
// non-admin set. A caller's own credential goes to a per-task port only when the server has
// pinned host keys, so that an override never pins the key of some other host onto the server.
func (s *Server) CheckLogin(login LoginSource, port int) error {
	override := port > 0 && port != s.Port
	pinned := len(s.HostKeys) > 0
	switch {
	case override && login != LoginCaller:
		return Errorf(ErrPortOverride,
			"Parameter server.port cannot be used for server '%s': the task would log in with %s, which goes only to the port of the inventory.",
			s.ID, login.describe())
	case override && !pinned:
		return Errorf(ErrPortOverride,
			"Parameter server.port cannot be used for server '%s': it has no pinned host key (host_keys) to verify the host on another port.",
			s.ID)
	case login != LoginCaller && !pinned && !s.ReachByAdmin:
		return Errorf(ErrUnconfirmedReach,
			"Server '%s' has no pinned host key and its address, port and user were not set by a project admin, so %s is not sent to it on trust on first use: a project admin may pin its host_keys or confirm its address, or give server.auth.",
			s.ID, login.describe())
	}
	return nil
}
