package iam

import (
	"context"

	"github.com/openkps/kps"
)

// AuditEvents returns the audit events without a project (logins, identity changes, refused
// authentications: docs/spec/audit.md) to the operator admin alone: they span every domain.
func (s *Service) AuditEvents(ctx context.Context, p *kps.Principal, f kps.AuditFilter, pg kps.Page) ([]kps.AuditEvent, int, error) {
	if err := s.operatorOnly(ctx, p); err != nil {
		return nil, 0, err
	}
	if s.AuditTrail == nil {
		return nil, 0, kps.Errorf(kps.ErrNoRoute, "This deployment keeps no audit trail.")
	}
	f.ProjectID = ""
	return s.AuditTrail.ListAuditEvents(ctx, f, pg)
}
