package kps

import (
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Role is one of the three fixed roles; admin implies member implies reader (auth.md §3.3).
type Role string

const (
	RoleReader Role = "reader"
	RoleMember Role = "member"
	RoleAdmin  Role = "admin"
)

// Roles lists the fixed roles, weakest first.
var Roles = []Role{RoleReader, RoleMember, RoleAdmin}

func (r Role) rank() int {
	for i, x := range Roles {
		if x == r {
			return i + 1
		}
	}
	return 0
}

// Valid reports whether r is one of the fixed roles.
func (r Role) Valid() bool { return r.rank() > 0 }

// Implied returns the role and every role it implies, strongest first.
func Implied(roles []Role) []Role {
	best := 0
	for _, r := range roles {
		best = max(best, r.rank())
	}
	var out []Role
	for i := best; i >= 1; i-- {
		out = append(out, Roles[i-1])
	}
	return out
}

var identityID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// ValidIdentityID reports whether id has the form of a domain, project, user or role ID: 32
// lowercase hex characters (auth.md §3.1).
func ValidIdentityID(id string) bool { return identityID.MatchString(id) }

// MissingParameter is the KPS.6002 error of the identity routes (exact text of auth.md §11.3).
func MissingParameter(member string) *Error {
	return Errorf(ErrMissing, "Missing required parameter: %s.", member)
}

// InvalidParameter is the KPS.6003 error of the identity routes (exact text of auth.md §11.3).
func InvalidParameter(member string) *Error {
	return Errorf(ErrInvalid, "Invalid parameter: %s.", member)
}

// validateIdentityName applies the name rule of auth.md §3.1: 1–64 characters; control
// characters and bidirectional overrides (which make a name display as another) are refused
// as well.
func validateIdentityName(member, name string) error {
	if name == "" {
		return MissingParameter(member)
	}
	if !utf8.ValidString(name) || utf8.RuneCountInString(name) > 64 || strings.IndexFunc(name, isControlOrBidi) >= 0 {
		return InvalidParameter(member)
	}
	return nil
}

// validateIdentityDescription allows up to 255 characters of valid UTF-8, as Keystone does.
func validateIdentityDescription(member, d string) error {
	if !utf8.ValidString(d) || utf8.RuneCountInString(d) > 255 {
		return InvalidParameter(member)
	}
	return nil
}

// Domain is an account: users and projects never cross it.
type Domain struct {
	ID          string
	Name        string // unique, byte-wise
	Enabled     bool
	Description string
	Created     time.Time
}

// Validate checks the members a caller sets (not the ID).
func (d *Domain) Validate() error {
	if err := validateIdentityName("domain.name", d.Name); err != nil {
		return err
	}
	return validateIdentityDescription("domain.description", d.Description)
}

// DomainUpdate holds the members a PATCH changes; nil means unchanged.
type DomainUpdate struct {
	Name        *string
	Enabled     *bool
	Description *string
}

// Apply writes the update onto d.
func (u *DomainUpdate) Apply(d *Domain) {
	if u.Name != nil {
		d.Name = *u.Name
	}
	if u.Enabled != nil {
		d.Enabled = *u.Enabled
	}
	if u.Description != nil {
		d.Description = *u.Description
	}
}

// DomainFilter selects domains; nil members match everything.
type DomainFilter struct {
	Name    *string
	Enabled *bool
}

// Project is a scope inside a domain; KPS paths carry its ID. Its parent is its domain.
type Project struct {
	ID          string
	Name        string // unique within the domain, byte-wise
	DomainID    string
	Enabled     bool
	Description string
	// IsDefault marks the project named after the region that every domain gets at creation
	// (auth.md §3.2); it cannot be renamed or deleted while the domain exists.
	IsDefault bool
	Created   time.Time
}

// Validate checks the members a caller sets (not the ID, not the domain's existence).
func (p *Project) Validate() error {
	if p.DomainID == "" {
		return MissingParameter("project.domain_id")
	}
	if err := validateIdentityName("project.name", p.Name); err != nil {
		return err
	}
	return validateIdentityDescription("project.description", p.Description)
}

// ProjectUpdate holds the members a PATCH changes; nil means unchanged.
type ProjectUpdate struct {
	Name        *string
	Enabled     *bool
	Description *string
}

// Apply writes the update onto p.
func (u *ProjectUpdate) Apply(p *Project) {
	if u.Name != nil {
		p.Name = *u.Name
	}
	if u.Enabled != nil {
		p.Enabled = *u.Enabled
	}
	if u.Description != nil {
		p.Description = *u.Description
	}
}

// ProjectFilter selects projects; nil members match everything.
type ProjectFilter struct {
	DomainID *string
	Name     *string
	Enabled  *bool
	// RoleHolder keeps the projects on which this user has an effective role (directly or
	// through the project's domain, auth.md §8.2).
	RoleHolder *string
}

// User is a local identity.
type User struct {
	ID          string
	Name        string // unique within the domain, byte-wise
	DomainID    string
	Enabled     bool
	Description string
	// PasswordHash is a PHC string (auth.md §12.1); "" means the user cannot log in with a
	// password.
	PasswordHash string
	// PasswordChangedAt is when the hash was last set by a password change; zero without one.
	PasswordChangedAt time.Time
	DefaultProjectID  string // "" when none
	Created           time.Time
}

// Validate checks the members a caller sets (not the ID, not the existence of the domain and
// default project, not the password).
func (u *User) Validate() error {
	if u.DomainID == "" {
		return MissingParameter("user.domain_id")
	}
	if err := validateIdentityName("user.name", u.Name); err != nil {
		return err
	}
	return validateIdentityDescription("user.description", u.Description)
}

// UserUpdate holds the members a PATCH changes; nil means unchanged. The password is changed
// through IdentityStore.UpdatePasswordHash, which also revokes the user's credentials.
type UserUpdate struct {
	Name        *string
	Enabled     *bool
	Description *string
	// DefaultProjectID: a pointer to "" removes the default project.
	DefaultProjectID *string
}

// Apply writes the update onto u.
func (uu *UserUpdate) Apply(u *User) {
	if uu.Name != nil {
		u.Name = *uu.Name
	}
	if uu.Enabled != nil {
		u.Enabled = *uu.Enabled
	}
	if uu.Description != nil {
		u.Description = *uu.Description
	}
	if uu.DefaultProjectID != nil {
		u.DefaultProjectID = *uu.DefaultProjectID
	}
}

// UserFilter selects users; nil members match everything.
type UserFilter struct {
	DomainID *string
	Name     *string
	Enabled  *bool
}

// RoleAssignment gives a user a role on a project or on a whole domain (auth.md §3.4); exactly
// one of ProjectID and DomainID is set. User and target lie in the same domain.
type RoleAssignment struct {
	UserID    string
	Role      Role
	ProjectID string
	DomainID  string
}

// Validate checks the form of the assignment (not the existence of its members).
func (a *RoleAssignment) Validate() error {
	switch {
	case a.UserID == "":
		return MissingParameter("user_id")
	case !a.Role.Valid():
		return InvalidParameter("role")
	case (a.ProjectID == "") == (a.DomainID == ""):
		return InvalidParameter("scope")
	}
	return nil
}

// RoleAssignmentFilter selects role assignments; nil members match everything. A ProjectID
// filter matches only assignments made on that project, not those inherited from its domain.
type RoleAssignmentFilter struct {
	UserID    *string
	ProjectID *string
	DomainID  *string
}

// Access key status values (auth.md §3.5).
const (
	AccessKeyActive   = "active"
	AccessKeyInactive = "inactive"
)

// MaxAccessKeysPerUser is the number of permanent access keys a user may hold (auth.md §3.5).
const MaxAccessKeysPerUser = 2

// AccessKeyTouchInterval is how stale an access key's last-use time may get: it is written at
// most once per interval, not on every request (auth.md §3.5).
const AccessKeyTouchInterval = time.Minute

var accessKeyID = regexp.MustCompile(`^[A-Z0-9]{20}$`)

// ValidAccessKeyID reports whether ak has the form of an AK: 20 characters [A-Z0-9].
func ValidAccessKeyID(ak string) bool { return accessKeyID.MatchString(ak) }

// AccessKeyAAD binds a sealed SK to its AK, so ciphertexts cannot be swapped between rows
// (auth.md §12.2). Permanent and temporary credentials use it alike.
func AccessKeyAAD(access string) []byte { return []byte("kps/sk/v1/" + access) }

// AccessKey is a permanent AK/SK pair of a user (auth.md §3.5).
type AccessKey struct {
	Access string // the AK
	UserID string
	// Secret is the SK sealed by a Sealer with AccessKeyAAD(Access); the store never sees it in
	// clear.
	Secret      []byte
	Status      string // AccessKeyActive or AccessKeyInactive
	Description string
	Created     time.Time
	LastUsed    time.Time // zero: never used
}

// Validate checks the members a caller sets.
func (k *AccessKey) Validate() error {
	switch {
	case !ValidAccessKeyID(k.Access):
		return InvalidParameter("credential.access")
	case k.UserID == "":
		return MissingParameter("credential.user_id")
	case len(k.Secret) == 0:
		return MissingParameter("credential.secret")
	case k.Status != AccessKeyActive && k.Status != AccessKeyInactive:
		return InvalidParameter("credential.status")
	}
	return validateIdentityDescription("credential.description", k.Description)
}

// AccessKeyUpdate holds the members a PUT changes; nil means unchanged.
type AccessKeyUpdate struct {
	Status      *string
	Description *string
}

// Apply writes the update onto k.
func (u *AccessKeyUpdate) Apply(k *AccessKey) {
	if u.Status != nil {
		k.Status = *u.Status
	}
	if u.Description != nil {
		k.Description = *u.Description
	}
}

// TemporaryCredential is a short-lived AK/SK with a security token (auth.md §3.6).
type TemporaryCredential struct {
	Access string // the AK; never equal to a permanent AK
	UserID string
	// ScopeProjectID binds the credential to the project of the token it came from; "" when
	// unbound.
	ScopeProjectID string
	// Secret is the SK sealed by a Sealer with AccessKeyAAD(Access).
	Secret []byte
	// SecurityTokenHash is the hex SHA-256 of the security token; the token itself is not kept.
	SecurityTokenHash string
	ExpiresAt         time.Time
	// SourceAuditID is the first audit ID of the token the credential was derived from ("" when
	// derived from an access key); revoking that token deletes the credential.
	SourceAuditID string
}

// Token is the server-side record of an opaque bearer token; only its SHA-256 is kept.
type Token struct {
	Hash      string
	UserID    string
	ProjectID string // project scope, "" otherwise
	DomainID  string // domain scope, "" otherwise
	Methods   []string
	// AuditIDs are the token's own audit ID, then (after a re-scope) its source's.
	AuditIDs  []string
	IssuedAt  time.Time
	ExpiresAt time.Time
	RevokedAt time.Time // zero while not revoked
}

// Revoked reports whether the token was revoked.
func (t *Token) Revoked() bool { return !t.RevokedAt.IsZero() }

// Principal is the authenticated caller of one request (auth.md §4.5).
type Principal struct {
	UserID       string
	UserName     string
	DomainID     string
	DomainName   string
	ProjectID    string
	Roles        []Role
	AuthMethod   string // AuthToken, AuthAKSK or AuthAKSKTemporary
	TokenAuditID string // token requests
	AccessKey    string // the AK of AK/SK requests
}

// Authentication methods of a Principal (auth.md §4.5).
const (
	AuthToken         = "token"
	AuthAKSK          = "aksk"
	AuthAKSKTemporary = "aksk-temporary"
)

// Has reports whether the principal holds role r (directly or implied).
func (p *Principal) Has(r Role) bool {
	for _, x := range p.Roles {
		if x.rank() >= r.rank() {
			return true
		}
	}
	return false
}

// Bootstrap describes what a first start creates (auth.md §3.7).
type Bootstrap struct {
	// DomainID is the operator domain's ID: Keystone's "default" for a new bootstrap, so that
	// clients configured for Keystone's default domain find it; "" draws a random one.
	DomainID          string
	DomainName        string
	ProjectName       string // the region ID
	AdminName         string
	AdminPasswordHash string
}
