package iam

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/openkps/kps"
)

// Authentication methods of POST /v3/auth/tokens.
const (
	MethodPassword = "password"
	MethodToken    = "token"
)

// ScopeKind is what a token is scoped to.
type ScopeKind int

const (
	// ScopeNone asks for the user's default project if they hold a role there, else an
	// unscoped token.
	ScopeNone ScopeKind = iota
	ScopeProject
	ScopeDomain
)

// Scope is the decoded auth.scope of a token request.
type Scope struct {
	Kind ScopeKind
	// ProjectID, or ProjectName in the domain given by DomainID/DomainName (the user's own
	// domain when both are empty). For ScopeDomain, DomainID or DomainName names the domain.
	ProjectID, ProjectName string
	DomainID, DomainName   string
}

// IssueRequest is a decoded token request (see DecodeAuthRequest).
type IssueRequest struct {
	Method string // MethodPassword or MethodToken
	// Password method: UserID, or UserName in the domain UserDomainID or UserDomainName.
	UserID, UserName             string
	UserDomainID, UserDomainName string
	Password                     string
	// Token method: the token to re-scope (auth.identity.token.id, else the X-Auth-Token
	// header).
	Token string
	Scope Scope
	// ClientIP is the TCP peer, for the lockout of auth.md §12.4; "" counts nothing per IP.
	ClientIP string
}

// String hides the password and the token from any accidental formatting.
func (r IssueRequest) String() string {
	return fmt.Sprintf("IssueRequest{Method:%s UserID:%s UserName:%s UserDomainID:%s UserDomainName:%s Password:*** Token:*** Scope:%+v ClientIP:%s}",
		r.Method, r.UserID, r.UserName, r.UserDomainID, r.UserDomainName, r.Scope, r.ClientIP)
}

// GoString hides the secrets from %#v.
func (r IssueRequest) GoString() string { return r.String() }

// Timestamp marshals as UTC with six fractional digits, "2006-01-02T15:04:05.000000Z".
type Timestamp struct{ time.Time }

// TimeLayout is the token time format of auth.md §5.1.
const TimeLayout = "2006-01-02T15:04:05.000000Z"

func (t Timestamp) MarshalJSON() ([]byte, error) {
	return []byte(`"` + t.UTC().Format(TimeLayout) + `"`), nil
}

// Ref is an {id, name} pair.
type Ref struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// TokenUser is the user member of a token body.
type TokenUser struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Domain Ref    `json:"domain"`
	// PasswordExpiresAt is always null: passwords do not expire.
	PasswordExpiresAt *string `json:"password_expires_at"`
}

// TokenProject is the project member of a project-scoped token body.
type TokenProject struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Domain Ref    `json:"domain"`
}

// TokenBody is the "token" object of auth.md §5.1; the api package marshals it as is (under a
// "token" key, see TokenResponse) and fills Catalog unless ?nocatalog.
type TokenBody struct {
	Methods   []string      `json:"methods"`
	IssuedAt  Timestamp     `json:"issued_at"`
	ExpiresAt Timestamp     `json:"expires_at"`
	AuditIDs  []string      `json:"audit_ids"`
	IsDomain  bool          `json:"is_domain"`
	User      TokenUser     `json:"user"`
	Project   *TokenProject `json:"project,omitempty"`
	Domain    *Ref          `json:"domain,omitempty"`
	// Roles is absent (nil) for an unscoped token, and [] for a domain-scoped token of a user
	// without a domain-level role.
	Roles   []Ref `json:"roles,omitzero"`
	Catalog any   `json:"catalog,omitempty"`
}

// TokenResponse is the response body of POST /v3/auth/tokens.
type TokenResponse struct {
	Token *TokenBody `json:"token"`
}

// Login decodes the body of POST /v3/auth/tokens and issues the token; headerToken is the
// X-Auth-Token header, used by the token method when the body names no token; clientIP is the
// TCP peer, for the lockout (auth.md §12.4). resp is a *TokenResponse.
func (s *Service) Login(ctx context.Context, body []byte, headerToken, clientIP string) (token string, resp any, err error) {
	req, err := DecodeAuthRequest(body)
	if IsFailure(err) {
		// An unsupported method or an over-long password is a failed login from this client.
		now, ipKey := s.now(), clientKey(clientIP)
		if lerr := s.checkLocked(ctx, now, ipKey); lerr != nil {
			return "", nil, lerr
		}
		return "", nil, s.refuse(ctx, now, err, ipKey)
	}
	if err != nil {
		return "", nil, err
	}
	if req.Method == MethodToken && req.Token == "" {
		req.Token = headerToken
	}
	req.ClientIP = clientIP
	token, b, err := s.IssueToken(ctx, req)
	if err != nil {
		return "", nil, err
	}
	return token, &TokenResponse{Token: b}, nil
}

