// Package secrets encrypts secrets at rest (hosted private keys, host credentials, secret
// access keys) with envelope encryption: every secret gets its own random data key, and the
// data key is wrapped by a KeyWrapper, by default a local ring of versioned master keys. Sealer
// implements kps.Sealer; the service, iam and the store's re-wrap take it as that interface.
// It imports nothing from this repository.
package secrets

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
)

// KeyWrapper wraps and unwraps data keys. It is the seam for a KMS: the local KeyRing is the
// default implementation. A wrapped key must say by itself which master key unwraps it.
type KeyWrapper interface {
	WrapKey(ctx context.Context, dataKey []byte) ([]byte, error)
	UnwrapKey(ctx context.Context, wrapped []byte) ([]byte, error)
	// Current reports whether wrapped was wrapped by the key WrapKey uses now; a key wrapped
	// by an older one is re-wrapped after a rotation.
	Current(wrapped []byte) bool
}

// MasterKeyFile is the name of the key ring file inside the data directory.
const MasterKeyFile = "master.key"

// kekInfo is the HKDF info of the key-encryption key derived from a master key.
const kekInfo = "kps secrets v1"

// KeyRing holds versioned 256-bit master keys: the newest wraps new data keys, all of them
// unwrap. Its String and GoString never show a key.
type KeyRing struct {
	newest uint32
	keks   map[uint32]cipher.AEAD
}

// NewKeyRing builds a ring from version → 32-byte master key. Versions start at 1.
func NewKeyRing(keys map[uint32][]byte) (*KeyRing, error) {
	if len(keys) == 0 {
		return nil, errors.New("secrets: the key ring is empty")
	}
	r := &KeyRing{keks: make(map[uint32]cipher.AEAD, len(keys))}
	for v, k := range keys {
		if v == 0 {
			return nil, errors.New("secrets: master key version 0 is not allowed")
		}
		if len(k) != 32 {
			return nil, fmt.Errorf("secrets: master key v%d is %d bytes, want 32", v, len(k))
		}
		kek, err := hkdf.Key(sha256.New, k, nil, kekInfo, 32)
		if err != nil {
			return nil, fmt.Errorf("secrets: derive key-encryption key v%d: %w", v, err)
		}
		block, err := aes.NewCipher(kek)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		r.keks[v] = aead
		r.newest = max(r.newest, v)
	}
	return r, nil
}

// Parse reads a key ring from configuration text (e.g. KPS_MASTER_KEY): either one base64
// key, which is version 1, or lines "v<N>:<base64>" with strictly increasing versions, the
// newest last. Blank lines and lines starting with '#' are ignored. Errors never quote key
// material.
func Parse(text string) (*KeyRing, error) {
	type entry struct {
		n    int
		line string
	}
	var lines []entry
	for i, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, entry{i + 1, l})
		}
	}
	if len(lines) == 0 {
		return nil, errors.New("secrets: no master key given")
	}
	// The base64 alphabet has no ':', so a lone line without one is a bare key.
	if len(lines) == 1 && !strings.Contains(lines[0].line, ":") {
		lines[0].line = "v1:" + lines[0].line
	}
	keys := map[uint32][]byte{}
	var last uint32
	for _, e := range lines {
		ver, b64, _ := strings.Cut(e.line, ":")
		u, err := strconv.ParseUint(strings.TrimPrefix(ver, "v"), 10, 32)
		if !strings.HasPrefix(ver, "v") || err != nil || u == 0 {
			return nil, fmt.Errorf("secrets: key ring line %d: want v<N>:<base64> with N = 1, 2, …", e.n)
		}
		v := uint32(u)
		if v <= last {
			return nil, fmt.Errorf("secrets: key ring line %d: versions must increase, newest last", e.n)
		}
		key, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("secrets: key ring line %d: the key is not valid base64", e.n)
		}
		if len(key) != 32 {
			return nil, fmt.Errorf("secrets: key ring line %d: the key is %d bytes, want 32", e.n, len(key))
		}
		keys[v], last = key, v
	}
	return NewKeyRing(keys)
}

// LoadOrCreate reads <dataDir>/master.key, or creates it with one new random key (v1) when it
// does not exist; created reports which. The file is created atomically and never replaced:
// it is written under a temporary name and hard-linked into place, which fails if another
// process won the race, and then that process's file is read. A file that other users
// ("world") may access is refused; group access is tolerated so that secret mounts with a
// group owner keep working.
func LoadOrCreate(dataDir string) (r *KeyRing, created bool, err error) {
	path := filepath.Join(dataDir, MasterKeyFile)
	r, err = load(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return r, false, err
	}
	key := make([]byte, 32)
	rand.Read(key)
	content := "v1:" + base64.StdEncoding.EncodeToString(key) + "\n"
	won, err := createOnce(path, []byte(content))
	if err != nil {
		return nil, false, err
	}
	if !won {
		r, err = load(path)
		return r, false, err
	}
	r, err = Parse(content)
	return r, err == nil, err
}

