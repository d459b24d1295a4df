// Package sshkey parses, checks and generates the SSH keys of kps-v3-api.md §1.6: one
// authorized_keys-style public key line, one unencrypted PEM private key, and the RSA key
// pair the service generates; and the x509 certificates of Nova's key pairs. It imports the
// domain package only.
package sshkey

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/openkps/kps"
	"golang.org/x/crypto/ssh"
)

// Size limits of §1.6.
const (
	MaxPublicKeyBytes  = 8192
	MaxPrivateKeyBytes = 16384
	// MinRSABits is the smallest accepted RSA modulus.
	MinRSABits = 2048
)

// Key types accepted by §1.6; the sk-* types are accepted only as public keys.
const (
	TypeRSA         = ssh.KeyAlgoRSA
	TypeED25519     = ssh.KeyAlgoED25519
	TypeECDSAP256   = ssh.KeyAlgoECDSA256
	TypeECDSAP384   = ssh.KeyAlgoECDSA384
	TypeECDSAP521   = ssh.KeyAlgoECDSA521
	TypeSKED25519   = ssh.KeyAlgoSKED25519
	TypeSKECDSAP256 = ssh.KeyAlgoSKECDSA256
)

// algorithms maps each accepted type to its algorithm name of §1.6 (RSA is "RSA<bits>").
var algorithms = map[string]string{
	TypeRSA:         "RSA",
	TypeED25519:     "ED25519",
	TypeECDSAP256:   "ECDSA_P256",
	TypeECDSAP384:   "ECDSA_P384",
	TypeECDSAP521:   "ECDSA_P521",
	TypeSKED25519:   "SK_ED25519",
	TypeSKECDSAP256: "SK_ECDSA_P256",
}

// PublicKey is a parsed, accepted SSH public key.
type PublicKey struct {
	Type string
	// Blob is the canonical wire encoding of the key; (Type, Blob) is the key's identity.
	Blob    []byte
	Comment string
	// Fingerprint is the MD5 of Blob as 16 lowercase hex pairs joined by ':'.
	Fingerprint string
	// Algorithm is RSA<bits>, ED25519, ECDSA_P256, ECDSA_P384, ECDSA_P521, SK_ED25519 or
	// SK_ECDSA_P256.
	Algorithm string
}

// Line returns the key as an authorized_keys line: "<type> <base64> <comment>" (without the
// comment when there is none).
func (k *PublicKey) Line() string {
	s := k.Type + " " + base64.StdEncoding.EncodeToString(k.Blob)
	if k.Comment != "" {
		s += " " + k.Comment
	}
	return s
}

// SameKey reports whether a and b are the same key, whatever their comments.
func SameKey(a, b *PublicKey) bool {
	return a != nil && b != nil && a.Type == b.Type && bytes.Equal(a.Blob, b.Blob)
}

// Matches reports whether priv is the private half of pub.
func Matches(priv ssh.Signer, pub *PublicKey) bool {
	if priv == nil || pub == nil {
		return false
	}
	k := priv.PublicKey()
	return k.Type() == pub.Type && bytes.Equal(k.Marshal(), pub.Blob)
}

func publicKeyError(format string, args ...any) error {
	return kps.Errorf(kps.ErrPublicKey, "Invalid public key: "+format, args...)
}

// ParsePublicKey parses one authorized_keys-style line "<type> <base64> [comment]" under the
// rules of §1.6. Every rejection is a KPS.6009 error whose message says what is wrong.
func ParsePublicKey(text string) (*PublicKey, error) {
	if len(text) > MaxPublicKeyBytes {
		return nil, publicKeyError("it is longer than %d bytes.", MaxPublicKeyBytes)
	}
	line := strings.TrimSuffix(text, "\n")
	if strings.ContainsAny(line, "\r\n") {
		return nil, publicKeyError("it must be a single line.")
	}
	fields := strings.FieldsFunc(line, isBlank)
	if len(fields) == 0 {
		return nil, publicKeyError("it is empty.")
	}
	typ := fields[0]
	if _, ok := algorithms[typ]; !ok {
		for _, f := range fields[1:] {
			if _, ok := algorithms[f]; ok {
				return nil, publicKeyError("options before the key type are not allowed.")
			}
		}
		return nil, publicKeyError("key type '%s' is not supported.", kps.Clip(typ))
	}
	if len(fields) < 2 {
		return nil, publicKeyError("the base64 key data is missing.")
	}
	blob, err := base64.StdEncoding.DecodeString(fields[1])
	if err != nil {
		return nil, publicKeyError("the key data is not valid base64.")
	}
	// The comment is everything after the key data, inner blanks kept.
	rest := strings.TrimLeftFunc(line, isBlank)
	rest = strings.TrimLeftFunc(rest[len(typ):], isBlank)
	comment := strings.TrimFunc(rest[len(fields[1]):], isBlank)
	if strings.IndexFunc(comment, isCommentControl) >= 0 {
		return nil, ErrCommentControl
	}
	return checkPublicKey(typ, blob, comment)
}

// ErrCommentControl is the KPS.6009 refusal of a public key whose comment holds a control
// character. The comment is written into authorized_keys as it is, where a control character
// could end the line early or rewrite what a terminal shows of the file; the editor of
// package sshhost would refuse the key at bind, so it is refused at import instead.
var ErrCommentControl = publicKeyError("its comment holds a control character.")

// isCommentControl reports the characters a comment may not hold: the C0 controls except tab
// (a field separator sshd accepts inside the comment), DEL and the C1 controls (U+0080–U+009F;
// U+009B is CSI to a terminal that reads them).
func isCommentControl(r rune) bool { return r != '\t' && unicode.IsControl(r) }

