package iam

import (
	"strings"
	"testing"

	"github.com/openkps/kps"
)

func TestDecodeAuthRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body string
		want       IssueRequest
	}{
		{"password, user by name, project scope by name",
			`{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"alice","domain":{"name":"acme"},"password":"pw"}}},
			  "scope":{"project":{"name":"my-region-1","domain":{"name":"acme"}}}}}`,
			IssueRequest{Method: "password", UserName: "alice", UserDomainName: "acme", Password: "pw",
				Scope: Scope{Kind: ScopeProject, ProjectName: "my-region-1", DomainName: "acme"}}},
		{"user by id, project by id",
			`{"auth":{"identity":{"methods":["password"],"password":{"user":{"id":"u1","password":"pw"}}},"scope":{"project":{"id":"p1"}}}}`,
			IssueRequest{Method: "password", UserID: "u1", Password: "pw", Scope: Scope{Kind: ScopeProject, ProjectID: "p1"}}},
		{"user domain by id, project name without domain",
			`{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"a","domain":{"id":"d1"},"password":"pw"}}},"scope":{"project":{"name":"x"}}}}`,
			IssueRequest{Method: "password", UserName: "a", UserDomainID: "d1", Password: "pw", Scope: Scope{Kind: ScopeProject, ProjectName: "x"}}},
		{"domain scope",
			`{"auth":{"identity":{"methods":["password"],"password":{"user":{"id":"u1","password":"pw"}}},"scope":{"domain":{"id":"d1"}}}}`,
			IssueRequest{Method: "password", UserID: "u1", Password: "pw", Scope: Scope{Kind: ScopeDomain, DomainID: "d1"}}},
		{"no scope, null scope",
			`{"auth":{"identity":{"methods":["password"],"password":{"user":{"id":"u1","password":"pw"}}},"scope":null}}`,
			IssueRequest{Method: "password", UserID: "u1", Password: "pw"}},
		{"token method with id",
			`{"auth":{"identity":{"methods":["token"],"token":{"id":"KPT1x"}},"scope":{"project":{"id":"p1"}}}}`,
			IssueRequest{Method: "token", Token: "KPT1x", Scope: Scope{Kind: ScopeProject, ProjectID: "p1"}}},
		{"token method without token member",
			`{"auth":{"identity":{"methods":["token"]}}}`,
			IssueRequest{Method: "token"}},
		{"password of exactly 1024 bytes",
			`{"auth":{"identity":{"methods":["password"],"password":{"user":{"id":"u","password":"` + strings.Repeat("p", 1024) + `"}}}}}`,
			IssueRequest{Method: "password", UserID: "u", Password: strings.Repeat("p", 1024)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeAuthRequest([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got  %#v\nwant %#v", got, tt.want)
				t.Errorf("password %q/%q token %q/%q", got.Password, tt.want.Password, got.Token, tt.want.Token)
			}
		})
	}
}

