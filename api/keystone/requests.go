package keystone

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api"
)

// The request bodies of the identity and management routes, one typed struct each. A body is
// read by readRequest: the JSON object of the route (at most 64 KiB, auth.md §5.1), the object
// under the body's one key ({"user": {…}}), then its members in the order the struct lists
// them, so that the first wrong member is the one reported; null equals absent and unknown
// members are ignored (§1.4). Validate applies the rules that span members. Every refusal has
// the exact text of auth.md §11.3: "Missing required parameter: user.name.", "Invalid
// parameter: user.enabled.".

// field is one member of a request body and where it goes: a *string is required, a **string
// or **bool optional (nil when absent).
type field struct {
	name string
	dst  any
}

// request is a typed request body.
type request interface {
	// fields are the members, in the order they are checked.
	fields() []field
	// Validate applies the rules that span members.
	Validate() error
}

// readRequest reads the body of r into req, the object under key.
func readRequest(r *http.Request, key string, req request) error {
	o, err := readIdentityObject(r)
	if err != nil {
		return err
	}
	b, err := member(o, key)
	if err != nil {
		return err
	}
	if err := decodeFields(b, req.fields()); err != nil {
		return err
	}
	return req.Validate()
}

// decodeFields reads the members of o into their fields, in order.
func decodeFields(o api.Object, fields []field) error {
	for _, f := range fields {
		var err error
		switch dst := f.dst.(type) {
		case *string:
			*dst, err = requiredString(o, f.name)
		case **string:
			*dst, err = optString(o, f.name)
		case **bool:
			*dst, err = optBool(o, f.name)
		default:
			panic("keystone: a field of type " + strconv.Quote(f.name) + " cannot be decoded")
		}
		if err != nil {
			return err
		}
	}
	return nil
}

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

// userCreate is the body of POST /v3/users.
type userCreate struct {
	Name                                              string
	DomainID, Password, Description, DefaultProjectID *string
	Enabled                                           *bool
}

func (u *userCreate) fields() []field {
	return []field{{"name", &u.Name}, {"domain_id", &u.DomainID}, {"password", &u.Password}, {"enabled", &u.Enabled},
		{"description", &u.Description}, {"default_project_id", &u.DefaultProjectID}}
}

// Validate accepts every user to create: the name and password rules are the manager's.
func (u *userCreate) Validate() error { return nil }

// user is the user to create; the password goes apart.
func (u *userCreate) user() kps.User {
	return kps.User{Name: u.Name, DomainID: deref(u.DomainID, ""), Enabled: deref(u.Enabled, true),
		Description: deref(u.Description, ""), DefaultProjectID: deref(u.DefaultProjectID, "")}
}

// userUpdate is the body of PATCH /v3/users/{user_id}: default_project_id "" removes it.
type userUpdate struct {
	kps.UserUpdate
	Password *string
}

func (u *userUpdate) fields() []field {
	return []field{{"name", &u.Name}, {"enabled", &u.Enabled}, {"description", &u.Description},
		{"default_project_id", &u.DefaultProjectID}, {"password", &u.Password}}
}

// Validate accepts every change: the rules are the manager's.
func (u *userUpdate) Validate() error { return nil }

// passwordChange is the body of POST /v3/users/{user_id}/password.
type passwordChange struct {
	Original, Password string
}

func (c *passwordChange) fields() []field {
	return []field{{"original_password", &c.Original}, {"password", &c.Password}}
}

// Validate accepts both passwords as given: the password rules are the manager's.
func (c *passwordChange) Validate() error { return nil }

// projectCreate is the body of POST /v3/projects.
type projectCreate struct {
	Name                            string
	DomainID, ParentID, Description *string
	IsDomain, Enabled               *bool
}

func (c *projectCreate) fields() []field {
	return []field{{"name", &c.Name}, {"domain_id", &c.DomainID}, {"parent_id", &c.ParentID},
		{"is_domain", &c.IsDomain}, {"enabled", &c.Enabled}, {"description", &c.Description}}
}

// Validate applies Keystone's rules of a project in a domain: parent_id, when given, is the
// domain (a project's parent is its domain, and stands for domain_id when that is absent);
// is_domain is false.
func (c *projectCreate) Validate() error {
	switch {
	case c.ParentID != nil && c.DomainID == nil:
		c.DomainID = c.ParentID
	case c.ParentID != nil && *c.ParentID != *c.DomainID:
		return kps.InvalidParameter("project.parent_id")
	}
	if deref(c.IsDomain, false) {
		return kps.InvalidParameter("project.is_domain")
	}
	return nil
}

