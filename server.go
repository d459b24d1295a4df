package kps

import (
	"regexp"
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
	Created    time.Time
	Updated    time.Time

	// Read-only, from the binding.
	KeyPairName      string
	PasswordDisabled bool
}

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
