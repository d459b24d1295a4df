package kps

import "time"

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

// Domain is an account: users and projects never cross it.
type Domain struct {
	ID      string
	Name    string
	Enabled bool
}

// Project is a scope inside a domain; KPS paths carry its ID.
type Project struct {
	ID       string
	Name     string
	DomainID string
	Enabled  bool
}

// User is a local identity.
type User struct {
	ID               string
	Name             string
	DomainID         string
	Enabled          bool
	PasswordHash     string
	DefaultProjectID string
}

// Token is the server-side record of an opaque bearer token; only its SHA-256 is kept.
type Token struct {
	Hash      string
	UserID    string
	ProjectID string // project scope, "" otherwise
	DomainID  string // domain scope, "" otherwise
	Methods   []string
	AuditIDs  []string
	IssuedAt  time.Time
	ExpiresAt time.Time
	Revoked   bool
}

// Principal is the authenticated caller of one request (auth.md §4.5).
type Principal struct {
	UserID       string
	UserName     string
	DomainID     string
	DomainName   string
	ProjectID    string
	Roles        []Role
	AuthMethod   string
	TokenAuditID string
}

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
	DomainName        string
	ProjectName       string // the region ID
	AdminName         string
	AdminPasswordHash string
}
