package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/iam"
)

// Client calls a running OpenKPS over HTTP with a token, or signs each request with an access
// key (AK/SK, auth.md §6) when AccessKey is set. Errors the service answers come back as
// *kps.Error with the service's code and message, so callers handle them like local ones.
type Client struct {
	BaseURL   string // e.g. http://127.0.0.1:9800
	Token     string
	AccessKey string // signs requests with SecretKey instead of sending Token
	SecretKey string
	HTTP      *http.Client
}

// Login obtains a project-scoped token with the Keystone password method (auth.md §5.1) and
// returns the client with it, and the project ID.
func Login(ctx context.Context, baseURL, domain, user, password, project string) (*Client, string, error) {
	c := &Client{BaseURL: strings.TrimSuffix(baseURL, "/")}
	body := map[string]any{"auth": map[string]any{
		"identity": map[string]any{"methods": []string{"password"},
			"password": map[string]any{"user": map[string]any{"name": user, "domain": map[string]any{"name": domain}, "password": password}}},
		"scope": map[string]any{"project": map[string]any{"name": project, "domain": map[string]any{"name": domain}}}}}
	var out struct {
		Token struct {
			Project struct {
				ID string `json:"id"`
			} `json:"project"`
		} `json:"token"`
	}
	resp, err := c.do(ctx, http.MethodPost, "/v3/auth/tokens?nocatalog", body, &out)
	if err != nil {
		return nil, "", err
	}
	c.Token = resp.Header.Get("X-Subject-Token")
	return c, out.Token.Project.ID, nil
}

// Do sends body (JSON-encoded unless nil) to path and decodes a JSON answer into out (when
// not nil).
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	_, err := c.do(ctx, method, path, body, out)
	return err
}

// DoBytes is Do for answers that are not JSON (the zip of a batch export): it returns the
// body as it came.
func (c *Client) DoBytes(ctx context.Context, method, path string, body any) ([]byte, error) {
	_, raw, err := c.send(ctx, method, path, body)
	return raw, err
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) (*http.Response, error) {
	resp, raw, err := c.send(ctx, method, path, body)
	if err != nil {
		return resp, err
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp, fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
		}
	}
	return resp, nil
}

// send makes one request and returns the answer's body; an error status becomes an error.
func (c *Client) send(ctx context.Context, method, path string, body any) (*http.Response, []byte, error) {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return nil, nil, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, bytes.NewReader(b))
	if err != nil {
		return nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json;charset=UTF-8")
	}
	switch {
	case c.AccessKey != "":
		if err := iam.Sign(req, b, c.AccessKey, c.SecretKey, time.Now()); err != nil {
			return nil, nil, err
		}
	case c.Token != "":
		req.Header.Set("X-Auth-Token", c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return resp, nil, err
	}
	if resp.StatusCode >= 400 {
		var e errorBody
		if json.Unmarshal(raw, &e) == nil && e.ErrorCode != "" {
			return resp, raw, &kps.Error{Code: e.ErrorCode, Message: e.ErrorMsg}
		}
		return resp, raw, fmt.Errorf("%s %s: HTTP %d", method, path, resp.StatusCode)
	}
	return resp, raw, nil
}
