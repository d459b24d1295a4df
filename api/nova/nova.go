// Package nova serves the OpenStack Compute ("Nova") compatible key pair API of
// nova-keypairs.md: the os-keypairs routes on the one key pair store, mounted under /compute
// (§0) and at Huawei's root paths /v2 and /v2.1, with Nova's version documents (§3),
// microversions 2.1–2.92 (§4), request IDs (§2.2) and fault bodies (§13). Key pairs are made
// and checked by the same kps.KeyPairService as the KPS API's; this package only speaks Nova.
//
// It imports the domain package and api; never iam, store or service.
package nova

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api"
)

const (
	maxBody    = 114688 // Nova's default request body limit (§2.2)
	maxLimit   = 1000   // max_limit of §5.1.4
	maxVersion = 92     // 2.92, the advertised maximum microversion (§4.1, Q1)
)

// KeyPairs is what the Nova routes do with key pairs (kps.KeyPairService).
type KeyPairs interface {
	CreateKeyPair(ctx context.Context, p *kps.Principal, c kps.KeyPairCreate) (*kps.NewKeyPair, error)
	KeyPair(ctx context.Context, p *kps.Principal, name, userID string) (*kps.KeyPair, error)
	ListKeyPairs(ctx context.Context, p *kps.Principal, userID, marker string, limit int) (*kps.KeyPairPage, error)
	DeleteKeyPair(ctx context.Context, p *kps.Principal, name, userID string) error
}

// API is the Nova family: the version documents and the key pair routes of each tree.
type API struct {
	keyPairs KeyPairs
	auth     *api.Authenticator
	errs     *api.Errors
	// base is <base> of §3.3: the configured compute link prefix, by default the public URL
	// followed by /compute, never the request's Host.
	base string
	mux  *http.ServeMux
}

// New returns the Nova API on keyPairs; computeLinkPrefix is <base> of its links (Nova's
// compute_link_prefix, nova-keypairs.md §3.3).
func New(keyPairs KeyPairs, auth *api.Authenticator, errs *api.Errors, computeLinkPrefix string) *API {
	a := &API{keyPairs: keyPairs, auth: auth, errs: errs, base: strings.TrimSuffix(computeLinkPrefix, "/"), mux: http.NewServeMux()}
	a.routes(a.mux)
	return a
}

// ServeHTTP serves every path under /compute, /v2 and /v2.1; what no route serves is Nova's
// 404 or 405.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer api.Recover(w, r, a.fail)
	api.Serve(a.mux, w, r, a.fail)
}

// tree is a tree of the Nova API: a path prefix, and whether it is legacy v2 (no
// microversions, §4.6).
type tree struct {
	prefix string
	legacy bool
}

var trees = []tree{{"/compute/v2.1", false}, {"/compute/v2", true}, {"/v2.1", false}, {"/v2", true}}

// keyPairRoutes are the os-keypairs routes (§0, §2.1): under /compute in both forms, and
// Huawei's root paths with a project id. The project-less and the project forms overlap on one
// ServeMux (…/os-keypairs/os-keypairs matches both), so they go on two muxes, chosen by the
// segment after the version.
var keyPairRoutes = []string{
	"GET /compute/v2.1/{project_id}/os-keypairs",
	"POST /compute/v2.1/{project_id}/os-keypairs",
	"GET /compute/v2.1/{project_id}/os-keypairs/{keypair_name}",
	"DELETE /compute/v2.1/{project_id}/os-keypairs/{keypair_name}",
	"GET /compute/v2.1/os-keypairs",
	"POST /compute/v2.1/os-keypairs",
	"GET /compute/v2.1/os-keypairs/{keypair_name}",
	"DELETE /compute/v2.1/os-keypairs/{keypair_name}",
	"GET /compute/v2/{project_id}/os-keypairs",
	"POST /compute/v2/{project_id}/os-keypairs",
	"GET /compute/v2/{project_id}/os-keypairs/{keypair_name}",
	"DELETE /compute/v2/{project_id}/os-keypairs/{keypair_name}",
	"GET /compute/v2/os-keypairs",
	"POST /compute/v2/os-keypairs",
	"GET /compute/v2/os-keypairs/{keypair_name}",
	"DELETE /compute/v2/os-keypairs/{keypair_name}",
	"GET /v2.1/{project_id}/os-keypairs",
	"POST /v2.1/{project_id}/os-keypairs",
	"GET /v2.1/{project_id}/os-keypairs/{keypair_name}",
	"DELETE /v2.1/{project_id}/os-keypairs/{keypair_name}",
	"GET /v2/{project_id}/os-keypairs",
	"POST /v2/{project_id}/os-keypairs",
	"GET /v2/{project_id}/os-keypairs/{keypair_name}",
	"DELETE /v2/{project_id}/os-keypairs/{keypair_name}",
}

