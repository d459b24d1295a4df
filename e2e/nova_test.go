package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/openkps/kps"
	"github.com/openkps/kps/daemon"
	"github.com/openkps/kps/iam"
	"github.com/openkps/kps/internal/sshdtest"
)

// Test vectors of nova-keypairs.md §8.
const (
	novaEd25519    = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPzaC/C1JE11Iv1b5MOIdBAJSeu74GaAWZoNDaBM7Tbd vector-ed25519"
	novaEd25519FP  = "2d:5b:b2:1a:24:23:f3:f8:cd:d4:15:1b:0c:b0:ba:5a"
	novaP256       = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBLyVh8E90JGbB46mooQXh6yXu4QCPrBI6Ffr2MokFAigBoLDmgk7eAf3CRFPbZRZS1xlmuCYc0uhCMOzVn15qB4= vector-p256"
	novaP256FP     = "ba:11:07:a2:38:cf:49:37:ad:76:dd:cc:3e:5b:70:00"
	novaCertFP     = "9c:bc:22:f4:4a:92:d9:57:75:42:b4:28:6a:9f:38:80:91:a8:b0:0b"
	novaCertVector = `-----BEGIN CERTIFICATE-----
MIIBgTCCASegAwIBAgIUA26jB9of7Z4g32Ip0Cm2GLbNVNYwCgYIKoZIzj0EAwIw
FjEUMBIGA1UEAwwLdmVjdG9yLXg1MDkwHhcNMjYxMTI3MTQxODMyWhcNMzYxMTI0
MTQxODMyWjAWMRQwEgYDVQQDDAt2ZWN0b3IteDUwOTBZMBMGByqGSM49AgEGCCqG
SM49AwEHA0IABKHx3fm/eVNT3krPQBaBP1ubA76AWAzBbqcqjqOJTGaqnS4D/OfU
t1wQPLDOK9IgzWnbE91MFwWRxGfWeNi4iQyjUzBRMB0GA1UdDgQWBBSghXSXNmfv
umxo7t6ib0/JRo03ATAfBgNVHSMEGDAWgBSghXSXNmfvumxo7t6ib0/JRo03ATAP
BgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQCiv32GCWriEUlsqLa1
TehJE/6TDfEIlwIyC95UgSflwwIgTYR3BJAW9rOLQlTXKrYbpk49ChKn5nJ7bYPH
nwHn3lY=
-----END CERTIFICATE-----
`
)

var (
	md5FP  = regexp.MustCompile(`^([0-9a-f]{2}:){15}[0-9a-f]{2}$`)
	sha1FP = regexp.MustCompile(`^([0-9a-f]{2}:){19}[0-9a-f]{2}$`)
)

// novaResponse is one answer of the Nova API.
type novaResponse struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

// nova sends a request to the Nova API with the service's token; version "" sends no
// microversion header.
func (s *service) nova(method, path, version string, body any, headers ...string) novaResponse {
	s.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, s.base+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if s.token != "" {
		req.Header.Set("X-Auth-Token", s.token)
	}
	if version != "" {
		req.Header.Set("X-OpenStack-Nova-API-Version", version)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	return s.novaSend(req)
}

// novaSend sends a prepared Nova request and decodes the answer.
func (s *service) novaSend(req *http.Request) novaResponse {
	s.t.Helper()
	method, path := req.Method, req.URL.Path
	resp, err := apiClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	out := novaResponse{status: resp.StatusCode, header: resp.Header}
	out.raw, _ = io.ReadAll(resp.Body)
	if len(out.raw) > 0 {
		if err := json.Unmarshal(out.raw, &out.body); err != nil {
			s.t.Fatalf("%s %s: non-JSON body %q", method, path, out.raw)
		}
	}
	if resp.StatusCode >= 400 && len(out.body) != 1 {
		s.t.Errorf("%s %s: error body %s has not exactly one fault key", method, path, out.raw)
	}
	return out
}

// want asserts the status (and, for errors, the fault name) of a Nova answer.
func (r novaResponse) want(t *testing.T, status int, fault string) novaResponse {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
	if fault != "" {
		if _, ok := r.body[fault]; !ok {
			t.Fatalf("body %s, want fault %s", r.raw, fault)
		}
	}
	return r
}

func (r novaResponse) keypair() map[string]any { return obj(r.body["keypair"]) }

func keys(m map[string]any) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ",")
}

func newRSAPublicKey(t testing.TB, bits int, comment string) string {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := ssh.NewPublicKey(&k.PublicKey)
	return strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(pub)), "\n") + " " + comment + "\n"
}

func newP384PublicKey(t testing.TB) string {
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := ssh.NewPublicKey(&k.PublicKey)
	return string(ssh.MarshalAuthorizedKey(pub))
}

func kp(m map[string]any) map[string]any { return map[string]any{"keypair": m} }

