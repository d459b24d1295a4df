package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/daemon"
	"github.com/openkps/kps/iam"
	"github.com/openkps/kps/internal/kpstest"
	"github.com/openkps/kps/internal/openapitest"
)

// AK/SK requests against the real `kps serve` (auth.md §6): signed with iam.Sign the way the
// Go SDK signs, through real TCP connections.

// signedRequest describes one AK/SK request; zero values mean: no body, signed now, from
// 127.0.0.1, with X-Project-Id equal to the path project (as the Go SDK sends it).
type signedRequest struct {
	method, path string // path below /v3/{project}
	project      string // default: the service's project
	body         []byte
	sendBody     []byte // when set, sent instead of the signed body
	at           time.Time
	headers      map[string]string
	from         string // source IP on the loopback network
}

type signedResponse struct {
	status int
	header http.Header
	body   map[string]any
}

// accessKey issues a permanent AK/SK for a user of domain Default, stored as the service stores
// them (SK sealed under the key ring).
func (s *service) accessKey(userName string) (ak, sk string) {
	s.t.Helper()
	return kpstest.AccessKey(s.t, s.main, userName)
}

// signed sends r signed with ak/sk and decodes the JSON answer.
func (s *service) signed(ak, sk string, r signedRequest) signedResponse {
	s.t.Helper()
	project := r.project
	if project == "" {
		project = s.project
	}
	req, err := http.NewRequest(r.method, s.base+"/v3/"+project+r.path, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("User-Agent", "huaweicloud-usdk-go/3.0; openkps-test")
	req.Header.Set("X-Project-Id", project)
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range r.headers {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	at := r.at
	if at.IsZero() {
		at = time.Now()
	}
	if err := iam.Sign(req, r.body, ak, sk, at); err != nil {
		s.t.Fatal(err)
	}
	send := r.body
	if r.sendBody != nil {
		send = r.sendBody
	}
	req.Body = io.NopCloser(bytes.NewReader(send))
	req.ContentLength = int64(len(send))

	client := apiClient
	if r.from != "" {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(r.from)}}
		client = &http.Client{Transport: openapitest.NewTransport(&http.Transport{DialContext: d.DialContext})}
		defer client.CloseIdleConnections()
	}
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := signedResponse{status: resp.StatusCode, header: resp.Header}
	if len(raw) > 0 && json.Unmarshal(raw, &out.body) != nil {
		s.t.Fatalf("%s %s: %d non-JSON body %q", r.method, r.path, resp.StatusCode, raw)
	}
	return out
}

// want asserts the status and, for errors, the KPS code and message of a signed response.
func (r signedResponse) want(t *testing.T, status int, code, msg string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d %v, want %d %s", r.status, r.body, status, code)
	}
	if code != "" && r.body["error_code"] != code {
		t.Fatalf("error %v, want %s", r.body, code)
	}
	if msg != "" && r.body["error_msg"] != msg {
		t.Fatalf("error_msg %q, want %q", r.body["error_msg"], msg)
	}
	if status == http.StatusUnauthorized && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Keystone uri=") {
		t.Errorf("401 without WWW-Authenticate: %v", r.header)
	}
}

const msgNoPermission = "The user has no permission to perform this operation."

