package iam

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/secrets"
)

// The AK/SK pipeline of auth.md §6.3 against the real SQLite store, with SKs sealed under a
// real key ring as the service seals them.

const clientA, clientB = "192.0.2.10", "198.51.100.20"

// signingFixture is the fixture with a sealer and AK/SK material for its users.
type signingFixture struct {
	*fixture
	n int
}

func setupSigning(t *testing.T) *signingFixture {
	t.Helper()
	fx := setup(t)
	ring, err := secrets.NewKeyRing(map[uint32][]byte{1: bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	fx.svc.Sealer = secrets.NewSealer(ring)
	return &signingFixture{fixture: fx}
}

// newPair returns a fresh AK (20 × [A-Z0-9]) and SK (40 × [A-Za-z0-9]) and the sealed SK.
func (fx *signingFixture) newPair(t *testing.T) (ak, sk string, sealed []byte) {
	t.Helper()
	fx.n++
	ak = fmt.Sprintf("AKTEST%014d", fx.n)
	sk = fmt.Sprintf("Sk%038d", fx.n)
	sealed, err := fx.svc.Sealer.Seal([]byte(sk), kps.AccessKeyAAD(ak))
	if err != nil {
		t.Fatal(err)
	}
	return ak, sk, sealed
}

// accessKey stores a permanent access key of the user with the given status.
func (fx *signingFixture) accessKey(t *testing.T, user, status string) (ak, sk string) {
	t.Helper()
	ak, sk, sealed := fx.newPair(t)
	if err := fx.db.CreateAccessKey(context.Background(), &kps.AccessKey{Access: ak, UserID: fx.users[user].ID,
		Secret: sealed, Status: status, Created: fx.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	return ak, sk
}

// temporary stores a temporary credential of the user, bound to project (symbolic, or ""),
// expiring after ttl, and returns it with its security token.
func (fx *signingFixture) temporary(t *testing.T, user, project string, ttl time.Duration) (ak, sk, token string) {
	t.Helper()
	ak, sk, sealed := fx.newPair(t)
	token = "ST1" + strings.Repeat("x", 60) + ak
	sum := sha256.Sum256([]byte(token))
	if err := fx.db.CreateTemporaryCredential(context.Background(), &kps.TemporaryCredential{Access: ak,
		UserID: fx.users[user].ID, ScopeProjectID: fx.id(project), Secret: sealed,
		SecurityTokenHash: hex.EncodeToString(sum[:]), ExpiresAt: fx.clock.Now().Add(ttl)}); err != nil {
		t.Fatal(err)
	}
	return ak, sk, token
}

// request builds a request as the server receives it, signed the Go SDK's way at the
// fixture's time. Headers are set before signing, so they are signed.
func (fx *signingFixture) request(t *testing.T, method, path string, body []byte, ak, sk string, headers map[string]string) *http.Request {
	t.Helper()
	r := httptest.NewRequest(method, path, bytes.NewReader(body))
	r.Header.Set("User-Agent", "huaweicloud-usdk-go/3.0")
	if len(body) > 0 {
		r.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	if err := Sign(r, body, ak, sk, fx.clock.Now()); err != nil {
		t.Fatal(err)
	}
	return r
}

// kpsPath is a KPS path under the (symbolic) project.
func (fx *signingFixture) kpsPath(project string) string {
	return "/v3/" + fx.id(project) + "/keypairs"
}

func (fx *signingFixture) authenticate(r *http.Request, body []byte, project, ip string) (*kps.Principal, error) {
	return fx.svc.AuthenticateSignature(context.Background(), r, body, fx.id(project), ip)
}

// wantReason asserts a refusal with a KPS code and a reason key.
func wantReason(t *testing.T, err error, code, reason string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s %s", code, reason)
	}
	var f *Failure
	if kps.ErrorCode(err) != code || !errors.As(err, &f) || f.Reason != reason {
		t.Fatalf("got %v, want %s (%s)", err, code, reason)
	}
}

func TestAuthenticateSignaturePermanentKey(t *testing.T) {
	t.Parallel()
	fx := setupSigning(t)
	ctx := context.Background()
	ak, sk := fx.accessKey(t, "alice", kps.AccessKeyActive)
	body := []byte(`{"keypair":{"name":"demo-key"}}` + "\n")
	r := fx.request(t, "POST", fx.kpsPath(p1)+"?limit=10&marker=a%20b", body, ak, sk,
		map[string]string{"X-Project-Id": fx.id(p1)})
	p, err := fx.authenticate(r, body, p1, clientA)
	if err != nil {
		t.Fatal(err)
	}
	want := kps.Principal{UserID: fx.users["alice"].ID, UserName: "alice", DomainID: fx.id(dAcme), DomainName: "acme",
		ProjectID: fx.id(p1), Roles: []kps.Role{kps.RoleMember, kps.RoleReader}, AuthMethod: kps.AuthAKSK, AccessKey: ak}
	if p.UserID != want.UserID || p.UserName != want.UserName || p.DomainID != want.DomainID || p.DomainName != want.DomainName ||
		p.ProjectID != want.ProjectID || !slices.Equal(p.Roles, want.Roles) || p.AuthMethod != want.AuthMethod || p.AccessKey != want.AccessKey {
		t.Errorf("principal %+v, want %+v", *p, want)
	}
	// The use is recorded (at most once a minute, auth.md §3.5).
	if k, err := fx.db.AccessKey(ctx, ak); err != nil || k.LastUsed.IsZero() {
		t.Errorf("last use not recorded: %+v %v", k, err)
	}

	// Identity routes have no target project: the roles are those on the domain.
	r = fx.request(t, "GET", "/v3/auth/projects", nil, ak, sk, nil)
	if p, err := fx.authenticate(r, nil, "", clientA); err != nil || p.ProjectID != "" || len(p.Roles) != 0 {
		t.Errorf("identity route: %+v %v", p, err)
	}
	bak, bsk := fx.accessKey(t, "bob", kps.AccessKeyActive)
	r = fx.request(t, "GET", "/v3/auth/projects", nil, bak, bsk, map[string]string{"X-Project-Id": fx.id(pOther)})
	if p, err := fx.authenticate(r, nil, "", clientA); err != nil || !p.Has(kps.RoleAdmin) {
		t.Errorf("identity route, domain admin: %+v %v", p, err)
	}
	// bob's domain-level admin role reaches every project of acme.
	r = fx.request(t, "GET", fx.kpsPath(p2), nil, bak, bsk, nil)
	if p, err := fx.authenticate(r, nil, p2, clientA); err != nil || !p.Has(kps.RoleAdmin) {
		t.Errorf("bob on p2: %+v %v", p, err)
	}
}

func TestAuthenticateSignatureRefusesKeys(t *testing.T) {
	t.Parallel()
	fx := setupSigning(t)
	active, activeSK := fx.accessKey(t, "alice", kps.AccessKeyActive)
	inactive, inactiveSK := fx.accessKey(t, "alice", kps.AccessKeyInactive)
	disabledUser, disabledUserSK := fx.accessKey(t, "carol", kps.AccessKeyActive)
	disabledDomain, disabledDomainSK := fx.accessKey(t, "dave", kps.AccessKeyActive)
	expired, expiredSK, expiredToken := fx.temporary(t, "alice", "", time.Minute)
	unknown, unknownSK, _ := fx.newPair(t)

	body := []byte(`{"keypair":{"name":"demo-key"}}`)
	tests := []struct {
		name, ak, sk string
		mutate       func(r *http.Request)
		code, reason string
	}{
		{"unknown AK", unknown, unknownSK, nil, kps.ErrBadCredentials, ReasonAccessKeyInvalid},
		{"inactive key", inactive, inactiveSK, nil, kps.ErrBadCredentials, ReasonAccessKeyInvalid},
		{"disabled user", disabledUser, disabledUserSK, nil, kps.ErrBadCredentials, ReasonAccessKeyInvalid},
		{"disabled domain", disabledDomain, disabledDomainSK, nil, kps.ErrBadCredentials, ReasonAccessKeyInvalid},
		{"expired temporary credential", expired, expiredSK, func(r *http.Request) { r.Header.Set(HeaderSecurityToken, expiredToken) },
			kps.ErrBadCredentials, ReasonCredentialExpired},
		{"wrong SK", active, activeSK[:39] + "X", nil, kps.ErrBadCredentials, ReasonSignatureMismatch},
		{"tampered body", active, activeSK, func(r *http.Request) { r.Body = http.NoBody }, kps.ErrBadCredentials, ReasonSignatureMismatch},
		{"tampered query", active, activeSK, func(r *http.Request) { r.URL.RawQuery = "limit=11" }, kps.ErrBadCredentials, ReasonSignatureMismatch},
		{"permanent key with a security token", active, activeSK, func(r *http.Request) { r.Header.Set(HeaderSecurityToken, "ST1abc") },
			kps.ErrBadCredentials, ReasonSecurityTokenInvalid},
		{"date out of window", active, activeSK, func(r *http.Request) {
			r.Header.Set(HeaderSDKDate, fx.clock.Now().Add(-16*time.Minute).UTC().Format(SDKDateLayout))
		}, kps.ErrBadCredentials, ReasonDateOutOfWindow},
		{"malformed header", active, activeSK, func(r *http.Request) { r.Header.Set("Authorization", "SDK-HMAC-SHA256 Access="+active) },
			kps.ErrBadCredentials, ReasonAuthorizationMalformed},
	}
	fx.clock.Add(2 * time.Minute) // the temporary credential has expired
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := fx.request(t, "POST", fx.kpsPath(p1), body, tt.ak, tt.sk, nil)
			b := body
			if tt.mutate != nil {
				tt.mutate(r)
				if r.Body == http.NoBody {
					b = []byte(`{"keypair":{"name":"other-key"}}`)
				}
			}
			_, err := fx.authenticate(r, b, p1, clientA)
			wantReason(t, err, tt.code, tt.reason)
			if strings.Contains(err.Error(), tt.sk) {
				t.Error("the error quotes the SK")
			}
		})
	}
	// A tampered body whose X-Sdk-Content-Sha256 was signed fails before the key lookup.
	r := fx.request(t, "POST", fx.kpsPath(p1), body, active, activeSK, map[string]string{
		HeaderContentSHA256: hex.EncodeToString(sha(body))})
	_, err := fx.authenticate(r, []byte(`{}`), p1, clientA)
	wantReason(t, err, kps.ErrBadCredentials, ReasonPayloadHashMismatch)
}

func sha(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func TestAuthenticateSignatureTemporaryCredential(t *testing.T) {
	t.Parallel()
	fx := setupSigning(t)
	ak, sk, token := fx.temporary(t, "alice", "", time.Hour)
	bound, boundSK, boundToken := fx.temporary(t, "alice", p1, time.Hour)

	// The Go SDK signs X-Security-Token; Terraform adds it after signing. Both are accepted.
	r := fx.request(t, "GET", fx.kpsPath(p3), nil, ak, sk, map[string]string{HeaderSecurityToken: token})
	p, err := fx.authenticate(r, nil, p3, clientA)
	if err != nil || p.AuthMethod != kps.AuthAKSKTemporary || p.AccessKey != ak || p.ProjectID != fx.id(p3) {
		t.Fatalf("signed security token: %+v %v", p, err)
	}
	r = fx.request(t, "GET", fx.kpsPath(p1), nil, ak, sk, nil)
	r.Header.Set(HeaderSecurityToken, token)
	if _, err := fx.authenticate(r, nil, p1, clientA); err != nil {
		t.Fatalf("unsigned security token: %v", err)
	}

	for name, tok := range map[string]string{"missing": "", "wrong": token + "x", "another credential's": boundToken} {
		r := fx.request(t, "GET", fx.kpsPath(p1), nil, ak, sk, nil)
		if tok != "" {
			r.Header.Set(HeaderSecurityToken, tok)
		}
		_, err := fx.authenticate(r, nil, p1, clientA)
		t.Run(name, func(t *testing.T) { wantReason(t, err, kps.ErrBadCredentials, ReasonSecurityTokenInvalid) })
	}

	// A credential bound to p1 acts on p1 and on identity routes only (auth.md §4.3 row 5).
	r = fx.request(t, "GET", fx.kpsPath(p1), nil, bound, boundSK, map[string]string{HeaderSecurityToken: boundToken})
	if _, err := fx.authenticate(r, nil, p1, clientA); err != nil {
		t.Fatalf("bound credential on its project: %v", err)
	}
	r = fx.request(t, "GET", fx.kpsPath(p3), nil, bound, boundSK, map[string]string{HeaderSecurityToken: boundToken})
	_, err = fx.authenticate(r, nil, p3, clientA)
	wantCode(t, err, kps.ErrProjectMismatch, "Project mismatch: the request targets project "+fx.id(p3)+
		" but the credentials are scoped to project "+fx.id(p1)+".")
	r = fx.request(t, "GET", "/v3/auth/projects", nil, bound, boundSK, map[string]string{HeaderSecurityToken: boundToken})
	if _, err := fx.authenticate(r, nil, "", clientA); err != nil {
		t.Fatalf("bound credential on an identity route: %v", err)
	}

	// Expiry is exclusive: at expires_at the credential is dead.
	fx.clock.Add(time.Hour)
	r = fx.request(t, "GET", fx.kpsPath(p1), nil, ak, sk, map[string]string{HeaderSecurityToken: token})
	_, err = fx.authenticate(r, nil, p1, clientA)
	wantReason(t, err, kps.ErrBadCredentials, ReasonCredentialExpired)
}

func TestAuthenticateSignatureProjectChecks(t *testing.T) {
	t.Parallel()
	fx := setupSigning(t)
	ak, sk := fx.accessKey(t, "alice", kps.AccessKeyActive)
	const denied = "The user has no permission to perform this operation."
	// Row 7: one answer for a foreign, missing or disabled project and a missing role.
	for name, project := range map[string]string{"other domain": pOther, "unknown": strings.Repeat("ab", 16),
		"disabled": pOff, "no role": p2} {
		t.Run(name, func(t *testing.T) {
			r := fx.request(t, "GET", fx.kpsPath(project), nil, ak, sk, nil)
			_, err := fx.authenticate(r, nil, project, clientA)
			wantCode(t, err, kps.ErrForbidden, denied)
		})
	}
	// Row 2: X-Domain-Id names the caller's domain or nothing.
	r := fx.request(t, "GET", fx.kpsPath(p1), nil, ak, sk, map[string]string{"X-Domain-Id": fx.id(dOther)})
	_, err := fx.authenticate(r, nil, p1, clientA)
	wantCode(t, err, kps.ErrProjectMismatch, "Domain mismatch: X-Domain-Id "+fx.id(dOther)+" differs from the caller's domain.")
	r = fx.request(t, "GET", "/v3/auth/domains", nil, ak, sk, map[string]string{"X-Domain-Id": fx.id(dOther)})
	_, err = fx.authenticate(r, nil, "", clientA)
	wantCode(t, err, kps.ErrProjectMismatch, "")
	r = fx.request(t, "GET", fx.kpsPath(p1), nil, ak, sk, map[string]string{"X-Domain-Id": fx.id(dAcme)})
	if _, err := fx.authenticate(r, nil, p1, clientA); err != nil {
		t.Errorf("own X-Domain-Id: %v", err)
	}
	// Roles are read live: a revoked assignment takes effect on the next request.
	if err := fx.db.RevokeRole(context.Background(), kps.RoleAssignment{UserID: fx.users["alice"].ID, Role: kps.RoleMember, ProjectID: fx.id(p3)}); err != nil {
		t.Fatal(err)
	}
	r = fx.request(t, "GET", fx.kpsPath(p3), nil, ak, sk, nil)
	_, err = fx.authenticate(r, nil, p3, clientA)
	wantCode(t, err, kps.ErrForbidden, denied)
}

func TestAuthenticateSignatureLockout(t *testing.T) {
	t.Parallel()
	fx := setupSigning(t)
	ak, sk := fx.accessKey(t, "alice", kps.AccessKeyActive)
	attempt := func(sk, ip string) error {
		r := fx.request(t, "GET", fx.kpsPath(p1), nil, ak, sk, nil)
		_, err := fx.authenticate(r, nil, p1, ip)
		return err
	}
	wrong := sk[:39] + "X"
	// Date and header mistakes do not count towards the pair's lock.
	for range 10 {
		r := fx.request(t, "GET", fx.kpsPath(p1), nil, ak, sk, nil)
		r.Header.Set(HeaderSDKDate, "20200101T000000Z")
		_, err := fx.authenticate(r, nil, p1, clientA)
		wantReason(t, err, kps.ErrBadCredentials, ReasonDateOutOfWindow)
	}
	// Four mismatches, then a success, reset the count.
	for range 4 {
		wantReason(t, attempt(wrong, clientA), kps.ErrBadCredentials, ReasonSignatureMismatch)
	}
	if err := attempt(sk, clientA); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		wantReason(t, attempt(wrong, clientA), kps.ErrBadCredentials, ReasonSignatureMismatch)
	}
	// The pair is locked, even for the right SK, before any lookup: 5 minutes.
	err := attempt(sk, clientA)
	wantCode(t, err, kps.ErrLockedOut, "Too many failed authentication attempts; retry after 300 seconds.")
	var l *LockoutError
	if !errors.As(err, &l) || l.RetryAfter() != 5*time.Minute {
		t.Errorf("lockout error %v", err)
	}
	// The owner elsewhere is not locked out by whoever failed from clientA.
	if err := attempt(sk, clientB); err != nil {
		t.Errorf("another client IP: %v", err)
	}
	fx.clock.Add(5 * time.Minute)
	if err := attempt(sk, clientA); err != nil {
		t.Errorf("after the lock: %v", err)
	}

	// The per-IP budget: 30 refused credentials in a minute, then every request from that IP is
	// 429 until the minute ends, whatever AK it uses.
	fx.clock.Add(time.Hour)
	for i := range 30 {
		other, otherSK, _ := fx.newPair(t) // unknown AKs: each refusal counts for the IP only
		r := fx.request(t, "GET", fx.kpsPath(p1), nil, other, otherSK, nil)
		_, err := fx.authenticate(r, nil, p1, clientB)
		if kps.ErrorCode(err) != kps.ErrBadCredentials {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
	}
	wantCode(t, attempt(sk, clientB), kps.ErrLockedOut, "Too many failed authentication attempts; retry after 60 seconds.")
	if err := attempt(sk, clientA); err != nil {
		t.Errorf("another IP is locked: %v", err)
	}
	fx.clock.Add(time.Minute)
	if err := attempt(sk, clientB); err != nil {
		t.Errorf("after the minute: %v", err)
	}
}

// A refused login and a refused token count against the client; a locked login name is refused
// before its password is hashed.
func TestLoginLockout(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	ctx := context.Background()
	login := func(user, pw, ip string) error {
		body := `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"` + user +
			`","domain":{"name":"acme"},"password":"` + pw + `"}}}}}`
		_, _, err := fx.svc.Login(ctx, []byte(body), "", ip)
		return err
	}
	for range 4 {
		wantCode(t, login("alice", "wrong", clientA), kps.ErrLoginFailed, "")
	}
	if err := login("alice", password, clientA); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		wantCode(t, login("alice", "wrong", clientB), kps.ErrLoginFailed, "")
	}
	// The name is locked from every IP, for 5 minutes, even with the right password.
	wantCode(t, login("alice", password, clientA), kps.ErrLockedOut, "Too many failed authentication attempts; retry after 300 seconds.")
	// Naming the same user by ID does not get around the lock: the user's own key is locked too.
	_, _, err := fx.svc.IssueToken(ctx, IssueRequest{Method: MethodPassword, UserID: fx.users["alice"].ID, Password: password, ClientIP: clientA})
	wantCode(t, err, kps.ErrLockedOut, "")
	_, _, err = fx.svc.IssueToken(ctx, IssueRequest{Method: MethodPassword, UserName: "alice", UserDomainID: fx.id(dAcme), Password: password, ClientIP: clientA})
	wantCode(t, err, kps.ErrLockedOut, "")
	// Other users are not affected.
	if err := login("frank", password, clientB); err != nil {
		t.Errorf("another user: %v", err)
	}
	fx.clock.Add(5 * time.Minute)
	if err := login("alice", password, clientA); err != nil {
		t.Errorf("after the lock: %v", err)
	}

	// Refused tokens count per IP: after 30 in a minute, even a good token is 429.
	fx.clock.Add(time.Hour)
	tok, _ := fx.issue(t, byName("alice", "acme"))
	for range 30 {
		_, err := fx.svc.Authenticate(ctx, "KPT1unknown", fx.id(p1), clientB)
		wantCode(t, err, kps.ErrBadCredentials, "")
	}
	_, err = fx.svc.Authenticate(ctx, tok, fx.id(p1), clientB)
	wantCode(t, err, kps.ErrLockedOut, "")
	_, _, err = fx.svc.Login(ctx, []byte(`{"auth":{"identity":{"methods":["token"]}}}`), tok, clientB)
	wantCode(t, err, kps.ErrLockedOut, "")
	if _, err := fx.svc.Authenticate(ctx, tok, fx.id(p1), clientA); err != nil {
		t.Errorf("another IP: %v", err)
	}
}