func (c *projectCreate) project() kps.Project {
	return kps.Project{Name: c.Name, DomainID: deref(c.DomainID, ""), Enabled: deref(c.Enabled, true),
		Description: deref(c.Description, "")}
}

// domainCreate is the body of POST /v3/domains.
type domainCreate struct {
	Name        string
	Enabled     *bool
	Description *string
}

func (c *domainCreate) fields() []field {
	return []field{{"name", &c.Name}, {"enabled", &c.Enabled}, {"description", &c.Description}}
}

// Validate accepts every domain to create: the name rules are the manager's.
func (c *domainCreate) Validate() error { return nil }

// patch is the body of PATCH /v3/projects/{project} and /v3/domains/{domain_id}: name,
// enabled and description; absent members stay nil.
type patch struct {
	Name, Description *string
	Enabled           *bool
}

func (p *patch) fields() []field {
	return []field{{"name", &p.Name}, {"enabled", &p.Enabled}, {"description", &p.Description}}
}

// Validate accepts every change: the rules are the manager's.
func (p *patch) Validate() error { return nil }

// credentialCreate is the body of POST /v3.0/OS-CREDENTIAL/credentials; without user_id the
// key is the caller's own.
type credentialCreate struct {
	UserID, Description *string
}

func (c *credentialCreate) fields() []field {
	return []field{{"user_id", &c.UserID}, {"description", &c.Description}}
}

// Validate accepts every key to create: who may is the manager's rule.
func (c *credentialCreate) Validate() error { return nil }

// credentialUpdate is the body of PUT /v3.0/OS-CREDENTIAL/credentials/{access_key}: status
// (active or inactive, the manager's rule) and description.
type credentialUpdate struct {
	kps.AccessKeyUpdate
}

func (c *credentialUpdate) fields() []field {
	return []field{{"status", &c.Status}, {"description", &c.Description}}
}

// Validate accepts every change: the status values are the manager's rule.
func (c *credentialUpdate) Validate() error { return nil }

// securityTokenRequest is the body of POST /v3.0/OS-CREDENTIAL/securitytokens (auth.md §3.6):
// {"auth":{"identity":{"methods":["token"],"token":{"id":…,"duration_seconds":…}}}}.
type securityTokenRequest struct {
	Methods  []string
	TokenID  string
	Duration time.Duration // 0: the manager's default
}

// readSecurityTokenRequest reads and validates the body.
func readSecurityTokenRequest(r *http.Request) (*securityTokenRequest, error) {
	o, err := readIdentityObject(r)
	if err != nil {
		return nil, err
	}
	auth, err := member(o, "auth")
	if err != nil {
		return nil, err
	}
	identity, err := member(auth, "identity")
	if err != nil {
		return nil, err
	}
	req := &securityTokenRequest{}
	methods, ok, err := identity.StringArray("methods")
	switch {
	case err != nil:
		return nil, exact(identity, "methods", err)
	case !ok:
		return nil, identity.Missing("methods")
	}
	req.Methods = methods
	if err := req.Validate(); err != nil {
		return nil, err
	}
	if tok, ok, err := identity.Object("token", false); err != nil {
		return nil, exact(identity, "token", err)
	} else if ok {
		id, err := optString(tok, "id")
		if err != nil {
			return nil, err
		}
		req.TokenID = deref(id, "")
		if req.Duration, err = durationSeconds(tok); err != nil {
			return nil, err
		}
	}
	return req, nil
}

// Validate requires the one method token (auth.md §3.6).
func (s *securityTokenRequest) Validate() error {
	if len(s.Methods) != 1 || s.Methods[0] != "token" {
		return kps.InvalidParameter("auth.identity.methods")
	}
	return nil
}

// durationSeconds reads token.duration_seconds: a positive integer, or a string of digits as
// Huawei's own examples send (auth.md §3.6); 0 when absent. The range is the manager's rule.
func durationSeconds(tok api.Object) (time.Duration, error) {
	var n int64
	switch v := tok.M["duration_seconds"].(type) {
	case nil:
		return 0, nil
	case json.Number:
		i, err := v.Int64()
		if err != nil {
			return 0, kps.InvalidParameter(tok.Name("duration_seconds"))
		}
		n = i
	case string:
		i, err := strconv.ParseInt(v, 10, 64)
		if err != nil || v == "" || strings.TrimLeft(v, "0123456789") != "" {
			return 0, kps.InvalidParameter(tok.Name("duration_seconds"))
		}
		n = i
	default:
		return 0, kps.InvalidParameter(tok.Name("duration_seconds"))
	}
	if n <= 0 || n > int64(time.Duration(1<<62)/time.Second) {
		return 0, kps.InvalidParameter(tok.Name("duration_seconds"))
	}
	return time.Duration(n) * time.Second, nil
}
