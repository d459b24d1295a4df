package iam

import (
	"slices"
	"sync"
	"time"

	"github.com/openkps/kps"
)

// writeVersioner is a store that can tell whether anything was written since a given moment:
// WriteVersion returns a number that moves with every committed write, and false where it
// cannot vouch for that (several processes writing, as replicas on PostgreSQL do).
// store.DB implements it.
type writeVersioner interface {
	WriteVersion() (int64, bool)
}

func (s *Service) writeVersion() (int64, bool) {
	if w, ok := s.Store.(writeVersioner); ok {
		return w.WriteVersion()
	}
	return 0, false
}

// validationCache remembers successful token validations (auth.md §5.6 and the scope checks
// of §4.3) per token and target project, with the store's write version they were read at.
// Everything a validation depends on besides the clock — the token record and its
// revocation, the user, domain and project and whether they are enabled, the role
// assignments — lives in the store, so an entry is good while the version has not moved and
// the token has not expired. Any write at all moves the version: revocations take effect on
// the next request, at the price of misses after unrelated writes. Refusals are not
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
