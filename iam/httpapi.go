package iam

import (
	"context"
	"net/http"

	"github.com/openkps/kps"
)

// What the HTTP API (api.Identity, keystone.Tokens) asks of an identity beyond the methods of
// its own files: the request pipeline's detection of the credential, what names a credential
// in a log line, and the refusals' log keys. Service and External answer alike.

// Authenticate is AuthenticateAt without request reads.
func (s *Service) Authenticate(ctx context.Context, token, targetProjectID, clientIP string) (*kps.Principal, error) {
	return s.AuthenticateAt(ctx, nil, token, targetProjectID, clientIP)
}

// AuthenticateSignature is AuthenticateSignatureAt without request reads.
func (s *Service) AuthenticateSignature(ctx context.Context, r *http.Request, body []byte, projectID, clientIP string) (*kps.Principal, error) {
	return s.AuthenticateSignatureAt(ctx, nil, r, body, projectID, clientIP)
}

// LoginWithCatalog is Login, leaving the catalog out of the token body unless catalog is set
// (?nocatalog, auth.md §5.1).
func (s *Service) LoginWithCatalog(ctx context.Context, body []byte, headerToken, clientIP string, catalog bool) (string, any, error) {
	token, resp, err := s.Login(ctx, body, headerToken, clientIP)
	if err == nil && !catalog {
		resp.(*TokenResponse).OmitCatalog()
	}
	return token, resp, err
}

// CredentialScheme reports whether r carries an AK/SK signature (auth.md §4.2 step 1); one that
// carries a token as well is refused (KPS.6102 conflicting-credentials).
func (s *Service) CredentialScheme(r *http.Request) (bool, error) { return credentialScheme(r) }

// LogCredentials names r's credential for a log line (auth.md §12.5): the AK of a signature,
// the fingerprint of a token; never a secret.
func (s *Service) LogCredentials(r *http.Request) []any { return logCredentials(r) }

// Authenticate is AuthenticateAt without request reads.
func (e *External) Authenticate(ctx context.Context, token, targetProjectID, clientIP string) (*kps.Principal, error) {
	return e.AuthenticateAt(ctx, nil, token, targetProjectID, clientIP)
}

// AuthenticateSignature is AuthenticateSignatureAt without request reads.
func (e *External) AuthenticateSignature(ctx context.Context, r *http.Request, body []byte, projectID, clientIP string) (*kps.Principal, error) {
	return e.AuthenticateSignatureAt(ctx, nil, r, body, projectID, clientIP)
}

// LoginWithCatalog refuses every login, as Login does.
func (e *External) LoginWithCatalog(ctx context.Context, body []byte, headerToken, clientIP string, _ bool) (string, any, error) {
	return e.Login(ctx, body, headerToken, clientIP)
}

// CredentialScheme is Service.CredentialScheme.
func (e *External) CredentialScheme(r *http.Request) (bool, error) { return credentialScheme(r) }

// LogCredentials is Service.LogCredentials.
func (e *External) LogCredentials(r *http.Request) []any { return logCredentials(r) }

func credentialScheme(r *http.Request) (bool, error) {
	signed := IsSignatureScheme(r.Header.Get("Authorization"))
	if signed && r.Header.Get("X-Auth-Token") != "" {
		return false, SignatureFailure(ReasonConflictingCredentials)
	}
	return signed, nil
}

func logCredentials(r *http.Request) []any {
	var attrs []any
	if a, err := ParseAuthorization(r.Header.Get("Authorization")); err == nil {
		attrs = append(attrs, "access_key", a.AccessKey)
	}
	if t := r.Header.Get("X-Auth-Token"); t != "" {
		attrs = append(attrs, "token", TokenFingerprint(t))
	}
	return attrs
}

// RefusalReason is the reason key of the refusal's log line (api.Refusal).
func (f *Failure) RefusalReason() string { return f.Reason }

// RefusedUser names the user the refused request named (api.Refusal).
func (f *Failure) RefusedUser() string { return f.User }

// RefusalReason is the reason key of the refusal's log line (api.Refusal).
func (e *LockoutError) RefusalReason() string { return e.Reason }

// RefusedUser names the user the refused request named (api.Refusal).
func (e *LockoutError) RefusedUser() string { return e.User }

// SameDomain reports whether the domain ID a request names is the caller's: an external
// identity service knows no other name for a domain than its ID.
func (e *External) SameDomain(_ context.Context, named string, p *kps.Principal) (bool, error) {
	return named == p.DomainID, nil
}
