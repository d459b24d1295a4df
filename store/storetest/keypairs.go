package storetest

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/openkps/kps"
)

var keyPairTests = map[string]func(*testing.T, *env){
	"CreateAndRead":                    testKeyPairCreateAndRead,
	"NamesAreUniquePerProject":         testKeyPairNamesUnique,
	"IDsAreNeverReused":                testKeyPairIDsNeverReused,
	"Quota":                            testKeyPairQuota,
	"QuotaPerUser":                     testKeyPairQuotaPerUser,
	"Visibility":                       testKeyPairVisibility,
	"UpdateDescription":                testKeyPairUpdateDescription,
	"ListMarkerPages":                  testKeyPairListMarkerPages,
	"ListWalkAndByteOrder":             testKeyPairListWalk,
	"ListEmpty":                        testKeyPairListEmpty,
	"DeleteRefusedWhileBound":          testKeyPairDeleteBound,
	"DeleteRefusedWhileTaskReferences": testKeyPairDeleteActiveTask,
}

func testKeyPairCreateAndRead(t *testing.T, e *env) {
	k := &kps.KeyPair{ProjectID: project, Name: "web-prod", Type: kps.TypeSSH, Scope: kps.ScopeUser,
		UserID: alice, PublicKey: "ssh-rsa AAAAB3NzaC1yc2E web-prod\n", Fingerprint: "4e:0b:91",
		Algorithm: "RSA2048", Description: "prod web tier", PrivateKey: []byte{9, 8, 7, 0}}
	must(t, e.s.CreateKeyPair(e.ctx, k, kps.KeyPairQuota{Project: 1000}))
	if k.ID <= 0 || !k.Created.Equal(Epoch) || !k.Updated.Equal(Epoch) {
		t.Fatalf("after create: ID %d, created %v, updated %v", k.ID, k.Created, k.Updated)
	}
	got, err := e.s.KeyPair(e.ctx, project, "web-prod", alice)
	must(t, err)
	if got.ID != k.ID || got.ProjectID != project || got.Name != k.Name || got.Type != k.Type ||
		got.Scope != k.Scope || got.UserID != alice || got.PublicKey != k.PublicKey ||
		got.Fingerprint != k.Fingerprint || got.Algorithm != k.Algorithm || got.Description != k.Description ||
		!bytes.Equal(got.PrivateKey, k.PrivateKey) || !got.Created.Equal(Epoch) || !got.Updated.Equal(Epoch) {
		t.Fatalf("key pair = %+v, want %+v", got, k)
	}
	e.keyPair(project, "no-private", kps.ScopeDomain, alice)
	got, err = e.s.KeyPair(e.ctx, project, "no-private", bob)
	must(t, err)
	if got.PrivateKey != nil {
		t.Fatalf("private key = %v, want nil", got.PrivateKey)
	}
	// Names are case-sensitive.
	_, err = e.s.KeyPair(e.ctx, project, "Web-prod", alice)
	wantCode(t, err, kps.ErrKeyPairNotFound)
}

func testKeyPairNamesUnique(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeUser, alice)
	// Taken even though bob cannot see alice's user-scope key pair (§1.2).
	dup := &kps.KeyPair{ProjectID: project, Name: "kp", Type: kps.TypeSSH, Scope: kps.ScopeDomain, UserID: bob,
		PublicKey: "ssh-ed25519 AAAA", Fingerprint: "f", Algorithm: "ED25519"}
	wantCode(t, e.s.CreateKeyPair(e.ctx, dup, kps.KeyPairQuota{Project: 1000}), kps.ErrKeyPairExists)
	if dup.ID != 0 {
		t.Errorf("refused key pair got ID %d", dup.ID)
	}
	e.keyPair(otherProject, "kp", kps.ScopeUser, alice)
	e.keyPair(project, "KP", kps.ScopeUser, alice)
}

func testKeyPairIDsNeverReused(t *testing.T, e *env) {
	a := e.keyPair(project, "a", kps.ScopeUser, alice)
	b := e.keyPair(otherProject, "b", kps.ScopeUser, alice)
	if b.ID <= a.ID {
		t.Fatalf("IDs %d then %d: not increasing service-wide", a.ID, b.ID)
	}
	must(t, e.s.DeleteKeyPair(e.ctx, otherProject, "b", alice))
	c := e.keyPair(project, "b", kps.ScopeUser, alice)
	if c.ID <= b.ID {
		t.Fatalf("ID %d reused after deleting %d", c.ID, b.ID)
	}
}

