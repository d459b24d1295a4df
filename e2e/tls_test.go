package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openkps/kps/daemon"
	"github.com/openkps/kps/internal/kpstest"
	"github.com/openkps/kps/internal/openapitest"
)

// TestTLSConfig: --tls-cert and --tls-key come together, and a certificate that cannot be
// loaded stops the start with a message naming the files.
func TestTLSConfig(t *testing.T) {
	t.Parallel()
	for _, c := range []daemon.Config{{TLSCert: "a.crt"}, {TLSKey: "a.key"}} {
		c.TokenTTL, c.Workers, c.KeyPairQuota, c.Region = time.Hour, 1, 1, "local-1"
		// Run checks the settings before it opens anything.
		if err := daemon.NewMain(c, io.Discard, io.Discard).Run(context.Background()); err == nil || !strings.Contains(err.Error(), "--tls-cert and --tls-key") {
			t.Errorf("%+v: %v", c, err)
		}
	}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"serve", "--tls-cert", "x.crt"}, console{nil, &stdout, &stderr, func(string) string { return "" }})
	if code == 0 || !strings.Contains(stderr.String(), "go together") {
		t.Errorf("serve with --tls-cert only: exit %d, stderr %q", code, stderr.String())
	}
	dir := t.TempDir()
	m := daemon.NewMain(daemon.Config{Listen: "127.0.0.1:0", DataDir: dir, Region: "local-1", Workers: 1, KeyPairQuota: 1,
		TokenTTL: time.Hour, Lease: time.Second, TaskTimeout: time.Second, Shutdown: time.Second, LogLevel: "error",
		AdminPassword: "admin-password-for-tests", TLSCert: filepath.Join(dir, "missing.crt"), TLSKey: filepath.Join(dir, "missing.key")}, io.Discard, io.Discard)
	err := m.Run(context.Background())
	m.Close()
	if err == nil || !strings.Contains(err.Error(), "missing.crt") {
		t.Errorf("Run with missing certificate files: %v", err)
	}
}

// TestTLSServing serves HTTPS with --tls-cert/--tls-key: a Go client trusting the CA logs in,
// plain HTTP is refused, the kps command line logs in and lists key pairs (trusting the CA
// through SSL_CERT_FILE), and a renewed certificate is served after ReloadTLS (what SIGHUP
// calls) without a restart. (The Huawei SDK over HTTPS: TestSDKOverTLS in interop.)
func TestTLSServing(t *testing.T) {
	t.Parallel()
	ca := kpstest.NewCA(t)
	dir := t.TempDir()
	certFile, keyFile := ca.Issue(t, dir, 100)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	const adminPassword = "admin-password-for-tests"
	m := daemon.NewMain(daemon.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Region: "local-1", Workers: 2, KeyPairQuota: 100,
		MaxQueued: 100, TokenTTL: time.Hour, Lease: 6 * time.Second, TaskTimeout: 10 * time.Second, Shutdown: time.Second,
		LogLevel: "error", AdminPassword: adminPassword, TLSCert: certFile, TLSKey: keyFile}, io.Discard, io.Discard)
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	base := "https://" + m.Addr()

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.PEM)
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	client := &http.Client{Transport: openapitest.NewTransport(transport), Timeout: 30 * time.Second}
	login := `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","domain":{"name":"Default"},"password":"` +
		adminPassword + `"}}},"scope":{"project":{"name":"local-1","domain":{"name":"Default"}}}}}`
	resp, err := client.Post(base+"/v3/auth/tokens", "application/json", strings.NewReader(login))
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		Token struct {
			Project struct{ ID string } `json:"project"`
		} `json:"token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || resp.TLS == nil || resp.TLS.PeerCertificates[0].SerialNumber.Int64() != 100 {
		t.Fatalf("login over HTTPS: %d, TLS %v", resp.StatusCode, resp.TLS != nil)
	}
	token, project := resp.Header.Get("X-Subject-Token"), tok.Token.Project.ID

	// Plain HTTP on the TLS port is answered 400 by the TLS server, never served.
	if resp, err := http.Get("http://" + m.Addr() + "/v3/" + project + "/keypairs"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the TLS port: %d", resp.StatusCode)
		}
	}

	// A key pair to list, created over HTTPS.
	req, _ := http.NewRequest("POST", base+"/v3/"+project+"/keypairs", strings.NewReader(`{"keypair":{"name":"over-tls"}}`))
	req.Header.Set("X-Auth-Token", token)
	req.Header.Set("Content-Type", "application/json")
	if resp, err := client.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("create over HTTPS: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// The kps command line, as a user runs it: the CA is trusted through SSL_CERT_FILE.
	bin := kpsBinary(t)
	pwFile := filepath.Join(dir, "admin-password")
	os.WriteFile(pwFile, []byte(adminPassword), 0o600)
	env := append(os.Environ(), "SSL_CERT_FILE="+caFile, "KPS_CONFIG_DIR="+filepath.Join(dir, "profiles"))
	kpsCLI := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kps %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	kpsCLI("login", "--endpoint", base, "--user", "admin", "--password-file", pwFile)
	if out := kpsCLI("keypair", "list", "-o", "json"); !strings.Contains(out, "over-tls") {
		t.Errorf("kps keypair list over HTTPS: %s", out)
	}
	// Without the CA the command line refuses the server.
	cmd := exec.Command(bin, "keypair", "list")
	cmd.Env = append(os.Environ(), "KPS_CONFIG_DIR="+filepath.Join(dir, "profiles"), "SSL_CERT_FILE="+filepath.Join(dir, "no-ca.PEM"))
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "certificate") {
		t.Errorf("kps without the CA: %v\n%s", err, out)
	}

	// Renewal: new files, ReloadTLS, and new connections see the new certificate.
	ca.Issue(t, dir, 200)
	if err := m.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", m.Addr(), &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	if got := conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); got != 200 {
		t.Errorf("after ReloadTLS the service presents serial %d, want 200", got)
	}
	conn.Close()
	// A broken renewal keeps the old certificate in force.
	os.WriteFile(keyFile, []byte("not a key"), 0o600)
	if err := m.ReloadTLS(); err == nil || strings.Contains(err.Error(), "not a key") {
		t.Errorf("ReloadTLS with a broken key: %v", err)
	}
	if conn, err := tls.Dial("tcp", m.Addr(), &tls.Config{RootCAs: pool}); err != nil {
		t.Errorf("after a failed reload: %v", err)
	} else {
		conn.Close()
	}
}
