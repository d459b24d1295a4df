package client

import (
	"context"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/openkps/kps"
)

// AuditQuery selects audit events (docs/spec/audit.md): the project's trail, or with Operator
// the events without a project (logins, identity changes, refused authentications) that the
// operator admin reads. Empty members match everything; Until is exclusive.
type AuditQuery struct {
	Operator   bool
	Action     string
	UserID     string
	ResourceID string
	Since      time.Time
	Until      time.Time
}

func (q AuditQuery) path(c *Client, limit, offset int) string {
	v := url.Values{"limit": {strconv.Itoa(limit)}, "offset": {strconv.Itoa(offset)}}
	for name, s := range map[string]string{"action": q.Action, "user_id": q.UserID, "resource_id": q.ResourceID} {
		if s != "" {
			v.Set(name, s)
		}
	}
	for name, t := range map[string]time.Time{"since": q.Since, "until": q.Until} {
		if !t.IsZero() {
			v.Set(name, t.UTC().Format(time.RFC3339Nano))
		}
	}
	if q.Operator {
		return "/v3/audit-events?" + v.Encode()
	}
	return c.projectPath("/audit-events?") + v.Encode()
}

// ListAuditEvents reads one page of the audit trail, newest first, with the number of
// matching events (GET /v3/{project_id}/audit-events, or /v3/audit-events for the operator).
func (c *Client) ListAuditEvents(ctx context.Context, q AuditQuery, limit, offset int) (kps.AuditPage, error) {
	var out kps.AuditPage
	err := c.call(ctx, http.MethodGet, q.path(c, limit, offset), nil, &out)
	return out, err
}

// AuditEvents yields every matching audit event, newest first, a page of pageSize at a time
// as the caller goes on.
func (c *Client) AuditEvents(ctx context.Context, q AuditQuery, pageSize int) iter.Seq2[kps.AuditEvent, error] {
	return func(yield func(kps.AuditEvent, error) bool) {
		// Events recorded between two reads shift the next page down: an event seen twice is
		// yielded once.
		seen := map[int64]bool{}
		for offset := 0; ; {
			page, err := c.ListAuditEvents(ctx, q, pageSize, offset)
			if err != nil {
				yield(kps.AuditEvent{}, err)
				return
			}
			for _, e := range page.Events {
				if seen[e.ID] {
					continue
				}
				seen[e.ID] = true
				if !yield(e, nil) {
					return
				}
			}
			offset += len(page.Events)
			if len(page.Events) == 0 || offset >= page.Total {
				return
			}
		}
	}
}
