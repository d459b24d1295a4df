package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/openkps/kps/api/wire"
)

// Rotation is a staged rotation as the service shows it (kps-v3-api.md §8).
type Rotation = wire.Rotation

// RotationRequest is what a rotation is asked to do.
type RotationRequest = wire.RotationRequest

// RotationAuth is the caller's login credential of a rotation.
type RotationAuth = wire.RotationAuth

// CreateRotation starts a staged rotation.
func (c *Client) CreateRotation(ctx context.Context, r RotationRequest) (*Rotation, error) {
	var out wire.RotationBody
	if err := c.call(ctx, http.MethodPost, c.projectPath("/rotations"), wire.RotationCreate{Rotation: r}, &out); err != nil {
		return nil, err
	}
	return &out.Rotation, nil
}

// Rotation reads a rotation with its servers.
func (c *Client) Rotation(ctx context.Context, id string) (*Rotation, error) {
	var out wire.RotationBody
	if err := c.call(ctx, http.MethodGet, c.projectPath("/rotations/%s", id), nil, &out); err != nil {
		return nil, err
	}
	return &out.Rotation, nil
}

// Rotations lists a page of the project's rotations, newest first, and their total.
func (c *Client) Rotations(ctx context.Context, limit, offset int) ([]Rotation, int, error) {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if offset > 0 {
		q.Set("offset", strconv.Itoa(offset))
	}
	path := c.projectPath("/rotations")
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out wire.RotationList
	if err := c.call(ctx, http.MethodGet, path, nil, &out); err != nil {
		return nil, 0, err
	}
	return out.Rotations, out.Total, nil
}

// RotationAction pauses, resumes or cancels a rotation and returns it as it then stands.
func (c *Client) RotationAction(ctx context.Context, id, action string) (*Rotation, error) {
	var out wire.RotationBody
	if err := c.call(ctx, http.MethodPost, c.projectPath("/rotations/%s/action", id), wire.RotationAction{Action: action}, &out); err != nil {
		return nil, err
	}
	return &out.Rotation, nil
}
