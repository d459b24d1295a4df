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
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"

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
	mux  *api.Mux
	// trees are the muxes of the key pair routes (routes).
	trees []*api.Mux
}

// New returns the Nova API on keyPairs; computeLinkPrefix is <base> of its links (Nova's
// compute_link_prefix, nova-keypairs.md §3.3).
func New(keyPairs KeyPairs, auth *api.Authenticator, errs *api.Errors, computeLinkPrefix string) *API {
	a := &API{keyPairs: keyPairs, auth: auth, errs: errs, base: strings.TrimSuffix(computeLinkPrefix, "/"), mux: api.NewMux()}
	a.routes(a.mux)
	return a
}

// Routes are the patterns the family registered, the key pair routes of every tree included.
func (a *API) Routes() []string {
	routes := a.mux.Patterns()
	for _, t := range a.trees {
		routes = append(routes, t.Patterns()...)
	}
	return routes
}

// ServeHTTP serves every path under /compute, /v2 and /v2.1; what no route serves is Nova's
// 404 or 405.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer api.Recover(w, r, a.fail)
	api.Serve(a.mux.ServeMux, w, r, a.fail)
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
func (a *API) routes(mux *api.Mux) {
	mux.HandleFunc("GET /compute", a.versions)
	mux.HandleFunc("GET /compute/{$}", a.versions)
	v20 := func(w http.ResponseWriter, r *http.Request) { a.version(w, true) }
	v21 := func(w http.ResponseWriter, r *http.Request) { a.version(w, false) }
	mux.HandleFunc("GET /compute/v2", v20)
	mux.HandleFunc("GET /compute/v2/{$}", v20)
	mux.HandleFunc("GET /compute/v2.1", v21)
	mux.HandleFunc("GET /compute/v2.1/{$}", v21)

	withProject, projectless := api.NewMux(), api.NewMux()
	a.trees = []*api.Mux{withProject, projectless}
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
		var audit *api.AuditRoute
		min := kps.RoleReader
		switch {
		case method == http.MethodGet && !item:
			h = a.listKeyPairs
		case method == http.MethodPost:
			h, min = a.createKeyPair, kps.RoleMember
			audit = &api.AuditRoute{Action: kps.ActionKeyPairCreate, Target: kps.TargetKeyPair}
		case method == http.MethodGet:
			h = a.showKeyPair
		default:
			h, min = a.deleteKeyPair, kps.RoleMember
			audit = &api.AuditRoute{Action: kps.ActionKeyPairDelete, Target: kps.TargetKeyPair, PathTarget: "keypair_name"}
		}
		m.Handle(route, a.handler(tree.prefix, tree.legacy, min, audit, h))
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

// request is what the router of a tree learned about a request.
type request struct {
	tree    string // path prefix, e.g. /compute/v2.1
	legacy  bool
	project string // {project_id} when the path has one
	name    string // {keypair_name}, percent-decoded; "" on the collection
	p       *kps.Principal
	minor   int // resolved microversion 2.<minor>; 1 on legacy trees
}

func (n *request) atLeast(minor int) bool { return !n.legacy && n.minor >= minor }

// treeHandler serves every other path under prefix/: the key pair routes of the tree's two muxes
// (a trailing slash on the collection is the collection, §2.1), and Nova's 404 and 405.
func (a *API) treeHandler(prefix string, withProject, projectless *api.Mux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := withProject
		if strings.HasPrefix(r.URL.Path, prefix+"/os-keypairs") {
			m = projectless
		}
		if strings.HasSuffix(r.URL.Path, "/os-keypairs/") {
			r2 := r.Clone(r.Context())
			r2.URL.Path = strings.TrimSuffix(r.URL.Path, "/")
			r2.URL.RawPath = strings.TrimSuffix(r.URL.RawPath, "/")
			r = r2
		}
		api.Serve(m.ServeMux, w, r, func(w http.ResponseWriter, r *http.Request, err error) {
			setRequestID(w)
			if kps.ErrorCode(err) == kps.ErrMethod {
				err = faultf(405, "The method specified is not allowed for this resource.")
			} else {
				err = faultf(404, "The resource could not be found.")
			}
			a.fail(w, r, err)
		})
	})
}

// setRequestID sets the request id headers of §2.2.
func setRequestID(w http.ResponseWriter) {
	rid := "req-" + uuid.NewString()
	w.Header().Set("X-Openstack-Request-Id", rid)
	w.Header().Set("X-Compute-Request-Id", rid)
}

