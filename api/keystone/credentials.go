package keystone

import (
	"net/http"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api"
)

// createCredential is POST /v3.0/OS-CREDENTIAL/credentials (auth.md §9): 201 with the new AK
// and its SK, the only response that ever carries that SK.
func (a *API) createCredential(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	var req credentialCreate
	if err := readRequest(r, "credential", &req); err != nil {
		return err
	}
	k, secret, err := a.manager.CreateCredential(r.Context(), p, deref(req.UserID, ""), deref(req.Description, ""))
	if err != nil {
		return err
	}
	writeSecret(w, http.StatusCreated, map[string]any{"credential": newCredentialView{Access: k.Access, Secret: secret,
		UserID: k.UserID, Status: k.Status, Description: k.Description, CreateTime: identityTime(k.Created)}})
	return nil
}

// listCredentials is GET /v3.0/OS-CREDENTIAL/credentials?user_id=… (the caller's keys without
// user_id).
func (a *API) listCredentials(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	q, err := queryOnce(r, "user_id")
	if err != nil {
		return err
	}
	keys, err := a.manager.Credentials(r.Context(), p, q.Get("user_id"))
	if err != nil {
		return err
	}
	out := make([]credentialView, 0, len(keys))
	for _, k := range keys {
		out = append(out, credential(k))
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"credentials": out})
	return nil
}

// showCredential is GET /v3.0/OS-CREDENTIAL/credentials/{access_key}.
func (a *API) showCredential(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	k, err := a.manager.Credential(r.Context(), p, r.PathValue("access_key"))
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"credential": credential(*k)})
	return nil
}

// updateCredential is PUT /v3.0/OS-CREDENTIAL/credentials/{access_key}: status (active or
// inactive) and description.
func (a *API) updateCredential(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	var req credentialUpdate
	if err := readRequest(r, "credential", &req); err != nil {
		return err
	}
	k, err := a.manager.UpdateCredential(r.Context(), p, r.PathValue("access_key"), req.AccessKeyUpdate)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"credential": credential(*k)})
	return nil
}

// deleteCredential is DELETE /v3.0/OS-CREDENTIAL/credentials/{access_key}: 204.
func (a *API) deleteCredential(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	return noContent(w, a.manager.DeleteCredential(r.Context(), p, r.PathValue("access_key")))
}

// createSecurityToken is POST /v3.0/OS-CREDENTIAL/securitytokens (auth.md §3.6): 201 with a
// temporary AK/SK and its security token.
func (a *API) createSecurityToken(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	req, err := readSecurityTokenRequest(r)
	if err != nil {
		return err
	}
	c, secret, securityToken, err := a.manager.IssueTemporaryCredential(r.Context(), p, r.Header.Get("X-Auth-Token"), req.TokenID, req.Duration)
	if err != nil {
		return err
	}
	writeSecret(w, http.StatusCreated, map[string]any{"credential": temporaryCredentialView{Access: c.Access,
		Secret: secret, SecurityToken: securityToken, ExpiresAt: identityTime(c.ExpiresAt)}})
	return nil
}
