package iam

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/openkps/kps"
)

// Defaults of external identity mode (auth.md §10.1, §13).
const (
	DefaultExternalCacheTTL  = 300 * time.Second
	DefaultExternalTimeout   = 3 * time.Second
	DefaultExternalCacheSize = 10000
	// DefaultRoleMap maps Keystone's default role names onto the fixed roles.
	DefaultRoleMap = "admin=admin,member=member,_member_=member,reader=reader"
	// externalNegativeTTL is how long a token the identity service refused stays refused here.
	externalNegativeTTL = 30 * time.Second
	// maxExternalBody bounds the validation response read; a token body without its catalog is
	// a few KiB.
	maxExternalBody = 1 << 20
)

const msgIdentityDown = "The identity service is unavailable; retry later."

// External authenticates tokens issued by an existing Keystone or Huawei-IAM-compatible service
// (auth.md §10): each token is validated there once, and the mapped result is cached. It issues
// no tokens. Set the exported fields before first use and do not copy it afterwards.
type External struct {
	// URL is the identity service's base URL, ending in /v3 (identity.external.url).
	URL string
	// Client sends the validation calls; default: a client that follows no redirects (a
	// redirect would carry the token to another host). Its own Timeout, if any, also applies.
	Client *http.Client
	// Timeout bounds one validation call (default 3 s).
	Timeout time.Duration
	// CacheTTL bounds how long a valid token is trusted without asking again (default 300 s).
	// Negative means valid tokens are not cached.
	CacheTTL time.Duration
	// CacheSize bounds the cache (default 10 000 tokens); the least recently used go first.
	CacheSize int
	// RoleMap maps external role names to the fixed roles (default: ParseRoleMap(DefaultRoleMap)).
	// Unmapped roles are ignored.
	RoleMap map[string]kps.Role
	// DefaultRole is given to a token that carries no mapped role; "" gives none, so such a
	// token is refused on every route that needs a role.
	DefaultRole kps.Role
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Log receives the failures of the identity service (tokens by fingerprint only).
	Log *slog.Logger
	// Limiter counts refused credentials per client IP (auth.md §12.4); nil means a
	// MemoryLimiter of this External. A locked client's tokens are not sent to the identity
	// service.
	Limiter Limiter

	initOnce sync.Once
	cache    *tokenCache

	mu       sync.Mutex
	inflight map[string]*validation
}

// externalToken is what a validated token says, already mapped: the cached value.
type externalToken struct {
	userID, userName     string
	domainID, domainName string // the user's domain
	auditID              string
	projectID            string // set for a project-scoped token
	scopeDomainID        string // set for a domain-scoped token
	roles                []kps.Role
	expiresAt            time.Time
}

// validation is one call to the identity service that concurrent requests for the same token
// share.
type validation struct {
	done  chan struct{}
	token *externalToken
	err   error
}

func (e *External) init() {
	e.initOnce.Do(func() {
		size := e.CacheSize
		if size <= 0 {
			size = DefaultExternalCacheSize
		}
		e.cache = newTokenCache(size)
		e.inflight = map[string]*validation{}
		if e.RoleMap == nil {
			e.RoleMap, _ = ParseRoleMap(DefaultRoleMap)
		}
		if e.Client == nil {
			e.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		}
		if e.Log == nil {
			e.Log = slog.New(slog.DiscardHandler)
		}
		if e.Limiter == nil {
			e.Limiter = &MemoryLimiter{}
		}
	})
}

func (e *External) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

// Login answers POST /v3/auth/tokens: tokens come from the external service, so the route is
// not served here (auth.md §10.2).
func (e *External) Login(ctx context.Context, body []byte, headerToken, clientIP string) (string, any, error) {
	return "", nil, kps.Errorf(kps.ErrNoRoute, "The API path /v3/auth/tokens is not served in external identity mode; get tokens from the identity service.")
}

