package e2e

import (
	"net/url"
	"strings"
	"testing"
)

// bodyRoutes are the routes that decode a request body, with the service's real handlers
// behind them; FuzzRequestBodies picks one per input. Identity routes that would lock the
// fuzzer out (changing or deleting the admin) are left out: their decoders are the same
// object readers as the routes listed.
var bodyRoutes = []struct{ method, path string }{
	{"POST", "/v3/{p}/keypairs"},
	{"PUT", "/v3/{p}/keypairs/k"},
	{"POST", "/v3/{p}/keypairs/batch-import"},
	{"POST", "/v3/{p}/keypairs/private-key/import"},
	{"POST", "/v3/{p}/keypairs/private-key/export"},
	{"POST", "/v3/{p}/keypairs/private-key/batch-export"},
	{"POST", "/v3/{p}/keypairs/associate"},
	{"POST", "/v3/{p}/keypairs/batch-associate"},
	{"POST", "/v3/{p}/keypairs/disassociate"},
	{"POST", "/v3/{p}/servers"},
	{"PUT", "/v3/{p}/servers/s1"},
	{"POST", "/v3/auth/tokens"},
	{"POST", "/v3/projects"},
	{"POST", "/v3/users"},
	{"POST", "/v3/domains"},
	{"POST", "/v3.0/OS-CREDENTIAL/credentials"},
	{"POST", "/v3.0/OS-CREDENTIAL/securitytokens"},
}

// listRoutes are the list calls whose query FuzzListQuery varies.
var listRoutes = []string{
	"/v3/{p}/keypairs", "/v3/{p}/servers", "/v3/{p}/running-tasks", "/v3/{p}/failed-tasks",
	"/v3/projects", "/v3/auth/projects", "/v3.0/OS-CREDENTIAL/credentials", "/v3/users", "/v3/domains",
}

// listParameters are the query parameters each list call reads: given more than once, any of
// them is refused with 400 (docs/SECURITY.md 6.5).
var listParameters = map[string][]string{
	"/v3/{p}/keypairs":                {"limit", "marker"},
	"/v3/{p}/servers":                 {"limit", "offset"},
	"/v3/{p}/running-tasks":           {"limit", "offset"},
	"/v3/{p}/failed-tasks":            {"limit", "offset"},
	"/v3/projects":                    {"name", "domain_id", "parent_id", "enabled", "is_domain", "page", "per_page"},
	"/v3.0/OS-CREDENTIAL/credentials": {"user_id"},
	"/v3/users":                       {"name", "domain_id", "enabled", "page", "per_page"},
	"/v3/domains":                     {"name", "enabled"},
}

// fuzzService is a service with a server s1 (on a closed port) and a key pair k to act on.
func fuzzService(f *testing.F) *service {
	s := setup(f)
	s.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"id": "s1", "address": "127.0.0.1", "port": closedPort(f)}})
	s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "k"}})
	return s
}

// FuzzRequestBodies sends arbitrary bodies to every route that decodes one: the answer is
// never a 5xx, and every error carries a KPS code.
func FuzzRequestBodies(f *testing.F) {
	seeds := []string{
		`{"keypair":{"name":"f1"}}`, `{"keypair":{"description":"d"}}`,
		`[{"keypair":{"name":"f2","public_key":"ssh-ed25519 AAAA"}}]`,
		`{"keypair":{"name":"k","key_protection":{"private_key":"x","encryption":{"type":"default"}}}}`,
		`{"keypair":{"name":"k"}}`, `[{"keypair":{"name":"k"}}]`,
		`{"keypair_name":"k","server":{"id":"s1","auth":{"type":"password","key":"pw"}}}`,
		`{"batch_keypairs":[{"keypair_name":"k","server":{"id":"s1","port":22}}]}`,
		`{"server":{"id":"s1"}}`, `{"server":{"id":"f3","address":"h","port":2222,"user":"deploy"}}`,
		`{"server":{"name":"n","host_keys":[]}}`,
		`{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","domain":{"name":"Default"},"password":"x"}}}}}`,
		`{"project":{"name":"f4"}}`, `{"user":{"name":"f5","password":"Passw0rd!x"}}`, `{"domain":{"name":"f6"}}`,
		`{"credential":{"description":"d"}}`,
		`{"auth":{"identity":{"methods":["token"],"token":{"duration_seconds":900}}}}`,
		`{"a":1,"a":2}`, `[[[[`, `1e400`, `"\u202e"`, `null`,
	}
	for i, b := range seeds {
		f.Add(uint8(i%len(bodyRoutes)), []byte(b))
		f.Add(uint8((i+3)%len(bodyRoutes)), []byte(b))
	}
	s := fuzzService(f)
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		r := bodyRoutes[int(route)%len(bodyRoutes)]
		got, out, err := s.send(hostileCase{method: r.method, path: r.path, body: string(body), contentType: "application/json"})
		if err != nil {
			t.Fatalf("%s %s %q: %v", r.method, r.path, body, err)
		}
		checkAnswer(t, r.method+" "+r.path, got, out)
	})
}

// FuzzListQuery sends arbitrary query strings to the list calls.
func FuzzListQuery(f *testing.F) {
	for i, q := range []string{
		"limit=10&offset=0", "limit=0", "limit=1001", "offset=-1", "limit=1e3", "marker=k",
		"marker=a%2Fb", "limit=%00", "limit=1&limit=x", "name=local-1&domain_id=x&enabled=true",
		"page=2&per_page=10", "user_id=../../x", "offset=2147483648", "%zz", "marker=%E2%80%AE",
		"marker=a&marker=b", "offset=0&limit=1&offset=0", "name=a&name=a", "enabled=true&x=1&enabled=false",
		"user_id=a&user_id=b", "limit=1;limit=2", "limit=1&%6cimit=2", "page=1&page=1&per_page=1",
	} {
		f.Add(uint8(i%len(listRoutes)), q)
	}
	s := fuzzService(f)
	f.Fuzz(func(t *testing.T, route uint8, query string) {
		if strings.ContainsAny(query, " #\x7f") || strings.IndexFunc(query, func(r rune) bool { return r < 0x20 }) >= 0 {
			return // not a query a client can send; the raw TCP tests cover the request line
		}
		path := listRoutes[int(route)%len(listRoutes)] + "?" + query
		got, out, err := s.send(hostileCase{method: "GET", path: path})
		if err != nil {
			return // net/http refused to build the URL
		}
		checkAnswer(t, "GET "+path, got, out)
		// The handler reads the query as url.ParseQuery does, pairs it cannot parse dropped.
		q, _ := url.ParseQuery(query)
		for _, name := range listParameters[listRoutes[int(route)%len(listRoutes)]] {
			if len(q[name]) > 1 && got != 400 {
				t.Fatalf("GET %s: %s given %d times answered %d %v", path, name, len(q[name]), got, out)
			}
		}
	})
}

// checkAnswer fails a 5xx and an error without a KPS code.
func checkAnswer(t *testing.T, what string, status int, out map[string]any) {
	t.Helper()
	if status >= 500 || status == 0 {
		t.Fatalf("%s: %d %v", what, status, out)
	}
	if status >= 400 {
		if c, _ := out["error_code"].(string); !strings.HasPrefix(c, "KPS.") || out["error_msg"] == "" {
			t.Fatalf("%s: %d without a KPS code: %v", what, status, out)
		}
	}
}
