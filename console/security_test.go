package console_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/client"
)

// cookieNamed is the Set-Cookie of resp named name.
func cookieNamed(t *testing.T, resp *http.Response, name string) *http.Cookie {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no %s cookie set (Set-Cookie: %q)", name, resp.Header.Values("Set-Cookie"))
	return nil
}

// TestConsoleHeadersCookiesAndCSRF checks what the browser test cannot see from the page: the
// security headers, the cookie attributes, and that every write needs the session's CSRF token
// and a same-origin request, checked before the API is called.
func TestConsoleHeadersCookiesAndCSRF(t *testing.T) {
	s := startService(t)
	b := newBrowserless(t, s, "")

	resp, err := b.hc.Get(s.base + "/console/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := map[string]string{
		"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
		"X-Frame-Options":         "DENY",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
		"Cache-Control":           "no-store",
	}
	for h, v := range want {
		if got := resp.Header.Get(h); got != v {
			t.Errorf("%s: %q, want %q", h, got, v)
		}
	}
	if c := cookieNamed(t, resp, "kps_console_login"); !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/console/" || c.Secure {
		t.Errorf("sign-in form cookie: %+v", c)
	}

	// The sign-in form itself needs its CSRF value.
	r, _ := b.post("/console/login", url.Values{"csrf": {"made-up"}, "user": {"admin"}, "password": {adminPassword},
		"domain": {"Default"}, "project": {"local-1"}}, nil)
	if r.StatusCode != http.StatusForbidden || len(r.Cookies()) > 0 && r.Cookies()[0].Name == "kps_console" {
		t.Fatalf("a sign-in without the form's CSRF value: %d %v", r.StatusCode, r.Cookies())
	}
	r, _ = b.post("/console/login", url.Values{"csrf": {b.csrf("/console/login")}, "user": {"admin"}, "password": {adminPassword},
		"domain": {"Default"}, "project": {"local-1"}, "next": {"//evil.example/x"}}, nil)
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/console/" {
		t.Fatalf("sign-in: %d to %q, want 303 to /console/ (never another site)", r.StatusCode, r.Header.Get("Location"))
	}
	session := cookieNamed(t, r, "kps_console")
	if !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Path != "/console/" || session.Secure ||
		session.Expires.Before(time.Now().Add(23*time.Hour)) {
		t.Errorf("session cookie: %+v", session)
	}

	ctx := context.Background()
	token := b.csrf("/console/keypairs/new")
	create := func(name string) url.Values {
		return url.Values{"name": {name}, "mode": {"generate"}, "algorithm": {"ed25519"}}
	}
	withCSRF := func(v url.Values, csrf string) url.Values { v.Set("csrf", csrf); return v }
	refused := []struct {
		what   string
		form   url.Values
		header http.Header
	}{
		{"no CSRF token", create("probe-1"), nil},
		{"a wrong CSRF token", withCSRF(create("probe-2"), "AAAA"+token[4:]), nil},
		{"another origin", withCSRF(create("probe-3"), token), http.Header{"Origin": {"http://evil.example"}}},
		{"a cross-site fetch", withCSRF(create("probe-4"), token), http.Header{"Sec-Fetch-Site": {"cross-site"}}},
		{"another origin of the same site", withCSRF(create("probe-5"), token), http.Header{"Sec-Fetch-Site": {"same-site"}}},
	}
	for _, c := range refused {
		r, body := b.post("/console/keypairs", c.form, c.header)
		if r.StatusCode != http.StatusForbidden {
			t.Errorf("a write with %s answered %d, want 403:\n%s", c.what, r.StatusCode, body)
		}
		if _, err := s.admin.KeyPair(ctx, c.form.Get("name")); client.Code(err) != kps.ErrKeyPairNotFound {
			t.Errorf("a write with %s created the key pair: %v", c.what, err)
		}
	}
	r, body := b.post("/console/keypairs", withCSRF(create("probe-ok"), token), http.Header{"Origin": {s.base}, "Sec-Fetch-Site": {"same-origin"}})
	if r.StatusCode != http.StatusOK || !strings.Contains(body, "download-private-key") {
		t.Fatalf("a same-origin write with the token answered %d:\n%s", r.StatusCode, body)
	}
	if r.Header.Get("Cache-Control") != "no-store" {
		t.Error("the page with the private key may be cached")
	}
	if _, err := s.admin.KeyPair(ctx, "probe-ok"); err != nil {
		t.Fatalf("the same-origin write did not create the key pair: %v", err)
	}

	// A page refused because the token was revoked sends the browser to sign in again.
	if err := s.admin.RevokeToken(ctx, session.Value); err != nil {
		t.Fatal(err)
	}
	if st, _ := b.get("/console/servers"); st != http.StatusSeeOther {
		t.Fatalf("a revoked session's page answered %d, want 303 to the sign-in form", st)
	}
}

