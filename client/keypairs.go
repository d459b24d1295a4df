package client

import (
	"context"
	"iter"
	"net/http"
	"net/url"
	"strconv"

	"github.com/openkps/kps/api/wire"
)

// NewKeyPair is CreateKeypair's keypair member (§2.1): without PublicKey the service generates
// the key pair; HostPrivateKey asks the service to keep the private key (encrypted), which
// must then be given in PrivateKey when PublicKey is.
type NewKeyPair struct {
	Name           string
	Type           string // "ssh" (default) or "x509"
	PublicKey      string
	HostPrivateKey bool
	PrivateKey     string
	Scope          string // "user" (the service's default) or "domain"
}

type keyProtection struct {
	PrivateKey string `json:"private_key,omitempty"`
	Encryption struct {
		Type string `json:"type"`
	} `json:"encryption"`
}

func newKeyProtection(privateKey string) *keyProtection {
	p := &keyProtection{PrivateKey: privateKey}
	p.Encryption.Type = "default"
	return p
}

type keyPairMember struct {
	Name          string         `json:"name"`
	Type          string         `json:"type,omitempty"`
	PublicKey     string         `json:"public_key,omitempty"`
	Scope         string         `json:"scope,omitempty"`
	KeyProtection *keyProtection `json:"key_protection,omitempty"`
}

func (k NewKeyPair) member() keyPairMember {
	m := keyPairMember{Name: k.Name, Type: k.Type, PublicKey: k.PublicKey, Scope: k.Scope}
	if k.HostPrivateKey || k.PrivateKey != "" {
		m.KeyProtection = newKeyProtection(k.PrivateKey)
	}
	return m
}

type keyPairBody struct {
	KeyPair keyPairMember `json:"keypair"`
}

// CreatedKeyPair is CreateKeypair's answer; PrivateKey is set only when the service generated
// the key pair, and only in this answer.
type CreatedKeyPair = wire.KeyPairCreated

// KeyPair is an item of the key pair list (§2.2).
type KeyPair = wire.KeyPairItem

// KeyPairDetail is one key pair in full (§2.3).
type KeyPairDetail = wire.KeyPairDetail

// KeyPairPage is one page of the key pair list; NextMarker is "" on the last page.
// PreviousMarker is the marker of the page before (§4.2; "" is the first page) when
// HasPrevious.
type KeyPairPage struct {
	KeyPairs       []KeyPair
	NextMarker     string
	PreviousMarker string
	HasPrevious    bool
}

// CreateKeyPair creates (generates or imports) a key pair.
func (c *Client) CreateKeyPair(ctx context.Context, k NewKeyPair) (*CreatedKeyPair, error) {
	var out struct {
		KeyPair CreatedKeyPair `json:"keypair"`
	}
	if err := c.call(ctx, http.MethodPost, c.projectPath("/keypairs"), keyPairBody{k.member()}, &out); err != nil {
		return nil, err
	}
	return &out.KeyPair, nil
}

// ListKeyPairs reads one page of at most limit key pairs after marker ("" is the first page).
func (c *Client) ListKeyPairs(ctx context.Context, limit int, marker string) (KeyPairPage, error) {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if marker != "" {
		q.Set("marker", marker)
	}
	var out struct {
		KeyPairs []struct {
			KeyPair KeyPair `json:"keypair"`
		} `json:"keypairs"`
		PageInfo struct {
			NextMarker     string  `json:"next_marker"`
			PreviousMarker *string `json:"previous_marker"`
		} `json:"page_info"`
	}
	if err := c.call(ctx, http.MethodGet, c.projectPath("/keypairs?")+q.Encode(), nil, &out); err != nil {
		return KeyPairPage{}, err
	}
	page := KeyPairPage{KeyPairs: make([]KeyPair, len(out.KeyPairs)), NextMarker: out.PageInfo.NextMarker}
	if p := out.PageInfo.PreviousMarker; p != nil {
		page.PreviousMarker, page.HasPrevious = *p, true
	}
	for i, k := range out.KeyPairs {
		page.KeyPairs[i] = k.KeyPair
	}
	return page, nil
}

// KeyPairs yields every visible key pair in name order, reading pages of pageSize as the
// caller goes on; it stops at the first error, which it yields.
func (c *Client) KeyPairs(ctx context.Context, pageSize int) iter.Seq2[KeyPair, error] {
	return func(yield func(KeyPair, error) bool) {
		marker := ""
		for {
			page, err := c.ListKeyPairs(ctx, pageSize, marker)
			if err != nil {
				yield(KeyPair{}, err)
				return
			}
			for _, k := range page.KeyPairs {
				if !yield(k, nil) {
					return
				}
			}
			if page.NextMarker == "" || len(page.KeyPairs) == 0 {
				return
			}
			marker = page.NextMarker
		}
	}
}

