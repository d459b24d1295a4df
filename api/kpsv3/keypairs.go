package kpsv3

import (
	"net/http"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api"
	"github.com/openkps/kps/api/wire"
)

type pageInfo struct {
	NextMarker     *string `json:"next_marker,omitempty"`
	PreviousMarker *string `json:"previous_marker,omitempty"`
	CurrentCount   int32   `json:"current_count"`
}

func (a *API) createKeyPair(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	root, err := readObject(r)
	if err != nil {
		return err
	}
	c, err := decodeKeyPairCreate(root, false)
	if err != nil {
		return err
	}
	k, err := a.keyPairs.CreateKeyPair(r.Context(), p, c)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	api.WriteJSON(w, http.StatusOK, map[string]any{"keypair": created(k)})
	return nil
}

func created(k *kps.NewKeyPair) *wire.KeyPairCreated {
	return &wire.KeyPairCreated{Name: k.KeyPair.Name, Type: k.KeyPair.Type, PublicKey: k.KeyPair.PublicKey,
		PrivateKey: k.PrivateKey, Fingerprint: k.KeyPair.Fingerprint, UserID: k.KeyPair.UserID}
}

// decodeKeyPairCreate validates one CreateKeypairRequestBody (§2.1); batch import requires a
// public key on every item (§2.6). What the members mean together is the service's.
func decodeKeyPairCreate(root api.Object, mustImport bool) (kps.KeyPairCreate, error) {
	var c kps.KeyPairCreate
	o, _, err := root.Object("keypair", true)
	if err != nil {
		return c, err
	}
	if c.Name, _, err = o.Str("name", true); err != nil {
		return c, err
	}
	if err := kps.ValidateKeyPairName(c.Name); err != nil {
		return c, err
	}
	if c.Type, _, err = o.Str("type", false); err != nil {
		return c, err
	}
	if err := kps.ValidateKeyPairType(c.Type); err != nil {
		return c, err
	}
	if c.Scope, _, err = o.Str("scope", false); err != nil {
		return c, err
	}
	if err := kps.ValidateKeyPairScope(c.Scope); err != nil {
		return c, err
	}
	if c.PublicKey, _, err = o.Str("public_key", false); err != nil {
		return c, err
	}
	if mustImport && c.PublicKey == "" {
		return c, o.Missing("public_key")
	}
	prot, hosted, err := o.Object("key_protection", false)
	if err != nil {
		return c, err
	}
	if hosted {
		if c.Type == kps.TypeX509 {
			return c, kps.Errorf(kps.ErrEncryption, "Invalid parameter keypair.key_protection: private keys of x509 key pairs cannot be hosted.")
		}
		priv, given, err := prot.Str("private_key", false)
		if err != nil {
			return c, err
		}
		switch {
		case c.PublicKey != "" && !given:
			return c, prot.Missing("private_key")
		case c.PublicKey == "" && given && priv != "":
			return c, kps.Errorf(kps.ErrInvalid, "Invalid parameter keypair.key_protection.private_key: it must be absent when the key pair is generated.")
		}
		if err := checkEncryption(prot); err != nil {
			return c, err
		}
		c.Hosted, c.HostedPrivateKey = true, priv
	}
	c.UserID, _, err = o.Str("user_id", false)
	return c, err
}

// checkEncryption validates key_protection.encryption (§2.1): "default" uses the service's key
// ring; "kms" needs a KMS backend, and none is configured in this deployment (KPS.6017).
func checkEncryption(prot api.Object) error {
	enc, _, err := prot.Object("encryption", true, kps.ErrEncryption)
	if err != nil {
		return err
	}
	typ, _, err := enc.Str("type", true, kps.ErrEncryption)
	if err != nil {
		return err
	}
	for _, m := range []string{"kms_key_name", "kms_key_id"} {
		if _, _, err := enc.Str(m, false, kps.ErrEncryption); err != nil {
			return err
		}
	}
	switch typ {
	case "default":
		return nil
	case "kms":
		return kps.Errorf(kps.ErrEncryption, "Invalid parameter %s: no KMS is configured for this service; use 'default'.", enc.Name("type"))
	default:
		return kps.Errorf(kps.ErrEncryption, "Invalid parameter %s: 'default' or 'kms' is required.", enc.Name("type"))
	}
}

func (a *API) listKeyPairs(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	q, err := api.QueryOnce(r, "limit", "marker")
	if err != nil {
		return err
	}
	_, hasLimit := q["limit"]
	page, err := kps.ParsePage(q.Get("limit"), hasLimit, "", false, 50)
	if err != nil {
		return err
	}
	marker := q.Get("marker")
	if marker != "" && !kps.ValidKeyPairName(marker) {
		return kps.Errorf(kps.ErrMarker, "Invalid marker '%s'.", kps.Clip(marker))
	}
	res, err := a.keyPairs.ListKeyPairs(r.Context(), p, "", marker, page.Limit)
	if err != nil {
		return err
	}
	type wrapped struct {
		KeyPair wire.KeyPairItem `json:"keypair"`
	}
	items := make([]wrapped, 0, len(res.Items))
	for _, k := range res.Items {
		items = append(items, wrapped{wire.KeyPairItem{Name: k.Name, Type: k.Type, Scope: k.Scope, PublicKey: k.PublicKey,
			Fingerprint: k.Fingerprint, IsKeyProtection: k.PrivateKey != nil, FrozenState: "0"}})
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"keypairs": items,
		"page_info": pageInfo{NextMarker: res.NextMarker, PreviousMarker: res.PreviousMarker, CurrentCount: int32(len(items))}})
	return nil
}

// pathKeyPairName validates {keypair_name} (KPS.6004 in the path too, §1.6).
func pathKeyPairName(r *http.Request) (string, error) {
	name := r.PathValue("keypair_name")
	return name, kps.ValidateKeyPairName(name)
}

func (a *API) showKeyPair(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	name, err := pathKeyPairName(r)
	if err != nil {
		return err
	}
	k, err := a.keyPairs.KeyPair(r.Context(), p, name, "")
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"keypair": wire.KeyPairDetail{Name: k.Name, ID: k.ID, Type: k.Type, Scope: k.Scope,
		PublicKey: k.PublicKey, Fingerprint: k.Fingerprint, IsKeyProtection: k.PrivateKey != nil, Description: k.Description,
		UserID: k.UserID, CreateTime: k.Created.UnixMilli(), UpdateTime: k.Updated.UnixMilli(), Algorithm: k.Algorithm}})
	return nil
}

func (a *API) updateKeyPair(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	name, err := pathKeyPairName(r)
	if err != nil {
		return err
	}
	root, err := readObject(r)
	if err != nil {
		return err
	}
	o, _, err := root.Object("keypair", true)
	if err != nil {
		return err
	}
	if !o.Present("description") {
		return o.Missing("description")
	}
	desc, _, err := o.Str("description", false)
	if err != nil {
		return err
	}
	if err := a.keyPairs.UpdateKeyPairDescription(r.Context(), p, name, desc); err != nil {
		return err
	}
	api.WriteEmpty(w, http.StatusOK)
	return nil
}

func (a *API) deleteKeyPair(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	name, err := pathKeyPairName(r)
	if err != nil {
		return err
	}
	if err := a.keyPairs.DeleteKeyPair(r.Context(), p, name, ""); err != nil {
		return err
	}
	api.WriteEmpty(w, http.StatusNoContent)
	return nil
}
