package console

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"
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

// TestParseTTL: the bind form's expiry reads durations, seconds, days and times, and refuses
// with a sentence what the API would refuse (kps-v3-api.md §7.1).
func TestParseTTL(t *testing.T) {
	now := time.Date(2026, 12, 7, 22, 0, 0, 0, time.UTC)
	good := map[string]time.Duration{
		"":                          0,
		"8h":                        8 * time.Hour,
		"90m":                       90 * time.Minute,
		"1h30m":                     90 * time.Minute,
		"28800":                     8 * time.Hour,
		"2d":                        48 * time.Hour,
		"2026-12-08T06:00:00Z":      8 * time.Hour,
		"2026-12-08 06:00":          8 * time.Hour,
		"2026-12-08T06:00":          8 * time.Hour,
		"2026-12-08T07:00:00+01:00": 8 * time.Hour,
	}
	for in, want := range good {
		if got, err := parseTTL(in, now); err != nil || got != want {
			t.Errorf("parseTTL(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"tomorrow", "-1h", "0", "0s", "1.5s", "500ms", "11d0", "4000d", "99999h", "2026-12-07T21:00:00Z", "2026-13-01 00:00", "8 hours"} {
		if d, err := parseTTL(in, now); err == nil {
			t.Errorf("parseTTL(%q) = %v, want a refusal", in, d)
		} else if !strings.Contains(err.Error(), "expiry") {
			t.Errorf("parseTTL(%q): %q does not say what is wrong", in, err)
		}
	}
}
