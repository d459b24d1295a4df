package iam

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/store"

	_ "modernc.org/sqlite" // the "sqlite" driver, for tokenCount's read-only look at the file
)

// The tests of this package run against the real SQLite store: every fixture below is staged
// through kps.IdentityStore.

// cheap keeps the tests fast; the production parameters are covered in password_test.go.
var cheap = Params{MemoryKiB: 64, Iterations: 1, Parallelism: 1}

const (
	password = "correct horse battery"
	region   = "my-region-1"
)

// Symbolic names of the fixture's domains and projects, resolved to their generated IDs by
// fixture.id. Each domain's default project is named after the region.
const (
	dAcme  = "dAcme"  // "acme"
	dOther = "dOther" // "other"
	dOff   = "dOff"   // "off", disabled
	p1     = "p1"     // acme's default project, "my-region-1"
	p2     = "p2"     // acme "my-region-1_dev"
	p3     = "p3"     // acme "my-region-1_tmp"
	pOff   = "pOff"   // acme "my-region-1_off", disabled
	pOther = "pOther" // other's default project, "my-region-1"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

type fixture struct {
	svc   *Service
	db    *store.DB
	dir   string
	clock *clock
	users map[string]*kps.User // by name
	ids   map[string]string    // symbolic name → ID
}

// id resolves a symbolic domain or project name; anything else is returned as it is.
func (fx *fixture) id(name string) string {
	if id, ok := fx.ids[name]; ok {
		return id
	}
	return name
}

// scope resolves the symbolic IDs of s.
func (fx *fixture) scope(s Scope) Scope {
	s.ProjectID, s.DomainID = fx.id(s.ProjectID), fx.id(s.DomainID)
	return s
}

func openStore(t *testing.T, dir string, now func() time.Time) *store.DB {
	t.Helper()
	db, err := store.OpenSQLite(context.Background(), filepath.Join(dir, "kps.db"), store.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// setup returns a service over a fresh store holding:
//
//	alice@acme    member on p1, p3 and pOff; default project p1
//	bob@acme      admin on the acme domain
//	carol@acme    disabled, member on p1
//	dave@off      admin on the disabled domain "off"
//	eve@acme      no roles, no default project
//	frank@acme    member on p1, default project p2 (where he has no role)
//	mallory@other admin on the other domain
//	nopass@acme   member on p1, no password
func setup(t *testing.T) *fixture {
	t.Helper()
	return setupOn(t, openStore)
}

// setupOn is setup on the store open returns (in dir, reading the fixture's clock).
func setupOn(t *testing.T, open func(t *testing.T, dir string, now func() time.Time) *store.DB) *fixture {
	t.Helper()
	ctx := context.Background()
	c := &clock{now: time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.UTC)}
	dir := t.TempDir()
	db := open(t, dir, c.Now)
	fx := &fixture{svc: &Service{Store: db, Versions: db, Now: c.Now, Params: cheap}, db: db, dir: dir, clock: c,
		users: map[string]*kps.User{}, ids: map[string]string{}}
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	hash, err := cheap.Hash(ctx, password)
	check(err)

	domain := func(key, name string, enabled bool, defaultProject string) {
		d := &kps.Domain{Name: name, Enabled: enabled}
		p, err := db.CreateDomain(ctx, d, region)
		check(err)
		fx.ids[key], fx.ids[defaultProject] = d.ID, p.ID
	}
	domain(dAcme, "acme", true, p1)
	domain(dOther, "other", true, pOther)
	domain(dOff, "off", false, "pOffDefault")
	project := func(key, name string, enabled bool) {
		p := &kps.Project{Name: name, DomainID: fx.ids[dAcme], Enabled: enabled}
		check(db.CreateProject(ctx, p))
		fx.ids[key] = p.ID
	}
	project(p2, region+"_dev", true)
	project(p3, region+"_tmp", true)
	project(pOff, region+"_off", false)

	// roles: symbolic target (a domain if it starts with "d") → role.
	add := func(name, domain string, enabled bool, def string, roles map[string]kps.Role) {
		u := &kps.User{Name: name, DomainID: fx.ids[domain], Enabled: enabled, PasswordHash: hash,
			DefaultProjectID: fx.id(def)}
		if name == "nopass" {
			u.PasswordHash = ""
		}
		check(db.CreateUser(ctx, u))
		fx.users[name] = u
		for target, r := range roles {
			a := kps.RoleAssignment{UserID: u.ID, Role: r}
			if strings.HasPrefix(target, "d") {
				a.DomainID = fx.ids[target]
			} else {
				a.ProjectID = fx.ids[target]
			}
			check(db.GrantRole(ctx, a))
		}
	}
	add("alice", dAcme, true, p1, map[string]kps.Role{p1: kps.RoleMember, p3: kps.RoleMember, pOff: kps.RoleMember})
	add("bob", dAcme, true, "", map[string]kps.Role{dAcme: kps.RoleAdmin})
	add("carol", dAcme, false, "", map[string]kps.Role{p1: kps.RoleMember})
	add("dave", dOff, true, "", map[string]kps.Role{dOff: kps.RoleAdmin})
	add("eve", dAcme, true, "", nil)
	add("frank", dAcme, true, p2, map[string]kps.Role{p1: kps.RoleMember})
	add("mallory", dOther, true, "", map[string]kps.Role{dOther: kps.RoleAdmin})
	add("nopass", dAcme, true, "", map[string]kps.Role{p1: kps.RoleMember})
	return fx
}

// token returns the stored record of the token.
func (fx *fixture) token(t *testing.T, token string) *kps.Token {
	t.Helper()
	rec, err := fx.db.TokenByHash(context.Background(), tokenHash(token))
	if err != nil {
		t.Fatal(err)
	}
	if rec == nil {
		t.Fatal("the token is not stored under its SHA-256")
	}
	return rec
}

// storedToken stores a token record of the user scoped to the project (symbolic, or "") the way
// no login would issue it, for a disabled user, domain or project, and returns the token: only
// the check of auth.md §5.6 step 4 catches those.
func (fx *fixture) storedToken(t *testing.T, user, project string) string {
	t.Helper()
	tok := newToken()
	now := fx.clock.Now().Truncate(time.Millisecond)
	if err := fx.db.CreateToken(context.Background(), &kps.Token{Hash: tokenHash(tok), UserID: fx.users[user].ID,
		ProjectID: fx.id(project), Methods: []string{MethodPassword}, AuditIDs: []string{newAuditID()},
		IssuedAt: now, ExpiresAt: now.Add(time.Hour)}, 0); err != nil {
		t.Fatal(err)
	}
	return tok
}

// tokenCount counts the stored tokens, looking at the database file read-only: the store has
// no reason to offer that.
func (fx *fixture) tokenCount(t *testing.T) int {
	t.Helper()
	conn, err := sql.Open("sqlite", "file:"+filepath.Join(fx.dir, "kps.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n int
	if err := conn.QueryRow(`SELECT COUNT(*) FROM tokens`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// filesContain reports whether any file of the data directory (database, WAL) holds s.
func (fx *fixture) filesContain(t *testing.T, s string) bool {
	t.Helper()
	entries, err := os.ReadDir(fx.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(fx.dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(s)) {
			return true
		}
	}
	return false
}
