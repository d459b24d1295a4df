package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/openkps/kps"
	"github.com/openkps/kps/iam"
	"github.com/openkps/kps/sshkey"
)

// The OpenStack Compute ("Nova") compatible key pair API (nova-keypairs.md): the os-keypairs
// routes on the one key pair store, mounted under /compute (§0) and at Huawei's root paths.

const (
	novaMaxBody      = 114688 // Nova's default request body limit (§2.2)
	novaMaxLimit     = 1000   // max_limit of §5.1.4
	novaUserKeyPairs = 100    // Nova's default per-user key pair limit (§11)
	novaMaxVersion   = 92     // 2.92, the advertised maximum microversion (§4.1, Q1)
)

// novaTree is a tree of the Nova API: a path prefix, and whether it is legacy v2 (no
// microversions, §4.6).
type novaTree struct {
	prefix string
	legacy bool
}

var novaTrees = []novaTree{{"/compute/v2.1", false}, {"/compute/v2", true}, {"/v2.1", false}, {"/v2", true}}

// isNovaPath reports whether p belongs to the Nova API, whose errors have Nova's shape.
func isNovaPath(p string) bool {
	if p == "/compute" || strings.HasPrefix(p, "/compute/") {
		return true
	}
	for _, t := range novaTrees[2:] {
		if strings.HasPrefix(p, t.prefix+"/") {
			return true
		}
	}
	return false
}

// novaKeyPairRoutes are the os-keypairs routes (§0, §2.1): under /compute in both forms, and
// Huawei's root paths with a project id. The project-less and the project forms overlap on one
// ServeMux (…/os-keypairs/os-keypairs matches both), so they go on two muxes, chosen by the
// segment after the version.
var novaKeyPairRoutes = []string{
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

// novaRoutes registers the Nova API on mux (the identity mux: none of these paths is under /v3):
// the version documents (§3, no authentication), and one handler per tree that serves the key
// pair routes from its two muxes.
func (s *Server) novaRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /compute", s.novaVersions)
	mux.HandleFunc("GET /compute/{$}", s.novaVersions)
	v20 := func(w http.ResponseWriter, r *http.Request) { s.novaVersion(w, true) }
	v21 := func(w http.ResponseWriter, r *http.Request) { s.novaVersion(w, false) }
	mux.HandleFunc("GET /compute/v2", v20)
	mux.HandleFunc("GET /compute/v2/{$}", v20)
	mux.HandleFunc("GET /compute/v2.1", v21)
	mux.HandleFunc("GET /compute/v2.1/{$}", v21)

	withProject, projectless := http.NewServeMux(), http.NewServeMux()
	// Clients normally strip the project id before discovery; the document is served anyway
	// (on the project mux: /compute/v2.1/os-keypairs is never a project id).
	withProject.HandleFunc("GET /compute/v2.1/{project_id}", v21)
	withProject.HandleFunc("GET /compute/v2.1/{project_id}/{$}", v21)
	for _, route := range novaKeyPairRoutes {
		method, path, _ := strings.Cut(route, " ")
		tree := novaTreeOf(path)
		m := projectless
		if strings.Contains(path, "{project_id}") {
			m = withProject
		}
		item := strings.HasSuffix(path, "{keypair_name}")
		var h func(http.ResponseWriter, *http.Request, *novaRequest) error
		min := kps.RoleReader
		switch {
		case method == http.MethodGet && !item:
			h = s.novaList
		case method == http.MethodPost:
			h, min = s.novaCreate, kps.RoleMember
		case method == http.MethodGet:
			h = s.novaShow
		default:
			h, min = s.novaDelete, kps.RoleMember
		}
		m.Handle(route, s.novaHandler(tree.prefix, tree.legacy, min, h))
	}
	for _, t := range novaTrees {
		mux.Handle(t.prefix+"/", s.novaTreeHandler(t.prefix, withProject, projectless))
	}
}

// novaTreeOf is the tree a route path belongs to.
func novaTreeOf(path string) (t novaTree) {
	for _, c := range novaTrees {
		if strings.HasPrefix(path, c.prefix+"/") && len(c.prefix) > len(t.prefix) {
			t = c
		}
	}
	return t
}

