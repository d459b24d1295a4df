package iam

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/openkps/kps"
)

// dummySecretKey is the HMAC key of a request whose AK is unknown or unusable, so that the
// refusal costs what a wrong signature costs (auth.md §6.3 step 11).
const dummySecretKey = "openkpsDummySecretKeyForUnknownAccessKey"

// signingCredential is a permanent or temporary access key found for an AK, with its owner.
type signingCredential struct {
	sealed       []byte
	temporary    bool
	tokenHash    string // temporary: SHA-256 of the security token
	scopeProject string // temporary: the project it is bound to, or ""
	user         *kps.User
	domain       *kps.Domain
}

// AuthenticateSignature authenticates an AK/SK request (auth.md §6.3) for a request that
// targets projectID, or no project ("") on identity routes, and applies the scope checks of
// §4.3 rows 2, 5 and 7. body is the request body as received, already read within the route's
// limit. clientIP is the TCP peer, for the lockout of §12.4.
//
// Steps, in the normative order: the client IP's lock; parse Authorization; the lock of the
// (AK, client IP) pair; date and payload hash; the key lookup (unknown, inactive, owner or
// domain disabled: access-key-invalid; temporary and expired: credential-expired); the
// signature, compared in constant time (signature-mismatch, which counts towards the pair's
// lock); the security token (security-token-invalid). Then the principal: X-Domain-Id must be
// the owner's domain (KPS.6103), a temporary credential bound to a project admits no other
// (KPS.6103), and the target project must exist, be enabled, lie in the owner's domain and
// carry an effective role (else KPS.9006). The principal's roles are the effective roles on
// the target project, or the roles on the owner's domain for identity routes.
//
// Row 1 (path project versus X-Project-Id) and row 6 (no project at all) are the router's:
// only it knows where projectID came from. The route's minimum role (row 8) is the caller's.
//
// reads, when given, are the request's reads (kps.RequestReads): the lock of clientIP comes
// from them.
func (s *Service) AuthenticateSignatureAt(ctx context.Context, reads *kps.RequestReads, r *http.Request, body []byte, projectID, clientIP string) (*kps.Principal, error) {
	now := s.now()
	ipKey := clientKey(clientIP)
	if err := checkLockedAt(ctx, reads, s.lockout(), now, ipKey); err != nil {
		return nil, err
	}
	a, err := ParseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		return nil, err
	}
	pairKey := signatureKey(a.AccessKey, clientIP)
	if err := s.checkLocked(ctx, now, pairKey); err != nil {
		return nil, err
	}
	sr, err := CheckRequest(r, body, a, now)
	if err != nil {
		return nil, err
	}

	cred, err := s.signingCredential(ctx, a.AccessKey, now)
	if IsFailure(err) {
		_ = sr.Verify(dummySecretKey)
		return nil, s.refuse(ctx, now, err, ipKey)
	}
	if err != nil {
		return nil, err
	}
	if err := s.verifySignature(sr, a.AccessKey, cred.sealed); err != nil {
		var f *Failure
		if errors.As(err, &f) && f.Reason == ReasonSignatureMismatch {
			return nil, s.refuse(ctx, now, err, ipKey, pairKey)
		}
		return nil, err
	}
	if err := CheckSecurityToken(r, cred.temporary, cred.tokenHash); err != nil {
		return nil, s.refuse(ctx, now, err, ipKey)
	}
	if err := s.lockout().Reset(ctx, now, pairKey); err != nil {
		return nil, fmt.Errorf("iam: lockout state: %w", err)
	}

	p := &kps.Principal{
		UserID:     cred.user.ID,
		UserName:   cred.user.Name,
		DomainID:   cred.domain.ID,
		DomainName: cred.domain.Name,
		AuthMethod: kps.AuthAKSK,
		AccessKey:  a.AccessKey,
	}
	if cred.temporary {
		p.AuthMethod = kps.AuthAKSKTemporary
	} else {
		// Best effort: the request is authentic, and a lost last-use time must not refuse it.
		_ = s.Store.TouchAccessKey(ctx, a.AccessKey)
	}

	// §4.3 row 2; the Go SDK's global credentials send X-Domain-Id, signed.
	if hd := r.Header.Get("X-Domain-Id"); hd != "" {
		same, err := s.sameDomain(ctx, hd, cred.domain.ID)
		if err != nil {
			return nil, err
		}
		if !same {
			return nil, &Failure{Reason: "domain-mismatch", Err: kps.Errorf(kps.ErrProjectMismatch,
				"Domain mismatch: X-Domain-Id %s differs from the caller's domain.", clip(hd))}
		}
	}
	if projectID == "" {
		if p.Roles, err = s.Store.DomainRoles(ctx, cred.user.ID, cred.domain.ID); err != nil {
			return nil, err
		}
		return p, nil
	}
	// Row 5.
	if cred.scopeProject != "" && cred.scopeProject != projectID {
		return nil, &Failure{Reason: "project-mismatch", Err: kps.Errorf(kps.ErrProjectMismatch,
			"Project mismatch: the request targets project %s but the credentials are scoped to project %s.",
			clip(projectID), cred.scopeProject)}
	}
	// Row 7: one answer for a foreign, missing or disabled project and a missing role, so that
	// project IDs cannot be probed.
	proj, err := s.Store.ProjectByID(ctx, projectID)
	if err != nil {
		return nil, err
	}
	if proj == nil || !proj.Enabled || proj.DomainID != cred.domain.ID {
		return nil, &Failure{Reason: "project-unavailable", Err: kps.Errorf(kps.ErrForbidden, msgForbidden)}
	}
	roles, err := s.Store.EffectiveRoles(ctx, cred.user.ID, projectID)
	if err != nil {
		return nil, err
	}
	if len(roles) == 0 {
		return nil, &Failure{Reason: "no-role", Err: kps.Errorf(kps.ErrForbidden, msgForbidden)}
	}
	p.ProjectID, p.Roles = projectID, roles
	return p, nil
}

