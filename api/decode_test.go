package api

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/openkps/kps"
)

func decodeAll(body []byte) (bindRequest, error) {
	v, err := parseJSON(body)
	if err != nil {
		return bindRequest{}, err
	}
	root, err := rootObject(v)
	if err != nil {
		return bindRequest{}, err
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
			if s := HTTPStatus(e.Code); s < 400 || s >= 500 || e.Message == "" {
				t.Fatalf("status %d for %v", s, err)
			}
			return
		}
		if !kps.ValidKeyPairName(b.keyPairName) || !kps.ValidServerID(b.serverID) || b.port < 0 || b.port > 65535 {
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
	if err != nil || b.auth != nil || b.port != 0 || b.disablePassword {
		t.Fatalf("null members: %+v %v", b, err)
	}
}

func TestReadBodyContentTypeAndSize(t *testing.T) {
	t.Parallel()
	cases := []struct {
		ctype, body, code string
	}{
		{"", `{}`, kps.ErrContentType},
		{"text/plain", `{}`, kps.ErrContentType},
		{"application/jsonx", `{}`, kps.ErrContentType},
		{"Application/JSON; charset=UTF-8", `{}`, ""},
		{"application/json;charset=UTF-8", strings.Repeat(" ", maxBody) + `{}`, kps.ErrTooLarge},
	}
	for _, c := range cases {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(c.body))
		if c.ctype != "" {
			r.Header.Set("Content-Type", c.ctype)
		}
		_, err := readBody(r, maxBody)
		if c.code == "" && err != nil || c.code != "" && kps.ErrorCode(err) != c.code {
			t.Errorf("%q: got %v, want %s", c.ctype, err, c.code)
		}
	}
}

// TestIntegerRange checks the edges of int64: 2^63 is out of range even though
// float64(math.MaxInt64) equals it, and duplicate members are refused.
func TestIntegerRange(t *testing.T) {
	t.Parallel()
	cases := []struct {
		body string
		want int64
		ok   bool
	}{
		{`{"n":9223372036854775807}`, 9223372036854775807, true},
		{`{"n":-9223372036854775808}`, -9223372036854775808, true},
		{`{"n":9223372036854775808}`, 0, false},
		{`{"n":9.223372036854775807e18}`, 0, false},
		{`{"n":-9223372036854775809}`, -9223372036854775808, true}, // rounds to -2^63 as a float
		{`{"n":-1e19}`, 0, false},
		{`{"n":1e400}`, 0, false},
		{`{"n":2.0}`, 2, true},
		{`{"n":2.5}`, 0, false},
	}
	for _, c := range cases {
		v, err := parseJSON([]byte(c.body))
		if err != nil {
			t.Fatal(err)
		}
		root, _ := rootObject(v)
		n, _, err := root.integer("n")
		if (err == nil) != c.ok || (c.ok && n != c.want) {
			t.Errorf("%s: %d %v", c.body, n, err)
		}
	}
	if _, err := parseJSON([]byte(`{"a":1,"b":{"c":1,"c":2}}`)); kps.ErrorCode(err) != kps.ErrBadJSON {
		t.Errorf("duplicate member: %v", err)
	}
}
