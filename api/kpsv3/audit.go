package kpsv3

import (
	"net/http"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api"
)

// listAuditEvents is GET /v3/{project_id}/audit-events (docs/spec/audit.md, our extension):
// the project's audit trail for its admin, newest first.
func (a *API) listAuditEvents(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	return api.ListAuditEvents(w, r, p, a.audit.AuditEvents)
}
