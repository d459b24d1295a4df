package interop_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/keypairs"
	"golang.org/x/crypto/ssh"

	"github.com/openkps/kps"
)

// Nova's fingerprint formats (nova-keypairs.md §8): MD5 of an SSH key, SHA-1 of a certificate.
var (
	md5FP  = regexp.MustCompile(`^([0-9a-f]{2}:){15}[0-9a-f]{2}$`)
	sha1FP = regexp.MustCompile(`^([0-9a-f]{2}:){19}[0-9a-f]{2}$`)
)

// TestNovaGophercloud drives the Nova API with gophercloud, authenticated through the service's
// own Keystone-style token and catalog.
func TestNovaGophercloud(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	provider, err := openstack.NewClient(s.base + "/v3")
	if err != nil {
		t.Fatal(err)
	}
	provider.HTTPClient = http.Client{Transport: apiClient.Transport}
	if err := openstack.Authenticate(ctx, provider, gophercloud.AuthOptions{
		IdentityEndpoint: s.base + "/v3", Username: "admin", Password: "admin-password-for-tests",
		DomainName: "Default", TenantName: "local-1",
	}); err != nil {
		t.Fatal(err)
	}
	client, err := openstack.NewComputeV2(provider, gophercloud.EndpointOpts{Region: "local-1"})
	if err != nil {
		t.Fatal(err)
	}
	if client.Endpoint != s.base+"/compute/v2.1/" {
		t.Errorf("compute endpoint %q", client.Endpoint)
	}
	for _, mv := range []string{"", "2.2", "2.10", "2.35", "2.92"} {
		t.Run("microversion-"+mv, func(t *testing.T) {
			client.Microversion = mv
			suffix := strings.ReplaceAll(mv, ".", "-")
			// Generate (not available from 2.92).
			gen, err := keypairs.Create(ctx, client, keypairs.CreateOpts{Name: "gen" + suffix}).Extract()
			if mv == "2.92" {
				if !gophercloud.ResponseCodeIs(err, http.StatusBadRequest) {
					t.Fatalf("generate at 2.92: %v", err)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := ssh.ParsePrivateKey([]byte(gen.PrivateKey)); err != nil || !md5FP.MatchString(gen.Fingerprint) || !strings.Contains(gen.PrivateKey, "BEGIN RSA PRIVATE KEY") {
					t.Errorf("generated key pair %+v: %v", gen, err)
				}
			}
			// Import (G-06: the key comes back byte-identical, trailing newline included).
			pub := newRSAPublicKey(t, 2048, "gophercloud")
			imp, err := keypairs.Create(ctx, client, keypairs.CreateOpts{Name: "imp" + suffix, PublicKey: pub}).Extract()
			if err != nil {
				t.Fatal(err)
			}
			if imp.PublicKey != pub || imp.PrivateKey != "" || imp.UserID == "" {
				t.Errorf("imported %+v", imp)
			}
			got, err := keypairs.Get(ctx, client, "imp"+suffix, nil).Extract()
			if err != nil || got.PublicKey != pub || got.Fingerprint != imp.Fingerprint || got.UserID != imp.UserID {
				t.Errorf("get %+v: %v", got, err)
			}
			if mv != "" && got.Type != "ssh" {
				t.Errorf("type %q", got.Type)
			}
			pages, err := keypairs.List(client, nil).AllPages(ctx)
			if err != nil {
				t.Fatal(err)
			}
			all, err := keypairs.ExtractKeyPairs(pages)
			if err != nil || !hasKeyPair(all, "imp"+suffix) {
				t.Errorf("list %+v: %v", all, err)
			}
			if mv == "2.35" || mv == "2.92" {
				// Pagination through gophercloud's client: a full page links to the next.
				var body struct {
					KeyPairs []map[string]keypairs.KeyPair `json:"keypairs"`
					Links    []struct{ Href string }       `json:"keypairs_links"`
				}
				if _, err := client.Get(ctx, client.ServiceURL("os-keypairs")+"?limit=1", &body, nil); err != nil {
					t.Fatal(err)
				}
				if len(body.KeyPairs) != 1 || len(body.Links) != 1 || !strings.Contains(body.Links[0].Href, "marker=") {
					t.Errorf("page %+v", body)
				}
				var next struct {
					KeyPairs []map[string]keypairs.KeyPair `json:"keypairs"`
				}
				if _, err := client.Get(ctx, body.Links[0].Href, &next, nil); err != nil || len(next.KeyPairs) != len(all)-1 {
					t.Errorf("next page %+v: %v", next, err)
				}
			}
			if mv != "2.92" {
				if err := keypairs.Delete(ctx, client, "gen"+suffix, nil).ExtractErr(); err != nil {
					t.Error(err)
				}
			}
			if err := keypairs.Delete(ctx, client, "imp"+suffix, nil).ExtractErr(); err != nil {
				t.Error(err)
			}
			if _, err := keypairs.Get(ctx, client, "imp"+suffix, nil).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
				t.Errorf("get after delete: %v", err)
			}
		})
	}
	// G-09..G-12: the admin acts for another user at 2.10 (gophercloud sends both version
	// headers): a generated key pair, shown, listed and deleted by user_id.
	s.addUser("gc-user", kps.RoleMember)
	other := s.userIDOf("gc-user")
	client.Microversion = "2.10"
	made, err := keypairs.Create(ctx, client, keypairs.CreateOpts{Name: "gc-other", UserID: other}).Extract()
	if err != nil || made.UserID != other || made.PrivateKey == "" {
		t.Fatalf("create for another user %+v: %v", made, err)
	}
	if got, err := keypairs.Get(ctx, client, "gc-other", keypairs.GetOpts{UserID: other}).Extract(); err != nil || got.UserID != other || got.Name != "gc-other" {
		t.Errorf("get for another user %+v: %v", got, err)
	}
	if _, err := keypairs.Get(ctx, client, "gc-other", nil).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Errorf("the admin's own view shows another user's key pair: %v", err)
	}
	pages, err := keypairs.List(client, keypairs.ListOpts{UserID: other}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if all, err := keypairs.ExtractKeyPairs(pages); err != nil || len(all) != 1 || all[0].Name != "gc-other" {
		t.Errorf("list for another user %+v: %v", all, err)
	}
	if err := keypairs.Delete(ctx, client, "gc-other", keypairs.DeleteOpts{UserID: other}).ExtractErr(); err != nil {
		t.Errorf("delete for another user: %v", err)
	}
	if _, err := keypairs.Get(ctx, client, "gc-other", keypairs.GetOpts{UserID: other}).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Errorf("get after delete: %v", err)
	}
	// An x509 key pair generated by the service (T-17).
	client.Microversion = "2.2"
	x, err := keypairs.Create(ctx, client, keypairs.CreateOpts{Name: "x509", Type: "x509"}).Extract()
	if err != nil || x.Type != "x509" || x.PrivateKey == "" || !sha1FP.MatchString(x.Fingerprint) {
		t.Errorf("x509 %+v: %v", x, err)
	}
}

func hasKeyPair(all []keypairs.KeyPair, name string) bool {
	for _, k := range all {
		if k.Name == name {
			return true
		}
	}
	return false
}

func newRSAPublicKey(t testing.TB, bits int, comment string) string {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := ssh.NewPublicKey(&k.PublicKey)
	return strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(pub)), "\n") + " " + comment + "\n"
}
