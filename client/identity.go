package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api/wire"
)

// PasswordLogin is the Keystone password method scoped to a project (auth.md §5.1).
type PasswordLogin struct {
	Domain   string // the user's domain, also the project's
	User     string
	Password string
	Project  string // project name
}

type nameAndDomain struct {
	Name   string `json:"name"`
	Domain struct {
		Name string `json:"name"`
	} `json:"domain"`
}

type passwordAuthRequest struct {
	Auth struct {
		Identity struct {
			Methods  []string `json:"methods"`
			Password struct {
				User struct {
					nameAndDomain
					Password string `json:"password"`
				} `json:"user"`
			} `json:"password"`
		} `json:"identity"`
		Scope struct {
			Project nameAndDomain `json:"project"`
		} `json:"scope"`
	} `json:"auth"`
}

// Login obtains a project-scoped token and sets the client's Token and ProjectID from it.
func (c *Client) Login(ctx context.Context, l PasswordLogin) error {
	var body passwordAuthRequest
	body.Auth.Identity.Methods = []string{"password"}
	u := &body.Auth.Identity.Password.User
	u.Name, u.Domain.Name, u.Password = l.User, l.Domain, l.Password
	body.Auth.Scope.Project.Name, body.Auth.Scope.Project.Domain.Name = l.Project, l.Domain
	var out struct {
		Token struct {
			Project struct {
				ID string `json:"id"`
			} `json:"project"`
		} `json:"token"`
	}
	resp, raw, err := c.send(ctx, http.MethodPost, "/v3/auth/tokens?nocatalog", body)
	if err != nil {
		return err
	}
	if err := decode(raw, &out); err != nil {
		return err
	}
	c.Token, c.AccessKey, c.SecretKey = resp.Header.Get("X-Subject-Token"), "", ""
	c.ProjectID = out.Token.Project.ID
	return nil
}

// Domain is a Keystone domain.
type Domain struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Enabled     bool   `json:"enabled"`
	Description string `json:"description"`
}

// Project is a Keystone project.
type Project struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	DomainID    string `json:"domain_id"`
	Enabled     bool   `json:"enabled"`
	Description string `json:"description"`
}

// User is a Keystone user.
type User = wire.User

// NewUser is a user to create; Password is required.
type NewUser struct {
	Name             string `json:"name"`
	Password         string `json:"password"`
	DomainID         string `json:"domain_id,omitempty"`
	DefaultProjectID string `json:"default_project_id,omitempty"`
	Enabled          bool   `json:"enabled"`
}

// AccessKey is a permanent access key (AK/SK, auth.md §9); Secret is set only when created.
type AccessKey struct {
	Access      string  `json:"access"`
	Secret      string  `json:"secret,omitempty"`
	UserID      string  `json:"user_id"`
	Status      string  `json:"status"`
	Description string  `json:"description"`
	CreateTime  string  `json:"create_time"`
	LastUseTime *string `json:"last_use_time,omitempty"`
}

// RoleAssignment grants a role to a user on a project or on a domain (one of the two).
type RoleAssignment struct {
	UserID    string
	Role      kps.Role
	ProjectID string
	DomainID  string
}

func (a RoleAssignment) path() string {
	target := "/v3/projects/" + url.PathEscape(a.ProjectID)
	if a.DomainID != "" {
		target = "/v3/domains/" + url.PathEscape(a.DomainID)
	}
	return target + "/users/" + url.PathEscape(a.UserID) + "/roles/" + url.PathEscape(string(a.Role))
}

// CreateDomain creates a domain (operator admins only).
func (c *Client) CreateDomain(ctx context.Context, name, description string) (*Domain, error) {
	type domain struct {
		Name        string `json:"name"`
		Description string `json:"description"`
	}
	return create[Domain](ctx, c, "/v3/domains", "domain", domain{name, description})
}

// ListDomains lists the domains the caller may see.
func (c *Client) ListDomains(ctx context.Context) ([]Domain, error) {
	return list[Domain](ctx, c, "/v3/domains", "domains")
}

// CreateProject creates a project; domainID "" is the caller's domain.
func (c *Client) CreateProject(ctx context.Context, name, domainID, description string) (*Project, error) {
	type project struct {
		Name        string `json:"name"`
		DomainID    string `json:"domain_id,omitempty"`
		Description string `json:"description"`
	}
	return create[Project](ctx, c, "/v3/projects", "project", project{name, domainID, description})
}

// ListProjects lists the projects the caller may administer.
func (c *Client) ListProjects(ctx context.Context) ([]Project, error) {
	return list[Project](ctx, c, "/v3/projects", "projects")
}

// CreateUser creates a user.
func (c *Client) CreateUser(ctx context.Context, u NewUser) (*User, error) {
	return create[User](ctx, c, "/v3/users", "user", u)
}

// ListUsers lists the users the caller may administer.
func (c *Client) ListUsers(ctx context.Context) ([]User, error) {
	return list[User](ctx, c, "/v3/users", "users")
}

// DeleteUser deletes a user.
func (c *Client) DeleteUser(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, "/v3/users/"+url.PathEscape(id), nil, nil)
}

// GrantRole grants a role on a project or a domain.
func (c *Client) GrantRole(ctx context.Context, a RoleAssignment) error {
	return c.call(ctx, http.MethodPut, a.path(), nil, nil)
}

// RevokeRole revokes a role granted on a project or a domain.
func (c *Client) RevokeRole(ctx context.Context, a RoleAssignment) error {
	return c.call(ctx, http.MethodDelete, a.path(), nil, nil)
}

// CreateAccessKey creates an access key for a user ("" is the caller); its secret is in the
// answer only.
func (c *Client) CreateAccessKey(ctx context.Context, userID, description string) (*AccessKey, error) {
	type credential struct {
		UserID      string `json:"user_id,omitempty"`
		Description string `json:"description"`
	}
	return create[AccessKey](ctx, c, "/v3.0/OS-CREDENTIAL/credentials", "credential", credential{userID, description})
}

// ListAccessKeys lists the access keys of a user ("" is the caller).
func (c *Client) ListAccessKeys(ctx context.Context, userID string) ([]AccessKey, error) {
	path := "/v3.0/OS-CREDENTIAL/credentials"
	if userID != "" {
		path += "?user_id=" + url.QueryEscape(userID)
	}
	return list[AccessKey](ctx, c, path, "credentials")
}

// DeleteAccessKey deletes an access key.
func (c *Client) DeleteAccessKey(ctx context.Context, access string) error {
	return c.call(ctx, http.MethodDelete, "/v3.0/OS-CREDENTIAL/credentials/"+url.PathEscape(access), nil, nil)
}

// create posts in as {"<key>": in} and returns the answer's member of the same name: the
// envelope of Keystone's create calls.
func create[T any](ctx context.Context, c *Client, path, key string, in any) (*T, error) {
	v := new(T)
	return v, member(ctx, c, http.MethodPost, path, map[string]any{key: in}, key, v)
}

// list returns the answer's member key of a GET: the envelope of Keystone's lists.
func list[T any](ctx context.Context, c *Client, path, key string) ([]T, error) {
	var v []T
	err := member(ctx, c, http.MethodGet, path, nil, key, &v)
	return v, err
}

// member makes one call and decodes the answer's member key into out.
func member(ctx context.Context, c *Client, method, path string, body any, key string, out any) error {
	var answer map[string]json.RawMessage
	if err := c.call(ctx, method, path, body, &answer); err != nil {
		return err
	}
	raw, ok := answer[key]
	if !ok {
		return fmt.Errorf("the service's answer has no %q", key)
	}
	return decode(raw, out)
}
