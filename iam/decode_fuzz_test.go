package iam

import (
	"testing"

	"github.com/openkps/kps"
)

// FuzzDecodeAuthRequest feeds arbitrary bodies to the POST /v3/auth/tokens decoder: nothing
// panics, a refusal carries one of the documented codes, and an accepted request is complete.
func FuzzDecodeAuthRequest(f *testing.F) {
	for _, s := range []string{
		`{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","domain":{"name":"Default"},"password":"pw"}}},"scope":{"project":{"name":"local-1","domain":{"name":"Default"}}}}}`,
		`{"auth":{"identity":{"methods":["password"],"password":{"user":{"id":"0123456789abcdef0123456789abcdef","password":"pw"}}},"scope":{"project":{"id":"0123456789abcdef0123456789abcdef"}}}}`,
		`{"auth":{"identity":{"methods":["token"],"token":{"id":"KPT1abc"}},"scope":{"domain":{"name":"Default"}}}}`,
		`{"auth":{"identity":{"methods":["token"]}}}`,
		`{"auth":{"identity":{"methods":["password","token"]}}}`,
		`{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"a","password":"x","password":"y"}}}}}`,
		`{"auth":null}`, `[]`, `{"auth":`, `{"auth":{"identity":{"methods":"password"}}}`,
		`{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":1e400}}}}}`,
	} {
		f.Add([]byte(s))
	}
	codes := map[string]bool{kps.ErrBadJSON: true, kps.ErrMissing: true, kps.ErrInvalid: true,
		kps.ErrLoginFailed: true, kps.ErrTooLarge: true, kps.ErrScope: true}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeAuthRequest(body)
		if err != nil {
			if c := kps.ErrorCode(err); !codes[c] || kps.ErrorMessage(err) == "" {
				t.Fatalf("refusal %v with code %s", err, c)
			}
			return
		}
		switch req.Method {
		case MethodPassword, MethodToken:
		default:
			t.Fatalf("accepted method %q", req.Method)
		}
	})
}
