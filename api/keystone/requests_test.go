package keystone

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/openkps/kps"
)

// TestRequests: the typed bodies of the identity routes refuse with the exact texts of
// auth.md §11.3, the first wrong member in the struct's order, and Validate's rules after.
func TestRequests(t *testing.T) {
	read := func(body string, key string, req request) error {
		r := httptest.NewRequest("POST", "/v3/x", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		return readRequest(r, key, req)
	}
	for _, c := range []struct {
		body string
		req  request
		key  string
		want string // "" for none
	}{
		{`{"user":{"name":"alice","password":"pw","enabled":false}}`, &userCreate{}, "user", ""},
		{`{"user":{}}`, &userCreate{}, "user", "KPS.6002: Missing required parameter: user.name."},
		{`{"user":{"name":7}}`, &userCreate{}, "user", "KPS.6003: Invalid parameter: user.name."},
		// The first wrong member in the struct's order: name before password.
		{`{"user":{"password":7}}`, &userCreate{}, "user", "KPS.6002: Missing required parameter: user.name."},
		{`{"user":{"name":"a","enabled":"yes"}}`, &userCreate{}, "user", "KPS.6003: Invalid parameter: user.enabled."},
		{`{"user":"alice"}`, &userCreate{}, "user", "KPS.6003: Invalid parameter: user."},
		{`{}`, &userCreate{}, "user", "KPS.6002: Missing required parameter: user."},
		{`{"user":`, &userCreate{}, "user", "KPS.6001: The request body is not valid JSON."},
		{`{"user":{"name":"a"},"user":{"name":"b"}}`, &userCreate{}, "user", "KPS.6001: The request body is not valid JSON."},
		{`{"user":{"name":"a","future":1,"description":null}}`, &userCreate{}, "user", ""},
		{`{"project":{"name":"p","domain_id":"d","parent_id":"d"}}`, &projectCreate{}, "project", ""},
		{`{"project":{"name":"p","domain_id":"d","parent_id":"e"}}`, &projectCreate{}, "project", "KPS.6003: Invalid parameter: project.parent_id."},
		{`{"project":{"name":"p","is_domain":true}}`, &projectCreate{}, "project", "KPS.6003: Invalid parameter: project.is_domain."},
		{`{"user":{"original_password":"a"}}`, &passwordChange{}, "user", "KPS.6002: Missing required parameter: user.password."},
		{`{"credential":{"status":5}}`, &credentialUpdate{}, "credential", "KPS.6003: Invalid parameter: credential.status."},
	} {
		err := read(c.body, c.key, c.req)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("%s: %q, want %q", c.body, got, c.want)
		}
	}
	// parent_id stands for domain_id when that is absent.
	var p projectCreate
	if err := read(`{"project":{"name":"p","parent_id":"d"}}`, "project", &p); err != nil || p.project().DomainID != "d" || !p.project().Enabled {
		t.Fatalf("project %+v, %v", p.project(), err)
	}
}

// TestSecurityTokenRequest: exactly the method token, then the token's members.
func TestSecurityTokenRequest(t *testing.T) {
	for body, want := range map[string]string{
		`{"auth":{"identity":{"methods":["token"],"token":{"id":"t","duration_seconds":"900"}}}}`: "",
		`{"auth":{"identity":{"methods":["password"],"token":{"id":7}}}}`:                         kps.ErrInvalid + ": Invalid parameter: auth.identity.methods.",
		`{"auth":{"identity":{"methods":["token"],"token":{"id":7}}}}`:                            kps.ErrInvalid + ": Invalid parameter: auth.identity.token.id.",
		`{"auth":{"identity":{"methods":["token"],"token":{"duration_seconds":0}}}}`:              kps.ErrInvalid + ": Invalid parameter: auth.identity.token.duration_seconds.",
		`{"auth":{"identity":{}}}`: kps.ErrMissing + ": Missing required parameter: auth.identity.methods.",
	} {
		r := httptest.NewRequest("POST", "/v3.0/OS-CREDENTIAL/securitytokens", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		req, err := readSecurityTokenRequest(r)
		got := ""
		if err != nil {
			got = err.Error()
		} else if req.TokenID != "t" || req.Duration.Seconds() != 900 {
			t.Errorf("%s: %+v", body, req)
		}
		if got != want {
			t.Errorf("%s: %q, want %q", body, got, want)
		}
	}
}
