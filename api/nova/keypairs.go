package nova

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api"
	"github.com/openkps/kps/sshkey"
)

// listEntry is a list element (§5.1.2); type only from 2.2.
type listEntry struct {
	Name        string `json:"name"`
	PublicKey   string `json:"public_key"`
	Fingerprint string `json:"fingerprint"`
	Type        string `json:"type,omitempty"`
}

// listKeyPairs is GET …/os-keypairs (§5.1).
func (a *API) listKeyPairs(w http.ResponseWriter, r *http.Request, n *request) error {
	if err := checkQuery(n, r.URL.Query(), "user_id", "limit", "marker"); err != nil {
		return err
	}
	q, err := query(r, n, true)
	if err != nil {
		return err
	}
	user, err := targetUser(n, q, "index")
	if err != nil {
		return err
	}
	ctx := r.Context()
	var items []kps.KeyPair
	paged := n.atLeast(35)
	limit := maxLimit
	if paged {
		if ls := q["limit"]; len(ls) > 0 {
			l := ls[0]
			if !digitsOnly.MatchString(l) {
				return faultf(400, "Invalid input for query parameters limit. Value: %s. '%s' does not match '^[0-9]*$'", kps.Clip(l), kps.Clip(l))
			}
			if v, err := strconv.Atoi(l); err == nil && v < maxLimit {
				limit = v
			}
		}
		marker := ""
		if ms := q["marker"]; len(ms) > 0 {
			marker = ms[0]
			if _, err := a.keyPairs.KeyPair(ctx, n.p, marker, user); err != nil {
				if kps.ErrorCode(err) == kps.ErrKeyPairNotFound {
					return faultf(400, "Marker %s could not be found.", kps.Clip(marker))
				}
				return err
			}
		}
		page, err := a.keyPairs.ListKeyPairs(ctx, n.p, user, marker, limit)
		if err != nil {
			return err
		}
		items = page.Items
	} else if items, err = a.allKeyPairs(ctx, n.p, user); err != nil {
		return err
	}
	type wrapped struct {
		KeyPair listEntry `json:"keypair"`
	}
	out := make([]wrapped, 0, len(items))
	for _, k := range items {
		e := listEntry{Name: k.Name, PublicKey: k.PublicKey, Fingerprint: k.Fingerprint}
		if n.atLeast(2) {
			e.Type = k.Type
		}
		out = append(out, wrapped{e})
	}
	body := map[string]any{"keypairs": out}
	if paged && limit > 0 && len(items) == limit {
		next := url.Values{}
		for k, v := range q {
			next[k] = v
		}
		next.Set("marker", items[len(items)-1].Name)
		// <base>/v2.1 whatever tree was asked (§5.1.4): only /v2.1 trees page.
		href := a.base + "/v2.1"
		if n.project != "" {
			href += "/" + url.PathEscape(n.project)
		}
		body["keypairs_links"] = []map[string]string{{"rel": "next", "href": href + "/os-keypairs?" + next.Encode()}}
	}
	api.WriteJSON(w, http.StatusOK, body)
	return nil
}

// allKeyPairs returns every key pair of user's view in the project, in name order.
func (a *API) allKeyPairs(ctx context.Context, p *kps.Principal, user string) ([]kps.KeyPair, error) {
	var all []kps.KeyPair
	marker := ""
	for {
		page, err := a.keyPairs.ListKeyPairs(ctx, p, user, marker, maxLimit)
		if err != nil {
			return nil, err
		}
		all = append(all, page.Items...)
		if page.NextMarker == nil {
			return all, nil
		}
		marker = *page.NextMarker
	}
}

// createBody is the validated create body (§5.2.1).
type createBody struct {
	name, publicKey, typ, userID string
	hasKey                       bool
}

