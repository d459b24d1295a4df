// Package client is the typed HTTP client of a running OpenKPS: the KPS v3 key pair and task
// operations (docs/spec/kps-v3-api.md), the server inventory (docs/spec/inventory.md) and the
// identity administration the command line needs (docs/spec/auth.md). Every request carries a
// deadline (Timeout), a context, and a token or an AK/SK signature. A failure the service
// answers comes back as *kps.Error with its KPS code and message, so callers handle it like a
// local one; a failure to reach the service is an error that says so.
//
// Requests and answers are structs of this package that follow the wire format; they use the
// domain's types (kps.Credential, kps.Operation, kps.Role) where those fit, and the bodies the
// handlers write (api/wire) where the client reads what they write. The package imports the
// domain, api/wire and iam (for the request signature, auth.md §6), nothing else of this
// repository.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/iam"
)

// DefaultTimeout bounds one request (connection, request and whole answer) unless the caller
// chooses another.
const DefaultTimeout = 30 * time.Second

// maxAnswer bounds what the client reads from one answer; the largest legitimate one is a
// batch export zip of ten keys.
const maxAnswer = 16 << 20

// Client calls one service for one project. Set Token, or AccessKey and SecretKey to sign each
// request instead. The zero HTTP uses a client with DefaultTimeout.
type Client struct {
	Endpoint  string // e.g. http://127.0.0.1:9800
	ProjectID string
	Token     string
	AccessKey string
	SecretKey string
	HTTP      *http.Client
}

// New returns a client of endpoint whose requests time out after timeout (DefaultTimeout when
// not positive).
func New(endpoint string, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Client{Endpoint: strings.TrimSuffix(endpoint, "/"), HTTP: &http.Client{Timeout: timeout}}
}

// UnreachableError is a request that never got an answer from the service: it could not
// connect, or the deadline passed.
type UnreachableError struct {
	Endpoint string
	Err      error
}

func (e *UnreachableError) Error() string {
	var ne net.Error
	if errors.As(e.Err, &ne) && ne.Timeout() {
		return fmt.Sprintf("the service at %s did not answer in time (%v)", e.Endpoint, rootCause(e.Err))
	}
	return fmt.Sprintf("cannot reach the service at %s: %v", e.Endpoint, rootCause(e.Err))
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// rootCause strips the url.Error wrapping ("Get "http://…/v3/…": dial tcp …"), whose path
// means nothing to the person at the terminal.
func rootCause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// projectPath is a path under /v3/{project_id}.
func (c *Client) projectPath(format string, args ...any) string {
	for i, a := range args {
		if s, ok := a.(string); ok {
			args[i] = url.PathEscape(s)
		}
	}
	return "/v3/" + url.PathEscape(c.ProjectID) + fmt.Sprintf(format, args...)
}

// call sends body (JSON unless nil) and decodes a JSON answer into out (when not nil).
func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	_, raw, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	return decode(raw, out)
}

// decode reads a JSON answer into out (when out is not nil and there is an answer).
func decode(raw []byte, out any) error {
	if out == nil || len(raw) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("the service's answer is not what this client understands: %w", err)
	}
	return nil
}

// send makes one request and returns the answer and its body; an error status becomes an error.
func (c *Client) send(ctx context.Context, method, path string, body any) (*http.Response, []byte, error) {
	return c.sendWith(ctx, method, path, body, nil)
}

// sendWith is send with extra request headers (X-Subject-Token of the token routes).
func (c *Client) sendWith(ctx context.Context, method, path string, body any, header http.Header) (*http.Response, []byte, error) {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return nil, nil, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Endpoint+path, bytes.NewReader(b))
	if err != nil {
		return nil, nil, fmt.Errorf("endpoint %q: %w", c.Endpoint, rootCause(err))
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json;charset=UTF-8")
	}
	for k, v := range header {
		req.Header[k] = v
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
		hc = &http.Client{Timeout: DefaultTimeout}
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, &UnreachableError{Endpoint: c.Endpoint, Err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		if ctx.Err() != nil {
			return resp, nil, ctx.Err()
		}
		return resp, nil, &UnreachableError{Endpoint: c.Endpoint, Err: err}
	}
	if resp.StatusCode >= 400 {
		var e struct {
			Code string `json:"error_code"`
			Msg  string `json:"error_msg"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Code != "" {
			return resp, raw, &kps.Error{Code: e.Code, Message: e.Msg}
		}
		return resp, raw, fmt.Errorf("the service at %s answered %s %s with HTTP %d and no KPS error", c.Endpoint, method, path, resp.StatusCode)
	}
	return resp, raw, nil
}

// Code is the KPS code err carries, "" when it carries none (a local or network failure).
func Code(err error) string {
	var e *kps.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