func testKeyPairQuota(t *testing.T, e *env) {
	const quota = 3
	create := func(projectID, name string) error {
		return e.s.CreateKeyPair(e.ctx, &kps.KeyPair{ProjectID: projectID, Name: name, Type: kps.TypeSSH,
			Scope: kps.ScopeUser, UserID: alice, PublicKey: "ssh-ed25519 AAAA", Fingerprint: "f",
			Algorithm: "ED25519"}, kps.KeyPairQuota{Project: quota})
	}
	for i := range quota {
		must(t, create(project, fmt.Sprintf("k%d", i)))
	}
	err := create(project, "one-too-many")
	wantCode(t, err, kps.ErrQuota)
	if want := "The key pair quota of 3 per project is exceeded."; kps.ErrorMessage(err) != want {
		t.Errorf("message %q, want %q", kps.ErrorMessage(err), want)
	}
	// The name conflict (409) is checked before the quota (403).
	wantCode(t, create(project, "k0"), kps.ErrKeyPairExists)
	// The quota is per project, and deleting frees a slot.
	must(t, create(otherProject, "k0"))
	must(t, e.s.DeleteKeyPair(e.ctx, project, "k1", alice))
	must(t, create(project, "k1-again"))
	wantCode(t, create(project, "k9"), kps.ErrQuota)
	// A quota of 0 means no limit.
	must(t, e.s.CreateKeyPair(e.ctx, &kps.KeyPair{ProjectID: project, Name: "unlimited", Type: kps.TypeSSH,
		Scope: kps.ScopeUser, UserID: alice, PublicKey: "p", Fingerprint: "f", Algorithm: "ED25519"}, kps.KeyPairQuota{}))
}

// testKeyPairQuotaPerUser: with PerUser, an owner holding User key pairs of the project is
// refused (KPS.6401) in the insert's transaction, however many create at once (Nova's per-user
// limit, nova-keypairs.md §11); other users' key pairs do not count, 0 forbids every creation,
// and the project's quota still applies.
func testKeyPairQuotaPerUser(t *testing.T, e *env) {
	create := func(user, name string, q kps.KeyPairQuota) error {
		return e.s.CreateKeyPair(e.ctx, &kps.KeyPair{ProjectID: project, Name: name, Type: kps.TypeSSH,
			Scope: kps.ScopeDomain, UserID: user, PublicKey: "ssh-ed25519 AAAA", Fingerprint: "f",
			Algorithm: "ED25519"}, q)
	}
	perUser := kps.KeyPairQuota{Project: 100, User: 2, PerUser: true}
	must(t, create(alice, "a1", perUser))
	must(t, create(bob, "b1", perUser))
	must(t, create(alice, "a2", perUser))
	err := create(alice, "a3", perUser)
	wantCode(t, err, kps.ErrQuota)
	if want := "The key pair quota of 2 per user is exceeded."; kps.ErrorMessage(err) != want {
		t.Errorf("message %q, want %q", kps.ErrorMessage(err), want)
	}
	// Conflict before quota, as for the project's (§1.4).
	wantCode(t, create(alice, "a1", perUser), kps.ErrKeyPairExists)
	must(t, create(bob, "b2", perUser))
	wantCode(t, create(bob, "b3", kps.KeyPairQuota{User: 0, PerUser: true}), kps.ErrQuota)
	wantCode(t, create(bob, "b3", kps.KeyPairQuota{Project: 4, User: 10, PerUser: true}), kps.ErrQuota)
	must(t, create(bob, "b3", kps.KeyPairQuota{Project: 100}))

	// Concurrent creates of one user never both pass the limit.
	const racers = 8
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() { errs[i] = create("c0ffee00000000000000000000000003", fmt.Sprintf("race%d", i), perUser) })
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
		} else {
			wantCode(t, err, kps.ErrQuota)
		}
	}
	if won != 2 {
		t.Fatalf("%d of %d concurrent creates passed a per-user limit of 2", won, racers)
	}
}

