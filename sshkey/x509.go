package sshkey

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

// oidUPN is the Microsoft User Principal Name otherName of the subject alternative name, which
// Nova writes into its generated x509 key pairs (nova-keypairs.md §9.2).
var (
	oidUPN            = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
)

// GeneratedX509 is a generated x509 key pair: a self-signed certificate and its key.
type GeneratedX509 struct {
	CertificatePEM string
	// PKCS12 is the base64 (standard alphabet, no line breaks) of a PKCS#12 archive holding the
	// private key and the certificate, protected by an empty password.
	PKCS12      string
	Fingerprint string // SHA-1 of the certificate's DER, lowercase hex pairs joined by ':'
}

// GenerateX509 generates an RSA-2048 key and a self-signed client certificate for userID
// (nova-keypairs.md §9.2): subject CN=<userID>, 3650 days, extended key usage clientAuth, and
// a UPN otherName <userID>@localhost.
func GenerateX509(userID string) (*GeneratedX509, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("sshkey: generate RSA key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("sshkey: certificate serial: %w", err)
	}
	san, err := upnSubjectAltName(userID + "@localhost")
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	tmpl := &x509.Certificate{
		SerialNumber:    serial,
		Subject:         pkix.Name{CommonName: userID},
		NotBefore:       now.Add(-time.Minute),
		NotAfter:        now.Add(3650 * 24 * time.Hour),
		KeyUsage:        x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		ExtraExtensions: []pkix.Extension{san},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return nil, fmt.Errorf("sshkey: create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("sshkey: parse certificate: %w", err)
	}
	p12, err := pkcs12.Modern.Encode(k, cert, nil, "")
	if err != nil {
		return nil, fmt.Errorf("sshkey: encode PKCS#12: %w", err)
	}
	return &GeneratedX509{
		CertificatePEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		PKCS12:         base64.StdEncoding.EncodeToString(p12),
		Fingerprint:    CertificateFingerprint(der),
	}, nil
}

// CertificateFingerprint is the SHA-1 of a certificate's DER encoding as 20 lowercase hex pairs
// joined by ':' (nova-keypairs.md §8).
func CertificateFingerprint(der []byte) string {
	sum := sha1.Sum(der)
	pairs := make([]string, len(sum))
	for i, b := range sum {
		pairs[i] = fmt.Sprintf("%02x", b)
	}
	return strings.Join(pairs, ":")
}

// upnSubjectAltName encodes a subjectAltName extension with one otherName of type UPN, which
// crypto/x509 cannot write by itself.
func upnSubjectAltName(upn string) (pkix.Extension, error) {
	value, err := asn1.MarshalWithParams(upn, "utf8")
	if err != nil {
		return pkix.Extension{}, err
	}
	otherName := struct {
		TypeID asn1.ObjectIdentifier
		Value  asn1.RawValue `asn1:"explicit,tag:0"`
	}{oidUPN, asn1.RawValue{FullBytes: value}}
	on, err := asn1.MarshalWithParams(otherName, "tag:0")
	if err != nil {
		return pkix.Extension{}, err
	}
	seq, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: on})
	if err != nil {
		return pkix.Extension{}, err
	}
	return pkix.Extension{Id: oidSubjectAltName, Value: seq}, nil
}
