package console

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/client"
)

// formError is a sentence shown beside the form that caused it, telling the user what to
// fill in.
type formError string

func (e formError) Error() string { return string(e) }

// loginCredential reads how a task logs in to its hosts from a form: "service" (nil: the
// server's stored credential, else the hosted key of its bound key pair — a RESET), a password
// or a private key (a REPLACE), and whether a private key used to log in stays in
// authorized_keys.
func loginCredential(f url.Values) (cred *kps.Credential, keep bool, err error) {
	switch f.Get("login") {
	case "password":
		if f.Get("password") == "" {
			return nil, false, formError("Give the password of the servers' login user, or choose another way to log in.")
		}
		return &kps.Credential{Type: kps.CredentialPassword, Key: f.Get("password")}, false, nil
	case "key":
		k := strings.TrimSpace(f.Get("private_key"))
		if k == "" {
			return nil, false, formError("Paste the private key to log in with, or choose another way to log in.")
		}
		return &kps.Credential{Type: kps.CredentialKeyPair, Key: k + "\n"}, f.Get("keep_login_key") != "", nil
	}
	return nil, false, nil
}

// bindData is the bind/rotate form.
type bindData struct {
	KeyPairs        []client.KeyPair
	KeyPair, From   string
	Servers         []client.Server
	Selected        map[string]bool
	Login           string
	Keep, Disable   bool
	TTL             string // as typed: a duration or a time (kps-v3-api.md §7.1)
	Error           string
	MoreKeyPairs    bool
	ServersListed   int
	ServersSelected int
}

// maxListed bounds the key pairs and servers the bind form lists.
const maxListed = 5000

// loadBindChoices reads the key pairs and servers the form offers.
func loadBindChoices(ctx context.Context, api *client.Client, d *bindData) error {
	for k, err := range api.KeyPairs(ctx, 1000) {
		if err != nil {
			return err
		}
		if len(d.KeyPairs) == maxListed {
			d.MoreKeyPairs = true
			break
		}
		if k.Type != "x509" { // an x509 key pair cannot be bound (§2.1)
			d.KeyPairs = append(d.KeyPairs, k)
		}
	}
	for srv, err := range api.Servers(ctx, 1000) {
		if err != nil {
			return err
		}
		if len(d.Servers) == maxListed {
			break
		}
		d.Servers = append(d.Servers, srv)
	}
	d.ServersListed = len(d.Servers)
	return nil
}

// bindForm offers a key pair and servers to bind it to; ?from=NAME selects the servers bound
// to NAME (a rotation), ?server=ID selects those servers, ?keypair=NAME the key pair.
func (c *Console) bindForm(w http.ResponseWriter, r *http.Request, s *session) error {
	q := r.URL.Query()
	d := bindData{KeyPair: q.Get("keypair"), From: q.Get("from"), Selected: map[string]bool{}, Login: "service"}
	if err := loadBindChoices(r.Context(), s.api, &d); err != nil {
		return err
	}
	for _, id := range q["server"] {
		d.Selected[id] = true
	}
	if d.From != "" {
		for _, srv := range d.Servers {
			if srv.KeyPairName == d.From {
				d.Selected[srv.ID] = true
			}
		}
	}
	d.ServersSelected = len(d.Selected)
	c.render(w, r, s, http.StatusOK, "bind", &page{Title: "Bind / rotate", Section: "bind", Data: d})
	return nil
}

// submission is one server's outcome of a bind form: a task, or the API's refusal.
type submission struct {
	Server string
	TaskID string
	Code   string
}