func testKeyPairVisibility(t *testing.T, e *env) {
	e.keyPair(project, "alice-own", kps.ScopeUser, alice)
	e.keyPair(project, "shared", kps.ScopeDomain, alice)
	e.keyPair(project, "bob-own", kps.ScopeUser, bob)

	_, err := e.s.KeyPair(e.ctx, project, "alice-own", bob)
	wantCode(t, err, kps.ErrKeyPairNotFound)
	wantCode(t, e.s.DeleteKeyPair(e.ctx, project, "alice-own", bob), kps.ErrKeyPairNotFound)
	wantCode(t, e.s.UpdateKeyPairDescription(e.ctx, project, "alice-own", bob, "x"), kps.ErrKeyPairNotFound)
	_, err = e.s.KeyPair(e.ctx, project, "shared", bob)
	must(t, err)
	// Not visible from another project.
	_, err = e.s.KeyPair(e.ctx, otherProject, "shared", alice)
	wantCode(t, err, kps.ErrKeyPairNotFound)

	names := func(user string) []string {
		page, err := e.s.ListKeyPairs(e.ctx, project, user, "", 50)
		must(t, err)
		var n []string
		for _, k := range page.Items {
			n = append(n, k.Name)
		}
		return n
	}
	if got := names(alice); !slices.Equal(got, []string{"alice-own", "shared"}) {
		t.Errorf("alice sees %v", got)
	}
	if got := names(bob); !slices.Equal(got, []string{"bob-own", "shared"}) {
		t.Errorf("bob sees %v", got)
	}
	// Bob deletes the shared one: domain scope is usable by every user of the project.
	must(t, e.s.DeleteKeyPair(e.ctx, project, "shared", bob))
}

func testKeyPairUpdateDescription(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.clock.Advance(time.Minute)
	must(t, e.s.UpdateKeyPairDescription(e.ctx, project, "kp", bob, "prod web tier"))
	k, err := e.s.KeyPair(e.ctx, project, "kp", alice)
	must(t, err)
	if k.Description != "prod web tier" || !k.Created.Equal(Epoch) || !k.Updated.Equal(Epoch.Add(time.Minute)) {
		t.Fatalf("after update: %+v", k)
	}
	must(t, e.s.UpdateKeyPairDescription(e.ctx, project, "kp", bob, ""))
	k, err = e.s.KeyPair(e.ctx, project, "kp", alice)
	must(t, err)
	if k.Description != "" {
		t.Fatalf("description = %q after clearing", k.Description)
	}
	wantCode(t, e.s.UpdateKeyPairDescription(e.ctx, project, "nope", alice, "x"), kps.ErrKeyPairNotFound)
}

// pageOf lists one page and renders it for comparison.
func (e *env) pageOf(user, marker string, limit int) (names []string, next, prev string) {
	e.t.Helper()
	page, err := e.s.ListKeyPairs(e.ctx, project, user, marker, limit)
	must(e.t, err)
	if page.Items == nil {
		e.t.Fatalf("marker %q limit %d: Items is nil, want a non-nil slice", marker, limit)
	}
	for _, k := range page.Items {
		names = append(names, k.Name)
	}
	return names, fmtPtr(page.NextMarker), fmtPtr(page.PreviousMarker)
}

func testKeyPairListMarkerPages(t *testing.T, e *env) {
	// Visible to alice: L = [a b c d e]. Invisible ones sit between them and must not count.
	for _, n := range []string{"c", "a", "e", "b", "d"} {
		e.keyPair(project, n, kps.ScopeDomain, bob)
	}
	for _, n := range []string{"0hidden", "bb", "cc", "zz"} {
		e.keyPair(project, n, kps.ScopeUser, bob)
	}
	e.keyPair(otherProject, "ab", kps.ScopeDomain, alice)

	const absent = "<absent>"
	for _, c := range []struct {
		marker     string
		limit      int
		want       []string
		next, prev string
	}{
		// First page: no previous page.
		{"", 2, []string{"a", "b"}, `"b"`, absent},
		// s = 2, p = 0 → "" (the first page).
		{"b", 2, []string{"c", "d"}, `"d"`, `""`},
		// Exact fit: the last page ends at the last element → no next_marker. s = 3, p = 1 → L[0].
		{"c", 2, []string{"d", "e"}, absent, `"a"`},
		// Short last page. s = 4, p = 2 → L[1].
		{"d", 2, []string{"e"}, absent, `"b"`},
		// Everything on one page.
		{"", 5, []string{"a", "b", "c", "d", "e"}, absent, absent},
		{"", 1000, []string{"a", "b", "c", "d", "e"}, absent, absent},
		{"", 4, []string{"a", "b", "c", "d"}, `"d"`, absent},
		// A marker naming no key pair still has a position: "bx" → s = 2.
		{"bx", 2, []string{"c", "d"}, `"d"`, `""`},
		// A marker naming an invisible key pair: "cc" → s = 3.
		{"cc", 1, []string{"d"}, `"d"`, `"b"`},
		// Before everything: s = 0.
		{"0", 2, []string{"a", "b"}, `"b"`, absent},
		// After everything: an empty page whose previous page ends at L[2]. s = 5, p = 3.
		{"zzz", 2, nil, absent, `"c"`},
		// Last element as marker: empty page, s = 5, limit 5 → p = 0 → "".
		{"e", 5, nil, absent, `""`},
		// p ≤ 0 with a large limit.
		{"a", 1000, []string{"b", "c", "d", "e"}, absent, `""`},
		// limit 1 walks one by one: s = 1 → p = 0.
		{"a", 1, []string{"b"}, `"b"`, `""`},
		{"b", 1, []string{"c"}, `"c"`, `"a"`},
	} {
		names, next, prev := e.pageOf(alice, c.marker, c.limit)
		if !slices.Equal(names, c.want) || next != c.next || prev != c.prev {
			t.Errorf("marker %q limit %d: %v next %s previous %s; want %v next %s previous %s",
				c.marker, c.limit, names, next, prev, c.want, c.next, c.prev)
		}
	}
}