// novaFault is an error with Nova's status and message, and a KPS code where the refusal is
// one of this service's own rules rather than Nova's (the error_code member of §13.1).
type novaFault struct {
	status int
	msg    string
	code   string
}

func (e *novaFault) Error() string { return e.msg }

func novaErrorf(status int, format string, args ...any) error {
	return &novaFault{status: status, msg: fmt.Sprintf(format, args...)}
}

// novaFaultNames are the fault names of §13.2 (401 is Keystone's "error", auth.md §11.1).
var novaFaultNames = map[int]string{
	400: "badRequest", 401: "error", 403: "forbidden", 404: "itemNotFound", 405: "badMethod",
	406: "computeFault", 409: "conflictingRequest", 413: "overLimit", 415: "badMediaType",
	429: "overLimit", 500: "computeFault", 503: "serviceUnavailable",
}

// novaErrorBody is the Nova error body: one top-level key, the fault name (§13.1).
func novaErrorBody(status int, code, msg string) map[string]any {
	name := novaFaultNames[status]
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

// novaVersionDoc is a version entry of §3.
type novaVersionDoc struct {
	ID         string              `json:"id"`
	Status     string              `json:"status"`
	Version    string              `json:"version"`
	MinVersion string              `json:"min_version"`
	Updated    string              `json:"updated"`
	Links      []map[string]string `json:"links"`
	MediaTypes []map[string]string `json:"media-types,omitempty"`
}

// novaBase is <base> of §3.3: the configured compute link prefix, by default the public URL
// followed by /compute, never the request's Host.
func (s *Server) novaBase() string { return s.cfg.ComputeLinkPrefix }

func (s *Server) novaVersionEntry(legacy, full bool) novaVersionDoc {
	d := novaVersionDoc{ID: "v2.1", Status: "CURRENT", Version: "2." + strconv.Itoa(novaMaxVersion), MinVersion: "2.1",
		Updated: "2013-07-23T11:33:21Z", Links: []map[string]string{{"rel": "self", "href": s.novaBase() + "/v2.1/"}}}
	media := "application/vnd.openstack.compute+json;version=2.1"
	if legacy {
		d = novaVersionDoc{ID: "v2.0", Status: "DEPRECATED", Updated: "2011-01-21T11:33:21Z",
			Links: []map[string]string{{"rel": "self", "href": s.novaBase() + "/v2/"}}}
		media = "application/vnd.openstack.compute+json;version=2"
	}
	if full {
		d.Links = append(d.Links, map[string]string{"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"})
		d.MediaTypes = []map[string]string{{"base": "application/json", "type": media}}
	}
	return d
}

// novaVersions is GET /compute/ (§3.1).
func (s *Server) novaVersions(w http.ResponseWriter, r *http.Request) {
	setNovaRequestID(w)
	writeJSON(w, http.StatusOK, map[string]any{"versions": []novaVersionDoc{s.novaVersionEntry(true, false), s.novaVersionEntry(false, false)}})
}

// novaVersion is GET /compute/v2[.1][/] (§3.2).
func (s *Server) novaVersion(w http.ResponseWriter, legacy bool) {
	setNovaRequestID(w)
	writeJSON(w, http.StatusOK, map[string]any{"version": s.novaVersionEntry(legacy, true)})
}

// novaRequest is what the router of a tree learned about a request.
type novaRequest struct {
	tree    string // path prefix, e.g. /compute/v2.1
	legacy  bool
	project string // {project_id} when the path has one
	name    string // {keypair_name}, percent-decoded; "" on the collection
	p       *kps.Principal
	minor   int // resolved microversion 2.<minor>; 1 on legacy trees
}

func (n *novaRequest) atLeast(minor int) bool { return !n.legacy && n.minor >= minor }

// novaTreeHandler serves every other path under prefix/: the key pair routes of the tree's two muxes
// (a trailing slash on the collection is the collection, §2.1), and Nova's 404 and 405.
func (s *Server) novaTreeHandler(prefix string, withProject, projectless *http.ServeMux) http.Handler {
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
		h, pattern := m.Handler(r)
		if pattern != "" {
			m.ServeHTTP(w, r)
			return
		}
		setNovaRequestID(w)
		probe := &statusProbe{header: http.Header{}}
		h.ServeHTTP(probe, r)
		if probe.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", probe.header.Get("Allow"))
			s.renderError(w, r, novaErrorf(405, "The method specified is not allowed for this resource."))
			return
		}
		s.renderError(w, r, novaErrorf(404, "The resource could not be found."))
	})
}