// readNovaCreate reads and validates the create body (§2.2, §5.2.1, §7).
func readCreate(r *http.Request, n *request) (*createBody, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && mt != "text/plain") {
			return nil, faultf(415, "Unsupported Content-Type")
		}
	}
	raw, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBody))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, faultf(413, "Request is too large.")
	} else if err != nil {
		return nil, faultf(400, "Malformed request body")
	}
	v, err := api.ParseJSON(raw)
	if err != nil {
		return nil, faultf(400, "Malformed request body")
	}
	root, ok := v.(map[string]any)
	if !ok {
		return nil, faultf(400, "Invalid input for field/attribute body. Value: %s. It is not of type 'object'", kps.Clip(string(raw)))
	}
	kp, ok := root["keypair"].(map[string]any)
	if _, present := root["keypair"]; !present {
		return nil, faultf(400, "Invalid input for field/attribute body. 'keypair' is a required property")
	}
	if !ok {
		return nil, faultf(400, "Invalid input for field/attribute keypair. It is not of type 'object'")
	}
	if !n.legacy {
		for k := range root {
			if k != "keypair" {
				return nil, faultf(400, "Invalid input for field/attribute body. Additional properties are not allowed ('%s' was unexpected)", kps.Clip(k))
			}
		}
	}
	allowed := []string{"name", "public_key"}
	if n.atLeast(2) {
		allowed = append(allowed, "type")
	}
	if n.atLeast(10) {
		allowed = append(allowed, "user_id")
	}
	b := &createBody{typ: kps.TypeSSH}
	for k, v := range kp {
		if !slices.Contains(allowed, k) {
			if n.legacy {
				continue
			}
			return nil, faultf(400, "Invalid input for field/attribute keypair. Additional properties are not allowed ('%s' was unexpected)", kps.Clip(k))
		}
		s, isStr := v.(string)
		if !isStr {
			return nil, faultf(400, "Invalid input for field/attribute %s. Value: %v. It is not of type 'string'", k, v)
		}
		switch k {
		case "name":
			b.name = s
		case "public_key":
			b.publicKey, b.hasKey = s, true
		case "type":
			if s != kps.TypeSSH && s != kps.TypeX509 {
				return nil, faultf(400, "Invalid input for field/attribute type. Value: %s. '%s' is not one of ['ssh', 'x509']", kps.Clip(s), kps.Clip(s))
			}
			b.typ = s
		case "user_id":
			b.userID = s
		}
	}
	if _, ok := kp["name"]; !ok {
		return nil, faultf(400, "Invalid input for field/attribute keypair. 'name' is a required property")
	}
	if n.legacy {
		b.name = strings.TrimSpace(b.name)
	}
	rule := nameRule
	if n.atLeast(92) {
		rule = nameRule292
	}
	switch {
	case b.name == "" || len(b.name) > 255:
		return nil, faultf(400, "Invalid input for field/attribute name. Value: %s. It must be 1 to 255 characters long", kps.Clip(b.name))
	case !n.legacy && (!rule.MatchString(b.name) || strings.TrimSpace(b.name) != b.name):
		return nil, faultf(400, "Invalid input for field/attribute name. Value: %s. It contains characters that are not allowed or leading/trailing whitespace", kps.Clip(b.name))
	case !kps.ValidKeyPairName(b.name):
		// The store rule (§7.1, D1): the name must be addressable through the v3 API too.
		return nil, faultf(400, "Invalid input for field/attribute name. Value: %s. It must be 1 to 64 characters of letters, digits, '_' and '-'", kps.Clip(b.name))
	}
	if n.atLeast(92) && !b.hasKey {
		return nil, faultf(400, "Invalid input for field/attribute keypair. 'public_key' is a required property")
	}
	return b, nil
}

// createdKeyPair is the create response (§5.2.3).
type createdKeyPair struct {
	Name        string `json:"name"`
	Type        string `json:"type,omitempty"`
	PublicKey   string `json:"public_key"`
	Fingerprint string `json:"fingerprint"`
	UserID      string `json:"user_id"`
	PrivateKey  string `json:"private_key,omitempty"`
}

// createKeyPair is POST …/os-keypairs (§5.2), in the order of §5.2.2: the owner (another user
// needs the admin role), the per-user limit, then the key material. The key pair is made by
// the one kps.KeyPairService; the refusals are told in Nova's words.
func (a *API) createKeyPair(w http.ResponseWriter, r *http.Request, n *request) error {
	b, err := readCreate(r, n)
	if err != nil {
		return err
	}
	created, err := a.keyPairs.CreateKeyPair(r.Context(), n.p, kps.KeyPairCreate{Name: b.name, Type: b.typ,
		PublicKey: b.publicKey, Owner: b.userID, PerUserQuota: true})
	if err != nil {
		return createFault(b, err)
	}
	k := created.KeyPair
	resp := createdKeyPair{Name: k.Name, PublicKey: k.PublicKey, Fingerprint: k.Fingerprint, UserID: k.UserID, PrivateKey: created.PrivateKey}
	status := http.StatusOK
	if n.atLeast(2) {
		resp.Type, status = k.Type, http.StatusCreated
	}
	w.Header().Set("Cache-Control", "no-store")
	api.WriteJSON(w, status, map[string]any{"keypair": resp})
	return nil
}

