package console

import (
	"net/http"
	"net/url"

	"github.com/openkps/kps"
	"github.com/openkps/kps/client"
)

// auditList is a page of the project's audit trail (docs/spec/audit.md), newest first.
type auditList struct {
	Events           []kps.AuditEvent
	Action, Resource string
	offsetPager      // its links keep the filters
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
	keep := url.Values{"action": {q.Action}, "resource": {q.ResourceID}}
	d := auditList{Events: pg.Events, Action: q.Action, Resource: q.ResourceID,
		offsetPager: newOffsetPager(Prefix+"audit", "events", keep, pg.Total, len(pg.Events), limit, offset)}
	c.render(w, r, s, http.StatusOK, "audit", &page{Title: "Audit trail", Section: "audit", Data: d})
	return nil
}
