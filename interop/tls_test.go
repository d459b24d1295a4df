package interop_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"testing"
	"time"

	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/auth/basic"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/config"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/region"
	kpssdk "github.com/huaweicloud/huaweicloud-sdk-go-v3/services/kps/v3"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/services/kps/v3/model"

	"github.com/openkps/kps/daemon"
	"github.com/openkps/kps/internal/kpstest"
	"github.com/openkps/kps/internal/openapitest"
)

// TestSDKOverTLS: with --tls-cert/--tls-key, the Huawei SDK, trusting the CA, lists over HTTPS
// the key pair created over HTTPS, signed with an access key. (The rest of serving HTTPS:
// TestTLSServing in e2e.)
func TestSDKOverTLS(t *testing.T) {
	t.Parallel()
	ca := kpstest.NewCA(t)
	certFile, keyFile := ca.Issue(t, t.TempDir(), 100)
	s := start(t, func(c *daemon.Config) { c.TLSCert, c.TLSKey = certFile, keyFile })
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.PEM)
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
