package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openkps/kps/daemon"
)

// hostileCase is one malformed or malicious request and the answer it must get.
type hostileCase struct {
	name         string
	method, path string // path is absolute; "{p}" stands for the admin's project ID
	body         string
	contentType  string // "" means application/json when there is a body; "-" sends none
	headers      map[string]string
	status       int
	code         string
}

// send issues c with the admin token (unless c sets X-Auth-Token or Authorization) and returns
// the status and the decoded JSON body.
func (s *service) send(c hostileCase) (int, map[string]any, error) {
	var rd io.Reader
	if c.body != "" {
		rd = strings.NewReader(c.body)
	}
	req, err := http.NewRequest(c.method, s.base+strings.ReplaceAll(c.path, "{p}", s.project), rd)
	if err != nil {
		return 0, nil, err
	}
	switch {
	case c.contentType == "-":
	case c.contentType != "":
		req.Header.Set("Content-Type", c.contentType)
	case c.body != "":
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("X-Auth-Token", s.token)
	for k, v := range c.headers {
		req.Header.Set(k, v)
		if k == "Authorization" {
			req.Header.Del("X-Auth-Token")
		}
	}
	resp, err := apiClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			return resp.StatusCode, nil, fmt.Errorf("non-JSON body %.200q", raw)
		}
	}
	return resp.StatusCode, out, nil
}

