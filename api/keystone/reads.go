package keystone

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api"
	"github.com/openkps/kps/api/wire"
)

// checkToken is GET and HEAD /v3/auth/tokens (auth.md §5.4): 200 with the body of the token in
// X-Subject-Token (HEAD: headers only), 404 KPS.6109 for a token that is unknown, expired,
// revoked or not the caller's to see.
func (a *API) checkToken(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	subject := r.Header.Get("X-Subject-Token")
	if subject == "" {
		return kps.MissingParameter("X-Subject-Token")
	}
	// allow_expired is accepted and ignored: expired tokens are never returned (§5.4).
	q, err := queryOnce(r, "nocatalog")
	if err != nil {
		return err
	}
	_, nocatalog := q["nocatalog"]
	body, err := a.manager.SubjectToken(r.Context(), p, subject, !nocatalog)
	if err != nil {
		return err
	}
	w.Header().Set("X-Subject-Token", subject)
	writeSecret(w, http.StatusOK, body)
	return nil
}

// revokeToken is DELETE /v3/auth/tokens (auth.md §5.5): 204.
func (a *API) revokeToken(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	subject := r.Header.Get("X-Subject-Token")
	if subject == "" {
		return kps.MissingParameter("X-Subject-Token")
	}
	if err := a.manager.RevokeSubjectToken(r.Context(), p, subject); err != nil {
		return err
	}
	api.WriteEmpty(w, http.StatusNoContent)
	return nil
}

// Most a page may hold, as Huawei's KeystoneListProjects allows.
const maxPerPage = 5000

// listQuery is the query of the identity lists: the filters name, domain_id, parent_id,
// enabled and is_domain as given (nil when absent), and the page/per_page window.
type listQuery struct {
	Name, DomainID, ParentID *string
	Enabled, IsDomain        *bool
	// page (from 1) and perPage (1–5000, default 5000); paged reports whether either was
	// given. Unpaged lists everything.
	page, perPage int
	paged         bool
}

// readListQuery reads the parameters names of r's query; any other parameter is ignored, as
// Keystone ignores it, and one given twice is refused (kps-v3-api.md §1.4).
func readListQuery(r *http.Request, names ...string) (*listQuery, error) {
	q, err := queryOnce(r, names...)
	if err != nil {
		return nil, err
	}
	l := &listQuery{page: 1, perPage: maxPerPage}
	for _, s := range []struct {
		name string
		dst  **string
	}{{"name", &l.Name}, {"domain_id", &l.DomainID}, {"parent_id", &l.ParentID}} {
		if v, ok := q[s.name]; ok && slices.Contains(names, s.name) {
			*s.dst = &v[0]
		}
	}
	for _, b := range []struct {
		name string
		dst  **bool
	}{{"enabled", &l.Enabled}, {"is_domain", &l.IsDomain}} {
		if v, ok := q[b.name]; ok && slices.Contains(names, b.name) {
			x, err := queryBool(b.name, v[0])
			if err != nil {
				return nil, err
			}
			*b.dst = &x
		}
	}
	for _, x := range []struct {
		name string
		v    *int
		max  int
	}{{"page", &l.page, 1 << 20}, {"per_page", &l.perPage, maxPerPage}} {
		vs, ok := q[x.name]
		if !ok || !slices.Contains(names, x.name) {
			continue
		}
		l.paged = true
		n, err := strconv.Atoi(vs[0])
		if err != nil || n < 1 || n > x.max || strings.TrimLeft(vs[0], "0123456789") != "" {
			return nil, kps.InvalidParameter(x.name)
		}
		*x.v = n
	}
	return l, nil
}

// window is the store page of the query; unpaged lists everything.
func (l *listQuery) window() kps.Page {
	if !l.paged {
		return kps.Page{}
	}
	return kps.Page{Limit: l.perPage, Offset: (l.page - 1) * l.perPage}
}

// links are the list's links for a page of n items of total: self always, previous and next
// only when paged.
func (a *API) links(r *http.Request, l *listQuery, n, total int) listLinks {
	links := listLinks{Self: a.selfURL(r)}
	if l.paged {
		if l.page > 1 {
			links.Previous = a.pageURL(r, l.page-1)
		}
		if l.window().Offset+n < total {
			links.Next = a.pageURL(r, l.page+1)
		}
	}
	return links
}

// queryBool reads a boolean query parameter: true or false in any letter case.
func queryBool(name, v string) (bool, error) {
	switch strings.ToLower(v) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, kps.InvalidParameter(name)
}

