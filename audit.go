package kps

import (
	"context"
	"time"
)

// The audit trail (docs/spec/audit.md, an extension of ours): who did what to which resource,
// from where, in which request, and how it ended. A change records its event in its own write
// transaction, so that no change commits without its event and no event survives a change
// rolled back; a call refused before it changed anything, and a refused authentication, record
// theirs on their own. An event never holds a secret: no password, private key, secret key or
// token, only the AK of a signature or the fingerprint of a token.

// Audit actions. An action names what a call does, whichever API it came through (a key pair
// created by the KPS or the Nova API is keypair.create); a request refused for its credentials
// is ActionAuthRefused whatever it asked for.
const (
	ActionAuthRefused = "auth.refused"
	ActionLogin       = "auth.login"
	ActionTokenRevoke = "token.revoke"

	ActionKeyPairCreate         = "keypair.create"
	ActionKeyPairUpdate         = "keypair.update"
	ActionKeyPairDelete         = "keypair.delete"
	ActionPrivateKeyImport      = "keypair.import_private_key"
	ActionPrivateKeyExport      = "keypair.export_private_key"
	ActionPrivateKeyClear       = "keypair.clear_private_key"
	ActionKeyPairAssociate      = "keypair.associate"
	ActionKeyPairBatchAssociate = "keypair.batch_associate"
	ActionKeyPairDisassociate   = "keypair.disassociate"
	ActionFailedTaskDelete      = "task.delete_failed"
	ActionFailedTasksDelete     = "task.delete_all_failed"

	ActionServerCreate = "server.create"
	ActionServerUpdate = "server.update"
	ActionServerDelete = "server.delete"

	// ActionDriftCheck starts a drift check (kps-v3-api.md §7.2, an OpenKPS extension).
	ActionDriftCheck = "drift.check"
	// ActionRotationCreate and ActionRotationAction start a staged rotation and pause,
	// resume or cancel it (kps-v3-api.md §8, an OpenKPS extension).
	ActionRotationCreate = "rotation.create"
	ActionRotationAction = "rotation.action"

	ActionProjectCreate       = "project.create"
	ActionProjectUpdate       = "project.update"
	ActionProjectDelete       = "project.delete"
	ActionDomainCreate        = "domain.create"
	ActionDomainUpdate        = "domain.update"
	ActionDomainDelete        = "domain.delete"
	ActionUserCreate          = "user.create"
	ActionUserUpdate          = "user.update"
	ActionUserDelete          = "user.delete"
	ActionPasswordChange      = "user.change_password"
	ActionRoleGrant           = "role.grant"
	ActionRoleRevoke          = "role.revoke"
	ActionCredentialCreate    = "credential.create"
	ActionCredentialUpdate    = "credential.update"
	ActionCredentialDelete    = "credential.delete"
	ActionTemporaryCredential = "credential.create_temporary"
)

// Audit target types: what an event's TargetID names.
const (
	TargetKeyPair    = "keypair"
	TargetServer     = "server"
	TargetTask       = "task"
	TargetProject    = "project"
	TargetDomain     = "domain"
	TargetUser       = "user"
	TargetCredential = "credential"
	TargetToken      = "token"
	TargetDriftCheck = "drift_check"
	TargetRotation   = "rotation"
	// TargetRole names a role assignment as its path does:
	// "projects/<id>/users/<id>/roles/<role>" or "domains/<id>/users/<id>/roles/<role>".
	TargetRole = "role_assignment"
	// TargetRoute names the route a refused request asked for ("POST /v3/…").
	TargetRoute = "route"
)

// Authentication methods as the audit trail names them: a Principal's (AuthToken, AuthAKSK,
// AuthAKSKTemporary) and the login's.
const AuthPassword = "password"

