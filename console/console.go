// Package console is the web console of OpenKPS, served under /console/ by `kps serve`:
// server-rendered pages (html/template, embedded with their assets) that read and act on the
// service through its public HTTP API, with htmx for live updates where JavaScript runs.
//
// The console holds no state and no privilege of its own. Every page calls the API through
// the typed client (package client) with the signed-in user's token, in process (apiTransport),
// so every project and role check is the API's: a page hides what the user's roles cannot do,
// and the API refuses it anyway when a request is forged. The token lives in an HttpOnly,
// SameSite=Strict cookie (Secure under TLS); every form carries a CSRF token derived from it,
// and cross-origin writes are refused before any of that (docs/SECURITY.md §7).
package console

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/openkps/kps/client"
)

// Prefix is where the console is served.
const Prefix = "/console/"

// Config is what the console needs from `kps serve`.
type Config struct {
	// API is the service's HTTP handler, all of it: the console calls it in process.
	API http.Handler
	// Region names each domain's default project, which the sign-in form offers.
	Region string
	// PublicURL is the service's public base URL; an https:// one makes the cookies Secure
	// also when TLS ends at a proxy in front of the service.
	PublicURL string
	Log       *slog.Logger
	// Timeout bounds one API call; 0 is client.DefaultTimeout.
	Timeout time.Duration
	// Pages, when set, wraps the console's own pages (not the API beside them) in Mount: kps
	// serve gives them the request ID, metrics and access line of its API requests (api.Edge).
	Pages func(http.Handler) http.Handler
}

// Console serves the console's pages. Build it with New.
type Console struct {
	cfg    Config
	mux    *http.ServeMux
	origin *http.CrossOriginProtection
}

// New returns the console of cfg.API.
func New(cfg Config) *Console {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = client.DefaultTimeout
	}
	c := &Console{cfg: cfg, mux: http.NewServeMux(), origin: http.NewCrossOriginProtection()}
	c.routes()
	return c
}

// Mount returns a handler that serves the console under /console/ and everything else with
// api, which stays as it was: the console costs API requests one prefix comparison.
func Mount(api http.Handler, cfg Config) http.Handler {
	cfg.API = api
	var pages http.Handler = New(cfg)
	if cfg.Pages != nil {
		pages = cfg.Pages(pages)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; strings.HasPrefix(p, "/console") && (len(p) == len("/console") || p[len("/console")] == '/') {
			pages.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}

func (c *Console) routes() {
	m := c.mux
	m.HandleFunc("GET /console", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
	})
	m.HandleFunc("GET /console/assets/{file}", serveAsset)
	m.HandleFunc("GET /console/login", c.loginForm)
	m.HandleFunc("POST /console/login", c.login)
	m.Handle("POST /console/logout", c.signedIn(c.logout))
	m.Handle("POST /console/project", c.signedIn(c.switchProject))

	m.Handle("GET /console/{$}", c.signedIn(c.overview))
	m.Handle("GET /console/keypairs", c.signedIn(c.keyPairs))
	m.Handle("GET /console/keypairs/new", c.signedIn(c.newKeyPairForm))
	m.Handle("POST /console/keypairs", c.signedIn(c.createKeyPair))
	m.Handle("GET /console/keypairs/{name}", c.signedIn(c.keyPair))
	m.Handle("POST /console/keypairs/{name}/description", c.signedIn(c.describeKeyPair))
	m.Handle("POST /console/keypairs/{name}/export", c.signedIn(c.exportKeyPair))
	m.Handle("POST /console/keypairs/{name}/delete", c.signedIn(c.deleteKeyPair))

	m.Handle("GET /console/servers", c.signedIn(c.servers))
	m.Handle("GET /console/servers/new", c.signedIn(c.newServerForm))
	m.Handle("POST /console/servers", c.signedIn(c.createServer))
	m.Handle("GET /console/servers/{id}", c.signedIn(c.server))
	m.Handle("POST /console/servers/{id}", c.signedIn(c.updateServer))
	m.Handle("POST /console/servers/{id}/delete", c.signedIn(c.deleteServer))
	m.Handle("POST /console/servers/{id}/unbind", c.signedIn(c.unbindServer))

	m.Handle("GET /console/bind", c.signedIn(c.bindForm))
	m.Handle("POST /console/bind", c.signedIn(c.bind))
	m.Handle("GET /console/progress", c.signedIn(c.progress))

	m.Handle("GET /console/tasks/running", c.signedIn(c.runningTasks))
	m.Handle("GET /console/tasks/failed", c.signedIn(c.failedTasks))
	m.Handle("GET /console/tasks/failed/{id}/retry", c.signedIn(c.retryForm))
	m.Handle("POST /console/tasks/failed/{id}/retry", c.signedIn(c.retry))
	m.Handle("POST /console/tasks/failed/{id}/delete", c.signedIn(c.deleteFailedTask))
	m.Handle("POST /console/tasks/failed/delete-all", c.signedIn(c.deleteFailedTasks))
	m.Handle("GET /console/audit", c.signedIn(c.auditTrail))

	m.Handle("GET /console/rotations", c.signedIn(c.rotations))
	m.Handle("GET /console/rotations/new", c.signedIn(c.newRotationForm))
	m.Handle("POST /console/rotations", c.signedIn(c.createRotation))
	m.Handle("GET /console/rotations/{id}", c.signedIn(c.rotation))
	m.Handle("POST /console/rotations/{id}/action", c.signedIn(c.rotationAction))

	m.Handle("GET /console/drift", c.signedIn(c.driftChecks))
	m.Handle("POST /console/drift", c.signedIn(c.startDriftCheck))
	m.Handle("GET /console/drift/{id}", c.signedIn(c.driftCheck))
}

// contentSecurityPolicy allows the console's own scripts, styles and requests and nothing
// else: no inline script or style (htmx is configured not to add any), no frames, no form
// posted elsewhere.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// ServeHTTP answers one console request.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
	// A write from another origin is refused before the session or the form is looked at:
	// the browser says where the request comes from (Sec-Fetch-Site, else Origin), and a page
	// of another origin, even one on the same host, is not the console.
	if err := c.origin.Check(r); err != nil {
		c.refuse(w, r, http.StatusForbidden, "Cross-origin request refused",
			"This form was not sent from a page of the console, so nothing was done.")
		return
	}
	if _, pattern := c.mux.Handler(r); pattern == "" {
		c.refuse(w, r, http.StatusNotFound, "Page not found", "There is no console page at "+r.URL.Path+".")
		return
	}
	c.mux.ServeHTTP(w, r)
}

