package openapitest

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

const versionDoc = `{"version":{"id":"v3.14","status":"stable","updated":"2020-04-07T00:00:00Z",` +
	`"links":[{"rel":"self","href":"http://x/v3/"}],` +
	`"media-types":[{"base":"application/json","type":"application/vnd.openstack.identity-v3+json"}]}}`

// answer is what the stub service answers to every request.
type answer struct {
	status int
	ctype  string
	body   string
}

func stub(t *testing.T, a *answer) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", "0123456789abcdef0123456789abcdef")
		if a.ctype != "" {
			w.Header().Set("Content-Type", a.ctype)
		}
		w.WriteHeader(a.status)
		w.Write([]byte(a.body))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestTransportCatchesDrift: the transport passes an answer that matches the document and
// fails the request for one that drifts from it in status, content type or body.
func TestTransportCatchesDrift(t *testing.T) {
	v, err := Docs()
	if err != nil {
		t.Fatal(err)
	}
	const kpsJSON = "application/json;charset=UTF-8"
	kpsError := `{"error_code":"KPS.6204","error_msg":"The requested resource does not exist."}`
	for _, c := range []struct {
		name, method, path string
		answer
		drift string // "" when the answer matches
	}{
		{"matches", "GET", "/v3", answer{200, kpsJSON, versionDoc}, ""},
		{"undocumented status", "GET", "/v3", answer{201, kpsJSON, versionDoc}, "status 201 is not documented"},
		{"other content type", "GET", "/v3", answer{200, "text/plain", versionDoc}, `content type "text/plain" is not documented`},
		{"no charset", "GET", "/v3", answer{200, "application/json", versionDoc}, `content type "application/json" is not documented`},
		{"member of the wrong type", "GET", "/v3", answer{200, kpsJSON, strings.Replace(versionDoc, `"v3.14"`, `3.14`, 1)}, "doesn't match schema"},
		{"member missing", "GET", "/v3", answer{200, kpsJSON, strings.Replace(versionDoc, `"status":"stable",`, ``, 1)}, "doesn't match schema"},
		{"body missing", "GET", "/v3", answer{200, kpsJSON, ""}, "no body where the document has one"},
		{"trailing slash served (x-trailing-slash)", "GET", "/v3/", answer{200, kpsJSON, versionDoc}, ""},
		{"trailing slash not served", "GET", "/v3/0123456789abcdef0123456789abcdef/keypairs/", answer{200, kpsJSON, `{"keypairs":[]}`}, "not 404 or 405"},
		{"unrouted, KPS error", "GET", "/v3/0123456789abcdef0123456789abcdef/nothing", answer{404, kpsJSON, kpsError}, ""},
		{"unrouted, not an error", "GET", "/v3/0123456789abcdef0123456789abcdef/nothing", answer{200, kpsJSON, kpsError}, "not 404 or 405"},
		{"unrouted, not an error body", "GET", "/nothing", answer{404, kpsJSON, `{"message":"no"}`}, "none of the documented error bodies"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := c.answer
			base := stub(t, &a)
			client := &http.Client{Transport: v.Transport(nil)}
			req, _ := http.NewRequest(c.method, base+c.path, nil)
			resp, err := client.Do(req)
			var m *MismatchError
			switch {
			case c.drift == "" && err != nil:
				t.Fatalf("a matching answer failed: %v", err)
			case c.drift == "":
				resp.Body.Close()
			case !errors.As(err, &m):
				t.Fatalf("the drift went through: %v", err)
			case !strings.Contains(m.Reason, c.drift):
				t.Errorf("reason %q, want %q", m.Reason, c.drift)
			}
		})
	}
	if len(v.Mismatches()) == 0 {
		t.Error("the mismatches were not recorded")
	}
	v.mu.Lock()
	v.mismatches = nil // the drift above was made on purpose: Main must not fail the run for it
	v.mu.Unlock()
}

// TestReverseProxy: answers through the proxy are checked; a drift is a 502 and reported.
func TestReverseProxy(t *testing.T) {
	v, err := Docs()
	if err != nil {
		t.Fatal(err)
	}
	a := answer{200, "application/json;charset=UTF-8", versionDoc}
	target, _ := url.Parse(stub(t, &a))
	var reported []error
	px := httptest.NewServer(ReverseProxy(target, nil, func(err error) { reported = append(reported, err) }))
	defer px.Close()
	resp, err := http.Get(px.URL + "/v3")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("through the proxy: %v %v", resp, err)
	}
	resp.Body.Close()
	a.status = 202
	if resp, err = http.Get(px.URL + "/v3"); err != nil || resp.StatusCode != http.StatusBadGateway || len(reported) != 1 {
		t.Fatalf("a drift through the proxy: %v %v, reported %v", resp, err, reported)
	}
	resp.Body.Close()
	v.mu.Lock()
	v.mismatches = nil
	v.mu.Unlock()
}

// BenchmarkCheck is the cost the transport adds to one answer (the version document).
func BenchmarkCheck(b *testing.B) {
	v, err := Docs()
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", "http://kps.example.com/v3", nil)
	h := http.Header{"Content-Type": {"application/json;charset=UTF-8"}, "X-Request-Id": {"0123456789abcdef0123456789abcdef"}}
	for b.Loop() {
		if err := v.Check(req, 200, h, []byte(versionDoc)); err != nil {
			b.Fatal(err)
		}
	}
}
