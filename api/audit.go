package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/openkps/kps"
)

// The audit trail's side of the HTTP APIs (docs/spec/audit.md). A route that changes something
// is an AuditRoute: once the caller is authenticated, AuditEvent makes the request's event —
// request ID, actor, client IP, action, the status of success — and puts it on the principal;
// the services aim it at what they change and the store records it in the change's
// transaction. AuditOutcome then records on its own what no transaction did: a refused call,
// or a call that changed nothing. A refused authentication is recorded as kps.ActionAuthRefused
// where it is logged (LogRefusal), whatever the route.

// AuditRecorder stores an audit event in a transaction of its own (kps.AuditStore).
type AuditRecorder interface {
	RecordAudit(ctx context.Context, ev *kps.AuditEvent) error
}

// AuditRoute is how a route that changes something is audited.
type AuditRoute struct {
	// Action is the route's audit action (kps.Action…).
	Action string
	// Status is the HTTP status the route answers on success: the event a change commits is
	// written before the answer, so the route says it up front (docs/decisions.md, "The
	// audit trail"). A route whose status of success depends on the request (Nova's
	// microversions) sets the event's Status before it calls the service.
	Status int
	// Target is the type of what the route acts on; PathTarget the path wildcard naming it,
	// "" when the body names it (the services then aim the event).
	Target, PathTarget string
}

// AuditEvent returns the audit event of an authenticated request of route, made by p; project
// is the project the event belongs to ("" on identity routes). nil when the API keeps no audit
// trail.
func (a *Authenticator) AuditEvent(r *http.Request, p *kps.Principal, route AuditRoute, project string) *kps.AuditEvent {
	if a.Audit == nil || p == nil {
		return nil
	}
	ev := &kps.AuditEvent{RequestID: RequestID(r), ProjectID: project, UserID: p.UserID, UserName: p.UserName,
		DomainID: p.DomainID, DomainName: p.DomainName, ActorProjectID: p.ProjectID, AuthMethod: p.AuthMethod,
		Credential: p.AccessKey, ClientIP: a.Proxies.ClientIP(r), Action: route.Action, Status: route.Status,
		TargetType: route.Target}
	if route.PathTarget != "" {
		ev.TargetID = r.PathValue(route.PathTarget)
	}
	if ev.Credential == "" {
		ev.Credential = a.credential(r)
	}
	return ev
}

// Audited returns a copy of p carrying ev (kps.Principal.Audit): principals may be shared by a
// validation cache, the event is the request's own.
func Audited(p *kps.Principal, ev *kps.AuditEvent) *kps.Principal {
	if p == nil || ev == nil {
		return p
	}
	c := *p
	c.Audit = ev
	return &c
}

// AuditOutcome records what the request's transactions did not: a refused call (err, answered
// with status) or a call that changed nothing; a call whose change committed its event is
// done, and so is a refused authentication, which LogRefusal recorded.
func (a *Authenticator) AuditOutcome(r *http.Request, ev *kps.AuditEvent, err error, status int) {
	if ev == nil || (err == nil && ev.Recorded()) || (err != nil && authRefusal(err)) {
		return
	}
	if err != nil {
		ev.Status, ev.Code = status, kps.ErrorCode(err)
	}
	a.recordAudit(r, ev)
}

// recordAudit stores ev on its own. A failure cannot change an answer already decided: it is
// logged, without the event's members (they name who was refused).
func (a *Authenticator) recordAudit(r *http.Request, ev *kps.AuditEvent) {
	// The answer may be gone already; the event is recorded regardless.
	if err := a.Audit.RecordAudit(context.WithoutCancel(r.Context()), ev); err != nil {
		a.Log.Error("recording an audit event failed", "request_id", RequestID(r), "action", ev.Action, "err", err)
	}
}