// bind submits the bind of one key pair to the servers of the form, as `kps keypair bind`
// does: servers without a key pair ten at a time (batch associate), bound ones — a rotation —
// one by one (only associate replaces a bound key pair). It then shows the progress page.
func (c *Console) bind(w http.ResponseWriter, r *http.Request, s *session) error {
	f := r.PostForm
	d := bindData{KeyPair: f.Get("keypair"), Selected: map[string]bool{}, Login: f.Get("login"),
		Keep: f.Get("keep_login_key") != "", Disable: f.Get("disable_password") != "", TTL: strings.TrimSpace(f.Get("ttl"))}
	ids := slices.Compact(slices.Sorted(slices.Values(f["server"])))
	for _, id := range ids {
		d.Selected[id] = true
	}
	again := func(status int, msg string) error {
		if err := loadBindChoices(r.Context(), s.api, &d); err != nil {
			return err
		}
		d.Error, d.ServersSelected = msg, len(d.Selected)
		c.render(w, r, s, status, "bind", &page{Title: "Bind / rotate", Section: "bind", Data: d})
		return nil
	}
	cred, keep, err := loginCredential(f)
	ttl, ttlErr := parseTTL(d.TTL, time.Now())
	switch {
	case err != nil:
		return again(http.StatusBadRequest, err.Error())
	case ttlErr != nil:
		return again(http.StatusBadRequest, ttlErr.Error())
	case d.KeyPair == "":
		return again(http.StatusBadRequest, "Choose the key pair to bind.")
	case len(ids) == 0:
		return again(http.StatusBadRequest, "Choose at least one server.")
	}
	bound := map[string]bool{}
	for srv, err := range s.api.Servers(r.Context(), 1000) {
		if err != nil {
			return err
		}
		if d.Selected[srv.ID] && srv.KeyPairName != "" {
			bound[srv.ID] = true
		}
	}
	mk := func(id string) client.Bind {
		return client.Bind{KeyPairName: d.KeyPair, ServerID: id, Auth: cred, KeepLoginKey: keep, DisablePassword: d.Disable, TTL: ttl}
	}
	var out []submission
	var single, batch []string
	for _, id := range ids {
		if bound[id] {
			single = append(single, id)
		} else {
			batch = append(batch, id)
		}
	}
	for start := 0; start < len(batch); start += 10 {
		items := batch[start:min(start+10, len(batch))]
		binds := make([]client.Bind, len(items))
		for i, id := range items {
			binds[i] = mk(id)
		}
		answers, err := s.api.BatchBind(r.Context(), binds)
		if err != nil {
			if refusesCaller(err) {
				return err // the user may not bind at all: the error page says so with the API's status
			}
			for _, id := range items {
				out = append(out, submission{Server: id, Code: client.Code(err)})
			}
			continue
		}
		for i, id := range items {
			switch {
			case i >= len(answers):
				out = append(out, submission{Server: id, Code: kps.ErrInternal})
			case answers[i].Accepted():
				out = append(out, submission{Server: id, TaskID: answers[i].TaskID})
			case answers[i].ErrorCode == kps.ErrServerBound:
				single = append(single, id) // bound since the form was loaded
			default:
				out = append(out, submission{Server: id, Code: answers[i].ErrorCode})
			}
		}
	}
	for _, id := range single {
		sub, err := s.api.Bind(r.Context(), mk(id))
		switch {
		case err == nil:
			out = append(out, submission{Server: id, TaskID: sub.TaskID})
		case refusesCaller(err):
			return err
		default:
			out = append(out, submission{Server: id, Code: client.Code(err)})
		}
	}
	var tasks []string
	var refused []submission
	for _, o := range out {
		if o.TaskID != "" {
			tasks = append(tasks, o.TaskID)
		} else {
			refused = append(refused, o)
		}
	}
	c.flash(w, r, "info", "Submitted "+plural(len(tasks), "task")+" to bind "+d.KeyPair+
		map[bool]string{true: "; the service refused " + plural(len(refused), "server") + ".", false: "."}[len(refused) > 0])
	u := progressURL(tasks, refused) + "&k=" + url.QueryEscape(d.KeyPair)
	http.Redirect(w, r, u, http.StatusSeeOther)
	return nil
}

