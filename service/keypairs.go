package service

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/openkps/kps"
	"github.com/openkps/kps/sshkey"
)

// CreateKeyPair is the one place a key pair is created, for the KPS API (§2.1, §2.6) and the
// Nova API (nova-keypairs.md §5.2) alike: validate, decide the owner, check Nova's per-user
// limit early (N-31), make or check the key material, seal a hosted private key, and insert
// under the quotas in one transaction.
func (s *Service) CreateKeyPair(ctx context.Context, p *kps.Principal, c kps.KeyPairCreate) (*kps.NewKeyPair, error) {
	if err := kps.ValidateKeyPairName(c.Name); err != nil {
		return nil, err
	}
	if err := kps.ValidateKeyPairType(c.Type); err != nil {
		return nil, err
	}
	if err := kps.ValidateKeyPairScope(c.Scope); err != nil {
		return nil, err
	}
	k := &kps.KeyPair{ProjectID: p.ProjectID, Name: c.Name, Type: kps.TypeSSH, Scope: kps.ScopeUser, UserID: p.UserID}
	if c.Type != "" {
		k.Type = c.Type
	}
	if c.Scope != "" {
		k.Scope = c.Scope
	}
	if c.Hosted && k.Type == kps.TypeX509 {
		return nil, errX509NotHostable(c.Name)
	}
	if c.Owner != "" && c.Owner != p.UserID {
		if err := s.checkOwner(ctx, p, c.Owner); err != nil {
			return nil, err
		}
		k.UserID = c.Owner
	}
	quota := kps.KeyPairQuota{Project: s.cfg.KeyPairQuota}
	if c.PerUserQuota {
		if limit := *s.cfg.KeyPairsPerUser; limit >= 0 {
			quota.PerUser, quota.User = true, limit
		}
		if err := s.checkQuotaEarly(ctx, p.ProjectID, k.UserID, quota); err != nil {
			return nil, err
		}
	}

	created := &kps.NewKeyPair{KeyPair: k}
	hostedKey := c.HostedPrivateKey
	switch {
	case c.PublicKey != "" && k.Type == kps.TypeX509:
		if err := importCertificate(k, c.PublicKey); err != nil {
			return nil, err
		}
	case c.PublicKey != "":
		key, err := sshkey.ParsePublicKey(c.PublicKey)
		if err != nil {
			return nil, err
		}
		k.PublicKey, k.Fingerprint, k.Algorithm = c.PublicKey, key.Fingerprint, key.Algorithm
		if c.Hosted {
			if err := matchPrivateKey(hostedKey, key); err != nil {
				return nil, err
			}
		}
	case k.Type == kps.TypeX509:
		// A self-signed client certificate; the private key is returned once, as a PKCS#12
		// archive with an empty password (nova-keypairs.md §9.2), and never hosted.
		g, err := sshkey.GenerateX509(k.UserID)
		if err != nil {
			return nil, err
		}
		k.PublicKey, k.Fingerprint, k.Algorithm = g.CertificatePEM, g.Fingerprint, "X509"
		created.PrivateKey = g.PKCS12
	default:
		priv, line, err := sshkey.GenerateRSA(c.Name)
		if err != nil {
			return nil, err
		}
		key, err := sshkey.ParsePublicKey(line)
		if err != nil {
			return nil, err
		}
		k.PublicKey, k.Fingerprint, k.Algorithm = line, key.Fingerprint, key.Algorithm
		created.PrivateKey, hostedKey = priv, priv
	}
	if c.UserID != "" && c.UserID != p.UserID {
		return nil, kps.Errorf(kps.ErrUserMismatch, "Parameter keypair.user_id must be the caller's user ID.")
	}
	if c.Hosted {
		sealed, err := s.sealer.Seal([]byte(hostedKey), kps.PrivateKeyAAD(k.ProjectID, k.Name))
		if err != nil {
			return nil, err
		}
		k.PrivateKey = sealed
	}
	if err := s.store.CreateKeyPair(ctx, k, quota); err != nil {
		return nil, err
	}
	return created, nil
}

// checkOwner lets an admin create a key pair for another user (nova-keypairs.md §7.4, §10),
// who must be a user of the caller's domain: users, projects and key pairs never cross a
// domain (auth.md §2). An unknown user is refused alike, so the answer does not tell whether
// an ID exists elsewhere. Where users are not known here (external identity) only the role is
// checked.
func (s *Service) checkOwner(ctx context.Context, p *kps.Principal, owner string) error {
	if !p.Has(kps.RoleAdmin) {
		return forbidden()
	}
	if s.users == nil {
		return nil
	}
	u, err := s.users.UserByID(ctx, owner)
	if err != nil {
		return err
	}
	if u == nil || u.DomainID != p.DomainID {
		return kps.Errorf(kps.ErrInvalid, "Invalid input for field/attribute user_id. Value: %s. It does not name a user of the caller's domain", kps.Clip(owner))
	}
	return nil
}

// checkQuotaEarly refuses, before the key material is looked at (N-31), a create that the
// store would refuse for the quotas: the owner's key pairs at the per-user limit, or their view
// of the project at the project's. The store's transaction decides for good.
func (s *Service) checkQuotaEarly(ctx context.Context, projectID, owner string, q kps.KeyPairQuota) error {
	owned, visible := 0, 0
	marker := ""
	for {
		page, err := s.store.ListKeyPairs(ctx, projectID, owner, marker, 1000)
		if err != nil {
			return err
		}
		for _, k := range page.Items {
			visible++
			if k.UserID == owner {
				owned++
			}
		}
		if page.NextMarker == nil {
			break
		}
		marker = *page.NextMarker
	}
	if q.PerUser && owned >= q.User {
		return kps.Errorf(kps.ErrQuota, "The key pair quota of %d per user is exceeded.", q.User)
	}
	if visible >= q.Project {
		return kps.Errorf(kps.ErrQuota, "The key pair quota of %d per project is exceeded.", q.Project)
	}
	return nil
}

