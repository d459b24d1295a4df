package keystone

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api"
)

// Decoding and rendering shared by the identity and management handlers.

// readIdentityObject reads the JSON object body of an identity route (at most 64 KiB,
// auth.md §5.1) with the exact KPS.6001 text of auth.md §11.3.
func readIdentityObject(r *http.Request) (api.Object, error) {
	o, err := api.ReadObject(r, api.MaxIdentityBody)
	if err == nil {
		return o, nil
	}
	if kps.ErrorCode(err) == kps.ErrBadJSON {
		err = kps.Errorf(kps.ErrBadJSON, "The request body is not valid JSON.")
	}
	return api.Object{}, err
}

// exact gives a wrong-type error of a member the exact KPS.6003 text of auth.md §11.3.
func exact(o api.Object, member string, err error) error {
	if err != nil && kps.ErrorCode(err) == kps.ErrInvalid {
		return kps.InvalidParameter(o.Name(member))
	}
	return err
}

// member returns the required object member of a body ({"user": {…}}).
func member(o api.Object, name string) (api.Object, error) {
	m, _, err := o.Object(name, true)
	return m, exact(o, name, err)
}

func optString(o api.Object, name string) (*string, error) {
	v, ok, err := o.Str(name, false)
	if err != nil || !ok {
		return nil, exact(o, name, err)
	}
	return &v, nil
}

func optBool(o api.Object, name string) (*bool, error) {
	v, ok, err := o.Boolean(name)
	if err != nil || !ok {
		return nil, exact(o, name, err)
	}
	return &v, nil
}

func requiredString(o api.Object, name string) (string, error) {
	v, _, err := o.Str(name, true)
	return v, exact(o, name, err)
}

func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// identityTime is the time format of the identity routes, "2006-01-02T15:04:05.000000Z".
func identityTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z") }

type selfLink struct {
	Self string `json:"self"`
}

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

func (a *API) link(path, id string) selfLink {
	return selfLink{Self: a.publicURL + path + url.PathEscape(id)}
}

type projectView struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	DomainID    string   `json:"domain_id"`
	ParentID    string   `json:"parent_id"`
	IsDomain    bool     `json:"is_domain"`
	Enabled     bool     `json:"enabled"`
	Description string   `json:"description"`
	Links       selfLink `json:"links"`
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
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Enabled     bool     `json:"enabled"`
	Description string   `json:"description"`
	Links       selfLink `json:"links"`
}

func (a *API) domain(d kps.Domain) domainView {
	return domainView{ID: d.ID, Name: d.Name, Enabled: d.Enabled, Description: d.Description,
		Links: a.link("/v3/domains/", d.ID)}
}

// userView never carries the password or its hash.
type userView struct {
	ID                string   `json:"id"`
	Name              string   `json:"name"`
	DomainID          string   `json:"domain_id"`
	Enabled           bool     `json:"enabled"`
	Description       string   `json:"description"`
	DefaultProjectID  string   `json:"default_project_id,omitempty"`
	PasswordExpiresAt *string  `json:"password_expires_at"`
	Links             selfLink `json:"links"`
}

func (a *API) user(u kps.User) userView {
	return userView{ID: u.ID, Name: u.Name, DomainID: u.DomainID, Enabled: u.Enabled, Description: u.Description,
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
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	DomainID *string  `json:"domain_id"`
	Links    selfLink `json:"links"`
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