// refusesCaller reports whether err refuses the request as a whole — the caller may not do
// this (401, 403 but a hosted key's KPS.6024, which is about one server's login) or the API did
// not answer — rather than one server.
func refusesCaller(err error) bool {
	code := client.Code(err)
	if code == "" {
		return true
	}
	st := statusOf(code)
	return (st == http.StatusUnauthorized || st == http.StatusForbidden) && code != kps.ErrHostedKeyForbidden
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// progressURL is the progress page of the tasks and of the servers the API refused (each
// "server~code"): the page reads the tasks' states from the API each time it is shown.
func progressURL(tasks []string, refused []submission) string {
	q := url.Values{}
	for _, t := range tasks {
		q.Add("t", t)
	}
	for _, x := range refused {
		q.Add("x", x.Server+"~"+x.Code)
	}
	return Prefix + "progress?" + q.Encode()
}

// maxFollowed bounds the tasks one progress page follows.
const maxFollowed = 1000

// progressRow is one server of the progress page.
type progressRow struct {
	ServerID, TaskID, Status, Code, Message string
}

func (p progressRow) Phase() string {
	switch {
	case p.TaskID == "":
		return "refused"
	case p.Status == "":
		return "gone"
	}
	return strings.ToLower(string(client.StatusPhase(p.Status)))
}

type progressData struct {
	Label                                    string
	Rows                                     []progressRow
	Total, Ended, Succeeded, Failed, Pending int
	Done                                     bool
	Self                                     string
}

// progress follows a set of tasks: a bar of finished/total and one row per server, read from
// the API on each request; htmx asks again every second until every task has ended.
func (c *Console) progress(w http.ResponseWriter, r *http.Request, s *session) error {
	q := r.URL.Query()
	ids := q["t"]
	if len(ids) > maxFollowed {
		ids = ids[:maxFollowed]
	}
	rows := make([]progressRow, len(ids))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	var mu sync.Mutex
	var firstErr error
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			st, err := s.api.Task(r.Context(), id)
			rows[i] = progressRow{TaskID: id, ServerID: st.ServerID, Status: st.Status}
			if err != nil && client.Code(err) != kps.ErrTaskNotFound {
				mu.Lock()
				firstErr = errors.Join(firstErr, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	// The code and message of a failure are in the failed-task list.
	need := map[string]*progressRow{}
	for i := range rows {
		if client.StatusPhase(rows[i].Status) == kps.PhaseFailed {
			need[rows[i].TaskID] = &rows[i]
		}
	}
	failures := s.api.FailedTasks(r.Context(), 1000)
	if len(need) == 0 {
		failures = func(func(client.TaskEntry, error) bool) {}
	}
	// Newest first: the tasks of this page are near the top; the search stops after ten pages.
	read := 0
	for t, err := range failures {
		if len(need) == 0 || read == 10*1000 {
			break
		}
		if err != nil {
			return err
		}
		read++
		if row := need[t.TaskID]; row != nil {
			row.Code, row.Message = t.ErrorCode, t.ErrorMsg
			delete(need, t.TaskID)
		}
	}
	d := progressData{Label: q.Get("k"), Self: r.URL.RequestURI()}
	for _, x := range q["x"] {
		i := strings.LastIndex(x, "~")
		if i < 0 {
			continue
		}
		d.Rows = append(d.Rows, progressRow{ServerID: x[:i], Code: x[i+1:], Message: refusalText(x[i+1:])})
	}
	d.Rows = append(d.Rows, rows...)
	for _, row := range d.Rows {
		switch row.Phase() {
		case "success":
			d.Succeeded++
		case "failed", "refused":
			d.Failed++
		case "ready", "running":
			d.Pending++
		}
	}
	d.Total = len(d.Rows)
	d.Ended = d.Total - d.Pending
	d.Done = d.Pending == 0
	p := &page{Title: "Progress", Section: "bind", Data: d}
	if !d.Done {
		p.Refresh = 2
	}
	c.render(w, r, s, http.StatusOK, "progress", p)
	return nil
}

// refusalText says what a code means for a bind the API refused at submission; the API's own
// message was shown when it happened.
func refusalText(code string) string {
	switch code {
	case kps.ErrServerNotFound:
		return "The server is not registered."
	case kps.ErrKeyPairNotFound:
		return "The key pair does not exist."
	case kps.ErrServerBusy:
		return "The server has a task queued or running."
	case kps.ErrServerBound:
		return "The server is bound to a key pair already."
	case kps.ErrNoCredential:
		return "No way to log in: the server has no stored credential and its key pair no hosted key."
	case kps.ErrPortOverride:
		return "The port cannot be overridden for this login."
	case kps.ErrHostedKeyForbidden:
		return "The login would use a hosted key you may not export."
	case kps.ErrUnconfirmedReach:
		return "A stored secret would go to a server whose reach no admin confirmed: pin its host keys."
	case kps.ErrProjectTasks, kps.ErrUnavailable:
		return "Too many tasks are queued; try again later."
	case kps.ErrForbidden:
		return "Your role does not allow this."
	case kps.ErrUndoableExpiry:
		return "The binding could not be undone at its expiry: the server has no stored credential and the key pair no hosted key you may use."
	}
	return "Refused by the service."
}

// ttlError is what the bind form says of an expiry it cannot read.
const ttlError = formError("Give the expiry as a duration such as 8h, 90m or 2d, or as a UTC time such as " +
	"2026-12-08T06:00:00Z or 2026-12-08 06:00, from 1 second to 10 years ahead; leave it empty for a binding that never expires.")

// parseTTL reads the bind form's expiry (kps-v3-api.md §7.1): a duration (Go's, a number of
// seconds, or whole days "2d"), or a time — RFC 3339, or "YYYY-MM-DD HH:MM" in UTC, as a
// datetime-local field sends it with a T — which becomes the time left until then, to the
// second. Empty: no expiry.
func parseTTL(text string, now time.Time) (time.Duration, error) {
	if text == "" {
		return 0, nil
	}
	var d time.Duration
	if n, err := strconv.ParseInt(text, 10, 64); err == nil {
		d = time.Duration(min(max(n, -1), 1<<32)) * time.Second
	} else if days, ok := strings.CutSuffix(text, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil {
			return 0, ttlError
		}
		d = time.Duration(min(max(n, -1), 1<<20)) * 24 * time.Hour
	} else if x, err := time.ParseDuration(text); err == nil {
		d = x
		if d%time.Second != 0 {
			return 0, formError("The expiry must be whole seconds, such as 90s or 1h30m.")
		}
	} else {
		var at time.Time
		for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02T15:04:05", "2006-01-02 15:04:05"} {
			if at, err = time.Parse(layout, text); err == nil {
				break
			}
		}
		if err != nil {
			return 0, ttlError
		}
		if !at.After(now) {
			return 0, formError("The expiry " + at.UTC().Format(time.RFC3339) + " has passed: give a time ahead, or a duration such as 8h.")
		}
		d = at.Sub(now).Round(time.Second)
	}
	if d < time.Second || d > kps.MaxBindingTTL {
		return 0, ttlError
	}
	return d, nil
}