// checkPublicKey decodes blob, checks it against typ and the accepted types, and returns the
// key with its canonical encoding.
func checkPublicKey(typ string, blob []byte, comment string) (*PublicKey, error) {
	pk, err := ssh.ParsePublicKey(blob)
	if err != nil {
		var head struct {
			Type string
			Rest []byte `ssh:"rest"`
		}
		if ssh.Unmarshal(blob, &head) == nil && head.Type != typ {
			return nil, publicKeyError("the key data holds a %s key, not %s.", kps.Clip(head.Type), typ)
		}
		return nil, publicKeyError("the %s key data cannot be decoded.", typ)
	}
	if pk.Type() != typ {
		return nil, publicKeyError("the key data holds a %s key, not %s.", kps.Clip(pk.Type()), typ)
	}
	alg := algorithms[typ]
	if typ == TypeRSA {
		rk, ok := pk.(ssh.CryptoPublicKey).CryptoPublicKey().(*rsa.PublicKey)
		if !ok || rk.N.Sign() <= 0 {
			return nil, publicKeyError("the ssh-rsa key data cannot be decoded.")
		}
		bits := rk.N.BitLen()
		if bits < MinRSABits {
			return nil, publicKeyError("an RSA key must have at least %d bits, this one has %d.", MinRSABits, bits)
		}
		alg = fmt.Sprintf("RSA%d", bits)
	}
	// The canonical encoding makes (Type, Blob) a sound identity even for a blob that was
	// submitted with, say, superfluous leading zeros in an integer.
	canon := pk.Marshal()
	return &PublicKey{
		Type:        typ,
		Blob:        canon,
		Comment:     comment,
		Fingerprint: fingerprint(canon),
		Algorithm:   alg,
	}, nil
}

func fingerprint(blob []byte) string {
	sum := md5.Sum(blob)
	h := hex.EncodeToString(sum[:])
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

func privateKeyError(format string, args ...any) error {
	return kps.Errorf(kps.ErrPrivateKey, "Invalid private key: "+format, args...)
}

// privateTypes are the PEM block types of §1.6.
var privateTypes = map[string]bool{
	"RSA PRIVATE KEY":     true,
	"PRIVATE KEY":         true,
	"EC PRIVATE KEY":      true,
	"OPENSSH PRIVATE KEY": true,
}

// ParsePrivateKey parses one unencrypted PEM private key (PKCS#1, PKCS#8, SEC1 or OpenSSH)
// under the rules of §1.6 and returns a signer and its public key. Every rejection is a
// KPS.6010 error; no message ever quotes the key.
func ParsePrivateKey(text string) (ssh.Signer, *PublicKey, error) {
	if len(text) > MaxPrivateKeyBytes {
		return nil, nil, privateKeyError("it is longer than %d bytes.", MaxPrivateKeyBytes)
	}
	block, rest := pem.Decode([]byte(text))
	if block == nil {
		return nil, nil, privateKeyError("it is not a PEM-encoded key.")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, nil, privateKeyError("it must hold exactly one PEM block.")
	}
	if block.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") {
		return nil, nil, errPassphrase
	}
	if !privateTypes[block.Type] {
		return nil, nil, privateKeyError("PEM type '%s' is not supported.", kps.Clip(block.Type))
	}
	raw, err := ssh.ParseRawPrivateKey(pem.EncodeToMemory(block))
	if err != nil {
		if _, ok := errors.AsType[*ssh.PassphraseMissingError](err); ok {
			return nil, nil, errPassphrase
		}
		return nil, nil, privateKeyError("the %s cannot be decoded or holds an unsupported key type.", strings.ToLower(block.Type))
	}
	switch k := raw.(type) {
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < MinRSABits {
			return nil, nil, privateKeyError("an RSA key must have at least %d bits, this one has %d.", MinRSABits, bits)
		}
	case *ecdsa.PrivateKey, ed25519.PrivateKey, *ed25519.PrivateKey:
	default:
		return nil, nil, privateKeyError("the key type is not supported.")
	}
	signer, err := ssh.NewSignerFromKey(raw)
	if err != nil {
		return nil, nil, privateKeyError("the key type is not supported.")
	}
	pk := signer.PublicKey()
	if _, ok := algorithms[pk.Type()]; !ok || strings.HasPrefix(pk.Type(), "sk-") {
		return nil, nil, privateKeyError("key type '%s' is not supported.", pk.Type())
	}
	pub, err := checkPublicKey(pk.Type(), pk.Marshal(), "")
	if err != nil {
		return nil, nil, privateKeyError("its public key is not acceptable.")
	}
	return signer, pub, nil
}

var errPassphrase = kps.Errorf(kps.ErrPrivateKey, "Invalid private key: it is protected by a passphrase; only unencrypted keys are accepted.")

// GenerateRSA generates the service's key pair of §1.6: a 2048-bit RSA private key as PEM
// PKCS#1 (LF line endings, trailing newline) and its public key line "ssh-rsa <base64>
// <comment>".
func GenerateRSA(comment string) (privatePEM, publicLine string, err error) {
	if strings.ContainsAny(comment, "\r\n") {
		return "", "", errors.New("sshkey: comment must be a single line")
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", "", fmt.Errorf("sshkey: generate RSA key: %w", err)
	}
	pub, err := ssh.NewPublicKey(&k.PublicKey)
	if err != nil {
		return "", "", fmt.Errorf("sshkey: encode public key: %w", err)
	}
	p := PublicKey{Type: pub.Type(), Blob: pub.Marshal(), Comment: strings.TrimFunc(comment, isBlank)}
	privatePEM = string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}))
	return privatePEM, p.Line(), nil
}

func isBlank(r rune) bool { return r == ' ' || r == '\t' }