// handler runs a key pair operation: authentication for the target project, the
// operation's minimum role, the microversion (not on legacy trees), then h.
func (a *API) handler(prefix string, legacy bool, min kps.Role, audit *api.AuditRoute, h func(http.ResponseWriter, *http.Request, *request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setRequestID(w)
		n := &request{tree: prefix, legacy: legacy, project: r.PathValue("project_id"), name: r.PathValue("keypair_name")}
		err := a.authenticate(r, n)
		if err == nil && !n.p.Has(min) {
			err = api.RoleTooLow()
			a.auth.LogRefusal(r, "authentication refused", err)
		}
		var ev *kps.AuditEvent
		if audit != nil && n.p != nil {
			// The audit event of a create or delete: the project the token reached.
			ev = a.auth.AuditEvent(r, n.p, *audit, n.p.ProjectID)
			n.p = api.Audited(n.p, ev)
		}
		if err == nil && !legacy {
			err = a.microversion(w, r, n)
		}
		if ev != nil {
			ev.Status = successStatus(r.Method, n)
		}
		if err == nil {
			err = h(w, r, n)
		}
		if ev != nil {
			// A fault is recorded with its status and the KPS code it carries, if any.
			var outcome error
			status, code := faultStatus(err)
			if err != nil {
				outcome = &kps.Error{Code: code, Message: "refused"}
			}
			a.auth.AuditOutcome(r, ev, outcome, status)
		}
		if err != nil {
			a.fail(w, r, err)
		}
	})
}

// successStatus is the status a create or delete answers on success (§5.2, §5.4): 201 and 204
// from microversion 2.2, 200 and 202 before.
func successStatus(method string, n *request) int {
	switch {
	case method == http.MethodPost && n.atLeast(2):
		return http.StatusCreated
	case method == http.MethodPost:
		return http.StatusOK
	case n.atLeast(2):
		return http.StatusNoContent
	}
	return http.StatusAccepted
}

// faultStatus is the status and KPS code a's answer to err has: a fault's own, else the code's.
func faultStatus(err error) (int, string) {
	var f *fault
	if errors.As(err, &f) {
		return f.status, f.code
	}
	code := kps.ErrorCode(err)
	return api.HTTPStatus(code), code
}

// probeProject is a target project that cannot exist (project IDs are 32 hex characters): a
// token checked against it reveals its own project in the row-3 refusal.
const probeProject = "nova-scope-probe"

// authenticate authenticates a Nova request for its target project (auth.md §4.3: the path
// project, else X-Project-Id, else the token's project). Row 3's mismatch between the path
// project and the token's project is answered with Nova's 400 badRequest instead of KPS.6103
// (auth.md §4.3, the note on the Nova routes; checklist N-45).
func (a *API) authenticate(r *http.Request, n *request) error {
	target := n.project
	if target == "" {
		target = r.Header.Get("X-Project-Id")
	}
	token := r.Header.Get("X-Auth-Token")
	if signed, _ := a.auth.Identity.CredentialScheme(r); target == "" && token != "" && !signed {
		// The project-less form (the catalog URL has no project id): the token's own scope.
		_, err := a.auth.Identity.AuthenticateAt(r.Context(), nil, token, probeProject, a.auth.Proxies.ClientIP(r))
		project, ok := tokenProjectFromMismatch(err)
		switch {
		case ok:
			target = project
		case refusalReason(err) == "token-not-project-scoped":
			err = &api.Refused{Reason: "token-not-project-scoped", Err: kps.Errorf(kps.ErrProjectMismatch, "Project mismatch: the request does not name a project and the token is not scoped to one.")}
			a.auth.LogRefusal(r, "authentication refused", err)
			return err
		case err != nil:
			// Refused already (and counted once by the lockout): not checked a second time.
			a.auth.LogRefusal(r, "authentication refused", err)
			return err
		}
	}
	p, _, err := a.auth.Authenticate(r, api.Target{Project: target})
	if err != nil {
		if n.project != "" && refusalReason(err) == "project-mismatch" && kps.ErrorCode(err) == kps.ErrProjectMismatch {
			if tokenProject, ok := tokenProjectFromMismatch(err); ok {
				return faultf(400, "Malformed request URL: URL's project_id '%s' doesn't match Context's project_id '%s'", kps.Clip(n.project), tokenProject)
			}
		}
		return err
	}
	n.p = p
	return nil
}

// refusalReason is the reason key of an identity's refusal, "" for anything else.
func refusalReason(err error) string {
	var f api.Refusal
	if err == nil || !errors.As(err, &f) {
		return ""
	}
	return f.RefusalReason()
}

// tokenProjectFromMismatch returns the credential's project named by a row-3 refusal
// ("… but the credentials are scoped to project <id>.", iam.checkTokenScope).
func tokenProjectFromMismatch(err error) (string, bool) {
	if refusalReason(err) != "project-mismatch" {
		return "", false
	}
	_, after, ok := strings.Cut(kps.ErrorMessage(err), "scoped to project ")
	project := strings.TrimSuffix(after, ".")
	return project, ok && project != ""
}

