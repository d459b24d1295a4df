package storetest

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openkps/kps"
)

// hostingTests cover hosted private keys and the walk over sealed secrets.
var hostingTests = map[string]func(*testing.T, *env){
	"SetAndClearPrivateKey":          testSetPrivateKey,
	"BindingCarriesHostedKey":        testBindingCarriesHostedKey,
	"HostedKeyStandsInForCredential": testHostedKeyStandsInForCredential,
	"RewrapSecrets":                  testRewrapSecrets,
	"RewrapSkipsConcurrentChanges":   testRewrapSkipsConcurrentChanges,
}

func testSetPrivateKey(t *testing.T, e *env) {
	e.keyPair(project, "mine", kps.ScopeUser, alice)
	e.clock.Advance(1500 * time.Millisecond)
	must(t, e.s.SetPrivateKey(e.ctx, project, "mine", alice, []byte("sealed-1")))
	k, err := e.s.KeyPair(e.ctx, project, "mine", alice)
	must(t, err)
	if string(k.PrivateKey) != "sealed-1" || !k.Updated.Equal(e.clock.Now()) || k.Updated.Equal(k.Created) {
		t.Fatalf("after set: %q updated %v created %v", k.PrivateKey, k.Updated, k.Created)
	}
	// Invisible or missing key pairs are KPS.6201, and nothing changes.
	wantCode(t, e.s.SetPrivateKey(e.ctx, project, "mine", bob, []byte("x")), kps.ErrKeyPairNotFound)
	wantCode(t, e.s.SetPrivateKey(e.ctx, project, "none", alice, []byte("x")), kps.ErrKeyPairNotFound)
	wantCode(t, e.s.SetPrivateKey(e.ctx, otherProject, "mine", alice, []byte("x")), kps.ErrKeyPairNotFound)
	must(t, e.s.SetPrivateKey(e.ctx, project, "mine", alice, nil))
	k, err = e.s.KeyPair(e.ctx, project, "mine", alice)
	must(t, err)
	if k.PrivateKey != nil {
		t.Fatalf("after clear: %q", k.PrivateKey)
	}
	page, err := e.s.ListKeyPairs(e.ctx, project, alice, "", 10)
	must(t, err)
	if len(page.Items) != 1 || page.Items[0].PrivateKey != nil {
		t.Fatalf("list after clear: %+v", page.Items)
	}
}

func testBindingCarriesHostedKey(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.server(project, "a", false)
	e.bind(project, "kp", "a", false)
	if b := e.binding(project, "a"); b.PrivateKey != nil {
		t.Fatalf("binding of an unhosted key pair carries %q", b.PrivateKey)
	}
	must(t, e.s.SetPrivateKey(e.ctx, project, "kp", alice, []byte("sealed-kp")))
	if b := e.binding(project, "a"); string(b.PrivateKey) != "sealed-kp" || b.KeyPairName != "kp" {
		t.Fatalf("binding = %+v", b)
	}
}

// testHostedKeyStandsInForCredential: RESET and UNBIND without a service credential are
// accepted when the bound key pair's private key is hosted, and refused (KPS.6021) otherwise.
func testHostedKeyStandsInForCredential(t *testing.T, e *env) {
	e.keyPair(project, "kp", kps.ScopeDomain, alice)
	e.keyPair(project, "next", kps.ScopeDomain, alice)
	e.server(project, "a", false)
	wantCode(t, e.submitErr(resetOf(project, "next", "a")), kps.ErrNoCredential) // not bound
	e.bind(project, "kp", "a", false)
	wantCode(t, e.submitErr(resetOf(project, "next", "a")), kps.ErrNoCredential) // bound, not hosted
	wantCode(t, e.submitErr(unbindOf(project, "a", false)), kps.ErrNoCredential)
	must(t, e.s.SetPrivateKey(e.ctx, project, "kp", alice, []byte("sealed-kp")))
	reset := e.submit(resetOf(project, "next", "a"))
	e.clock.Advance(time.Millisecond)
	must(t, e.s.FinishTask(e.ctx, e.claim(reset.ID), kps.TaskOutcome{ErrorCode: kps.TaskAuthFailed, ErrorMsg: "x"}))
	e.submit(unbindOf(project, "a", false))
}

func testRewrapSecrets(t *testing.T, e *env) {
	for _, name := range []string{"k1", "k2", "k3"} {
		e.keyPair(project, name, kps.ScopeUser, alice)
		must(t, e.s.SetPrivateKey(e.ctx, project, name, alice, []byte("v1:"+name)))
	}
	e.keyPair(project, "unhosted", kps.ScopeUser, alice)
	e.server(project, "s1", true)
	e.server(otherProject, "s1", true)
	e.server(project, "bare", false)
	_, _, admin := e.bootstrapped()
	must(t, e.s.CreateAccessKey(e.ctx, &kps.AccessKey{Access: "AKROTATIONTEST000001", UserID: admin.ID,
		Secret: []byte("v1:sk"), Status: kps.AccessKeyActive}))
	seen := map[string]int{}
	rewrap := func(sealed []byte) ([]byte, bool, error) {
		seen[string(sealed)]++
		if rest, ok := bytes.CutPrefix(sealed, []byte("v1:")); ok {
			return append([]byte("v2:"), rest...), true, nil
		}
		return sealed, false, nil
	}
	n, err := e.s.RewrapSecrets(e.ctx, rewrap)
	must(t, err)
	if n != 4 {
		t.Fatalf("rewrapped %d, want the 4 v1 secrets", n)
	}
	if len(seen) != 5 || seen["sealed:s1"] != 2 {
		t.Fatalf("secrets visited: %v (every sealed secret once, both servers named s1)", seen)
	}
	for _, name := range []string{"k1", "k2", "k3"} {
		k, err := e.s.KeyPair(e.ctx, project, name, alice)
		must(t, err)
		if string(k.PrivateKey) != "v2:"+name {
			t.Fatalf("%s: %q", name, k.PrivateKey)
		}
	}
	ak, err := e.s.AccessKey(e.ctx, "AKROTATIONTEST000001")
	must(t, err)
	if string(ak.Secret) != "v2:sk" {
		t.Fatalf("access key secret: %q", ak.Secret)
	}
	s, err := e.s.Server(e.ctx, project, "s1")
	must(t, err)
	if string(s.Credential) != "sealed:s1" {
		t.Fatalf("unchanged credential rewritten: %q", s.Credential)
	}
	// A second pass finds nothing to do.
	if n, err := e.s.RewrapSecrets(e.ctx, rewrap); err != nil || n != 0 {
		t.Fatalf("second pass: %d %v", n, err)
	}
}

// testRewrapSkipsConcurrentChanges: a secret replaced while the walk runs keeps its new value.
func testRewrapSkipsConcurrentChanges(t *testing.T, e *env) {
	e.keyPair(project, "k", kps.ScopeUser, alice)
	must(t, e.s.SetPrivateKey(e.ctx, project, "k", alice, []byte("old")))
	var once sync.Once
	_, err := e.s.RewrapSecrets(e.ctx, func(sealed []byte) ([]byte, bool, error) {
		once.Do(func() {
			// Another request imports a new private key between the read and the write.
			must(t, e.s.SetPrivateKey(e.ctx, project, "k", alice, []byte("imported")))
		})
		return []byte(strings.ToUpper(string(sealed))), true, nil
	})
	must(t, err)
	k, err := e.s.KeyPair(e.ctx, project, "k", alice)
	must(t, err)
	if string(k.PrivateKey) != "imported" {
		t.Fatalf("a concurrent import was overwritten: %q", k.PrivateKey)
	}
}