// auditRefusal records a refused authentication (kps.ActionAuthRefused) with what is known of
// the caller and nothing that authenticates (auth.md §12.5): the user a login named (the
// event's target), the AK or the token's fingerprint, the client IP.
func (a *Authenticator) auditRefusal(r *http.Request, err error) {
	if a.Audit == nil || !authRefusal(err) {
		return
	}
	code := kps.ErrorCode(err)
	ev := &kps.AuditEvent{RequestID: RequestID(r), ClientIP: a.Proxies.ClientIP(r), Action: kps.ActionAuthRefused,
		Credential: a.credential(r), Status: HTTPStatus(code), Code: code,
		TargetType: kps.TargetRoute, TargetID: r.Method + " " + r.URL.Path}
	switch signed, _ := a.Identity.CredentialScheme(r); {
	case signed:
		ev.AuthMethod = kps.AuthAKSK
	case r.Header.Get("X-Auth-Token") != "":
		ev.AuthMethod = kps.AuthToken
	}
	var f Refusal
	if errors.As(err, &f) && f.RefusedUser() != "" {
		ev.TargetType, ev.TargetID = kps.TargetUser, f.RefusedUser()
	}
	a.recordAudit(r, ev)
}

// credential is what names r's credential in the trail: the AK of a signature, else the
// fingerprint of a token (Identity.LogCredentials).
func (a *Authenticator) credential(r *http.Request) string {
	attrs := a.Identity.LogCredentials(r)
	var token string
	for i := 0; i+1 < len(attrs); i += 2 {
		v, _ := attrs[i+1].(string)
		switch attrs[i] {
		case "access_key":
			return v
		case "token":
			token = v
		}
	}
	return token
}

// authRefusal reports whether err refuses the request's credentials — an authentication, a
// lockout, a scope they do not reach — rather than the caller's role on the route or the call
// itself: the refusals recorded as kps.ActionAuthRefused.
func authRefusal(err error) bool {
	code := kps.ErrorCode(err)
	if !refusalCodes[code] {
		return false
	}
	if code != kps.ErrForbidden {
		return true
	}
	var f Refusal
	return errors.As(err, &f) && f.RefusalReason() != "role-too-low"
}

// readAuditQuery reads the query of an audit trail listing (docs/spec/audit.md): limit and
// offset as the task lists have them (default 100, at most 1000), and the filters action,
// user_id, resource_id, since and until (RFC 3339, until exclusive). A filter given twice or a
// bad time is 400 KPS.6003.
func readAuditQuery(r *http.Request) (kps.AuditFilter, kps.Page, error) {
	var f kps.AuditFilter
	q, err := QueryOnce(r, "limit", "offset", "action", "user_id", "resource_id", "since", "until")
	if err != nil {
		return f, kps.Page{}, err
	}
	_, hasLimit := q["limit"]
	_, hasOffset := q["offset"]
	p, err := kps.ParsePage(q.Get("limit"), hasLimit, q.Get("offset"), hasOffset, 100)
	if err != nil {
		return f, p, err
	}
	f.Action, f.UserID, f.ResourceID = q.Get("action"), q.Get("user_id"), q.Get("resource_id")
	for _, t := range []struct {
		name string
		to   *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		v := q.Get(t.name)
		if v == "" {
			continue
		}
		if *t.to, err = time.Parse(time.RFC3339Nano, v); err != nil {
			return f, p, kps.Errorf(kps.ErrInvalid, "Invalid %s '%s': an RFC 3339 time such as 2025-01-31T12:00:00Z is required.", t.name, kps.Clip(v))
		}
	}
	return f, p, nil
}

// AuditLister is a service's listing of an audit trail (kps.AuditReader.AuditEvents, and the
// identity manager's for the events without a project).
type AuditLister func(ctx context.Context, p *kps.Principal, f kps.AuditFilter, pg kps.Page) ([]kps.AuditEvent, int, error)

// ListAuditEvents answers an audit trail listing from list, for both trails (the project's,
// the operator's): the query read (readAuditQuery), then {"total", "audit_events"}, newest
// first, never cached.
func ListAuditEvents(w http.ResponseWriter, r *http.Request, p *kps.Principal, list AuditLister) error {
	f, page, err := readAuditQuery(r)
	if err != nil {
		return err
	}
	events, total, err := list(r.Context(), p, f, page)
	if err != nil {
		return err
	}
	if events == nil {
		events = []kps.AuditEvent{}
	}
	w.Header().Set("Cache-Control", "no-store")
	WriteJSON(w, http.StatusOK, kps.AuditPage{Total: total, Events: events})
	return nil
}
