package sshkey

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"sync"
	"testing"

	"github.com/openkps/kps"
	"golang.org/x/crypto/ssh"
)

// keys are generated once per test binary: RSA generation is slow.
var keys = sync.OnceValue(func() map[string]any {
	m := map[string]any{}
	var err error
	if m["rsa2048"], err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if m["rsa1024"], err = rsa.GenerateKey(rand.Reader, 1024); err != nil {
		panic(err)
	}
	for name, c := range map[string]elliptic.Curve{"p256": elliptic.P256(), "p384": elliptic.P384(), "p521": elliptic.P521(), "p224": elliptic.P224()} {
		if m[name], err = ecdsa.GenerateKey(c, rand.Reader); err != nil {
			panic(err)
		}
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	m["ed25519"] = ed
	return m
})

func sshPub(t testing.TB, priv any) ssh.PublicKey {
	t.Helper()
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s.PublicKey()
}

func line(typ string, blob []byte, comment string) string {
	s := typ + " " + base64.StdEncoding.EncodeToString(blob)
	if comment != "" {
		s += " " + comment
	}
	return s
}

// skEd25519Blob and skECDSABlob build the wire encoding of security-key public keys by hand
// (PROTOCOL.u2f), since no software generates them.
func skEd25519Blob(t testing.TB) []byte {
	t.Helper()
	pub := keys()["ed25519"].(ed25519.PrivateKey).Public().(ed25519.PublicKey)
	return ssh.Marshal(struct {
		Name        string
		KeyBytes    []byte
		Application string
	}{TypeSKED25519, pub, "ssh:"})
}

func skECDSABlob(t testing.TB) []byte {
	t.Helper()
	k := keys()["p256"].(*ecdsa.PrivateKey)
	point, err := k.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return ssh.Marshal(struct {
		Name        string
		Curve       string
		KeyBytes    []byte
		Application string
	}{TypeSKECDSAP256, "nistp256", point, "ssh:"})
}

func TestParsePublicKeyAccepted(t *testing.T) {
	t.Parallel()
	k := keys()
	tests := []struct {
		name, typ, alg string
		blob           []byte
	}{
		{"rsa", TypeRSA, "RSA2048", sshPub(t, k["rsa2048"]).Marshal()},
		{"ed25519", TypeED25519, "ED25519", sshPub(t, k["ed25519"]).Marshal()},
		{"p256", TypeECDSAP256, "ECDSA_P256", sshPub(t, k["p256"]).Marshal()},
		{"p384", TypeECDSAP384, "ECDSA_P384", sshPub(t, k["p384"]).Marshal()},
		{"p521", TypeECDSAP521, "ECDSA_P521", sshPub(t, k["p521"]).Marshal()},
		{"sk-ed25519", TypeSKED25519, "SK_ED25519", skEd25519Blob(t)},
		{"sk-ecdsa", TypeSKECDSAP256, "SK_ECDSA_P256", skECDSABlob(t)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			want, err := ssh.ParsePublicKey(tt.blob)
			if err != nil {
				t.Fatal(err)
			}
			for _, text := range []string{
				line(tt.typ, tt.blob, "alice@host"),
				line(tt.typ, tt.blob, "alice@host") + "\n",
				"\t" + tt.typ + " \t" + base64.StdEncoding.EncodeToString(tt.blob) + "  my  key \t",
				line(tt.typ, tt.blob, ""),
			} {
				got, err := ParsePublicKey(text)
				if err != nil {
					t.Fatalf("ParsePublicKey(%q): %v", text, err)
				}
				if got.Type != tt.typ || got.Algorithm != tt.alg || string(got.Blob) != string(tt.blob) {
					t.Errorf("got type %q alg %q, want %q %q (blob equal: %v)", got.Type, got.Algorithm, tt.typ, tt.alg, string(got.Blob) == string(tt.blob))
				}
				if fp := ssh.FingerprintLegacyMD5(want); got.Fingerprint != fp {
					t.Errorf("fingerprint %q, want %q", got.Fingerprint, fp)
				}
				again, err := ParsePublicKey(got.Line())
				if err != nil || !SameKey(got, again) || again.Comment != got.Comment {
					t.Errorf("Line() %q does not round-trip: %v", got.Line(), err)
				}
			}
			got, _ := ParsePublicKey(line(tt.typ, tt.blob, "a b") + "\n")
			if got.Comment != "a b" || got.Line() != line(tt.typ, tt.blob, "a b") {
				t.Errorf("comment %q line %q", got.Comment, got.Line())
			}
			spaced, _ := ParsePublicKey("\t" + tt.typ + " \t" + base64.StdEncoding.EncodeToString(tt.blob) + "  my  key \t")
			if spaced.Comment != "my  key" {
				t.Errorf("comment %q, want inner blanks kept and outer ones trimmed", spaced.Comment)
			}
		})
	}
}

