package api

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"

	"github.com/openkps/kps"
)

// Identity authenticates callers (implemented by iam.Service in local mode and iam.External in
// external mode). clientIP is the client of the request (Proxies.ClientIP), which the lockout of
// auth.md §12.4 counts failures against; a locked client or credential is refused with 429
// KPS.6105 by an error that has a RetryAfter() time.Duration method. reads are what the
// request read already (kps.RequestReads), or nil: the first lockout check and the identity
// version come from them when given.
type Identity interface {
	// AuthenticateAt validates a token for a request that targets projectID ("" on identity
	// routes).
	AuthenticateAt(ctx context.Context, reads *kps.RequestReads, token, projectID, clientIP string) (*kps.Principal, error)
	// AuthenticateSignatureAt verifies an AK/SK request (auth.md §6.3) that targets projectID
	// ("" on identity routes); body is the request body, read in full within the route's
	// limit, and r.Body must not be read.
	AuthenticateSignatureAt(ctx context.Context, reads *kps.RequestReads, r *http.Request, body []byte, projectID, clientIP string) (*kps.Principal, error)
	// CredentialScheme reports whether r carries an AK/SK signature rather than a token
	// (auth.md §4.2 step 1), and refuses one that carries both (KPS.6102).
	CredentialScheme(r *http.Request) (signed bool, err error)
	// LogCredentials returns what names r's credential in a log line without authenticating
	// anyone (auth.md §12.5): the AK of a signature, the fingerprint of a token.
	LogCredentials(r *http.Request) []any
	// SameDomain reports whether the domain ID a request names (X-Domain-Id, auth.md §4.3 row
	// 2) is the caller's domain, under any other name the identity gives it ("default" for the
	// operator domain, §3.7).
	SameDomain(ctx context.Context, named string, p *kps.Principal) (bool, error)
}

// Refusal is a refused authentication or authorization as it is logged (auth.md §11.4,
// §12.5): iam's refusals implement it, and so does Refused.
type Refusal interface {
	error
	// RefusalReason is the reason key of the log line.
	RefusalReason() string
	// RefusedUser names the user a refused login or password change named: their ID, or the
	// name as given; "" otherwise.
	RefusedUser() string
}

// Refused is a refusal decided here rather than by the identity: a role too low for the route
// (auth.md §4.3 row 8), a request that names no project.
type Refused struct {
	Reason string
	Err    *kps.Error
}

func (e *Refused) Error() string         { return e.Err.Error() + " (" + e.Reason + ")" }
func (e *Refused) Unwrap() error         { return e.Err }
func (e *Refused) RefusalReason() string { return e.Reason }
func (e *Refused) RefusedUser() string   { return "" }

// RoleTooLow is the KPS.9006 of a caller without the route's role (auth.md §4.3 row 8).
func RoleTooLow() error {
	return &Refused{Reason: "role-too-low", Err: kps.Errorf(kps.ErrForbidden, "The user has no permission to perform this operation.")}
}

// Target is what a request is authenticated for.
type Target struct {
	// Project is the project the request acts on: the path project on KPS and Nova routes,
	// "" on identity routes.
	Project string
	// Identity marks an identity route (auth.md §1.3): X-Project-Id is ignored, the body limit
	// of an AK/SK request is 64 KiB (§5.1) and no project is required.
	Identity bool
	// ReadAhead has the request's reads made first, in one round trip (kps.RequestReads); the
	// handler finds them in the second result of Authenticate.
	ReadAhead bool
}

// Authenticator runs the request pipeline of auth.md §4.2–4.3 for every family: it detects the
// credential, verifies it for the target project and applies the scope checks that only the
// router can (rows 1, 2 for tokens and 6). An AK/SK request's body is read here, within the
// route's limit (413 before the signature is checked), and put back on r.Body for the handler.
// Every refusal is logged at INFO without secrets (§12.5).
type Authenticator struct {
	Identity Identity
	// Reads makes the reads of Target.ReadAhead; nil: none, the identity reads on its own.
	Reads   kps.RequestReader
	Proxies Proxies
	Log     *slog.Logger
}

// Authenticate authenticates r for t; reads are the request's reads when t.ReadAhead asked for
// them and the Authenticator has a reader.
func (a *Authenticator) Authenticate(r *http.Request, t Target) (*kps.Principal, *kps.RequestReads, error) {
	p, reads, err := a.verify(r, t)
	if err != nil {
		a.LogRefusal(r, "authentication refused", err)
	}
	return p, reads, err
}

// Require is Authenticate followed by the role check of the route: min or better.
func (a *Authenticator) Require(r *http.Request, t Target, min kps.Role) (*kps.Principal, *kps.RequestReads, error) {
	p, reads, err := a.Authenticate(r, t)
	if err == nil && !p.Has(min) {
		// Row 8 of auth.md §4.3, logged like the refusals of Authenticate.
		err = RoleTooLow()
		a.LogRefusal(r, "authentication refused", err)
	}
	return p, reads, err
}

