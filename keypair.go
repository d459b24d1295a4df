package kps

import (
	"regexp"
	"strings"
	"time"
	"unicode"
)

// KeyPair is an SSH public key of a project, optionally with a hosted private key.
type KeyPair struct {
	ID          int64
	ProjectID   string
	Name        string
	Type        string // "ssh" or "x509"
	Scope       string // "user" or "domain"
	UserID      string
	PublicKey   string // exactly as submitted
	Fingerprint string
	Algorithm   string
	Description string
	// PrivateKey is the hosted private key sealed by a Sealer; nil when not hosted.
	PrivateKey []byte
	Created    time.Time
	Updated    time.Time
}

// Key pair types and scopes (§2.1).
const (
	TypeSSH     = "ssh"
	TypeX509    = "x509"
	ScopeUser   = "user"
	ScopeDomain = "domain"
)

var keyPairName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidKeyPairName reports whether name follows the name rule of §1.6.
func ValidKeyPairName(name string) bool { return keyPairName.MatchString(name) }

// ValidateKeyPairName returns KPS.6004 for an invalid name.
func ValidateKeyPairName(name string) error {
	if !ValidKeyPairName(name) {
		return Errorf(ErrKeyPairName, "Invalid key pair name '%s': 1 to 64 letters, digits, '_' or '-' are allowed.", Clip(name))
	}
	return nil
}

// ValidateKeyPairType returns KPS.6003 unless t is a key pair type ("" being the default, ssh).
func ValidateKeyPairType(t string) error {
	if t != "" && t != TypeSSH && t != TypeX509 {
		return Errorf(ErrInvalid, "Invalid parameter keypair.type: 'ssh' or 'x509' is required.")
	}
	return nil
}

// ValidateKeyPairScope returns KPS.6003 unless s is a key pair scope ("" being the default,
// user).
func ValidateKeyPairScope(s string) error {
	if s != "" && s != ScopeUser && s != ScopeDomain {
		return Errorf(ErrInvalid, "Invalid parameter keypair.scope: 'user' or 'domain' is required.")
	}
	return nil
}

// ValidateDescription returns KPS.6016 for a description that is too long or has control
// characters or bidirectional overrides.
func ValidateDescription(d string) error {
	if len([]rune(d)) > 255 || strings.IndexFunc(d, isControlOrBidi) >= 0 {
		return Errorf(ErrDescription, "Invalid description: up to 255 characters without control characters are allowed.")
	}
	return nil
}

// VisibleTo reports whether the key pair is visible to a user of its project (§1.2).
func (k *KeyPair) VisibleTo(userID string) bool {
	return k.Scope == ScopeDomain || k.UserID == userID
}

// KeyPairQuota bounds the key pairs a creation may add to (KeyPairStore.CreateKeyPair).
type KeyPairQuota struct {
	// Project is how many key pairs one project may hold (KPS.6401); 0 or less: no limit.
	Project int
	// User is how many key pairs one user may own in the project when PerUser is set: Nova's
	// per-user limit (nova-keypairs.md §11), 0 forbidding every creation (KPS.6401).
	User    int
	PerUser bool
}

// KeyPairPage is a page of a marker-paginated key pair list (§4.2).
type KeyPairPage struct {
	Items          []KeyPair
	NextMarker     *string
	PreviousMarker *string
}

// PrivateKeyAAD binds a sealed hosted private key to its key pair, so sealed values cannot be
// moved between key pairs.
func PrivateKeyAAD(projectID, name string) []byte {
	return []byte("kps/keypair-private-key/v1/" + projectID + "/" + name)
}

// isControlOrBidi reports control characters and the bidirectional formatting characters
// (U+202A–U+202E, U+2066–U+2069, marks) that let text display differently from what it is
// ("Trojan Source", CVE-2021-42574).
func isControlOrBidi(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) }