func load(path string) (*KeyRing, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o007 != 0 {
		return nil, fmt.Errorf("secrets: %s is accessible to other users (mode %04o); chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r, err := Parse(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// createOnce writes content to path with mode 0600 unless path exists; won reports whether
// this call created it. Readers never see a partial file.
func createOnce(path string, content []byte) (won bool, err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return false, err
	}
	if _, err := tmp.Write(content); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	// link(2) refuses an existing target: it is the O_EXCL of a file that is already complete.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return true, nil
}

// Versions lists the master key versions, oldest first.
func (r *KeyRing) Versions() []uint32 {
	vs := make([]uint32, 0, len(r.keks))
	for v := range r.keks {
		vs = append(vs, v)
	}
	slices.Sort(vs)
	return vs
}

// Newest is the version that wraps new data keys.
func (r *KeyRing) Newest() uint32 { return r.newest }

func (r *KeyRing) String() string { return fmt.Sprintf("secrets.KeyRing{versions: %v}", r.Versions()) }

// GoString keeps %#v from printing key material.
func (r *KeyRing) GoString() string { return r.String() }

// A wrapped data key is: master key version (4 bytes, big endian) ‖ nonce (12) ‖
// AES-256-GCM(data key) with the version bytes as associated data.
const wrapHeader = 4

// WrapKey wraps dataKey under the newest master key.
func (r *KeyRing) WrapKey(_ context.Context, dataKey []byte) ([]byte, error) {
	aead := r.keks[r.newest]
	out := make([]byte, wrapHeader+aead.NonceSize(), wrapHeader+aead.NonceSize()+len(dataKey)+aead.Overhead())
	binary.BigEndian.PutUint32(out, r.newest)
	rand.Read(out[wrapHeader:])
	return aead.Seal(out, out[wrapHeader:], dataKey, out[:wrapHeader]), nil
}

// UnwrapKey unwraps a key wrapped by WrapKey under any version of the ring.
func (r *KeyRing) UnwrapKey(_ context.Context, wrapped []byte) ([]byte, error) {
	if len(wrapped) < wrapHeader {
		return nil, ErrCorrupt
	}
	v := binary.BigEndian.Uint32(wrapped)
	aead, ok := r.keks[v]
	if !ok {
		return nil, fmt.Errorf("secrets: master key v%d is not in the key ring", v)
	}
	if len(wrapped) < wrapHeader+aead.NonceSize()+aead.Overhead() {
		return nil, ErrCorrupt
	}
	nonce := wrapped[wrapHeader : wrapHeader+aead.NonceSize()]
	key, err := aead.Open(nil, nonce, wrapped[wrapHeader+aead.NonceSize():], wrapped[:wrapHeader])
	if err != nil {
		return nil, ErrCorrupt
	}
	return key, nil
}

// Current reports whether wrapped was wrapped under the newest master key.
func (r *KeyRing) Current(wrapped []byte) bool {
	return len(wrapped) >= wrapHeader && binary.BigEndian.Uint32(wrapped) == r.newest
}

// AddVersion appends a new random master key to <dataDir>/master.key and returns its version.
// The file is replaced atomically (temporary file, fsync, rename), keeping every older version
// so that secrets sealed under them stay readable until they are re-wrapped.
func AddVersion(dataDir string) (uint32, error) {
	path := filepath.Join(dataDir, MasterKeyFile)
	ring, err := load(path)
	if err != nil {
		return 0, err
	}
	old, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	next := ring.newest + 1
	key := make([]byte, 32)
	rand.Read(key)
	text := strings.TrimRight(string(old), "\n") + "\n" + "v" + strconv.FormatUint(uint64(next), 10) + ":" + base64.StdEncoding.EncodeToString(key) + "\n"
	if _, err := Parse(text); err != nil {
		return 0, err
	}
	tmp, err := os.CreateTemp(dataDir, "."+MasterKeyFile+".tmp-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	// One err for the whole sequence: the first failure of chmod, write or sync is the one
	// returned.
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.WriteString(text)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return 0, err
	}
	return next, nil
}

// Load reads the key ring of <dataDir>/master.key without creating it.
func Load(dataDir string) (*KeyRing, error) { return load(filepath.Join(dataDir, MasterKeyFile)) }

// LiveKeyRing is a KeyWrapper whose key ring can be swapped while the service runs, so a
// rotation needs no restart.
type LiveKeyRing struct{ ring atomic.Pointer[KeyRing] }

// NewLiveKeyRing returns a live key ring holding r.
func NewLiveKeyRing(r *KeyRing) *LiveKeyRing {
	l := &LiveKeyRing{}
	l.ring.Store(r)
	return l
}

// Set replaces the key ring; calls in flight finish with the one they started with.
func (l *LiveKeyRing) Set(r *KeyRing) { l.ring.Store(r) }

// Ring returns the key ring in force.
func (l *LiveKeyRing) Ring() *KeyRing { return l.ring.Load() }

// WrapKey wraps under the newest master key of the ring in force.
func (l *LiveKeyRing) WrapKey(ctx context.Context, dataKey []byte) ([]byte, error) {
	return l.ring.Load().WrapKey(ctx, dataKey)
}

// UnwrapKey unwraps with the ring in force.
func (l *LiveKeyRing) UnwrapKey(ctx context.Context, wrapped []byte) ([]byte, error) {
	return l.ring.Load().UnwrapKey(ctx, wrapped)
}

// Current reports whether wrapped is under the newest master key of the ring in force.
func (l *LiveKeyRing) Current(wrapped []byte) bool { return l.ring.Load().Current(wrapped) }
