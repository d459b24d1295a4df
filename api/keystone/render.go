package keystone

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api"
	"github.com/openkps/kps/api/wire"
)

// Decoding and rendering shared by the identity and management handlers.

// identityTime is the time format of the identity routes, "2006-01-02T15:04:05.000000Z".
func identityTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z") }

// listLinks are the links of a Keystone list: previous and next are null on the last page,
// which is what the Terraform provider pages by (auth.md §8.3).
type listLinks struct {
	Self     string  `json:"self"`
	Previous *string `json:"previous"`
	Next     *string `json:"next"`
}

// selfURL is the public URL of the request, query included.
func (a *API) selfURL(r *http.Request) string {
	u := a.publicURL + r.URL.Path
	if r.URL.RawQuery != "" {
		u += "?" + r.URL.RawQuery
	}
	return u
}

// pageURL is the public URL of the request with its page parameter replaced.
func (a *API) pageURL(r *http.Request, page int) *string {
	q := r.URL.Query()
	q.Set("page", strconv.Itoa(page))
	u := a.publicURL + r.URL.Path + "?" + q.Encode()
	return &u
}

func (a *API) link(path, id string) wire.Link {
	return wire.Link{Self: a.publicURL + path + url.PathEscape(id)}
}

type projectView struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	DomainID    string    `json:"domain_id"`
	ParentID    string    `json:"parent_id"`
	IsDomain    bool      `json:"is_domain"`
	Enabled     bool      `json:"enabled"`
	Description string    `json:"description"`
	Links       wire.Link `json:"links"`
}

func (a *API) project(p kps.Project) projectView {
	return projectView{ID: p.ID, Name: p.Name, DomainID: p.DomainID, ParentID: p.DomainID, Enabled: p.Enabled,
		Description: p.Description, Links: a.link("/v3/projects/", p.ID)}
}

func (a *API) projects(ps []kps.Project) []projectView {
	out := make([]projectView, 0, len(ps))
	for _, p := range ps {
		out = append(out, a.project(p))
	}
	return out
}

type domainView struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Enabled     bool      `json:"enabled"`
	Description string    `json:"description"`
	Links       wire.Link `json:"links"`
}

func (a *API) domain(d kps.Domain) domainView {
	return domainView{ID: d.ID, Name: d.Name, Enabled: d.Enabled, Description: d.Description,
		Links: a.link("/v3/domains/", d.ID)}
}

func (a *API) user(u kps.User) wire.User {
	return wire.User{ID: u.ID, Name: u.Name, DomainID: u.DomainID, Enabled: u.Enabled, Description: u.Description,
		DefaultProjectID: u.DefaultProjectID, Links: a.link("/v3/users/", u.ID)}
}

// credentialView is an access key as listed: never its SK.
type credentialView struct {
	Access      string  `json:"access"`
	UserID      string  `json:"user_id"`
	Status      string  `json:"status"`
	Description string  `json:"description"`
	CreateTime  string  `json:"create_time"`
	LastUseTime *string `json:"last_use_time"`
}

func credential(k kps.AccessKey) credentialView {
	v := credentialView{Access: k.Access, UserID: k.UserID, Status: k.Status, Description: k.Description,
		CreateTime: identityTime(k.Created)}
	if !k.LastUsed.IsZero() {
		t := identityTime(k.LastUsed)
		v.LastUseTime = &t
	}
	return v
}

// newCredentialView is the one response that carries an SK (auth.md §9, §12).
type newCredentialView struct {
	Access      string `json:"access"`
	Secret      string `json:"secret"`
	UserID      string `json:"user_id"`
	Status      string `json:"status"`
	Description string `json:"description"`
	CreateTime  string `json:"create_time"`
}

// temporaryCredentialView carries the SK and security token of a temporary credential, once.
type temporaryCredentialView struct {
	Access        string `json:"access"`
	Secret        string `json:"secret"`
	SecurityToken string `json:"securitytoken"`
	ExpiresAt     string `json:"expires_at"`
}

type roleView struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	DomainID *string   `json:"domain_id"`
	Links    wire.Link `json:"links"`
}

// writeSecret renders a response that carries a secret: never cached (auth.md §12.3).
func writeSecret(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Cache-Control", "no-store")
	api.WriteJSON(w, status, v)
}

// queryOnce returns the query of an identity request: a parameter among names given more than
// once is the KPS.6003 "Invalid parameter" of auth.md §11.3 (kps-v3-api.md §1.4's reason).
func queryOnce(r *http.Request, names ...string) (url.Values, error) {
	q := r.URL.Query()
	if n := api.RepeatedParameter(q, names); n != "" {
		return nil, kps.InvalidParameter(n)
	}
	return q, nil
}