// setNovaRequestID sets the request id headers of §2.2.
func setNovaRequestID(w http.ResponseWriter) {
	rid := "req-" + uuid.NewString()
	w.Header().Set("X-Openstack-Request-Id", rid)
	w.Header().Set("X-Compute-Request-Id", rid)
}

// novaHandler runs a key pair operation: authentication for the target project, the
// operation's minimum role, the microversion (not on legacy trees), then h.
func (s *Server) novaHandler(prefix string, legacy bool, min kps.Role, h func(http.ResponseWriter, *http.Request, *novaRequest) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setNovaRequestID(w)
		n := &novaRequest{tree: prefix, legacy: legacy, project: r.PathValue("project_id"), name: r.PathValue("keypair_name")}
		err := s.novaAuthenticate(r, n)
		if err == nil && !n.p.Has(min) {
			err = &iam.Failure{Reason: "role-too-low", Err: kps.Errorf(kps.ErrForbidden, "The user has no permission to perform this operation.")}
			s.logRefusal(r, "authentication refused", err)
		}
		if err == nil && !legacy {
			err = s.novaMicroversion(w, r, n)
		}
		if err == nil {
			err = h(w, r, n)
		}
		if err != nil {
			s.renderError(w, r, err)
		}
	})
}

// novaProbeProject is a target project that cannot exist (project IDs are 32 hex characters): a
// token checked against it reveals its own project in the row-3 refusal.
const novaProbeProject = "nova-scope-probe"

// novaAuthenticate authenticates a Nova request for its target project (auth.md §4.3: the path
// project, else X-Project-Id, else the token's project). Row 3's mismatch between the path
// project and the token's project is answered with Nova's 400 badRequest instead of KPS.6103
// (auth.md §4.3, the note on the Nova routes; checklist N-45).
func (s *Server) novaAuthenticate(r *http.Request, n *novaRequest) error {
	target := n.project
	if target == "" {
		target = r.Header.Get("X-Project-Id")
	}
	token := r.Header.Get("X-Auth-Token")
	if target == "" && token != "" && !iam.IsSignatureScheme(r.Header.Get("Authorization")) {
		// The project-less form (the catalog URL has no project id): the token's own scope.
		_, err := s.identity.Authenticate(r.Context(), token, novaProbeProject, s.clientIP(r))
		project, ok := tokenProjectFromMismatch(err)
		var f *iam.Failure
		switch {
		case ok:
			target = project
		case errors.As(err, &f) && f.Reason == "token-not-project-scoped":
			err = &iam.Failure{Reason: f.Reason, Err: kps.Errorf(kps.ErrProjectMismatch, "Project mismatch: the request does not name a project and the token is not scoped to one.")}
			s.logRefusal(r, "authentication refused", err)
			return err
		case err != nil:
			// Refused already (and counted once by the lockout): not checked a second time.
			s.logRefusal(r, "authentication refused", err)
			return err
		}
	}
	r.SetPathValue("project_id", target)
	p, err := s.authenticate(r)
	if err != nil {
		var f *iam.Failure
		if n.project != "" && errors.As(err, &f) && f.Reason == "project-mismatch" && kps.ErrorCode(err) == kps.ErrProjectMismatch {
			if tokenProject, ok := tokenProjectFromMismatch(err); ok {
				return novaErrorf(400, "Malformed request URL: URL's project_id '%s' doesn't match Context's project_id '%s'", clip(n.project), tokenProject)
			}
		}
		return err
	}
	n.p = p
	return nil
}

// tokenProjectFromMismatch returns the credential's project named by a row-3 refusal
// ("… but the credentials are scoped to project <id>.", iam.checkTokenScope).
func tokenProjectFromMismatch(err error) (string, bool) {
	var f *iam.Failure
	if err == nil || !errors.As(err, &f) || f.Reason != "project-mismatch" {
		return "", false
	}
	_, after, ok := strings.Cut(kps.ErrorMessage(err), "scoped to project ")
	project := strings.TrimSuffix(after, ".")
	return project, ok && project != ""
}

