package iam

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openkps/kps"
)

// ip is the client of the requests in these tests.
const ip = "192.0.2.1"

func TestTokenCacheExpiryAndLRUBound(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	c := newTokenCache(3)
	tok := func(id string) *externalToken { return &externalToken{userID: id} }
	c.put("a", tok("a"), now.Add(time.Minute))
	c.put("b", nil, now.Add(30*time.Second)) // a refused token
	c.put("c", tok("c"), now.Add(time.Minute))

	if got, ok := c.get("a", now); !ok || got.userID != "a" {
		t.Fatalf("get a: %v %v", got, ok)
	}
	if got, ok := c.get("b", now.Add(29*time.Second)); !ok || got != nil {
		t.Fatalf("a refused token must be a hit with a nil token: %v %v", got, ok)
	}
	// b was used after a: c is now the least recently used and goes first.
	c.put("d", tok("d"), now.Add(time.Minute))
	if c.len() != 3 {
		t.Fatalf("len %d, want the bound 3", c.len())
	}
	if _, ok := c.get("c", now); ok {
		t.Fatal("the least recently used entry survived the bound")
	}
	for _, k := range []string{"a", "b", "d"} {
		if _, ok := c.get(k, now); !ok {
			t.Fatalf("%s was evicted", k)
		}
	}
	// Expiry is exclusive: at until the entry is gone, and dropped.
	if _, ok := c.get("b", now.Add(30*time.Second)); ok {
		t.Fatal("an expired entry was returned")
	}
	if c.len() != 2 {
		t.Fatalf("the expired entry was not dropped: len %d", c.len())
	}
	// Replacing an entry keeps one entry per key.
	c.put("a", nil, now.Add(time.Second))
	if got, ok := c.get("a", now); !ok || got != nil || c.len() != 2 {
		t.Fatalf("replaced entry: %v %v len %d", got, ok, c.len())
	}
}

func TestTokenCacheConcurrentUse(t *testing.T) {
	t.Parallel()
	now := time.Now()
	c := newTokenCache(64)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 2000 {
				k := fmt.Sprint((g*7 + i) % 200)
				if i%3 == 0 {
					c.put(k, &externalToken{userID: k}, now.Add(time.Duration(i%5)*time.Second))
				} else if got, ok := c.get(k, now); ok && got != nil && got.userID != k {
					t.Errorf("key %s holds %s", k, got.userID)
				}
			}
		})
	}
	wg.Wait()
	if n := c.len(); n > 64 {
		t.Fatalf("len %d beyond the bound", n)
	}
}

func TestParseRoleMap(t *testing.T) {
	t.Parallel()
	m, err := ParseRoleMap(DefaultRoleMap)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]kps.Role{"admin": kps.RoleAdmin, "member": kps.RoleMember, "_member_": kps.RoleMember, "reader": kps.RoleReader}
	if len(m) != len(want) {
		t.Fatalf("default map %v", m)
	}
	for k, v := range want {
		if m[k] != v {
			t.Fatalf("default map %v, want %v", m, want)
		}
	}
	if m, err := ParseRoleMap(" te_admin = admin , ,op_service=reader"); err != nil || m["te_admin"] != kps.RoleAdmin || m["op_service"] != kps.RoleReader || len(m) != 2 {
		t.Fatalf("spaces and empty entries: %v %v", m, err)
	}
	if m, err := ParseRoleMap(""); err != nil || len(m) != 0 {
		t.Fatalf("empty map: %v %v", m, err)
	}
	for _, bad := range []string{"admin", "=admin", "admin=root", "admin=Admin", "a=admin,a=reader"} {
		if _, err := ParseRoleMap(bad); err == nil {
			t.Errorf("ParseRoleMap(%q) accepted", bad)
		}
	}
}

