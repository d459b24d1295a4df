package client

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/openkps/kps"
)

// Token is a token and what the identity service says of it (auth.md §5.1): its user, the
// project it is scoped to and the user's effective roles there. ID is the secret itself.
type Token struct {
	ID          string
	ExpiresAt   time.Time
	UserID      string
	UserName    string
	DomainID    string
	DomainName  string
	ProjectID   string // "" for a token scoped to no project
	ProjectName string
	// Roles are the effective roles on the project (implied ones included, auth.md §3.4): at
	// issue for IssueToken and RescopeToken, at the time of the call for TokenDetails.
	Roles []kps.Role
}

// Has reports whether the token's roles include r, directly or implied.
func (t *Token) Has(r kps.Role) bool { return slices.Contains(kps.Implied(t.Roles), r) }

// tokenBody is the "token" member of the identity service's token answers.
type tokenBody struct {
	ExpiresAt string `json:"expires_at"`
	User      struct {
		ID     string `json:"id"`
		Name   string `json:"name"`
		Domain struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"domain"`
	} `json:"user"`
	Project *struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"project"`
	Roles []struct {
		Name string `json:"name"`
	} `json:"roles"`
}

// token reads a token answer: the secret from X-Subject-Token, the rest from the body.
func token(resp *http.Response, raw []byte) (*Token, error) {
	var out struct {
		Token tokenBody `json:"token"`
	}
	if err := decode(raw, &out); err != nil {
		return nil, err
	}
	b := out.Token
	t := &Token{ID: resp.Header.Get("X-Subject-Token"), UserID: b.User.ID, UserName: b.User.Name,
		DomainID: b.User.Domain.ID, DomainName: b.User.Domain.Name}
	t.ExpiresAt, _ = time.Parse(time.RFC3339Nano, b.ExpiresAt)
	if b.Project != nil {
		t.ProjectID, t.ProjectName = b.Project.ID, b.Project.Name
	}
	for _, r := range b.Roles {
		if role := kps.Role(r.Name); role.Valid() {
			t.Roles = append(t.Roles, role)
		}
	}
	return t, nil
}

// IssueToken signs in with a password and returns the project-scoped token with its user and
// roles; unlike Login it leaves the client as it is.
func (c *Client) IssueToken(ctx context.Context, l PasswordLogin) (*Token, error) {
	var body passwordAuthRequest
	body.Auth.Identity.Methods = []string{"password"}
	u := &body.Auth.Identity.Password.User
	u.Name, u.Domain.Name, u.Password = l.User, l.Domain, l.Password
	body.Auth.Scope.Project.Name, body.Auth.Scope.Project.Domain.Name = l.Project, l.Domain
	resp, raw, err := c.send(ctx, http.MethodPost, "/v3/auth/tokens?nocatalog", body)
	if err != nil {
		return nil, err
	}
	return token(resp, raw)
}

// RescopeToken issues, with the client's token, a token of the same user scoped to another of
// the user's projects (auth.md §5.3: it expires when the client's token does). The client's
// token stays valid.
func (c *Client) RescopeToken(ctx context.Context, projectID string) (*Token, error) {
	type id struct {
		ID string `json:"id"`
	}
	var body struct {
		Auth struct {
			Identity struct {
				Methods []string `json:"methods"`
				Token   id       `json:"token"`
			} `json:"identity"`
			Scope struct {
				Project id `json:"project"`
			} `json:"scope"`
		} `json:"auth"`
	}
	body.Auth.Identity.Methods = []string{"token"}
	body.Auth.Identity.Token.ID = c.Token
	body.Auth.Scope.Project.ID = projectID
	resp, raw, err := c.send(ctx, http.MethodPost, "/v3/auth/tokens?nocatalog", body)
	if err != nil {
		return nil, err
	}
	return token(resp, raw)
}

// TokenDetails validates subject (auth.md §5.4) and returns its user, project and the user's
// roles on that project as they are now; the client's own token may be the subject.
func (c *Client) TokenDetails(ctx context.Context, subject string) (*Token, error) {
	resp, raw, err := c.sendWith(ctx, http.MethodGet, "/v3/auth/tokens?nocatalog", nil, http.Header{"X-Subject-Token": {subject}})
	if err != nil {
		return nil, err
	}
	return token(resp, raw)
}

// RevokeToken revokes subject (auth.md §5.5); the client's own token may be the subject.
func (c *Client) RevokeToken(ctx context.Context, subject string) error {
	_, _, err := c.sendWith(ctx, http.MethodDelete, "/v3/auth/tokens", nil, http.Header{"X-Subject-Token": {subject}})
	return err
}

// AuthProjects lists the projects the caller holds a role on (GET /v3/auth/projects), the
// projects a token of theirs may be scoped to.
func (c *Client) AuthProjects(ctx context.Context) ([]Project, error) {
	var out struct {
		Projects []Project `json:"projects"`
	}
	err := c.call(ctx, http.MethodGet, "/v3/auth/projects", nil, &out)
	return out.Projects, err
}
