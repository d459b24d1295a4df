package kpsv3

import (
	"errors"
	"strings"
	"testing"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api"
)

func decodeAll(body []byte) (kps.BindRequest, error) {
	v, err := api.ParseJSON(body)
	if err != nil {
		return kps.BindRequest{}, err
	}
	root, err := api.RootObject(v)
	if err != nil {
		return kps.BindRequest{}, err
	}
	return decodeBind(root)
}

// FuzzDecodeBind feeds arbitrary bodies through the associate decoder: it never panics and every
// refusal is a KPS error with a 4xx status.
func FuzzDecodeBind(f *testing.F) {
	for _, s := range []string{
		`{"keypair_name":"k","server":{"id":"s1"}}`,
		`{"keypair_name":"k","server":{"id":"s1","port":2222,"disable_password":true,"auth":{"type":"password","key":"pw"}}}`,
		`{"keypair_name":"k","server":{"id":"s1","auth":{"type":"keypair","key":"-----BEGIN"}}}`,
		`{"keypair_name":"k","server":{"id":"s1","port":1e400}}`,
		`{"keypair_name":null,"server":null}`,
		`[1,2,3]`, `{"a":`, `"str"`, `{"keypair_name":"k","server":{"id":"\u0000"}}`,
		`{"keypair_name":"k","server":{"id":"s","port":65535.0}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		b, err := decodeAll(body)
		if err != nil {
			var e *kps.Error
			if !errors.As(err, &e) {
				t.Fatalf("non-KPS error %v", err)
			}
			if s := api.HTTPStatus(e.Code); s < 400 || s >= 500 || e.Message == "" {
				t.Fatalf("status %d for %v", s, err)
			}
			return
		}
		if !kps.ValidKeyPairName(b.KeyPairName) || !kps.ValidServerID(b.ServerID) || b.Port < 0 || b.Port > 65535 {
			t.Fatalf("accepted invalid request %+v", b)
		}
	})
}

func TestDecodeBindErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		body, code string
	}{
		{`{"a":`, kps.ErrBadJSON},
		{`[]`, kps.ErrBadJSON},
		{`{"keypair_name":"k"} {}`, kps.ErrBadJSON},
		{`{}`, kps.ErrMissing},
		{`{"keypair_name":"","server":{"id":"s"}}`, kps.ErrMissing},
		{`{"keypair_name":5,"server":{"id":"s"}}`, kps.ErrInvalid},
		{`{"keypair_name":"bad name","server":{"id":"s"}}`, kps.ErrKeyPairName},
		{`{"keypair_name":"k"}`, kps.ErrMissing},
		{`{"keypair_name":"k","server":null}`, kps.ErrMissing},
		{`{"keypair_name":"k","server":"s"}`, kps.ErrInvalid},
		{`{"keypair_name":"k","server":{"id":"has space"}}`, kps.ErrInvalid},
		{`{"keypair_name":"k","server":{"id":"s","port":0}}`, kps.ErrPort},
		{`{"keypair_name":"k","server":{"id":"s","port":65536}}`, kps.ErrPort},
		{`{"keypair_name":"k","server":{"id":"s","port":"22"}}`, kps.ErrPort},
		{`{"keypair_name":"k","server":{"id":"s","port":22.5}}`, kps.ErrPort},
		{`{"keypair_name":"k","server":{"id":"s","disable_password":"yes"}}`, kps.ErrInvalid},
		{`{"keypair_name":"k","server":{"id":"s","auth":{}}}`, kps.ErrAuth},
		{`{"keypair_name":"k","server":{"id":"s","auth":"pw"}}`, kps.ErrAuth},
		{`{"keypair_name":"k","server":{"id":"s","auth":{"type":"token","key":"x"}}}`, kps.ErrAuth},
		{`{"keypair_name":"k","server":{"id":"s","auth":{"type":"password"}}}`, kps.ErrAuth},
		{`{"keypair_name":"k","server":{"id":"s","auth":{"type":"password","key":"` + strings.Repeat("x", 1025) + `"}}}`, kps.ErrAuth},
		{`{"keypair_name":"k","server":{"id":"s","auth":{"type":"keypair","key":"not a key"}}}`, kps.ErrPrivateKey},
	}
	for _, c := range cases {
		_, err := decodeAll([]byte(c.body))
		if got := kps.ErrorCode(err); got != c.code {
			t.Errorf("%s: code %s, want %s (%v)", c.body, got, c.code, err)
		}
	}
	// null equals absent and unknown members are ignored (§1.4).
	b, err := decodeAll([]byte(`{"keypair_name":"k","future":1,"server":{"id":"s","auth":null,"port":null,"disable_password":null}}`))
	if err != nil || b.Auth != nil || b.Port != 0 || b.DisablePassword {
		t.Fatalf("null members: %+v %v", b, err)
	}
}
