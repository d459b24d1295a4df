package secrets

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/openkps/kps"
)

var _ kps.Sealer = (*Sealer)(nil)
var _ KeyWrapper = (*KeyRing)(nil)

func randomKey(t *testing.T) string {
	t.Helper()
	k := make([]byte, 32)
	rand.Read(k)
	return base64.StdEncoding.EncodeToString(k)
}

func mustParse(t *testing.T, text string) *KeyRing {
	t.Helper()
	r, err := Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSealOpenRoundTrip(t *testing.T) {
	t.Parallel()
	s := NewSealer(mustParse(t, randomKey(t)))
	for _, pt := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("private key "), 2000)} {
		c, err := s.Seal(pt, []byte("kps/keypair/p1/k1"))
		if err != nil {
			t.Fatal(err)
		}
		if len(pt) > 4 && bytes.Contains(c, pt[:len(pt)/2]) {
			t.Fatal("the ciphertext contains the plaintext")
		}
		got, err := s.Open(c, []byte("kps/keypair/p1/k1"))
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("Open = %q, %v", got, err)
		}
	}
	a, _ := s.Seal([]byte("same"), nil)
	b, _ := s.Seal([]byte("same"), nil)
	if bytes.Equal(a, b) {
		t.Error("two seals of the same plaintext are equal: data keys or nonces repeat")
	}
}

func TestOpenChecksAAD(t *testing.T) {
	t.Parallel()
	s := NewSealer(mustParse(t, randomKey(t)))
	c, _ := s.Seal([]byte("secret"), []byte("row-1"))
	for _, aad := range [][]byte{[]byte("row-2"), nil, []byte("row-1\x00")} {
		if _, err := s.Open(c, aad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Open with aad %q: %v, want ErrCorrupt", aad, err)
		}
	}
}

