package docs

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api/keystone"
	"github.com/openkps/kps/api/router"
)

var methods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// document is the part of an OpenAPI document the tests look at.
type document struct {
	OpenAPI string                                `json:"openapi"`
	Paths   map[string]map[string]json.RawMessage `json:"paths"`
}

type operation struct {
	OperationID string                     `json:"operationId"`
	Responses   map[string]json.RawMessage `json:"responses"`
}

func load(t *testing.T) document {
	t.Helper()
	var d document
	if err := json.Unmarshal(OpenAPI, &d); err != nil {
		t.Fatalf("openapi.json is not valid JSON: %v", err)
	}
	return d
}

// operations returns every operation of the document keyed by "METHOD /path".
func operations(t *testing.T, d document) map[string]operation {
	t.Helper()
	ops := map[string]operation{}
	for path, item := range d.Paths {
		for _, m := range methods {
			raw, ok := item[m]
			if !ok {
				continue
			}
			var o operation
			if err := json.Unmarshal(raw, &o); err != nil {
				t.Fatalf("%s %s: %v", strings.ToUpper(m), path, err)
			}
			ops[strings.ToUpper(m)+" "+path] = o
		}
	}
	return ops
}

func TestVersion(t *testing.T) {
	d := load(t)
	if !strings.HasPrefix(d.OpenAPI, "3.") {
		t.Fatalf("openapi = %q, want 3.x", d.OpenAPI)
	}
	if len(d.Paths) == 0 {
		t.Fatal("no paths")
	}
}

// nonStandardSuccess lists operations whose success status is not 2xx: Keystone version
// discovery answers 300 Multiple Choices (auth.md §8.1).
var nonStandardSuccess = map[string]string{"GET /": "300"}

func TestOperations(t *testing.T) {
	ops := operations(t, load(t))
	ids := map[string]string{}
	for key, o := range ops {
		if o.OperationID == "" {
			t.Errorf("%s has no operationId", key)
		} else if other, dup := ids[o.OperationID]; dup {
			t.Errorf("%s and %s share operationId %s", key, other, o.OperationID)
		}
		ids[o.OperationID] = key
		success := false
		for status := range o.Responses {
			if strings.HasPrefix(status, "2") || status == nonStandardSuccess[key] {
				success = true
			}
		}
		if !success {
			t.Errorf("%s has no 2xx response", key)
		}
	}
}

// TestRefs checks that every local $ref points at something.
func TestRefs(t *testing.T) {
	var root any
	if err := json.Unmarshal(OpenAPI, &root); err != nil {
		t.Fatal(err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				if !resolves(root, ref) {
					t.Errorf("$ref %q does not resolve", ref)
				}
			}
			for _, c := range v {
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(root)
}

func resolves(root any, ref string) bool {
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return false
	}
	node := root
	for _, seg := range strings.Split(rest, "/") {
		seg = strings.ReplaceAll(strings.ReplaceAll(seg, "~1", "/"), "~0", "~")
		m, ok := node.(map[string]any)
		if !ok {
			return false
		}
		if node, ok = m[seg]; !ok {
			return false
		}
	}
	return true
}

// serverRoutes returns the routes the API registers, as "METHOD /path" in OpenAPI form: those
// of an API built with every optional family part on (identity management, drift checks,
// rotations, the audit trail, /metrics). The services are never called: registering a route
// does not call them.
func serverRoutes(t *testing.T) []string {
	t.Helper()
	all := router.Routes(router.Config{Metrics: http.NotFoundHandler()}, router.Deps{
		Manager:     struct{ keystone.Manager }{},
		Drift:       struct{ kps.DriftService }{},
		Rotations:   struct{ kps.RotationService }{},
		AuditReader: struct{ kps.AuditReader }{},
	})
	seen := map[string]bool{}
	for _, p := range all {
		method, path, _ := strings.Cut(p, " ")
		seen[method+" "+documentedPath(path)] = true
	}
	if len(seen) == 0 {
		t.Fatal("the API registers no routes")
	}
	routes := make([]string, 0, len(seen))
	for r := range seen {
		routes = append(routes, r)
	}
	sort.Strings(routes)
	return routes
}

// documentedPath turns a ServeMux path into the OpenAPI path that documents it: "{$}" anchors
// are dropped ("/{$}" is "/", "/v3/{$}" folds into "/v3"), "{name...}" becomes "{name}", and
// the route serving this document is documented as /openapi.json whatever its extension.
func documentedPath(p string) string {
	p = strings.TrimSuffix(p, "{$}")
	if p != "/" {
		p = strings.TrimSuffix(p, "/")
	}
	p = strings.ReplaceAll(p, "...}", "}")
	if strings.HasPrefix(p, "/openapi.") {
		p = "/openapi.json"
	}
	return p
}

func TestEveryRouteDocumented(t *testing.T) {
	ops := operations(t, load(t))
	for _, r := range serverRoutes(t) {
		if _, ok := ops[r]; !ok {
			t.Errorf("route %s of the API is not described in openapi.json", r)
		}
	}
}

func TestNoUndocumentedExtras(t *testing.T) {
	routes := map[string]bool{}
	for _, r := range serverRoutes(t) {
		routes[r] = true
	}
	for key := range operations(t, load(t)) {
		if !routes[key] {
			t.Errorf("openapi.json describes %s, which the API does not register", key)
		}
	}
}

func TestDocumentedPath(t *testing.T) {
	for in, want := range map[string]string{
		"/{$}":                       "/",
		"/v3":                        "/v3",
		"/v3/{$}":                    "/v3",
		"/openapi.yaml":              "/openapi.json",
		"/v3/{project_id}/keypairs":  "/v3/{project_id}/keypairs",
		"/files/{path...}":           "/files/{path}",
		"/v3/{project_id}/tasks/{$}": "/v3/{project_id}/tasks",
	} {
		if got := documentedPath(in); got != want {
			t.Errorf("documentedPath(%q) = %q, want %q", in, got, want)
		}
	}
}
