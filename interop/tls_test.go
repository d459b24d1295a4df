package interop_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/auth/basic"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/config"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/region"
	kpssdk "github.com/huaweicloud/huaweicloud-sdk-go-v3/services/kps/v3"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/services/kps/v3/model"

	"github.com/openkps/kps/daemon"
	"github.com/openkps/kps/internal/openapitest"
)

// testCA issues certificates for 127.0.0.1 in a test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kps test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a certificate for 127.0.0.1 with the serial number and its key to dir.
func (ca *testCA) issue(t *testing.T, dir string, serial int64) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestSDKOverTLS: with --tls-cert/--tls-key, the Huawei SDK, trusting the CA, lists over HTTPS
// the key pair created over HTTPS, signed with an access key. (The rest of serving HTTPS:
// TestTLSServing in e2e.)
func TestSDKOverTLS(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	certFile, keyFile := ca.issue(t, t.TempDir(), 100)
	s := start(t, func(c *daemon.Config) { c.TLSCert, c.TLSKey = certFile, keyFile })
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.pem)
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	s.client = &http.Client{Transport: openapitest.NewTransport(transport), Timeout: 30 * time.Second}
	s.loginAs("admin", adminPassword)
	s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "over-tls"}})

	// The Huawei SDK over HTTPS, with an access key.
	base, project := s.base, s.project
	ak, sk := s.accessKey("admin")
	cred, err := basic.NewCredentialsBuilder().WithAk(ak).WithSk(sk).WithProjectId(project).WithIamEndpointOverride(base).SafeBuild()
	if err != nil {
		t.Fatal(err)
	}
	hc, err := kpssdk.KpsClientBuilder().WithRegion(region.NewRegion("local-1", base)).WithCredential(cred).
		WithHttpConfig(config.DefaultHttpConfig().WithTimeout(30 * time.Second).WithHttpRoundTripper(openapitest.NewTransport(transport))).SafeBuild()
	if err != nil {
		t.Fatal(err)
	}
	list, err := kpssdk.NewKpsClient(hc).ListKeypairs(&model.ListKeypairsRequest{})
	if err != nil || list.Keypairs == nil || len(*list.Keypairs) != 1 || (*list.Keypairs)[0].Keypair.Name == nil || *(*list.Keypairs)[0].Keypair.Name != "over-tls" {
		t.Fatalf("SDK list over HTTPS: %v %v", list, err)
	}
}
