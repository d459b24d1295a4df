package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/client"
)

// Cookies of the console, all HttpOnly and SameSite=Strict, on the console's path only.
const (
	sessionCookie = "kps_console"       // the user's token
	loginCookie   = "kps_console_login" // the CSRF value of the sign-in form, before there is a session
	flashCookie   = "kps_console_flash" // a one-line message for the next page (after a redirect)
)

// maxForm bounds a console form: the largest legitimate one carries a private key (16 KiB)
// and host keys.
const maxForm = 256 << 10

// session is a signed-in user on one request: the API client with their token and project,
// and what the identity service says of the token now.
type session struct {
	api   *client.Client
	calls *apiTransport
	token *client.Token
	csrf  string
}

// can is what the user's roles allow, so that a page shows only the actions they may take
// (the API refuses the others anyway).
type can struct {
	Write  bool // member: create, bind, delete, register servers
	Admin  bool // admin: change how a server is reached, store credentials
	Export bool // export hosted private keys
}

func (s *session) can() can {
	return can{Write: s.token.Has(kps.RoleMember), Admin: s.token.Has(kps.RoleAdmin), Export: s.token.Has(kps.RoleMember)}
}

// handler is a console page or action for a signed-in user; an error goes to Console.fail.
type handler func(w http.ResponseWriter, r *http.Request, s *session) error

// signedIn runs h for the user whose token the session cookie holds. Without a session a
// page redirects to the sign-in form; a write (POST) must carry the session's CSRF token,
// checked before the API is called at all. The user, project and roles come from the
// identity API on every request, so a revoked token or a removed role takes effect at once.
func (c *Console) signedIn(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cookie, err := r.Cookie(sessionCookie)
		if err != nil || cookie.Value == "" {
			c.toLogin(w, r, "")
			return
		}
		tok := cookie.Value
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := r.ParseForm(); err != nil {
				c.refuse(w, r, http.StatusBadRequest, "Form refused", "The form could not be read: it is too large or malformed.")
				return
			}
			if !validCSRF(tok, r.PostForm.Get("csrf")) {
				c.refuse(w, r, http.StatusForbidden, "Form refused",
					"The form did not carry this session's CSRF token (it was not sent from this console, or the session changed since the page was loaded). Nothing was done.")
				return
			}
		}
		api, calls := c.apiClient(r, tok, "")
		details, err := api.TokenDetails(r.Context(), tok)
		if err != nil {
			if code := client.Code(err); code == kps.ErrBadCredentials || code == kps.ErrTokenNotFound || code == kps.ErrUnauthenticated {
				c.clearCookie(w, r, sessionCookie)
				c.toLogin(w, r, "Your session has ended; sign in again.")
				return
			}
			c.fail(w, r, nil, err)
			return
		}
		if details.ProjectID == "" {
			c.clearCookie(w, r, sessionCookie)
			c.toLogin(w, r, "Sign in to a project.")
			return
		}
		details.ID = tok
		api.ProjectID = details.ProjectID
		s := &session{api: api, calls: calls, token: details, csrf: csrfToken(tok)}
		if err := h(w, r, s); err != nil {
			c.fail(w, r, s, err)
		}
	})
}

// csrfToken is the CSRF token of the session whose token is tok: an HMAC under the token, so
// it needs no storage, is the same on every replica, and cannot be computed by a page that
// cannot read the HttpOnly cookie. It reveals nothing of the token.
func csrfToken(tok string) string {
	m := hmac.New(sha256.New, []byte(tok))
	m.Write([]byte("openkps console csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func validCSRF(tok, given string) bool {
	return given != "" && subtle.ConstantTimeCompare([]byte(csrfToken(tok)), []byte(given)) == 1
}

// setCookie sets a console cookie; maxAge 0 makes it last until expires (or the browser
// session when expires is zero).
func (c *Console) setCookie(w http.ResponseWriter, r *http.Request, name, value string, expires time.Time, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: Prefix, Expires: expires, MaxAge: maxAge,
		HttpOnly: true, Secure: c.secure(r), SameSite: http.SameSiteStrictMode})
}

func (c *Console) clearCookie(w http.ResponseWriter, r *http.Request, name string) {
	c.setCookie(w, r, name, "", time.Time{}, -1)
}

