package iam

import (
	"bytes"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// BenchmarkSignatureCheck is the CPU part of an AK/SK request check (auth.md §6.3): parsing
// Authorization, the date and payload-hash checks, the canonical request and the HMAC, as
// AuthenticateSignature runs them once it holds the secret key. The key lookup, unsealing and
// role reads are database and AEAD work measured elsewhere.
//
//	go test -run '^$' -bench SignatureCheck ./iam
func BenchmarkSignatureCheck(b *testing.B) {
	const ak, sk = "AKBENCH0000000000001", "SkBench000000000000000000000000000000001"
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name, method, path string
		body               []byte
	}{
		{"GET-list", "GET", "/v3/0b7e4c2a91d34f5e8c6a2d1f3e5b7a90/failed-tasks?limit=1000&offset=0", nil},
		{"POST-1KiB", "POST", "/v3/0b7e4c2a91d34f5e8c6a2d1f3e5b7a90/keypairs",
			[]byte(`{"keypair":{"name":"k","public_key":"ssh-ed25519 ` + strings.Repeat("A", 960) + `"}}`)},
	} {
		b.Run(c.name, func(b *testing.B) {
			r := httptest.NewRequest(c.method, c.path, bytes.NewReader(c.body))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("User-Agent", "huaweicloud-usdk-go/3.0")
			if err := Sign(r, c.body, ak, sk, now); err != nil {
				b.Fatal(err)
			}
			header := r.Header.Get("Authorization")
			for b.Loop() {
				a, err := ParseAuthorization(header)
				if err != nil {
					b.Fatal(err)
				}
				sr, err := CheckRequest(r, c.body, a, now)
				if err != nil {
					b.Fatal(err)
				}
				if err := sr.Verify(sk); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