func TestAKSKOperations(t *testing.T) {
	t.Parallel()
	log := &lockedBuffer{}
	s := setupLogged(t, log, func(c *daemon.Config) { c.LogLevel = "info" })
	ak, sk := s.accessKey("admin")

	created := s.signed(ak, sk, signedRequest{method: "POST", path: "/keypairs",
		body: []byte(`{"keypair":{"name":"aksk-key"}}` + "\n")})
	created.want(t, 200, "", "")
	if kp, _ := created.body["keypair"].(map[string]any); kp["name"] != "aksk-key" || kp["user_id"] == "" {
		t.Fatalf("created %v", created.body)
	}
	// The handler saw the body the signature covered; the query string is signed too.
	list := s.signed(ak, sk, signedRequest{method: "GET", path: "/keypairs?limit=10"})
	list.want(t, 200, "", "")
	if kps, _ := list.body["keypairs"].([]any); len(kps) != 1 {
		t.Fatalf("list %v", list.body)
	}
	s.signed(ak, sk, signedRequest{method: "GET", path: "/keypairs/aksk-key"}).want(t, 200, "", "")
	s.signed(ak, sk, signedRequest{method: "GET", path: "/failed-tasks"}).want(t, 200, "", "")
	s.signed(ak, sk, signedRequest{method: "PUT", path: "/keypairs/aksk-key",
		body: []byte(`{"keypair":{"description":"signed"}}`)}).want(t, 200, "", "")
	// The token of the same user sees what the signed requests did.
	if out := s.must(200, "GET", "/keypairs/aksk-key", nil); out["keypair"].(map[string]any)["description"] != "signed" {
		t.Errorf("after the signed update: %v", out)
	}
	// The last use of the key is recorded.
	if k, err := s.main.Store().AccessKey(context.Background(), ak); err != nil || k.LastUsed.IsZero() {
		t.Errorf("last use: %+v %v", k, err)
	}

	// Refusals: 401 with the reason of auth.md §11.4.
	wrongSK := sk[:39] + string('A'+(sk[39]+1)%26)
	s.signed(ak, wrongSK, signedRequest{method: "GET", path: "/keypairs"}).
		want(t, 401, "KPS.6102", "Incorrect authentication information: the request signature does not match.")
	s.signed(ak, sk, signedRequest{method: "POST", path: "/keypairs", body: []byte(`{"keypair":{"name":"k1"}}`),
		sendBody: []byte(`{"keypair":{"name":"k2"}}`)}).
		want(t, 401, "KPS.6102", "Incorrect authentication information: the request signature does not match.")
	s.signed(ak, sk, signedRequest{method: "GET", path: "/keypairs", at: time.Now().Add(-16 * time.Minute)}).
		want(t, 401, "KPS.6102", "Incorrect authentication information: X-Sdk-Date is more than 15 minutes away from the server time.")
	s.signed("AKUNKNOWN00000000000", sk, signedRequest{method: "GET", path: "/keypairs"}).
		want(t, 401, "KPS.6102", "Incorrect authentication information: the access key is unknown or inactive.")
	s.signed(ak, sk, signedRequest{method: "GET", path: "/keypairs", headers: map[string]string{"X-Auth-Token": s.token}}).
		want(t, 401, "KPS.6102", "Incorrect authentication information: both X-Auth-Token and an AK/SK signature were sent.")

	// 403: a project of another domain or none at all is the same denial (§4.3 row 7); a
	// header that disagrees with the path is a mismatch (row 1).
	other := &kps.Domain{Name: "other", Enabled: true}
	otherProject, err := s.main.Store().CreateDomain(context.Background(), other, "local-1")
	if err != nil {
		t.Fatal(err)
	}
	s.signed(ak, sk, signedRequest{method: "GET", path: "/keypairs", project: otherProject.ID}).want(t, 403, "KPS.9006", msgNoPermission)
	s.signed(ak, sk, signedRequest{method: "GET", path: "/keypairs", project: strings.Repeat("0f", 16)}).want(t, 403, "KPS.9006", msgNoPermission)
	s.signed(ak, sk, signedRequest{method: "GET", path: "/keypairs", headers: map[string]string{"X-Project-Id": otherProject.ID}}).
		want(t, 403, "KPS.6103", "Project mismatch: X-Project-Id "+otherProject.ID+" differs from the project "+s.project+" in the path.")
	s.signed(ak, sk, signedRequest{method: "GET", path: "/keypairs", headers: map[string]string{"X-Domain-Id": other.ID}}).
		want(t, 403, "KPS.6103", "Domain mismatch: X-Domain-Id "+other.ID+" differs from the caller's domain.")
	// Terraform adds X-Project-Id after signing: an unsigned header is accepted.
	s.signed(ak, sk, signedRequest{method: "GET", path: "/keypairs", headers: map[string]string{"X-Project-Id": ""}}).want(t, 200, "", "")

	// The refusals were logged at INFO with their reason and AK, and nothing that authenticates.
	logged := log.String()
	for _, want := range []string{"reason=signature-mismatch", "reason=date-out-of-window", "reason=access-key-invalid",
		"reason=conflicting-credentials", "reason=project-unavailable", "reason=header-mismatch", "access_key=" + ak, "client_ip=127.0.0.1", "request_id="} {
		if !strings.Contains(logged, want) {
			t.Errorf("the log lacks %q", want)
		}
	}
	for _, secret := range []string{sk, wrongSK, "Signature=", s.token} {
		if strings.Contains(logged, secret) {
			t.Errorf("the log holds a secret (%.8s…)", secret)
		}
	}
}

