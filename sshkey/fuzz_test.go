package sshkey

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"strings"
	"testing"

	"github.com/openkps/kps"
	"golang.org/x/crypto/ssh"
)

// The committed seeds in testdata/fuzz hold malformed and structural inputs only (no real
// key); real keys are added here, generated at run time.

func FuzzParsePublicKey(f *testing.F) {
	k := keys()
	for _, name := range []string{"rsa2048", "ed25519", "p256", "p384", "p521"} {
		f.Add(string(ssh.MarshalAuthorizedKey(sshPub(f, k[name]))))
	}
	f.Add(line(TypeSKED25519, skEd25519Blob(f), "yubikey"))
	f.Add(line(TypeSKECDSAP256, skECDSABlob(f), ""))
	f.Add(line(TypeED25519, sshPub(f, k["ed25519"]).Marshal(), "esc\x1b[2J\ttab\u009b"))
	f.Fuzz(func(t *testing.T, text string) {
		pub, err := ParsePublicKey(text)
		if err != nil {
			if kps.ErrorCode(err) != kps.ErrPublicKey {
				t.Fatalf("rejection with code %s: %v", kps.ErrorCode(err), err)
			}
			return
		}
		if i := strings.IndexFunc(pub.Comment, isCommentControl); i >= 0 {
			t.Fatalf("comment %q with a control character at %d accepted", pub.Comment, i)
		}
		again, err := ParsePublicKey(pub.Line())
		if err != nil {
			t.Fatalf("Line() %q of an accepted key is refused: %v", pub.Line(), err)
		}
		if !SameKey(pub, again) || again.Comment != pub.Comment || again.Fingerprint != pub.Fingerprint || again.Algorithm != pub.Algorithm {
			t.Fatalf("Line() does not round-trip: %+v vs %+v", pub, again)
		}
	})
}

func FuzzParsePrivateKey(f *testing.F) {
	k := keys()
	f.Add(pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k["rsa2048"].(*rsa.PrivateKey))))
	f.Add(pkcs8(f, k["ed25519"]))
	f.Add(sec1(f, k["p256"].(*ecdsa.PrivateKey)))
	f.Add(openSSH(f, k["p384"]))
	f.Fuzz(func(t *testing.T, text string) {
		signer, pub, err := ParsePrivateKey(text)
		if err != nil {
			if kps.ErrorCode(err) != kps.ErrPrivateKey {
				t.Fatalf("rejection with code %s: %v", kps.ErrorCode(err), err)
			}
			return
		}
		if !Matches(signer, pub) {
			t.Fatal("the signer does not match its own public key")
		}
		again, err := ParsePublicKey(pub.Line())
		if err != nil || !SameKey(pub, again) {
			t.Fatalf("the public key %q does not round-trip: %v", pub.Line(), err)
		}
	})
}