func TestFingerprintFormat(t *testing.T) {
	t.Parallel()
	p, err := ParsePublicKey(line(TypeED25519, sshPub(t, keys()["ed25519"]).Marshal(), ""))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(p.Fingerprint, ":")
	if len(parts) != 16 {
		t.Fatalf("fingerprint %q has %d groups", p.Fingerprint, len(parts))
	}
	for _, g := range parts {
		if len(g) != 2 || strings.ToLower(g) != g {
			t.Fatalf("fingerprint %q is not lowercase hex pairs", p.Fingerprint)
		}
	}
}

func TestParsePublicKeyRejected(t *testing.T) {
	t.Parallel()
	k := keys()
	rsaBlob := sshPub(t, k["rsa2048"]).Marshal()
	edBlob := sshPub(t, k["ed25519"]).Marshal()
	edLine := line(TypeED25519, edBlob, "c")
	dssBlob := ssh.Marshal(struct {
		Name       string
		P, Q, G, Y []byte
	}{"ssh-dss", []byte{1}, []byte{2}, []byte{3}, []byte{4}})
	certLike := ssh.Marshal(struct{ Name string }{"ssh-rsa-cert-v01@openssh.com"})
	p256Blob := sshPub(t, k["p256"]).Marshal()
	tests := []struct {
		name, text, msg string
	}{
		{"empty", "", "empty"},
		{"blank", " \t\n", "empty"},
		{"ssh-dss", line("ssh-dss", dssBlob, "old"), "not supported"},
		{"unknown type", "ssh-foo AAAA", "not supported"},
		{"certificate", line("ssh-rsa-cert-v01@openssh.com", certLike, ""), "not supported"},
		{"rsa 1024", line(TypeRSA, sshPub(t, k["rsa1024"]).Marshal(), ""), "at least 2048 bits, this one has 1024"},
		{"bad base64", "ssh-ed25519 AAAA!!!!", "not valid base64"},
		{"no data", "ssh-ed25519", "missing"},
		{"garbage blob", line(TypeED25519, []byte("not an ssh key"), ""), "cannot be decoded"},
		{"type mismatch", line(TypeED25519, rsaBlob, ""), "holds a ssh-rsa key, not ssh-ed25519"},
		{"curve mismatch", line(TypeECDSAP384, p256Blob, ""), "holds a ecdsa-sha2-nistp256 key"},
		{"trailing junk", line(TypeED25519, append(append([]byte{}, edBlob...), 0), ""), "cannot be decoded"},
		{"truncated", line(TypeED25519, edBlob[:len(edBlob)-1], ""), "cannot be decoded"},
		{"options", `no-pty,from="10.0.0.1" ` + edLine, "options"},
		{"command option", `command="/bin/true" ` + edLine, "options"},
		{"two lines", edLine + "\n" + edLine, "single line"},
		{"two newlines", edLine + "\n\n", "single line"},
		{"carriage return inside", TypeED25519 + "\r" + edLine[len(TypeED25519):], "single line"},
		{"too long", edLine + " " + strings.Repeat("x", MaxPublicKeyBytes), "longer than 8192"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParsePublicKey(tt.text)
			if err == nil {
				t.Fatalf("ParsePublicKey(%.60q) accepted", tt.text)
			}
			if kps.ErrorCode(err) != kps.ErrPublicKey {
				t.Errorf("code %s, want %s", kps.ErrorCode(err), kps.ErrPublicKey)
			}
			if !strings.Contains(kps.ErrorMessage(err), tt.msg) {
				t.Errorf("message %q does not contain %q", kps.ErrorMessage(err), tt.msg)
			}
		})
	}
}

