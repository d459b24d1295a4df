package api

import (
	"context"
	"crypto/sha1"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"strings"

	"github.com/openkps/kps"
	"github.com/openkps/kps/sshkey"
)

// keyPairCreated is CreateKeypairResp (§2.1).
type keyPairCreated struct {
	Name        string `json:"name"`
	Type        string `json:"type"`
	PublicKey   string `json:"public_key"`
	PrivateKey  string `json:"private_key,omitempty"`
	Fingerprint string `json:"fingerprint"`
	UserID      string `json:"user_id"`
}

// keyPairItem is the Keypair of a list (§2.2); frozen_state is a string here.
type keyPairItem struct {
	Name            string `json:"name"`
	Type            string `json:"type"`
	Scope           string `json:"scope"`
	PublicKey       string `json:"public_key"`
	Fingerprint     string `json:"fingerprint"`
	IsKeyProtection bool   `json:"is_key_protection"`
	FrozenState     string `json:"frozen_state"`
}

// keyPairDetail is KeypairDetail (§2.3); frozen_state is an integer here.
type keyPairDetail struct {
	Name            string `json:"name"`
	ID              int64  `json:"id"`
	Type            string `json:"type"`
	Scope           string `json:"scope"`
	PublicKey       string `json:"public_key"`
	Fingerprint     string `json:"fingerprint"`
	IsKeyProtection bool   `json:"is_key_protection"`
	Deleted         bool   `json:"deleted"`
	Description     string `json:"description"`
	UserID          string `json:"user_id"`
	CreateTime      int64  `json:"create_time"`
	UpdateTime      int64  `json:"update_time"`
	FrozenState     int32  `json:"frozen_state"`
	Algorithm       string `json:"algorithm"`
}

type pageInfo struct {
	NextMarker     *string `json:"next_marker,omitempty"`
	PreviousMarker *string `json:"previous_marker,omitempty"`
	CurrentCount   int32   `json:"current_count"`
}

func (s *Server) createKeyPair(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	root, err := readObject(r)
	if err != nil {
		return err
	}
	resp, err := s.addKeyPair(r.Context(), p, root, false)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{"keypair": resp})
	return nil
}