// IssueToken authenticates req and issues a token (auth.md §5.1 steps 2–6). The token string
// is returned once; only its SHA-256 is stored. A locked client IP or login name is 429
// KPS.6105 before any lookup or hash (§12.4); every failed login counts against both.
func (s *Service) IssueToken(ctx context.Context, req IssueRequest) (token string, body *TokenBody, err error) {
	now := s.now().UTC().Truncate(time.Millisecond)
	var (
		user    *kps.User
		domain  *kps.Domain
		expires time.Time
		audit   = []string{newAuditID()}
		ipKey   = clientKey(req.ClientIP)
	)
	switch req.Method {
	case MethodPassword:
		if user, domain, err = s.checkPassword(ctx, req, now, ipKey); err != nil {
			return "", nil, err
		}
		expires = now.Add(s.ttl())
	case MethodToken:
		if err := s.checkLocked(ctx, now, ipKey); err != nil {
			return "", nil, err
		}
		v, err := s.validate(ctx, req.Token)
		if IsFailure(err) {
			return "", nil, s.refuse(ctx, now, err, ipKey)
		}
		if err != nil {
			return "", nil, err
		}
		user, domain, expires = v.user, v.domain, v.token.ExpiresAt
		// Re-scoping never extends a session (§5.3); the audit chain names the source token.
		if len(v.token.AuditIDs) > 0 {
			audit = append(audit, v.token.AuditIDs[0])
		}
	default:
		return "", nil, s.refuse(ctx, now, loginFailed("method-unsupported"), ipKey)
	}

	sc, err := s.resolveScope(ctx, user, domain, req.Scope)
	if err != nil {
		return "", nil, err
	}
	token = newToken()
	rec := &kps.Token{
		Hash:      tokenHash(token),
		UserID:    user.ID,
		Methods:   []string{req.Method},
		AuditIDs:  audit,
		IssuedAt:  now,
		ExpiresAt: expires,
	}
	body = &TokenBody{
		Methods:   rec.Methods,
		IssuedAt:  Timestamp{now},
		ExpiresAt: Timestamp{expires},
		AuditIDs:  audit,
		User:      TokenUser{ID: user.ID, Name: user.Name, Domain: Ref{domain.ID, domain.Name}},
	}
	switch {
	case sc.project != nil:
		rec.ProjectID = sc.project.ID
		body.Project = &TokenProject{ID: sc.project.ID, Name: sc.project.Name, Domain: Ref{domain.ID, domain.Name}}
	case sc.domain != nil:
		rec.DomainID = sc.domain.ID
		body.Domain = &Ref{sc.domain.ID, sc.domain.Name}
	}
	if sc.project != nil || sc.domain != nil {
		if body.Roles, err = s.roleRefs(ctx, sc.roles); err != nil {
			return "", nil, err
		}
		// Unscoped tokens carry no catalog (§5.1); the api drops it for ?nocatalog.
		body.Catalog = s.Catalog()
	}
	if err := s.Store.CreateToken(ctx, rec, s.maxTokensPerUser()); err != nil {
		return "", nil, fmt.Errorf("iam: store token: %w", err)
	}
	return token, body, nil
}

// checkPassword finds the user and verifies the password; every failure is the same KPS.6107,
// costs one hash verification (§5.1 step 3) and counts against the client IP, the login name as
// the request gives it and, once found, the user (§12.4). The verification is reserved under
// each of them before any lookup or hash, atomically with their locks (guess), and waits for a
// hash slot in the bounded queue of anonymous verifications; a correct password resets the
// name and the user.
func (s *Service) checkPassword(ctx context.Context, req IssueRequest, now time.Time, ipKey string) (*kps.User, *kps.Domain, error) {
	g, err := s.reserveGuess(ctx, now, loginSubject(req), ipKey, loginNameKey(req))
	if err != nil {
		return nil, nil, err
	}
	user, domain, err := s.verifyLogin(ctx, g, req)
	if err != nil {
		// Whatever was not settled as a failure or success was not a guess: an internal
		// error, a refusal before the hash, the queue full.
		if serr := g.settle(ctx, kps.AttemptVoid); serr != nil {
			return nil, nil, serr
		}
		return nil, nil, err
	}
	return user, domain, nil
}

