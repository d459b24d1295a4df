package console

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/openkps/kps"
	"github.com/openkps/kps/client"
)

// auditList is a page of the project's audit trail (docs/spec/audit.md), newest first.
type auditList struct {
	Events                 []kps.AuditEvent
	Action, Resource       string
	Total, Limit, Offset   int
	First, Last            int
	HasPrev, HasNext       bool
	PrevOffset, NextOffset int
	Sizes                  []int
	// PrevURL and NextURL are the pager's links, with the filters.
	PrevURL, NextURL string
}

// auditTrail is the project's audit trail for its admin, a page at a time, filtered by action
// and target as the API filters it; the API refuses anyone else (403 KPS.9006).
func (c *Console) auditTrail(w http.ResponseWriter, r *http.Request, s *session) error {
	limit := intParam(r, "limit", 50, 1, 1000)
	offset := intParam(r, "offset", 0, 0, 1<<31-1)
	q := client.AuditQuery{Action: r.URL.Query().Get("action"), ResourceID: r.URL.Query().Get("resource")}
	pg, err := s.api.ListAuditEvents(r.Context(), q, limit, offset)
	if err != nil {
		return err
	}
	d := auditList{Events: pg.Events, Action: q.Action, Resource: q.ResourceID, Total: pg.Total, Limit: limit, Offset: offset,
		Sizes: pageSizes}
	n := len(pg.Events)
	d.First, d.Last = offset+1, offset+n
	d.HasPrev, d.PrevOffset = offset > 0, max(offset-limit, 0)
	d.HasNext, d.NextOffset = offset+n < pg.Total, offset+n
	v := url.Values{"limit": {strconv.Itoa(limit)}}
	if q.Action != "" {
		v.Set("action", q.Action)
	}
	if q.ResourceID != "" {
		v.Set("resource", q.ResourceID)
	}
	v.Set("offset", strconv.Itoa(d.PrevOffset))
	d.PrevURL = "/console/audit?" + v.Encode()
	v.Set("offset", strconv.Itoa(d.NextOffset))
	d.NextURL = "/console/audit?" + v.Encode()
	c.render(w, r, s, http.StatusOK, "audit", &page{Title: "Audit trail", Section: "audit", Data: d})
	return nil
}