func TestMapRoles(t *testing.T) {
	t.Parallel()
	m, _ := ParseRoleMap(DefaultRoleMap + ",te_admin=admin")
	for _, c := range []struct {
		names []string
		def   kps.Role
		want  []kps.Role
	}{
		{[]string{"reader"}, "", []kps.Role{kps.RoleReader}},
		{[]string{"_member_"}, "", []kps.Role{kps.RoleMember, kps.RoleReader}},
		{[]string{"reader", "admin", "member"}, "", []kps.Role{kps.RoleAdmin, kps.RoleMember, kps.RoleReader}},
		{[]string{"te_admin"}, "", []kps.Role{kps.RoleAdmin, kps.RoleMember, kps.RoleReader}},
		// Names are compared exactly; unmapped ones are ignored.
		{[]string{"Admin", "heat_stack_owner"}, "", nil},
		{nil, "", nil},
		// The default role only stands in for no mapped role at all.
		{[]string{"heat_stack_owner"}, kps.RoleReader, []kps.Role{kps.RoleReader}},
		{[]string{"admin"}, kps.RoleReader, []kps.Role{kps.RoleAdmin, kps.RoleMember, kps.RoleReader}},
	} {
		if got := MapRoles(c.names, m, c.def); !slices.Equal(got, c.want) {
			t.Errorf("MapRoles(%v, default %q) = %v, want %v", c.names, c.def, got, c.want)
		}
	}
}

func TestExternalMapsTokenBodies(t *testing.T) {
	t.Parallel()
	e := &External{}
	e.init()
	const user = `"user":{"id":"u1","name":"alice","domain":{"id":"d1","name":"acme"}}`
	exp := `"expires_at":"2025-01-02T04:04:05.123456Z"`
	t.Run("project", func(t *testing.T) {
		got, err := e.mapToken([]byte(`{"token":{` + exp + `,"audit_ids":["AUD"],` + user + `,"project":{"id":"p1","name":"r1","domain":{"id":"d1","name":"acme"}},"roles":[{"id":"x","name":"member"},{"id":"y","name":"heat"}],"catalog":[]}}`))
		if err != nil {
			t.Fatal(err)
		}
		want := externalToken{userID: "u1", userName: "alice", domainID: "d1", domainName: "acme", auditID: "AUD", projectID: "p1",
			roles: []kps.Role{kps.RoleMember, kps.RoleReader}, expiresAt: time.Date(2025, 1, 2, 4, 4, 5, 123456000, time.UTC)}
		if !equalToken(*got, want) {
			t.Fatalf("got %+v, want %+v", *got, want)
		}
	})
	t.Run("domain", func(t *testing.T) {
		got, err := e.mapToken([]byte(`{"token":{` + exp + `,` + user + `,"domain":{"id":"d1","name":"acme"},"roles":[{"name":"admin"}]}}`))
		if err != nil || got.scopeDomainID != "d1" || got.projectID != "" || len(got.roles) != 3 {
			t.Fatalf("%+v %v", got, err)
		}
	})
	t.Run("unscoped", func(t *testing.T) {
		// Roles outside a scope mean nothing, even if a server lists some.
		got, err := e.mapToken([]byte(`{"token":{` + exp + `,` + user + `,"roles":[{"name":"admin"}]}}`))
		if err != nil || got.scopeDomainID != "" || got.projectID != "" || got.roles != nil {
			t.Fatalf("%+v %v", got, err)
		}
	})
	for _, bad := range []string{
		``, `[]`, `{}`, `{"token":null}`, `{"token":{` + exp + `}}`,
		`{"token":{"expires_at":"tomorrow",` + user + `}}`,
		`{"token":{` + user + `}}`,
		`{"token":{` + exp + `,` + user + `,"project":{"name":"r1"}}}`,
		`{"token":{` + exp + `,` + user + `,"domain":{"name":"acme"}}}`,
		`{"token":{` + exp + `,"user":"alice"}}`,
	} {
		if got, err := e.mapToken([]byte(bad)); err == nil {
			t.Errorf("mapToken(%s) = %+v, want an error", bad, got)
		}
	}
}

func equalToken(a, b externalToken) bool {
	return slices.Equal(a.roles, b.roles) && a.expiresAt.Equal(b.expiresAt) &&
		a.userID == b.userID && a.userName == b.userName && a.domainID == b.domainID && a.domainName == b.domainName &&
		a.auditID == b.auditID && a.projectID == b.projectID && a.scopeDomainID == b.scopeDomainID
}

