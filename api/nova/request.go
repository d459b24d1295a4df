package nova

import (
	"errors"
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
func (a *API) treeHandler(prefix string, withProject, projectless *http.ServeMux) http.Handler {
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
		api.Serve(m, w, r, func(w http.ResponseWriter, r *http.Request, err error) {
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
func (a *API) handler(prefix string, legacy bool, min kps.Role, h func(http.ResponseWriter, *http.Request, *request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setRequestID(w)
		n := &request{tree: prefix, legacy: legacy, project: r.PathValue("project_id"), name: r.PathValue("keypair_name")}
		err := a.authenticate(r, n)
		if err == nil && !n.p.Has(min) {
			err = api.RoleTooLow()
			a.auth.LogRefusal(r, "authentication refused", err)
		}
		if err == nil && !legacy {
			err = a.microversion(w, r, n)
		}
		if err == nil {
			err = h(w, r, n)
		}
		if err != nil {
			a.fail(w, r, err)
		}
	})
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

var versionFormat = regexp.MustCompile(`^([1-9][0-9]*)\.([1-9][0-9]*|0)$`)

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