// createFault is the Nova answer to a refused create.
func createFault(b *createBody, err error) error {
	var e *kps.Error
	if !errors.As(err, &e) {
		return err
	}
	switch {
	case e.Code == kps.ErrForbidden:
		return faultf(403, "Policy doesn't allow os_compute_api:os-keypairs:create to be performed.")
	case e.Code == kps.ErrInvalid:
		// The owner is not a user of the caller's domain: the service's own rule (§7.4).
		return &fault{status: 400, code: e.Code, msg: e.Message}
	case e.Code == kps.ErrQuota:
		return faultf(403, "Quota exceeded, too many key pairs.")
	case e.Code == kps.ErrKeyPairExists:
		return faultf(409, "Key pair '%s' already exists.", b.name)
	case e.Code == kps.ErrPublicKey && b.typ == kps.TypeX509:
		return faultf(400, "Keypair data is invalid: failed to generate X509 fingerprint. Error message: %s", e.Message)
	case errors.Is(err, sshkey.ErrCommentControl):
		// Nova would accept it; authorized_keys may not receive it (kps-v3-api.md §1.6).
		return &fault{status: 400, msg: "Keypair data is invalid: the comment holds a control character", code: kps.ErrPublicKey}
	case e.Code == kps.ErrPublicKey:
		return &fault{status: 400, msg: "Keypair data is invalid: failed to generate fingerprint", code: kps.ErrPublicKey}
	}
	return err
}

// shownKeyPair is the show response (§5.3): nine members, ten with type.
type shownKeyPair struct {
	ID          int64   `json:"id"`
	Name        string  `json:"name"`
	Type        string  `json:"type,omitempty"`
	PublicKey   string  `json:"public_key"`
	Fingerprint string  `json:"fingerprint"`
	UserID      string  `json:"user_id"`
	CreatedAt   string  `json:"created_at"`
	UpdatedAt   *string `json:"updated_at"`
	Deleted     bool    `json:"deleted"`
	DeletedAt   *string `json:"deleted_at"`
}

// keyPair looks up a key pair of the target user's view, with Nova's not-found message.
func (a *API) keyPair(ctx context.Context, n *request, user string) (*kps.KeyPair, error) {
	k, err := a.keyPairs.KeyPair(ctx, n.p, n.name, user)
	if kps.ErrorCode(err) == kps.ErrKeyPairNotFound {
		return nil, faultf(404, "Keypair %s not found for user %s", kps.Clip(n.name), user)
	}
	return k, err
}

// itemUser is the user a request on one key pair acts for: the query's user_id from 2.10
// (§10), which action needs the admin role for when it names another user.
func itemUser(r *http.Request, n *request, action string) (string, error) {
	if err := checkQuery(n, r.URL.Query(), "user_id"); err != nil {
		return "", err
	}
	q, err := query(r, n, false)
	if err != nil {
		return "", err
	}
	return targetUser(n, q, action)
}

// showKeyPair is GET …/os-keypairs/{keypair_name} (§5.3).
func (a *API) showKeyPair(w http.ResponseWriter, r *http.Request, n *request) error {
	user, err := itemUser(r, n, "show")
	if err != nil {
		return err
	}
	k, err := a.keyPair(r.Context(), n, user)
	if err != nil {
		return err
	}
	out := shownKeyPair{ID: k.ID, Name: k.Name, PublicKey: k.PublicKey, Fingerprint: k.Fingerprint, UserID: k.UserID,
		CreatedAt: k.Created.UTC().Format("2006-01-02T15:04:05.000000")}
	if n.atLeast(2) {
		out.Type = k.Type
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"keypair": out})
	return nil
}

// deleteKeyPair is DELETE …/os-keypairs/{keypair_name} (§5.4).
func (a *API) deleteKeyPair(w http.ResponseWriter, r *http.Request, n *request) error {
	user, err := itemUser(r, n, "delete")
	if err != nil {
		return err
	}
	if err := a.keyPairs.DeleteKeyPair(r.Context(), n.p, n.name, user); err != nil {
		if kps.ErrorCode(err) == kps.ErrKeyPairNotFound {
			return faultf(404, "Keypair %s not found for user %s", kps.Clip(n.name), user)
		}
		return err
	}
	if n.atLeast(2) {
		api.WriteEmpty(w, http.StatusNoContent)
	} else {
		api.WriteEmpty(w, http.StatusAccepted)
	}
	return nil
}