// A reader's access key can read and cannot write (auth.md §3.3); a disabled user's key is dead.
func TestAKSKRoles(t *testing.T) {
	t.Parallel()
	log := &lockedBuffer{}
	s := setupLogged(t, log, func(c *daemon.Config) { c.LogLevel = "info" })
	s.addUser("rita", kps.RoleReader)
	ak, sk := s.accessKey("rita")
	s.signed(ak, sk, signedRequest{method: "GET", path: "/keypairs"}).want(t, 200, "", "")
	s.signed(ak, sk, signedRequest{method: "GET", path: "/failed-tasks"}).want(t, 200, "", "")
	s.signed(ak, sk, signedRequest{method: "POST", path: "/keypairs", body: []byte(`{"keypair":{"name":"nope"}}`)}).
		want(t, 403, "KPS.9006", msgNoPermission)
	if !strings.Contains(log.String(), "reason=role-too-low client_ip=127.0.0.1 access_key="+ak) {
		t.Errorf("the role refusal is not logged: %s", log.String())
	}

	ctx := context.Background()
	d, _ := s.main.Store().DomainByName(ctx, "Default")
	u, _ := s.main.Store().UserByName(ctx, d.ID, "rita")
	off := false
	if _, err := s.main.Store().UpdateUser(ctx, u.ID, kps.UserUpdate{Enabled: &off}); err != nil {
		t.Fatal(err)
	}
	s.signed(ak, sk, signedRequest{method: "GET", path: "/keypairs"}).
		want(t, 401, "KPS.6102", "Incorrect authentication information: the access key is unknown or inactive.")
}

// Five signature mismatches from one client IP lock that (AK, IP) pair for 5 minutes (auth.md
// §12.4): the sixth request is 429 KPS.6105 with Retry-After, even with the right SK, because
// the lock is consulted before the key is looked up. The same AK from another IP (127.0.0.2 on
// the loopback network) still works: a third party who knows an AK cannot lock out its owner.
// Date mistakes never count.
func TestAKSKLockout(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ak, sk := s.accessKey("admin")
	wrong := strings.ToLower(sk[:20]) + strings.ToUpper(sk[20:])
	if wrong == sk {
		wrong = sk[:39] + "z"
	}
	for range 6 {
		s.signed(ak, sk, signedRequest{method: "GET", path: "/keypairs", at: time.Now().Add(time.Hour)}).
			want(t, 401, "KPS.6102", "")
	}
	for i := range 5 {
		r := s.signed(ak, wrong, signedRequest{method: "GET", path: "/keypairs"})
		if r.status != 401 || r.body["error_code"] != "KPS.6102" {
			t.Fatalf("mismatch %d: %d %v", i+1, r.status, r.body)
		}
	}
	for _, key := range []string{wrong, sk} {
		r := s.signed(ak, key, signedRequest{method: "GET", path: "/keypairs"})
		r.want(t, 429, "KPS.6105", "")
		if ra := r.header.Get("Retry-After"); ra != "300" && ra != "299" {
			t.Errorf("Retry-After %q, want about 300", ra)
		}
		if msg := r.body["error_msg"].(string); !strings.HasPrefix(msg, "Too many failed authentication attempts; retry after ") ||
			!strings.Contains(msg, r.header.Get("Retry-After")+" seconds.") {
			t.Errorf("message %q does not match Retry-After %s", msg, r.header.Get("Retry-After"))
		}
	}
	s.signed(ak, sk, signedRequest{method: "GET", path: "/keypairs", from: "127.0.0.2"}).want(t, 200, "", "")
	// The token of the same user from the locked IP is not affected either: the lock is the pair's.
	s.must(200, "GET", "/keypairs", nil)
}

// An AK/SK request's body is read, within the KPS limit of 1 MiB, before the signature is
// checked: too large is 413 KPS.6020 even with a signature that would not match.
func TestAKSKBodyLimit(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ak, sk := s.accessKey("admin")
	big := []byte(`{"keypair":{"name":"big","description":"` + strings.Repeat("x", 1<<20) + `"}}`)
	s.signed(ak, sk, signedRequest{method: "POST", path: "/keypairs", body: big}).
		want(t, 413, "KPS.6020", "The request body is too large.")
	s.signed(ak, sk[:39]+"!", signedRequest{method: "POST", path: "/keypairs", body: big}).want(t, 413, "KPS.6020", "")
	// Just under the limit the body reaches the handler, which judges it.
	fit := []byte(`{"keypair":{"name":"fit"}}` + strings.Repeat(" ", 1<<20-40))
	s.signed(ak, sk, signedRequest{method: "POST", path: "/keypairs", body: fit}).want(t, 200, "", "")
}