// listProjects is GET /v3/projects (auth.md §8.2), the Huawei SDK's project discovery: the
// visible projects filtered by name, domain_id, enabled, parent_id and is_domain, all of them
// unless page or per_page is given.
func (a *API) listProjects(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	q, err := readListQuery(r, "name", "domain_id", "parent_id", "enabled", "is_domain", "page", "per_page")
	if err != nil {
		return err
	}
	f := kps.ProjectFilter{Name: q.Name, DomainID: q.DomainID, Enabled: q.Enabled}
	// A filter that nothing can match: a project is no domain, and its parent is its domain
	// (auth.md §3.1).
	none := deref(q.IsDomain, false)
	if q.ParentID != nil && q.DomainID != nil && *q.DomainID != *q.ParentID {
		// Either may name the domain "default".
		d1, err := a.manager.ResolveDomainID(r.Context(), *q.DomainID)
		if err != nil {
			return err
		}
		d2, err := a.manager.ResolveDomainID(r.Context(), *q.ParentID)
		if err != nil {
			return err
		}
		none = none || d1 != d2
	}
	if q.ParentID != nil {
		f.DomainID = q.ParentID
	}
	items, total := []kps.Project{}, 0
	if !none {
		if items, total, err = a.manager.VisibleProjects(r.Context(), p, f, q.window()); err != nil {
			return err
		}
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"projects": a.projects(items), "links": a.links(r, q, len(items), total)})
	return nil
}

// showProject is GET /v3/projects/{project}: 200, or 403 KPS.9006 for an invisible or unknown
// project alike (auth.md §8.2).
func (a *API) showProject(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	proj, err := a.manager.VisibleProject(r.Context(), p, r.PathValue("project"))
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"project": a.project(*proj)})
	return nil
}

// listAuthProjects is GET /v3/auth/projects (auth.md §8.3): the projects the caller may scope a
// token to.
func (a *API) listAuthProjects(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	return a.writeUserProjects(w, r, p, "")
}

// listUserProjects is GET /v3/users/{user_id}/projects (auth.md §8.3).
func (a *API) listUserProjects(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	return a.writeUserProjects(w, r, p, r.PathValue("user_id"))
}

func (a *API) writeUserProjects(w http.ResponseWriter, r *http.Request, p *kps.Principal, userID string) error {
	items, err := a.manager.UserProjects(r.Context(), p, userID)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"projects": a.projects(items), "links": listLinks{Self: a.selfURL(r)}})
	return nil
}

// listAuthDomains is GET /v3/auth/domains (auth.md §8.3): exactly the caller's domain.
func (a *API) listAuthDomains(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	d, err := a.manager.OwnDomain(r.Context(), p)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"domains": []domainView{a.domain(*d)}, "links": listLinks{Self: a.selfURL(r)}})
	return nil
}

// showCatalog is GET /v3/auth/catalog (auth.md §8.3, §8.4).
func (a *API) showCatalog(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	api.WriteJSON(w, http.StatusOK, map[string]any{"catalog": a.manager.Catalog(), "links": listLinks{Self: a.selfURL(r)}})
	return nil
}

// listRoles is GET /v3/roles (auth.md §9): the three fixed roles, weakest first.
func (a *API) listRoles(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	ids, err := a.manager.RoleIDs(r.Context())
	if err != nil {
		return err
	}
	roles := make([]roleView, 0, len(kps.Roles))
	for _, role := range kps.Roles {
		roles = append(roles, roleView{ID: ids[role], Name: string(role), Links: a.link("/v3/roles/", ids[role])})
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"roles": roles, "links": listLinks{Self: a.selfURL(r)}})
	return nil
}

// listUsers is GET /v3/users (Keystone's list_users, which OpenStack clients call to resolve a
// user name, e.g. `openstack keypair list --user`): filters name, domain_id and enabled (other
// parameters are ignored, as Keystone ignores them), page and per_page as for projects.
func (a *API) listUsers(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	q, err := readListQuery(r, "name", "domain_id", "enabled", "page", "per_page")
	if err != nil {
		return err
	}
	items, total, err := a.manager.VisibleUsers(r.Context(), p, kps.UserFilter{Name: q.Name, DomainID: q.DomainID, Enabled: q.Enabled}, q.window())
	if err != nil {
		return err
	}
	users := make([]wire.User, 0, len(items))
	for _, u := range items {
		users = append(users, a.user(u))
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"users": users, "links": a.links(r, q, len(items), total)})
	return nil
}

// showUser is GET /v3/users/{user_id}: oneself, or a user the caller administers.
func (a *API) showUser(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	u, err := a.manager.VisibleUser(r.Context(), p, r.PathValue("user_id"))
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"user": a.user(*u)})
	return nil
}

// listDomains is GET /v3/domains, filtered by name and enabled: the caller's own domain, every
// domain for the operator admin (OpenStack clients resolve --user-domain names with it).
func (a *API) listDomains(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	q, err := readListQuery(r, "name", "enabled")
	if err != nil {
		return err
	}
	items, err := a.manager.VisibleDomains(r.Context(), p, kps.DomainFilter{Name: q.Name, Enabled: q.Enabled})
	if err != nil {
		return err
	}
	domains := make([]domainView, 0, len(items))
	for _, d := range items {
		domains = append(domains, a.domain(d))
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"domains": domains, "links": listLinks{Self: a.selfURL(r)}})
	return nil
}

// showDomain is GET /v3/domains/{domain_id}: the caller's own domain, any for the operator.
func (a *API) showDomain(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	d, err := a.manager.VisibleDomain(r.Context(), p, r.PathValue("domain_id"))
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"domain": a.domain(*d)})
	return nil
}
