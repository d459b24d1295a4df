package sshkey

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"regexp"
	"testing"

	"software.sslmate.com/src/go-pkcs12"
)

func TestGenerateX509(t *testing.T) {
	g, err := GenerateX509("6a1f0c2d9e8b4a7f9c3d2e1f0a9b8c7d")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(g.CertificatePEM))
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("certificate PEM %q", g.CertificatePEM)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "6a1f0c2d9e8b4a7f9c3d2e1f0a9b8c7d" || len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("subject %v, EKU %v", cert.Subject, cert.ExtKeyUsage)
	}
	if days := cert.NotAfter.Sub(cert.NotBefore).Hours() / 24; days < 3650 || days > 3651 {
		t.Errorf("validity %.1f days", days)
	}
	if !regexp.MustCompile(`^([0-9a-f]{2}:){19}[0-9a-f]{2}$`).MatchString(g.Fingerprint) || g.Fingerprint != CertificateFingerprint(block.Bytes) {
		t.Errorf("fingerprint %q", g.Fingerprint)
	}
	raw, err := base64.StdEncoding.DecodeString(g.PKCS12)
	if err != nil {
		t.Fatal(err)
	}
	key, c2, err := pkcs12.Decode(raw, "")
	if err != nil {
		t.Fatal(err)
	}
	if !c2.Equal(cert) || !key.(*rsa.PrivateKey).PublicKey.Equal(cert.PublicKey) {
		t.Error("PKCS#12 archive does not hold the certificate and its key")
	}
	var upn bool
	for _, e := range cert.Extensions {
		upn = upn || e.Id.Equal(oidSubjectAltName)
	}
	if !upn {
		t.Error("no subjectAltName")
	}
}