// AuthenticateSignature refuses every AK/SK request with 401 KPS.6102 access-key-invalid:
// access keys bound to external users (auth.md §10.2) are not implemented yet, and a local
// user's key would act for an identity the external service does not know.
func (e *External) AuthenticateSignatureAt(ctx context.Context, reads *kps.RequestReads, r *http.Request, body []byte, projectID, clientIP string) (*kps.Principal, error) {
	e.init()
	now, ipKey := e.now(), clientKey(clientIP)
	if err := checkLockedAt(ctx, reads, e.Limiter, now, ipKey); err != nil {
		return nil, err
	}
	return nil, e.refuse(ctx, now, SignatureFailure(ReasonAccessKeyInvalid), ipKey)
}

// Authenticate checks an X-Auth-Token with the external identity service (auth.md §10.1) for a
// request that targets targetProjectID, or no project ("") on identity routes, and applies the
// scope checks of §4.3 rows 3, 4 and 7 against the token's own scope and roles: the project
// need not exist locally. The route's minimum role (row 8) is the caller's check. clientIP is
// the TCP peer: a locked one is 429 KPS.6105 before any call, and a refused token counts
// against it (§12.4).
//
// An identity service that cannot answer yields 503 KPS.6106, never 401. reads, when given, are
// the request's reads (kps.RequestReads): the lock of clientIP comes from them.
func (e *External) AuthenticateAt(ctx context.Context, reads *kps.RequestReads, token, targetProjectID, clientIP string) (*kps.Principal, error) {
	e.init()
	now, ipKey := e.now(), clientKey(clientIP)
	if err := checkLockedAt(ctx, reads, e.Limiter, now, ipKey); err != nil {
		return nil, err
	}
	var t *externalToken
	var err error
	if token == "" || len(token) > MaxTokenBytes || !printableASCII(token) {
		// Such a value cannot be a token, and must not reach an outgoing header (§5.6 step 1).
		err = tokenFailed("token-unknown")
	} else {
		t, err = e.lookup(ctx, token)
	}
	if IsFailure(err) {
		return nil, e.refuse(ctx, now, err, ipKey)
	}
	if err != nil {
		return nil, err
	}
	p := &kps.Principal{
		UserID:       t.userID,
		UserName:     t.userName,
		DomainID:     t.domainID,
		DomainName:   t.domainName,
		AuthMethod:   kps.AuthToken,
		TokenAuditID: t.auditID,
	}
	if targetProjectID == "" {
		// Identity routes act on the domain: only a domain-scoped token's roles are roles there.
		if t.scopeDomainID != "" && t.scopeDomainID == t.domainID {
			p.Roles = slices.Clone(t.roles)
		}
		return p, nil
	}
	if err := checkTokenScope(t.projectID, targetProjectID); err != nil {
		return nil, err
	}
	// The token scope stands in for row 7's existence check (§10.1); the roles are those the
	// identity service put in the token, mapped.
	if len(t.roles) == 0 {
		return nil, &Failure{Reason: "no-role", Err: kps.Errorf(kps.ErrForbidden, msgForbidden)}
	}
	// The cached roles are shared; each principal gets its own copy.
	p.ProjectID, p.Roles = targetProjectID, slices.Clone(t.roles)
	return p, nil
}