// TestExternalIdentityServiceFaults injects what a real identity service does not do on
// demand: errors, stalls, garbage. Each is 503 KPS.6106, is not a refusal of the caller's
// credentials, and is not cached.
func TestExternalIdentityServiceFaults(t *testing.T) {
	t.Parallel()
	const goodUser = `"user":{"id":"u1","name":"alice","domain":{"id":"d1","name":"acme"}}`
	for _, c := range []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"500", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) }},
		{"502", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "bad gateway", http.StatusBadGateway) }},
		{"503", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) }},
		{"403", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "policy", http.StatusForbidden) }},
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://elsewhere.invalid/v3/auth/tokens", http.StatusFound)
		}},
		{"timeout", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }},
		{"not JSON", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>ok</html>")) }},
		{"no user", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"token":{"expires_at":"2030-01-01T00:00:00.000000Z"}}`))
		}},
		{"no expiry", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"token":{` + goodUser + `}}`)) }},
		{"truncated", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "500")
			w.Write([]byte(`{"token":{`))
		}},
		{"huge", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"token":{"expires_at":"2030-01-01T00:00:00.000000Z",` + goodUser + `,"x":"`))
			w.Write([]byte(strings.Repeat("a", maxExternalBody)))
			w.Write([]byte(`"}}`))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			var sawHeaders atomic.Bool
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				if r.Method == "GET" && r.URL.Path == "/v3/auth/tokens" && r.URL.RawQuery == "nocatalog=1" &&
					r.Header.Get("X-Auth-Token") == "tok-1" && r.Header.Get("X-Subject-Token") == "tok-1" {
					sawHeaders.Store(true)
				}
				c.handler(w, r)
			}))
			t.Cleanup(srv.Close)
			e := &External{URL: srv.URL + "/v3/", Timeout: 200 * time.Millisecond}
			for range 2 {
				start := time.Now()
				_, err := e.Authenticate(context.Background(), "tok-1", "p1", ip)
				wantCode(t, err, kps.ErrIdentityDown, "The identity service is unavailable; retry later.")
				if IsFailure(err) {
					t.Fatal("an outage must not count as refused credentials")
				}
				if d := time.Since(start); d > 2*time.Second {
					t.Fatalf("took %v with a 200 ms timeout", d)
				}
			}
			if calls.Load() != 2 {
				t.Fatalf("%d calls for 2 requests: an outage was cached", calls.Load())
			}
			if !sawHeaders.Load() {
				t.Fatal("the validation call is not GET /v3/auth/tokens?nocatalog=1 with both token headers")
			}
		})
	}
}

func TestExternalConnectionRefused(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	e := &External{URL: "http://" + addr + "/v3"}
	_, err = e.Authenticate(context.Background(), "tok-1", "", ip)
	wantCode(t, err, kps.ErrIdentityDown, "")
}

// TestExternalRefusesWithoutAsking covers values that cannot be tokens: they never reach a
// header of the outgoing call.
func TestExternalRefusesWithoutAsking(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1); w.WriteHeader(500) }))
	t.Cleanup(srv.Close)
	e := &External{URL: srv.URL + "/v3"}
	for _, tok := range []string{"", "a\r\nX-Evil: 1", "tok\x00", "é", strings.Repeat("a", MaxTokenBytes+1)} {
		_, err := e.Authenticate(context.Background(), tok, "p1", ip)
		wantCode(t, err, kps.ErrBadCredentials, "Incorrect authentication information: the token is not valid.")
	}
	if calls.Load() != 0 {
		t.Fatalf("%d calls to the identity service", calls.Load())
	}
}

func TestExternalLoginIsNotServed(t *testing.T) {
	t.Parallel()
	e := &External{URL: "http://127.0.0.1:1/v3"}
	_, _, err := e.Login(context.Background(), []byte(`{}`), "", ip)
	wantCode(t, err, kps.ErrNoRoute, "")
}

func TestValidateExternalURL(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"http://127.0.0.1:5000/v3", "https://iam.example.com/v3", "https://keystone/identity/v3/"} {
		if err := ValidateExternalURL(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "keystone:5000/v3", "/v3", "ftp://h/v3", "http:///v3", "http://h/v3?x=1", "http://h/v3#f", "http://u:p@h/v3", "http://h/%zz"} {
		if err := ValidateExternalURL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestExternalRefusesSignatures(t *testing.T) {
	t.Parallel()
	e := &External{URL: "http://127.0.0.1:1/v3"}
	r := httptest.NewRequest("GET", "/v3/p1/keypairs", nil)
	_, err := e.AuthenticateSignature(context.Background(), r, nil, "p1", "192.0.2.1")
	wantCode(t, err, kps.ErrBadCredentials, "Incorrect authentication information: the access key is unknown or inactive.")
	if f := (*Failure)(nil); !errors.As(err, &f) || f.Reason != ReasonAccessKeyInvalid {
		t.Fatalf("reason of %v", err)
	}
}