var novaVersionFormat = regexp.MustCompile(`^([1-9][0-9]*)\.([1-9][0-9]*|0)$`)

// novaMicroversion resolves the request's microversion (§4.2) and echoes it (§4.4).
func (s *Server) novaMicroversion(w http.ResponseWriter, r *http.Request, n *novaRequest) error {
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
		v = "2." + strconv.Itoa(novaMaxVersion)
	}
	m := novaVersionFormat.FindStringSubmatch(v)
	if m == nil {
		return novaErrorf(400, "API Version String %s is of invalid format. Must be of format MajorNum.MinorNum.", clip(v))
	}
	major, _ := strconv.Atoi(m[1])
	minor, err := strconv.Atoi(m[2])
	setVersionHeaders := func() {
		w.Header().Set("X-OpenStack-Nova-API-Version", v)
		w.Header().Set("OpenStack-API-Version", "compute "+v)
		w.Header().Add("Vary", "OpenStack-API-Version")
		w.Header().Add("Vary", "X-OpenStack-Nova-API-Version")
	}
	if err != nil || major != 2 || minor < 1 || minor > novaMaxVersion {
		setVersionHeaders()
		return novaErrorf(406, "Version %s is not supported by the API. Minimum is 2.1 and maximum is 2.%d.", v, novaMaxVersion)
	}
	n.minor = minor
	setVersionHeaders()
	return nil
}

// novaQuery returns the query of a Nova request, refusing a parameter the request reads at its
// microversion (user_id from 2.10, limit and marker of the list from 2.35) when it is given more
// than once (§5.1.1): 400 badRequest with the KPS code of queryOnce.
func novaQuery(r *http.Request, n *novaRequest, list bool) (url.Values, error) {
	var names []string
	if n.atLeast(10) {
		names = append(names, "user_id")
	}
	if list && n.atLeast(35) {
		names = append(names, "limit", "marker")
	}
	return queryOnce(r, names...)
}

// novaTargetUser is the user whose key pairs a request acts on (§10): the caller, or from 2.10
// the user_id query parameter, which needs the admin role unless it names the caller.
//
// A user_id that names nobody of the caller's domain needs no check here: no key pair of the
// caller's project can be owned by such a user (novaCreate refuses them, and every other way
// in makes the caller the owner), so its view is that of an unknown user, as Nova answers it.
func novaTargetUser(n *novaRequest, q url.Values, action string) (string, error) {
	if !n.atLeast(10) || len(q["user_id"]) == 0 || q["user_id"][0] == "" {
		return n.p.UserID, nil
	}
	return novaAuthorizeUser(n, q["user_id"][0], action)
}

func novaAuthorizeUser(n *novaRequest, user, action string) (string, error) {
	if user != n.p.UserID && !n.p.Has(kps.RoleAdmin) {
		return "", novaErrorf(403, "Policy doesn't allow os_compute_api:os-keypairs:%s to be performed.", action)
	}
	return user, nil
}

// novaCheckOwner refuses a create for another user who is not a user of the caller's domain
// (§7.4, §10): users, projects and key pairs never cross a domain (auth.md §2), so an admin
// may not give a key pair of their project to a user of another domain. An unknown user is
// refused alike, so the answer does not tell whether an ID exists elsewhere. With an external
// identity service (auth.md §10) the users are not known here and the check is skipped.
func (s *Server) novaCheckOwner(ctx context.Context, n *novaRequest, user string) error {
	if user == n.p.UserID {
		return nil
	}
	if _, local := s.identity.(identityManager); !local {
		return nil
	}
	u, err := s.store.UserByID(ctx, user)
	if err != nil {
		return err
	}
	if u == nil || u.DomainID != n.p.DomainID {
		return &novaFault{status: 400, code: kps.ErrInvalid,
			msg: fmt.Sprintf("Invalid input for field/attribute user_id. Value: %s. It does not name a user of the caller's domain", clip(user))}
	}
	return nil
}

