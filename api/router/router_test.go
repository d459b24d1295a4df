package router

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestFamilies: every path reaches the family its prefix names, which answers what it does not
// serve in its own body — the KPS body under /v3/{project_id}/, Nova's under /compute, /v2/ and
// /v2.1/, the identity body (with X-IAM-Trace-Id) everywhere else — before any authentication
// (kps-v3-api.md §1.4). A path that is not canonical goes to the family of its cleaned form and
// is never redirected there by the router.
func TestFamilies(t *testing.T) {
	h := New(Config{PublicURL: "http://kps.test"}, Deps{Identity: &versionIdentity{}})
	p := "/v3/" + listProject
	for _, c := range []struct {
		method, path string
		status       int
		family       string // "kps", "identity" or "nova": the shape of the body
		code         string
	}{
		{"GET", "/nowhere", 404, "identity", "KPS.6205"},
		{"GET", "/v3", 200, "identity", ""},
		{"GET", "/v3/auth/nothing", 404, "identity", "KPS.6205"},
		{"GET", "/v3/auth", 404, "identity", "KPS.6205"},
		{"GET", "/v3.0/OS-CREDENTIAL/nothing", 404, "identity", "KPS.6205"},
		{"GET", p + "/nothing-here", 404, "kps", "KPS.6205"},
		{"GET", p + "/failed-tasks/", 404, "kps", "KPS.6205"},
		{"PATCH", p + "/failed-tasks", 405, "kps", "KPS.6206"},
		{"GET", p, 404, "kps", "KPS.6205"},
		{"GET", p + "/tasks/../../etc/passwd", 404, "kps", "KPS.6205"},
		{"GET", p + "/failed-tasks", 401, "kps", "KPS.6101"},
		{"GET", "/compute/nothing", 404, "nova", "KPS.6205"},
		{"PATCH", "/compute/v2.1/os-keypairs", 405, "nova", ""},
		{"GET", "/v2.1/" + listProject + "/nothing", 404, "nova", ""},
		{"GET", "/v2", 404, "identity", "KPS.6205"},
		{"GET", "/v2.1", 404, "identity", "KPS.6205"},
		{"GET", "/healthz", 200, "identity", ""},
		{"POST", "/healthz", 405, "identity", "KPS.6206"},
	} {
		r := httptest.NewRequest(c.method, "http://kps.test/", nil)
		r.URL.Path = c.path // not cleaned: as a client may send it
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != c.status {
			t.Errorf("%s %s: %d, want %d: %s", c.method, c.path, w.Code, c.status, w.Body)
			continue
		}
		if id := w.Header().Get("X-Request-Id"); len(id) != 32 {
			t.Errorf("%s %s: X-Request-Id %q", c.method, c.path, id)
		}
		trace := w.Header().Get("X-IAM-Trace-Id")
		if (c.family == "identity") != (trace != "") || trace != "" && trace != w.Header().Get("X-Request-Id") {
			t.Errorf("%s %s: X-IAM-Trace-Id %q", c.method, c.path, trace)
		}
		if c.status < 400 {
			continue
		}
		var body map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Errorf("%s %s: %v: %s", c.method, c.path, err, w.Body)
			continue
		}
		var code any
		switch c.family {
		case "kps":
			if len(body) != 2 {
				t.Errorf("%s %s: KPS body %v", c.method, c.path, body)
			}
			code = body["error_code"]
		case "identity":
			if body["error"] == nil {
				t.Errorf("%s %s: identity body %v", c.method, c.path, body)
			}
			code = body["error_code"]
		case "nova":
			if len(body) != 1 || body["badRequest"] == nil && body["itemNotFound"] == nil && body["badMethod"] == nil {
				t.Errorf("%s %s: Nova body %v", c.method, c.path, body)
				continue
			}
			for _, f := range body {
				code, _ = f.(map[string]any)["error_code"]
			}
		}
		if c.code != "" && code != c.code {
			t.Errorf("%s %s: code %v, want %s", c.method, c.path, code, c.code)
		}
		if c.status == 405 && !strings.Contains(w.Header().Get("Allow"), "GET") && !strings.Contains(w.Header().Get("Allow"), "POST") {
			t.Errorf("%s %s: Allow %q", c.method, c.path, w.Header().Get("Allow"))
		}
	}
}