// addKeyPair validates one CreateKeypairRequestBody (§2.1) and creates the key pair; batch
// import requires a public key on every item (§2.6).
func (s *Server) addKeyPair(ctx context.Context, p *kps.Principal, root object, mustImport bool) (*keyPairCreated, error) {
	o, _, err := root.object("keypair", true)
	if err != nil {
		return nil, err
	}
	name, _, err := o.str("name", true)
	if err != nil {
		return nil, err
	}
	if err := kps.ValidateKeyPairName(name); err != nil {
		return nil, err
	}
	k := &kps.KeyPair{ProjectID: p.ProjectID, Name: name, Type: kps.TypeSSH, Scope: kps.ScopeUser, UserID: p.UserID}
	if t, ok, err := o.str("type", false); err != nil {
		return nil, err
	} else if ok && t != "" {
		if t != kps.TypeSSH && t != kps.TypeX509 {
			return nil, kps.Errorf(kps.ErrInvalid, "Invalid parameter keypair.type: 'ssh' or 'x509' is required.")
		}
		k.Type = t
	}
	if sc, ok, err := o.str("scope", false); err != nil {
		return nil, err
	} else if ok && sc != "" {
		if sc != kps.ScopeUser && sc != kps.ScopeDomain {
			return nil, kps.Errorf(kps.ErrInvalid, "Invalid parameter keypair.scope: 'user' or 'domain' is required.")
		}
		k.Scope = sc
	}
	pub, _, err := o.str("public_key", false)
	if err != nil {
		return nil, err
	}
	if mustImport && pub == "" {
		return nil, o.missing("public_key")
	}
	prot, hosted, err := o.object("key_protection", false)
	if err != nil {
		return nil, err
	}
	var hostedKey string
	if hosted {
		if k.Type == kps.TypeX509 {
			return nil, kps.Errorf(kps.ErrEncryption, "Invalid parameter keypair.key_protection: private keys of x509 key pairs cannot be hosted.")
		}
		priv, given, err := prot.str("private_key", false)
		if err != nil {
			return nil, err
		}
		switch {
		case pub != "" && !given:
			return nil, prot.missing("private_key")
		case pub == "" && given && priv != "":
			return nil, kps.Errorf(kps.ErrInvalid, "Invalid parameter keypair.key_protection.private_key: it must be absent when the key pair is generated.")
		}
		if err := s.checkEncryption(prot); err != nil {
			return nil, err
		}
		hostedKey = priv
	}
	uid, _, err := o.str("user_id", false)
	if err != nil {
		return nil, err
	}

	resp := &keyPairCreated{Name: name, Type: k.Type, UserID: p.UserID}
	switch {
	case pub != "" && k.Type == kps.TypeX509:
		if err := fillCertificate(k, pub); err != nil {
			return nil, err
		}
	case pub != "":
		key, err := sshkey.ParsePublicKey(pub)
		if err != nil {
			return nil, err
		}
		k.PublicKey, k.Fingerprint, k.Algorithm = pub, key.Fingerprint, key.Algorithm
		if hosted {
			if err := matchPrivateKey(hostedKey, key); err != nil {
				return nil, err
			}
		}
	case k.Type == kps.TypeX509:
		// A self-signed client certificate; the private key is returned once, as a PKCS#12
		// archive with an empty password (nova-keypairs.md §9.2), and never hosted.
		g, err := sshkey.GenerateX509(p.UserID)
		if err != nil {
			return nil, err
		}
		k.PublicKey, k.Fingerprint, k.Algorithm = g.CertificatePEM, g.Fingerprint, "X509"
		resp.PrivateKey = g.PKCS12
	default:
		priv, line, err := sshkey.GenerateRSA(name)
		if err != nil {
			return nil, err
		}
		key, err := sshkey.ParsePublicKey(line)
		if err != nil {
			return nil, err
		}
		k.PublicKey, k.Fingerprint, k.Algorithm = line, key.Fingerprint, key.Algorithm
		resp.PrivateKey, hostedKey = priv, priv
	}
	if uid != "" && uid != p.UserID {
		return nil, kps.Errorf(kps.ErrUserMismatch, "Parameter keypair.user_id must be the caller's user ID.")
	}
	if hosted {
		if k.PrivateKey, err = s.sealer.Seal([]byte(hostedKey), kps.PrivateKeyAAD(k.ProjectID, k.Name)); err != nil {
			return nil, err
		}
	}
	if err := s.store.CreateKeyPair(ctx, k, s.cfg.KeyPairQuota); err != nil {
		return nil, err
	}
	resp.PublicKey, resp.Fingerprint = k.PublicKey, k.Fingerprint
	return resp, nil
}

// checkEncryption validates key_protection.encryption (§2.1): "default" uses the service's key
// ring; "kms" needs a KMS backend, and none is configured in this deployment (KPS.6017).
func (s *Server) checkEncryption(prot object) error {
	enc, _, err := prot.object("encryption", true, kps.ErrEncryption)
	if err != nil {
		return err
	}
	typ, _, err := enc.str("type", true, kps.ErrEncryption)
	if err != nil {
		return err
	}
	for _, m := range []string{"kms_key_name", "kms_key_id"} {
		if _, _, err := enc.str(m, false, kps.ErrEncryption); err != nil {
			return err
		}
	}
	switch typ {
	case "default":
		return nil
	case "kms":
		return kps.Errorf(kps.ErrEncryption, "Invalid parameter %s: no KMS is configured for this service; use 'default'.", enc.name("type"))
	default:
		return kps.Errorf(kps.ErrEncryption, "Invalid parameter %s: 'default' or 'kms' is required.", enc.name("type"))
	}
}

// matchPrivateKey parses a private key (KPS.6010) and checks it belongs to pub.
func matchPrivateKey(text string, pub *sshkey.PublicKey) error {
	signer, _, err := sshkey.ParsePrivateKey(text)
	if err != nil {
		return err
	}
	if !sshkey.Matches(signer, pub) {
		return kps.Errorf(kps.ErrPrivateKey, "The private key does not match the public key of the key pair.")
	}
	return nil
}

