package iam

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Params are the Argon2id cost parameters of new password hashes. The zero value means the
// second recommended set of RFC 9106 (auth.md §12.1): 64 MiB, 3 passes, 4 lanes. Tests use
// cheaper ones.
type Params struct {
	MemoryKiB   uint32
	Iterations  uint32
	Parallelism uint8
}

const (
	saltLen = 16
	tagLen  = 32
	// Bounds on what a stored hash may ask for, so that a corrupt row cannot exhaust memory.
	maxMemoryKiB  = 4 << 20
	maxIterations = 64
)

func (p Params) orDefault() Params {
	if p == (Params{}) {
		return Params{MemoryKiB: 64 << 10, Iterations: 3, Parallelism: 4}
	}
	return p
}

// hashSlots bounds concurrent Argon2id computations process-wide (auth.md §12.1): each one
// holds MemoryKiB of RAM, so a login flood must queue rather than exhaust memory. It is a
// package variable because the limit is about this process, whatever Service values exist.
var hashSlots = make(chan struct{}, runtime.NumCPU())

func idKey(ctx context.Context, pw, salt []byte, p Params, n uint32) ([]byte, error) {
	select {
	case hashSlots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-hashSlots }()
	return argon2.IDKey(pw, salt, p.Iterations, p.MemoryKiB, p.Parallelism, n), nil
}

// HashPassword returns the Argon2id PHC string of pw with the default parameters,
// "$argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>".
func HashPassword(pw string) (string, error) { return Params{}.Hash(context.Background(), pw) }

// VerifyPassword checks pw against a PHC string in constant time; needsRehash reports a match
// whose stored parameters are weaker than the defaults.
func VerifyPassword(hash, pw string) (ok, needsRehash bool, err error) {
	return Params{}.Verify(context.Background(), hash, pw)
}

// Hash returns the Argon2id PHC string of pw under p.
func (p Params) Hash(ctx context.Context, pw string) (string, error) {
	p = p.orDefault()
	salt := make([]byte, saltLen)
	rand.Read(salt)
	tag, err := idKey(ctx, []byte(pw), salt, p, tagLen)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.MemoryKiB, p.Iterations,
		p.Parallelism, b64.EncodeToString(salt), b64.EncodeToString(tag)), nil
}

var b64 = base64.RawStdEncoding

// errBadHash never quotes the hash.
var errBadHash = errors.New("iam: the stored password hash is not an Argon2id PHC string")

// Verify checks pw against a PHC string in constant time. needsRehash reports a match whose
// stored parameters are weaker than p (less memory, fewer passes, a shorter salt or tag), so
// that the caller can store a new hash.
func (p Params) Verify(ctx context.Context, hash, pw string) (ok, needsRehash bool, err error) {
	p = p.orDefault()
	stored, salt, tag, err := parsePHC(hash)
	if err != nil {
		return false, false, err
	}
	got, err := idKey(ctx, []byte(pw), salt, stored, uint32(len(tag)))
	if err != nil {
		return false, false, err
	}
	if subtle.ConstantTimeCompare(got, tag) != 1 {
		return false, false, nil
	}
	weaker := stored.MemoryKiB < p.MemoryKiB || stored.Iterations < p.Iterations ||
		len(salt) < saltLen || len(tag) < tagLen
	return true, weaker, nil
}

func parsePHC(s string) (p Params, salt, tag []byte, err error) {
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" || f[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return p, nil, nil, errBadHash
	}
	var m, t, par uint32
	if n, e := fmt.Sscanf(f[3], "m=%d,t=%d,p=%d", &m, &t, &par); e != nil || n != 3 ||
		f[3] != fmt.Sprintf("m=%d,t=%d,p=%d", m, t, par) {
		return p, nil, nil, errBadHash
	}
	if m < 8*par || m > maxMemoryKiB || t < 1 || t > maxIterations || par < 1 || par > 255 {
		return p, nil, nil, errBadHash
	}
	if salt, err = b64.DecodeString(f[4]); err != nil || len(salt) < 8 {
		return p, nil, nil, errBadHash
	}
	if tag, err = b64.DecodeString(f[5]); err != nil || len(tag) < 16 || len(tag) > 64 {
		return p, nil, nil, errBadHash
	}
	return Params{MemoryKiB: m, Iterations: t, Parallelism: uint8(par)}, salt, tag, nil
}