func TestPublicKeyLengthLimitIsInclusive(t *testing.T) {
	t.Parallel()
	edLine := line(TypeED25519, sshPub(t, keys()["ed25519"]).Marshal(), "")
	pad := MaxPublicKeyBytes - len(edLine) - 2
	text := edLine + " " + strings.Repeat("c", pad) + "\n"
	if len(text) != MaxPublicKeyBytes {
		t.Fatalf("test bug: %d bytes", len(text))
	}
	if _, err := ParsePublicKey(text); err != nil {
		t.Fatalf("a key of exactly %d bytes was refused: %v", MaxPublicKeyBytes, err)
	}
}

func TestSameKeyIgnoresComment(t *testing.T) {
	t.Parallel()
	blob := sshPub(t, keys()["p256"]).Marshal()
	a, _ := ParsePublicKey(line(TypeECDSAP256, blob, "a"))
	b, _ := ParsePublicKey(line(TypeECDSAP256, blob, "b"))
	c, _ := ParsePublicKey(line(TypeECDSAP384, sshPub(t, keys()["p384"]).Marshal(), "a"))
	if !SameKey(a, b) {
		t.Error("same key with different comments is not SameKey")
	}
	if SameKey(a, c) || SameKey(a, nil) {
		t.Error("different keys are SameKey")
	}
}

func pemOf(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func pkcs8(t testing.TB, k any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf("PRIVATE KEY", der)
}

func sec1(t testing.TB, k *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf("EC PRIVATE KEY", der)
}

func openSSH(t testing.TB, k any) string {
	t.Helper()
	b, err := ssh.MarshalPrivateKey(k, "comment")
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(b))
}

func TestParsePrivateKeyAccepted(t *testing.T) {
	t.Parallel()
	k := keys()
	rsaKey := k["rsa2048"].(*rsa.PrivateKey)
	tests := []struct {
		name, text, typ, alg string
		priv                 any
	}{
		{"pkcs1 rsa", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), TypeRSA, "RSA2048", rsaKey},
		{"pkcs8 rsa", pkcs8(t, rsaKey), TypeRSA, "RSA2048", rsaKey},
		{"openssh rsa", openSSH(t, rsaKey), TypeRSA, "RSA2048", rsaKey},
		{"pkcs8 ed25519", pkcs8(t, k["ed25519"]), TypeED25519, "ED25519", k["ed25519"]},
		{"openssh ed25519", openSSH(t, k["ed25519"]), TypeED25519, "ED25519", k["ed25519"]},
		{"sec1 p256", sec1(t, k["p256"].(*ecdsa.PrivateKey)), TypeECDSAP256, "ECDSA_P256", k["p256"]},
		{"pkcs8 p384", pkcs8(t, k["p384"]), TypeECDSAP384, "ECDSA_P384", k["p384"]},
		{"openssh p521", openSSH(t, k["p521"]), TypeECDSAP521, "ECDSA_P521", k["p521"]},
		{"crlf line endings", strings.ReplaceAll(sec1(t, k["p256"].(*ecdsa.PrivateKey)), "\n", "\r\n"), TypeECDSAP256, "ECDSA_P256", k["p256"]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			signer, pub, err := ParsePrivateKey(tt.text)
			if err != nil {
				t.Fatal(err)
			}
			if pub.Type != tt.typ || pub.Algorithm != tt.alg {
				t.Errorf("got %s %s, want %s %s", pub.Type, pub.Algorithm, tt.typ, tt.alg)
			}
			want, _ := ParsePublicKey(string(ssh.MarshalAuthorizedKey(sshPub(t, tt.priv))))
			if !SameKey(pub, want) || !Matches(signer, want) {
				t.Error("the parsed key is not the generated one")
			}
			other, _ := ParsePublicKey(line(TypeED25519, skEd25519Blob(t), ""))
			if Matches(signer, other) {
				t.Error("Matches accepted a different key")
			}
			sig, err := signer.Sign(rand.Reader, []byte("data"))
			if err != nil || signer.PublicKey().Verify([]byte("data"), sig) != nil {
				t.Errorf("the signer cannot sign: %v", err)
			}
		})
	}
}