// verifyLogin is checkPassword once the verification is reserved; it settles g as failed or
// succeeded when the password was judged, and leaves it otherwise.
func (s *Service) verifyLogin(ctx context.Context, g *guess, req IssueRequest) (*kps.User, *kps.Domain, error) {
	nameKey := loginNameKey(req)
	if len(req.Password) == 0 || len(req.Password) > maxPasswordBytes {
		return nil, nil, g.fail(ctx, loginFailed("password-length"))
	}
	user, err := s.findUser(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	if user != nil {
		g.user = user.ID
		if idKey := userKey(user.ID); idKey != nameKey {
			if err := g.add(ctx, idKey); err != nil {
				return nil, nil, err
			}
		}
	}
	hash := ""
	if user != nil {
		hash = user.PasswordHash
	}
	if _, _, _, perr := parsePHC(hash); perr != nil {
		// Unknown user, or a user without a usable password: verify the dummy hash anyway.
		if hash, err = s.dummyHash(ctx); err != nil {
			return nil, nil, err
		}
		user = nil
	}
	ok, rehash, err := s.Params.verify(ctx, s.loginHashing(), hash, req.Password)
	if err != nil {
		var queueFull *LockoutError
		if errors.As(err, &queueFull) {
			queueFull.User = g.user
		}
		return nil, nil, err
	}
	switch {
	case user == nil:
		return nil, nil, g.fail(ctx, loginFailed("user-unknown"))
	case !ok:
		return nil, nil, g.fail(ctx, loginFailed("password-wrong"))
	case !user.Enabled:
		return nil, nil, g.fail(ctx, loginFailed("user-disabled"))
	}
	domain, err := s.Store.DomainByID(ctx, user.DomainID)
	if err != nil {
		return nil, nil, err
	}
	if domain == nil || !domain.Enabled {
		return nil, nil, g.fail(ctx, loginFailed("domain-disabled"))
	}
	if err := g.settle(ctx, kps.AttemptSucceeded); err != nil {
		return nil, nil, err
	}
	if rehash {
		// Best effort: the login succeeds with the old hash if the upgrade fails. The store
		// keeps a concurrent password change rather than this hash of the old password.
		if h, err := s.Params.Hash(ctx, req.Password); err == nil {
			_ = s.Store.RehashPassword(ctx, user.ID, user.PasswordHash, h)
		}
	}
	return user, domain, nil
}

// loginSubject names the user a login request names, as it names them, for the log: the user
// ID, or the domain (ID or name) and the user name.
func loginSubject(req IssueRequest) string {
	switch {
	case req.UserID != "":
		return clip(req.UserID)
	case req.UserDomainID != "":
		return clip(req.UserDomainID) + "/" + clip(req.UserName)
	default:
		return clip(req.UserDomainName) + "/" + clip(req.UserName)
	}
}

func (s *Service) findUser(ctx context.Context, req IssueRequest) (*kps.User, error) {
	if req.UserID != "" {
		return s.Store.UserByID(ctx, req.UserID)
	}
	if req.UserName == "" {
		return nil, nil
	}
	d, err := s.domainByRef(ctx, req.UserDomainID, req.UserDomainName)
	if d == nil || err != nil {
		return nil, err
	}
	return s.Store.UserByName(ctx, d.ID, req.UserName)
}

// domainByRef finds the domain a request names by ID (DefaultDomainID included) or by name.
func (s *Service) domainByRef(ctx context.Context, id, name string) (*kps.Domain, error) {
	switch {
	case id != "":
		id, err := s.ResolveDomainID(ctx, id)
		if err != nil {
			return nil, err
		}
		return s.Store.DomainByID(ctx, id)
	case name != "":
		return s.Store.DomainByName(ctx, name)
	}
	return nil, nil
}

type scope struct {
	project *kps.Project
	domain  *kps.Domain
	roles   []kps.Role
}

// resolveScope applies §5.1 step 5: the scope must exist, be enabled and lie in the user's
// domain, else KPS.6108; a project scope must carry at least one effective role. The user's own
// domain is always available, as Huawei IAM grants a token of their account to every user, with
// the roles assigned on the domain itself, none for a plain member: such a token acts on no
// project (§4.3 row 4), so it grants nothing a project-scoped token of the user does not.
func (s *Service) resolveScope(ctx context.Context, user *kps.User, own *kps.Domain, sc Scope) (scope, error) {
	switch sc.Kind {
	case ScopeProject:
		var p *kps.Project
		var err error
		if sc.ProjectID != "" {
			p, err = s.Store.ProjectByID(ctx, sc.ProjectID)
		} else {
			d := own
			if sc.DomainID != "" || sc.DomainName != "" {
				d, err = s.domainByRef(ctx, sc.DomainID, sc.DomainName)
			}
			if err == nil && d != nil {
				p, err = s.Store.ProjectByName(ctx, d.ID, sc.ProjectName)
			}
		}
		if err != nil {
			return scope{}, err
		}
		return s.projectScope(ctx, user, p)
	case ScopeDomain:
		d, err := s.domainByRef(ctx, sc.DomainID, sc.DomainName)
		if err != nil {
			return scope{}, err
		}
		if d == nil || !d.Enabled || d.ID != user.DomainID {
			return scope{}, scopeFailed("scope-unavailable")
		}
		roles, err := s.Store.DomainRoles(ctx, user.ID, d.ID)
		if err != nil {
			return scope{}, err
		}
		return scope{domain: d, roles: roles}, nil
	}
	// No scope: the default project if it still qualifies, else unscoped (§5.1 step 5).
	if user.DefaultProjectID == "" {
		return scope{}, nil
	}
	p, err := s.Store.ProjectByID(ctx, user.DefaultProjectID)
	if err != nil {
		return scope{}, err
	}
	sc2, err := s.projectScope(ctx, user, p)
	if IsFailure(err) {
		return scope{}, nil
	}
	return sc2, err
}

func (s *Service) projectScope(ctx context.Context, user *kps.User, p *kps.Project) (scope, error) {
	if p == nil || !p.Enabled || p.DomainID != user.DomainID {
		return scope{}, scopeFailed("scope-unavailable")
	}
	roles, err := s.Store.EffectiveRoles(ctx, user.ID, p.ID)
	if err != nil {
		return scope{}, err
	}
	if len(roles) == 0 {
		return scope{}, scopeFailed("scope-no-role")
	}
	return scope{project: p, roles: roles}, nil
}

func (s *Service) roleRefs(ctx context.Context, roles []kps.Role) ([]Ref, error) {
	refs := make([]Ref, 0, len(roles))
	for _, r := range roles {
		id, err := s.Store.RoleID(ctx, r)
		if err != nil {
			return nil, err
		}
		refs = append(refs, Ref{ID: id, Name: string(r)})
	}
	return refs, nil
}

// newToken returns "KPT1" + base64url(32 random bytes), 47 characters (auth.md §5.2).
func newToken() string {
	var b [32]byte
	rand.Read(b[:])
	return "KPT1" + base64.RawURLEncoding.EncodeToString(b[:])
}

// newAuditID returns 22 characters of base64url from 16 random bytes.
func newAuditID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// MaxTokenBytes is the longest X-Auth-Token value looked up (auth.md §5.6 step 1).
const MaxTokenBytes = 8 << 10

type validToken struct {
	token  *kps.Token
	user   *kps.User
	domain *kps.Domain
}

// validate applies §5.6 steps 1–4.
func (s *Service) validate(ctx context.Context, token string) (validToken, error) {
	if token == "" || len(token) > MaxTokenBytes || !printableASCII(token) {
		return validToken{}, tokenFailed("token-unknown")
	}
	t, err := s.Store.TokenByHash(ctx, tokenHash(token))
	if err != nil {
		return validToken{}, err
	}
	switch {
	case t == nil:
		return validToken{}, tokenFailed("token-unknown")
	case t.Revoked():
		return validToken{}, tokenFailed("token-revoked")
	case !s.now().Before(t.ExpiresAt):
		return validToken{}, tokenFailed("token-expired")
	}
	// A token dies with its user, domain or scoped project (§5.3). The store revokes it when
	// they are disabled or deleted; this check covers whatever slipped past (step 4).
	u, d, alive, err := s.tokenHolders(ctx, t)
	if err != nil {
		return validToken{}, err
	}
	if !alive {
		// Best effort: the refusal stands either way, and the next use repeats the check.
		_ = s.Store.RevokeToken(ctx, t.Hash)
		return validToken{}, tokenFailed("token-revoked")
	}
	return validToken{t, u, d}, nil
}

// tokenHolders returns the token's user and domain and whether they, and the scoped project,
// are still there and enabled.
func (s *Service) tokenHolders(ctx context.Context, t *kps.Token) (*kps.User, *kps.Domain, bool, error) {
	u, err := s.Store.UserByID(ctx, t.UserID)
	if err != nil || u == nil || !u.Enabled {
		return nil, nil, false, err
	}
	d, err := s.Store.DomainByID(ctx, u.DomainID)
	if err != nil || d == nil || !d.Enabled || (t.DomainID != "" && t.DomainID != d.ID) {
		return nil, nil, false, err
	}
	if t.ProjectID != "" {
		p, err := s.Store.ProjectByID(ctx, t.ProjectID)
		if err != nil || p == nil || !p.Enabled || p.DomainID != d.ID {
			return nil, nil, false, err
		}
	}
	return u, d, true, nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Authenticate checks an X-Auth-Token for a request (auth.md §5.6) that targets
// targetProjectID, or no project ("") on identity routes, and applies the scope checks of
// §4.3 rows 3, 4 and 7: a token scoped to another project or to no project is KPS.6103, a
// user without an effective role on the project KPS.9006. The principal's roles are read live:
// on the target project, or on the user's domain for identity routes. The route's minimum role
// (row 8) is the caller's check. clientIP is the TCP peer: a locked one is 429 KPS.6105
// before any lookup, and a refused token counts against it (§12.4). Successful validations
// are remembered while the store's identity version has not moved (validationCache). reads,
// when given, are the request's reads (kps.RequestReads): the lock of clientIP and the identity
// version come from them.
func (s *Service) AuthenticateAt(ctx context.Context, reads *kps.RequestReads, token, targetProjectID, clientIP string) (*kps.Principal, error) {
	now, ipKey := s.now(), clientKey(clientIP)
	if err := checkLockedAt(ctx, reads, s.lockout(), now, ipKey); err != nil {
		return nil, err
	}
	// The version is read before the validation's reads: a write committed meanwhile moves
	// it, and the entry put below is never used.
	version, cacheable := s.identityVersion(ctx, reads)
	var key validationKey
	if cacheable {
		key = validationKey{tokenHash: tokenHash(token), project: targetProjectID}
		if p, ok := s.validations.get(key, version, now); ok {
			return p, nil
		}
	}
	p, expires, err := s.authenticateToken(ctx, now, ipKey, token, targetProjectID)
	if err == nil && cacheable {
		s.validations.put(key, version, expires, p)
	}
	return p, err
}

// authenticateToken is Authenticate past the lockout check, reading everything from the store;
// it returns the token's expiry with the principal.
func (s *Service) authenticateToken(ctx context.Context, now time.Time, ipKey, token, targetProjectID string) (*kps.Principal, time.Time, error) {
	v, err := s.validate(ctx, token)
	if IsFailure(err) {
		return nil, time.Time{}, s.refuse(ctx, now, err, ipKey)
	}
	if err != nil {
		return nil, time.Time{}, err
	}
	p := &kps.Principal{
		UserID:     v.user.ID,
		UserName:   v.user.Name,
		DomainID:   v.domain.ID,
		DomainName: v.domain.Name,
		AuthMethod: kps.AuthToken,
	}
	if len(v.token.AuditIDs) > 0 {
		p.TokenAuditID = v.token.AuditIDs[0]
	}
	if targetProjectID == "" {
		if p.Roles, err = s.Store.DomainRoles(ctx, v.user.ID, v.domain.ID); err != nil {
			return nil, time.Time{}, err
		}
		return p, v.token.ExpiresAt, nil
	}
	if err := checkTokenScope(v.token.ProjectID, targetProjectID); err != nil {
		return nil, time.Time{}, err
	}
	// validate has checked that the project exists, is enabled and lies in the user's domain.
	roles, err := s.Store.EffectiveRoles(ctx, v.user.ID, targetProjectID)
	if err != nil {
		return nil, time.Time{}, err
	}
	if len(roles) == 0 {
		return nil, time.Time{}, &Failure{Reason: "no-role", Err: kps.Errorf(kps.ErrForbidden, msgForbidden)}
	}
	p.ProjectID, p.Roles = targetProjectID, roles
	return p, v.token.ExpiresAt, nil
}

// clip shortens request values quoted in messages (kps.Clip, the one rule).
func clip(v string) string { return kps.Clip(v) }

// checkTokenScope is auth.md §4.3 rows 3 and 4 for a token scoped to tokenProject (""
// when not scoped to a project), with the exact messages of §5.6.
func checkTokenScope(tokenProject, targetProjectID string) error {
	switch tokenProject {
	case targetProjectID:
		return nil
	case "":
		return &Failure{Reason: "token-not-project-scoped", Err: kps.Errorf(kps.ErrProjectMismatch,
			"Project mismatch: the request targets project %s but the token is not scoped to a project.", clip(targetProjectID))}
	default:
		return &Failure{Reason: "project-mismatch", Err: kps.Errorf(kps.ErrProjectMismatch,
			"Project mismatch: the request targets project %s but the credentials are scoped to project %s.",
			clip(targetProjectID), clip(tokenProject))}
	}
}