// TestHostileInput sends malformed and malicious requests to every route family: each gets its
// 4xx and KPS code, none a 5xx, and the service keeps answering.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"id": "s1", "address": "127.0.0.1"}})
	s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "k"}})
	pub := ed25519Line(t, "victim")

	deepArrays := strings.Repeat("[", 100_000)
	deepObjects := strings.Repeat(`{"keypair":`, 20_000)
	deepIdentity := strings.Repeat("[", 60_000) // within the 64 KiB of identity bodies
	// Valid JSON padded past the limits: the size is refused, not the content.
	overKPS := `{"keypair":{"name":"big"}` + strings.Repeat(" ", 1<<20) + `}`
	overIdentity := `{"auth":{"identity":{"methods":["password"]}}` + strings.Repeat(" ", 64<<10) + `}`
	const (
		rtl       = "\u202e"           // RIGHT-TO-LEFT OVERRIDE
		cyrillicA = "\u0430"           // looks like a Latin a
		overlong  = "\xc0\xae\xc0\xae" // overlong UTF-8 for "..", invalid
	)
	login := func(user, password string) string {
		return `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":` + user +
			`,"domain":{"name":"Default"},"password":` + password + `}}},"scope":{"project":{"name":"local-1","domain":{"name":"Default"}}}}}`
	}

	cases := []hostileCase{
		// Key pairs: bodies.
		{name: "truncated", method: "POST", path: "/v3/{p}/keypairs", body: `{"keypair":{"name":"a"`, status: 400, code: "KPS.6001"},
		{name: "truncated string", method: "POST", path: "/v3/{p}/keypairs", body: `{"keypair":{"name":"a`, status: 400, code: "KPS.6001"},
		{name: "deep arrays", method: "POST", path: "/v3/{p}/keypairs", body: deepArrays, status: 400, code: "KPS.6001"},
		{name: "deep objects", method: "POST", path: "/v3/{p}/keypairs", body: deepObjects, status: 400, code: "KPS.6001"},
		{name: "trailing garbage", method: "POST", path: "/v3/{p}/keypairs", body: `{"keypair":{"name":"a"}}x`, status: 400, code: "KPS.6001"},
		{name: "two documents", method: "POST", path: "/v3/{p}/keypairs", body: `{"keypair":{"name":"a"}}{"keypair":{"name":"b"}}`, status: 400, code: "KPS.6001"},
		{name: "null body", method: "POST", path: "/v3/{p}/keypairs", body: `null`, status: 400, code: "KPS.6001"},
		{name: "huge number name", method: "POST", path: "/v3/{p}/keypairs", body: `{"keypair":{"name":1e400}}`, status: 400, code: "KPS.6003"},
		{name: "bool name", method: "POST", path: "/v3/{p}/keypairs", body: `{"keypair":{"name":true}}`, status: 400, code: "KPS.6003"},
		{name: "array name", method: "POST", path: "/v3/{p}/keypairs", body: `{"keypair":{"name":["a"]}}`, status: 400, code: "KPS.6003"},
		{name: "keypair string", method: "POST", path: "/v3/{p}/keypairs", body: `{"keypair":"k"}`, status: 400, code: "KPS.6003"},
		{name: "RTL name", method: "POST", path: "/v3/{p}/keypairs", body: `{"keypair":{"name":"gpj` + rtl + `exe"}}`, status: 400, code: "KPS.6004"},
		{name: "NUL name", method: "POST", path: "/v3/{p}/keypairs", body: `{"keypair":{"name":"a\u0000b"}}`, status: 400, code: "KPS.6004"},
		{name: "homoglyph name", method: "POST", path: "/v3/{p}/keypairs", body: `{"keypair":{"name":"` + cyrillicA + `dmin"}}`, status: 400, code: "KPS.6004"},
		{name: "overlong UTF-8 name", method: "POST", path: "/v3/{p}/keypairs", body: `{"keypair":{"name":"` + overlong + `"}}`, status: 400, code: "KPS.6004"},
		{name: "traversal name", method: "POST", path: "/v3/{p}/keypairs", body: `{"keypair":{"name":"../../etc/passwd"}}`, status: 400, code: "KPS.6004"},
		{name: "encoded traversal name", method: "POST", path: "/v3/{p}/keypairs", body: `{"keypair":{"name":"..%2f..%2fetc"}}`, status: 400, code: "KPS.6004"},
		{name: "long name", method: "POST", path: "/v3/{p}/keypairs", body: `{"keypair":{"name":"` + strings.Repeat("n", 65) + `"}}`, status: 400, code: "KPS.6004"},
		{name: "NUL description", method: "PUT", path: "/v3/{p}/keypairs/k", body: `{"keypair":{"description":"a\u0000"}}`, status: 400, code: "KPS.6016"},
		{name: "RTL description", method: "PUT", path: "/v3/{p}/keypairs/k", body: `{"keypair":{"description":"txt.` + rtl + `exe"}}`, status: 400, code: "KPS.6016"},
		{name: "newline key injection", method: "POST", path: "/v3/{p}/keypairs", body: `{"keypair":{"name":"d2","public_key":"` + pub + `\n` + pub + ` second"}}`, status: 400, code: "KPS.6009"},
		{name: "options key injection", method: "POST", path: "/v3/{p}/keypairs", body: `{"keypair":{"name":"d3","public_key":"command=\"sh\" ` + pub + `"}}`, status: 400, code: "KPS.6009"},
		{name: "NUL public key", method: "POST", path: "/v3/{p}/keypairs", body: `{"keypair":{"name":"d4","public_key":"ssh-ed25519 \u0000"}}`, status: 400, code: "KPS.6009"},
		{name: "public key number", method: "POST", path: "/v3/{p}/keypairs", body: `{"keypair":{"name":"d5","public_key":12}}`, status: 400, code: "KPS.6003"},
		{name: "duplicate keys, bad last", method: "POST", path: "/v3/{p}/keypairs", body: `{"keypair":{"name":"ok","name":"../x"}}`, status: 400, code: "KPS.6001"},
		{name: "duplicate keys, bad first", method: "POST", path: "/v3/{p}/keypairs", body: `{"keypair":{"name":"../x","name":"dup"}}`, status: 400, code: "KPS.6001"},
		{name: "duplicate wrapper", method: "POST", path: "/v3/{p}/keypairs", body: `{"keypair":{"name":"dup2"},"keypair":{"name":"dup3"}}`, status: 400, code: "KPS.6001"},
		{name: "over 1 MiB", method: "POST", path: "/v3/{p}/keypairs", body: overKPS, status: 413, code: "KPS.6020"},
		{name: "text/plain", method: "POST", path: "/v3/{p}/keypairs", body: `{"keypair":{"name":"ct"}}`, contentType: "text/plain", status: 415, code: "KPS.6019"},
		{name: "form", method: "POST", path: "/v3/{p}/keypairs", body: `keypair=ct`, contentType: "application/x-www-form-urlencoded", status: 415, code: "KPS.6019"},
		{name: "json-patch", method: "POST", path: "/v3/{p}/keypairs", body: `{"keypair":{"name":"ct"}}`, contentType: "application/json-patch+json", status: 415, code: "KPS.6019"},
		{name: "broken media type", method: "POST", path: "/v3/{p}/keypairs", body: `{"keypair":{"name":"ct"}}`, contentType: "application/json; charset", status: 415, code: "KPS.6019"},
		{name: "no content type", method: "POST", path: "/v3/{p}/keypairs", body: `{"keypair":{"name":"ct"}}`, contentType: "-", status: 415, code: "KPS.6019"},
		{name: "update null", method: "PUT", path: "/v3/{p}/keypairs/k", body: `null`, status: 400, code: "KPS.6001"},
		{name: "update description number", method: "PUT", path: "/v3/{p}/keypairs/k", body: `{"keypair":{"description":1e400}}`, status: 400, code: "KPS.6003"},
		// Key pairs: names in the path and the query.
		{name: "path traversal", method: "GET", path: "/v3/{p}/keypairs/..%2f..%2fetc%2fpasswd", status: 400, code: "KPS.6004"},
		{name: "path NUL", method: "GET", path: "/v3/{p}/keypairs/a%00b", status: 400, code: "KPS.6004"},
		{name: "path RTL", method: "GET", path: "/v3/{p}/keypairs/%E2%80%AEk", status: 400, code: "KPS.6004"},
		{name: "path overlong", method: "DELETE", path: "/v3/{p}/keypairs/%C0%AE%C0%AE", status: 400, code: "KPS.6004"},
		{name: "path dot-dot", method: "DELETE", path: "/v3/{p}/keypairs/%2e%2e", status: 400, code: "KPS.6004"},
		{name: "limit 1e400", method: "GET", path: "/v3/{p}/keypairs?limit=1e400", status: 400, code: "KPS.6005"},
		{name: "limit 2^63", method: "GET", path: "/v3/{p}/keypairs?limit=9223372036854775808", status: 400, code: "KPS.6005"},
		{name: "limit NUL", method: "GET", path: "/v3/{p}/keypairs?limit=%00", status: 400, code: "KPS.6005"},
		{name: "limit fullwidth digit", method: "GET", path: "/v3/{p}/keypairs?limit=%EF%BC%91", status: 400, code: "KPS.6005"},
		{name: "marker RTL", method: "GET", path: "/v3/{p}/keypairs?marker=%E2%80%AEk", status: 400, code: "KPS.6007"},
		{name: "marker traversal", method: "GET", path: "/v3/{p}/keypairs?marker=..%2f..", status: 400, code: "KPS.6007"},
		// Private keys.
		{name: "garbage private key", method: "POST", path: "/v3/{p}/keypairs/private-key/import", body: `{"keypair":{"name":"k","key_protection":{"private_key":"-----BEGIN OPENSSH PRIVATE KEY-----\ngarbage\n-----END OPENSSH PRIVATE KEY-----\n","encryption":{"type":"default"}}}}`, status: 400, code: "KPS.6010"},
		{name: "private key number", method: "POST", path: "/v3/{p}/keypairs/private-key/import", body: `{"keypair":{"name":"k","key_protection":{"private_key":1e400,"encryption":{"type":"default"}}}}`, status: 400, code: "KPS.6003"},
		{name: "import truncated", method: "POST", path: "/v3/{p}/keypairs/private-key/import", body: `{"keypair":{"name":"k","key_protection":{`, status: 400, code: "KPS.6001"},
		{name: "export traversal", method: "POST", path: "/v3/{p}/keypairs/private-key/export", body: `{"keypair":{"name":"../k"}}`, status: 400, code: "KPS.6004"},
		{name: "export string", method: "POST", path: "/v3/{p}/keypairs/private-key/export", body: `{"keypair":"k"}`, status: 400, code: "KPS.6003"},
		{name: "batch export object", method: "POST", path: "/v3/{p}/keypairs/private-key/batch-export", body: `{"keypair":{"name":"k"}}`, status: 400, code: "KPS.6001"},
		{name: "batch export 11", method: "POST", path: "/v3/{p}/keypairs/private-key/batch-export", body: "[" + strings.Repeat(`{"keypair":{"name":"k"}},`, 10) + `{"keypair":{"name":"k"}}]`, status: 400, code: "KPS.6008"},
		{name: "batch export strings", method: "POST", path: "/v3/{p}/keypairs/private-key/batch-export", body: `["k"]`, status: 400, code: "KPS.6003"},
		{name: "batch import empty", method: "POST", path: "/v3/{p}/keypairs/batch-import", body: `[]`, status: 400, code: "KPS.6008"},
		{name: "batch import deep", method: "POST", path: "/v3/{p}/keypairs/batch-import", body: deepArrays, status: 400, code: "KPS.6001"},
		{name: "clear traversal", method: "DELETE", path: "/v3/{p}/keypairs/..%2fk/private-key", status: 400, code: "KPS.6004"},
		// Tasks.
		{name: "associate truncated", method: "POST", path: "/v3/{p}/keypairs/associate", body: `{"keypair_name":"k","server":{"id":`, status: 400, code: "KPS.6001"},
		{name: "port 1e400", method: "POST", path: "/v3/{p}/keypairs/associate", body: `{"keypair_name":"k","server":{"id":"s1","port":1e400}}`, status: 400, code: "KPS.6015"},
		{name: "port 2^63", method: "POST", path: "/v3/{p}/keypairs/associate", body: `{"keypair_name":"k","server":{"id":"s1","port":9223372036854775808}}`, status: 400, code: "KPS.6015"},
		{name: "port -2^63-1", method: "POST", path: "/v3/{p}/keypairs/associate", body: `{"keypair_name":"k","server":{"id":"s1","port":-9223372036854775809}}`, status: 400, code: "KPS.6015"},
		{name: "port 2^64+22", method: "POST", path: "/v3/{p}/keypairs/associate", body: `{"keypair_name":"k","server":{"id":"s1","port":18446744073709551638}}`, status: 400, code: "KPS.6015"},
		{name: "server id RTL", method: "POST", path: "/v3/{p}/keypairs/associate", body: `{"keypair_name":"k","server":{"id":"s1` + rtl + `"}}`, status: 400, code: "KPS.6003"},
		// Server IDs are any printable ASCII (they are the caller's inventory keys), so this one is
		// merely unknown.
		{name: "server id traversal", method: "POST", path: "/v3/{p}/keypairs/associate", body: `{"keypair_name":"k","server":{"id":"../../s1"}}`, status: 404, code: "KPS.6204"},
		{name: "keypair name NUL", method: "POST", path: "/v3/{p}/keypairs/associate", body: `{"keypair_name":"k\u0000","server":{"id":"s1"}}`, status: 400, code: "KPS.6004"},
		{name: "auth key number", method: "POST", path: "/v3/{p}/keypairs/associate", body: `{"keypair_name":"k","server":{"id":"s1","auth":{"type":"password","key":12}}}`, status: 400, code: "KPS.6014"},
		{name: "batch associate deep", method: "POST", path: "/v3/{p}/keypairs/batch-associate", body: `{"batch_keypairs":` + deepArrays, status: 400, code: "KPS.6001"},
		{name: "disassociate id number", method: "POST", path: "/v3/{p}/keypairs/disassociate", body: `{"server":{"id":1}}`, status: 400, code: "KPS.6003"},
		{name: "task NUL", method: "GET", path: "/v3/{p}/tasks/%00", status: 404, code: "KPS.6202"},
		{name: "task traversal", method: "GET", path: "/v3/{p}/tasks/..%2f..%2fetc%2fpasswd", status: 404, code: "KPS.6202"},
		{name: "running limit", method: "GET", path: "/v3/{p}/running-tasks?limit=abc", status: 400, code: "KPS.6005"},
		{name: "failed offset 2^31", method: "GET", path: "/v3/{p}/failed-tasks?offset=2147483648", status: 400, code: "KPS.6006"},
		{name: "failed offset 2^63", method: "GET", path: "/v3/{p}/failed-tasks?offset=9223372036854775808", status: 400, code: "KPS.6006"},
		{name: "failed delete RTL", method: "DELETE", path: "/v3/{p}/failed-tasks/%E2%80%AE", status: 404, code: "KPS.6203"},
		// Servers.
		{name: "address CRLF", method: "POST", path: "/v3/{p}/servers", body: `{"server":{"address":"h\r\nProxyCommand sh"}}`, status: 400, code: "KPS.6003"},
		{name: "address NUL", method: "POST", path: "/v3/{p}/servers", body: `{"server":{"address":"h\u0000"}}`, status: 400, code: "KPS.6003"},
		{name: "address option", method: "POST", path: "/v3/{p}/servers", body: `{"server":{"address":"-oProxyCommand=sh"}}`, status: 400, code: "KPS.6003"},
		{name: "server port 2^63", method: "POST", path: "/v3/{p}/servers", body: `{"server":{"address":"h","port":9223372036854775808}}`, status: 400, code: "KPS.6015"},
		{name: "server port string", method: "POST", path: "/v3/{p}/servers", body: `{"server":{"address":"h","port":"22"}}`, status: 400, code: "KPS.6015"},
		{name: "homoglyph server id", method: "POST", path: "/v3/{p}/servers", body: `{"server":{"id":"w` + "\u0435" + `b","address":"h"}}`, status: 400, code: "KPS.6003"},
		{name: "user newline", method: "POST", path: "/v3/{p}/servers", body: `{"server":{"address":"h","user":"root\nx"}}`, status: 400, code: "KPS.6003"},
		{name: "host key number", method: "POST", path: "/v3/{p}/servers", body: `{"server":{"address":"h","host_keys":[1]}}`, status: 400, code: "KPS.6009"},
		{name: "credential key number", method: "POST", path: "/v3/{p}/servers", body: `{"server":{"address":"h","credential":{"type":"password","key":1}}}`, status: 400, code: "KPS.6014"},
		{name: "server array", method: "PUT", path: "/v3/{p}/servers/s1", body: `{"server":[]}`, status: 400, code: "KPS.6003"},
		{name: "server path traversal", method: "GET", path: "/v3/{p}/servers/..%2f..%2fetc", status: 404, code: "KPS.6204"},
		{name: "server path RTL", method: "DELETE", path: "/v3/{p}/servers/s1%E2%80%AE", status: 404, code: "KPS.6204"},
		{name: "servers offset exponent", method: "GET", path: "/v3/{p}/servers?offset=1e3", status: 400, code: "KPS.6006"},
		// Identity: tokens.
		{name: "login truncated", method: "POST", path: "/v3/auth/tokens", body: `{"auth":{"identity":`, status: 400, code: "KPS.6001"},
		{name: "login deep", method: "POST", path: "/v3/auth/tokens", body: deepIdentity, status: 400, code: "KPS.6001"},
		{name: "login over 64 KiB", method: "POST", path: "/v3/auth/tokens", body: overIdentity, status: 413, code: "KPS.6020"},
		{name: "login text/plain", method: "POST", path: "/v3/auth/tokens", body: login(`"admin"`, `"x"`), contentType: "text/plain", status: 415, code: "KPS.6019"},
		{name: "login password number", method: "POST", path: "/v3/auth/tokens", body: login(`"admin"`, `1e400`), status: 400, code: "KPS.6003"},
		{name: "login user object", method: "POST", path: "/v3/auth/tokens", body: login(`{"a":1}`, `"x"`), status: 400, code: "KPS.6003"},
		{name: "login RTL user", method: "POST", path: "/v3/auth/tokens", body: login(`"adm`+rtl+`in"`, `"admin-password-for-tests"`), status: 401, code: "KPS.6107"},
		{name: "login homoglyph user", method: "POST", path: "/v3/auth/tokens", body: login(`"`+cyrillicA+`dmin"`, `"admin-password-for-tests"`), status: 401, code: "KPS.6107"},
		{name: "login NUL password", method: "POST", path: "/v3/auth/tokens", body: login(`"admin"`, `"admin-password-for-tests\u0000"`), status: 401, code: "KPS.6107"},
		{name: "login methods twice", method: "POST", path: "/v3/auth/tokens", body: `{"auth":{"identity":{"methods":["password","password"]}}}`, status: 401, code: "KPS.6107"},
		{name: "login auth null", method: "POST", path: "/v3/auth/tokens", body: `{"auth":null}`, status: 400, code: "KPS.6002"},
		{name: "login duplicate password", method: "POST", path: "/v3/auth/tokens", body: strings.Replace(login(`"admin"`, `"admin-password-for-tests"`), `"password":"admin`, `"password":"wrong","password":"admin`, 1), status: 400, code: "KPS.6001"},
		{name: "token check traversal", method: "GET", path: "/v3/auth/tokens", headers: map[string]string{"X-Subject-Token": "../../etc/passwd"}, status: 404, code: "KPS.6109"},
		{name: "bad signature", method: "GET", path: "/v3/auth/projects", headers: map[string]string{"Authorization": "SDK-HMAC-SHA256 Access=" + rtl + ", SignedHeaders=host, Signature=zz"}, status: 401, code: "KPS.6102"},
		// Identity: projects.
		// Unknown and invisible projects answer alike, so IDs cannot be probed (auth.md §8.2).
		{name: "project traversal", method: "GET", path: "/v3/projects/..%2f..%2fetc", status: 403, code: "KPS.9006"},
		{name: "project NUL", method: "DELETE", path: "/v3/projects/%00", status: 404, code: "KPS.6110"},
		{name: "project name number", method: "POST", path: "/v3/projects", body: `{"project":{"name":1e400}}`, status: 400, code: "KPS.6003"},
		{name: "project over 64 KiB", method: "POST", path: "/v3/projects", body: `{"project":{"name":"p"}` + strings.Repeat(" ", 64<<10) + `}`, status: 413, code: "KPS.6020"},
		{name: "project truncated", method: "POST", path: "/v3/projects", body: `{"project":{"name":"p"`, status: 400, code: "KPS.6001"},
		{name: "project enabled string", method: "POST", path: "/v3/projects", body: `{"project":{"name":"p2","enabled":"yes"}}`, status: 400, code: "KPS.6003"},
		{name: "project name RTL", method: "POST", path: "/v3/projects", body: `{"project":{"name":"p` + rtl + `"}}`, status: 400, code: "KPS.6003"},
		{name: "project form", method: "POST", path: "/v3/projects", body: `name=p`, contentType: "application/x-www-form-urlencoded", status: 415, code: "KPS.6019"},
		{name: "user traversal", method: "GET", path: "/v3/users/..%2f..%2f/projects", status: 404, code: "KPS.6110"},
		// Identity: access keys.
		{name: "credential user traversal", method: "POST", path: "/v3.0/OS-CREDENTIAL/credentials", body: `{"credential":{"user_id":"../../x"}}`, status: 404, code: "KPS.6110"},
		{name: "credential description number", method: "POST", path: "/v3.0/OS-CREDENTIAL/credentials", body: `{"credential":{"description":1e400}}`, status: 400, code: "KPS.6003"},
		{name: "credential deep", method: "POST", path: "/v3.0/OS-CREDENTIAL/credentials", body: deepIdentity, status: 400, code: "KPS.6001"},
		{name: "credential NUL", method: "GET", path: "/v3.0/OS-CREDENTIAL/credentials/%00", status: 404, code: "KPS.6110"},
		{name: "credential status", method: "PUT", path: "/v3.0/OS-CREDENTIAL/credentials/NOSUCHKEY", body: `{"credential":{"status":1}}`, status: 400, code: "KPS.6003"},
		{name: "security token 1e400", method: "POST", path: "/v3.0/OS-CREDENTIAL/securitytokens", body: `{"auth":{"identity":{"methods":["token"],"token":{"duration_seconds":1e400}}}}`, status: 400, code: "KPS.6003"},
		{name: "security token 2^63", method: "POST", path: "/v3.0/OS-CREDENTIAL/securitytokens", body: `{"auth":{"identity":{"methods":["token"],"token":{"duration_seconds":9223372036854775808}}}}`, status: 400, code: "KPS.6003"},
		{name: "security token fraction", method: "POST", path: "/v3.0/OS-CREDENTIAL/securitytokens", body: `{"auth":{"identity":{"methods":["token"],"token":{"duration_seconds":900.5}}}}`, status: 400, code: "KPS.6003"},
	}
	if len(cases) < 60 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, c := range cases {
		got, body, err := s.send(c)
		switch {
		case err != nil:
			t.Errorf("%s: %v", c.name, err)
		case got >= 500:
			t.Errorf("%s: %s %s answered %d %v", c.name, c.method, c.path, got, body)
		case got != c.status || body["error_code"] != c.code:
			t.Errorf("%s: %s %s: %d %v, want %d %s", c.name, c.method, c.path, got, body, c.status, c.code)
		}
	}
	// Nothing the table sent was created.
	list := s.must(200, "GET", "/keypairs", nil)
	if n := len(list["keypairs"].([]any)); n != 1 {
		t.Errorf("after the table: %d key pairs, want 1: %v", n, list)
	}
	s.must(200, "GET", "/servers/s1", nil)
}

