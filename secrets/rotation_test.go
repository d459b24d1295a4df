package secrets

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRotationWithoutRestart: a running sealer picks up a new master key version, old secrets
// stay readable, stale ones re-wrap to the new version, and after the old version is removed
// the re-wrapped secrets still open.
func TestRotationWithoutRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ring, _, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	live := NewLiveKeyRing(ring)
	s := NewSealer(live)
	old, err := s.Seal([]byte("secret"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Stale(old) {
		t.Fatal("fresh secret is stale")
	}
	v, err := AddVersion(dir)
	if err != nil || v != 2 {
		t.Fatalf("AddVersion: %d %v", v, err)
	}
	if st, _ := os.Stat(filepath.Join(dir, MasterKeyFile)); st.Mode().Perm() != 0o600 {
		t.Fatalf("master.key mode %v", st.Mode())
	}
	reloaded, err := Load(dir)
	if err != nil || reloaded.Newest() != 2 || len(reloaded.Versions()) != 2 {
		t.Fatalf("reloaded ring: %v %v", reloaded, err)
	}
	live.Set(reloaded)
	if !s.Stale(old) {
		t.Fatal("a secret under v1 is not stale after v2 arrived")
	}
	if pt, err := s.Open(old, []byte("aad")); err != nil || string(pt) != "secret" {
		t.Fatalf("old secret after rotation: %q %v", pt, err)
	}
	fresh, _ := s.Seal([]byte("new"), []byte("aad"))
	rewrapped, err := s.Rewrap(old)
	if err != nil || s.Stale(rewrapped) || s.Stale(fresh) {
		t.Fatalf("rewrap: %v stale=%v/%v", err, s.Stale(rewrapped), s.Stale(fresh))
	}
	// Drop v1 from the file: what was re-wrapped opens, what was not does not.
	b, _ := os.ReadFile(filepath.Join(dir, MasterKeyFile))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if err := os.WriteFile(filepath.Join(dir, MasterKeyFile), []byte(lines[1]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	onlyV2, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	live.Set(onlyV2)
	if pt, err := s.Open(rewrapped, []byte("aad")); err != nil || string(pt) != "secret" {
		t.Fatalf("rewrapped secret without v1: %q %v", pt, err)
	}
	if _, err := s.Open(old, []byte("aad")); err == nil {
		t.Fatal("a v1 secret opened without v1")
	}
	if v, err := AddVersion(dir); err != nil || v != 3 {
		t.Fatalf("third version: %d %v", v, err)
	}
}
