package keystone

import (
	"net/http"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api"
)

// listAuditEvents is GET /v3/audit-events (docs/spec/audit.md, our extension): the audit
// events without a project — logins, identity changes, refused authentications — for the
// operator admin, newest first.
func (a *API) listAuditEvents(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	return api.ListAuditEvents(w, r, p, a.manager.AuditEvents)
}
