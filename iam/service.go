// Package iam authenticates callers of OpenKPS in local identity mode (auth.md): Argon2id
// passwords, the first-start bootstrap, opaque bearer tokens (issue, re-scope, validate) and the
// scope checks a token request goes through before a handler runs; AK/SK signatures; the
// lockout of failed authentications; the identity management of auth.md §9 (Service is
// keystone.Manager); and, in external mode, the validation of another Keystone's tokens
// (External). It implements what api.Identity and keystone.Tokens ask. It imports the domain
// package and internal/strictjson: the store comes in as kps.IdentityStore, its read path as
// kps.IdentityVersions.
package iam

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openkps/kps"
)

// Service issues and checks tokens against an identity store. Set the exported fields before
// first use and do not copy it afterwards.
type Service struct {
	Store kps.IdentityStore
	// Versions is the identity version the token validation cache is keyed on
	// (kps.IdentityVersions: store.DB keeps one on either engine); nil caches nothing.
	Versions kps.IdentityVersions
	// Now is the clock; default time.Now.
	Now func() time.Time
	// TokenTTL is the lifetime of a new token (auth.md §5.3: 5 min – 24 h); default 24 h.
	TokenTTL time.Duration
	// Params are the Argon2id costs of new password hashes; zero means RFC 9106's second set.
	Params Params
	// Sealer seals and opens secret access keys (AccessKeyAAD) at rest.
	Sealer kps.Sealer
	// Region is the region ID: the name of each domain's default project and the catalog region.
	Region string
	// PublicURL is the service's public base URL, for catalog entries and links.
	PublicURL string
	// ComputeURL is the catalog URL of the Nova-compatible API (auth.md §8.4,
	// identity.catalog.compute_url); default PublicURL + "/compute/v2.1".
	ComputeURL string
	// Limiter counts failed authentications and locks (auth.md §12.4); nil means a
	// MemoryLimiter of this Service.
	Limiter Limiter
	// MaxTokensPerUser caps a user's live tokens (auth.md §5.3): issuing one more revokes the
	// oldest. Zero means DefaultMaxTokensPerUser; a negative value caps nothing.
	MaxTokensPerUser int
	// LoginQueue is how many logins may wait for a password hash slot (auth.md §12.1) before
	// the next is refused with 429 KPS.6105; zero means four per slot open to logins (half of
	// the CPUs, at least one).
	LoginQueue int

	limiterOnce sync.Once
	memLimiter  *MemoryLimiter

	dummyOnce sync.Once
	dummy     string
	dummyErr  error

	validations validationCache

	// defaultDomain is the ID DefaultDomainID stands for, once known (ResolveDomainID).
	defaultDomain atomic.Pointer[string]
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// DefaultMaxTokensPerUser is auth.max_tokens_per_user (auth.md §5.3).
const DefaultMaxTokensPerUser = 1000

func (s *Service) maxTokensPerUser() int {
	switch {
	case s.MaxTokensPerUser == 0:
		return DefaultMaxTokensPerUser
	case s.MaxTokensPerUser < 0:
		return 0
	}
	return s.MaxTokensPerUser
}

// loginHashing is the class of a login's password verification: anonymous, in a bounded queue.
func (s *Service) loginHashing() hashClass {
	q := s.LoginQueue
	if q <= 0 {
		q = hashing.defaultLoginQueue()
	}
	return hashClass{anonymous: true, queue: q}
}

func (s *Service) ttl() time.Duration {
	if s.TokenTTL > 0 {
		return s.TokenTTL
	}
	return 24 * time.Hour
}

// dummyHash is verified when the user is unknown, so that a login costs the same whether
// the user exists or not (auth.md §5.1 step 3). It uses the configured parameters.
func (s *Service) dummyHash(ctx context.Context) (string, error) {
	s.dummyOnce.Do(func() {
		// Not the request's context: an error here is remembered for good, so a request
		// that gave up waiting must not be the one that makes it.
		s.dummy, s.dummyErr = s.Params.Hash(context.WithoutCancel(ctx), "openkps dummy password for unknown users")
	})
	return s.dummy, s.dummyErr
}

// Failure is a refused authentication: the KPS error the caller sees and a reason key for the
// log (auth.md §11.4, §12.5). kps.ErrorCode and kps.ErrorMessage see through it.
//
// Reason keys: token-unknown, token-expired, token-revoked (KPS.6102); method-unsupported,
// password-length, user-unknown, password-wrong, user-disabled, domain-disabled (KPS.6107);
// scope-unavailable, scope-no-role (KPS.6108); project-mismatch, token-not-project-scoped
// (KPS.6103); no-role, and for a password change other-user and temporary-credential
// (KPS.9006).
type Failure struct {
	Reason string
	Err    *kps.Error
	// User names the user of a refused login or password change for the log: their ID when
	// known, else the name as the request gave it; "" otherwise.
	User string
}

func (f *Failure) Error() string { return f.Err.Error() + " (" + f.Reason + ")" }

// Unwrap exposes the KPS error.
func (f *Failure) Unwrap() error { return f.Err }

// Exact messages of auth.md §11.3 and §11.4.
const (
	msgLoginFailed = "The username or password is wrong."
	msgScope       = "The user has no access to the requested scope."
	msgForbidden   = "The user has no permission to perform this operation."
)

var reasonText = map[string]string{
	"token-unknown": "the token is not valid",
	"token-expired": "the token has expired",
	"token-revoked": "the token has been revoked",
}

func loginFailed(reason string) error {
	return &Failure{Reason: reason, Err: kps.Errorf(kps.ErrLoginFailed, msgLoginFailed)}
}

func scopeFailed(reason string) error {
	return &Failure{Reason: reason, Err: kps.Errorf(kps.ErrScope, msgScope)}
}

func tokenFailed(reason string) error {
	return &Failure{Reason: reason, Err: kps.Errorf(kps.ErrBadCredentials, "Incorrect authentication information: %s.", reasonText[reason])}
}

// IsFailure reports whether err is a refused authentication (as opposed to an internal error).
func IsFailure(err error) bool {
	var f *Failure
	return errors.As(err, &f)
}

// TokenFingerprint is how logs refer to a token: the first 12 hex digits of its SHA-256
// (auth.md §12.5).
func TokenFingerprint(token string) string { return tokenHash(token)[:12] }

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