// toLogin sends the browser to the sign-in form, which returns to this page afterwards; an
// htmx request (a live region polling) is told to load the form as a whole page.
func (c *Console) toLogin(w http.ResponseWriter, r *http.Request, msg string) {
	if msg != "" {
		c.flash(w, r, "info", msg)
	}
	target := Prefix + "login"
	if r.Method == http.MethodGet && r.URL.Path != Prefix {
		target += "?next=" + url.QueryEscape(r.URL.RequestURI())
	}
	if r.Header.Get("HX-Request") == "true" {
		w.Header().Set("HX-Redirect", target)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// safeNext is the console page to go to after signing in: only a path of the console, so the
// form cannot be made to send the user elsewhere.
func safeNext(next string) string {
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" ||
		strings.ContainsAny(next, "\\\r\n") || strings.HasPrefix(next, "//") {
		return Prefix
	}
	clean := path.Clean(u.Path)
	if !strings.HasPrefix(clean+"/", Prefix) || strings.HasPrefix(clean, Prefix+"login") || clean != strings.TrimSuffix(u.Path, "/") && clean+"/" != u.Path {
		return Prefix
	}
	return u.RequestURI()
}

func randomValue() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// loginData is the sign-in form.
type loginData struct {
	User, Domain, Project, Next string
	CSRF                        string
	Error                       string
}

func (c *Console) loginForm(w http.ResponseWriter, r *http.Request) {
	if cookie, err := r.Cookie(sessionCookie); err == nil && cookie.Value != "" {
		// Signed in already (while the token lasts): the console's pages say if it does not.
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	d := loginData{Domain: "Default", Project: c.cfg.Region, Next: safeNext(r.URL.Query().Get("next"))}
	c.renderLogin(w, r, http.StatusOK, d)
}

// renderLogin shows the sign-in form with a fresh CSRF value, kept in a cookie until the form
// is sent (the double-submit pattern: there is no session to derive it from yet).
func (c *Console) renderLogin(w http.ResponseWriter, r *http.Request, status int, d loginData) {
	d.CSRF = randomValue()
	c.setCookie(w, r, loginCookie, d.CSRF, time.Time{}, 3600)
	c.render(w, r, nil, status, "login", &page{Title: "Sign in", Data: d})
}

// login signs in with the identity API, through apiTransport: the API counts a failure
// against the browser's address and the user, as for any client (auth.md §12.4).
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		c.refuse(w, r, http.StatusBadRequest, "Form refused", "The form could not be read.")
		return
	}
	f := r.PostForm
	d := loginData{User: strings.TrimSpace(f.Get("user")), Domain: strings.TrimSpace(f.Get("domain")),
		Project: strings.TrimSpace(f.Get("project")), Next: safeNext(f.Get("next"))}
	cookie, err := r.Cookie(loginCookie)
	if err != nil || cookie.Value == "" || subtle.ConstantTimeCompare([]byte(cookie.Value), []byte(f.Get("csrf"))) != 1 {
		d.Error = "The sign-in form had expired or was not sent from this console; sign in again."
		c.renderLogin(w, r, http.StatusForbidden, d)
		return
	}
	if d.User == "" || d.Domain == "" || d.Project == "" || f.Get("password") == "" {
		d.Error = "Give the user, the domain, the project and the password."
		c.renderLogin(w, r, http.StatusBadRequest, d)
		return
	}
	api, _ := c.apiClient(r, "", "")
	tok, err := api.IssueToken(r.Context(), client.PasswordLogin{User: d.User, Domain: d.Domain, Project: d.Project, Password: f.Get("password")})
	if err != nil {
		status, msg := http.StatusBadGateway, "The service could not sign you in: "+errorText(err)
		switch code := client.Code(err); code {
		case kps.ErrLoginFailed, kps.ErrScope, kps.ErrBadCredentials:
			status, msg = http.StatusUnauthorized, "The user, domain or password is wrong, or the user has no role in that project."
		case kps.ErrLockedOut:
			status, msg = http.StatusTooManyRequests, "Too many failed sign-ins: wait a few minutes before trying again."
		case "":
		default:
			status = statusOf(code)
		}
		d.Error = msg
		c.renderLogin(w, r, status, d)
		return
	}
	c.clearCookie(w, r, loginCookie)
	c.setCookie(w, r, sessionCookie, tok.ID, tok.ExpiresAt, 0)
	http.Redirect(w, r, d.Next, http.StatusSeeOther)
}

// logout revokes the session's token, so a copy of the cookie is worth nothing afterwards.
func (c *Console) logout(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := s.api.RevokeToken(r.Context(), s.token.ID); err != nil && client.Code(err) != kps.ErrTokenNotFound {
		return err
	}
	c.clearCookie(w, r, sessionCookie)
	c.flash(w, r, "ok", "Signed out.")
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
	return nil
}

// switchProject re-scopes the session to another of the user's projects and revokes the
// token of the project it leaves.
func (c *Console) switchProject(w http.ResponseWriter, r *http.Request, s *session) error {
	project := r.PostForm.Get("project_id")
	back := safeNext(r.PostForm.Get("next"))
	if project == "" || project == s.token.ProjectID {
		http.Redirect(w, r, back, http.StatusSeeOther)
		return nil
	}
	tok, err := s.api.RescopeToken(r.Context(), project)
	if err != nil {
		return err
	}
	if err := s.api.RevokeToken(r.Context(), s.token.ID); err != nil && client.Code(err) != kps.ErrTokenNotFound {
		c.cfg.Log.Warn("console: the token of the project left could not be revoked", "err", err)
	}
	c.setCookie(w, r, sessionCookie, tok.ID, tok.ExpiresAt, 0)
	c.flash(w, r, "ok", "Switched to project "+tok.ProjectName+".")
	// A page of one project (a key pair, a task) means nothing in another: go to its list.
	http.Redirect(w, r, sectionRoot(back), http.StatusSeeOther)
	return nil
}

// sectionRoot is the list page of the section a console path belongs to.
func sectionRoot(p string) string {
	rest := strings.TrimPrefix(strings.SplitN(p, "?", 2)[0], Prefix)
	first, second, _ := strings.Cut(rest, "/")
	switch first {
	case "keypairs", "servers":
		return Prefix + first
	case "tasks":
		if strings.HasPrefix(second, "failed") {
			return Prefix + "tasks/failed"
		}
		return Prefix + "tasks/running"
	case "bind", "progress":
		return Prefix + "bind"
	case "rotations", "drift":
		return Prefix + first
	}
	return Prefix
}

// errorText is the message of err as a person reads it.
func errorText(err error) string {
	var e *kps.Error
	if errors.As(err, &e) {
		return e.Message
	}
	return err.Error()
}
