package store

import (
	"context"
	"math"
	"strings"
	"time"

	"github.com/openkps/kps"
)

// The audit trail (kps.AuditStore, docs/spec/audit.md). A change's event rides in the change's
// own write transaction: Audit returns the store with the event attached, beginWrite hands it
// to the transaction, and Commit inserts it as the transaction's last statement, so that the
// event commits with the change or not at all. A task submission carries its event in
// kps.TaskSubmission.Audit, one per item of a batch. Once committed, each event goes to the
// Options.OnAudit sink (the --audit-log stream): never before the commit.

const (
	auditColumns = `id, created, request_id, project_id, user_id, user_name, domain_id, domain_name,
    actor_project_id, auth_method, credential, client_ip, action, target_type, target_id, status, code, task_id`
	insertAuditEvent = `INSERT INTO audit_events (created, request_id, project_id, user_id, user_name,
    domain_id, domain_name, actor_project_id, auth_method, credential, client_ip, action,
    target_type, target_id, status, code, task_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
RETURNING id`

	// auditFilter: the project always (the operator's events have none), the rest when given.
	// The page is newest first from the index audit_events_by_project.
	auditFilter = `
WHERE project_id = ? AND action = COALESCE(?, action) AND user_id = COALESCE(?, user_id)
    AND target_id = COALESCE(?, target_id) AND created >= ? AND created < ?`
	listAuditEvents = `SELECT ` + auditColumns + `, COUNT(*) OVER () FROM audit_events` + auditFilter + `
ORDER BY created DESC, id DESC
LIMIT ? OFFSET ?`
	countAuditEvents  = `SELECT COUNT(*) FROM audit_events` + auditFilter
	purgeAuditEvents  = `DELETE FROM audit_events WHERE created < ?`
	maxAuditTextBytes = 512
)

// Audit returns the store with ev attached: each write method called on the result records ev
// in the transaction of its change, inserted before the commit, and calls ev.Committed after
// it; a method that fails or changes nothing commits no event. A nil ev returns db itself. The
// result shares db's connections: it is used for one call and never closed.
func (db *DB) Audit(ev *kps.AuditEvent) kps.Store {
	if ev == nil {
		return db
	}
	v := *db
	v.audit = ev
	return &v
}

// RecordAudit implements kps.AuditStore: an event in a transaction of its own (a refused call,
// a refused authentication, a call that changed nothing).
func (db *DB) RecordAudit(ctx context.Context, ev *kps.AuditEvent) error {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	tx.audits = []*kps.AuditEvent{ev} // not the event of a copy Audit made
	return tx.Commit()
}

// addAudit has Commit insert ev; nil adds nothing.
func (tx *txn) addAudit(ev *kps.AuditEvent) {
	if ev != nil {
		tx.audits = append(tx.audits, ev)
	}
}

// auditTarget names the target of the transaction's events that have none yet: the ID a create
// drew inside the store.
func (tx *txn) auditTarget(id string) {
	for _, ev := range tx.audits {
		if ev.TargetID == "" {
			ev.TargetID = id
		}
	}
}

// insertAudits inserts the transaction's events, as its last statements, and returns their IDs.
func (tx *txn) insertAudits() ([]int64, error) {
	if len(tx.audits) == 0 {
		return nil, nil
	}
	ids := make([]int64, len(tx.audits))
	for i, ev := range tx.audits {
		err := tx.queryRow(tx.ctx, insertAuditEvent, millis(tx.now), clipAudit(ev.RequestID), ev.ProjectID,
			clipAudit(ev.UserID), clipAudit(ev.UserName), clipAudit(ev.DomainID), clipAudit(ev.DomainName),
			clipAudit(ev.ActorProjectID), ev.AuthMethod, clipAudit(ev.Credential), clipAudit(ev.ClientIP), ev.Action,
			ev.TargetType, clipAudit(ev.TargetID), ev.Status, ev.Code, ev.TaskID).Scan(&ids[i])
		if err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// clipAudit bounds what a caller chose (a refused login's user name, a path) so that a request
// cannot store more than a line's worth; it keeps the text valid UTF-8.
func clipAudit(s string) string {
	if len(s) <= maxAuditTextBytes {
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	s = strings.ToValidUTF8(s[:maxAuditTextBytes], "")
	return s + "…"
}

// ListAuditEvents implements kps.AuditStore.
func (db *DB) ListAuditEvents(ctx context.Context, f kps.AuditFilter, p kps.Page) ([]kps.AuditEvent, int, error) {
	since, until := int64(0), int64(math.MaxInt64)
	if !f.Since.IsZero() {
		since = f.Since.UnixMilli()
	}
	if !f.Until.IsZero() {
		until = f.Until.UnixMilli()
	}
	args := []any{f.ProjectID, optional(f.Action), optional(f.UserID), optional(f.ResourceID), since, until}
	return list(ctx, db, listAuditEvents, countAuditEvents, args, p, scanAuditEvent)
}

// optional maps "" to NULL, which the filter's COALESCE reads as "any".
func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func scanAuditEvent(row scanner, extra ...any) (*kps.AuditEvent, error) {
	var (
		ev      kps.AuditEvent
		created int64
	)
	dest := append([]any{&ev.ID, &created, &ev.RequestID, &ev.ProjectID, &ev.UserID, &ev.UserName, &ev.DomainID,
		&ev.DomainName, &ev.ActorProjectID, &ev.AuthMethod, &ev.Credential, &ev.ClientIP, &ev.Action, &ev.TargetType,
		&ev.TargetID, &ev.Status, &ev.Code, &ev.TaskID}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	ev.Time = fromMillis(created)
	return &ev, nil
}

// PurgeAuditEvents implements kps.AuditStore: the retention sweep.
func (db *DB) PurgeAuditEvents(ctx context.Context, olderThan time.Duration) (int, error) {
	return db.deleteBefore(ctx, purgeAuditEvents, olderThan)
}