func TestDecodeAuthRequestErrors(t *testing.T) {
	t.Parallel()
	const pwUser = `"password":{"user":{"name":"alice","domain":{"name":"acme"},"password":"pw"}}`
	ok := func(scope string) string {
		return `{"auth":{"identity":{"methods":["password"],` + pwUser + `},"scope":` + scope + `}}`
	}
	tests := []struct {
		name, body, code, msg string
	}{
		{"not JSON", `{"auth":`, kps.ErrBadJSON, "The request body is not valid JSON."},
		{"empty body", ``, kps.ErrBadJSON, "The request body is not valid JSON."},
		{"array", `[]`, kps.ErrBadJSON, "The request body is not valid JSON."},
		{"null", `null`, kps.ErrBadJSON, "The request body is not valid JSON."},
		{"trailing data", `{"auth":{}} x`, kps.ErrBadJSON, "The request body is not valid JSON."},
		{"auth not an object", `{"auth":"x"}`, kps.ErrBadJSON, "The request body is not valid JSON."},
		{"no auth", `{}`, kps.ErrMissing, "Missing required parameter: auth."},
		{"no identity", `{"auth":{}}`, kps.ErrMissing, "Missing required parameter: auth.identity."},
		{"identity not an object", `{"auth":{"identity":[]}}`, kps.ErrInvalid, "Invalid parameter: auth.identity."},
		{"no methods", `{"auth":{"identity":{}}}`, kps.ErrMissing, "Missing required parameter: auth.identity.methods."},
		{"empty methods", `{"auth":{"identity":{"methods":[]}}}`, kps.ErrMissing, "Missing required parameter: auth.identity.methods."},
		{"methods not a list", `{"auth":{"identity":{"methods":"password"}}}`, kps.ErrInvalid, "Invalid parameter: auth.identity.methods."},
		{"methods of numbers", `{"auth":{"identity":{"methods":[1]}}}`, kps.ErrInvalid, "Invalid parameter: auth.identity.methods."},
		{"two methods", `{"auth":{"identity":{"methods":["password","totp"]}}}`, kps.ErrLoginFailed, "The username or password is wrong."},
		{"unknown method", `{"auth":{"identity":{"methods":["totp"]}}}`, kps.ErrLoginFailed, "The username or password is wrong."},
		{"application credential", `{"auth":{"identity":{"methods":["application_credential"]}}}`, kps.ErrLoginFailed, "The username or password is wrong."},
		{"no password member", `{"auth":{"identity":{"methods":["password"]}}}`, kps.ErrMissing, "Missing required parameter: auth.identity.password."},
		{"no user", `{"auth":{"identity":{"methods":["password"],"password":{}}}}`, kps.ErrMissing, "Missing required parameter: auth.identity.password.user."},
		{"user not an object", `{"auth":{"identity":{"methods":["password"],"password":{"user":"alice"}}}}`, kps.ErrInvalid, "Invalid parameter: auth.identity.password.user."},
		{"neither id nor name", `{"auth":{"identity":{"methods":["password"],"password":{"user":{"password":"pw"}}}}}`, kps.ErrMissing, "Missing required parameter: auth.identity.password.user.name."},
		{"name without domain", `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"a","password":"pw"}}}}}`, kps.ErrMissing, "Missing required parameter: auth.identity.password.user.domain."},
		{"empty domain", `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"a","domain":{},"password":"pw"}}}}}`, kps.ErrMissing, "Missing required parameter: auth.identity.password.user.domain.id."},
		{"name of wrong type", `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":1,"password":"pw"}}}}}`, kps.ErrInvalid, "Invalid parameter: auth.identity.password.user.name."},
		{"no password", `{"auth":{"identity":{"methods":["password"],"password":{"user":{"id":"u"}}}}}`, kps.ErrMissing, "Missing required parameter: auth.identity.password.user.password."},
		{"empty password", `{"auth":{"identity":{"methods":["password"],"password":{"user":{"id":"u","password":""}}}}}`, kps.ErrMissing, "Missing required parameter: auth.identity.password.user.password."},
		{"password of wrong type", `{"auth":{"identity":{"methods":["password"],"password":{"user":{"id":"u","password":123}}}}}`, kps.ErrInvalid, "Invalid parameter: auth.identity.password.user.password."},
		{"password too long", `{"auth":{"identity":{"methods":["password"],"password":{"user":{"id":"u","password":"` + strings.Repeat("p", 1025) + `"}}}}}`, kps.ErrLoginFailed, "The username or password is wrong."},
		{"token id of wrong type", `{"auth":{"identity":{"methods":["token"],"token":{"id":5}}}}`, kps.ErrInvalid, "Invalid parameter: auth.identity.token.id."},
		{"scope not an object", ok(`"unscoped"`), kps.ErrInvalid, "Invalid parameter: auth.scope."},
		{"empty scope", ok(`{}`), kps.ErrInvalid, "Invalid parameter: auth.scope."},
		{"system scope", ok(`{"system":{"all":true}}`), kps.ErrInvalid, "Invalid parameter: auth.scope."},
		{"trust scope", ok(`{"OS-TRUST:trust":{"id":"t"}}`), kps.ErrInvalid, "Invalid parameter: auth.scope."},
		{"project and domain", ok(`{"project":{"id":"p"},"domain":{"id":"d"}}`), kps.ErrInvalid, "Invalid parameter: auth.scope."},
		{"project not an object", ok(`{"project":"p"}`), kps.ErrInvalid, "Invalid parameter: auth.scope.project."},
		{"project without id or name", ok(`{"project":{}}`), kps.ErrMissing, "Missing required parameter: auth.scope.project.id."},
		{"project domain empty", ok(`{"project":{"name":"x","domain":{}}}`), kps.ErrMissing, "Missing required parameter: auth.scope.project.domain.id."},
		{"project id of wrong type", ok(`{"project":{"id":7}}`), kps.ErrInvalid, "Invalid parameter: auth.scope.project.id."},
		{"domain without id or name", ok(`{"domain":{}}`), kps.ErrMissing, "Missing required parameter: auth.scope.domain.id."},
		{"domain name of wrong type", ok(`{"domain":{"name":false}}`), kps.ErrInvalid, "Invalid parameter: auth.scope.domain.name."},
		{"too large", `{"auth":{"x":"` + strings.Repeat("a", MaxAuthBodyBytes) + `"}}`, kps.ErrTooLarge, "The request body is too large."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeAuthRequest([]byte(tt.body))
			wantCode(t, err, tt.code, tt.msg)
		})
	}
}
