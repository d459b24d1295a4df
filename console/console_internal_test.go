package console

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

// TestEmbeddedHTMX: the htmx the console serves is the npm package's file that
// assets/update-htmx.sh recorded — version, SHA-256 and licence agree.
func TestEmbeddedHTMX(t *testing.T) {
	js, err := assetFS.ReadFile("assets/htmx.min.js")
	if err != nil {
		t.Fatal(err)
	}
	version, _ := os.ReadFile("assets/htmx.version")
	sum, _ := os.ReadFile("assets/htmx.min.js.sha256")
	got := sha256.Sum256(js)
	if hex.EncodeToString(got[:]) != strings.TrimSpace(string(sum)) {
		t.Errorf("htmx.min.js has SHA-256 %x, htmx.min.js.sha256 says %s: run console/assets/update-htmx.sh", got, sum)
	}
	if v := strings.TrimSpace(string(version)); v == "" || !strings.Contains(string(js), `version:"`+v+`"`) {
		t.Errorf("htmx.min.js is not version %q", v)
	}
	licence, err := assetFS.ReadFile("assets/htmx.LICENSE")
	if err != nil || !strings.Contains(string(licence), "Zero-Clause BSD") {
		t.Errorf("the htmx licence is missing: %v", err)
	}
}

// TestSafeNext: after signing in, the browser goes only to a page of the console.
func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/console/servers?limit=50":      "/console/servers?limit=50",
		"/console/keypairs/web-01":       "/console/keypairs/web-01",
		"/console/":                      "/console/",
		"":                               "/console/",
		"//evil.example/console/":        "/console/",
		"https://evil.example/console/":  "/console/",
		"/\\evil.example":                "/console/",
		"/console/../v3/projects":        "/console/",
		"/console/login?next=/console/":  "/console/",
		"/v3/auth/tokens":                "/console/",
		"javascript:alert(1)":            "/console/",
		"/console/servers\r\nSet-Cookie": "/console/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}