// lookup returns the cached result for token, or validates it once however many requests ask
// at the same time.
func (e *External) lookup(ctx context.Context, token string) (*externalToken, error) {
	key := tokenHash(token)
	if t, ok := e.cache.get(key, e.now()); ok {
		if t == nil {
			return nil, tokenFailed("token-unknown")
		}
		return t, nil
	}
	e.mu.Lock()
	v, shared := e.inflight[key]
	if !shared {
		// A call that ended since the first look has filled the cache before leaving inflight.
		if t, ok := e.cache.get(key, e.now()); ok {
			e.mu.Unlock()
			if t == nil {
				return nil, tokenFailed("token-unknown")
			}
			return t, nil
		}
		v = &validation{done: make(chan struct{})}
		e.inflight[key] = v
	}
	e.mu.Unlock()
	if !shared {
		// The call is shared, so it must not die with the request that happened to start it.
		v.token, v.err = e.validate(context.WithoutCancel(ctx), token)
		e.mu.Lock()
		delete(e.inflight, key)
		e.mu.Unlock()
		close(v.done)
	}
	select {
	case <-v.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return v.token, v.err
}

// validate asks the identity service about token (§10.1 steps 2–5) and caches what it learns:
// a valid token until min(expires_at, now + CacheTTL), a refused one for 30 s, an outage not
// at all.
func (e *External) validate(ctx context.Context, token string) (*externalToken, error) {
	timeout := e.Timeout
	if timeout <= 0 {
		timeout = DefaultExternalTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	key, fp := tokenHash(token), TokenFingerprint(token)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(e.URL, "/")+"/auth/tokens?nocatalog=1", nil)
	if err != nil {
		return nil, e.unavailable(fp, "building the validation request", err)
	}
	req.Header.Set("X-Auth-Token", token)
	req.Header.Set("X-Subject-Token", token)
	req.Header.Set("Accept", "application/json")
	resp, err := e.Client.Do(req)
	if err != nil {
		// *url.Error names the URL, which holds no token; the token travels in headers only.
		return nil, e.unavailable(fp, "validation call failed", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxExternalBody+1))
	if err == nil && len(body) > maxExternalBody {
		err = errors.New("response body larger than 1 MiB")
	}
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusUnauthorized:
		e.cache.put(key, nil, e.now().Add(externalNegativeTTL))
		e.Log.Debug("token refused by the identity service", "token", fp, "status", resp.StatusCode)
		return nil, tokenFailed("token-unknown")
	case resp.StatusCode != http.StatusOK:
		// 5xx is an outage by the spec; anything else unexpected (a redirect, 403, 400) is
		// treated the same way: it tells nothing about the token, so it neither admits nor
		// refuses it.
		return nil, e.unavailable(fp, "unexpected validation status", fmt.Errorf("HTTP %d", resp.StatusCode))
	case err != nil:
		return nil, e.unavailable(fp, "reading the validation response failed", err)
	}
	t, err := e.mapToken(body)
	if err != nil {
		return nil, e.unavailable(fp, "malformed validation response", err)
	}
	now := e.now()
	until := t.expiresAt
	if e.CacheTTL >= 0 {
		ttl := e.CacheTTL
		if ttl == 0 {
			ttl = DefaultExternalCacheTTL
		}
		until = minTime(until, now.Add(ttl))
	} else {
		until = now
	}
	if until.After(now) {
		e.cache.put(key, t, until)
	}
	return t, nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// refuse counts the refusal err under each non-empty key and returns err, a LockoutError when
// a key was locked by the time the failure came, or the internal error of a limiter that
// could not count (it must not silently stop counting).
func (e *External) refuse(ctx context.Context, now time.Time, err error, keys ...string) error {
	return countFailure(ctx, e.Limiter, now, err, keys...)
}

// unavailable logs an identity-service failure and returns the 503 the caller sees. It is not a
// *Failure: the caller's credentials were not refused, so it counts toward no lockout.
func (e *External) unavailable(fingerprint, what string, err error) error {
	e.Log.Warn("identity service unavailable: "+what, "url", e.URL, "token", fingerprint, "err", err)
	return kps.Errorf(kps.ErrIdentityDown, msgIdentityDown)
}

// keystoneToken is the part of a Keystone/Huawei IAM token body that matters here.
type keystoneToken struct {
	Token *struct {
		ExpiresAt string   `json:"expires_at"`
		AuditIDs  []string `json:"audit_ids"`
		User      struct {
			ID     string `json:"id"`
			Name   string `json:"name"`
			Domain Ref    `json:"domain"`
		} `json:"user"`
		Project *struct {
			ID     string `json:"id"`
			Name   string `json:"name"`
			Domain Ref    `json:"domain"`
		} `json:"project"`
		Domain *Ref  `json:"domain"`
		Roles  []Ref `json:"roles"`
	} `json:"token"`
}

// mapToken decodes a validation body (§10.1 step 4). A body without a user, or without a usable
// expiry, is malformed.
func (e *External) mapToken(body []byte) (*externalToken, error) {
	var kt keystoneToken
	if err := json.Unmarshal(body, &kt); err != nil {
		return nil, err
	}
	tok := kt.Token
	if tok == nil || tok.User.ID == "" {
		return nil, errors.New("no token.user.id")
	}
	exp, err := time.Parse(time.RFC3339Nano, tok.ExpiresAt)
	if err != nil {
		return nil, fmt.Errorf("token.expires_at: %w", err)
	}
	t := &externalToken{
		userID: tok.User.ID, userName: tok.User.Name,
		domainID: tok.User.Domain.ID, domainName: tok.User.Domain.Name,
		expiresAt: exp,
	}
	if len(tok.AuditIDs) > 0 {
		t.auditID = tok.AuditIDs[0]
	}
	switch {
	case tok.Project != nil:
		if tok.Project.ID == "" {
			return nil, errors.New("no token.project.id")
		}
		t.projectID = tok.Project.ID
	case tok.Domain != nil:
		if tok.Domain.ID == "" {
			return nil, errors.New("no token.domain.id")
		}
		t.scopeDomainID = tok.Domain.ID
	}
	if t.projectID != "" || t.scopeDomainID != "" {
		names := make([]string, len(tok.Roles))
		for i, r := range tok.Roles {
			names[i] = r.Name
		}
		t.roles = MapRoles(names, e.RoleMap, e.DefaultRole)
	}
	return t, nil
}

// MapRoles maps external role names through m (unmapped names are ignored) and returns the
// strongest result with the roles it implies; with no mapped role, def and its implied roles,
// or none when def is "".
func MapRoles(names []string, m map[string]kps.Role, def kps.Role) []kps.Role {
	var roles []kps.Role
	for _, n := range names {
		if r, ok := m[n]; ok {
			roles = append(roles, r)
		}
	}
	if len(roles) == 0 && def != "" {
		roles = []kps.Role{def}
	}
	return kps.Implied(roles)
}

// ParseRoleMap parses "external=role,…" (identity.external.role_map), e.g. DefaultRoleMap.
// External names are compared exactly; each must map to admin, member or reader.
func ParseRoleMap(s string) (map[string]kps.Role, error) {
	m := map[string]kps.Role{}
	for _, pair := range strings.Split(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		name, role, ok := strings.Cut(pair, "=")
		name, role = strings.TrimSpace(name), strings.TrimSpace(role)
		if !ok || name == "" {
			return nil, fmt.Errorf("role map entry %q is not external=role", pair)
		}
		if !kps.Role(role).Valid() {
			return nil, fmt.Errorf("role map entry %q: %q is not admin, member or reader", pair, role)
		}
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("role map names %q twice", name)
		}
		m[name] = kps.Role(role)
	}
	return m, nil
}

