package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/openkps/kps/api/wire"
)

// Drift checks (kps-v3-api.md §7.2, an OpenKPS extension).

// DriftCheck is a drift check and, when read alone, its per-server results.
type DriftCheck = wire.DriftCheck

// DriftResult is what a check found on one server.
type DriftResult = wire.DriftResult

// StartDriftCheck starts a check of the servers (every server of the project when none); it
// comes back RUNNING.
func (c *Client) StartDriftCheck(ctx context.Context, servers []string) (*DriftCheck, error) {
	var out wire.DriftCheckResponse
	body := struct {
		Servers []string `json:"servers,omitempty"`
	}{servers}
	if err := c.call(ctx, http.MethodPost, c.projectPath("/drift-checks"), body, &out); err != nil {
		return nil, err
	}
	return &out.DriftCheck, nil
}

// DriftCheck reads one check with its results.
func (c *Client) DriftCheck(ctx context.Context, id string) (*DriftCheck, error) {
	var out wire.DriftCheckResponse
	if err := c.call(ctx, http.MethodGet, c.projectPath("/drift-checks/%s", id), nil, &out); err != nil {
		return nil, err
	}
	return &out.DriftCheck, nil
}

// DriftChecks reads a page of the project's checks, newest first, without their results.
func (c *Client) DriftChecks(ctx context.Context, limit, offset int) ([]DriftCheck, int, error) {
	q := url.Values{"limit": {strconv.Itoa(limit)}, "offset": {strconv.Itoa(offset)}}
	var out wire.DriftChecksResponse
	err := c.call(ctx, http.MethodGet, c.projectPath("/drift-checks?")+q.Encode(), nil, &out)
	return out.DriftChecks, out.Total, err
}
