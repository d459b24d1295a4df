package iam

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"time"

	"github.com/openkps/kps"
)

// Temporary credential lifetimes (auth.md §3.6).
const (
	MinTemporaryCredentialTTL     = 15 * time.Minute
	MaxTemporaryCredentialTTL     = 24 * time.Hour
	DefaultTemporaryCredentialTTL = MinTemporaryCredentialTTL
)

// newKeyAttempts bounds the draws of a fresh AK: a clash with an existing one (KPS.6111) means
// 103 bits of randomness collided, so a second draw is already paranoia.
const newKeyAttempts = 3

const (
	accessKeyAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	accessKeyLen      = 20
	secretKeyLen      = 40
)

// newAccessKeyID returns 20 characters drawn uniformly from [A-Z0-9] (auth.md §3.1).
func newAccessKeyID() string { return kps.RandomString(accessKeyAlphabet, accessKeyLen) }

// newSecretKey returns 40 characters drawn uniformly from [A-Za-z0-9] (auth.md §3.1).
func newSecretKey() string { return generatePassword(secretKeyLen) }

// newSecurityToken returns "ST1" + base64url(48 random bytes), no padding (auth.md §3.1).
func newSecurityToken() string {
	var b [48]byte
	rand.Read(b[:])
	return "ST1" + base64.RawURLEncoding.EncodeToString(b[:])
}

// seal encrypts an SK bound to its AK (auth.md §12.2).
func (s *Service) seal(ak, sk string) ([]byte, error) {
	if s.Sealer == nil {
		return nil, errors.New("iam: no sealer for secret access keys")
	}
	return s.Sealer.Seal([]byte(sk), kps.AccessKeyAAD(ak))
}

// refuseTemporary refuses callers authenticated with a temporary credential: a short-lived
// credential must not mint longer-lived or further ones (auth.md §4.4 for securitytokens;
// docs/decisions.md for access keys).
func refuseTemporary(p *kps.Principal) error {
	if p.AuthMethod == kps.AuthAKSKTemporary {
		return forbidden()
	}
	return nil
}

// keyOwner returns the user whose access keys the caller wants to see or change: the caller
// ("" or their own ID; write additionally needs the member role somewhere in their domain, §3.3)
// or a user of a domain the caller administers.
func (s *Service) keyOwner(ctx context.Context, p *kps.Principal, userID string, write bool) (*kps.User, error) {
	if userID == "" || userID == p.UserID {
		if write {
			roles, err := s.strongestRole(ctx, p.UserID)
			if err != nil {
				return nil, err
			}
			if !hasRole(roles, kps.RoleMember) {
				return nil, forbidden()
			}
		}
		u, err := s.Store.UserByID(ctx, p.UserID)
		if err == nil && u == nil {
			err = forbidden()
		}
		return u, err
	}
	u, _, err := s.administeredUser(ctx, p, userID)
	return u, err
}

// accessKey returns a key the caller may see or change, under the rules of keyOwner.
func (s *Service) accessKey(ctx context.Context, p *kps.Principal, access string, write bool) (*kps.AccessKey, error) {
	k, err := s.Store.AccessKey(ctx, access)
	if err != nil {
		return nil, err
	}
	if k == nil {
		return nil, notFound("access key", access)
	}
	if _, err := s.keyOwner(ctx, p, k.UserID, write); err != nil {
		if kps.ErrorCode(err) == kps.ErrIdentityNotFound {
			err = notFound("access key", access)
		}
		return nil, err
	}
	return k, nil
}