// The value rules of the requests: a microversion (§4.2), a list's limit (§5.1.4), a key pair
// name before and from 2.92 (§7.1).
var (
	versionFormat = regexp.MustCompile(`^([1-9][0-9]*)\.([1-9][0-9]*|0)$`)
	digitsOnly    = regexp.MustCompile(`^[0-9]+$`)
	nameRule      = regexp.MustCompile(`^[_\- a-zA-Z0-9]+$`)
	nameRule292   = regexp.MustCompile(`^[_\-@. a-zA-Z0-9]+$`)
)

// microversion resolves the request's microversion (§4.2) and echoes it (§4.4).
func (a *API) microversion(w http.ResponseWriter, r *http.Request, n *request) error {
	v := "2.1"
	found := false
	for _, h := range r.Header.Values("OpenStack-API-Version") {
		for _, pair := range strings.Split(h, ",") {
			f := strings.Fields(pair)
			if len(f) == 2 && strings.EqualFold(f[0], "compute") {
				v, found = f[1], true
			}
		}
	}
	if !found {
		if hs := r.Header.Values("X-OpenStack-Nova-API-Version"); len(hs) > 0 {
			parts := strings.Split(strings.Join(hs, ","), ",")
			v = strings.TrimSpace(parts[len(parts)-1])
		}
	}
	if v == "latest" {
		v = "2." + strconv.Itoa(maxVersion)
	}
	m := versionFormat.FindStringSubmatch(v)
	if m == nil {
		return faultf(400, "API Version String %s is of invalid format. Must be of format MajorNum.MinorNum.", kps.Clip(v))
	}
	major, _ := strconv.Atoi(m[1])
	minor, err := strconv.Atoi(m[2])
	setVersionHeaders := func() {
		w.Header().Set("X-OpenStack-Nova-API-Version", v)
		w.Header().Set("OpenStack-API-Version", "compute "+v)
		w.Header().Add("Vary", "OpenStack-API-Version")
		w.Header().Add("Vary", "X-OpenStack-Nova-API-Version")
	}
	if err != nil || major != 2 || minor < 1 || minor > maxVersion {
		setVersionHeaders()
		return faultf(406, "Version %s is not supported by the API. Minimum is 2.1 and maximum is 2.%d.", v, maxVersion)
	}
	n.minor = minor
	setVersionHeaders()
	return nil
}

// query returns the query of a Nova request, refusing a parameter the request reads at its
// microversion (user_id from 2.10, limit and marker of the list from 2.35) when it is given more
// than once (§5.1.1): 400 badRequest with the KPS code of queryOnce.
func query(r *http.Request, n *request, list bool) (url.Values, error) {
	var names []string
	if n.atLeast(10) {
		names = append(names, "user_id")
	}
	if list && n.atLeast(35) {
		names = append(names, "limit", "marker")
	}
	return api.QueryOnce(r, names...)
}

// targetUser is the user whose key pairs a request acts on (§10): the caller, or from 2.10
// the user_id query parameter, which needs the admin role unless it names the caller.
//
// A user_id that names nobody of the caller's domain needs no check here: no key pair of the
// caller's project can be owned by such a user (createKeyPair refuses them, and every other way
// in makes the caller the owner), so its view is that of an unknown user, as Nova answers it.
func targetUser(n *request, q url.Values, action string) (string, error) {
	if !n.atLeast(10) || len(q["user_id"]) == 0 || q["user_id"][0] == "" {
		return n.p.UserID, nil
	}
	return authorizeUser(n, q["user_id"][0], action)
}

func authorizeUser(n *request, user, action string) (string, error) {
	if user != n.p.UserID && !n.p.Has(kps.RoleAdmin) {
		return "", faultf(403, "Policy doesn't allow os_compute_api:os-keypairs:%s to be performed.", action)
	}
	return user, nil
}

// novaCheckOwner refuses a create for another user who is not a user of the caller's domain
// (§7.4, §10): users, projects and key pairs never cross a domain (auth.md §2), so an admin
// may not give a key pair of their project to a user of another domain. An unknown user is
// refused alike, so the answer does not tell whether an ID exists elsewhere. With an external
// identity service (auth.md §10) the users are not known here and the check is skipped.

// checkQuery refuses unknown query parameters from 2.75 (§4.1).
func checkQuery(n *request, q url.Values, allowed ...string) error {
	if !n.atLeast(75) {
		return nil
	}
	for k := range q {
		if !slices.Contains(allowed, k) {
			return faultf(400, "Invalid input for query parameters %s. Value: %s. Additional properties are not allowed ('%s' was unexpected)", kps.Clip(k), kps.Clip(q.Get(k)), kps.Clip(k))
		}
	}
	return nil
}