// novaCheckQuery refuses unknown query parameters from 2.75 (§4.1).
func novaCheckQuery(n *novaRequest, q url.Values, allowed ...string) error {
	if !n.atLeast(75) {
		return nil
	}
	for k := range q {
		if !slices.Contains(allowed, k) {
			return novaErrorf(400, "Invalid input for query parameters %s. Value: %s. Additional properties are not allowed ('%s' was unexpected)", clip(k), clip(q.Get(k)), clip(k))
		}
	}
	return nil
}

// novaListEntry is a list element (§5.1.2); type only from 2.2.
type novaListEntry struct {
	Name        string `json:"name"`
	PublicKey   string `json:"public_key"`
	Fingerprint string `json:"fingerprint"`
	Type        string `json:"type,omitempty"`
}

var digitsOnly = regexp.MustCompile(`^[0-9]+$`)

// novaList is GET …/os-keypairs (§5.1).
func (s *Server) novaList(w http.ResponseWriter, r *http.Request, n *novaRequest) error {
	if err := novaCheckQuery(n, r.URL.Query(), "user_id", "limit", "marker"); err != nil {
		return err
	}
	q, err := novaQuery(r, n, true)
	if err != nil {
		return err
	}
	user, err := novaTargetUser(n, q, "index")
	if err != nil {
		return err
	}
	ctx := r.Context()
	var items []kps.KeyPair
	paged := n.atLeast(35)
	limit := novaMaxLimit
	if paged {
		if ls := q["limit"]; len(ls) > 0 {
			l := ls[0]
			if !digitsOnly.MatchString(l) {
				return novaErrorf(400, "Invalid input for query parameters limit. Value: %s. '%s' does not match '^[0-9]*$'", clip(l), clip(l))
			}
			if v, err := strconv.Atoi(l); err == nil && v < novaMaxLimit {
				limit = v
			}
		}
		marker := ""
		if ms := q["marker"]; len(ms) > 0 {
			marker = ms[0]
			if _, err := s.store.KeyPair(ctx, n.p.ProjectID, marker, user); err != nil {
				if kps.ErrorCode(err) == kps.ErrKeyPairNotFound {
					return novaErrorf(400, "Marker %s could not be found.", clip(marker))
				}
				return err
			}
		}
		page, err := s.store.ListKeyPairs(ctx, n.p.ProjectID, user, marker, limit)
		if err != nil {
			return err
		}
		items = page.Items
	} else if items, err = s.allKeyPairs(ctx, n.p.ProjectID, user); err != nil {
		return err
	}
	type wrapped struct {
		KeyPair novaListEntry `json:"keypair"`
	}
	out := make([]wrapped, 0, len(items))
	for _, k := range items {
		e := novaListEntry{Name: k.Name, PublicKey: k.PublicKey, Fingerprint: k.Fingerprint}
		if n.atLeast(2) {
			e.Type = k.Type
		}
		out = append(out, wrapped{e})
	}
	body := map[string]any{"keypairs": out}
	if paged && limit > 0 && len(items) == limit {
		next := url.Values{}
		for k, v := range q {
			next[k] = v
		}
		next.Set("marker", items[len(items)-1].Name)
		// <base>/v2.1 whatever tree was asked (§5.1.4): only /v2.1 trees page.
		href := s.novaBase() + "/v2.1"
		if n.project != "" {
			href += "/" + url.PathEscape(n.project)
		}
		body["keypairs_links"] = []map[string]string{{"rel": "next", "href": href + "/os-keypairs?" + next.Encode()}}
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

// allKeyPairs returns every key pair of user's view in the project, in name order.
func (s *Server) allKeyPairs(ctx context.Context, project, user string) ([]kps.KeyPair, error) {
	var all []kps.KeyPair
	marker := ""
	for {
		page, err := s.store.ListKeyPairs(ctx, project, user, marker, novaMaxLimit)
		if err != nil {
			return nil, err
		}
		all = append(all, page.Items...)
		if page.NextMarker == nil {
			return all, nil
		}
		marker = *page.NextMarker
	}
}

var (
	novaName    = regexp.MustCompile(`^[_\- a-zA-Z0-9]+$`)
	novaName292 = regexp.MustCompile(`^[_\-@. a-zA-Z0-9]+$`)
)

// novaCreateBody is the validated create body (§5.2.1).
type novaCreateBody struct {
	name, publicKey, typ, userID string
	hasKey                       bool
}

// readNovaCreate reads and validates the create body (§2.2, §5.2.1, §7).
func readNovaCreate(r *http.Request, n *novaRequest) (*novaCreateBody, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && mt != "text/plain") {
			return nil, novaErrorf(415, "Unsupported Content-Type")
		}
	}
	raw, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, novaMaxBody))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, novaErrorf(413, "Request is too large.")
	} else if err != nil {
		return nil, novaErrorf(400, "Malformed request body")
	}
	v, err := parseJSON(raw)
	if err != nil {
		return nil, novaErrorf(400, "Malformed request body")
	}
	root, ok := v.(map[string]any)
	if !ok {
		return nil, novaErrorf(400, "Invalid input for field/attribute body. Value: %s. It is not of type 'object'", clip(string(raw)))
	}
	kp, ok := root["keypair"].(map[string]any)
	if _, present := root["keypair"]; !present {
		return nil, novaErrorf(400, "Invalid input for field/attribute body. 'keypair' is a required property")
	}
	if !ok {
		return nil, novaErrorf(400, "Invalid input for field/attribute keypair. It is not of type 'object'")
	}
	if !n.legacy {
		for k := range root {
			if k != "keypair" {
				return nil, novaErrorf(400, "Invalid input for field/attribute body. Additional properties are not allowed ('%s' was unexpected)", clip(k))
			}
		}
	}
	allowed := []string{"name", "public_key"}
	if n.atLeast(2) {
		allowed = append(allowed, "type")
	}
	if n.atLeast(10) {
		allowed = append(allowed, "user_id")
	}
	b := &novaCreateBody{typ: kps.TypeSSH}
	for k, v := range kp {
		if !slices.Contains(allowed, k) {
			if n.legacy {
				continue
			}
			return nil, novaErrorf(400, "Invalid input for field/attribute keypair. Additional properties are not allowed ('%s' was unexpected)", clip(k))
		}
		s, isStr := v.(string)
		if !isStr {
			return nil, novaErrorf(400, "Invalid input for field/attribute %s. Value: %v. It is not of type 'string'", k, v)
		}
		switch k {
		case "name":
			b.name = s
		case "public_key":
			b.publicKey, b.hasKey = s, true
		case "type":
			if s != kps.TypeSSH && s != kps.TypeX509 {
				return nil, novaErrorf(400, "Invalid input for field/attribute type. Value: %s. '%s' is not one of ['ssh', 'x509']", clip(s), clip(s))
			}
			b.typ = s
		case "user_id":
			b.userID = s
		}
	}
	if _, ok := kp["name"]; !ok {
		return nil, novaErrorf(400, "Invalid input for field/attribute keypair. 'name' is a required property")
	}
	if n.legacy {
		b.name = strings.TrimSpace(b.name)
	}
	rule := novaName
	if n.atLeast(92) {
		rule = novaName292
	}
	switch {
	case b.name == "" || len(b.name) > 255:
		return nil, novaErrorf(400, "Invalid input for field/attribute name. Value: %s. It must be 1 to 255 characters long", clip(b.name))
	case !n.legacy && (!rule.MatchString(b.name) || strings.TrimSpace(b.name) != b.name):
		return nil, novaErrorf(400, "Invalid input for field/attribute name. Value: %s. It contains characters that are not allowed or leading/trailing whitespace", clip(b.name))
	case !kps.ValidKeyPairName(b.name):
		// The store rule (§7.1, D1): the name must be addressable through the v3 API too.
		return nil, novaErrorf(400, "Invalid input for field/attribute name. Value: %s. It must be 1 to 64 characters of letters, digits, '_' and '-'", clip(b.name))
	}
	if n.atLeast(92) && !b.hasKey {
		return nil, novaErrorf(400, "Invalid input for field/attribute keypair. 'public_key' is a required property")
	}
	return b, nil
}