// TestConsoleSecureCookiesUnderTLS: served over HTTPS, the console's cookies are Secure.
func TestConsoleSecureCookiesUnderTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := testCertificate(t, dir)
	s := startServiceWith(t, "https", &tls.Config{RootCAs: pool}, "--tls-cert", certFile, "--tls-key", keyFile)
	b := newBrowserless(t, s, "")
	resp, err := b.hc.Get(s.base + "/console/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if c := cookieNamed(t, resp, "kps_console_login"); !c.Secure || !c.HttpOnly {
		t.Errorf("sign-in form cookie under TLS: %+v", c)
	}
	r, _ := b.post("/console/login", url.Values{"csrf": {b.csrf("/console/login")}, "user": {"admin"}, "password": {adminPassword},
		"domain": {"Default"}, "project": {"local-1"}}, nil)
	if c := cookieNamed(t, r, "kps_console"); !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
		t.Errorf("session cookie under TLS: %+v", c)
	}
}

// testCertificate writes a self-signed certificate for 127.0.0.1 and its key.
func testCertificate(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kps test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile, pool
}

// TestConsoleSignInCountsTheBrowsersAddress: the API counts a console sign-in against the
// browser's address, as if the browser had called it. Failures from one address lock that
// address out and no other, and a browser cannot move its failures elsewhere with
// X-Forwarded-For (no --trusted-proxies). Had the console called the API over loopback, every
// browser would share one address and one lockout.
func TestConsoleSignInCountsTheBrowsersAddress(t *testing.T) {
	s := startService(t)
	guesser := newBrowserless(t, s, "127.0.0.2")
	// A few failed sign-ins (each costs a password hash, so a loaded machine could spread 30
	// of them over more than the one-minute window of the client budget), then refused
	// session tokens, which cost no hash: both are refused credentials the API counts against
	// the client, and only the browser's address can make them add up.
	for i := range 5 {
		if st := guesser.signIn("nobody-"+string(rune('a'+i)), "wrong-password"); st != http.StatusUnauthorized {
			t.Fatalf("failed sign-in %d answered %d, want 401", i+1, st)
		}
	}
	base, _ := url.Parse(s.base + "/console/")
	locked := false
	for i := range 40 {
		guesser.hc.Jar.SetCookies(base, []*http.Cookie{{Name: "kps_console", Value: fmt.Sprintf("forged-token-%02d", i), Path: "/console/"}})
		if st, _ := guesser.get("/console/"); st == http.StatusTooManyRequests {
			locked = true
			break
		}
	}
	guesser.hc.Jar.SetCookies(base, []*http.Cookie{{Name: "kps_console", Value: "", Path: "/console/", MaxAge: -1}})
	if !locked {
		t.Fatal("5 failed sign-ins and 40 forged sessions from one address were never refused with 429")
	}
	if st := guesser.signIn("admin", adminPassword); st != http.StatusTooManyRequests {
		t.Fatalf("the right password from the locked address answered %d, want 429", st)
	}
	spoofed := guesser.csrf("/console/login")
	r, _ := guesser.post("/console/login", url.Values{"csrf": {spoofed}, "user": {"admin"}, "password": {adminPassword},
		"domain": {"Default"}, "project": {"local-1"}}, http.Header{"X-Forwarded-For": {"127.0.0.9"}})
	if r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("X-Forwarded-For moved the locked browser elsewhere: %d, want 429", r.StatusCode)
	}
	other := newBrowserless(t, s, "127.0.0.3")
	if st := other.signIn("admin", adminPassword); st != http.StatusSeeOther {
		t.Fatalf("another address was locked out too: %d, want 303", st)
	}
	// The refusals are logged with the browser's address.
	if logs := s.logs(); !regexp.MustCompile(`refused.*client_ip=127\.0\.0\.2`).MatchString(logs) ||
		strings.Contains(logs, "client_ip=127.0.0.9") {
		t.Errorf("the refusals are not logged with the browser's address:\n%s", logs)
	}
}