// routes registers the Nova API on mux: the version documents (§3, no authentication), and one
// handler per tree that serves the key pair routes from its two muxes.
func (a *API) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /compute", a.versions)
	mux.HandleFunc("GET /compute/{$}", a.versions)
	v20 := func(w http.ResponseWriter, r *http.Request) { a.version(w, true) }
	v21 := func(w http.ResponseWriter, r *http.Request) { a.version(w, false) }
	mux.HandleFunc("GET /compute/v2", v20)
	mux.HandleFunc("GET /compute/v2/{$}", v20)
	mux.HandleFunc("GET /compute/v2.1", v21)
	mux.HandleFunc("GET /compute/v2.1/{$}", v21)

	withProject, projectless := http.NewServeMux(), http.NewServeMux()
	// Clients normally strip the project id before discovery; the document is served anyway
	// (on the project mux: /compute/v2.1/os-keypairs is never a project id).
	withProject.HandleFunc("GET /compute/v2.1/{project_id}", v21)
	withProject.HandleFunc("GET /compute/v2.1/{project_id}/{$}", v21)
	for _, route := range keyPairRoutes {
		method, path, _ := strings.Cut(route, " ")
		tree := treeOf(path)
		m := projectless
		if strings.Contains(path, "{project_id}") {
			m = withProject
		}
		item := strings.HasSuffix(path, "{keypair_name}")
		var h func(http.ResponseWriter, *http.Request, *request) error
		min := kps.RoleReader
		switch {
		case method == http.MethodGet && !item:
			h = a.listKeyPairs
		case method == http.MethodPost:
			h, min = a.createKeyPair, kps.RoleMember
		case method == http.MethodGet:
			h = a.showKeyPair
		default:
			h, min = a.deleteKeyPair, kps.RoleMember
		}
		m.Handle(route, a.handler(tree.prefix, tree.legacy, min, h))
	}
	for _, t := range trees {
		mux.Handle(t.prefix+"/", a.treeHandler(t.prefix, withProject, projectless))
	}
}

// treeOf is the tree a route path belongs to.
func treeOf(path string) (t tree) {
	for _, c := range trees {
		if strings.HasPrefix(path, c.prefix+"/") && len(c.prefix) > len(t.prefix) {
			t = c
		}
	}
	return t
}

// fault is an error with Nova's status and message, and a KPS code where the refusal is
// one of this service's own rules rather than Nova's (the error_code member of §13.1).
type fault struct {
	status int
	msg    string
	code   string
}

func (e *fault) Error() string { return e.msg }

func faultf(status int, format string, args ...any) error {
	return &fault{status: status, msg: fmt.Sprintf(format, args...)}
}

// faultNames are the fault names of §13.2 (401 is Keystone's "error", auth.md §11.1).
var faultNames = map[int]string{
	400: "badRequest", 401: "error", 403: "forbidden", 404: "itemNotFound", 405: "badMethod",
	406: "computeFault", 409: "conflictingRequest", 413: "overLimit", 415: "badMediaType",
	429: "overLimit", 500: "computeFault", 503: "serviceUnavailable",
}

// ErrorBody is the Nova error body: one top-level key, the fault name (§13.1).
func ErrorBody(status int, code, msg string) any {
	name := faultNames[status]
	if name == "" {
		name = "computeFault"
	}
	fault := map[string]any{"code": status, "message": msg}
	if status == http.StatusUnauthorized {
		fault["title"] = http.StatusText(status)
	}
	if code != "" {
		fault["error_code"] = code
	}
	return map[string]any{name: fault}
}

// fail is the renderer of the Nova routes: a fault (which carries a status and, for this
// service's own rules, a KPS code) with its own status, anything else as a KPS error, both in
// Nova's body. A fault is logged by its status, never as an internal error when it is a 4xx.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	var f *fault
	if !errors.As(err, &f) {
		a.errs.Render(w, r, err, ErrorBody)
		return
	}
	attrs := []any{"request_id", w.Header().Get("X-Request-Id"), "method", r.Method, "path", r.URL.Path, "status", f.status}
	switch f.status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusTooManyRequests:
		a.auth.Log.Info("request refused", append(attrs, "reason", err.Error(), "client_ip", a.auth.Proxies.ClientIP(r))...)
	default:
		level := slog.LevelDebug
		if f.status >= 500 {
			level = slog.LevelError
		}
		a.auth.Log.Log(r.Context(), level, map[bool]string{true: "internal error", false: "request rejected"}[f.status >= 500], append(attrs, "reason", err.Error())...)
	}
	a.errs.Write(w, r, f.status, f.code, f.msg, err, ErrorBody)
}

// versionDoc is a version entry of §3.
type versionDoc struct {
	ID         string              `json:"id"`
	Status     string              `json:"status"`
	Version    string              `json:"version"`
	MinVersion string              `json:"min_version"`
	Updated    string              `json:"updated"`
	Links      []map[string]string `json:"links"`
	MediaTypes []map[string]string `json:"media-types,omitempty"`
}

func (a *API) versionEntry(legacy, full bool) versionDoc {
	d := versionDoc{ID: "v2.1", Status: "CURRENT", Version: "2." + strconv.Itoa(maxVersion), MinVersion: "2.1",
		Updated: "2013-07-23T11:33:21Z", Links: []map[string]string{{"rel": "self", "href": a.base + "/v2.1/"}}}
	media := "application/vnd.openstack.compute+json;version=2.1"
	if legacy {
		d = versionDoc{ID: "v2.0", Status: "DEPRECATED", Updated: "2011-01-21T11:33:21Z",
			Links: []map[string]string{{"rel": "self", "href": a.base + "/v2/"}}}
		media = "application/vnd.openstack.compute+json;version=2"
	}
	if full {
		d.Links = append(d.Links, map[string]string{"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"})
		d.MediaTypes = []map[string]string{{"base": "application/json", "type": media}}
	}
	return d
}

// versions is GET /compute/ (§3.1).
func (a *API) versions(w http.ResponseWriter, r *http.Request) {
	setRequestID(w)
	api.WriteJSON(w, http.StatusOK, map[string]any{"versions": []versionDoc{a.versionEntry(true, false), a.versionEntry(false, false)}})
}

// version is GET /compute/v2[.1][/] (§3.2).
func (a *API) version(w http.ResponseWriter, legacy bool) {
	setRequestID(w)
	api.WriteJSON(w, http.StatusOK, map[string]any{"version": a.versionEntry(legacy, true)})
}
