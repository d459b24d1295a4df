package client

import (
	"context"
	"encoding/json"
	"iter"
	"net/http"
	"net/url"
	"strconv"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api/wire"
)

// Server is a record of the inventory as the service shows it (inventory.md).
type Server = wire.Server

// ServerSpec is a record to register, or the members of one to change: a nil member is left
// as it is (on create: the service's default). An empty, non-nil HostKeys clears the pins;
// ClearCredential removes the stored credential.
type ServerSpec struct {
	ID              string
	Name            *string
	Address         *string
	Port            *int
	User            *string
	HostKeys        *[]string
	SSHDConfig      *string
	Credential      *kps.Credential
	ClearCredential bool
}

// MarshalJSON writes the members that are set; a cleared credential is "credential": null, as
// inventory.md wants.
func (s ServerSpec) MarshalJSON() ([]byte, error) {
	m := struct {
		ID         string           `json:"id,omitempty"`
		Name       *string          `json:"name,omitempty"`
		Address    *string          `json:"address,omitempty"`
		Port       *int             `json:"port,omitempty"`
		User       *string          `json:"user,omitempty"`
		HostKeys   *[]string        `json:"host_keys,omitempty"`
		SSHDConfig *string          `json:"sshd_config,omitempty"`
		Credential *json.RawMessage `json:"credential,omitempty"`
	}{s.ID, s.Name, s.Address, s.Port, s.User, s.HostKeys, s.SSHDConfig, nil}
	switch {
	case s.ClearCredential:
		null := json.RawMessage("null")
		m.Credential = &null
	case s.Credential != nil:
		b, err := json.Marshal(auth(s.Credential))
		if err != nil {
			return nil, err
		}
		raw := json.RawMessage(b)
		m.Credential = &raw
	}
	return json.Marshal(m)
}

type serverBody struct {
	Server ServerSpec `json:"server"`
}

// CreateServer registers a server.
func (c *Client) CreateServer(ctx context.Context, s ServerSpec) (*Server, error) {
	var out struct {
		Server Server `json:"server"`
	}
	if err := c.call(ctx, http.MethodPost, c.projectPath("/servers"), serverBody{s}, &out); err != nil {
		return nil, err
	}
	return &out.Server, nil
}

// UpdateServer changes the members of s that are set (s.ID is not sent).
func (c *Client) UpdateServer(ctx context.Context, id string, s ServerSpec) (*Server, error) {
	s.ID = ""
	var out struct {
		Server Server `json:"server"`
	}
	if err := c.call(ctx, http.MethodPut, c.projectPath("/servers/%s", id), serverBody{s}, &out); err != nil {
		return nil, err
	}
	return &out.Server, nil
}

// Server shows one server.
func (c *Client) Server(ctx context.Context, id string) (*Server, error) {
	var out struct {
		Server Server `json:"server"`
	}
	if err := c.call(ctx, http.MethodGet, c.projectPath("/servers/%s", id), nil, &out); err != nil {
		return nil, err
	}
	return &out.Server, nil
}

// DeleteServer removes a server from the inventory.
func (c *Client) DeleteServer(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, c.projectPath("/servers/%s", id), nil, nil)
}

// ServerPage is one page of the inventory and its size.
type ServerPage struct {
	Total   int      `json:"total"`
	Servers []Server `json:"servers"`
}

// ListServers reads one page of the inventory, ordered by ID.
func (c *Client) ListServers(ctx context.Context, limit, offset int) (ServerPage, error) {
	q := url.Values{"limit": {strconv.Itoa(limit)}, "offset": {strconv.Itoa(offset)}}
	var out ServerPage
	err := c.call(ctx, http.MethodGet, c.projectPath("/servers?")+q.Encode(), nil, &out)
	return out, err
}

// Servers yields every server, a page of pageSize at a time as the caller goes on.
func (c *Client) Servers(ctx context.Context, pageSize int) iter.Seq2[Server, error] {
	return func(yield func(Server, error) bool) {
		for offset := 0; ; {
			page, err := c.ListServers(ctx, pageSize, offset)
			if err != nil {
				yield(Server{}, err)
				return
			}
			for _, s := range page.Servers {
				if !yield(s, nil) {
					return
				}
			}
			offset += len(page.Servers)
			if len(page.Servers) == 0 || offset >= page.Total {
				return
			}
		}
	}
}