// matchPrivateKey parses a private key (KPS.6010) and checks it belongs to pub.
func matchPrivateKey(text string, pub *sshkey.PublicKey) error {
	signer, _, err := sshkey.ParsePrivateKey(text)
	if err != nil {
		return err
	}
	if !sshkey.Matches(signer, pub) {
		return kps.Errorf(kps.ErrPrivateKey, "The private key does not match the public key of the key pair.")
	}
	return nil
}

// importCertificate accepts one PEM X.509 certificate as the public key of an x509 key pair
// (§1.6).
func importCertificate(k *kps.KeyPair, text string) error {
	bad := kps.Errorf(kps.ErrPublicKey, "Invalid parameter keypair.public_key: one PEM X.509 certificate is required.")
	if len(text) > 8192 {
		return bad
	}
	block, rest := pem.Decode([]byte(text))
	if block == nil || block.Type != "CERTIFICATE" || strings.TrimSpace(string(rest)) != "" {
		return bad
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		return bad
	}
	k.PublicKey, k.Fingerprint, k.Algorithm = text, sshkey.CertificateFingerprint(block.Bytes), "X509"
	return nil
}

func errX509NotHostable(name string) error {
	return kps.Errorf(kps.ErrEncryption, "Private keys of x509 key pair '%s' cannot be hosted.", name)
}

// errX509NotBindable is the one refusal of an x509 key pair in a bind (§2.11, KPS.6011).
func errX509NotBindable(name string) error {
	return kps.Errorf(kps.ErrX509NotBindable, "Key pair '%s' is an x509 key pair and cannot be bound to a server.", name)
}

// KeyPair implements kps.KeyPairService.
func (s *Service) KeyPair(ctx context.Context, p *kps.Principal, name, userID string) (*kps.KeyPair, error) {
	user, err := viewer(p, userID)
	if err != nil {
		return nil, err
	}
	return s.store.KeyPair(ctx, p.ProjectID, name, user)
}

// ListKeyPairs implements kps.KeyPairService.
func (s *Service) ListKeyPairs(ctx context.Context, p *kps.Principal, userID, marker string, limit int) (*kps.KeyPairPage, error) {
	user, err := viewer(p, userID)
	if err != nil {
		return nil, err
	}
	return s.store.ListKeyPairs(ctx, p.ProjectID, user, marker, limit)
}

// UpdateKeyPairDescription implements kps.KeyPairService.
func (s *Service) UpdateKeyPairDescription(ctx context.Context, p *kps.Principal, name, description string) error {
	if err := kps.ValidateDescription(description); err != nil {
		return err
	}
	return s.store.UpdateKeyPairDescription(ctx, p.ProjectID, name, p.UserID, description)
}

// DeleteKeyPair implements kps.KeyPairService.
func (s *Service) DeleteKeyPair(ctx context.Context, p *kps.Principal, name, userID string) error {
	user, err := viewer(p, userID)
	if err != nil {
		return err
	}
	return s.store.DeleteKeyPair(ctx, p.ProjectID, name, user)
}

// ImportPrivateKey implements kps.KeyPairService (§2.7).
func (s *Service) ImportPrivateKey(ctx context.Context, p *kps.Principal, name, privateKey, userID string) (*kps.KeyPair, error) {
	signer, _, err := sshkey.ParsePrivateKey(privateKey)
	if err != nil {
		return nil, err
	}
	k, err := s.store.KeyPair(ctx, p.ProjectID, name, p.UserID)
	if err != nil {
		return nil, err
	}
	if k.Type == kps.TypeX509 {
		return nil, errX509NotHostable(name)
	}
	pub, err := sshkey.ParsePublicKey(k.PublicKey)
	if err != nil {
		return nil, err
	}
	if !sshkey.Matches(signer, pub) {
		return nil, kps.Errorf(kps.ErrPrivateKey, "The private key does not match the public key of key pair '%s'.", name)
	}
	if userID != "" && userID != k.UserID {
		return nil, kps.Errorf(kps.ErrUserMismatch, "Parameter keypair.user_id must be the owner of key pair '%s'.", name)
	}
	sealed, err := s.sealer.Seal([]byte(privateKey), kps.PrivateKeyAAD(p.ProjectID, name))
	if err != nil {
		return nil, err
	}
	if err := s.store.SetPrivateKey(ctx, p.ProjectID, name, p.UserID, sealed); err != nil {
		return nil, err
	}
	return k, nil
}

// ExportPrivateKey implements kps.KeyPairService (§2.8).
func (s *Service) ExportPrivateKey(ctx context.Context, p *kps.Principal, name string) ([]byte, error) {
	if !p.Has(kps.ExportRole) {
		return nil, forbidden()
	}
	k, err := s.store.KeyPair(ctx, p.ProjectID, name, p.UserID)
	if err != nil {
		return nil, err
	}
	if k.PrivateKey == nil {
		return nil, kps.Errorf(kps.ErrNoPrivateKey, "Key pair '%s' has no hosted private key.", name)
	}
	plain, err := s.sealer.Open(k.PrivateKey, kps.PrivateKeyAAD(p.ProjectID, name))
	if err != nil {
		return nil, fmt.Errorf("opening the hosted private key of %s: %w", name, err)
	}
	return plain, nil
}

// ClearPrivateKey implements kps.KeyPairService (§2.10).
func (s *Service) ClearPrivateKey(ctx context.Context, p *kps.Principal, name string) error {
	return s.store.SetPrivateKey(ctx, p.ProjectID, name, p.UserID, nil)
}