func TestParsePrivateKeyRejected(t *testing.T) {
	t.Parallel()
	k := keys()
	rsaKey := k["rsa2048"].(*rsa.PrivateKey)
	encOpenSSH, err := ssh.MarshalPrivateKeyWithPassphrase(k["ed25519"], "", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1019 legacy encrypted PEM is exactly what users still paste.
	legacy, err := x509.EncryptPEMBlock(rand.Reader, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey), []byte("secret"), x509.PEMCipherAES256) //nolint:staticcheck
	if err != nil {
		t.Fatal(err)
	}
	x, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256 := sec1(t, k["p256"].(*ecdsa.PrivateKey))
	tests := []struct {
		name, text, msg string
	}{
		{"empty", "", "not a PEM"},
		{"public key", line(TypeED25519, sshPub(t, k["ed25519"]).Marshal(), ""), "not a PEM"},
		{"encrypted openssh", string(pem.EncodeToMemory(encOpenSSH)), "protected by a passphrase"},
		{"encrypted legacy pem", string(pem.EncodeToMemory(legacy)), "protected by a passphrase"},
		{"encrypted pkcs8", pemOf("ENCRYPTED PRIVATE KEY", []byte{0x30, 0}), "protected by a passphrase"},
		{"dsa", pemOf("DSA PRIVATE KEY", []byte{0x30, 0}), "not supported"},
		{"certificate", pemOf("CERTIFICATE", []byte{0x30, 0}), "not supported"},
		{"rsa 1024", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k["rsa1024"].(*rsa.PrivateKey))), "at least 2048 bits"},
		{"p224", sec1(t, k["p224"].(*ecdsa.PrivateKey)), "not supported"},
		{"x25519", pkcs8(t, x), "not supported"},
		{"garbage der", pemOf("RSA PRIVATE KEY", []byte("garbage")), "cannot be decoded"},
		{"garbage openssh", pemOf("OPENSSH PRIVATE KEY", []byte("openssh-key-v1\x00garbage")), "cannot be decoded"},
		{"two blocks", p256 + p256, "exactly one PEM block"},
		{"trailing text", p256 + "more", "exactly one PEM block"},
		{"too long", p256 + strings.Repeat("\n", MaxPrivateKeyBytes), "longer than 16384"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := ParsePrivateKey(tt.text)
			if err == nil {
				t.Fatal("accepted")
			}
			if kps.ErrorCode(err) != kps.ErrPrivateKey {
				t.Errorf("code %s, want %s", kps.ErrorCode(err), kps.ErrPrivateKey)
			}
			if !strings.Contains(kps.ErrorMessage(err), tt.msg) {
				t.Errorf("message %q does not contain %q", kps.ErrorMessage(err), tt.msg)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY-----") || (len(tt.text) > 80 && strings.Contains(err.Error(), tt.text[40:80])) {
				t.Errorf("error %q quotes the key", err)
			}
		})
	}
}

func TestGenerateRSA(t *testing.T) {
	t.Parallel()
	priv, pubLine, err := GenerateRSA("my-key")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(priv, "-----BEGIN RSA PRIVATE KEY-----\n") || !strings.HasSuffix(priv, "-----END RSA PRIVATE KEY-----\n") || strings.Contains(priv, "\r") {
		t.Errorf("private key is not PKCS#1 PEM with LF endings and a trailing newline:\n%s", priv)
	}
	if !strings.HasPrefix(pubLine, "ssh-rsa ") || !strings.HasSuffix(pubLine, " my-key") || strings.Contains(pubLine, "\n") {
		t.Errorf("public line %q", pubLine)
	}
	signer, fromPriv, err := ParsePrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePublicKey(pubLine)
	if err != nil {
		t.Fatal(err)
	}
	if pub.Algorithm != "RSA2048" || pub.Comment != "my-key" || !Matches(signer, pub) || fromPriv.Fingerprint != pub.Fingerprint {
		t.Errorf("generated pair does not match: %+v", pub)
	}
	if _, _, err := GenerateRSA("a\nb"); err == nil {
		t.Error("a multi-line comment was accepted")
	}
}

