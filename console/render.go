package console

import (
	"bytes"
	"embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/openkps/kps"
	"github.com/openkps/kps/client"
)

//go:embed templates
var templateFS embed.FS

// page is what every template receives.
type page struct {
	Title   string
	Section string // the navigation entry this page belongs to
	// Refresh, when positive, reloads the page every so many seconds where JavaScript does not
	// run (a <noscript> refresh); with JavaScript, htmx updates the live region instead.
	Refresh int
	Flash   *flash
	User    *userView // nil on the sign-in page
	Data    any
}

// userView is the signed-in user as the layout shows them.
type userView struct {
	Name, Domain, Project, ProjectID, Role string
	Projects                               []client.Project
	CSRF                                   string
	Can                                    can
	Next                                   string // this page, for the project switcher
}

// section is an entry of the navigation; each has its pages under /console/<path>
// (docs/console/README.md).
type section struct {
	Key, Title, Path string
	Write            bool // only for users who may write (member)
	Admin            bool // only for the project's admins
}

var sections = []section{
	{"overview", "Overview", Prefix, false, false},
	{"keypairs", "Key pairs", Prefix + "keypairs", false, false},
	{"servers", "Servers", Prefix + "servers", false, false},
	{"bind", "Bind / rotate", Prefix + "bind", true, false},
	{"running", "Running tasks", Prefix + "tasks/running", false, false},
	{"failed", "Failed tasks", Prefix + "tasks/failed", false, false},
	{"rotations", "Rotations", Prefix + "rotations", false, false},
	{"drift", "Drift checks", Prefix + "drift", false, false},
	{"audit", "Audit trail", Prefix + "audit", false, true},
}

var funcs = template.FuncMap{
	"asset":    assetURL,
	"sections": func() []section { return sections },
	"time":     formatTime,
	"millis":   func(ms int64) string { return formatTime(time.UnixMilli(ms)) },
	"ago":      ago,
	"agoMs":    func(ms int64) string { return ago(time.UnixMilli(ms)) },
	"phase":    func(status string) string { return strings.ToLower(string(client.StatusPhase(status))) },
	"op":       func(status string) string { return string(client.StatusOperation(status)) },
	"short":    func(id string) string { return id[:min(len(id), 8)] },
	"add":      func(a, b int) int { return a + b },
	"thousands": func(n int) string {
		s := strconv.Itoa(n)
		for i := len(s) - 3; i > 0; i -= 3 {
			s = s[:i] + "," + s[i:]
		}
		return s
	},
	"hostKeyFingerprint": hostKeyFingerprint,
	"dict": func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	},
	"join":  strings.Join,
	"state": stateClass,
	"expiry": func(rfc3339 string) string {
		t, err := time.Parse(time.RFC3339, rfc3339)
		if err != nil {
			return rfc3339
		}
		left := time.Until(t)
		switch {
		case left <= 0:
			return formatTime(t) + " (due now)"
		case left < time.Minute:
			return fmt.Sprintf("%s (in %ds)", formatTime(t), int(left.Seconds()))
		case left < time.Hour:
			return fmt.Sprintf("%s (in %dm)", formatTime(t), int(left.Minutes()))
		case left < 48*time.Hour:
			return fmt.Sprintf("%s (in %dh%02dm)", formatTime(t), int(left.Hours()), int(left.Minutes())%60)
		}
		return fmt.Sprintf("%s (in %dd)", formatTime(t), int(left.Hours()/24))
	},
	"pemData": func(name, pem string) template.URL {
		// A data: URL the browser downloads as name.pem; it never goes back to the server.
		return template.URL("data:application/x-pem-file;base64," + base64.StdEncoding.EncodeToString([]byte(pem)))
	},
}

// templates holds one template set per page: the layout, the shared partials and the page.
var templates = func() map[string]*template.Template {
	base := template.Must(template.New("").Funcs(funcs).ParseFS(templateFS, "templates/layout.html"))
	pages, err := fs.Glob(templateFS, "templates/pages/*.html")
	if err != nil {
		panic(err)
	}
	out := map[string]*template.Template{}
	for _, p := range pages {
		name := strings.TrimSuffix(path.Base(p), ".html")
		out[name] = template.Must(template.Must(base.Clone()).ParseFS(templateFS, p))
	}
	return out
}()