func TestOpenDetectsTampering(t *testing.T) {
	t.Parallel()
	ring := mustParse(t, "v1:"+randomKey(t)+"\nv2:"+randomKey(t))
	s := NewSealer(ring)
	c, err := s.Seal([]byte("the secret payload"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	// Every byte of every region: magic, format, wrapped-key length, key version, wrap nonce,
	// wrapped key and its tag, payload nonce, ciphertext and tag.
	for i := range c {
		for _, flip := range []byte{0x01, 0x80} {
			bad := bytes.Clone(c)
			bad[i] ^= flip
			if pt, err := s.Open(bad, []byte("aad")); err == nil {
				t.Fatalf("byte %d ^ %#x: opened as %q", i, flip, pt)
			}
		}
	}
	for n := range len(c) {
		if _, err := s.Open(c[:n], []byte("aad")); err == nil {
			t.Fatalf("truncated to %d bytes: opened", n)
		}
	}
	if _, err := s.Open(append(bytes.Clone(c), 0), []byte("aad")); err == nil {
		t.Fatal("an extended ciphertext opened")
	}
	if _, err := s.Open(c, []byte("aad")); err != nil {
		t.Fatalf("the original no longer opens: %v", err)
	}
}

func TestOpenUnknownVersion(t *testing.T) {
	t.Parallel()
	k1, k2 := randomKey(t), randomKey(t)
	c, _ := NewSealer(mustParse(t, "v1:"+k1+"\nv2:"+k2)).Seal([]byte("s"), nil)
	_, err := NewSealer(mustParse(t, "v1:"+k1)).Open(c, nil)
	if err == nil || !strings.Contains(err.Error(), "v2 is not in the key ring") {
		t.Fatalf("err = %v", err)
	}
}

func TestRotation(t *testing.T) {
	t.Parallel()
	k1, k2 := randomKey(t), randomKey(t)
	v1 := NewSealer(mustParse(t, k1))
	old, err := v1.Seal([]byte("old secret"), []byte("row"))
	if err != nil {
		t.Fatal(err)
	}

	both := NewSealer(mustParse(t, "v1:"+k1+"\nv2:"+k2+"\n"))
	if got, err := both.Open(old, []byte("row")); err != nil || string(got) != "old secret" {
		t.Fatalf("after adding v2 the old secret does not open: %q %v", got, err)
	}
	fresh, _ := both.Seal([]byte("new secret"), []byte("row2"))
	if _, err := v1.Open(fresh, []byte("row2")); err == nil {
		t.Fatal("a secret sealed after rotation opens with v1 only: it was not sealed under v2")
	}

	moved, err := both.Rewrap(old)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(moved[len(moved)-len("old secret")-gcmTagLen-gcmNonceLen:], old[len(old)-len("old secret")-gcmTagLen-gcmNonceLen:]) {
		t.Error("Rewrap changed the payload")
	}
	onlyV2 := NewSealer(mustParse(t, "v2:"+k2))
	if _, err := onlyV2.Open(old, []byte("row")); err == nil {
		t.Fatal("without v1 the not-rewrapped secret still opens")
	}
	if got, err := onlyV2.Open(moved, []byte("row")); err != nil || string(got) != "old secret" {
		t.Fatalf("after dropping v1 the rewrapped secret does not open: %q %v", got, err)
	}
	if _, err := onlyV2.Open(moved, []byte("other row")); err == nil {
		t.Fatal("Rewrap lost the aad binding")
	}
	if _, err := both.Rewrap(moved[:10]); err == nil {
		t.Fatal("Rewrap accepted a truncated secret")
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	k1, k2 := randomKey(t), randomKey(t)
	r := mustParse(t, "# master keys\n\nv1:"+k1+"\n v3:"+k2+" \n")
	if fmt.Sprint(r.Versions()) != "[1 3]" || r.Newest() != 3 {
		t.Fatalf("versions %v newest %d", r.Versions(), r.Newest())
	}
	if r := mustParse(t, k1+"\n"); r.Newest() != 1 {
		t.Fatalf("a bare key is v%d, want v1", r.Newest())
	}
	short := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	bad := []string{
		"",
		"# only a comment",
		"not base64 at all!",
		short,
		"v2:" + k1 + "\nv1:" + k2,
		"v1:" + k1 + "\nv1:" + k2,
		"v0:" + k1,
		"x1:" + k1,
		k1 + "\n" + k2,
	}
	for _, text := range bad {
		_, err := Parse(text)
		if err == nil {
			t.Errorf("Parse(%q) accepted", text)
			continue
		}
		for _, k := range []string{k1, k2, k1[:16], k2[:16]} {
			if strings.Contains(err.Error(), k) {
				t.Errorf("error %q quotes key material", err)
			}
		}
	}
}

func TestKeyRingDoesNotPrintKeys(t *testing.T) {
	t.Parallel()
	k := make([]byte, 32)
	for i := range k {
		k[i] = 'A'
	}
	r, err := NewKeyRing(map[uint32][]byte{1: k})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(r), fmt.Sprintf("%+v", r), fmt.Sprintf("%#v", r), fmt.Sprint(*r)} {
		if strings.Contains(s, "AAAA") || strings.Contains(s, base64.StdEncoding.EncodeToString(k)[:8]) {
			t.Errorf("formatted key ring shows key material: %s", s)
		}
	}
}

func TestErrorsDoNotLeakSecrets(t *testing.T) {
	t.Parallel()
	key := randomKey(t)
	s := NewSealer(mustParse(t, key))
	c, _ := s.Seal([]byte("TOPSECRET"), []byte("aad"))
	bad := bytes.Clone(c)
	bad[len(bad)-1] ^= 1
	for _, err := range []error{
		func() error { _, err := s.Open(bad, []byte("aad")); return err }(),
		func() error { _, err := s.Open(c, []byte("other")); return err }(),
		func() error { _, err := Parse("v1:" + key[:40]); return err }(),
	} {
		if err == nil {
			t.Fatal("no error")
		}
		if strings.Contains(err.Error(), "TOPSECRET") || strings.Contains(err.Error(), key[:12]) {
			t.Errorf("error %q leaks a secret", err)
		}
	}
}

func TestLoadOrCreate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r1, created, err := LoadOrCreate(dir)
	if err != nil || !created {
		t.Fatalf("first LoadOrCreate: created=%v err=%v", created, err)
	}
	path := filepath.Join(dir, MasterKeyFile)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want 0600", st.Mode().Perm())
	}
	content, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(content), "v1:") {
		t.Errorf("file does not use the versioned format: %d bytes", len(content))
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the data dir holds %d entries, want only %s", len(entries), MasterKeyFile)
	}

	r2, created, err := LoadOrCreate(dir)
	if err != nil || created {
		t.Fatalf("second LoadOrCreate: created=%v err=%v", created, err)
	}
	if again, _ := os.ReadFile(path); !bytes.Equal(again, content) {
		t.Fatal("the second start changed master.key")
	}
	c, _ := NewSealer(r1).Seal([]byte("s"), nil)
	if _, err := NewSealer(r2).Open(c, nil); err != nil {
		t.Fatalf("the reloaded ring does not open what the first sealed: %v", err)
	}
}

func TestLoadOrCreateConcurrent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const n = 16
	rings := make([]*KeyRing, n)
	created := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { rings[i], created[i], errs[i] = LoadOrCreate(dir) })
	}
	wg.Wait()
	winners := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("start %d: %v", i, errs[i])
		}
		if created[i] {
			winners++
		}
	}
	if winners != 1 {
		t.Fatalf("%d starts created the key, want 1", winners)
	}
	c, _ := NewSealer(rings[0]).Seal([]byte("s"), nil)
	for i := range n {
		if _, err := NewSealer(rings[i]).Open(c, nil); err != nil {
			t.Fatalf("start %d holds another key", i)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left behind: %d entries", len(entries))
	}
}

func TestLoadOrCreateRefusesWorldReadable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, MasterKeyFile)
	if err := os.WriteFile(path, []byte(randomKey(t)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o644)
	if _, _, err := LoadOrCreate(dir); err == nil || !strings.Contains(err.Error(), "other users") {
		t.Fatalf("a world-readable master.key was accepted: %v", err)
	}
	os.Chmod(path, 0o640)
	if _, created, err := LoadOrCreate(dir); err != nil || created {
		t.Fatalf("a group-readable master.key: created=%v err=%v", created, err)
	}
}

func TestLoadOrCreateRejectsBadFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, MasterKeyFile), []byte("garbage\n"), 0o600)
	if _, _, err := LoadOrCreate(dir); err == nil {
		t.Fatal("a corrupt master.key was accepted (or replaced)")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, MasterKeyFile)); string(b) != "garbage\n" {
		t.Fatal("a corrupt master.key was overwritten")
	}
}