// TestPublicKeyCommentControlCharacters: a comment holding a control character (C0 but tab,
// DEL, C1) is refused with KPS.6009, whatever else the line holds; tabs and printable
// non-ASCII text stay acceptable. Such a comment would be written into authorized_keys as it
// is, and the editor of package sshhost refuses it at bind.
func TestPublicKeyCommentControlCharacters(t *testing.T) {
	t.Parallel()
	blob := sshPub(t, keys()["ed25519"]).Marshal()
	refused := []string{
		"a\x00b", "\x01", "x\x07y", "back\bspace", "esc\x1b[2Jclear", "x\x0bvertical", "x\x0cfeed",
		"del\x7f", "nel\u0085", "csi\u009b31m", "a\x1fb", "trailing\x1b",
	}
	for _, c := range refused {
		text := line(TypeED25519, blob, c)
		_, err := ParsePublicKey(text)
		if kps.ErrorCode(err) != kps.ErrPublicKey || !strings.Contains(kps.ErrorMessage(err), "control character") {
			t.Errorf("comment %q: %v, want KPS.6009 naming the control character", c, err)
		}
		if _, err := ParsePublicKey(text + "\n"); kps.ErrorCode(err) != kps.ErrPublicKey {
			t.Errorf("comment %q with a trailing newline: %v", c, err)
		}
	}
	for _, c := range []string{"alice@host", "tab\tinside", "ünïcødé ключ 🔑", "a  b", "-- = ; \" ' `"} {
		got, err := ParsePublicKey(line(TypeED25519, blob, c))
		if err != nil || got.Comment != c {
			t.Errorf("comment %q: %v (comment %q)", c, err, got.Comment)
		}
	}
	// Line breaks keep their own, older message.
	if _, err := ParsePublicKey(line(TypeED25519, blob, "a\rb")); !strings.Contains(kps.ErrorMessage(err), "single line") {
		t.Errorf("carriage return: %v", err)
	}
}

func TestGenerate(t *testing.T) {
	for _, c := range []struct {
		alg, typ string
		bits     int
	}{{AlgorithmED25519, TypeED25519, 0}, {AlgorithmRSA, TypeRSA, 0}, {AlgorithmRSA, TypeRSA, 2048}, {AlgorithmECDSA, TypeECDSAP256, 0}, {AlgorithmECDSA, TypeECDSAP384, 384}, {AlgorithmECDSA, TypeECDSAP521, 521}} {
		priv, pub, err := Generate(c.alg, c.bits, "web")
		if err != nil {
			t.Fatalf("%s %d: %v", c.alg, c.bits, err)
		}
		signer, parsed, err := ParsePrivateKey(priv)
		if err != nil {
			t.Fatalf("%s: the generated private key is refused: %v", c.alg, err)
		}
		line, err := ParsePublicKey(pub)
		if err != nil || line.Type != c.typ || !SameKey(line, parsed) || !Matches(signer, line) || line.Comment != "web" {
			t.Fatalf("%s: public key %q: %v", c.alg, pub, err)
		}
		if !strings.HasPrefix(priv, "-----BEGIN OPENSSH PRIVATE KEY-----\n") {
			t.Fatalf("%s: private key format %.40q", c.alg, priv)
		}
	}
	if _, _, err := Generate(AlgorithmRSA, 1024, ""); err == nil {
		t.Fatal("a 1024-bit RSA key was generated")
	}
	if _, _, err := Generate(AlgorithmECDSA, 255, ""); err == nil {
		t.Fatal("an ECDSA key on no curve was generated")
	}
	if _, _, err := Generate("dsa", 0, ""); err == nil {
		t.Fatal("a DSA key was generated")
	}
}
