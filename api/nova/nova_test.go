package nova

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api"
	"github.com/openkps/kps/sshkey"
)

const project = "0b7e4c2a91d34f5e8c6a2d1f3e5b7a90"

// memberIdentity accepts the token "t" for project as a member.
type memberIdentity struct{}

func (memberIdentity) AuthenticateAt(_ context.Context, _ *kps.RequestReads, token, projectID, _ string) (*kps.Principal, error) {
	if token != "t" || projectID != project {
		return nil, kps.Errorf(kps.ErrBadCredentials, "no")
	}
	return &kps.Principal{UserID: "u", ProjectID: project, Roles: []kps.Role{kps.RoleMember}}, nil
}

func (memberIdentity) AuthenticateSignatureAt(context.Context, *kps.RequestReads, *http.Request, []byte, string, string) (*kps.Principal, error) {
	return nil, kps.Errorf(kps.ErrBadCredentials, "no")
}

func (memberIdentity) CredentialScheme(*http.Request) (bool, error) { return false, nil }
func (memberIdentity) LogCredentials(*http.Request) []any           { return nil }

// refusing is a KeyPairs whose creates fail with err.
type refusing struct {
	KeyPairs
	err error
	got kps.KeyPairCreate
}

func (r *refusing) CreateKeyPair(_ context.Context, _ *kps.Principal, c kps.KeyPairCreate) (*kps.NewKeyPair, error) {
	r.got = c
	return nil, r.err
}

// TestCreateFaults: a create is the one service call with Nova's owner and per-user limit,
// and every refusal of the service is told in Nova's words, with the KPS code where the rule
// is this service's own (nova-keypairs.md §13.1).
func TestCreateFaults(t *testing.T) {
	for _, c := range []struct {
		err        error
		typ        string
		status     int
		fault, msg string
		code       string
	}{
		{kps.Errorf(kps.ErrQuota, "x"), "ssh", 403, "forbidden", "Quota exceeded, too many key pairs.", ""},
		{kps.Errorf(kps.ErrKeyPairExists, "x"), "ssh", 409, "conflictingRequest", "Key pair 'k' already exists.", ""},
		{kps.Errorf(kps.ErrForbidden, "x"), "ssh", 403, "forbidden", "Policy doesn't allow os_compute_api:os-keypairs:create to be performed.", ""},
		{kps.Errorf(kps.ErrInvalid, "not in the domain"), "ssh", 400, "badRequest", "not in the domain", kps.ErrInvalid},
		{kps.Errorf(kps.ErrPublicKey, "bad"), "ssh", 400, "badRequest", "Keypair data is invalid: failed to generate fingerprint", kps.ErrPublicKey},
		{sshkey.ErrCommentControl, "ssh", 400, "badRequest", "Keypair data is invalid: the comment holds a control character", kps.ErrPublicKey},
		{kps.Errorf(kps.ErrPublicKey, "bad cert"), "x509", 400, "badRequest", "Keypair data is invalid: failed to generate X509 fingerprint. Error message: bad cert", ""},
	} {
		kp := &refusing{err: c.err}
		h := New(kp, &api.Authenticator{Identity: memberIdentity{}, Log: slog.New(slog.DiscardHandler)},
			&api.Errors{Log: slog.New(slog.DiscardHandler)}, "http://kps.test/compute")
		body := `{"keypair":{"name":"k","type":"` + c.typ + `","public_key":"ssh-ed25519 AAAA","user_id":"other"}}`
		r := httptest.NewRequest("POST", "/compute/v2.1/"+project+"/os-keypairs", strings.NewReader(body))
		r.Header.Set("X-Auth-Token", "t")
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("OpenStack-API-Version", "compute 2.10")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		var out map[string]map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatal(err, w.Body)
		}
		f := out[c.fault]
		if w.Code != c.status || f == nil || f["message"] != c.msg || (c.code != "") != (f["error_code"] != nil) ||
			c.code != "" && f["error_code"] != c.code {
			t.Errorf("%v: %d %s", c.err, w.Code, w.Body)
		}
		if w.Header().Get("OpenStack-API-Version") != "compute 2.10" || w.Header().Get("X-Openstack-Request-Id") == "" {
			t.Errorf("%v: headers %v", c.err, w.Header())
		}
		if want := (kps.KeyPairCreate{Name: "k", Type: c.typ, PublicKey: "ssh-ed25519 AAAA", Owner: "other", PerUserQuota: true}); kp.got != want {
			t.Errorf("the service was asked %+v, want %+v", kp.got, want)
		}
	}
}

// TestMicroversions: a version out of range is 406, a malformed one 400, both before the
// handler runs; "latest" is 2.92.
func TestMicroversions(t *testing.T) {
	h := New(&refusing{err: kps.Errorf(kps.ErrQuota, "x")}, &api.Authenticator{Identity: memberIdentity{}, Log: slog.New(slog.DiscardHandler)},
		&api.Errors{Log: slog.New(slog.DiscardHandler)}, "http://kps.test/compute")
	for v, want := range map[string]int{"compute 2.93": 406, "compute 3.0": 406, "compute two": 400, "compute latest": 403} {
		r := httptest.NewRequest("POST", "/compute/v2.1/"+project+"/os-keypairs", strings.NewReader(`{"keypair":{"name":"k","public_key":"ssh-ed25519 AAAA"}}`))
		r.Header.Set("X-Auth-Token", "t")
		r.Header.Set("OpenStack-API-Version", v)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("%s: %d %s", v, w.Code, w.Body)
		}
		if v == "compute latest" && w.Header().Get("OpenStack-API-Version") != "compute 2.92" {
			t.Errorf("latest: %q", w.Header().Get("OpenStack-API-Version"))
		}
	}
}

func (memberIdentity) SameDomain(_ context.Context, named string, p *kps.Principal) (bool, error) {
	return named == p.DomainID, nil
}