// KeyPair shows one key pair.
func (c *Client) KeyPair(ctx context.Context, name string) (*KeyPairDetail, error) {
	var out struct {
		KeyPair KeyPairDetail `json:"keypair"`
	}
	if err := c.call(ctx, http.MethodGet, c.projectPath("/keypairs/%s", name), nil, &out); err != nil {
		return nil, err
	}
	return &out.KeyPair, nil
}

// UpdateKeyPairDescription sets a key pair's description.
func (c *Client) UpdateKeyPairDescription(ctx context.Context, name, description string) error {
	type desc struct {
		Description string `json:"description"`
	}
	return c.call(ctx, http.MethodPut, c.projectPath("/keypairs/%s", name), struct {
		KeyPair desc `json:"keypair"`
	}{desc{description}}, nil)
}

// DeleteKeyPair deletes a key pair that no server is bound to.
func (c *Client) DeleteKeyPair(ctx context.Context, name string) error {
	return c.call(ctx, http.MethodDelete, c.projectPath("/keypairs/%s", name), nil, nil)
}

// ImportedKeyPair is one public key of a batch import.
type ImportedKeyPair struct {
	Name      string
	PublicKey string
}

// BatchImportFailure is a key pair a batch import refused, with the reason (KPS code first).
type BatchImportFailure struct {
	Name   string `json:"keypair_name"`
	Reason string `json:"failed_reason"`
}

// BatchImportResult is the answer of a batch import (§2.6).
type BatchImportResult struct {
	Succeeded []CreatedKeyPair
	Failed    []BatchImportFailure
}

// BatchImportKeyPairs imports 1 to 10 public keys.
func (c *Client) BatchImportKeyPairs(ctx context.Context, keys []ImportedKeyPair) (BatchImportResult, error) {
	body := make([]keyPairBody, len(keys))
	for i, k := range keys {
		body[i] = keyPairBody{keyPairMember{Name: k.Name, PublicKey: k.PublicKey}}
	}
	var out struct {
		Succeeded []struct {
			KeyPair CreatedKeyPair `json:"keypair"`
		} `json:"succeeded_keypairs"`
		Failed []BatchImportFailure `json:"failed_keypairs"`
	}
	if err := c.call(ctx, http.MethodPost, c.projectPath("/keypairs/batch-import"), body, &out); err != nil {
		return BatchImportResult{}, err
	}
	res := BatchImportResult{Failed: out.Failed}
	for _, s := range out.Succeeded {
		res.Succeeded = append(res.Succeeded, s.KeyPair)
	}
	return res, nil
}

// ImportPrivateKey hosts the private key of an existing key pair.
func (c *Client) ImportPrivateKey(ctx context.Context, name, privateKey string) error {
	type member struct {
		Name          string         `json:"name"`
		KeyProtection *keyProtection `json:"key_protection"`
	}
	return c.call(ctx, http.MethodPost, c.projectPath("/keypairs/private-key/import"), struct {
		KeyPair member `json:"keypair"`
	}{member{name, newKeyProtection(privateKey)}}, nil)
}

type nameOnly struct {
	KeyPair struct {
		Name string `json:"name"`
	} `json:"keypair"`
}

func named(name string) nameOnly {
	var n nameOnly
	n.KeyPair.Name = name
	return n
}

// ExportPrivateKey returns a hosted private key.
func (c *Client) ExportPrivateKey(ctx context.Context, name string) (string, error) {
	var out struct {
		KeyPair struct {
			PrivateKey string `json:"private_key"`
		} `json:"keypair"`
	}
	if err := c.call(ctx, http.MethodPost, c.projectPath("/keypairs/private-key/export"), named(name), &out); err != nil {
		return "", err
	}
	return out.KeyPair.PrivateKey, nil
}

// BatchExportPrivateKeys returns 1 to 10 hosted private keys as a zip file (one NAME.pem each).
func (c *Client) BatchExportPrivateKeys(ctx context.Context, names []string) ([]byte, error) {
	body := make([]nameOnly, len(names))
	for i, n := range names {
		body[i] = named(n)
	}
	_, raw, err := c.send(ctx, http.MethodPost, c.projectPath("/keypairs/private-key/batch-export"), body)
	return raw, err
}

// ClearPrivateKey deletes a hosted private key.
func (c *Client) ClearPrivateKey(ctx context.Context, name string) error {
	return c.call(ctx, http.MethodDelete, c.projectPath("/keypairs/%s/private-key", name), nil, nil)
}
