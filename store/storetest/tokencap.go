package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/openkps/kps"
)

// The per-user cap on live tokens (auth.md §5.3): CreateToken revokes the oldest in the same
// transaction.
func init() {
	identityModelTests["TokenCapRevokesOldest"] = testTokenCapRevokesOldest
	identityModelTests["TokenCapUnderConcurrency"] = testTokenCapUnderConcurrency
}

// cappedToken stores a token of the user issued at the clock's time, under the cap, and returns
// its hash (its audit ID is "audit-" + hash).
func (e *env) cappedToken(userID string, maxLive int) string {
	e.t.Helper()
	hash := randomHex(32)
	must(e.t, e.s.CreateToken(e.ctx, &kps.Token{Hash: hash, UserID: userID, Methods: []string{"password"},
		AuditIDs: []string{"audit-" + hash}, IssuedAt: e.clock.Now(), ExpiresAt: e.clock.Now().Add(time.Hour)}, maxLive))
	return hash
}

func testTokenCapRevokesOldest(t *testing.T, e *env) {
	d, _ := e.domain("acme")
	alice, bob := e.user(d.ID, "alice"), e.user(d.ID, "bob")
	const limit = 3
	var hashes []string
	for range limit {
		hashes = append(hashes, e.cappedToken(alice.ID, limit))
		e.clock.Advance(time.Second)
	}
	cred := e.tempCred(alice.ID, "", hashes[0])
	other := e.cappedToken(bob.ID, limit)
	for _, h := range hashes {
		e.wantRevoked(h, false)
	}
	// The fourth live token revokes the oldest, and the temporary credential derived from it.
	fourth := e.cappedToken(alice.ID, limit)
	e.wantRevoked(hashes[0], true)
	e.wantTempCred(cred, false)
	for _, h := range append(hashes[1:], fourth, other) {
		e.wantRevoked(h, false)
	}
	// Revoked and expired tokens do not count: after one more revocation and with the clock
	// past the first ones' expiry, new tokens revoke nothing until the cap is reached again.
	must(t, e.s.RevokeToken(e.ctx, hashes[1]))
	e.clock.Advance(time.Second)
	fifth := e.cappedToken(alice.ID, limit) // at +4s
	e.wantRevoked(hashes[2], false)
	e.clock.Advance(time.Hour - 2*time.Second) // hashes[2] (issued at +2s) expires now
	sixth := e.cappedToken(alice.ID, limit)
	for _, h := range []string{fourth, fifth, sixth} {
		e.wantRevoked(h, false)
	}
	seventh := e.cappedToken(alice.ID, limit)
	e.wantRevoked(fourth, true)
	for _, h := range []string{fifth, sixth, seventh} {
		e.wantRevoked(h, false)
	}
	// With one issue time for all, the token just stored is never the one revoked.
	carol := e.user(d.ID, "carol")
	for range 8 {
		first := e.cappedToken(carol.ID, 1)
		second := e.cappedToken(carol.ID, 1)
		e.wantRevoked(first, true)
		e.wantRevoked(second, false)
	}
	// No cap: nothing is revoked.
	for range 2 * limit {
		e.cappedToken(bob.ID, 0)
	}
	e.wantRevoked(other, false)
}

func testTokenCapUnderConcurrency(t *testing.T, e *env) {
	d, _ := e.domain("acme")
	alice := e.user(d.ID, "alice")
	const limit, n = 4, 24
	var wg sync.WaitGroup
	hashes := make([]string, n)
	for i := range n {
		wg.Go(func() {
			hashes[i] = randomHex(32)
			if err := e.s.CreateToken(e.ctx, &kps.Token{Hash: hashes[i], UserID: alice.ID, IssuedAt: e.clock.Now(),
				ExpiresAt: e.clock.Now().Add(time.Hour)}, limit); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	live := 0
	for _, h := range hashes {
		tok, err := e.s.TokenByHash(e.ctx, h)
		must(t, err)
		if tok != nil && !tok.Revoked() {
			live++
		}
	}
	if live != limit {
		t.Fatalf("%d live tokens after %d concurrent logins under a cap of %d", live, n, limit)
	}
}