// novaCreated is the create response (§5.2.3).
type novaCreated struct {
	Name        string `json:"name"`
	Type        string `json:"type,omitempty"`
	PublicKey   string `json:"public_key"`
	Fingerprint string `json:"fingerprint"`
	UserID      string `json:"user_id"`
	PrivateKey  string `json:"private_key,omitempty"`
}

// novaCreate is POST …/os-keypairs (§5.2), in the order of §5.2.2.
func (s *Server) novaCreate(w http.ResponseWriter, r *http.Request, n *novaRequest) error {
	b, err := readNovaCreate(r, n)
	if err != nil {
		return err
	}
	user := n.p.UserID
	ctx := r.Context()
	if b.userID != "" {
		if user, err = novaAuthorizeUser(n, b.userID, "create"); err != nil {
			return err
		}
		if err := s.novaCheckOwner(ctx, n, user); err != nil {
			return err
		}
	}
	if err := s.novaCheckUserQuota(ctx, n.p.ProjectID, user); err != nil {
		return err
	}
	k := &kps.KeyPair{ProjectID: n.p.ProjectID, Name: b.name, Type: b.typ, Scope: kps.ScopeUser, UserID: user}
	var private string
	switch {
	case b.hasKey && b.typ == kps.TypeX509:
		if err := fillCertificate(k, b.publicKey); err != nil {
			return novaErrorf(400, "Keypair data is invalid: failed to generate X509 fingerprint. Error message: %s", kps.ErrorMessage(err))
		}
	case b.hasKey:
		key, err := sshkey.ParsePublicKey(b.publicKey)
		if errors.Is(err, sshkey.ErrCommentControl) {
			// Nova would accept it; authorized_keys may not receive it (kps-v3-api.md §1.6).
			return &novaFault{status: 400, msg: "Keypair data is invalid: the comment holds a control character", code: kps.ErrPublicKey}
		}
		if err != nil {
			return &novaFault{status: 400, msg: "Keypair data is invalid: failed to generate fingerprint", code: kps.ErrPublicKey}
		}
		k.PublicKey, k.Fingerprint, k.Algorithm = b.publicKey, key.Fingerprint, key.Algorithm
	case b.typ == kps.TypeX509:
		g, err := sshkey.GenerateX509(user)
		if err != nil {
			return err
		}
		k.PublicKey, k.Fingerprint, k.Algorithm, private = g.CertificatePEM, g.Fingerprint, "X509", g.PKCS12
	default:
		priv, line, err := sshkey.GenerateRSA(b.name)
		if err != nil {
			return err
		}
		key, err := sshkey.ParsePublicKey(line)
		if err != nil {
			return err
		}
		k.PublicKey, k.Fingerprint, k.Algorithm, private = line, key.Fingerprint, key.Algorithm, priv
	}
	if err := s.store.CreateKeyPair(ctx, k, s.cfg.KeyPairQuota); err != nil {
		switch kps.ErrorCode(err) {
		case kps.ErrKeyPairExists:
			return novaErrorf(409, "Key pair '%s' already exists.", b.name)
		case kps.ErrQuota:
			return novaErrorf(403, "Quota exceeded, too many key pairs.")
		}
		return err
	}
	// Re-checked after the insert, so that concurrent creates never both pass the per-user
	// limit (§11): the one that finds itself over it takes its key pair back.
	if owned, err := s.novaOwnedKeyPairs(ctx, n.p.ProjectID, user); err != nil || s.novaOverUserLimit(owned-1) {
		if derr := s.store.DeleteKeyPair(ctx, k.ProjectID, k.Name, user); derr != nil {
			s.log.Error("taking back a key pair over the per-user limit failed", "request_id", requestID(r), "keypair", k.Name, "err", derr)
		}
		if err != nil {
			return err
		}
		return novaErrorf(403, "Quota exceeded, too many key pairs.")
	}
	resp := novaCreated{Name: k.Name, PublicKey: k.PublicKey, Fingerprint: k.Fingerprint, UserID: user, PrivateKey: private}
	status := http.StatusOK
	if n.atLeast(2) {
		resp.Type, status = k.Type, http.StatusCreated
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, map[string]any{"keypair": resp})
	return nil
}

