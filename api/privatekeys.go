package api

import (
	"archive/zip"
	"bytes"
	"net/http"

	"github.com/openkps/kps"
	"github.com/openkps/kps/sshkey"
)

// batchImportKeyPairs is BatchImportKeypair (§2.6): items succeed or fail independently.
func (s *Server) batchImportKeyPairs(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	items, err := batchBody(r)
	if err != nil {
		return err
	}
	type created struct {
		KeyPair *keyPairCreated `json:"keypair"`
	}
	type failed struct {
		Name   string `json:"keypair_name"`
		Reason string `json:"failed_reason"`
	}
	succeeded, failures := []created{}, []failed{}
	seen := map[string]bool{}
	for i, it := range items {
		name := ""
		var resp *keyPairCreated
		o, ok := it.(map[string]any)
		if !ok {
			err = kps.Errorf(kps.ErrInvalid, "Invalid item %d: an object is required.", i)
		} else {
			root := object{m: o}
			if kp, _, e := root.object("keypair", false); e == nil && kp.m != nil {
				name, _ = kp.m["name"].(string)
			}
			if seen[name] && name != "" {
				err = kps.Errorf(kps.ErrDuplicate, "Key pair name '%s' appears more than once in the batch.", clip(name))
			} else {
				seen[name] = true
				resp, err = s.addKeyPair(r.Context(), p, root, true)
			}
		}
		if err != nil {
			if kps.ErrorCode(err) == kps.ErrInternal {
				return err
			}
			failures = append(failures, failed{Name: name, Reason: kps.ErrorCode(err) + ": " + kps.ErrorMessage(err)})
			continue
		}
		succeeded = append(succeeded, created{resp})
	}
	writeJSON(w, http.StatusOK, map[string]any{"succeeded_keypairs": succeeded, "failed_keypairs": failures})
	return nil
}

// batchBody reads a JSON array of 1–10 items (§2.6, §2.9).
func batchBody(r *http.Request) ([]any, error) {
	v, err := readBody(r, maxBody)
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
func keyPairRef(root object) (object, string, error) {
	o, _, err := root.object("keypair", true)
	if err != nil {
		return object{}, "", err
	}
	name, _, err := o.str("name", true)
	if err != nil {
		return object{}, "", err
	}
	return o, name, kps.ValidateKeyPairName(name)
}

// importPrivateKey is ImportPrivateKey (§2.7): host (or replace) the private key of an
// existing key pair.
func (s *Server) importPrivateKey(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	root, err := readObject(r)
	if err != nil {
		return err
	}
	o, name, err := keyPairRef(root)
	if err != nil {
		return err
	}
	uid, _, err := o.str("user_id", false)
	if err != nil {
		return err
	}
	prot, _, err := o.object("key_protection", true)
	if err != nil {
		return err
	}
	priv, _, err := prot.str("private_key", true)
	if err != nil {
		return err
	}
	if err := s.checkEncryption(prot); err != nil {
		return err
	}
	signer, _, err := sshkey.ParsePrivateKey(priv)
	if err != nil {
		return err
	}
	k, err := s.store.KeyPair(r.Context(), p.ProjectID, name, p.UserID)
	if err != nil {
		return err
	}
	if k.Type == kps.TypeX509 {
		return kps.Errorf(kps.ErrEncryption, "Private keys of x509 key pair '%s' cannot be hosted.", name)
	}
	pub, err := sshkey.ParsePublicKey(k.PublicKey)
	if err != nil {
		return err
	}
	if !sshkey.Matches(signer, pub) {
		return kps.Errorf(kps.ErrPrivateKey, "The private key does not match the public key of key pair '%s'.", name)
	}
	if uid != "" && uid != k.UserID {
		return kps.Errorf(kps.ErrUserMismatch, "Parameter keypair.user_id must be the owner of key pair '%s'.", name)
	}
	sealed, err := s.sealer.Seal([]byte(priv), kps.PrivateKeyAAD(p.ProjectID, name))
	if err != nil {
		return err
	}
	if err := s.store.SetPrivateKey(r.Context(), p.ProjectID, name, p.UserID, sealed); err != nil {
		return err
	}
	// The key just received is never echoed (§2.7, A5).
	writeJSON(w, http.StatusOK, map[string]any{"keypair": map[string]any{"name": name, "user_id": k.UserID,
		"key_protection": map[string]any{"encryption": map[string]any{"type": "default"}}}})
	return nil
}

// hostedKey returns the plaintext hosted private key of a visible key pair, or KPS.6018.
func (s *Server) hostedKey(r *http.Request, p *kps.Principal, name string) ([]byte, error) {
	k, err := s.store.KeyPair(r.Context(), p.ProjectID, name, p.UserID)
	if err != nil {
		return nil, err
	}
	if k.PrivateKey == nil {
		return nil, kps.Errorf(kps.ErrNoPrivateKey, "Key pair '%s' has no hosted private key.", name)
	}
	return s.sealer.Open(k.PrivateKey, kps.PrivateKeyAAD(p.ProjectID, name))
}

// exportPrivateKey is ExportPrivateKey (§2.8).
func (s *Server) exportPrivateKey(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	root, err := readObject(r)
	if err != nil {
		return err
	}
	_, name, err := keyPairRef(root)
	if err != nil {
		return err
	}
	priv, err := s.hostedKey(r, p, name)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{"keypair": map[string]any{"name": name, "private_key": string(priv)}})
	return nil
}

// batchExportPrivateKeys is BatchExportPrivateKey (§2.9): all or nothing, a zip with one
// <name>.pem per key pair in request order.
func (s *Server) batchExportPrivateKeys(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
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
		_, name, err := keyPairRef(object{m: m, path: "[" + itoa(i) + "]"})
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
		priv, err := s.hostedKey(r, p, name)
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
	w.Header().Set("Content-Length", itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	w.Write(buf.Bytes())
	return nil
}

// clearPrivateKey is ClearPrivateKey (§2.10); clearing nothing is fine too.
func (s *Server) clearPrivateKey(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	name, err := pathKeyPairName(r)
	if err != nil {
		return err
	}
	if err := s.store.SetPrivateKey(r.Context(), p.ProjectID, name, p.UserID, nil); err != nil {
		return err
	}
	writeEmpty(w, http.StatusOK)
	return nil
}
