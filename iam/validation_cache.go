package iam

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/openkps/kps"
)

// identityVersion returns the identity version (Service.Versions, or the request's reads when
// given), and false when there is none or it cannot be read now (the validation then reads
// everything, and reports the error if the database is down).
func (s *Service) identityVersion(ctx context.Context, reads *kps.RequestReads) (int64, bool) {
	if reads != nil && reads.IdentityVersioned {
		return reads.IdentityVersion, true
	}
	if s.Versions == nil {
		return 0, false
	}
	v, ok, err := s.Versions.IdentityVersion(ctx)
	return v, ok && err == nil
}

// validationCache remembers successful token validations (auth.md §5.6 and the scope checks
// of §4.3) per token and target project, with the store's identity version they were read at.
// Everything a validation depends on besides the clock — the token record and its
// revocation, the user, domain and project and whether they are enabled, the role
// assignments — lives in the store, so an entry is good while the version has not moved and
// the token has not expired. Every committed change to them moves the version, on every
// replica: revocations take effect on the next request. Refusals are not
// remembered (they must count against the lockout), and the lockout check runs before the
// cache. The token itself is not kept, only its SHA-256.
type validationCache struct {
	mu sync.Mutex
	m  map[validationKey]cachedValidation
}

type validationKey struct {
	tokenHash string
	project   string // the target project; "" on identity routes
}

type cachedValidation struct {
	version   int64
	expires   time.Time
	principal kps.Principal
}

// maxValidations bounds the cache; when full it starts over.
const maxValidations = 10_000

func (c *validationCache) get(k validationKey, version int64, now time.Time) (*kps.Principal, bool) {
	c.mu.Lock()
	v, ok := c.m[k]
	c.mu.Unlock()
	if !ok || v.version != version || !now.Before(v.expires) {
		return nil, false
	}
	p := v.principal
	p.Roles = slices.Clone(p.Roles)
	return &p, true
}

func (c *validationCache) put(k validationKey, version int64, expires time.Time, p *kps.Principal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxValidations {
		c.m = make(map[validationKey]cachedValidation)
	}
	v := cachedValidation{version: version, expires: expires, principal: *p}
	v.principal.Roles = slices.Clone(p.Roles)
	c.m[k] = v
}