// verifySignature opens the sealed SK and runs the HMAC comparison (§6.3 steps 5–10, 12, 13).
func (s *Service) verifySignature(sr *SignedRequest, ak string, sealed []byte) error {
	if s.Sealer == nil {
		return errors.New("iam: no sealer for secret access keys")
	}
	sk, err := s.Sealer.Open(sealed, kps.AccessKeyAAD(ak))
	if err != nil {
		return fmt.Errorf("iam: opening the secret key of %s: %w", ak, err)
	}
	defer clear(sk)
	return sr.Verify(string(sk))
}

// signingCredential finds the AK among permanent and then temporary credentials (§6.3 step 11)
// and checks that it is usable: access-key-invalid when it is unknown, inactive, or its owner
// or the owner's domain is disabled; credential-expired for an expired temporary credential.
func (s *Service) signingCredential(ctx context.Context, ak string, now time.Time) (*signingCredential, error) {
	var c signingCredential
	var userID string
	k, err := s.Store.AccessKey(ctx, ak)
	if err != nil {
		return nil, err
	}
	if k != nil {
		if k.Status != kps.AccessKeyActive {
			return nil, SignatureFailure(ReasonAccessKeyInvalid)
		}
		c.sealed, userID = k.Secret, k.UserID
	} else {
		t, err := s.Store.TemporaryCredential(ctx, ak)
		if err != nil {
			return nil, err
		}
		if t == nil {
			return nil, SignatureFailure(ReasonAccessKeyInvalid)
		}
		if !now.Before(t.ExpiresAt) {
			return nil, SignatureFailure(ReasonCredentialExpired)
		}
		c.sealed, c.temporary, c.tokenHash, c.scopeProject, userID = t.Secret, true, t.SecurityTokenHash, t.ScopeProjectID, t.UserID
	}
	if c.user, err = s.Store.UserByID(ctx, userID); err != nil {
		return nil, err
	}
	if c.user == nil || !c.user.Enabled {
		return nil, SignatureFailure(ReasonAccessKeyInvalid)
	}
	if c.domain, err = s.Store.DomainByID(ctx, c.user.DomainID); err != nil {
		return nil, err
	}
	if c.domain == nil || !c.domain.Enabled {
		return nil, SignatureFailure(ReasonAccessKeyInvalid)
	}
	return &c, nil
}
