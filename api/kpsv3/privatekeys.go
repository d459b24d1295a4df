package kpsv3

import (
	"archive/zip"
	"bytes"
	"net/http"
	"strconv"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api"
	"github.com/openkps/kps/api/wire"
)

// batchImportKeyPairs is BatchImportKeypair (§2.6): items succeed or fail independently.
func (a *API) batchImportKeyPairs(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	items, err := batchBody(r)
	if err != nil {
		return err
	}
	type createdItem struct {
		KeyPair *wire.KeyPairCreated `json:"keypair"`
	}
	type failed struct {
		Name   string `json:"keypair_name"`
		Reason string `json:"failed_reason"`
	}
	succeeded, failures := []createdItem{}, []failed{}
	seen := map[string]bool{}
	for i, it := range items {
		name := ""
		var k *kps.NewKeyPair
		o, ok := it.(map[string]any)
		if !ok {
			err = kps.Errorf(kps.ErrInvalid, "Invalid item %d: an object is required.", i)
		} else {
			root := api.Object{M: o}
			if kp, _, e := root.Object("keypair", false); e == nil && kp.M != nil {
				name, _ = kp.M["name"].(string)
			}
			if seen[name] && name != "" {
				err = kps.Errorf(kps.ErrDuplicate, "Key pair name '%s' appears more than once in the batch.", kps.Clip(name))
			} else {
				seen[name] = true
				var c kps.KeyPairCreate
				if c, err = decodeKeyPairCreate(root, true); err == nil {
					k, err = a.keyPairs.CreateKeyPair(r.Context(), p, c)
				}
			}
		}
		if err != nil {
			if kps.ErrorCode(err) == kps.ErrInternal {
				return err
			}
			failures = append(failures, failed{Name: name, Reason: kps.ErrorCode(err) + ": " + kps.ErrorMessage(err)})
			continue
		}
		succeeded = append(succeeded, createdItem{created(k)})
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"succeeded_keypairs": succeeded, "failed_keypairs": failures})
	return nil
}

// batchBody reads a JSON array of 1–10 items (§2.6, §2.9).
func batchBody(r *http.Request) ([]any, error) {
	v, err := api.ReadBody(r, api.MaxBody)
	if err != nil {
		return nil, err
	}
	items, ok := v.([]any)
	if !ok {
		return nil, kps.Errorf(kps.ErrBadJSON, "The request body must be a JSON array.")
	}
	if len(items) < 1 || len(items) > 10 {
		return nil, kps.Errorf(kps.ErrBatchSize, "The batch must hold 1 to 10 items, not %d.", len(items))
	}
	return items, nil
}

// keyPairRef reads {"keypair": {"name": …}} and returns the keypair object and the name.
func keyPairRef(root api.Object) (api.Object, string, error) {
	o, _, err := root.Object("keypair", true)
	if err != nil {
		return api.Object{}, "", err
	}
	name, _, err := o.Str("name", true)
	if err != nil {
		return api.Object{}, "", err
	}
	return o, name, kps.ValidateKeyPairName(name)
}

// importPrivateKey is ImportPrivateKey (§2.7): host (or replace) the private key of an
// existing key pair.
func (a *API) importPrivateKey(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	root, err := readObject(r)
	if err != nil {
		return err
	}
	o, name, err := keyPairRef(root)
	if err != nil {
		return err
	}
	uid, _, err := o.Str("user_id", false)
	if err != nil {
		return err
	}
	prot, _, err := o.Object("key_protection", true)
	if err != nil {
		return err
	}
	priv, _, err := prot.Str("private_key", true)
	if err != nil {
		return err
	}
	if err := checkEncryption(prot); err != nil {
		return err
	}
	k, err := a.keyPairs.ImportPrivateKey(r.Context(), p, name, priv, uid)
	if err != nil {
		return err
	}
	// The key just received is never echoed (§2.7, A5).
	api.WriteJSON(w, http.StatusOK, map[string]any{"keypair": map[string]any{"name": name, "user_id": k.UserID,
		"key_protection": map[string]any{"encryption": map[string]any{"type": "default"}}}})
	return nil
}

// exportPrivateKey is ExportPrivateKey (§2.8).
func (a *API) exportPrivateKey(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	root, err := readObject(r)
	if err != nil {
		return err
	}
	_, name, err := keyPairRef(root)
	if err != nil {
		return err
	}
	priv, err := a.keyPairs.ExportPrivateKey(r.Context(), p, name)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	api.WriteJSON(w, http.StatusOK, map[string]any{"keypair": map[string]any{"name": name, "private_key": string(priv)}})
	return nil
}

// batchExportPrivateKeys is BatchExportPrivateKey (§2.9): all or nothing, a zip with one
// <name>.pem per key pair in request order.
func (a *API) batchExportPrivateKeys(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	items, err := batchBody(r)
	if err != nil {
		return err
	}
	names := make([]string, len(items))
	seen := map[string]bool{}
	for i, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			return kps.Errorf(kps.ErrInvalid, "Invalid item %d: an object is required.", i)
		}
		_, name, err := keyPairRef(api.Object{M: m, Path: "[" + strconv.Itoa(i) + "]"})
		if err != nil {
			return err
		}
		if seen[name] {
			return kps.Errorf(kps.ErrDuplicate, "Key pair '%s' appears more than once in the batch.", name)
		}
		seen[name], names[i] = true, name
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, name := range names {
		priv, err := a.keyPairs.ExportPrivateKey(r.Context(), p, name)
		if err != nil {
			return err
		}
		h := &zip.FileHeader{Name: name + ".pem", Method: zip.Deflate}
		h.SetMode(0o600)
		f, err := zw.CreateHeader(h)
		if err != nil {
			return err
		}
		if _, err := f.Write(priv); err != nil {
			return err
		}
	}
	if err := zw.Close(); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", `attachment; filename="keypairs.zip"`)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	w.Write(buf.Bytes())
	return nil
}

// clearPrivateKey is ClearPrivateKey (§2.10); clearing nothing is fine too.
func (a *API) clearPrivateKey(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	name, err := pathKeyPairName(r)
	if err != nil {
		return err
	}
	if err := a.keyPairs.ClearPrivateKey(r.Context(), p, name); err != nil {
		return err
	}
	api.WriteEmpty(w, http.StatusOK)
	return nil
}