//go:embed assets/htmx.min.js assets/htmx.LICENSE assets/console.css assets/console.js assets/icon.svg
var assetFS embed.FS

// assetVersions are the first hex digits of each asset's SHA-256, put in its URL so that a
// browser may keep it for a year and still fetch a new version as soon as there is one.
var assetVersions = func() map[string]string {
	out := map[string]string{}
	entries, _ := assetFS.ReadDir("assets")
	for _, e := range entries {
		b, _ := assetFS.ReadFile("assets/" + e.Name())
		sum := sha256.Sum256(b)
		out[e.Name()] = hex.EncodeToString(sum[:6])
	}
	return out
}()

// assetURL is the URL of an embedded asset, with its version.
func assetURL(name string) string { return Prefix + "assets/" + name + "?v=" + assetVersions[name] }

func serveAsset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	b, err := assetFS.ReadFile("assets/" + name)
	if err != nil || strings.Contains(name, "/") {
		http.NotFound(w, r)
		return
	}
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = "text/plain; charset=utf-8"
	}
	w.Header().Set("Content-Type", ctype)
	if r.URL.Query().Get("v") == assetVersions[name] {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	w.Write(b)
}

// apiClient is a client of the API for the request r, with token and project.
func (c *Console) apiClient(r *http.Request, token, project string) (*client.Client, *apiTransport) {
	t := &apiTransport{api: c.cfg.API, from: r, started: time.Now()}
	return &client.Client{Endpoint: "http://in-process", ProjectID: project, Token: token,
		HTTP: &http.Client{Transport: t, Timeout: c.cfg.Timeout}}, t
}

// secure reports whether cookies must be Secure: the request came over TLS, or the service is
// published under https:// (TLS ends at a proxy).
func (c *Console) secure(r *http.Request) bool {
	return r.TLS != nil || strings.HasPrefix(c.cfg.PublicURL, "https://")
}

// unavailable reports whether err means the API could not answer in time.
func unavailable(err error) bool {
	var ue *client.UnreachableError
	return errors.As(err, &ue) || errors.Is(err, context.DeadlineExceeded)
}
