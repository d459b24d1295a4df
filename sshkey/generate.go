package sshkey

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Algorithms a key pair can be generated with by Generate.
const (
	AlgorithmED25519 = "ed25519"
	AlgorithmRSA     = "rsa"
	AlgorithmECDSA   = "ecdsa"
)

// Generate makes a key pair of the given algorithm as ssh-keygen would: the private key in
// OpenSSH format (PEM "OPENSSH PRIVATE KEY", LF line endings) with comment, and its public key
// line "<type> <base64> <comment>". bits is the RSA modulus size (2048 to 8192, default 3072)
// or the ECDSA curve (256, 384 or 521, default 256); 0 takes the default and ed25519 takes none.
func Generate(algorithm string, bits int, comment string) (privatePEM, publicLine string, err error) {
	if strings.ContainsAny(comment, "\r\n") {
		return "", "", fmt.Errorf("sshkey: comment must be a single line")
	}
	var key crypto.Signer
	switch algorithm {
	case AlgorithmED25519:
		if bits != 0 {
			return "", "", fmt.Errorf("an ed25519 key has no size to choose")
		}
		_, key, err = ed25519.GenerateKey(rand.Reader)
	case AlgorithmRSA:
		if bits == 0 {
			bits = 3072
		}
		if bits < MinRSABits || bits > 8192 {
			return "", "", fmt.Errorf("an RSA key has %d to 8192 bits, not %d", MinRSABits, bits)
		}
		key, err = rsa.GenerateKey(rand.Reader, bits)
	case AlgorithmECDSA:
		curves := map[int]elliptic.Curve{0: elliptic.P256(), 256: elliptic.P256(), 384: elliptic.P384(), 521: elliptic.P521()}
		c, ok := curves[bits]
		if !ok {
			return "", "", fmt.Errorf("an ECDSA key has 256, 384 or 521 bits, not %d", bits)
		}
		key, err = ecdsa.GenerateKey(c, rand.Reader)
	default:
		return "", "", fmt.Errorf("unknown key algorithm %q: ed25519, rsa or ecdsa", algorithm)
	}
	if err != nil {
		return "", "", fmt.Errorf("sshkey: generating a %s key: %w", algorithm, err)
	}
	comment = strings.TrimFunc(comment, isBlank)
	block, err := ssh.MarshalPrivateKey(key, comment)
	if err != nil {
		return "", "", fmt.Errorf("sshkey: encoding the private key: %w", err)
	}
	pub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		return "", "", fmt.Errorf("sshkey: encoding the public key: %w", err)
	}
	p := PublicKey{Type: pub.Type(), Blob: pub.Marshal(), Comment: comment}
	return string(pem.EncodeToMemory(block)), p.Line(), nil
}