// fillCertificate accepts one PEM X.509 certificate as the public key of an x509 key pair
// (§1.6): fingerprint is the SHA-1 of its DER encoding.
func fillCertificate(k *kps.KeyPair, text string) error {
	bad := kps.Errorf(kps.ErrPublicKey, "Invalid parameter keypair.public_key: one PEM X.509 certificate is required.")
	if len(text) > 8192 {
		return bad
	}
	block, rest := pem.Decode([]byte(text))
	if block == nil || block.Type != "CERTIFICATE" || strings.TrimSpace(string(rest)) != "" {
		return bad
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		return bad
	}
	sum := sha1.Sum(block.Bytes)
	hexPairs := make([]string, len(sum))
	for i, b := range sum {
		hexPairs[i] = fmt.Sprintf("%02x", b)
	}
	k.PublicKey, k.Fingerprint, k.Algorithm = text, strings.Join(hexPairs, ":"), "X509"
	return nil
}

func (s *Server) listKeyPairs(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	q, err := queryOnce(r, "limit", "marker")
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
		return kps.Errorf(kps.ErrMarker, "Invalid marker '%s'.", clip(marker))
	}
	res, err := s.store.ListKeyPairs(r.Context(), p.ProjectID, p.UserID, marker, page.Limit)
	if err != nil {
		return err
	}
	type wrapped struct {
		KeyPair keyPairItem `json:"keypair"`
	}
	items := make([]wrapped, 0, len(res.Items))
	for _, k := range res.Items {
		items = append(items, wrapped{keyPairItem{Name: k.Name, Type: k.Type, Scope: k.Scope, PublicKey: k.PublicKey,
			Fingerprint: k.Fingerprint, IsKeyProtection: k.PrivateKey != nil, FrozenState: "0"}})
	}
	writeJSON(w, http.StatusOK, map[string]any{"keypairs": items,
		"page_info": pageInfo{NextMarker: res.NextMarker, PreviousMarker: res.PreviousMarker, CurrentCount: int32(len(items))}})
	return nil
}

// pathKeyPairName validates {keypair_name} (KPS.6004 in the path too, §1.6).
func pathKeyPairName(r *http.Request) (string, error) {
	name := r.PathValue("keypair_name")
	return name, kps.ValidateKeyPairName(name)
}

func (s *Server) showKeyPair(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	name, err := pathKeyPairName(r)
	if err != nil {
		return err
	}
	k, err := s.store.KeyPair(r.Context(), p.ProjectID, name, p.UserID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"keypair": keyPairDetail{Name: k.Name, ID: k.ID, Type: k.Type, Scope: k.Scope,
		PublicKey: k.PublicKey, Fingerprint: k.Fingerprint, IsKeyProtection: k.PrivateKey != nil, Description: k.Description,
		UserID: k.UserID, CreateTime: k.Created.UnixMilli(), UpdateTime: k.Updated.UnixMilli(), Algorithm: k.Algorithm}})
	return nil
}

func (s *Server) updateKeyPair(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	name, err := pathKeyPairName(r)
	if err != nil {
		return err
	}
	root, err := readObject(r)
	if err != nil {
		return err
	}
	o, _, err := root.object("keypair", true)
	if err != nil {
		return err
	}
	if !o.present("description") {
		return o.missing("description")
	}
	desc, _, err := o.str("description", false)
	if err != nil {
		return err
	}
	if err := kps.ValidateDescription(desc); err != nil {
		return err
	}
	if err := s.store.UpdateKeyPairDescription(r.Context(), p.ProjectID, name, p.UserID, desc); err != nil {
		return err
	}
	writeEmpty(w, http.StatusOK)
	return nil
}

func (s *Server) deleteKeyPair(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	name, err := pathKeyPairName(r)
	if err != nil {
		return err
	}
	if err := s.store.DeleteKeyPair(r.Context(), p.ProjectID, name, p.UserID); err != nil {
		return err
	}
	writeEmpty(w, http.StatusNoContent)
	return nil
}
