package sshkey

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// lineSeedKey returns the public key line of a deterministic ed25519 key.
func lineSeedKey(t testing.TB, seed byte, comment string) string {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	if comment != "" {
		line += " " + comment
	}
	return line
}

func TestParseLine(t *testing.T) {
	k := lineSeedKey(t, 1, "")
	typ, b64 := "ssh-ed25519", strings.Fields(k)[1]
	tests := []struct {
		line    string
		key     bool
		comment string
	}{
		{k, true, ""},
		{k + " alice@example", true, " alice@example"},
		{"  \t" + k + "  two words ", true, "  two words "},
		{`command="echo hi",no-pty ` + k + " c", true, " c"},
		{`command="echo \"quoted\" ssh-rsa x",from="10.0.0.0/8" ` + k, true, ""},
		{`environment="A=b c" ` + k, true, ""},
		{`restrict,command="/bin/true" ` + k + "\r", true, "\r"},
		{typ + " " + strings.TrimRight(b64, "="), true, ""}, // unpadded base64, as b64_pton accepts
		{"", false, ""},
		{"   ", false, ""},
		{"# " + k, false, ""},
		{"  #" + k, false, ""},
		{typ, false, ""},
		{typ + " !!!notbase64", false, ""},
		{"ssh-rsa " + b64, false, ""},             // type and blob disagree
		{`command="unterminated ` + k, false, ""}, // the quote swallows the key
		{"no-pty ssh-ed25519", false, ""},         // options, type, no blob
		{"garbage line with words", false, ""},    // unparseable
		{typ + " " + base64.StdEncoding.EncodeToString([]byte{0, 0}), false, ""}, // short blob
	}
	for _, tt := range tests {
		id, rest, ok := ParseLine([]byte(tt.line))
		if ok != tt.key {
			t.Errorf("ParseLine(%q) key = %v, want %v", tt.line, ok, tt.key)
			continue
		}
		if !ok {
			continue
		}
		want, _ := base64.StdEncoding.DecodeString(b64)
		if id.Type != typ || id.Blob != string(want) {
			t.Errorf("ParseLine(%q) identity = %q", tt.line, id.Type)
		}
		if string(rest) != tt.comment {
			t.Errorf("ParseLine(%q) rest = %q, want %q", tt.line, rest, tt.comment)
		}
	}
}

func TestParseLineRSAAndCertificateTypes(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := ssh.NewPublicKey(&rk.PublicKey)
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	if id, _, ok := ParseLine([]byte(line)); !ok || id.Type != "ssh-rsa" {
		t.Errorf("RSA key not recognised: %v %q", ok, id.Type)
	}

	_, capriv, _ := ed25519.GenerateKey(rand.Reader)
	ca, _ := ssh.NewSignerFromKey(capriv)
	edpub, _, _ := ed25519.GenerateKey(rand.Reader)
	epub, _ := ssh.NewPublicKey(edpub)
	cert := &ssh.Certificate{Key: epub, CertType: ssh.UserCert, ValidPrincipals: []string{"u"}, ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	cline := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert)))
	if id, _, ok := ParseLine([]byte(cline)); !ok || id.Type != ssh.CertAlgoED25519v01 {
		t.Errorf("certificate not recognised: %v %q", ok, id.Type)
	}
}

// TestSameKeyLine: the identity of a line ignores options and comments, and a line that holds
// no key is the same as nothing; the service's own parse (ParsePublicKey) agrees with it.
func TestSameKeyLine(t *testing.T) {
	a, b := lineSeedKey(t, 1, "alice@example"), lineSeedKey(t, 2, "")
	aBare := lineSeedKey(t, 1, "")
	for _, c := range []struct {
		x, y string
		same bool
	}{
		{a, aBare, true},
		{a, `no-pty,command="x" ` + aBare + " other comment\n", true},
		{a + "\r\n", aBare, true},
		{a, b, false},
		{a, "# " + aBare, false},
		{"garbage", "garbage", false},
		{"", "", false},
	} {
		if got := SameKeyLine(c.x, c.y); got != c.same {
			t.Errorf("SameKeyLine(%q, %q) = %v, want %v", c.x, c.y, got, c.same)
		}
	}
	pk, err := ParsePublicKey(a)
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := LineIdentity(`from="10.0.0.1" ` + a); !ok || id != pk.Identity() {
		t.Errorf("LineIdentity = %v, %v; want the parsed key's identity", id, ok)
	}
}