// rawExchange writes req on a fresh TCP connection to the service and returns the response
// status (0 when the server closed the connection without one).
func rawExchange(t *testing.T, addr, req string) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return 0
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestHeaderInjection sends what Go's client refuses to: CR, LF and NUL in header values and
// in the request line, oversize headers and ambiguous framing. Each is refused with a 4xx
// before any handler runs.
func TestHeaderInjection(t *testing.T) {
	t.Parallel()
	s := setup(t)
	addr := s.main.Addr()
	p := "/v3/" + s.project
	bigHeader := "X-Pad: " + strings.Repeat("a", 70<<10) + "\r\n"
	cases := []struct {
		name, req string
		status    int
	}{
		{"CR in value", "GET " + p + "/keypairs HTTP/1.1\r\nHost: x\r\nX-Auth-Token: " + s.token + "\rX-Project-Id: other\r\n\r\n", 400},
		{"NUL in value", "GET " + p + "/keypairs HTTP/1.1\r\nHost: x\r\nX-Auth-Token: a\x00b\r\n\r\n", 400},
		{"NUL in name", "GET " + p + "/keypairs HTTP/1.1\r\nHost: x\r\nX-Auth\x00-Token: a\r\n\r\n", 400},
		{"space before colon", "GET " + p + "/keypairs HTTP/1.1\r\nHost: x\r\nX-Auth-Token : " + s.token + "\r\n\r\n", 400},
		{"CRLF in path", "GET " + p + "/keypairs\r\nX-Auth-Token: " + s.token + " HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"NUL in path", "GET " + p + "/keypairs/a\x00b HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"headers over 64 KiB", "GET " + p + "/keypairs HTTP/1.1\r\nHost: x\r\n" + bigHeader + "\r\n", 431},
		{"two content lengths", "POST " + p + "/keypairs HTTP/1.1\r\nHost: x\r\nX-Auth-Token: " + s.token + "\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400},
		{"negative content length", "POST " + p + "/keypairs HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400},
		{"unknown transfer encoding", "POST " + p + "/keypairs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"no host", "GET " + p + "/keypairs HTTP/1.1\r\nX-Auth-Token: " + s.token + "\r\n\r\n", 400},
		// A folded (obs-fold) line continues the token's value, so it cannot smuggle a header:
		// the token is then simply wrong.
		{"obs-fold", "GET " + p + "/keypairs HTTP/1.1\r\nHost: x\r\nX-Auth-Token: " + s.token + "\r\n X-Project-Id: other\r\n\r\n", 401},
	}
	for _, c := range cases {
		if got := rawExchange(t, addr, c.req); got != c.status {
			t.Errorf("%s: status %d, want %d", c.name, got, c.status)
		}
	}
	// A bare LF ends a header line for Go's server: the "injected" header is just a header,
	// and the request is judged on it (a project mismatch here), never a 5xx.
	req := "GET " + p + "/keypairs HTTP/1.1\r\nHost: x\r\nX-Auth-Token: " + s.token + "\nX-Project-Id: " + strings.Repeat("ab", 16) + "\r\n\r\n"
	if got := rawExchange(t, addr, req); got != 403 && got != 400 {
		t.Errorf("bare LF: status %d, want 400 or 403", got)
	}
	s.must(200, "GET", "/keypairs", nil)
}

// TestSlowClients checks that slowloris-style clients, one dribbling its headers and one that
// never finishes its body, are cut by the server's timeouts while others are served.
func TestSlowClients(t *testing.T) {
	t.Parallel()
	s := setup(t, func(c *daemon.Config) {
		c.ReadHeaderTimeout = 500 * time.Millisecond
		c.ReadTimeout = time.Second
	})
	if s.main.HTTPServer().ReadHeaderTimeout != 500*time.Millisecond || s.main.HTTPServer().ReadTimeout != time.Second ||
		s.main.HTTPServer().WriteTimeout <= 0 || s.main.HTTPServer().IdleTimeout <= 0 || s.main.HTTPServer().MaxHeaderBytes <= 0 {
		t.Fatalf("server limits: %+v", s.main.HTTPServer())
	}
	// The defaults: TestReadTimeoutDefaults in daemon.
	addr := s.main.Addr()
	p := "/v3/" + s.project

	// cut dials and runs write; it reports how long the server took to close the connection.
	cut := func(name string, write func(c net.Conn) error) <-chan time.Duration {
		done := make(chan time.Duration, 1)
		go func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				done <- 0
				return
			}
			defer c.Close()
			start := time.Now()
			c.SetDeadline(start.Add(15 * time.Second))
			werr := write(c)
			// Whatever the server sent, it must then close: a read returns EOF or a reset.
			io.Copy(io.Discard, c)
			if werr == nil && time.Since(start) >= 15*time.Second {
				t.Errorf("%s: the connection was not cut", name)
			}
			done <- time.Since(start)
		}()
		return done
	}
	headerBytes := "POST " + p + "/keypairs HTTP/1.1\r\nHost: x\r\nX-Auth-Token: " + s.token + "\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
	var slow []<-chan time.Duration
	for range 3 {
		slow = append(slow, cut("byte by byte headers", func(c net.Conn) error {
			for i := range len(headerBytes) {
				if _, err := c.Write([]byte{headerBytes[i]}); err != nil {
					return err
				}
				time.Sleep(200 * time.Millisecond)
			}
			return nil
		}))
		slow = append(slow, cut("unfinished body", func(c net.Conn) error {
			if _, err := io.WriteString(c, headerBytes+`{"keypair":`); err != nil {
				return err
			}
			// Keep dribbling the body; the read deadline still ends it.
			for range 50 {
				time.Sleep(200 * time.Millisecond)
				if _, err := c.Write([]byte(" ")); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	// While they hang, the service answers others promptly.
	for range 5 {
		start := time.Now()
		s.must(200, "GET", "/keypairs", nil)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("a normal request took %v while slow clients hang", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i, ch := range slow {
		if d := <-ch; d > 5*time.Second {
			t.Errorf("slow client %d held its connection for %v", i, d)
		}
	}
	s.must(200, "GET", "/keypairs", nil)
}