// AuditEvent is one entry of the audit trail. Its JSON is what the API lists and the
// --audit-log stream writes, one flat object per event (docs/spec/audit.md).
type AuditEvent struct {
	// ID is the store's, set once the event is committed; Time is the commit's transaction
	// time (RFC 3339 in JSON, milliseconds).
	ID   int64     `json:"id"`
	Time time.Time `json:"time"`
	// RequestID is the X-Request-Id of the request.
	RequestID string `json:"request_id"`
	// ProjectID is the project the event belongs to, whose admin may read it: the project of a
	// KPS, inventory or Nova call; "" for identity events, logins and refused authentications,
	// which the operator admin reads.
	ProjectID string `json:"project_id"`

	// The actor: who authenticated (empty members when nobody did), in which scope, how, and
	// with what — the AK of a signature or the fingerprint of a token (auth.md §12.5), never
	// the secret itself.
	UserID         string `json:"user_id"`
	UserName       string `json:"user_name"`
	DomainID       string `json:"domain_id"`
	DomainName     string `json:"domain_name"`
	ActorProjectID string `json:"actor_project_id"`
	AuthMethod     string `json:"auth_method"`
	Credential     string `json:"credential"`
	ClientIP       string `json:"client_ip"`

	Action     string `json:"action"`
	TargetType string `json:"target_type"`
	TargetID   string `json:"target_id"`
	// Status is the HTTP status of the answer; Code its KPS code, "" on success.
	Status int    `json:"status"`
	Code   string `json:"code"`
	// TaskID is the task the call made, "" when it made none.
	TaskID string `json:"task_id"`

	// template is the request's event this one was made from (For); committing this one marks
	// that one recorded.
	template *AuditEvent
}

// AuditPage is a page of the audit trail, newest first, with the number of matching events.
type AuditPage struct {
	Total  int          `json:"total"`
	Events []AuditEvent `json:"audit_events"`
}

// For returns a copy of the request's event aimed at one target, for the change that acts on
// it (a call acting on several targets records one event each); nil when e is nil, so that a
// caller outside an audited request records nothing. The request's event learns the first
// target named, for the event of a refusal.
func (e *AuditEvent) For(targetType, targetID string) *AuditEvent {
	if e == nil {
		return nil
	}
	e.Name(targetType, targetID)
	c := *e
	c.ID, c.template = 0, e
	c.TargetType, c.TargetID = targetType, targetID
	return &c
}

// Name aims the request's event at a target unless it has one: what the event of a refusal
// names.
func (e *AuditEvent) Name(targetType, targetID string) {
	if e != nil && e.TargetID == "" {
		e.TargetType, e.TargetID = targetType, targetID
	}
}

// Committed is called by the store once the transaction holding the event committed under id
// at t; the request's event it was made from then counts as recorded.
func (e *AuditEvent) Committed(id int64, t time.Time) {
	e.ID, e.Time = id, t
	if e.template != nil && e.template.ID == 0 {
		e.template.ID = id
	}
}

// Recorded reports whether the event, or an event made from it by For, was committed.
func (e *AuditEvent) Recorded() bool { return e != nil && e.ID != 0 }

// AuditFilter selects audit events; zero members match everything. ProjectID is always
// applied: "" selects the events without a project.
type AuditFilter struct {
	ProjectID  string
	Action     string
	UserID     string
	ResourceID string // the target's ID
	Since      time.Time
	Until      time.Time // exclusive
}

// AuditStore keeps the audit trail. The events of changes are written by the store's write
// methods inside the change's transaction (Store.Audit); RecordAudit writes one on its own.
type AuditStore interface {
	// RecordAudit stores ev in a transaction of its own and calls ev.Committed.
	RecordAudit(ctx context.Context, ev *AuditEvent) error
	// ListAuditEvents returns a page of the matching events, newest first, and their total.
	ListAuditEvents(ctx context.Context, f AuditFilter, p Page) ([]AuditEvent, int, error)
	// PurgeAuditEvents deletes the events older than the retention.
	PurgeAuditEvents(ctx context.Context, olderThan time.Duration) (int, error)
}

// AuditReader reads the audit trail of the caller's project (GET /v3/{project_id}/audit-events).
type AuditReader interface {
	AuditEvents(ctx context.Context, p *Principal, f AuditFilter, pg Page) ([]AuditEvent, int, error)
}