// CreateCredential creates a permanent access key for userID ("" for the caller) with a fresh
// AK and SK (POST /v3.0/OS-CREDENTIAL/credentials, auth.md §9). The SK is returned here once
// and stored only sealed; a user's third key is 400 KPS.6003 (§3.5).
func (s *Service) CreateCredential(ctx context.Context, p *kps.Principal, userID, description string) (*kps.AccessKey, string, error) {
	if err := refuseTemporary(p); err != nil {
		return nil, "", err
	}
	p.Audit.Name(kps.TargetUser, userID)
	u, err := s.keyOwner(ctx, p, userID, true)
	if err != nil {
		return nil, "", err
	}
	for attempt := 1; ; attempt++ {
		ak, sk := newAccessKeyID(), newSecretKey()
		// The event names the AK (never the SK); a clash draws a new AK and a new event.
		ev := p.Audit.For(kps.TargetCredential, ak)
		sealed, err := s.seal(ak, sk)
		if err != nil {
			return nil, "", err
		}
		k := &kps.AccessKey{Access: ak, UserID: u.ID, Secret: sealed, Status: kps.AccessKeyActive, Description: description}
		if err := k.Validate(); err != nil {
			return nil, "", err
		}
		err = s.audited(ev).CreateAccessKey(ctx, k)
		if err != nil && kps.ErrorCode(err) == kps.ErrIdentityConflict && attempt < newKeyAttempts {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		return k, sk, nil
	}
}

// Credentials lists the access keys of userID ("" for the caller); the SKs stay sealed and are
// for the caller to leave out.
func (s *Service) Credentials(ctx context.Context, p *kps.Principal, userID string) ([]kps.AccessKey, error) {
	u, err := s.keyOwner(ctx, p, userID, false)
	if err != nil {
		return nil, err
	}
	return s.Store.ListAccessKeys(ctx, u.ID)
}

// Credential returns one access key (its SK sealed).
func (s *Service) Credential(ctx context.Context, p *kps.Principal, access string) (*kps.AccessKey, error) {
	return s.accessKey(ctx, p, access, false)
}

// UpdateCredential changes the status (active or inactive) or the description of an access
// key. Deactivating a key revokes no token (§5.5).
func (s *Service) UpdateCredential(ctx context.Context, p *kps.Principal, access string, u kps.AccessKeyUpdate) (*kps.AccessKey, error) {
	p.Audit.Name(kps.TargetCredential, access)
	if err := refuseTemporary(p); err != nil {
		return nil, err
	}
	k, err := s.accessKey(ctx, p, access, true)
	if err != nil {
		return nil, err
	}
	u.Apply(k)
	if err := k.Validate(); err != nil {
		return nil, err
	}
	return s.audited(p.Audit.For(kps.TargetCredential, access)).UpdateAccessKey(ctx, access, u)
}

// DeleteCredential deletes an access key.
func (s *Service) DeleteCredential(ctx context.Context, p *kps.Principal, access string) error {
	ev := p.Audit.For(kps.TargetCredential, access)
	if err := refuseTemporary(p); err != nil {
		return err
	}
	if _, err := s.accessKey(ctx, p, access, true); err != nil {
		return err
	}
	return s.audited(ev).DeleteAccessKey(ctx, access)
}

// IssueTemporaryCredential issues a temporary AK/SK with a security token (POST
// /v3.0/OS-CREDENTIAL/securitytokens, auth.md §3.6) and returns the stored record (its SK
// sealed), the SK and the security token; only the token's SHA-256 is kept.
//
// callerToken is the caller's X-Auth-Token ("" for an AK/SK request); tokenID is the body's
// auth.identity.token.id ("" when absent), which must be the caller's token unless the caller
// is admin of the named token's domain (else 403 KPS.9006). The credential belongs to the
// source token's user, is bound to its project when it is project-scoped, ends no later than
// it and dies with it. Derived from an access key, it is unbound. duration 0 means the default
// of 15 minutes; outside 15 minutes – 24 hours it is 400 KPS.6003. A temporary credential
// cannot issue another.
func (s *Service) IssueTemporaryCredential(ctx context.Context, p *kps.Principal, callerToken, tokenID string, duration time.Duration) (*kps.TemporaryCredential, string, string, error) {
	if err := refuseTemporary(p); err != nil {
		return nil, "", "", err
	}
	if duration == 0 {
		duration = DefaultTemporaryCredentialTTL
	}
	if duration < MinTemporaryCredentialTTL || duration > MaxTemporaryCredentialTTL {
		return nil, "", "", kps.InvalidParameter("auth.identity.token.duration_seconds")
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	c := &kps.TemporaryCredential{UserID: p.UserID, ExpiresAt: now.Add(duration)}

	var source *validToken
	switch {
	case tokenID != "" && tokenID != callerToken:
		v, err := s.validate(ctx, tokenID)
		if IsFailure(err) {
			return nil, "", "", forbidden()
		}
		if err != nil {
			return nil, "", "", err
		}
		if v.domain.ID != p.DomainID {
			return nil, "", "", forbidden()
		}
		roles, err := s.Store.DomainRoles(ctx, p.UserID, v.domain.ID)
		if err != nil {
			return nil, "", "", err
		}
		if !hasRole(roles, kps.RoleAdmin) {
			return nil, "", "", forbidden()
		}
		source = &v
	case callerToken != "" && p.AuthMethod == kps.AuthToken:
		v, err := s.validate(ctx, callerToken)
		if err != nil {
			return nil, "", "", err
		}
		source = &v
	}
	if source != nil {
		t := source.token
		c.UserID, c.ScopeProjectID = source.user.ID, t.ProjectID
		if len(t.AuditIDs) > 0 {
			c.SourceAuditID = t.AuditIDs[0]
		}
		if t.ExpiresAt.Before(c.ExpiresAt) {
			c.ExpiresAt = t.ExpiresAt
		}
	}

	for attempt := 1; ; attempt++ {
		ak, sk, st := newAccessKeyID(), newSecretKey(), newSecurityToken()
		sealed, err := s.seal(ak, sk)
		if err != nil {
			return nil, "", "", err
		}
		c.Access, c.Secret, c.SecurityTokenHash = ak, sealed, tokenHash(st)
		// The event names the temporary AK; the SK and the security token stay out of it.
		err = s.audited(p.Audit.For(kps.TargetCredential, ak)).CreateTemporaryCredential(ctx, c)
		if err != nil && kps.ErrorCode(err) == kps.ErrIdentityConflict && attempt < newKeyAttempts {
			continue
		}
		if err != nil {
			return nil, "", "", err
		}
		return c, sk, st, nil
	}
}
