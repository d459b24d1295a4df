package console

import (
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/openkps/kps/client"
	"github.com/openkps/kps/sshkey"
)

// intParam reads a query parameter as an integer in [lo, hi]; anything else is def.
func intParam(r *http.Request, name string, def, lo, hi int) int {
	v, err := strconv.Atoi(r.URL.Query().Get(name))
	if err != nil || v < lo || v > hi {
		return def
	}
	return v
}

// pageSizes are the page sizes the lists offer.
var pageSizes = []int{25, 50, 100, 500, 1000}

type keyPairList struct {
	KeyPairs     []client.KeyPair
	Limit        int
	Sizes        []int
	First        bool
	Next         string
	HasNext      bool
	Previous     string
	HasPrevious  bool
	PreviousHref string
}

// keyPairs is the key pair list, a page at a time with the API's markers (§4.2).
func (c *Console) keyPairs(w http.ResponseWriter, r *http.Request, s *session) error {
	limit := intParam(r, "limit", 50, 1, 1000)
	marker := r.URL.Query().Get("marker")
	pg, err := s.api.ListKeyPairs(r.Context(), limit, marker)
	if err != nil {
		return err
	}
	d := keyPairList{KeyPairs: pg.KeyPairs, Limit: limit, Sizes: pageSizes, First: marker == "",
		Next: pg.NextMarker, HasNext: pg.NextMarker != "", Previous: pg.PreviousMarker, HasPrevious: pg.HasPrevious}
	c.render(w, r, s, http.StatusOK, "keypairs", &page{Title: "Key pairs", Section: "keypairs", Data: d})
	return nil
}

// newKeyPair is the create/import form and what was typed into it (never a private key).
type newKeyPair struct {
	Name, Mode, Algorithm, PublicKey, Scope, Description string
	Host                                                 bool
	Error                                                string
}

func (c *Console) newKeyPairForm(w http.ResponseWriter, r *http.Request, s *session) error {
	d := newKeyPair{Mode: "generate", Algorithm: sshkey.AlgorithmED25519, Scope: "user"}
	c.render(w, r, s, http.StatusOK, "keypair-new", &page{Title: "New key pair", Section: "keypairs", Data: d})
	return nil
}

// createdKeyPair is the page after a create: the generated private key is offered once.
type createdKeyPair struct {
	Name, Fingerprint, PublicKey, PrivateKey string
	Hosted                                   bool
	Warning                                  string
}

// createKeyPair generates a key pair here (ssh-keygen's formats, as `kps keypair create`
// does) or imports a public key, and creates it through the API. A generated private key is
// put in the answer page once, as a download the browser makes from the page itself; the
// service keeps it only when asked to host it.
func (c *Console) createKeyPair(w http.ResponseWriter, r *http.Request, s *session) error {
	f := r.PostForm
	d := newKeyPair{Name: strings.TrimSpace(f.Get("name")), Mode: f.Get("mode"), Algorithm: f.Get("algorithm"),
		PublicKey: strings.TrimSpace(f.Get("public_key")), Scope: f.Get("scope"), Description: f.Get("description"),
		Host: f.Get("host") != ""}
	again := func(status int, msg string) error {
		d.Error = msg
		c.render(w, r, s, status, "keypair-new", &page{Title: "New key pair", Section: "keypairs", Data: d})
		return nil
	}
	if d.Scope != "domain" {
		d.Scope = "user"
	}
	nk := client.NewKeyPair{Name: d.Name, Scope: d.Scope, HostPrivateKey: d.Host}
	var private string
	switch d.Mode {
	case "import":
		if d.PublicKey == "" {
			return again(http.StatusBadRequest, "Paste the public key to import.")
		}
		nk.PublicKey = d.PublicKey
		if d.Host {
			nk.PrivateKey = strings.TrimSpace(f.Get("private_key")) + "\n"
			if strings.TrimSpace(f.Get("private_key")) == "" {
				return again(http.StatusBadRequest, "To host the private key of an imported key pair, paste the private key too.")
			}
		}
	default:
		d.Mode = "generate"
		alg := d.Algorithm
		switch alg {
		case sshkey.AlgorithmED25519, sshkey.AlgorithmECDSA, sshkey.AlgorithmRSA:
		default:
			alg = sshkey.AlgorithmED25519
		}
		priv, pub, err := sshkey.Generate(alg, 0, d.Name)
		if err != nil {
			return again(http.StatusBadRequest, err.Error())
		}
		private, nk.PublicKey = priv, pub
		if d.Host {
			nk.PrivateKey = priv
		}
	}
	created, err := s.api.CreateKeyPair(r.Context(), nk)
	if err != nil {
		if code := client.Code(err); code != "" {
			return again(statusOf(code), code+": "+errorText(err))
		}
		return err
	}
	out := createdKeyPair{Name: created.Name, Fingerprint: created.Fingerprint, PublicKey: created.PublicKey,
		PrivateKey: private, Hosted: d.Host}
	if d.Description != "" {
		if err := s.api.UpdateKeyPairDescription(r.Context(), created.Name, d.Description); err != nil {
			out.Warning = "The key pair was created, but its description was not set: " + errorText(err)
		}
	}
	c.render(w, r, s, http.StatusOK, "keypair-created", &page{Title: "Key pair " + created.Name + " created", Section: "keypairs", Data: out})
	return nil
}

type keyPairView struct {
	K       *client.KeyPairDetail
	Servers []client.Server
	More    bool // more servers are bound than the page lists
}

// maxBoundShown bounds the servers a key pair's page lists as bound to it.
const maxBoundShown = 200

// keyPair shows one key pair and the servers bound to it.
func (c *Console) keyPair(w http.ResponseWriter, r *http.Request, s *session) error {
	k, err := s.api.KeyPair(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	d := keyPairView{K: k}
	for srv, err := range s.api.Servers(r.Context(), 1000) {
		if err != nil {
			return err
		}
		if srv.KeyPairName == k.Name {
			if len(d.Servers) == maxBoundShown {
				d.More = true
				break
			}
			d.Servers = append(d.Servers, srv)
		}
	}
	c.render(w, r, s, http.StatusOK, "keypair", &page{Title: "Key pair " + k.Name, Section: "keypairs", Data: d})
	return nil
}

func (c *Console) describeKeyPair(w http.ResponseWriter, r *http.Request, s *session) error {
	name := r.PathValue("name")
	if err := s.api.UpdateKeyPairDescription(r.Context(), name, r.PostForm.Get("description")); err != nil {
		return err
	}
	c.flash(w, r, "ok", "Description saved.")
	http.Redirect(w, r, Prefix+"keypairs/"+name, http.StatusSeeOther)
	return nil
}

// exportKeyPair answers with the hosted private key as a file to save.
func (c *Console) exportKeyPair(w http.ResponseWriter, r *http.Request, s *session) error {
	name := r.PathValue("name")
	pem, err := s.api.ExportPrivateKey(r.Context(), name)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "application/x-pem-file")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name + ".pem"}))
	h.Set("Cache-Control", "no-store")
	w.Write([]byte(pem))
	return nil
}

func (c *Console) deleteKeyPair(w http.ResponseWriter, r *http.Request, s *session) error {
	name := r.PathValue("name")
	if err := s.api.DeleteKeyPair(r.Context(), name); err != nil {
		return err
	}
	c.flash(w, r, "ok", "Key pair "+name+" deleted.")
	http.Redirect(w, r, Prefix+"keypairs", http.StatusSeeOther)
	return nil
}
