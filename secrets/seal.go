package secrets

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrCorrupt is returned for a ciphertext that was altered, truncated, bound to other
// associated data, or is not a sealed secret at all. It carries no detail on purpose.
var ErrCorrupt = errors.New("secrets: the sealed secret is corrupt or does not belong here")

// Sealed secret format, version 1:
//
//	magic 'S' (1) ‖ format version 1 (1) ‖ wrapped data key length (2, big endian) ‖
//	wrapped data key ‖ nonce (12) ‖ AES-256-GCM(plaintext) with tag (16)
//
// The payload's associated data is the 2-byte prefix followed by the caller's aad. The
// wrapped key is deliberately outside the payload's associated data, so Rewrap can replace it
// without touching the payload; it is authenticated by its own wrapping.
const (
	magic         = 'S'
	formatV1      = 1
	headerLen     = 4
	dataKeyLen    = 32
	gcmNonceLen   = 12
	gcmTagLen     = 16
	maxWrappedLen = 1 << 12
)

// Sealer seals secrets under a KeyWrapper; it implements kps.Sealer. A KeyWrapper behind a
// network (a KMS) gets a background context, because kps.Sealer has none.
type Sealer struct {
	wrapper KeyWrapper
}

// NewSealer returns a Sealer that wraps data keys with w (usually a *KeyRing).
func NewSealer(w KeyWrapper) *Sealer { return &Sealer{wrapper: w} }

// Seal encrypts plaintext under a fresh data key and binds it to aad.
func (s *Sealer) Seal(plaintext, aad []byte) ([]byte, error) {
	dataKey := make([]byte, dataKeyLen)
	rand.Read(dataKey)
	defer clear(dataKey)
	wrapped, err := s.wrapper.WrapKey(context.Background(), dataKey)
	if err != nil {
		return nil, fmt.Errorf("secrets: wrap data key: %w", err)
	}
	if len(wrapped) > maxWrappedLen {
		return nil, errors.New("secrets: wrapped data key too long")
	}
	aead, err := newGCM(dataKey)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, headerLen+len(wrapped)+gcmNonceLen+len(plaintext)+gcmTagLen)
	out = append(out, magic, formatV1)
	out = binary.BigEndian.AppendUint16(out, uint16(len(wrapped)))
	out = append(out, wrapped...)
	nonceAt := len(out)
	out = out[:nonceAt+gcmNonceLen]
	rand.Read(out[nonceAt:])
	return aead.Seal(out, out[nonceAt:], plaintext, payloadAAD(aad)), nil
}

// Open decrypts a sealed secret; any alteration, truncation, other aad or unknown master key
// version is an error.
func (s *Sealer) Open(sealed, aad []byte) ([]byte, error) {
	wrapped, nonce, ct, err := split(sealed)
	if err != nil {
		return nil, err
	}
	dataKey, err := s.wrapper.UnwrapKey(context.Background(), wrapped)
	if err != nil {
		return nil, err
	}
	defer clear(dataKey)
	if len(dataKey) != dataKeyLen {
		return nil, ErrCorrupt
	}
	aead, err := newGCM(dataKey)
	if err != nil {
		return nil, err
	}
	pt, err := aead.Open(nil, nonce, ct, payloadAAD(aad))
	if err != nil {
		return nil, ErrCorrupt
	}
	return pt, nil
}

// Rewrap re-wraps the data key of a sealed secret under the wrapper's newest master key,
// leaving the payload as it is; it is how rows move to a new master key version.
func (s *Sealer) Rewrap(sealed []byte) ([]byte, error) {
	wrapped, nonce, ct, err := split(sealed)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	dataKey, err := s.wrapper.UnwrapKey(ctx, wrapped)
	if err != nil {
		return nil, err
	}
	defer clear(dataKey)
	rewrapped, err := s.wrapper.WrapKey(ctx, dataKey)
	if err != nil {
		return nil, fmt.Errorf("secrets: wrap data key: %w", err)
	}
	if len(rewrapped) > maxWrappedLen {
		return nil, errors.New("secrets: wrapped data key too long")
	}
	out := make([]byte, 0, headerLen+len(rewrapped)+len(nonce)+len(ct))
	out = append(out, magic, formatV1)
	out = binary.BigEndian.AppendUint16(out, uint16(len(rewrapped)))
	out = append(out, rewrapped...)
	out = append(out, nonce...)
	return append(out, ct...), nil
}

func split(sealed []byte) (wrapped, nonce, ct []byte, err error) {
	if len(sealed) < headerLen || sealed[0] != magic {
		return nil, nil, nil, ErrCorrupt
	}
	if sealed[1] != formatV1 {
		return nil, nil, nil, fmt.Errorf("secrets: sealed secret format %d is not supported", sealed[1])
	}
	n := int(binary.BigEndian.Uint16(sealed[2:]))
	rest := sealed[headerLen:]
	if len(rest) < n+gcmNonceLen+gcmTagLen {
		return nil, nil, nil, ErrCorrupt
	}
	return rest[:n], rest[n : n+gcmNonceLen], rest[n+gcmNonceLen:], nil
}

func payloadAAD(aad []byte) []byte {
	return append([]byte{magic, formatV1}, aad...)
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Stale reports whether sealed should be re-wrapped: its data key is not wrapped under the
// wrapper's current master key. A value that does not parse is not stale (Open reports it).
func (s *Sealer) Stale(sealed []byte) bool {
	wrapped, _, _, err := split(sealed)
	return err == nil && !s.wrapper.Current(wrapped)
}