// TestNovaConformance runs the conformance checklist of nova-keypairs.md §18 that applies.
func TestNovaConformance(t *testing.T) {
	s := setup(t)
	P := "/compute/v2.1/" + s.project + "/os-keypairs"
	member := s.addUser("nova-member", kps.RoleMember)

	t.Run("versions", func(t *testing.T) { // N-01..N-03
		anon := &service{t: t, base: s.base}
		v := anon.nova("GET", "/compute/", "", nil).want(t, 200, "")
		vs := list(v.body["versions"])
		if len(vs) != 2 || obj(vs[1])["id"] != "v2.1" || obj(vs[1])["version"] != "2.92" || obj(vs[1])["min_version"] != "2.1" || obj(vs[1])["status"] != "CURRENT" {
			t.Errorf("versions %s", v.raw)
		}
		for _, p := range []string{"/compute/v2.1/", "/compute/v2.1"} {
			d := obj(anon.nova("GET", p, "", nil).want(t, 200, "").body["version"])
			if d["id"] != "v2.1" || obj(list(d["links"])[0])["href"] != s.base+"/compute/v2.1/" || d["media-types"] == nil {
				t.Errorf("%s: %v", p, d)
			}
		}
		d := obj(anon.nova("GET", "/compute/v2/", "", nil).want(t, 200, "").body["version"])
		if d["id"] != "v2.0" || d["version"] != "" || d["min_version"] != "" {
			t.Errorf("v2: %v", d)
		}
	})

	t.Run("tempest-2.1", func(t *testing.T) { // T-01..T-07, T-21..T-30
		var names []string
		for i, pub := range []string{"", newP384PublicKey(t), ""} {
			name := "tempest-KeyPairsV2TestJSON-keypair-" + strconv.Itoa(i)
			body := map[string]any{"name": name}
			if pub != "" {
				body["public_key"] = pub
			}
			r := s.nova("POST", P, "", kp(body)).want(t, 200, "")
			want := "fingerprint,name,private_key,public_key,user_id"
			if pub != "" {
				want = "fingerprint,name,public_key,user_id"
			}
			if got := keys(r.keypair()); got != want || r.keypair()["name"] != name {
				t.Errorf("create members %s, want %s; name %v", got, want, r.keypair()["name"])
			}
			if r.header.Get("X-OpenStack-Nova-API-Version") != "2.1" {
				t.Errorf("version header %q", r.header.Get("X-OpenStack-Nova-API-Version"))
			}
			if !strings.HasPrefix(r.header.Get("X-Openstack-Request-Id"), "req-") || r.header.Get("X-Compute-Request-Id") != r.header.Get("X-Openstack-Request-Id") {
				t.Errorf("request ids %v", r.header)
			}
			names = append(names, name)
		}
		l := s.nova("GET", P, "", nil).want(t, 200, "")
		if _, ok := l.body["keypairs_links"]; ok || len(list(l.body["keypairs"])) != 3 {
			t.Errorf("list %s", l.raw)
		}
		for _, e := range list(l.body["keypairs"]) {
			if got := keys(obj(obj(e)["keypair"])); got != "fingerprint,name,public_key" {
				t.Errorf("list members %s", got)
			}
		}
		show := s.nova("GET", P+"/"+names[0], "", nil).want(t, 200, "").keypair()
		if got := keys(show); got != "created_at,deleted,deleted_at,fingerprint,id,name,public_key,updated_at,user_id" {
			t.Errorf("show members %s", got)
		}
		if _, ok := show["id"].(float64); !ok || show["name"] != names[0] || show["deleted"] != false || show["updated_at"] != nil || show["deleted_at"] != nil ||
			!regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$`).MatchString(str(show["created_at"])) {
			t.Errorf("show %v", show)
		}
		for _, n := range names {
			r := s.nova("DELETE", P+"/"+n, "", nil).want(t, 202, "")
			if len(r.raw) != 0 {
				t.Errorf("delete body %q", r.raw)
			}
		}
		// Negative cases.
		s.nova("POST", P, "", kp(map[string]any{"name": "bad1", "public_key": "ssh-rsa JUNK nova@ubuntu"})).want(t, 400, "badRequest")
		s.nova("DELETE", P+"/tempest-keypair-non-existent-1", "", nil).want(t, 404, "itemNotFound")
		s.nova("POST", P, "", kp(map[string]any{"name": "bad2", "public_key": " "})).want(t, 400, "badRequest")
		s.nova("POST", P, "", kp(map[string]any{"name": "bad3", "public_key": "ssh-rsa " + strings.Repeat("A", 2048) + " openstack@ubuntu"})).want(t, 400, "badRequest")
		s.nova("POST", P, "", kp(map[string]any{"name": "dup"})).want(t, 200, "")
		s.nova("POST", P, "", kp(map[string]any{"name": "dup"})).want(t, 409, "conflictingRequest")
		s.nova("DELETE", P+"/dup", "", nil).want(t, 202, "")
		s.nova("POST", P, "", kp(map[string]any{"name": ""})).want(t, 400, "badRequest")
		s.nova("POST", P, "", kp(map[string]any{"name": "keypair-" + strings.Repeat("0", 252)})).want(t, 400, "badRequest")
		s.nova("POST", P, "", kp(map[string]any{"name": `key_/.\@:`})).want(t, 400, "badRequest")
	})

	t.Run("tempest-2.2", func(t *testing.T) { // T-08..T-20, N-13..N-19
		r := s.nova("POST", P, "2.2", kp(map[string]any{"name": "v22-ssh"})).want(t, 201, "")
		if r.keypair()["type"] != "ssh" {
			t.Errorf("type %v", r.keypair()["type"])
		}
		x := s.nova("POST", P, "2.2", kp(map[string]any{"name": "v22-x509", "type": "x509"})).want(t, 201, "").keypair()
		if x["type"] != "x509" || x["private_key"] == nil || !sha1FP.MatchString(str(x["fingerprint"])) || !strings.HasPrefix(str(x["public_key"]), "-----BEGIN CERTIFICATE-----") {
			t.Errorf("x509 %v", x)
		}
		if got := s.nova("GET", P+"/v22-x509", "2.2", nil).want(t, 200, "").keypair(); got["type"] != "x509" || len(got) != 10 {
			t.Errorf("show x509 %v", got)
		}
		for _, e := range list(s.nova("GET", P, "2.2", nil).want(t, 200, "").body["keypairs"]) {
			k := obj(obj(e)["keypair"])
			if (k["name"] == "v22-x509") != (k["type"] == "x509") {
				t.Errorf("list entry %v", k)
			}
		}
		s.nova("DELETE", P+"/v22-x509", "2.2", nil).want(t, 204, "")
		s.nova("DELETE", P+"/v22-ssh", "2.2", nil).want(t, 204, "")

		s.nova("POST", P, "", kp(map[string]any{"name": "n13", "type": "ssh"})).want(t, 400, "badRequest")
		s.nova("POST", P, "2.2", kp(map[string]any{"name": "n14", "user_id": s.project})).want(t, 400, "badRequest")
		s.nova("POST", P, "2.2", kp(map[string]any{"name": "n15", "type": "rsa"})).want(t, 400, "badRequest")
		s.nova("POST", P, "2.2", kp(map[string]any{"name": "n16", "type": "x509", "public_key": novaEd25519})).want(t, 400, "badRequest")
		s.nova("POST", P, "2.2", kp(map[string]any{"name": "n16b", "public_key": novaCertVector})).want(t, 400, "badRequest")
		for _, c := range []struct{ name, typ, key, fp string }{
			{"n17", "x509", novaCertVector, novaCertFP}, {"n18", "ssh", novaEd25519 + "\n", novaEd25519FP}, {"n19", "ssh", novaP256, novaP256FP},
		} {
			got := s.nova("POST", P, "2.2", kp(map[string]any{"name": c.name, "type": c.typ, "public_key": c.key})).want(t, 201, "").keypair()
			if got["fingerprint"] != c.fp || got["public_key"] != c.key {
				t.Errorf("%s: %v", c.name, got)
			}
			s.nova("DELETE", P+"/"+c.name, "2.2", nil).want(t, 204, "")
		}
	})

	t.Run("microversions", func(t *testing.T) { // N-04..N-10, N-42, N-43
		r := s.nova("GET", P, "2.10", nil).want(t, 200, "")
		if r.header.Get("X-OpenStack-Nova-API-Version") != "2.10" || r.header.Get("OpenStack-API-Version") != "compute 2.10" ||
			!strings.Contains(strings.Join(r.header.Values("Vary"), ","), "OpenStack-API-Version") || !strings.Contains(strings.Join(r.header.Values("Vary"), ","), "X-OpenStack-Nova-API-Version") {
			t.Errorf("headers %v", r.header)
		}
		for _, n := range []string{"pa", "pb"} {
			s.nova("POST", P, "2.2", kp(map[string]any{"name": n, "public_key": novaP256})).want(t, 201, "")
		}
		r = s.nova("GET", P+"?limit=1", "2.2", nil, "OpenStack-API-Version", "compute 2.35").want(t, 200, "")
		if len(list(r.body["keypairs"])) != 1 || r.header.Get("X-OpenStack-Nova-API-Version") != "2.35" {
			t.Errorf("precedence: %s", r.raw)
		}
		s.nova("POST", P, "", kp(map[string]any{"name": "n06"}), "OpenStack-API-Version", "volume 3.0").want(t, 200, "")
		s.nova("DELETE", P+"/n06", "", nil).want(t, 202, "")
		if r := s.nova("GET", P, "latest", nil).want(t, 200, ""); r.header.Get("X-OpenStack-Nova-API-Version") != "2.92" {
			t.Errorf("latest: %v", r.header)
		}
		r = s.nova("GET", P, "2.93", nil).want(t, 406, "computeFault")
		if !strings.Contains(string(r.raw), "2.1") || !strings.Contains(string(r.raw), "2.92") || r.header.Get("X-OpenStack-Nova-API-Version") != "2.93" {
			t.Errorf("406: %s %v", r.raw, r.header)
		}
		s.nova("GET", P, "2.0", nil).want(t, 406, "computeFault")
		for _, v := range []string{"2", "2.01", "abc", "Latest", "v2.10"} {
			s.nova("GET", P, v, nil).want(t, 400, "badRequest")
		}
		if n := len(list(s.nova("GET", P+"?limit=1", "2.34", nil).want(t, 200, "").body["keypairs"])); n != 2 {
			t.Errorf("limit before 2.35: %d entries", n)
		}
		s.nova("GET", P+"?foo=1", "2.74", nil).want(t, 200, "")
		s.nova("GET", P+"/pa?foo=1", "2.74", nil).want(t, 200, "")
		s.nova("GET", P+"?foo=1", "2.75", nil).want(t, 400, "badRequest")
		s.nova("GET", P+"/pa?foo=1", "2.75", nil).want(t, 400, "badRequest")
		s.nova("DELETE", P+"/pa?foo=1", "2.75", nil).want(t, 400, "badRequest")
		s.nova("DELETE", P+"/pa?foo=1", "2.74", nil).want(t, 204, "")
		s.nova("DELETE", P+"/pb", "2.2", nil).want(t, 204, "")
	})

	t.Run("legacy", func(t *testing.T) { // N-11, N-12, N-21
		L := "/compute/v2/" + s.project + "/os-keypairs"
		r := s.nova("POST", L, "2.10", kp(map[string]any{"name": "k", "type": "x509", "user_id": "x"})).want(t, 200, "")
		if _, ok := r.keypair()["type"]; ok || r.keypair()["user_id"] == "x" || r.header.Get("X-OpenStack-Nova-API-Version") != "" {
			t.Errorf("legacy create %s %v", r.raw, r.header)
		}
		s.nova("DELETE", L+"/k", "", nil).want(t, 202, "")
		if got := s.nova("POST", L, "", kp(map[string]any{"name": "  test  "})).want(t, 200, "").keypair(); got["name"] != "test" {
			t.Errorf("stripped name %v", got["name"])
		}
		s.nova("DELETE", "/v2/"+s.project+"/os-keypairs/test", "", nil).want(t, 202, "")
		s.nova("POST", P, "", kp(map[string]any{"name": "  test  "})).want(t, 400, "badRequest") // N-20
	})

	t.Run("validation", func(t *testing.T) { // N-22..N-29, N-58
		s.nova("POST", P, "2.91", kp(map[string]any{"name": "my-key@ my.host"})).want(t, 400, "badRequest")
		s.nova("POST", P, "2.92", kp(map[string]any{"name": "my-key@ my.host", "public_key": novaP256})).want(t, 400, "badRequest")
		s.nova("POST", P, "2.92", kp(map[string]any{"name": "gen292"})).want(t, 400, "badRequest")
		s.nova("POST", P, "", kp(map[string]any{"name": strings.Repeat("a", 64), "public_key": novaP256})).want(t, 200, "")
		s.nova("DELETE", P+"/"+strings.Repeat("a", 64), "", nil).want(t, 202, "")
		s.nova("POST", P, "", kp(map[string]any{"name": strings.Repeat("a", 65), "public_key": novaP256})).want(t, 400, "badRequest")
		s.nova("POST", P, "", map[string]any{"alpha": map[string]any{"name": "x"}}).want(t, 400, "badRequest")
		s.nova("POST", P, "", `{"keypair":`).want(t, 400, "badRequest")
		s.nova("POST", P, "2.10", kp(map[string]any{"name": "n28", "foo": 1})).want(t, 400, "badRequest")
		s.nova("POST", P, "", kp(map[string]any{"name": "n29"}), "Content-Type", "application/xml").want(t, 415, "badMediaType")
		s.nova("POST", P, "", kp(map[string]any{"name": "n29t", "public_key": novaP256}), "Content-Type", "text/plain").want(t, 200, "")
		s.nova("DELETE", P+"/n29t", "", nil).want(t, 202, "")
		short := newRSAPublicKey(t, 1024, "short")
		s.nova("POST", P, "2.2", kp(map[string]any{"name": "n58", "public_key": short})).want(t, 400, "badRequest")
		s.nova("POST", P, "", kp(map[string]any{"name": "importedkey", "public_key": short})).want(t, 400, "badRequest") // G-18
		s.nova("POST", P, "", strings.Repeat(" ", 114689)).want(t, 413, "overLimit")
		s.nova("PUT", P, "", nil).want(t, 405, "badMethod")
		s.nova("GET", "/compute/v2.1/"+s.project+"/os-nothing", "", nil).want(t, 404, "itemNotFound")
		s.nova("PUT", P+"/x", "", nil).want(t, 405, "badMethod")
		s.nova("GET", "/v2.1/os-keypairs", "", nil).want(t, 404, "itemNotFound")
		if v := s.nova("GET", "/compute/v2.1/"+s.project, "", nil).want(t, 200, ""); obj(v.body["version"])["id"] != "v2.1" {
			t.Errorf("version document with project: %s", v.raw)
		}
	})

	t.Run("users", func(t *testing.T) { // T-31..T-35, N-32..N-36, G-09..G-12
		uid := obj(member.nova("POST", P, "2.10", kp(map[string]any{"name": "mine", "public_key": novaP256})).want(t, 201, "").keypair())["user_id"]
		if uid == nil || uid == "" {
			t.Fatal("no user_id")
		}
		u := str(uid)
		got := s.nova("POST", P, "2.10", kp(map[string]any{"name": "for-member", "type": "ssh", "user_id": u})).want(t, 201, "").keypair()
		if got["user_id"] != u {
			t.Errorf("admin create for member: %v", got)
		}
		if got := s.nova("GET", P+"/for-member?user_id="+u, "2.10", nil).want(t, 200, "").keypair(); got["user_id"] != u {
			t.Errorf("show: %v", got)
		}
		s.nova("POST", P, "2.10", kp(map[string]any{"name": "admins-own", "public_key": novaP256})).want(t, 201, "")
		names := func(r novaResponse) string {
			var ns []string
			for _, e := range list(r.body["keypairs"]) {
				ns = append(ns, str(obj(obj(e)["keypair"])["name"]))
			}
			return strings.Join(ns, ",")
		}
		if got := names(s.nova("GET", P+"?user_id="+u, "2.10", nil).want(t, 200, "")); got != "for-member,mine" {
			t.Errorf("admin list of member: %s", got)
		}
		if got := names(s.nova("GET", P+"?user_id="+u, "2.9", nil).want(t, 200, "")); got != "admins-own" {
			t.Errorf("user_id below 2.10: %s", got)
		}
		member.nova("POST", P, "2.10", kp(map[string]any{"name": "x", "user_id": "someone-else"})).want(t, 403, "forbidden")
		if got := names(member.nova("GET", P+"?user_id="+u, "2.10", nil).want(t, 200, "")); got != "for-member,mine" {
			t.Errorf("self user_id: %s", got)
		}
		member.nova("GET", P+"/admins-own?user_id=someone-else", "2.10", nil).want(t, 403, "forbidden")
		if r := s.nova("GET", P+"/nosuch", "", nil).want(t, 404, "itemNotFound"); !strings.Contains(string(r.raw), "nosuch") {
			t.Errorf("not found message %s", r.raw)
		}
		s.nova("DELETE", P+"/for-member?user_id="+u, "2.10", nil).want(t, 204, "")
		s.nova("DELETE", P+"/mine?user_id="+u, "2.10", nil).want(t, 204, "")
		s.nova("DELETE", P+"/admins-own", "2.10", nil).want(t, 204, "")
		// N-57: names are unique per project across users.
		s.nova("POST", P, "2.2", kp(map[string]any{"name": "shared-1", "public_key": novaP256})).want(t, 201, "")
		member.nova("POST", P, "2.2", kp(map[string]any{"name": "shared-1", "public_key": novaP256})).want(t, 409, "conflictingRequest")
		member.nova("GET", P+"/shared-1", "2.2", nil).want(t, 404, "itemNotFound")
		s.nova("DELETE", P+"/shared-1", "2.2", nil).want(t, 204, "")
	})

	t.Run("paging", func(t *testing.T) { // N-37..N-41, N-44
		for _, n := range []string{"b", "a", "c"} {
			s.nova("POST", P, "2.2", kp(map[string]any{"name": n, "public_key": novaP256})).want(t, 201, "")
		}
		if got := s.nova("GET", P+"/%61", "", nil).want(t, 200, "").keypair()["name"]; got != "a" {
			t.Errorf("decoded name %v", got)
		}
		r := s.nova("GET", P, "", nil).want(t, 200, "")
		var order []string
		for _, e := range list(r.body["keypairs"]) {
			order = append(order, str(obj(obj(e)["keypair"])["name"]))
		}
		if strings.Join(order, ",") != "a,b,c" {
			t.Errorf("order %v", order)
		}
		r = s.nova("GET", P+"?limit=2", "2.35", nil).want(t, 200, "")
		links := list(r.body["keypairs_links"])
		if len(list(r.body["keypairs"])) != 2 || len(links) != 1 || !strings.HasSuffix(str(obj(links[0])["href"]), "os-keypairs?limit=2&marker=b") {
			t.Errorf("page 1 %s", r.raw)
		}
		r = s.nova("GET", P+"?limit=2&marker=b", "2.35", nil).want(t, 200, "")
		if _, ok := r.body["keypairs_links"]; ok || len(list(r.body["keypairs"])) != 1 {
			t.Errorf("page 2 %s", r.raw)
		}
		s.nova("GET", P+"?marker=zzz", "2.35", nil).want(t, 400, "badRequest")
		s.nova("GET", P+"?limit=abc", "2.35", nil).want(t, 400, "badRequest")
		s.nova("GET", P+"?limit=-1", "2.35", nil).want(t, 400, "badRequest")
		// N-46: the project-less form and the Huawei-style root paths show the same content.
		for _, p := range []string{"/compute/v2.1/os-keypairs", "/v2.1/" + s.project + "/os-keypairs", "/compute/v2.1/os-keypairs/", "/v2/" + s.project + "/os-keypairs"} {
			if got := s.nova("GET", p, "", nil).want(t, 200, ""); len(list(got.body["keypairs"])) != 3 {
				t.Errorf("%s: %s", p, got.raw)
			}
		}
		for _, n := range []string{"a", "b", "c"} {
			s.nova("DELETE", P+"/"+n, "2.2", nil).want(t, 204, "")
		}
	})

	t.Run("auth", func(t *testing.T) { // N-45, N-48
		s.nova("GET", "/compute/v2.1/0123456789abcdef0123456789abcdef/os-keypairs", "", nil).want(t, 400, "badRequest")
		anon := &service{t: t, base: s.base}
		bad := &service{t: t, base: s.base, token: "not-a-token"}
		bad.nova("GET", "/compute/v2.1/os-keypairs", "", nil).want(t, 401, "error")
		r := anon.nova("GET", P, "", nil).want(t, 401, "error")
		if r.header.Get("WWW-Authenticate") == "" || obj(r.body["error"])["code"] != float64(401) {
			t.Errorf("401: %s %v", r.raw, r.header)
		}
	})

	t.Run("one-store", func(t *testing.T) { // N-49..N-52, N-54, N-55, N-59
		s.must(200, "POST", "/keypairs", kp(map[string]any{"name": "from-v3", "public_key": novaP256}))
		v3 := obj(s.must(200, "GET", "/keypairs/from-v3", nil)["keypair"])
		n := s.nova("GET", P+"/from-v3", "2.2", nil).want(t, 200, "").keypair()
		for _, f := range []string{"id", "fingerprint", "public_key", "type"} {
			if str(n[f]) != str(v3[f]) {
				t.Errorf("%s: nova %v, v3 %v", f, n[f], v3[f])
			}
		}
		s.nova("POST", P, "2.2", kp(map[string]any{"name": "from-v3"})).want(t, 409, "conflictingRequest")
		s.nova("DELETE", P+"/from-v3", "2.2", nil).want(t, 204, "")
		s.wantError(404, kps.ErrKeyPairNotFound, "GET", "/keypairs/from-v3", nil)
		s.nova("POST", P, "2.2", kp(map[string]any{"name": "from-v3"})).want(t, 201, "")
		d := obj(s.must(200, "GET", "/keypairs/from-v3", nil)["keypair"])
		if d["scope"] != "user" || d["is_key_protection"] != false {
			t.Errorf("v3 view of a Nova key pair: %v", d)
		}
		s.nova("DELETE", P+"/from-v3", "2.2", nil).want(t, 204, "")
		verbatim := strings.Replace(novaEd25519, " vector", "  vector", 1) + "\n"
		if got := s.nova("POST", P, "2.2", kp(map[string]any{"name": "verbatim", "public_key": verbatim})).want(t, 201, "").keypair(); got["public_key"] != verbatim {
			t.Errorf("create %q", got["public_key"])
		}
		if got := s.nova("GET", P+"/verbatim", "2.2", nil).want(t, 200, "").keypair(); got["public_key"] != verbatim {
			t.Errorf("show %q", got["public_key"])
		}
		s.nova("DELETE", P+"/verbatim", "2.2", nil).want(t, 204, "")
	})

	t.Run("checklist-details", func(t *testing.T) {
		// T-02, T-08..T-10, T-14..T-16: list entries carry exactly the create response's
		// values; at 2.2 with type, ssh by default.
		for _, c := range []struct{ version, typ string }{{"", ""}, {"2.2", "ssh"}} {
			created := map[string]map[string]any{}
			for i := 0; i < 3; i++ {
				name := "tl" + strings.ReplaceAll(c.version, ".", "") + "-" + strconv.Itoa(i)
				body := map[string]any{"name": name}
				if i > 0 {
					body["public_key"] = newP384PublicKey(t)
				}
				status := 200
				if c.version != "" {
					status = 201
				}
				created[name] = s.nova("POST", P, c.version, kp(body)).want(t, status, "").keypair()
			}
			seen := 0
			for _, e := range list(s.nova("GET", P, c.version, nil).want(t, 200, "").body["keypairs"]) {
				k := obj(obj(e)["keypair"])
				want, ok := created[str(k["name"])]
				if !ok {
					continue
				}
				seen++
				wantKeys := "fingerprint,name,public_key"
				if c.typ != "" {
					wantKeys += ",type"
				}
				if keys(k) != wantKeys || k["public_key"] != want["public_key"] || k["fingerprint"] != want["fingerprint"] || k["type"] != want["type"] {
					t.Errorf("list entry %v, created %v", k, want)
				}
				if c.typ != "" && (k["type"] != c.typ || want["type"] != c.typ) {
					t.Errorf("type %v / %v", k["type"], want["type"])
				}
			}
			if seen != 3 {
				t.Errorf("%d of the 3 created key pairs listed", seen)
			}
			for name := range created {
				if c.typ != "" {
					if got := s.nova("GET", P+"/"+name, c.version, nil).want(t, 200, "").keypair(); got["type"] != c.typ || len(got) != 10 {
						t.Errorf("show at %s: %v", c.version, got)
					}
				}
				r := s.nova("DELETE", P+"/"+name, c.version, nil)
				if c.version == "" {
					r.want(t, 202, "")
				} else {
					r.want(t, 204, "")
				}
			}
		}
		// T-07, T-13, TF-01..TF-03, G-18: an imported 2048-bit RSA key: no private_key, the
		// key read back unchanged, then gone.
		rsaKey := newRSAPublicKey(t, 2048, "nova@ubuntu")
		for _, v := range []string{"", "2.2"} {
			status := map[string]int{"": 200, "2.2": 201}[v]
			got := s.nova("POST", P, v, kp(map[string]any{"name": "rsa-import", "public_key": rsaKey})).want(t, status, "").keypair()
			if _, ok := got["private_key"]; ok || got["name"] != "rsa-import" || (v == "2.2") != (got["type"] == "ssh") {
				t.Errorf("import at %q: %v", v, got)
			}
			if r := s.nova("GET", P+"/rsa-import", v, nil).want(t, 200, "").keypair(); r["public_key"] != rsaKey || !regexp.MustCompile(`^[a-f0-9:]+$`).MatchString(str(r["fingerprint"])) {
				t.Errorf("read back %v", r)
			}
			s.nova("DELETE", P+"/rsa-import", v, nil).want(t, map[string]int{"": 202, "2.2": 204}[v], "")
			s.nova("GET", P+"/rsa-import", v, nil).want(t, 404, "itemNotFound")
		}
		// TF-08: value_specs members are 400 under /v2.1, dropped under legacy /v2.
		s.nova("POST", P, "", kp(map[string]any{"name": "tf08", "foo": "bar"})).want(t, 400, "badRequest")
		L := "/compute/v2/" + s.project + "/os-keypairs"
		got := s.nova("POST", L, "", kp(map[string]any{"name": "tf08", "foo": "bar", "public_key": novaP256})).want(t, 200, "").keypair()
		if _, ok := got["foo"]; ok || got["name"] != "tf08" {
			t.Errorf("legacy create %v", got)
		}
		s.nova("DELETE", L+"/tf08", "", nil).want(t, 202, "")
		// N-11: on legacy /v2 the owner is the caller whatever user_id says, and no version
		// header comes back.
		adminID := s.userIDOf("admin")
		r := s.nova("POST", L, "2.10", kp(map[string]any{"name": "n11", "user_id": "someone", "public_key": novaP256})).want(t, 200, "")
		if r.keypair()["user_id"] != adminID || r.header.Get("X-OpenStack-Nova-API-Version") != "" || r.header.Get("OpenStack-API-Version") != "" ||
			strings.Contains(strings.Join(r.header.Values("Vary"), ","), "API-Version") {
			t.Errorf("legacy: %s %v", r.raw, r.header)
		}
		s.nova("DELETE", L+"/n11", "", nil).want(t, 202, "")
		// N-32, N-36: the policy and not-found messages name what they are about.
		r = member.nova("POST", P, "2.10", kp(map[string]any{"name": "n32", "user_id": adminID})).want(t, 403, "forbidden")
		if msg := str(obj(r.body["forbidden"])["message"]); msg != "Policy doesn't allow os_compute_api:os-keypairs:create to be performed." {
			t.Errorf("policy message %q", msg)
		}
		for _, action := range []struct{ method, path, name string }{{"GET", P + "?user_id=" + adminID, "index"}, {"GET", P + "/x?user_id=" + adminID, "show"}, {"DELETE", P + "/x?user_id=" + adminID, "delete"}} {
			r := member.nova(action.method, action.path, "2.10", nil).want(t, 403, "forbidden")
			if !strings.Contains(string(r.raw), "os_compute_api:os-keypairs:"+action.name) {
				t.Errorf("%s %s: %s", action.method, action.path, r.raw)
			}
		}
		if msg := str(obj(s.nova("GET", P+"/nosuch", "2.10", nil).want(t, 404, "itemNotFound").body["itemNotFound"])["message"]); msg != "Keypair nosuch not found for user "+adminID {
			t.Errorf("not found message %q", msg)
		}
		// N-37: the segment is percent-decoded.
		s.nova("POST", P, "2.2", kp(map[string]any{"name": "web-01", "public_key": novaP256})).want(t, 201, "")
		if got := s.nova("GET", P+"/web%2D01", "", nil).want(t, 200, "").keypair()["name"]; got != "web-01" {
			t.Errorf("decoded name %v", got)
		}
		// N-59: the submitted text in the list as well.
		verbatim := strings.Replace(novaEd25519, " vector", "  vector", 1) + "\n"
		s.nova("POST", P, "2.2", kp(map[string]any{"name": "verbatim2", "public_key": verbatim})).want(t, 201, "")
		for _, e := range list(s.nova("GET", P, "2.2", nil).want(t, 200, "").body["keypairs"]) {
			if k := obj(obj(e)["keypair"]); k["name"] == "verbatim2" && k["public_key"] != verbatim {
				t.Errorf("listed %q", k["public_key"])
			}
		}
		s.nova("DELETE", P+"/verbatim2", "2.2", nil).want(t, 204, "")
		s.nova("DELETE", P+"/web-01", "2.2", nil).want(t, 204, "")
	})

	t.Run("microversion-rules", func(t *testing.T) { // §4.2–4.4 beyond N-04..N-10
		echo := func(r novaResponse, v string) {
			t.Helper()
			vary := strings.Join(r.header.Values("Vary"), ",")
			if r.header.Get("X-OpenStack-Nova-API-Version") != v || r.header.Get("OpenStack-API-Version") != "compute "+v ||
				!strings.Contains(vary, "X-OpenStack-Nova-API-Version") || !strings.Contains(strings.ReplaceAll(vary, "X-OpenStack-Nova-API-Version", ""), "OpenStack-API-Version") {
				t.Errorf("want %s echoed: %v", v, r.header)
			}
		}
		noVersion := "X-OpenStack-Nova-API-Version"
		for _, c := range []struct {
			headers []string
			want    string
		}{
			{[]string{"OpenStack-API-Version", "compute 2.10"}, "2.10"},
			{[]string{"OpenStack-API-Version", "COMPUTE 2.11"}, "2.11"},
			{[]string{"OpenStack-API-Version", "volume 3.0, compute 2.35, compute 2.3"}, "2.3"},
			{[]string{"OpenStack-API-Version", "volume 3.0", noVersion, "2.4"}, "2.4"},
			{[]string{noVersion, "2.2, 2.35"}, "2.35"},
			{[]string{"OpenStack-API-Version", "compute 2.5", noVersion, "2.60"}, "2.5"},
			{[]string{"OpenStack-API-Version", "compute latest"}, "2.92"},
			{[]string{noVersion, "2.92"}, "2.92"},
			{nil, "2.1"},
		} {
			headers := append([]string{noVersion, ""}, c.headers...)
			echo(s.nova("GET", P, "", nil, headers...).want(t, 200, ""), c.want)
		}
		// Every Nova answer at a resolved version echoes it, errors included.
		echo(s.nova("GET", P+"/nosuch", "2.10", nil).want(t, 404, "itemNotFound"), "2.10")
		echo(s.nova("POST", P, "2.10", `{"keypair":`).want(t, 400, "badRequest"), "2.10")
		// 406 echoes the unsupported version and names the range; a bad format echoes nothing.
		r := s.nova("GET", P, "", nil, "OpenStack-API-Version", "compute 3.0").want(t, 406, "computeFault")
		if msg := str(obj(r.body["computeFault"])["message"]); msg != "Version 3.0 is not supported by the API. Minimum is 2.1 and maximum is 2.92." {
			t.Errorf("406 message %q", msg)
		}
		echo(r, "3.0")
		for _, v := range []string{"2", "2.01", "abc", "v2.10", "2.1.1", ""} {
			if v == "" {
				v = " "
			}
			r := s.nova("GET", P, v, nil).want(t, 400, "badRequest")
			if r.header.Get("X-OpenStack-Nova-API-Version") != "" || r.header.Get("OpenStack-API-Version") != "" {
				t.Errorf("%q: version headers on a format error %v", v, r.header)
			}
		}
		// §4.3: authentication and routing first, then the version, then the body.
		anon := &service{t: t, base: s.base}
		anon.nova("GET", P, "abc", nil).want(t, 401, "error")
		s.nova("GET", "/compute/v2.1/"+s.project+"/os-nothing", "abc", nil).want(t, 404, "itemNotFound")
		s.nova("POST", P, "2.93", `{"keypair":`).want(t, 406, "computeFault")
		s.nova("POST", P, "2.93", kp(map[string]any{"name": "x"}), "Content-Type", "application/xml").want(t, 406, "computeFault")
	})

	t.Run("concurrent-duplicate", func(t *testing.T) { // N-53
		var wg sync.WaitGroup
		codes := make([]int, 2)
		for i := range codes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes[i] = s.nova("POST", P, "2.2", kp(map[string]any{"name": "race", "public_key": novaP256})).status
			}()
		}
		wg.Wait()
		if codes[0]+codes[1] != 201+409 {
			t.Errorf("codes %v", codes)
		}
		s.nova("DELETE", P+"/race", "2.2", nil).want(t, 204, "")
	})
}

// TestNovaQuota: Nova's per-user limit (§11, --keypair-user-quota; N-30, N-31) counts the
// key pairs the target user owns in the project whichever API created them, is checked before
// the key material, and is 403 forbidden; the project quota (--keypair-quota) is the same 403.
func TestNovaQuota(t *testing.T) {
	perUser := func(n int) func(*daemon.Config) { return func(c *daemon.Config) { c.KeyPairUserQuota = &n } }
	for _, c := range []struct {
		name   string
		config func(*daemon.Config)
		want   int  // creates that pass before the 403
		full   bool // the project quota is what refuses
	}{
		{"default-100", func(*daemon.Config) {}, 100, false},
		{"user-quota-3", perUser(3), 3, false},
		{"user-quota-0", perUser(0), 0, false},
		{"unlimited-project-102", func(c *daemon.Config) { perUser(-1)(c); c.KeyPairQuota = 102 }, 102, true},
		{"project-2-before-user-3", func(c *daemon.Config) { perUser(3)(c); c.KeyPairQuota = 2 }, 2, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := setup(t, c.config)
			s.addUser("quota-member", kps.RoleMember)
			P := "/compute/v2.1/os-keypairs"
			for i := 0; i < c.want; i++ {
				body := kp(map[string]any{"name": "q" + strconv.Itoa(i), "public_key": novaP256})
				if i == 0 && c.want > 1 {
					// A key pair made through the v3 API counts as well.
					s.must(200, "POST", "/keypairs", body)
					continue
				}
				s.nova("POST", P, "2.2", body).want(t, 201, "")
			}
			r := s.nova("POST", P, "2.2", kp(map[string]any{"name": "over", "public_key": novaP256})).want(t, 403, "forbidden")
			if !strings.Contains(string(r.raw), "Quota exceeded, too many key pairs.") || r.header.Get("X-OpenStack-Nova-API-Version") != "2.2" {
				t.Errorf("quota answer %s %v", r.raw, r.header)
			}
			// N-31: the quota is checked before the key material.
			s.nova("POST", P, "", kp(map[string]any{"name": "junk", "public_key": "ssh-rsa JUNK"})).want(t, 403, "forbidden")
			s.nova("GET", P+"/over", "2.2", nil).want(t, 404, "itemNotFound")
			if c.want == 0 {
				return
			}
			// The limit is the owner's: the admin creating for the member (2.10) is counted
			// against the member, whose own limit is not reached (unless the project's is).
			got := s.nova("POST", P, "2.10", kp(map[string]any{"name": "for-member", "public_key": novaP256, "user_id": s.userIDOf("quota-member")}))
			if c.full {
				got.want(t, 403, "forbidden")
				return
			}
			got.want(t, 201, "")
			// Deleting one frees a place.
			s.nova("DELETE", P+"/q1", "2.2", nil).want(t, 204, "")
			s.nova("POST", P, "2.2", kp(map[string]any{"name": "again", "public_key": novaP256})).want(t, 201, "")
			s.nova("POST", P, "2.2", kp(map[string]any{"name": "again2", "public_key": novaP256})).want(t, 403, "forbidden")
		})
	}
}

// userIDOf is the ID of a user of domain Default.
func (s *service) userIDOf(name string) string {
	s.t.Helper()
	ctx := context.Background()
	d, _ := s.main.Store().DomainByName(ctx, "Default")
	u, err := s.main.Store().UserByName(ctx, d.ID, name)
	if err != nil || u == nil {
		s.t.Fatalf("user %s: %v", name, err)
	}
	return u.ID
}

// TestNovaLinkPrefix: --compute-link-prefix is <base> of every Nova link (§3.3) — version
// documents and keypairs_links on every tree — and, with /v2.1, the catalog's compute URL
// (auth.md §8.4); without it both follow the public URL (TestNovaConformance, wantCatalog).
func TestNovaLinkPrefix(t *testing.T) {
	const prefix = "https://gw.example.net/nova"
	s := setup(t, func(c *daemon.Config) { c.ComputeLinkPrefix = prefix + "/" })
	anon := &service{t: t, base: s.base}
	hrefs := func(v any) (out []string) {
		for _, l := range list(v) {
			out = append(out, str(obj(l)["href"]))
		}
		return out
	}
	vs := list(anon.nova("GET", "/compute/", "", nil).want(t, 200, "").body["versions"])
	if got := append(hrefs(obj(vs[0])["links"]), hrefs(obj(vs[1])["links"])...); strings.Join(got, " ") != prefix+"/v2/ "+prefix+"/v2.1/" {
		t.Errorf("version list links %v", got)
	}
	for p, want := range map[string]string{"/compute/v2.1": prefix + "/v2.1/", "/compute/v2/": prefix + "/v2/", "/compute/v2.1/" + s.project: prefix + "/v2.1/"} {
		if got := hrefs(obj(anon.nova("GET", p, "", nil).want(t, 200, "").body["version"])["links"]); len(got) != 2 || got[0] != want {
			t.Errorf("%s: links %v", p, got)
		}
	}
	for _, n := range []string{"a", "b"} {
		s.nova("POST", "/compute/v2.1/os-keypairs", "2.2", kp(map[string]any{"name": n, "public_key": novaP256})).want(t, 201, "")
	}
	for path, want := range map[string]string{
		"/compute/v2.1/os-keypairs":                   prefix + "/v2.1/os-keypairs?limit=1&marker=a",
		"/compute/v2.1/" + s.project + "/os-keypairs": prefix + "/v2.1/" + s.project + "/os-keypairs?limit=1&marker=a",
		"/v2.1/" + s.project + "/os-keypairs":         prefix + "/v2.1/" + s.project + "/os-keypairs?limit=1&marker=a",
	} {
		if got := hrefs(s.nova("GET", path+"?limit=1", "2.35", nil).want(t, 200, "").body["keypairs_links"]); len(got) != 1 || got[0] != want {
			t.Errorf("%s: keypairs_links %v, want %s", path, got, want)
		}
	}
	req, _ := http.NewRequest("GET", s.base+"/v3/auth/catalog", nil)
	req.Header.Set("X-Auth-Token", s.token)
	resp, err := apiClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var catalog struct {
		Catalog []struct {
			Type      string
			Endpoints []struct{ URL string }
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&catalog); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, sv := range catalog.Catalog {
		if sv.Type == "compute" {
			found = len(sv.Endpoints) == 1 && sv.Endpoints[0].URL == prefix+"/v2.1"
		}
	}
	if !found {
		t.Errorf("catalog %+v: compute URL is not %s/v2.1", catalog, prefix)
	}
}

// TestKPSGenerateX509: the v3 API generates x509 key pairs like the Nova API (§9.2), and the
// Nova API shows them.
func TestKPSGenerateX509(t *testing.T) {
	s := setup(t)
	out := obj(s.must(200, "POST", "/keypairs", kp(map[string]any{"name": "gen-cert", "type": "x509"}))["keypair"])
	if out["type"] != "x509" || !strings.HasPrefix(str(out["public_key"]), "-----BEGIN CERTIFICATE-----") || !sha1FP.MatchString(str(out["fingerprint"])) {
		t.Fatalf("generated x509: %v", out)
	}
	p12, err := base64.StdEncoding.DecodeString(str(out["private_key"]))
	if err != nil {
		t.Fatal(err)
	}
	if _, cert, err := pkcs12.Decode(p12, ""); err != nil || cert.Subject.CommonName != str(out["user_id"]) {
		t.Fatalf("PKCS#12: %v", err)
	}
	d := obj(s.must(200, "GET", "/keypairs/gen-cert", nil)["keypair"])
	if d["algorithm"] != "X509" || d["is_key_protection"] != false || d["fingerprint"] != out["fingerprint"] {
		t.Errorf("detail %v", d)
	}
	n := s.nova("GET", "/compute/v2.1/os-keypairs/gen-cert", "2.2", nil).want(t, 200, "").keypair()
	if n["type"] != "x509" || n["fingerprint"] != out["fingerprint"] {
		t.Errorf("Nova view %v", n)
	}
}

// TestNovaOpenStackClient runs the real OpenStack command-line client (Debian's
// python3-openstackclient, installed by .ci/run) against the service, authenticated from the
// auth URL alone through the catalog: keypair create (generated and imported), list, show and
// delete at compute API versions 2.2, 2.35 and 2.92, each version as its own member user so the
// three run in parallel (O-01..O-09, O-11); then the admin's cases at 2.10, which resolve
// users and domains through the identity API: list --user by name, by ID with --user-domain,
// list --project, and show --user (O-10, O-12).
func TestNovaOpenStackClient(t *testing.T) {
	bin, err := exec.LookPath("openstack")
	if err != nil {
		if os.Getenv("KPS_REQUIRE_OSC") == "1" {
			t.Fatal("KPS_REQUIRE_OSC=1 but the openstack command (python3-openstackclient) is not installed")
		}
		t.Skip("SKIP: the openstack command (python3-openstackclient) is not installed; .ci/run installs it")
	}
	s := setup(t)
	dir := t.TempDir()
	// osc runs the client as user (password <user>-password, or the admin's) in project local-1.
	osc := func(user, version string, args ...string) (string, error) {
		password := user + "-password"
		if user == "admin" {
			password = "admin-password-for-tests"
		}
		full := append([]string{"--os-auth-url", s.base + "/v3", "--os-identity-api-version", "3",
			"--os-username", user, "--os-password", password, "--os-user-domain-name", "Default",
			"--os-project-name", "local-1", "--os-project-domain-name", "Default", "--os-region-name", "local-1",
			"--os-compute-api-version", version}, args...)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, full...)
		cmd.Env = append(os.Environ(), "HOME="+dir, "OS_CLOUD=", "OS_AUTH_URL=")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	mustOSC := func(t *testing.T, user, version string, args ...string) string {
		t.Helper()
		out, err := osc(user, version, args...)
		if err != nil {
			t.Fatalf("openstack --os-compute-api-version %s %s: %v\n%s", version, strings.Join(args, " "), err, out)
		}
		return out
	}
	jsonOf := func(t *testing.T, out string, v any) {
		t.Helper()
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("not JSON: %q", out)
		}
	}
	listNames := func(t *testing.T, out string) []string {
		t.Helper()
		var listed []map[string]any
		jsonOf(t, out, &listed)
		var names []string
		for _, e := range listed {
			if e["Fingerprint"] == nil || e["Fingerprint"] == "" {
				t.Errorf("list entry without fingerprint: %v", e)
			}
			names = append(names, str(e["Name"]))
		}
		sort.Strings(names)
		return names
	}
	pubFile := dir + "/id_rsa.pub"
	pub := newRSAPublicKey(t, 2048, "osc")
	if err := os.WriteFile(pubFile, []byte(pub), 0o600); err != nil {
		t.Fatal(err)
	}
	_, ed := newEd25519(t, "osc-ed25519")
	if err := os.WriteFile(dir+"/id_ed25519.pub", []byte(ed), 0o600); err != nil {
		t.Fatal(err)
	}
	users := map[string]*service{}
	for _, v := range []string{"2.2", "2.35", "2.92"} {
		user := "osc-" + strings.ReplaceAll(v, ".", "-")
		users[v] = s.addUser(user, kps.RoleMember)
	}
	t.Run("versions", func(t *testing.T) {
		for _, v := range []string{"2.2", "2.35", "2.92"} {
			t.Run(v, func(t *testing.T) {
				t.Parallel()
				user := "osc-" + strings.ReplaceAll(v, ".", "-")
				gen, imp := user+"-gen", user+"-imp"
				// O-01, O-03: without --public-key, newer clients generate an Ed25519 key
				// themselves and import it; Debian's (6.0) asks the service to generate one,
				// which 2.92 no longer allows.
				if out, err := osc(user, v, "keypair", "create", "--private-key", dir+"/"+gen, gen, "-f", "json"); err == nil {
					var created map[string]any
					jsonOf(t, out, &created)
					if created["name"] != gen || !md5FP.MatchString(str(created["fingerprint"])) || created["user_id"] != s.userIDOf(user) {
						t.Errorf("create: %v", created)
					}
				} else if v != "2.92" || !strings.Contains(out, "400") {
					t.Fatalf("keypair create %s: %v\n%s", gen, err, out)
				} else {
					mustOSC(t, user, v, "keypair", "create", "--public-key", dir+"/id_ed25519.pub", gen)
				}
				// O-02: the file's content verbatim.
				var created map[string]any
				jsonOf(t, mustOSC(t, user, v, "keypair", "create", "--public-key", pubFile, imp, "-f", "json"), &created)
				if created["name"] != imp {
					t.Errorf("import: %v", created)
				}
				if got := users[v].nova("GET", "/compute/v2.1/os-keypairs/"+imp, v, nil).want(t, 200, "").keypair(); got["public_key"] != pub {
					t.Errorf("imported key %q, want %q", got["public_key"], pub)
				}
				// O-07; O-11 at 2.35: pages of one entry, which the client follows through
				// keypairs_links.
				if got := listNames(t, mustOSC(t, user, v, "keypair", "list", "-f", "json")); strings.Join(got, ",") != gen+","+imp {
					t.Errorf("list: %v", got)
				}
				if v == "2.35" {
					if got := listNames(t, mustOSC(t, user, v, "keypair", "list", "--limit", "1", "-f", "json")); strings.Join(got, ",") != gen+","+imp {
						t.Errorf("list --limit 1: %v", got)
					}
				}
				// O-08.
				var shown map[string]any
				jsonOf(t, mustOSC(t, user, v, "keypair", "show", imp, "-f", "json"), &shown)
				if shown["name"] != imp || shown["type"] != "ssh" || shown["user_id"] != s.userIDOf(user) || !md5FP.MatchString(str(shown["fingerprint"])) {
					t.Errorf("show: %v", shown)
				}
				switch v {
				case "2.2": // O-04: a duplicate fails.
					if out, err := osc(user, v, "keypair", "create", "--public-key", pubFile, imp); err == nil || !strings.Contains(out, "409") {
						t.Errorf("duplicate create: %v %s", err, out)
					}
				case "2.35": // O-05: deleting a key pair that does not exist fails.
					if out, err := osc(user, v, "keypair", "delete", "not_existing"); err == nil {
						t.Errorf("delete not_existing succeeded: %s", out)
					}
				}
				// O-06, O-09: deleted, gone from the list, and show fails.
				mustOSC(t, user, v, "keypair", "delete", gen, imp)
				if v == "2.92" {
					if out, err := osc(user, v, "keypair", "show", imp); err == nil {
						t.Errorf("show after delete succeeded: %s", out)
					}
				}
				if v == "2.2" {
					if got := listNames(t, mustOSC(t, user, v, "keypair", "list", "-f", "json")); len(got) != 0 {
						t.Errorf("list after delete: %v", got)
					}
				}
			})
		}
	})
	t.Run("admin", func(t *testing.T) {
		owner := s.addUser("osc-owner", kps.RoleMember)
		ownerID := s.userIDOf("osc-owner")
		owner.nova("POST", "/compute/v2.1/os-keypairs", "2.2", kp(map[string]any{"name": "owned", "public_key": novaP256})).want(t, 201, "")
		s.nova("POST", "/compute/v2.1/os-keypairs", "2.2", kp(map[string]any{"name": "admins", "public_key": novaEd25519})).want(t, 201, "")
		// O-10: --user by name (GET /v3/users?name=), and by ID with --user-domain by name
		// (GET /v3/domains?name=, GET /v3/users/{id}); only that user's key pairs.
		for _, args := range [][]string{{"--user", "osc-owner"}, {"--user", ownerID, "--user-domain", "Default"}} {
			if got := listNames(t, mustOSC(t, "admin", "2.10", append([]string{"keypair", "list", "-f", "json"}, args...)...)); strings.Join(got, ",") != "owned" {
				t.Errorf("keypair list %v: %v", args, got)
			}
		}
		// O-12: --project lists the users (GET /v3/users) and each user's key pairs.
		if got := listNames(t, mustOSC(t, "admin", "2.10", "keypair", "list", "--project", "local-1", "-f", "json")); strings.Join(got, ",") != "admins,owned" {
			t.Errorf("keypair list --project: %v", got)
		}
		// show --user (GET …/owned?user_id=). Debian's openstacksdk 0.101 drops user_id from
		// DELETE, so delete --user is not exercised here (TestNovaGophercloud deletes by user_id).
		var shown map[string]any
		jsonOf(t, mustOSC(t, "admin", "2.10", "keypair", "show", "--user", "osc-owner", "owned", "-f", "json"), &shown)
		if shown["name"] != "owned" || shown["user_id"] != ownerID {
			t.Errorf("keypair show --user: %v", shown)
		}
		// A member cannot list another user's key pairs (the client falls back to the name).
		if out, err := osc("osc-2-2", "2.10", "keypair", "list", "--user", "admin"); err == nil {
			t.Errorf("a member listed the admin's key pairs: %s", out)
		}
	})
}

// TestNovaCrossProject: key pairs stay in the project that created them (N-47, deviation D3),
// and a path project other than the token's is Nova's 400 (N-45).
func TestNovaCrossProject(t *testing.T) {
	s := setup(t)
	a := s.addUser("cross", kps.RoleMember)
	ctx := t.Context()
	d, _ := s.main.Store().DomainByName(ctx, "Default")
	other := &kps.Project{Name: "local-1_nova", DomainID: d.ID, Enabled: true}
	if err := s.main.Store().CreateProject(ctx, other); err != nil {
		t.Fatal(err)
	}
	u, _ := s.main.Store().UserByName(ctx, d.ID, "cross")
	if err := s.main.Store().GrantRole(ctx, kps.RoleAssignment{UserID: u.ID, Role: kps.RoleMember, ProjectID: other.ID}); err != nil {
		t.Fatal(err)
	}
	a.nova("POST", "/compute/v2.1/"+a.project+"/os-keypairs", "2.2", kp(map[string]any{"name": "K", "public_key": novaP256})).want(t, 201, "")
	b := &service{t: t, base: s.base, main: s.main}
	b.loginScoped("cross", "cross-password", other.ID)
	B := "/compute/v2.1/" + other.ID + "/os-keypairs"
	if got := b.nova("GET", B, "2.2", nil).want(t, 200, ""); len(list(got.body["keypairs"])) != 0 {
		t.Errorf("project B lists %s", got.raw)
	}
	b.nova("GET", B+"/K", "2.2", nil).want(t, 404, "itemNotFound")
	b.nova("GET", "/compute/v2.1/os-keypairs/K", "2.2", nil).want(t, 404, "itemNotFound")
	r := b.nova("GET", "/compute/v2.1/"+a.project+"/os-keypairs", "2.2", nil).want(t, 400, "badRequest")
	if msg := string(r.raw); !strings.Contains(msg, a.project) || !strings.Contains(msg, other.ID) {
		t.Errorf("mismatch message names both projects: %s", msg)
	}
	if r.header.Get("X-OpenStack-Nova-API-Version") != "" && r.header.Get("X-OpenStack-Nova-API-Version") != "2.2" {
		t.Errorf("version header %q", r.header.Get("X-OpenStack-Nova-API-Version"))
	}
}

// TestNovaQuotaConcurrent: concurrent creates never pass the per-user limit together (§11).
func TestNovaQuotaConcurrent(t *testing.T) {
	s := setup(t)
	P := "/compute/v2.1/os-keypairs"
	for i := 0; i < 95; i++ {
		s.nova("POST", P, "2.2", kp(map[string]any{"name": "q" + strconv.Itoa(i), "public_key": novaP256})).want(t, 201, "")
	}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if st := s.nova("POST", P, "2.2", kp(map[string]any{"name": "c" + strconv.Itoa(i), "public_key": novaP256})).status; st != 201 && st != 403 {
				t.Errorf("status %d", st)
			}
		}()
	}
	wg.Wait()
	if n := len(list(s.nova("GET", P, "2.2", nil).want(t, 200, "").body["keypairs"])); n > 100 {
		t.Errorf("%d key pairs, limit 100", n)
	}
}

// TestNovaDeleteBound: a key pair bound to a server through the KPS API cannot be deleted
// through the Nova API (N-56, deviation D5).
func TestNovaDeleteBound(t *testing.T) {
	s := setup(t)
	h := sshdtest.Start(t, sshdtest.Options{})
	s.addHost("app-01", h, nil)
	s.nova("POST", "/compute/v2.1/os-keypairs", "2.2", kp(map[string]any{"name": "bound", "public_key": novaP256})).want(t, 201, "")
	id := s.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "bound",
		"server": map[string]any{"id": "app-01", "auth": map[string]any{"type": "password", "key": h.Password}}})["task_id"].(string)
	if st := s.waitTask(id); !strings.HasPrefix(st, "SUCCESS_") {
		t.Fatalf("bind %s: %v", st, s.failedTask(id))
	}
	s.nova("DELETE", "/compute/v2.1/os-keypairs/bound", "2.2", nil).want(t, 409, "conflictingRequest")
	s.nova("GET", "/compute/v2.1/os-keypairs/bound", "2.2", nil).want(t, 200, "")
}

// novaSigned sends a Nova request signed with ak/sk as the Huawei SDKs sign; headers (name,
// value pairs) are set before signing, so they are signed; unsigned ones are added afterwards.
func (s *service) novaSigned(ak, sk, method, path, version string, body any, headers []string, unsigned ...string) novaResponse {
	s.t.Helper()
	var raw []byte
	if body != nil {
		raw, _ = json.Marshal(body)
	}
	req, _ := http.NewRequest(method, s.base+path, bytes.NewReader(raw))
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if version != "" {
		req.Header.Set("X-OpenStack-Nova-API-Version", version)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	if err := iam.Sign(req, raw, ak, sk, time.Now()); err != nil {
		s.t.Fatal(err)
	}
	for i := 0; i+1 < len(unsigned); i += 2 {
		req.Header.Set(unsigned[i], unsigned[i+1])
	}
	return s.novaSend(req)
}

// TestNovaAKSK: AK/SK signatures on the Nova routes (nova-keypairs.md §5, auth.md §4.3–4.4).
// An access key is bound to no project: the project forms take it from the path, the
// project-less forms from X-Project-Id (signed or not), and without one they are refused with
// 403 KPS.6103 in Nova's fault format; a header that contradicts the path is KPS.6103 too.
func TestNovaAKSK(t *testing.T) {
	s := setup(t)
	ak, sk := s.accessKey("admin")
	s.addUser("aksk-reader", kps.RoleReader)
	rak, rsk := s.accessKey("aksk-reader")
	P := s.project
	other := "0123456789abcdef0123456789abcdef"
	adminID := s.userIDOf("admin")
	hp := []string{"X-Project-Id", P}
	forbidden := func(r novaResponse, code string) {
		t.Helper()
		r.want(t, 403, "forbidden")
		if obj(r.body["forbidden"])["error_code"] != code {
			t.Errorf("403 %s, want %s", r.raw, code)
		}
	}

	created := s.novaSigned(ak, sk, "POST", "/compute/v2.1/os-keypairs", "2.2", kp(map[string]any{"name": "signed", "public_key": novaP256}), hp).want(t, 201, "").keypair()
	if created["user_id"] != adminID || created["fingerprint"] != novaP256FP {
		t.Errorf("created %v", created)
	}
	for _, c := range []struct {
		path    string
		headers []string
	}{
		{"/compute/v2.1/os-keypairs", hp},
		{"/compute/v2/os-keypairs", hp},
		{"/compute/v2.1/" + P + "/os-keypairs", nil},
		{"/compute/v2.1/" + P + "/os-keypairs", hp},
		{"/v2.1/" + P + "/os-keypairs", nil},
		{"/v2/" + P + "/os-keypairs", hp},
	} {
		r := s.novaSigned(ak, sk, "GET", c.path, "", nil, c.headers).want(t, 200, "")
		if ks := list(r.body["keypairs"]); len(ks) != 1 || obj(obj(ks[0])["keypair"])["name"] != "signed" {
			t.Errorf("GET %s %v: %s", c.path, c.headers, r.raw)
		}
	}
	// An X-Project-Id added after signing (the Terraform provider's way) selects the project.
	s.novaSigned(ak, sk, "GET", "/compute/v2.1/os-keypairs/signed", "2.10", nil, nil, hp...).want(t, 200, "")
	// No project anywhere: row 6; a header that contradicts the path: row 1; a project the
	// key's user holds no role on: row 7.
	forbidden(s.novaSigned(ak, sk, "GET", "/compute/v2.1/os-keypairs", "", nil, nil), kps.ErrProjectMismatch)
	forbidden(s.novaSigned(ak, sk, "POST", "/compute/v2.1/os-keypairs", "2.2", kp(map[string]any{"name": "none", "public_key": novaP256}), nil), kps.ErrProjectMismatch)
	forbidden(s.novaSigned(ak, sk, "GET", "/compute/v2.1/"+P+"/os-keypairs", "", nil, []string{"X-Project-Id", other}), kps.ErrProjectMismatch)
	forbidden(s.novaSigned(ak, sk, "GET", "/compute/v2.1/os-keypairs", "", nil, []string{"X-Project-Id", other}), kps.ErrForbidden)
	forbidden(s.novaSigned(ak, sk, "GET", "/compute/v2.1/"+other+"/os-keypairs", "", nil, nil), kps.ErrForbidden)
	// The operation's role still applies: a reader lists but does not create.
	s.novaSigned(rak, rsk, "GET", "/compute/v2.1/os-keypairs", "2.2", nil, hp).want(t, 200, "")
	forbidden(s.novaSigned(rak, rsk, "POST", "/compute/v2.1/os-keypairs", "2.2", kp(map[string]any{"name": "r", "public_key": novaP256}), hp), kps.ErrForbidden)
	// A wrong secret is 401 in Keystone's shape.
	s.novaSigned(ak, strings.Repeat("x", 40), "GET", "/compute/v2.1/os-keypairs", "", nil, hp).want(t, 401, "error")
	s.novaSigned(ak, sk, "DELETE", "/compute/v2.1/os-keypairs/signed", "2.2", nil, hp).want(t, 204, "")
	s.nova("GET", "/compute/v2.1/os-keypairs/signed", "2.2", nil).want(t, 404, "itemNotFound")
}