func (a *Authenticator) verify(r *http.Request, t Target) (*kps.Principal, *kps.RequestReads, error) {
	ctx, ip := r.Context(), a.Proxies.ClientIP(r)
	token := r.Header.Get("X-Auth-Token")
	signed, err := a.Identity.CredentialScheme(r)
	if err != nil {
		return nil, nil, err
	}
	var p *kps.Principal
	var reads *kps.RequestReads
	switch {
	case signed:
		limit := int64(MaxBody)
		if t.Identity {
			limit = MaxIdentityBody
		}
		body, rerr := readSignedBody(r, limit)
		if rerr != nil {
			return nil, nil, rerr
		}
		if reads, err = a.readAhead(ctx, t, ip); err != nil {
			return nil, nil, err
		}
		p, err = a.Identity.AuthenticateSignatureAt(ctx, reads, r, body, t.Project, ip)
	case token == "":
		return nil, nil, kps.Errorf(kps.ErrUnauthenticated, "Authentication required: send X-Auth-Token or an AK/SK signature.")
	default:
		if reads, err = a.readAhead(ctx, t, ip); err != nil {
			return nil, nil, err
		}
		p, err = a.Identity.AuthenticateAt(ctx, reads, token, t.Project, ip)
	}
	// 401 is decided before any 403; among the 403s the header mismatch (auth.md §4.3 row 1)
	// comes first.
	if hp := r.Header.Get("X-Project-Id"); !t.Identity && hp != "" && hp != t.Project && (err == nil || kps.ErrorCode(err) == kps.ErrProjectMismatch || kps.ErrorCode(err) == kps.ErrForbidden) {
		return nil, nil, kps.Errorf(kps.ErrProjectMismatch, "Project mismatch: X-Project-Id %s differs from the project %s in the path.", kps.Clip(hp), kps.Clip(t.Project))
	}
	if err != nil {
		return nil, nil, err
	}
	// Row 2, for tokens: the signature check has applied it already.
	if hd := r.Header.Get("X-Domain-Id"); hd != "" && hd != p.DomainID {
		same, err := a.Identity.SameDomain(ctx, hd, p)
		if err != nil {
			return nil, nil, err
		}
		if !same {
			return nil, nil, kps.Errorf(kps.ErrProjectMismatch, "Domain mismatch: X-Domain-Id %s differs from the caller's domain.", kps.Clip(hd))
		}
	}
	// Row 6: every KPS route has a path project, so this only guards the routing table.
	if !t.Identity && t.Project == "" {
		return nil, nil, kps.Errorf(kps.ErrProjectMismatch, "Project mismatch: the request does not name a project.")
	}
	return p, reads, nil
}

// readAhead makes the request's reads when t asks for them: after the request arrived, so that
// every change committed before it shows.
func (a *Authenticator) readAhead(ctx context.Context, t Target, ip string) (*kps.RequestReads, error) {
	if !t.ReadAhead || a.Reads == nil {
		return nil, nil
	}
	return a.Reads.ReadRequest(ctx, t.Project, kps.ClientLockKey(ip))
}

// readSignedBody reads the whole body of an AK/SK request, which the signature covers, and
// puts the bytes back on r.Body for the handler. Too large is 413 KPS.6020 (auth.md §6.3
// step 3), decided before the signature.
func readSignedBody(r *http.Request, limit int64) ([]byte, error) {
	body, err := ReadLimited(r, limit)
	if err != nil {
		return nil, err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, nil
}

// refusalCodes are the codes of an authentication or authorization refusal, which are logged;
// anything else (a body too large, an internal error) is not a refusal.
var refusalCodes = map[string]bool{
	kps.ErrUnauthenticated: true, kps.ErrBadCredentials: true, kps.ErrProjectMismatch: true,
	kps.ErrLockedOut: true, kps.ErrLoginFailed: true, kps.ErrScope: true, kps.ErrForbidden: true,
}

// LogRefusal logs a refused request at INFO, as msg, with what diagnoses it and nothing that
// authenticates (auth.md §12.5): the reason key, the user a login or password change named
// (their ID, or the name as given), the AK or the token's fingerprint, the client IP; never a
// password, the signature, a secret key or a token.
func (a *Authenticator) LogRefusal(r *http.Request, msg string, err error) {
	code := kps.ErrorCode(err)
	if !refusalCodes[code] {
		return
	}
	attrs := []any{"request_id", RequestID(r), "method", r.Method, "path", r.URL.Path,
		"code", code, "reason", refusalReason(err), "client_ip", a.Proxies.ClientIP(r)}
	var f Refusal
	if errors.As(err, &f) && f.RefusedUser() != "" {
		attrs = append(attrs, "user", f.RefusedUser())
	}
	attrs = append(attrs, a.Identity.LogCredentials(r)...)
	a.Log.Info(msg, attrs...)
}

// refusalReason is the reason key of a refusal (auth.md §11.4).
func refusalReason(err error) string {
	var f Refusal
	switch code := kps.ErrorCode(err); {
	case errors.As(err, &f):
		return f.RefusalReason()
	case code == kps.ErrUnauthenticated:
		return "no-credentials"
	case code == kps.ErrProjectMismatch:
		return "header-mismatch"
	}
	return "refused"
}
