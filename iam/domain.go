package iam

import (
	"context"

	"github.com/openkps/kps"
)

// DefaultDomainID is the ID of the operator domain a new bootstrap creates (auth.md §3.7):
// Keystone's default domain is called so, and devstack settings (OS_USER_DOMAIN_ID=default),
// Tempest's default_domain_id and many scripts name it by that ID.
const DefaultDomainID = "default"

// ResolveDomainID returns the ID of the domain a request's domain ID names. It is id itself,
// except that DefaultDomainID names the operator domain when no domain has that ID: a store
// bootstrapped before the operator domain was given the ID "default" keeps its random ID and
// takes "default" as an alias for it (docs/decisions.md). Every domain ID a request carries
// goes through it: login, token scope, X-Domain-Id, filters and path parameters.
func (s *Service) ResolveDomainID(ctx context.Context, id string) (string, error) {
	if id != DefaultDomainID {
		return id, nil
	}
	if known := s.defaultDomain.Load(); known != nil {
		return *known, nil
	}
	d, err := s.Store.DomainByID(ctx, DefaultDomainID)
	if err == nil && d == nil {
		d, err = s.Store.DomainByName(ctx, BootstrapDomain)
	}
	if err != nil || d == nil {
		return id, err
	}
	// The operator domain can be neither renamed nor deleted, so its ID never changes.
	s.defaultDomain.Store(&d.ID)
	return d.ID, nil
}

// resolveDomainFilter resolves the domain ID of a filter (nil matches every domain) into a new
// pointer, leaving the caller's value alone.
func (s *Service) resolveDomainFilter(ctx context.Context, id *string) (*string, error) {
	if id == nil {
		return nil, nil
	}
	v, err := s.ResolveDomainID(ctx, *id)
	return &v, err
}

// sameDomain reports whether a domain ID a request names (X-Domain-Id) is the domain domainID.
func (s *Service) sameDomain(ctx context.Context, named, domainID string) (bool, error) {
	if named == domainID {
		return true, nil
	}
	id, err := s.ResolveDomainID(ctx, named)
	return id == domainID, err
}

// SameDomain reports whether the domain ID a request names (X-Domain-Id, auth.md §4.3 row 2) is
// the principal's domain, DefaultDomainID counting as the operator domain's ID.
func (s *Service) SameDomain(ctx context.Context, named string, p *kps.Principal) (bool, error) {
	return s.sameDomain(ctx, named, p.DomainID)
}