// novaCheckUserQuota applies Nova's per-user limit (§11) before the key material is looked at
// (N-31); novaCreate checks again after the insert. The store enforces the project quota on
// insert; the visible key pairs already at the quota are refused here, before the key check.
func (s *Server) novaCheckUserQuota(ctx context.Context, project, user string) error {
	all, err := s.allKeyPairs(ctx, project, user)
	if err != nil {
		return err
	}
	if s.novaOverUserLimit(ownedBy(all, user)) || len(all) >= s.cfg.KeyPairQuota {
		return novaErrorf(403, "Quota exceeded, too many key pairs.")
	}
	return nil
}

// novaOverUserLimit reports whether a user who owns owned key pairs may not create another:
// the limit is the configured per-user limit; negative means none, 0 forbids every create.
func (s *Server) novaOverUserLimit(owned int) bool {
	limit := *s.cfg.KeyPairsPerUser
	return limit >= 0 && owned >= limit
}

// novaOwnedKeyPairs counts the key pairs user owns in the project.
func (s *Server) novaOwnedKeyPairs(ctx context.Context, project, user string) (int, error) {
	all, err := s.allKeyPairs(ctx, project, user)
	return ownedBy(all, user), err
}

func ownedBy(all []kps.KeyPair, user string) int {
	owned := 0
	for _, k := range all {
		if k.UserID == user {
			owned++
		}
	}
	return owned
}