// formatTime is a time as the pages show it: UTC, to the second.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// ago is how long ago t was, roughly.
func ago(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := time.Since(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

// hostKey is a pinned host key as the pages show it: its SHA256 fingerprint, as ssh-keygen -l
// shows it, and its type.
type hostKey struct{ Fingerprint, Type string }

func hostKeyFingerprint(line string) hostKey {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return hostKey{Fingerprint: line}
	}
	return hostKey{Fingerprint: ssh.FingerprintSHA256(k), Type: strings.ToUpper(strings.TrimPrefix(k.Type(), "ssh-"))}
}

// render writes the page: the whole document, or, for an htmx request of a live region, only
// the template "live" of the page. The page is rendered into memory first, so that a failure
// never sends half a page, and it is never cached: it shows a project's data.
func (c *Console) render(w http.ResponseWriter, r *http.Request, s *session, status int, name string, p *page) {
	start := time.Now()
	t := templates[name]
	if s != nil {
		p.User = &userView{Name: s.token.UserName, Domain: s.token.DomainName, Project: s.token.ProjectName,
			ProjectID: s.token.ProjectID, Role: roleName(s.token), CSRF: s.csrf, Can: s.can(), Next: r.URL.RequestURI()}
		if r.Header.Get("HX-Request") != "true" {
			// The switcher lists the user's projects; without it the page still works.
			if projects, err := s.api.AuthProjects(r.Context()); err == nil {
				p.User.Projects = projects
			}
		}
	}
	if p.Flash == nil {
		p.Flash = c.takeFlash(w, r)
	}
	var buf bytes.Buffer
	tmpl := "layout"
	if r.Header.Get("HX-Request") == "true" && t.Lookup("live") != nil {
		tmpl = "live"
	}
	if err := t.ExecuteTemplate(&buf, tmpl, p); err != nil {
		c.cfg.Log.Error("console: rendering a page failed", "page", name, "err", err)
		http.Error(w, "The page could not be rendered.", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Vary", "HX-Request")
	if s != nil {
		// What the page cost on the server: the API's share and the console's own.
		api := time.Duration(s.calls.spent.Load())
		total := time.Since(s.calls.started)
		h.Set("Server-Timing", fmt.Sprintf("api;dur=%.1f, render;dur=%.1f, total;dur=%.1f",
			ms(api), ms(time.Since(start)), ms(total)))
	}
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// roleName is the highest role of the token.
func roleName(t *client.Token) string {
	for _, r := range []kps.Role{kps.RoleAdmin, kps.RoleMember, kps.RoleReader} {
		if t.Has(r) {
			return string(r)
		}
	}
	return "none"
}

// flash is a message for the next page, carried by a short-lived cookie across a redirect.
type flash struct {
	Kind string // ok, info, error
	Text string
}

func (c *Console) flash(w http.ResponseWriter, r *http.Request, kind, text string) {
	b, _ := json.Marshal(flash{kind, text})
	c.setCookie(w, r, flashCookie, base64.RawURLEncoding.EncodeToString(b), time.Time{}, 60)
}

// takeFlash reads and clears the flash cookie; an htmx request leaves it for the page.
func (c *Console) takeFlash(w http.ResponseWriter, r *http.Request) *flash {
	if r.Header.Get("HX-Request") == "true" {
		return nil
	}
	cookie, err := r.Cookie(flashCookie)
	if err != nil {
		return nil
	}
	c.clearCookie(w, r, flashCookie)
	b, err := base64.RawURLEncoding.DecodeString(cookie.Value)
	var f flash
	if err != nil || json.Unmarshal(b, &f) != nil || f.Text == "" {
		return nil
	}
	if f.Kind != "ok" && f.Kind != "error" {
		f.Kind = "info"
	}
	return &f
}

// problem is what the error page shows.
type problem struct {
	Status    int
	Heading   string
	Message   string
	Code      string
	Back      string
	RequestID string
}

// fail shows what went wrong with a request the API refused or could not answer: the API's
// code and message under the HTTP status the API gave it.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	code := client.Code(err)
	p := problem{Heading: "The service refused this", Message: errorText(err), Code: code, Back: sectionRoot(r.URL.Path)}
	switch {
	case code != "":
		p.Status = statusOf(code)
		if p.Status == http.StatusForbidden {
			p.Heading = "Not allowed"
		}
	case unavailable(err):
		p.Status, p.Heading, p.Message = http.StatusGatewayTimeout, "The service did not answer in time", "Try again in a moment."
	case r.Context().Err() != nil:
		return // the browser went away
	default:
		c.cfg.Log.Error("console: a request failed", "path", r.URL.Path, "err", err)
		p.Status, p.Heading, p.Message = http.StatusBadGateway, "Something went wrong", "The console could not complete this request."
	}
	c.render(w, r, s, p.Status, "error", &page{Title: p.Heading, Data: p})
}

// refuse shows an error page the console decided on itself.
func (c *Console) refuse(w http.ResponseWriter, r *http.Request, status int, heading, msg string) {
	p := problem{Status: status, Heading: heading, Message: msg, Back: Prefix}
	c.render(w, r, nil, status, "error", &page{Title: heading, Data: p})
}

// statusOf is the HTTP status the API answers a KPS code with (kps-v3-api.md §1.5, §5;
// auth.md §11.3): the console answers a refusal the API made with the same status. The API's
// table (api.HTTPStatus) is the authority; a code missing here is shown as 400.
func statusOf(code string) int {
	switch code {
	case kps.ErrUnauthenticated, kps.ErrBadCredentials, kps.ErrLoginFailed, kps.ErrScope:
		return http.StatusUnauthorized
	case kps.ErrProjectMismatch, kps.ErrUserMismatch, kps.ErrHostedKeyForbidden, kps.ErrQuota, kps.ErrServerQuota,
		kps.ErrForbidden, "KPS.9004", "KPS.9005":
		return http.StatusForbidden
	case kps.ErrTokenNotFound, kps.ErrIdentityNotFound, kps.ErrKeyPairNotFound, kps.ErrTaskNotFound,
		kps.ErrFailedNotFound, kps.ErrServerNotFound, kps.ErrNoRoute, kps.ErrRotationNotFound, kps.ErrDriftCheckNotFound:
		return http.StatusNotFound
	case kps.ErrMethod:
		return http.StatusMethodNotAllowed
	case kps.ErrIdentityConflict, kps.ErrKeyPairExists, kps.ErrServerBusy, kps.ErrServerBound, kps.ErrServerNotBound,
		kps.ErrKeyPairInUse, kps.ErrServerExists, kps.ErrUnconfirmedReach, kps.ErrRotationState, kps.ErrUndoableExpiry:
		return http.StatusConflict
	case kps.ErrTooLarge:
		return http.StatusRequestEntityTooLarge
	case kps.ErrContentType:
		return http.StatusUnsupportedMediaType
	case kps.ErrLockedOut, kps.ErrProjectTasks:
		return http.StatusTooManyRequests
	case kps.ErrInternal:
		return http.StatusInternalServerError
	case kps.ErrUnavailable, kps.ErrIdentityDown:
		return http.StatusServiceUnavailable
	}
	return http.StatusBadRequest
}
