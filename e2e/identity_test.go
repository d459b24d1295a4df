package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/iam"
)

// The identity and management routes (auth.md §5.4–5.5, §8, §9) against the real `kps serve`:
// tokens, AK/SK signatures and security tokens on real connections.

var (
	hex32       = regexp.MustCompile(`^[0-9a-f]{32}$`)
	akPattern   = regexp.MustCompile(`^[A-Z0-9]{20}$`)
	skPattern   = regexp.MustCompile(`^[A-Za-z0-9]{40}$`)
	stPattern   = regexp.MustCompile(`^ST1[A-Za-z0-9_-]{64}$`)
	timePattern = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`)
)

// transcript keeps every response body and header of a test, so that it can tell where a
// secret appeared.
type transcript struct {
	mu        sync.Mutex
	responses []string
}

func (tr *transcript) add(r string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.responses = append(tr.responses, r)
}

// count returns how many responses contain s.
func (tr *transcript) count(s string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, r := range tr.responses {
		if strings.Contains(r, s) {
			n++
		}
	}
	return n
}

// idClient calls the identity API with one credential: a token, or an AK/SK (with a security
// token for a temporary credential) that signs every request as the Huawei Go SDK does.
type idClient struct {
	t              *testing.T
	base           string
	token          string
	ak, sk, stoken string
	tr             *transcript
}

type idResponse struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func newTranscript() *transcript { return &transcript{} }

// as returns a client with the service's current token.
func as(t *testing.T, s *service, tr *transcript) *idClient {
	return &idClient{t: t, base: s.base, token: s.token, tr: tr}
}

// withKey returns a client of the same service that signs with ak/sk (and sends the security
// token st when not empty).
func (c *idClient) withKey(ak, sk, st string) *idClient {
	return &idClient{t: c.t, base: c.base, ak: ak, sk: sk, stoken: st, tr: c.tr}
}

func (c *idClient) do(method, path string, body any, headers ...string) idResponse {
	c.t.Helper()
	var raw []byte
	switch b := body.(type) {
	case nil:
	case string:
		raw = []byte(b)
	default:
		raw, _ = json.Marshal(b)
	}
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(raw))
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json;charset=UTF-8")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	switch {
	case c.ak != "":
		if c.stoken != "" {
			req.Header.Set("X-Security-Token", c.stoken)
		}
		if err := iam.Sign(req, raw, c.ak, c.sk, time.Now()); err != nil {
			c.t.Fatal(err)
		}
	case c.token != "":
		req.Header.Set("X-Auth-Token", c.token)
	}
	resp, err := apiClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := idResponse{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	var hdr strings.Builder
	resp.Header.Write(&hdr)
	c.tr.add(hdr.String() + "\n" + out.raw)
	if len(b) > 0 {
		if err := json.Unmarshal(b, &out.body); err != nil {
			c.t.Fatalf("%s %s: %d non-JSON body %q", method, path, resp.StatusCode, b)
		}
	}
	id := resp.Header.Get("X-Request-Id")
	if !hex32.MatchString(id) {
		c.t.Errorf("%s %s: X-Request-Id %q", method, path, id)
	}
	// Every identity route answers with the trace ID the Huawei SDK quotes (auth.md §8), except
	// the routing errors, which no route answers.
	if got := resp.Header.Get("X-IAM-Trace-Id"); got != id && resp.StatusCode != 404 && resp.StatusCode != 405 {
		c.t.Errorf("%s %s: X-IAM-Trace-Id %q, X-Request-Id %q", method, path, got, id)
	}
	if resp.StatusCode >= 400 && method != "HEAD" {
		e, _ := out.body["error"].(map[string]any)
		if code, _ := out.body["error_code"].(string); !strings.HasPrefix(code, "KPS.") || out.body["error_msg"] == "" ||
			e == nil || e["code"] != float64(resp.StatusCode) || e["message"] != out.body["error_msg"] {
			c.t.Errorf("%s %s: identity error body %s", method, path, b)
		}
	}
	return out
}

// want asserts the status and returns the body.
func (c *idClient) want(status int, method, path string, body any, headers ...string) map[string]any {
	c.t.Helper()
	r := c.do(method, path, body, headers...)
	if r.status != status {
		c.t.Fatalf("%s %s: %d %s, want %d", method, path, r.status, r.raw, status)
	}
	return r.body
}

// wantErr asserts an error status and KPS code.
func (c *idClient) wantErr(status int, code, method, path string, body any, headers ...string) {
	c.t.Helper()
	r := c.do(method, path, body, headers...)
	if r.status != status || r.body["error_code"] != code {
		c.t.Fatalf("%s %s: %d %s, want %d %s", method, path, r.status, r.raw, status, code)
	}
}

// login issues a token by password; scope is the JSON of auth.scope, or "" for none.
func (c *idClient) login(domain, user, password, scope string) (*idClient, map[string]any) {
	c.t.Helper()
	body := `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":` + jsonText(user) +
		`,"domain":{"name":` + jsonText(domain) + `},"password":` + jsonText(password) + `}}}`
	if scope != "" {
		body += `,"scope":` + scope
	}
	body += `}}`
	anon := &idClient{t: c.t, base: c.base, tr: c.tr}
	req, _ := http.NewRequest("POST", c.base+"/v3/auth/tokens", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := apiClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	c.tr.add(string(raw))
	if resp.StatusCode != 201 {
		c.t.Fatalf("login %s/%s: %d %s", domain, user, resp.StatusCode, raw)
	}
	var out map[string]any
	json.Unmarshal(raw, &out)
	anon.token = resp.Header.Get("X-Subject-Token")
	return anon, out["token"].(map[string]any)
}

func projectScope(name, domain string) string {
	return `{"project":{"name":` + jsonText(name) + `,"domain":{"name":` + jsonText(domain) + `}}}`
}

func obj(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func list(v any) []any {
	a, _ := v.([]any)
	return a
}

// wantProject checks the shape and types of a project object (auth.md §8.2).
func wantProject(t *testing.T, v any, name, domainID string) map[string]any {
	t.Helper()
	p := obj(v)
	if !hex32.MatchString(str(p["id"])) || p["name"] != name || p["domain_id"] != domainID || p["parent_id"] != domainID ||
		p["is_domain"] != false || p["enabled"] != true || p["description"] != "" ||
		!strings.HasSuffix(str(obj(p["links"])["self"]), "/v3/projects/"+str(p["id"])) {
		t.Fatalf("project %v, want %s in domain %s", p, name, domainID)
	}
	return p
}

// wantListLinks checks the links of a list: self, and previous/next null (§8.2).
func wantListLinks(t *testing.T, body map[string]any, self string) {
	t.Helper()
	l := obj(body["links"])
	if v, ok := l["previous"]; !ok || v != nil {
		t.Errorf("links.previous = %v", l)
	}
	if v, ok := l["next"]; !ok || v != nil {
		t.Errorf("links.next = %v", l)
	}
	if !strings.HasSuffix(str(l["self"]), self) || !strings.HasPrefix(str(l["self"]), "http://") {
		t.Errorf("links.self = %v, want …%s", l["self"], self)
	}
}

func (s *service) defaultDomainID(t *testing.T) string {
	t.Helper()
	return str(obj(list(as(t, s, newTranscript()).want(200, "GET", "/v3/auth/domains", nil)["domains"])[0])["id"])
}

// TestIdentityTokens: validation (GET/HEAD) and revocation (DELETE) of X-Subject-Token, the
// catalog in token bodies, and a revoked token's end on KPS routes (auth.md §5.4, §5.5, §8.4).
func TestIdentityTokens(t *testing.T) {
	t.Parallel()
	s := setup(t)
	tr := newTranscript()
	admin := as(t, s, tr)
	alice := as(t, s.addUser("alice", kps.RoleMember), tr)

	// The login itself carries the catalog; nocatalog drops it; an unscoped token has none.
	_, body := admin.login("Default", "admin", "admin-password-for-tests", projectScope("local-1", "Default"))
	wantCatalog(t, body["catalog"], s.base)
	resp, err := apiClient.Post(s.base+"/v3/auth/tokens?nocatalog", "application/json", strings.NewReader(
		`{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","domain":{"name":"Default"},"password":"admin-password-for-tests"}}},"scope":{"project":{"name":"local-1","domain":{"name":"Default"}}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	var nocat map[string]any
	json.NewDecoder(resp.Body).Decode(&nocat)
	resp.Body.Close()
	if _, ok := obj(nocat["token"])["catalog"]; ok || obj(nocat["token"])["project"] == nil {
		t.Errorf("?nocatalog token %v", nocat)
	}

	// Own token: 200, the subject echoed, never cached, live roles and the catalog.
	r := admin.do("GET", "/v3/auth/tokens", nil, "X-Subject-Token", admin.token)
	if r.status != 200 || r.header.Get("X-Subject-Token") != admin.token || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("validate own token: %d %v %s", r.status, r.header, r.raw)
	}
	tok := obj(r.body["token"])
	if obj(tok["user"])["name"] != "admin" || obj(tok["project"])["id"] != s.project || len(list(tok["roles"])) != 3 ||
		!timePattern.MatchString(str(tok["expires_at"])) || len(list(tok["audit_ids"])) != 1 || tok["is_domain"] != false {
		t.Fatalf("token body %v", tok)
	}
	wantCatalog(t, tok["catalog"], s.base)
	tok = obj(admin.want(200, "GET", "/v3/auth/tokens?nocatalog=1", nil, "X-Subject-Token", admin.token)["token"])
	if _, ok := tok["catalog"]; ok {
		t.Errorf("?nocatalog: %v", tok)
	}
	if r := admin.do("HEAD", "/v3/auth/tokens", nil, "X-Subject-Token", admin.token); r.status != 200 || r.raw != "" ||
		r.header.Get("X-Subject-Token") != admin.token {
		t.Fatalf("HEAD: %d %q", r.status, r.raw)
	}

	// The domain admin may look at alice's token; alice may not look at the admin's: the same
	// 404 as an unknown token. A missing header is a missing parameter.
	if tok := obj(admin.want(200, "GET", "/v3/auth/tokens", nil, "X-Subject-Token", alice.token)["token"]); obj(tok["user"])["name"] != "alice" ||
		len(list(tok["roles"])) != 2 {
		t.Fatalf("alice's token seen by the admin: %v", tok)
	}
	alice.wantErr(404, "KPS.6109", "GET", "/v3/auth/tokens", nil, "X-Subject-Token", admin.token)
	alice.wantErr(404, "KPS.6109", "DELETE", "/v3/auth/tokens", nil, "X-Subject-Token", admin.token)
	alice.wantErr(404, "KPS.6109", "GET", "/v3/auth/tokens", nil, "X-Subject-Token", "KPT1"+strings.Repeat("x", 43))
	if r := alice.do("HEAD", "/v3/auth/tokens", nil, "X-Subject-Token", "nonsense"); r.status != 404 || r.raw != "" {
		t.Fatalf("HEAD unknown: %d %q", r.status, r.raw)
	}
	alice.wantErr(400, "KPS.6002", "GET", "/v3/auth/tokens", nil)
	(&idClient{t: t, base: s.base, tr: tr}).wantErr(401, "KPS.6101", "GET", "/v3/auth/tokens", nil, "X-Subject-Token", admin.token)

	// Alice revokes her own token with itself: 204; it is dead everywhere.
	alice.want(204, "DELETE", "/v3/auth/tokens", nil, "X-Subject-Token", alice.token)
	if code, out := s.raw("GET", "/v3/"+s.project+"/keypairs", nil, map[string]string{"X-Auth-Token": alice.token}); code != 401 || out["error_code"] != "KPS.6102" {
		t.Fatalf("revoked token on a KPS route: %d %v", code, out)
	}
	admin.wantErr(404, "KPS.6109", "GET", "/v3/auth/tokens", nil, "X-Subject-Token", alice.token)
	admin.wantErr(404, "KPS.6109", "DELETE", "/v3/auth/tokens", nil, "X-Subject-Token", alice.token)

	// The admin revokes another user's token.
	bob := as(t, s.addUser("bob", kps.RoleReader), tr)
	admin.want(204, "DELETE", "/v3/auth/tokens", nil, "X-Subject-Token", bob.token)
	bob.wantErr(401, "KPS.6102", "GET", "/v3/auth/projects", nil)
}

// wantCatalog checks the catalog of auth.md §8.4: identity, compute and kps, each with one
// public endpoint in the region, stable 32-hex IDs.
func wantCatalog(t *testing.T, v any, base string) {
	t.Helper()
	want := map[string][2]string{"identity": {"keystone", base + "/v3"}, "compute": {"nova", base + "/compute/v2.1"}, "kps": {"kps", base}}
	services := list(v)
	if len(services) != 3 {
		t.Fatalf("catalog %v", v)
	}
	ids := map[string]bool{}
	for _, sv := range services {
		m := obj(sv)
		w, ok := want[str(m["type"])]
		eps := list(m["endpoints"])
		if !ok || m["name"] != w[0] || !hex32.MatchString(str(m["id"])) || len(eps) != 1 {
			t.Fatalf("catalog service %v", m)
		}
		ep := obj(eps[0])
		if ep["interface"] != "public" || ep["region"] != "local-1" || ep["region_id"] != "local-1" || ep["url"] != w[1] ||
			!hex32.MatchString(str(ep["id"])) {
			t.Fatalf("catalog endpoint %v", ep)
		}
		ids[str(m["id"])], ids[str(ep["id"])] = true, true
	}
	if len(ids) != 6 {
		t.Errorf("catalog IDs are not distinct: %v", v)
	}
}

// TestIdentityReads: project discovery as the Huawei SDK does it, filters, pages, visibility
// across users and domains, and the other reads of auth.md §8.3.
func TestIdentityReads(t *testing.T) {
	t.Parallel()
	s := setup(t)
	tr := newTranscript()
	admin := as(t, s, tr)
	alice := as(t, s.addUser("alice", kps.RoleMember), tr)
	defaultDomain := s.defaultDomainID(t)

	// The SDK's discovery call: exactly one project, the region's.
	for _, c := range []*idClient{admin, alice} {
		out := c.want(200, "GET", "/v3/projects?name=local-1", nil)
		ps := list(out["projects"])
		if len(ps) != 1 {
			t.Fatalf("GET /v3/projects?name=local-1: %v", out)
		}
		if wantProject(t, ps[0], "local-1", defaultDomain)["id"] != s.project {
			t.Fatalf("discovered %v, want %s", ps[0], s.project)
		}
		wantListLinks(t, out, "/v3/projects?name=local-1")
	}

	// A second project: the domain admin sees it, alice (no role there) does not.
	dev := admin.want(201, "POST", "/v3/projects", map[string]any{"project": map[string]any{"name": "local-1_dev"}})
	devID := str(wantProject(t, dev["project"], "local-1_dev", defaultDomain)["id"])
	if n := len(list(admin.want(200, "GET", "/v3/projects", nil)["projects"])); n != 2 {
		t.Fatalf("admin sees %d projects", n)
	}
	if ps := list(alice.want(200, "GET", "/v3/projects", nil)["projects"]); len(ps) != 1 || obj(ps[0])["id"] != s.project {
		t.Fatalf("alice sees %v", ps)
	}
	wantProject(t, alice.want(200, "GET", "/v3/projects/"+s.project, nil)["project"], "local-1", defaultDomain)
	wantProject(t, admin.want(200, "GET", "/v3/projects/"+devID, nil)["project"], "local-1_dev", defaultDomain)
	alice.wantErr(403, "KPS.9006", "GET", "/v3/projects/"+devID, nil)
	alice.wantErr(403, "KPS.9006", "GET", "/v3/projects/0123456789abcdef0123456789abcdef", nil)
	alice.wantErr(403, "KPS.9006", "GET", "/v3/projects/not-even-an-id", nil)

	// Filters (AND); a foreign domain is an empty list, not an error.
	for q, n := range map[string]int{
		"enabled=true": 2, "enabled=FALSE": 0, "is_domain=false": 2, "is_domain=true": 0,
		"domain_id=" + defaultDomain: 2, "domain_id=0123456789abcdef0123456789abcdef": 0, "parent_id=" + defaultDomain: 2,
		"name=local-1_dev&domain_id=" + defaultDomain: 1, "name=nope": 0, "name=local-1&parent_id=x&domain_id=y": 0,
	} {
		out := admin.want(200, "GET", "/v3/projects?"+q, nil)
		if got := len(list(out["projects"])); got != n {
			t.Errorf("?%s: %d projects, want %d", q, got, n)
		}
	}
	admin.wantErr(400, "KPS.6003", "GET", "/v3/projects?enabled=yes", nil)
	admin.wantErr(400, "KPS.6003", "GET", "/v3/projects?per_page=0", nil)
	admin.wantErr(400, "KPS.6003", "GET", "/v3/projects?page=-1", nil)
	// Pages: next until the last page, then null.
	p1 := admin.want(200, "GET", "/v3/projects?per_page=1", nil)
	if len(list(p1["projects"])) != 1 || obj(p1["links"])["next"] == nil || obj(p1["links"])["previous"] != nil {
		t.Fatalf("page 1: %v", p1)
	}
	p2 := admin.want(200, "GET", "/v3/projects?per_page=1&page=2", nil)
	if len(list(p2["projects"])) != 1 || obj(p2["links"])["next"] != nil || obj(p2["links"])["previous"] == nil ||
		obj(list(p1["projects"])[0])["id"] == obj(list(p2["projects"])[0])["id"] {
		t.Fatalf("page 2: %v", p2)
	}

	// /v3/auth/projects and /v3/users/{id}/projects: what the user may scope to.
	aliceID := str(obj(obj(alice.want(200, "GET", "/v3/auth/tokens", nil, "X-Subject-Token", alice.token)["token"])["user"])["id"])
	for _, out := range []map[string]any{
		alice.want(200, "GET", "/v3/auth/projects", nil),
		alice.want(200, "GET", "/v3/users/"+aliceID+"/projects", nil),
		admin.want(200, "GET", "/v3/users/"+aliceID+"/projects", nil),
	} {
		if ps := list(out["projects"]); len(ps) != 1 || obj(ps[0])["id"] != s.project {
			t.Fatalf("projects of alice: %v", out)
		}
		wantListLinks(t, out, "/projects")
	}
	if n := len(list(admin.want(200, "GET", "/v3/auth/projects", nil)["projects"])); n != 2 {
		t.Errorf("admin may scope to %d projects", n)
	}
	adminID := str(obj(obj(admin.want(200, "GET", "/v3/auth/tokens", nil, "X-Subject-Token", admin.token)["token"])["user"])["id"])
	alice.wantErr(403, "KPS.9006", "GET", "/v3/users/"+adminID+"/projects", nil)
	admin.wantErr(404, "KPS.6110", "GET", "/v3/users/0123456789abcdef0123456789abcdef/projects", nil)

	// /v3/auth/domains: exactly the caller's domain. /v3/auth/catalog. /v3/roles.
	out := alice.want(200, "GET", "/v3/auth/domains", nil)
	if ds := list(out["domains"]); len(ds) != 1 || obj(ds[0])["name"] != "Default" || obj(ds[0])["enabled"] != true ||
		obj(ds[0])["description"] != "" || !strings.HasSuffix(str(obj(obj(ds[0])["links"])["self"]), "/v3/domains/"+defaultDomain) {
		t.Fatalf("auth/domains %v", out)
	}
	wantListLinks(t, out, "/v3/auth/domains")
	out = alice.want(200, "GET", "/v3/auth/catalog", nil)
	wantCatalog(t, out["catalog"], s.base)
	wantListLinks(t, out, "/v3/auth/catalog")
	// The Terraform provider sends X-Project-Id on this call; identity routes ignore it.
	alice.want(200, "GET", "/v3/auth/catalog", nil, "X-Project-Id", "0123456789abcdef0123456789abcdef")
	out = alice.want(200, "GET", "/v3/roles", nil)
	var names []string
	for _, r := range list(out["roles"]) {
		if !hex32.MatchString(str(obj(r)["id"])) {
			t.Errorf("role %v", r)
		}
		names = append(names, str(obj(r)["name"]))
	}
	if strings.Join(names, ",") != "reader,member,admin" {
		t.Fatalf("roles %v", out)
	}

	// Another domain sees nothing of Default, and Default's projects are foreign to it.
	acmeDomain := createDomainAdmin(t, admin, "acme", "bob")
	bob, _ := admin.login("acme", "bob", "bob-password-1", projectScope("local-1", "acme"))
	ps := list(bob.want(200, "GET", "/v3/projects?name=local-1", nil)["projects"])
	if len(ps) != 1 || obj(ps[0])["id"] == s.project {
		t.Fatalf("bob discovers %v", ps)
	}
	wantProject(t, ps[0], "local-1", acmeDomain)
	bob.wantErr(403, "KPS.9006", "GET", "/v3/projects/"+s.project, nil)
	if n := len(list(bob.want(200, "GET", "/v3/projects?domain_id="+defaultDomain, nil)["projects"])); n != 0 {
		t.Errorf("bob lists %d projects of Default", n)
	}
	// A user of that domain without any role: an unscoped token that sees no project.
	carolID := str(obj(bob.want(201, "POST", "/v3/users", map[string]any{"user": map[string]any{"name": "carol", "password": "carol-password-1"}})["user"])["id"])
	carol, body := admin.login("acme", "carol", "carol-password-1", "")
	if body["project"] != nil || body["catalog"] != nil || body["roles"] != nil {
		t.Fatalf("carol's unscoped token %v", body)
	}
	for _, path := range []string{"/v3/projects", "/v3/auth/projects", "/v3/users/" + carolID + "/projects"} {
		if ps := list(carol.want(200, "GET", path, nil)["projects"]); len(ps) != 0 {
			t.Errorf("carol: %s = %v", path, ps)
		}
	}
	carol.wantErr(403, "KPS.9006", "GET", "/v3/projects/"+s.project, nil)
	if ds := list(carol.want(200, "GET", "/v3/auth/domains", nil)["domains"]); len(ds) != 1 || obj(ds[0])["name"] != "acme" {
		t.Errorf("carol's domains %v", ds)
	}
}

// createDomainAdmin creates a domain as the operator admin with a user holding the admin role
// on it (password <user>-password-1) and returns the domain's ID.
func createDomainAdmin(t *testing.T, operator *idClient, domain, user string) string {
	t.Helper()
	d := obj(operator.want(201, "POST", "/v3/domains", map[string]any{"domain": map[string]any{"name": domain, "description": "d"}})["domain"])
	if !hex32.MatchString(str(d["id"])) || d["name"] != domain || d["enabled"] != true || d["description"] != "d" {
		t.Fatalf("domain %v", d)
	}
	u := obj(operator.want(201, "POST", "/v3/users", map[string]any{"user": map[string]any{"name": user, "domain_id": d["id"],
		"password": user + "-password-1"}})["user"])
	if u["domain_id"] != d["id"] {
		t.Fatalf("user %v", u)
	}
	operator.want(204, "PUT", "/v3/domains/"+str(d["id"])+"/users/"+str(u["id"])+"/roles/admin", nil)
	return str(d["id"])
}

// TestIdentityCredentials: permanent access keys (auth.md §3.5, §9): the SK shown once and
// never again, at most two per user, an inactive key refused, who manages whose keys, and the
// SDK's project discovery signed with a key created here.
func TestIdentityCredentials(t *testing.T) {
	t.Parallel()
	s := setup(t)
	tr := newTranscript()
	admin := as(t, s, tr)
	alice := as(t, s.addUser("alice", kps.RoleMember), tr)
	rita := as(t, s.addUser("rita", kps.RoleReader), tr)
	userID := func(c *idClient) string {
		return str(obj(obj(c.want(200, "GET", "/v3/auth/tokens", nil, "X-Subject-Token", c.token)["token"])["user"])["id"])
	}
	aliceID, adminID := userID(alice), userID(admin)

	r := alice.do("POST", "/v3.0/OS-CREDENTIAL/credentials", map[string]any{"credential": map[string]any{"description": "ci"}})
	if r.status != 201 || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("create: %d %v %s", r.status, r.header, r.raw)
	}
	c := obj(r.body["credential"])
	ak, sk := str(c["access"]), str(c["secret"])
	if !akPattern.MatchString(ak) || !skPattern.MatchString(sk) || c["user_id"] != aliceID || c["status"] != "active" ||
		c["description"] != "ci" || !timePattern.MatchString(str(c["create_time"])) || len(c) != 6 {
		t.Fatalf("credential %v", c)
	}

	// The SDK's discovery call, signed with the new key: exactly the region's project.
	key := alice.withKey(ak, sk, "")
	out := key.want(200, "GET", "/v3/projects?name=local-1", nil)
	if ps := list(out["projects"]); len(ps) != 1 || obj(ps[0])["id"] != s.project {
		t.Fatalf("signed discovery %v", out)
	}
	key.want(200, "GET", "/v3/auth/catalog", nil)

	// Lists and reads never show the SK; the last use is recorded.
	out = alice.want(200, "GET", "/v3.0/OS-CREDENTIAL/credentials", nil)
	if ks := list(out["credentials"]); len(ks) != 1 || obj(ks[0])["access"] != ak || obj(ks[0])["secret"] != nil ||
		!timePattern.MatchString(str(obj(ks[0])["last_use_time"])) || obj(ks[0])["status"] != "active" {
		t.Fatalf("list %v", out)
	}
	if got := obj(admin.want(200, "GET", "/v3.0/OS-CREDENTIAL/credentials/"+ak, nil)["credential"]); got["access"] != ak ||
		got["user_id"] != aliceID || got["secret"] != nil {
		t.Fatalf("show %v", got)
	}

	// Two keys per user; the third is 400 KPS.6003, whoever asks.
	second := obj(alice.want(201, "POST", "/v3.0/OS-CREDENTIAL/credentials", map[string]any{"credential": map[string]any{"user_id": aliceID}})["credential"])
	alice.wantErr(400, "KPS.6003", "POST", "/v3.0/OS-CREDENTIAL/credentials", map[string]any{"credential": map[string]any{}})
	admin.wantErr(400, "KPS.6003", "POST", "/v3.0/OS-CREDENTIAL/credentials", map[string]any{"credential": map[string]any{"user_id": aliceID}})
	if ks := list(admin.want(200, "GET", "/v3.0/OS-CREDENTIAL/credentials?user_id="+aliceID, nil)["credentials"]); len(ks) != 2 {
		t.Fatalf("alice's keys seen by the admin: %v", ks)
	}

	// An inactive key is refused (401), an active one works again.
	got := obj(alice.want(200, "PUT", "/v3.0/OS-CREDENTIAL/credentials/"+ak, map[string]any{"credential": map[string]any{"status": "inactive"}})["credential"])
	if got["status"] != "inactive" || got["description"] != "ci" || got["secret"] != nil {
		t.Fatalf("deactivated %v", got)
	}
	key.wantErr(401, "KPS.6102", "GET", "/v3/projects?name=local-1", nil)
	alice.wantErr(400, "KPS.6003", "PUT", "/v3.0/OS-CREDENTIAL/credentials/"+ak, map[string]any{"credential": map[string]any{"status": "paused"}})
	alice.wantErr(400, "KPS.6002", "PUT", "/v3.0/OS-CREDENTIAL/credentials/"+ak, map[string]any{})
	alice.wantErr(400, "KPS.6003", "PUT", "/v3.0/OS-CREDENTIAL/credentials/"+ak, map[string]any{"credential": map[string]any{"status": 1}})
	alice.wantErr(400, "KPS.6001", "PUT", "/v3.0/OS-CREDENTIAL/credentials/"+ak, "[]")
	alice.want(200, "PUT", "/v3.0/OS-CREDENTIAL/credentials/"+ak, map[string]any{"credential": map[string]any{"status": "active"}})
	key.want(200, "GET", "/v3/projects?name=local-1", nil)

	// Who manages whose keys: a reader cannot create one, but may list its own (none); a
	// member cannot touch the admin's keys; the admin manages alice's.
	rita.wantErr(403, "KPS.9006", "POST", "/v3.0/OS-CREDENTIAL/credentials", map[string]any{"credential": map[string]any{}})
	if ks := list(rita.want(200, "GET", "/v3.0/OS-CREDENTIAL/credentials", nil)["credentials"]); len(ks) != 0 {
		t.Errorf("rita's keys %v", ks)
	}
	adminKey := obj(admin.want(201, "POST", "/v3.0/OS-CREDENTIAL/credentials", map[string]any{"credential": map[string]any{}})["credential"])
	alice.wantErr(403, "KPS.9006", "GET", "/v3.0/OS-CREDENTIAL/credentials?user_id="+adminID, nil)
	alice.wantErr(403, "KPS.9006", "GET", "/v3.0/OS-CREDENTIAL/credentials/"+str(adminKey["access"]), nil)
	alice.wantErr(403, "KPS.9006", "DELETE", "/v3.0/OS-CREDENTIAL/credentials/"+str(adminKey["access"]), nil)
	alice.wantErr(403, "KPS.9006", "POST", "/v3.0/OS-CREDENTIAL/credentials", map[string]any{"credential": map[string]any{"user_id": adminID}})
	admin.want(204, "DELETE", "/v3.0/OS-CREDENTIAL/credentials/"+str(second["access"]), nil)
	admin.wantErr(404, "KPS.6110", "DELETE", "/v3.0/OS-CREDENTIAL/credentials/"+str(second["access"]), nil)
	admin.wantErr(404, "KPS.6110", "GET", "/v3.0/OS-CREDENTIAL/credentials?user_id=0123456789abcdef0123456789abcdef", nil)
	// A key of another domain looks missing to this domain's admin.
	createDomainAdmin(t, admin, "acme", "bob")
	bob, _ := admin.login("acme", "bob", "bob-password-1", "")
	bobKey := obj(bob.want(201, "POST", "/v3.0/OS-CREDENTIAL/credentials", map[string]any{"credential": map[string]any{}})["credential"])
	// (Any admin of Default is the operator admin, who administers every domain; the admin of
	// a third domain is not.)
	createDomainAdmin(t, admin, "zeta", "zed")
	domainAdmin, _ := admin.login("zeta", "zed", "zed-password-1", "")
	domainAdmin.wantErr(404, "KPS.6110", "GET", "/v3.0/OS-CREDENTIAL/credentials/"+str(bobKey["access"]), nil)
	domainAdmin.wantErr(404, "KPS.6110", "PUT", "/v3.0/OS-CREDENTIAL/credentials/"+str(bobKey["access"]), map[string]any{"credential": map[string]any{"status": "inactive"}})
	bob.withKey(str(bobKey["access"]), str(bobKey["secret"]), "").want(200, "GET", "/v3/auth/domains", nil)

	// The SKs appeared in their creation responses only.
	for _, secret := range []string{sk, str(second["secret"]), str(adminKey["secret"]), str(bobKey["secret"])} {
		if n := tr.count(secret); n != 1 {
			t.Errorf("an SK appears in %d responses, want 1 (its creation)", n)
		}
	}
}

// TestIdentityTemporaryCredentials: POST /v3.0/OS-CREDENTIAL/securitytokens (auth.md §3.6): the
// shape, the duration rules, the binding to the source token's project and life, and who may
// derive from which token.
func TestIdentityTemporaryCredentials(t *testing.T) {
	t.Parallel()
	s := setup(t)
	tr := newTranscript()
	admin := as(t, s, tr)
	alice := as(t, s.addUser("alice", kps.RoleMember), tr)
	body := func(token map[string]any) map[string]any {
		return map[string]any{"auth": map[string]any{"identity": map[string]any{"methods": []string{"token"}, "token": token}}}
	}

	before := time.Now()
	r := alice.do("POST", "/v3.0/OS-CREDENTIAL/securitytokens", body(map[string]any{"duration_seconds": 900}))
	if r.status != 201 || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("securitytokens: %d %s", r.status, r.raw)
	}
	c := obj(r.body["credential"])
	ak, sk, st := str(c["access"]), str(c["secret"]), str(c["securitytoken"])
	if !akPattern.MatchString(ak) || !skPattern.MatchString(sk) || !stPattern.MatchString(st) || len(c) != 4 {
		t.Fatalf("temporary credential %v", c)
	}
	expires, err := time.Parse("2006-01-02T15:04:05.000000Z", str(c["expires_at"]))
	if err != nil || expires.Before(before.Add(15*time.Minute-time.Second)) || expires.After(time.Now().Add(15*time.Minute+time.Second)) {
		t.Fatalf("expires_at %v (%v)", c["expires_at"], err)
	}

	// It signs like a key, with its security token, for its token's project only.
	temp := alice.withKey(ak, sk, st)
	temp.want(200, "GET", "/v3/projects?name=local-1", nil)
	if code, out := signedKPS(t, s, temp, "GET", "/v3/"+s.project+"/keypairs"); code != 200 {
		t.Fatalf("temporary credential on its project: %d %v", code, out)
	}
	dev := obj(admin.want(201, "POST", "/v3/projects", map[string]any{"project": map[string]any{"name": "local-1_dev"}})["project"])
	admin.want(204, "PUT", "/v3/projects/"+str(dev["id"])+"/users/"+str(obj(obj(admin.want(200, "GET", "/v3/auth/tokens", nil, "X-Subject-Token", alice.token)["token"])["user"])["id"])+"/roles/member", nil)
	if code, out := signedKPS(t, s, temp, "GET", "/v3/"+str(dev["id"])+"/keypairs"); code != 403 || out["error_code"] != "KPS.6103" {
		t.Fatalf("temporary credential on another project: %d %v", code, out)
	}
	alice.withKey(ak, sk, "").wantErr(401, "KPS.6102", "GET", "/v3/auth/catalog", nil)
	// A temporary credential mints nothing: neither another one nor a permanent key.
	temp.wantErr(403, "KPS.9006", "POST", "/v3.0/OS-CREDENTIAL/securitytokens", body(nil))
	temp.wantErr(403, "KPS.9006", "POST", "/v3.0/OS-CREDENTIAL/credentials", map[string]any{"credential": map[string]any{}})

	// Durations: 900–86400 seconds, a numeric string accepted, never past the source token
	// (one hour in these tests).
	c = obj(alice.want(201, "POST", "/v3.0/OS-CREDENTIAL/securitytokens", body(map[string]any{"duration_seconds": "86400", "id": alice.token}))["credential"])
	tokenExpires, _ := time.Parse("2006-01-02T15:04:05.000000Z", str(obj(obj(alice.want(200, "GET", "/v3/auth/tokens", nil, "X-Subject-Token", alice.token)["token"]))["expires_at"]))
	if str(c["expires_at"]) != tokenExpires.UTC().Format("2006-01-02T15:04:05.000000Z") {
		t.Errorf("expires_at %v, want the token's %v", c["expires_at"], tokenExpires)
	}
	defaultTTL := obj(alice.want(201, "POST", "/v3.0/OS-CREDENTIAL/securitytokens", body(nil))["credential"])
	if e, _ := time.Parse("2006-01-02T15:04:05.000000Z", str(defaultTTL["expires_at"])); e.After(time.Now().Add(15*time.Minute + time.Second)) {
		t.Errorf("default duration: %v", defaultTTL["expires_at"])
	}
	for _, bad := range []any{899, 86401, "15m", 900.5, true, "", -900} {
		alice.wantErr(400, "KPS.6003", "POST", "/v3.0/OS-CREDENTIAL/securitytokens", body(map[string]any{"duration_seconds": bad}))
	}
	alice.wantErr(400, "KPS.6003", "POST", "/v3.0/OS-CREDENTIAL/securitytokens",
		map[string]any{"auth": map[string]any{"identity": map[string]any{"methods": []string{"password"}}}})
	alice.wantErr(400, "KPS.6002", "POST", "/v3.0/OS-CREDENTIAL/securitytokens", map[string]any{"auth": map[string]any{"identity": map[string]any{}}})
	alice.wantErr(400, "KPS.6002", "POST", "/v3.0/OS-CREDENTIAL/securitytokens", map[string]any{})
	// Someone else's token: only an admin of its domain may derive from it.
	alice.wantErr(403, "KPS.9006", "POST", "/v3.0/OS-CREDENTIAL/securitytokens", body(map[string]any{"id": admin.token}))
	alice.wantErr(403, "KPS.9006", "POST", "/v3.0/OS-CREDENTIAL/securitytokens", body(map[string]any{"id": "KPT1nonsense"}))
	forAlice := obj(admin.want(201, "POST", "/v3.0/OS-CREDENTIAL/securitytokens", body(map[string]any{"id": alice.token}))["credential"])
	aliceAgain := alice.withKey(str(forAlice["access"]), str(forAlice["secret"]), str(forAlice["securitytoken"]))
	if tok := aliceAgain.want(200, "GET", "/v3/auth/domains", nil); len(list(tok["domains"])) != 1 {
		t.Fatalf("derived for alice: %v", tok)
	}

	// From a permanent key: unbound, usable on any of the user's projects.
	perm := obj(alice.want(201, "POST", "/v3.0/OS-CREDENTIAL/credentials", map[string]any{"credential": map[string]any{}})["credential"])
	fromKey := obj(alice.withKey(str(perm["access"]), str(perm["secret"]), "").want(201, "POST", "/v3.0/OS-CREDENTIAL/securitytokens", body(nil))["credential"])
	unbound := alice.withKey(str(fromKey["access"]), str(fromKey["secret"]), str(fromKey["securitytoken"]))
	if code, out := signedKPS(t, s, unbound, "GET", "/v3/"+str(dev["id"])+"/keypairs"); code != 200 {
		t.Fatalf("unbound temporary credential: %d %v", code, out)
	}

	// Revoking the source token ends the credentials derived from it.
	alice.want(204, "DELETE", "/v3/auth/tokens", nil, "X-Subject-Token", alice.token)
	temp.wantErr(401, "KPS.6102", "GET", "/v3/auth/catalog", nil)
	aliceAgain.wantErr(401, "KPS.6102", "GET", "/v3/auth/catalog", nil)
	unbound.want(200, "GET", "/v3/auth/catalog", nil)

	// SKs and security tokens appeared once each, in their creation.
	for _, secret := range []string{sk, st, str(forAlice["secret"]), str(forAlice["securitytoken"]), str(fromKey["secret"])} {
		if n := tr.count(secret); n != 1 {
			t.Errorf("a secret appears in %d responses, want 1", n)
		}
	}
}

// signedKPS sends a KPS request signed with the client's key and the path project in
// X-Project-Id, as the Go SDK does.
func signedKPS(t *testing.T, s *service, c *idClient, method, path string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, s.base+path, nil)
	req.Header.Set("X-Project-Id", strings.Split(strings.TrimPrefix(path, "/v3/"), "/")[0])
	if c.stoken != "" {
		req.Header.Set("X-Security-Token", c.stoken)
	}
	if err := iam.Sign(req, nil, c.ak, c.sk, time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := apiClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// TestIdentityUsers: users and passwords (auth.md §9, §12.1): the shape without the password,
// the policy, member versus domain admin versus the admin of another domain, the self-service
// password change that ends every token, disabling and deleting.
func TestIdentityUsers(t *testing.T) {
	t.Parallel()
	s := setup(t)
	tr := newTranscript()
	admin := as(t, s, tr)
	alice := as(t, s.addUser("alice", kps.RoleMember), tr)
	defaultDomain := s.defaultDomainID(t)
	const davePassword, daveNew, daveByAdmin = "dave-first-password", "dave-second-password", "dave-third-password"

	u := obj(admin.want(201, "POST", "/v3/users", map[string]any{"user": map[string]any{"name": "dave", "password": davePassword,
		"description": "Dave", "default_project_id": s.project}})["user"])
	daveID := str(u["id"])
	if !hex32.MatchString(daveID) || u["name"] != "dave" || u["domain_id"] != defaultDomain || u["enabled"] != true ||
		u["description"] != "Dave" || u["default_project_id"] != s.project || u["password"] != nil ||
		!strings.HasSuffix(str(obj(u["links"])["self"]), "/v3/users/"+daveID) {
		t.Fatalf("user %v", u)
	}
	if _, ok := u["password_expires_at"]; !ok {
		t.Errorf("password_expires_at missing: %v", u)
	}
	admin.wantErr(409, "KPS.6111", "POST", "/v3/users", map[string]any{"user": map[string]any{"name": "dave"}})
	admin.wantErr(400, "KPS.6003", "POST", "/v3/users", map[string]any{"user": map[string]any{"name": "eve", "password": "short"}})
	admin.wantErr(400, "KPS.6003", "POST", "/v3/users", map[string]any{"user": map[string]any{"name": "evelyn12", "password": "evelyn12"}})
	admin.wantErr(400, "KPS.6002", "POST", "/v3/users", map[string]any{"user": map[string]any{"password": "long enough"}})
	admin.wantErr(400, "KPS.6003", "POST", "/v3/users", map[string]any{"user": map[string]any{"name": "eve", "enabled": "yes"}})
	admin.wantErr(400, "KPS.6003", "POST", "/v3/users", map[string]any{"user": map[string]any{"name": "eve", "default_project_id": "0123456789abcdef0123456789abcdef"}})
	admin.wantErr(415, "KPS.6019", "POST", "/v3/users", map[string]any{"user": map[string]any{"name": "eve"}}, "Content-Type", "text/plain")
	admin.wantErr(413, "KPS.6020", "POST", "/v3/users", `{"user":{"name":"eve","description":"`+strings.Repeat("x", 64<<10)+`"}}`)
	alice.wantErr(403, "KPS.9006", "POST", "/v3/users", map[string]any{"user": map[string]any{"name": "eve"}})

	// Dave has no role yet; the admin grants one by name and one by role ID.
	roleIDs := map[string]string{}
	for _, r := range list(admin.want(200, "GET", "/v3/roles", nil)["roles"]) {
		roleIDs[str(obj(r)["name"])] = str(obj(r)["id"])
	}
	admin.want(204, "PUT", "/v3/projects/"+s.project+"/users/"+daveID+"/roles/member", nil)
	admin.want(204, "PUT", "/v3/projects/"+s.project+"/users/"+daveID+"/roles/"+roleIDs["reader"], nil)
	admin.want(204, "PUT", "/v3/projects/"+s.project+"/users/"+daveID+"/roles/member", nil) // again: no error
	admin.wantErr(404, "KPS.6110", "PUT", "/v3/projects/"+s.project+"/users/"+daveID+"/roles/superuser", nil)
	admin.wantErr(404, "KPS.6110", "PUT", "/v3/projects/0123456789abcdef0123456789abcdef/users/"+daveID+"/roles/member", nil)
	admin.wantErr(404, "KPS.6110", "PUT", "/v3/projects/"+s.project+"/users/0123456789abcdef0123456789abcdef/roles/member", nil)
	alice.wantErr(403, "KPS.9006", "PUT", "/v3/projects/"+s.project+"/users/"+daveID+"/roles/admin", nil)
	dave, body := admin.login("Default", "dave", davePassword, "")
	if obj(body["project"])["id"] != s.project || len(list(body["roles"])) != 2 {
		t.Fatalf("dave's token (default project): %v", body)
	}
	admin.want(204, "DELETE", "/v3/projects/"+s.project+"/users/"+daveID+"/roles/"+roleIDs["reader"], nil)
	admin.wantErr(404, "KPS.6110", "DELETE", "/v3/projects/"+s.project+"/users/"+daveID+"/roles/reader", nil)

	// Self-service password change: only one's own, with the original, under the policy; it
	// ends every token of the user.
	path := "/v3/users/" + daveID + "/password"
	dave.wantErr(401, "KPS.6107", "POST", path, map[string]any{"user": map[string]any{"original_password": "not-the-password", "password": daveNew}})
	dave.wantErr(400, "KPS.6003", "POST", path, map[string]any{"user": map[string]any{"original_password": davePassword, "password": "dave"}})
	dave.wantErr(400, "KPS.6003", "POST", path, map[string]any{"user": map[string]any{"original_password": davePassword, "password": "short"}})
	dave.wantErr(400, "KPS.6002", "POST", path, map[string]any{"user": map[string]any{"password": daveNew}})
	alice.wantErr(403, "KPS.9006", "POST", path, map[string]any{"user": map[string]any{"original_password": davePassword, "password": daveNew}})
	admin.wantErr(403, "KPS.9006", "POST", path, map[string]any{"user": map[string]any{"original_password": davePassword, "password": daveNew}})
	second, _ := admin.login("Default", "dave", davePassword, "")
	dave.want(204, "POST", path, map[string]any{"user": map[string]any{"original_password": davePassword, "password": daveNew}})
	dave.wantErr(401, "KPS.6102", "GET", "/v3/auth/projects", nil)
	second.wantErr(401, "KPS.6102", "GET", "/v3/auth/projects", nil)
	if code, _ := s.raw("GET", "/v3/"+s.project+"/keypairs", nil, map[string]string{"X-Auth-Token": second.token}); code != 401 {
		t.Errorf("a token after the password change on a KPS route: %d", code)
	}
	wantLoginRefused(t, s, "dave", davePassword)
	dave, _ = admin.login("Default", "dave", daveNew, "")

	// The admin changes users: PATCH answers without the password; a new password and
	// disabling end the user's tokens; nobody disables or deletes themselves.
	u = obj(admin.want(200, "PATCH", "/v3/users/"+daveID, map[string]any{"user": map[string]any{"description": "D.", "password": daveByAdmin}})["user"])
	if u["description"] != "D." || u["name"] != "dave" || u["password"] != nil {
		t.Fatalf("patched %v", u)
	}
	dave.wantErr(401, "KPS.6102", "GET", "/v3/auth/projects", nil)
	dave, _ = admin.login("Default", "dave", daveByAdmin, "")
	admin.wantErr(400, "KPS.6003", "PATCH", "/v3/users/"+daveID, map[string]any{"user": map[string]any{"password": "dave"}})
	admin.wantErr(409, "KPS.6111", "PATCH", "/v3/users/"+daveID, map[string]any{"user": map[string]any{"name": "alice"}})
	alice.wantErr(403, "KPS.9006", "PATCH", "/v3/users/"+daveID, map[string]any{"user": map[string]any{"enabled": false}})
	u = obj(admin.want(200, "PATCH", "/v3/users/"+daveID, map[string]any{"user": map[string]any{"enabled": false, "default_project_id": ""}})["user"])
	if u["enabled"] != false || u["default_project_id"] != nil {
		t.Fatalf("disabled %v", u)
	}
	dave.wantErr(401, "KPS.6102", "GET", "/v3/auth/projects", nil)
	wantLoginRefused(t, s, "dave", daveByAdmin)
	adminID := str(obj(obj(admin.want(200, "GET", "/v3/auth/tokens", nil, "X-Subject-Token", admin.token)["token"])["user"])["id"])
	admin.wantErr(409, "KPS.6111", "PATCH", "/v3/users/"+adminID, map[string]any{"user": map[string]any{"enabled": false}})
	admin.wantErr(409, "KPS.6111", "DELETE", "/v3/users/"+adminID, nil)

	// The admin of another domain cannot see Default's users; a member of it is refused.
	createDomainAdmin(t, admin, "acme", "bob")
	bob, _ := admin.login("acme", "bob", "bob-password-1", "")
	bob.wantErr(404, "KPS.6110", "PATCH", "/v3/users/"+daveID, map[string]any{"user": map[string]any{"enabled": true}})
	bob.wantErr(404, "KPS.6110", "DELETE", "/v3/users/"+daveID, nil)
	bob.wantErr(403, "KPS.9006", "POST", "/v3/users", map[string]any{"user": map[string]any{"name": "x", "domain_id": defaultDomain}})
	bob.wantErr(404, "KPS.6110", "PUT", "/v3/projects/"+s.project+"/users/"+daveID+"/roles/member", nil)
	// Users never get roles across domains.
	carol := obj(bob.want(201, "POST", "/v3/users", map[string]any{"user": map[string]any{"name": "carol"}})["user"])
	admin.wantErr(400, "KPS.6003", "PUT", "/v3/projects/"+s.project+"/users/"+str(carol["id"])+"/roles/member", nil)

	admin.want(204, "DELETE", "/v3/users/"+daveID, nil)
	admin.wantErr(404, "KPS.6110", "DELETE", "/v3/users/"+daveID, nil)
	alice.wantErr(403, "KPS.9006", "DELETE", "/v3/users/"+daveID, nil)

	// No password ever came back.
	for _, pw := range []string{davePassword, daveNew, daveByAdmin, "bob-password-1"} {
		if n := tr.count(pw); n != 0 {
			t.Errorf("a password appears in %d responses", n)
		}
	}
}

// wantLoginRefused asserts that a password login of domain Default fails with 401 KPS.6107.
func wantLoginRefused(t *testing.T, s *service, user, password string) {
	t.Helper()
	body := `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":` + jsonText(user) +
		`,"domain":{"name":"Default"},"password":` + jsonText(password) + `}}}}}`
	code, out := s.raw("POST", "/v3/auth/tokens", body, nil)
	if code != 401 || out["error_code"] != "KPS.6107" {
		t.Fatalf("login of %s: %d %v, want 401 KPS.6107", user, code, out)
	}
}

// TestIdentityProjectsAndDomains: project and domain management (auth.md §3.2, §3.7, §9): the
// protected default project, a project that still holds key pairs, operator-only domains and
// the protected operator domain.
func TestIdentityProjectsAndDomains(t *testing.T) {
	t.Parallel()
	s := setup(t)
	tr := newTranscript()
	admin := as(t, s, tr)
	alice := as(t, s.addUser("alice", kps.RoleMember), tr)
	defaultDomain := s.defaultDomainID(t)

	// Projects: create (parent_id is the domain), conflicts, the default project protected.
	p := wantProject(t, admin.want(201, "POST", "/v3/projects", map[string]any{"project": map[string]any{"name": "local-1_dev",
		"parent_id": defaultDomain}})["project"], "local-1_dev", defaultDomain)
	dev := str(p["id"])
	admin.wantErr(409, "KPS.6111", "POST", "/v3/projects", map[string]any{"project": map[string]any{"name": "local-1_dev"}})
	admin.wantErr(400, "KPS.6003", "POST", "/v3/projects", map[string]any{"project": map[string]any{"name": "x", "is_domain": true}})
	admin.wantErr(400, "KPS.6003", "POST", "/v3/projects", map[string]any{"project": map[string]any{"name": "x", "domain_id": defaultDomain, "parent_id": dev}})
	admin.wantErr(400, "KPS.6003", "POST", "/v3/projects", map[string]any{"project": map[string]any{"name": strings.Repeat("n", 65)}})
	admin.wantErr(400, "KPS.6001", "POST", "/v3/projects", `{"project":`)
	alice.wantErr(403, "KPS.9006", "POST", "/v3/projects", map[string]any{"project": map[string]any{"name": "local-1_mine"}})
	p = obj(admin.want(200, "PATCH", "/v3/projects/"+dev, map[string]any{"project": map[string]any{"name": "local-1_test", "description": "t"}})["project"])
	if p["name"] != "local-1_test" || p["description"] != "t" || p["enabled"] != true {
		t.Fatalf("patched %v", p)
	}
	admin.wantErr(409, "KPS.6111", "PATCH", "/v3/projects/"+s.project, map[string]any{"project": map[string]any{"name": "renamed"}})
	admin.wantErr(409, "KPS.6111", "DELETE", "/v3/projects/"+s.project, nil)
	alice.wantErr(403, "KPS.9006", "PATCH", "/v3/projects/"+dev, map[string]any{"project": map[string]any{"enabled": false}})
	alice.wantErr(403, "KPS.9006", "DELETE", "/v3/projects/"+dev, nil)
	admin.wantErr(404, "KPS.6110", "DELETE", "/v3/projects/0123456789abcdef0123456789abcdef", nil)

	// A project holding a key pair is not deleted; once empty it is.
	onDev := &service{t: t, base: s.base, main: s.main}
	onDev.loginScoped("admin", "admin-password-for-tests", dev)
	onDev.project = dev
	onDev.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "kp-dev"}})
	admin.wantErr(409, "KPS.6111", "DELETE", "/v3/projects/"+dev, nil)
	onDev.must(204, "DELETE", "/keypairs/kp-dev", nil)
	// Disabling ends the tokens scoped to it.
	admin.want(200, "PATCH", "/v3/projects/"+dev, map[string]any{"project": map[string]any{"enabled": false}})
	if code, _ := onDev.call("GET", "/keypairs", nil); code != 401 {
		t.Errorf("a token of a disabled project: %d", code)
	}
	admin.want(204, "DELETE", "/v3/projects/"+dev, nil)
	admin.wantErr(404, "KPS.6110", "DELETE", "/v3/projects/"+dev, nil)

	// Domains: the operator admin only.
	alice.wantErr(403, "KPS.9006", "POST", "/v3/domains", map[string]any{"domain": map[string]any{"name": "x"}})
	acme := createDomainAdmin(t, admin, "acme", "bob")
	bob, body := admin.login("acme", "bob", "bob-password-1", projectScope("local-1", "acme"))
	acmeProject := str(obj(body["project"])["id"])
	bob.wantErr(403, "KPS.9006", "POST", "/v3/domains", map[string]any{"domain": map[string]any{"name": "x"}})
	bob.wantErr(403, "KPS.9006", "PATCH", "/v3/domains/"+acme, map[string]any{"domain": map[string]any{"description": "mine"}})
	admin.wantErr(409, "KPS.6111", "POST", "/v3/domains", map[string]any{"domain": map[string]any{"name": "acme"}})
	admin.wantErr(409, "KPS.6111", "POST", "/v3/domains", map[string]any{"domain": map[string]any{"name": "Default"}})
	admin.wantErr(400, "KPS.6002", "POST", "/v3/domains", map[string]any{"domain": map[string]any{"name": ""}})
	// The domain admin manages the projects of its own domain, and only those.
	wantProject(t, bob.want(201, "POST", "/v3/projects", map[string]any{"project": map[string]any{"name": "local-1_acme"}})["project"], "local-1_acme", acme)
	bob.wantErr(403, "KPS.9006", "POST", "/v3/projects", map[string]any{"project": map[string]any{"name": "x", "domain_id": defaultDomain}})
	bob.wantErr(404, "KPS.6110", "PATCH", "/v3/projects/"+s.project, map[string]any{"project": map[string]any{"description": "x"}})
	// The operator domain keeps its name and stays enabled.
	admin.wantErr(409, "KPS.6111", "PATCH", "/v3/domains/"+defaultDomain, map[string]any{"domain": map[string]any{"enabled": false}})
	admin.wantErr(409, "KPS.6111", "PATCH", "/v3/domains/"+defaultDomain, map[string]any{"domain": map[string]any{"name": "Operators"}})
	admin.wantErr(409, "KPS.6111", "DELETE", "/v3/domains/"+defaultDomain, nil)
	d := obj(admin.want(200, "PATCH", "/v3/domains/"+defaultDomain, map[string]any{"domain": map[string]any{"description": "operators"}})["domain"])
	if d["description"] != "operators" || d["name"] != "Default" || d["enabled"] != true {
		t.Fatalf("patched Default %v", d)
	}
	// Another domain: deleted only once disabled; disabling ends its tokens.
	admin.wantErr(409, "KPS.6111", "DELETE", "/v3/domains/"+acme, nil)
	d = obj(admin.want(200, "PATCH", "/v3/domains/"+acme, map[string]any{"domain": map[string]any{"enabled": false, "name": "acme-old"}})["domain"])
	if d["enabled"] != false || d["name"] != "acme-old" {
		t.Fatalf("disabled %v", d)
	}
	bob.wantErr(401, "KPS.6102", "GET", "/v3/auth/projects", nil)
	if code, _ := s.raw("GET", "/v3/"+acmeProject+"/keypairs", nil, map[string]string{"X-Auth-Token": bob.token}); code != 401 {
		t.Errorf("a token of a disabled domain on a KPS route: %d", code)
	}
	admin.want(204, "DELETE", "/v3/domains/"+acme, nil)
	admin.wantErr(404, "KPS.6110", "DELETE", "/v3/domains/"+acme, nil)
	admin.wantErr(404, "KPS.6110", "PATCH", "/v3/domains/"+acme, map[string]any{"domain": map[string]any{"enabled": true}})
	// The name is free again.
	createDomainAdmin(t, admin, "acme", "bob")
}

// TestIdentityUserAndDomainReads: GET /v3/users[/{id}] and GET /v3/domains[/{id}], the reads
// OpenStack clients resolve --user, --user-domain and --project with (Keystone's list_users,
// get_user, list_domains, get_domain): filters, pages, and who sees what (auth.md §3.3).
func TestIdentityUserAndDomainReads(t *testing.T) {
	t.Parallel()
	s := setup(t)
	tr := newTranscript()
	admin := as(t, s, tr)
	alice := as(t, s.addUser("alice", kps.RoleMember), tr)
	defaultDomain := s.defaultDomainID(t)
	aliceID, adminID := s.userIDOf("alice"), s.userIDOf("admin")
	acme := createDomainAdmin(t, admin, "acme", "bob")
	bob, _ := admin.login("acme", "bob", "bob-password-1", "")
	const unknown = "0123456789abcdef0123456789abcdef"

	names := func(body map[string]any, member string) string {
		var ns []string
		for _, v := range list(body[member]) {
			ns = append(ns, str(obj(v)["name"]))
		}
		return strings.Join(ns, ",")
	}
	// Users: domain admins list their domain's users, with Keystone's filters; other query
	// parameters (OSC 6 sends tenant_id for `keypair list --project`) are ignored.
	for query, want := range map[string]string{
		"":                              "admin,alice",
		"?name=alice":                   "alice",
		"?name=nobody":                  "",
		"?tenant_id=" + s.project:       "admin,alice",
		"?domain_id=" + defaultDomain:   "admin,alice",
		"?domain_id=" + acme:            "bob", // the operator admin administers every domain
		"?enabled=true&name=admin":      "admin",
		"?enabled=FALSE":                "",
		"?domain_id=" + unknown:         "",
		"?name=alice&domain_id=" + acme: "",
		"?per_page=1&page=2":            "alice",
	} {
		body := admin.want(200, "GET", "/v3/users"+query, nil)
		if got := names(body, "users"); got != want {
			t.Errorf("GET /v3/users%s: %q, want %q", query, got, want)
		}
		if !strings.Contains(query, "page") {
			wantListLinks(t, body, "/v3/users"+query)
		}
	}
	paged := obj(admin.want(200, "GET", "/v3/users?per_page=1", nil)["links"])
	if paged["previous"] != nil || !strings.Contains(str(paged["next"]), "page=2") {
		t.Errorf("first page links %v", paged)
	}
	u := obj(list(admin.want(200, "GET", "/v3/users?name=alice", nil)["users"])[0])
	if u["id"] != aliceID || u["domain_id"] != defaultDomain || u["enabled"] != true || u["password"] != nil ||
		!strings.HasSuffix(str(obj(u["links"])["self"]), "/v3/users/"+aliceID) {
		t.Errorf("listed user %v", u)
	}
	if got := names(bob.want(200, "GET", "/v3/users", nil), "users"); got != "bob" {
		t.Errorf("acme's admin lists %q", got)
	}
	if got := names(bob.want(200, "GET", "/v3/users?domain_id="+defaultDomain, nil), "users"); got != "" {
		t.Errorf("acme's admin lists Default's users: %q", got)
	}
	admin.wantErr(400, "KPS.6003", "GET", "/v3/users?enabled=maybe", nil)
	admin.wantErr(400, "KPS.6003", "GET", "/v3/users?per_page=0", nil)
	alice.wantErr(403, "KPS.9006", "GET", "/v3/users", nil)
	alice.wantErr(403, "KPS.9006", "GET", "/v3/users?name=alice", nil)

	// One user: oneself, or a user the caller administers; the rest cannot be probed.
	if got := obj(alice.want(200, "GET", "/v3/users/"+aliceID, nil)["user"]); got["name"] != "alice" || got["password"] != nil {
		t.Errorf("own user %v", got)
	}
	if got := obj(admin.want(200, "GET", "/v3/users/"+aliceID, nil)["user"]); got["id"] != aliceID {
		t.Errorf("admin reads alice: %v", got)
	}
	alice.wantErr(403, "KPS.9006", "GET", "/v3/users/"+adminID, nil)
	alice.wantErr(403, "KPS.9006", "GET", "/v3/users/"+unknown, nil)
	admin.wantErr(404, "KPS.6110", "GET", "/v3/users/"+unknown, nil)
	bob.wantErr(404, "KPS.6110", "GET", "/v3/users/"+aliceID, nil)
	ak, sk := s.accessKey("alice")
	if got := obj(alice.withKey(ak, sk, "").want(200, "GET", "/v3/users/"+aliceID, nil)["user"]); got["id"] != aliceID {
		t.Errorf("alice by AK/SK: %v", got)
	}

	// Domains: everybody reads their own; the operator admin reads every domain.
	for _, c := range []struct {
		who         *idClient
		query, want string
	}{
		{alice, "", "Default"},
		{alice, "?name=Default", "Default"},
		{alice, "?name=acme", ""},
		{admin, "", "Default,acme"},
		{admin, "?name=acme", "acme"},
		{admin, "?enabled=false", ""},
		{bob, "", "acme"},
	} {
		body := c.who.want(200, "GET", "/v3/domains"+c.query, nil)
		if got := names(body, "domains"); got != c.want {
			t.Errorf("GET /v3/domains%s: %q, want %q", c.query, got, c.want)
		}
		wantListLinks(t, body, "/v3/domains"+c.query)
	}
	admin.wantErr(400, "KPS.6003", "GET", "/v3/domains?enabled=maybe", nil)
	if d := obj(alice.want(200, "GET", "/v3/domains/"+defaultDomain, nil)["domain"]); d["name"] != "Default" || d["enabled"] != true ||
		!strings.HasSuffix(str(obj(d["links"])["self"]), "/v3/domains/"+defaultDomain) {
		t.Errorf("own domain %v", d)
	}
	if d := obj(admin.want(200, "GET", "/v3/domains/"+acme, nil)["domain"]); d["name"] != "acme" {
		t.Errorf("operator reads acme: %v", d)
	}
	alice.wantErr(403, "KPS.9006", "GET", "/v3/domains/"+acme, nil)
	alice.wantErr(403, "KPS.9006", "GET", "/v3/domains/"+unknown, nil)
	bob.wantErr(404, "KPS.6110", "GET", "/v3/domains/"+defaultDomain, nil)
	admin.wantErr(404, "KPS.6110", "GET", "/v3/domains/"+unknown, nil)
	admin.wantErr(404, "KPS.6110", "GET", "/v3/domains/Default", nil) // names are not IDs
}