// ValidateExternalURL checks an identity.external.url: absolute http(s), no query or fragment.
func ValidateExternalURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q is not an http(s) base URL such as https://keystone.example.com/v3", raw)
	}
	return nil
}

// tokenCache is a bounded LRU of validation results keyed by SHA-256(token); a nil token is a
// refused one. Entries carry their own expiry.
type tokenCache struct {
	mu    sync.Mutex
	max   int
	order *list.List // of *cacheEntry, most recently used first
	items map[string]*list.Element
}

type cacheEntry struct {
	key   string
	token *externalToken
	until time.Time
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{max: max, order: list.New(), items: map[string]*list.Element{}}
}

// get returns the live entry for key; ok is false on a miss or an expired entry (which it
// drops).
func (c *tokenCache) get(key string, now time.Time) (token *externalToken, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, found := c.items[key]
	if !found {
		return nil, false
	}
	ent := el.Value.(*cacheEntry)
	if !now.Before(ent.until) {
		c.order.Remove(el)
		delete(c.items, key)
		return nil, false
	}
	c.order.MoveToFront(el)
	return ent.token, true
}

// put stores token under key until the given time, evicting the least recently used entries
// beyond the bound.
func (c *tokenCache) put(key string, token *externalToken, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, found := c.items[key]; found {
		ent := el.Value.(*cacheEntry)
		ent.token, ent.until = token, until
		c.order.MoveToFront(el)
		return
	}
	c.items[key] = c.order.PushFront(&cacheEntry{key: key, token: token, until: until})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(*cacheEntry).key)
	}
}

func (c *tokenCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
