package api

import (
	"errors"
	"io"
	"net/http"

	"github.com/openkps/kps"
)

// maxIdentityBody is the body limit of the identity routes (auth.md §5.1).
const maxIdentityBody = 64 << 10

// issueToken is POST /v3/auth/tokens (auth.md §5.1): 201 with X-Subject-Token.
func (s *Server) issueToken(w http.ResponseWriter, r *http.Request) {
	// The query is checked first: a request refused anyway costs no password hash.
	q, err := identityQueryOnce(r, "nocatalog")
	var body []byte
	if err == nil {
		body, err = readRaw(r, maxIdentityBody)
	}
	if err == nil {
		var token string
		var resp any
		token, resp, err = s.identity.Login(r.Context(), body, r.Header.Get("X-Auth-Token"), s.clientIP(r))
		_, nocatalog := q["nocatalog"]
		if err == nil {
			if omitter, ok := resp.(interface{ OmitCatalog() }); ok && nocatalog {
				omitter.OmitCatalog()
			}
			w.Header().Set("X-Subject-Token", token)
			w.Header().Set("Cache-Control", "no-store")
			writeJSON(w, http.StatusCreated, resp)
			return
		}
		s.logRefusal(r, "login refused", err)
	}
	s.renderError(w, r, err)
}

// readRaw checks the content type and size of a body and returns its bytes.
func readRaw(r *http.Request, limit int64) ([]byte, error) {
	if err := checkJSONContentType(r); err != nil {
		return nil, err
	}
	return readLimited(r, limit)
}

// readLimited reads a request body of at most limit bytes; a larger one is 413 KPS.6020.
func readLimited(r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, limit))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, kps.Errorf(kps.ErrTooLarge, "The request body is too large.")
	case err != nil:
		return nil, kps.Errorf(kps.ErrBadJSON, "The request body could not be read.")
	}
	return b, nil
}

type versionDoc struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Updated string `json:"updated"`
	Links   []link `json:"links"`
	Media   []struct {
		Base string `json:"base"`
		Type string `json:"type"`
	} `json:"media-types"`
}

type link struct {
	Rel  string `json:"rel"`
	Href string `json:"href"`
}

func (s *Server) v3Doc() versionDoc {
	d := versionDoc{ID: "v3.14", Status: "stable", Updated: "2020-04-07T00:00:00Z",
		Links: []link{{Rel: "self", Href: s.cfg.PublicURL + "/v3/"}}}
	d.Media = append(d.Media, struct {
		Base string `json:"base"`
		Type string `json:"type"`
	}{"application/json", "application/vnd.openstack.identity-v3+json"})
	return d
}

// versions is GET / (auth.md §8.1).
func (s *Server) versions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusMultipleChoices, map[string]any{"versions": map[string]any{"values": []versionDoc{s.v3Doc()}}})
}

// version is GET /v3.
func (s *Server) version(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"version": s.v3Doc()})
}

// openAPI serves the API description of docs/openapi.json.
func (s *Server) openAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(s.cfg.OpenAPI)
}