func testKeyPairListWalk(t *testing.T, e *env) {
	// Byte order: '-' < digits < upper case < '_' < lower case.
	all := []string{"zeta", "Zeta", "_x", "-y", "9", "alpha", "Alpha", "a-b", "a_b", "aB", "ab", "b"}
	for i, n := range all {
		scope := kps.ScopeDomain
		if i%3 == 0 {
			scope = kps.ScopeUser
		}
		e.keyPair(project, n, scope, alice)
	}
	want := []string{"-y", "9", "Alpha", "Zeta", "_x", "a-b", "aB", "a_b", "ab", "alpha", "b", "zeta"}
	for _, limit := range []int{1, 2, 3, 5, 12, 13} {
		var got []string
		marker, prevWant := "", "<absent>"
		for pages := 0; ; pages++ {
			if pages > len(all) {
				t.Fatalf("limit %d: next_marker never ends", limit)
			}
			page, err := e.s.ListKeyPairs(e.ctx, project, alice, marker, limit)
			must(t, err)
			if fmtPtr(page.PreviousMarker) != prevWant {
				t.Errorf("limit %d marker %q: previous %s, want %s", limit, marker, fmtPtr(page.PreviousMarker), prevWant)
			}
			for _, k := range page.Items {
				got = append(got, k.Name)
			}
			if page.NextMarker == nil {
				break
			}
			if *page.NextMarker != page.Items[len(page.Items)-1].Name {
				t.Fatalf("next_marker %q is not the last item", *page.NextMarker)
			}
			// The previous_marker of the next page leads back to this page's marker.
			prevWant = fmt.Sprintf("%q", marker)
			marker = *page.NextMarker
		}
		if !slices.Equal(got, want) {
			t.Fatalf("limit %d walk = %v, want %v", limit, got, want)
		}
	}
}

func testKeyPairListEmpty(t *testing.T, e *env) {
	names, next, prev := e.pageOf(alice, "", 50)
	if len(names) != 0 || next != "<absent>" || prev != "<absent>" {
		t.Fatalf("empty list: %v %s %s", names, next, prev)
	}
	names, next, prev = e.pageOf(alice, "m", 50)
	if len(names) != 0 || next != "<absent>" || prev != "<absent>" {
		t.Fatalf("empty list with a marker: %v %s %s", names, next, prev)
	}
}

func testKeyPairDeleteBound(t *testing.T, e *env) {
	e.server(project, "web-01", true)
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.bind(project, "kp", "web-01", false)
	wantCode(t, e.s.DeleteKeyPair(e.ctx, project, "kp", alice), kps.ErrKeyPairInUse)
	// A failed unbind leaves it bound; a successful one frees it.
	e.run(unbindOf(project, "web-01", false), kps.TaskOutcome{ErrorCode: kps.TaskAuthFailed, ErrorMsg: "no"})
	wantCode(t, e.s.DeleteKeyPair(e.ctx, project, "kp", alice), kps.ErrKeyPairInUse)
	e.run(unbindOf(project, "web-01", false), kps.TaskOutcome{Success: true})
	must(t, e.s.DeleteKeyPair(e.ctx, project, "kp", alice))
	_, err := e.s.KeyPair(e.ctx, project, "kp", alice)
	wantCode(t, err, kps.ErrKeyPairNotFound)
}

func testKeyPairDeleteActiveTask(t *testing.T, e *env) {
	e.server(project, "web-01", true)
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	task := e.submit(resetOf(project, "kp", "web-01"))
	wantCode(t, e.s.DeleteKeyPair(e.ctx, project, "kp", alice), kps.ErrKeyPairInUse)
	running := e.claim(task.ID)
	wantCode(t, e.s.DeleteKeyPair(e.ctx, project, "kp", alice), kps.ErrKeyPairInUse)
	must(t, e.s.FinishTask(e.ctx, running, kps.TaskOutcome{ErrorCode: kps.TaskUnreachable, ErrorMsg: "down"}))
	// A failed task does not hold the key pair.
	must(t, e.s.DeleteKeyPair(e.ctx, project, "kp", alice))
}
