package keystone

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api"
)

// createCredential is POST /v3.0/OS-CREDENTIAL/credentials (auth.md §9): 201 with the new AK
// and its SK, the only response that ever carries that SK.
func (a *API) createCredential(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	o, err := readIdentityObject(r)
	if err != nil {
		return err
	}
	c, err := member(o, "credential")
	if err != nil {
		return err
	}
	userID, err := optString(c, "user_id")
	if err != nil {
		return err
	}
	description, err := optString(c, "description")
	if err != nil {
		return err
	}
	k, secret, err := a.manager.CreateCredential(r.Context(), p, deref(userID, ""), deref(description, ""))
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
	o, err := readIdentityObject(r)
	if err != nil {
		return err
	}
	c, err := member(o, "credential")
	if err != nil {
		return err
	}
	var u kps.AccessKeyUpdate
	if u.Status, err = optString(c, "status"); err != nil {
		return err
	}
	if u.Description, err = optString(c, "description"); err != nil {
		return err
	}
	k, err := a.manager.UpdateCredential(r.Context(), p, r.PathValue("access_key"), u)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"credential": credential(*k)})
	return nil
}

// deleteCredential is DELETE /v3.0/OS-CREDENTIAL/credentials/{access_key}: 204.
func (a *API) deleteCredential(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	if err := a.manager.DeleteCredential(r.Context(), p, r.PathValue("access_key")); err != nil {
		return err
	}
	api.WriteEmpty(w, http.StatusNoContent)
	return nil
}

// createSecurityToken is POST /v3.0/OS-CREDENTIAL/securitytokens (auth.md §3.6): 201 with a
// temporary AK/SK and its security token.
func (a *API) createSecurityToken(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	o, err := readIdentityObject(r)
	if err != nil {
		return err
	}
	auth, err := member(o, "auth")
	if err != nil {
		return err
	}
	identity, err := member(auth, "identity")
	if err != nil {
		return err
	}
	methods, ok, err := identity.StringArray("methods")
	switch {
	case err != nil:
		return exact(identity, "methods", err)
	case !ok:
		return identity.Missing("methods")
	case len(methods) != 1 || methods[0] != "token":
		return kps.InvalidParameter(identity.Name("methods"))
	}
	var tokenID string
	var duration time.Duration
	if tok, ok, err := identity.Object("token", false); err != nil {
		return exact(identity, "token", err)
	} else if ok {
		id, err := optString(tok, "id")
		if err != nil {
			return err
		}
		tokenID = deref(id, "")
		if duration, err = durationSeconds(tok); err != nil {
			return err
		}
	}
	c, secret, securityToken, err := a.manager.IssueTemporaryCredential(r.Context(), p, r.Header.Get("X-Auth-Token"), tokenID, duration)
	if err != nil {
		return err
	}
	writeSecret(w, http.StatusCreated, map[string]any{"credential": temporaryCredentialView{Access: c.Access,
		Secret: secret, SecurityToken: securityToken, ExpiresAt: identityTime(c.ExpiresAt)}})
	return nil
}

// durationSeconds reads token.duration_seconds: a positive integer, or a string of digits as
// Huawei's own examples send (auth.md §3.6); 0 when absent. The range is the manager's rule.
func durationSeconds(tok api.Object) (time.Duration, error) {
	var n int64
	switch v := tok.M["duration_seconds"].(type) {
	case nil:
		return 0, nil
	case json.Number:
		i, err := v.Int64()
		if err != nil {
			return 0, kps.InvalidParameter(tok.Name("duration_seconds"))
		}
		n = i
	case string:
		i, err := strconv.ParseInt(v, 10, 64)
		if err != nil || v == "" || strings.TrimLeft(v, "0123456789") != "" {
			return 0, kps.InvalidParameter(tok.Name("duration_seconds"))
		}
		n = i
	default:
		return 0, kps.InvalidParameter(tok.Name("duration_seconds"))
	}
	if n <= 0 || n > int64(time.Duration(1<<62)/time.Second) {
		return 0, kps.InvalidParameter(tok.Name("duration_seconds"))
	}
	return time.Duration(n) * time.Second, nil
}