// novaShown is the show response (§5.3): nine members, ten with type.
type novaShown struct {
	ID          int64   `json:"id"`
	Name        string  `json:"name"`
	Type        string  `json:"type,omitempty"`
	PublicKey   string  `json:"public_key"`
	Fingerprint string  `json:"fingerprint"`
	UserID      string  `json:"user_id"`
	CreatedAt   string  `json:"created_at"`
	UpdatedAt   *string `json:"updated_at"`
	Deleted     bool    `json:"deleted"`
	DeletedAt   *string `json:"deleted_at"`
}

// novaKeyPair looks up a key pair of the target user's view, with Nova's not-found message.
func (s *Server) novaKeyPair(ctx context.Context, n *novaRequest, user string) (*kps.KeyPair, error) {
	k, err := s.store.KeyPair(ctx, n.p.ProjectID, n.name, user)
	if kps.ErrorCode(err) == kps.ErrKeyPairNotFound {
		return nil, novaErrorf(404, "Keypair %s not found for user %s", clip(n.name), user)
	}
	return k, err
}

// novaShow is GET …/os-keypairs/{keypair_name} (§5.3).
func (s *Server) novaShow(w http.ResponseWriter, r *http.Request, n *novaRequest) error {
	if err := novaCheckQuery(n, r.URL.Query(), "user_id"); err != nil {
		return err
	}
	q, err := novaQuery(r, n, false)
	if err != nil {
		return err
	}
	user, err := novaTargetUser(n, q, "show")
	if err != nil {
		return err
	}
	k, err := s.novaKeyPair(r.Context(), n, user)
	if err != nil {
		return err
	}
	out := novaShown{ID: k.ID, Name: k.Name, PublicKey: k.PublicKey, Fingerprint: k.Fingerprint, UserID: k.UserID,
		CreatedAt: k.Created.UTC().Format("2006-01-02T15:04:05.000000")}
	if n.atLeast(2) {
		out.Type = k.Type
	}
	writeJSON(w, http.StatusOK, map[string]any{"keypair": out})
	return nil
}

// novaDelete is DELETE …/os-keypairs/{keypair_name} (§5.4).
func (s *Server) novaDelete(w http.ResponseWriter, r *http.Request, n *novaRequest) error {
	if err := novaCheckQuery(n, r.URL.Query(), "user_id"); err != nil {
		return err
	}
	q, err := novaQuery(r, n, false)
	if err != nil {
		return err
	}
	user, err := novaTargetUser(n, q, "delete")
	if err != nil {
		return err
	}
	if err := s.store.DeleteKeyPair(r.Context(), n.p.ProjectID, n.name, user); err != nil {
		if kps.ErrorCode(err) == kps.ErrKeyPairNotFound {
			return novaErrorf(404, "Keypair %s not found for user %s", clip(n.name), user)
		}
		return err
	}
	if n.atLeast(2) {
		writeEmpty(w, http.StatusNoContent)
	} else {
		writeEmpty(w, http.StatusAccepted)
	}
	return nil
}
