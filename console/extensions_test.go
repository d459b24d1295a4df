package console_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/openkps/kps"
	"github.com/openkps/kps/client"
	"github.com/openkps/kps/internal/sshdtest"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// signedIn is a console session of user (created with role unless it is the admin).
func signedIn(t *testing.T, s *service, user, password string, role kps.Role) *browserless {
	t.Helper()
	if user != "admin" {
		s.addUser(t, user, password, role)
	}
	b := newBrowserless(t, s, "")
	if st := b.signIn(user, password); st != http.StatusSeeOther {
		t.Fatalf("sign-in of %s: %d", user, st)
	}
	return b
}

var actionForm = regexp.MustCompile(`<form method="post" action="/console/rotations/[^"]+/action">.*?name="action" value="(\w+)"`)

// rotationButtons are the actions the rotation page offers.
func rotationButtons(body string) []string {
	var out []string
	for _, m := range actionForm.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1])
	}
	return out
}

// TestConsoleRotationPages: the rotation pages list, show and act on a staged rotation through
// the API. The start form validates its stages, an admin sees the actions the state allows, a
// reader sees none and a reader's forged action is refused by the API (403), an action without
// the CSRF token is refused before the API is called, and cancel ends it.
func TestConsoleRotationPages(t *testing.T) {
	s := startService(t)
	ctx := context.Background()
	for _, name := range []string{"old-2025", "new-2026"} {
		if _, err := s.admin.CreateKeyPair(ctx, client.NewKeyPair{Name: name, HostPrivateKey: true}); err != nil {
			t.Fatal(err)
		}
	}
	// Three servers without a stored credential nor a key pair: each step is refused for good
	// (KPS.6021), so the first failure halts the rotation (max_failures 0).
	port, addr := closedPort(t), "127.0.0.1"
	for i := range 3 {
		if _, err := s.admin.CreateServer(ctx, client.ServerSpec{ID: fmt.Sprintf("rot-%d", i), Address: &addr, Port: &port}); err != nil {
			t.Fatal(err)
		}
	}
	admin := signedIn(t, s, "admin", adminPassword, "")
	reader := signedIn(t, s, "rhea", "reader-password-2026", kps.RoleReader)

	st, body := admin.get("/console/rotations")
	if st != http.StatusOK || !strings.Contains(body, "No rotations yet") || !strings.Contains(body, `href="/console/rotations/new"`) ||
		!strings.Contains(body, `aria-current="page">Rotations</a>`) {
		t.Fatalf("empty rotation list: %d\n%s", st, body)
	}
	token := admin.csrf("/console/rotations/new")
	form := func(extra url.Values) url.Values {
		v := url.Values{"csrf": {token}, "keypair": {"new-2026"}, "server": {"rot-0", "rot-1", "rot-2"}, "batch_size": {"1"},
			"max_failures": {"0"}, "canary": {"0"}, "login": {"service"}}
		for k, x := range extra {
			v[k] = x
		}
		return v
	}
	for _, c := range []struct {
		what string
		form url.Values
		want string
	}{
		{"a batch size of 0", form(url.Values{"batch_size": {"0"}}), "The batch size must be a whole number from 1 to 1000."},
		{"a canary count in words", form(url.Values{"canary": {"two"}}), "The canary count must be a whole number"},
		{"both a key pair's servers and ticked ones", form(url.Values{"from": {"old-2025"}}), "Rotate either every server bound to a key pair or the servers you tick"},
		{"no server", form(url.Values{"server": nil}), "Choose the key pair whose servers are rotated, or tick at least one server."},
		{"no target", form(url.Values{"keypair": {""}}), "Choose the key pair to rotate to."},
		{"a from key pair with no server", form(url.Values{"server": nil, "from": {"old-2025"}}), "KPS.6003"},
	} {
		r, body := admin.post("/console/rotations", c.form, nil)
		if r.StatusCode != http.StatusBadRequest || !strings.Contains(body, c.want) || !strings.Contains(body, `id="rotation-form"`) {
			t.Errorf("a rotation with %s: %d, want 400 with %q and the form again", c.what, r.StatusCode, c.want)
		}
	}
	if _, total, err := s.admin.Rotations(ctx, 10, 0); err != nil || total != 0 {
		t.Fatalf("refused forms started rotations: %d %v", total, err)
	}

	// Without the CSRF token nothing starts.
	noCSRF := form(nil)
	noCSRF.Del("csrf")
	if r, _ := admin.post("/console/rotations", noCSRF, nil); r.StatusCode != http.StatusForbidden {
		t.Fatalf("a rotation without the CSRF token: %d, want 403", r.StatusCode)
	}
	// The reader sees no form, and a forged one is refused by the API.
	if _, body := reader.get("/console/rotations/new"); strings.Contains(body, `id="rotation-form"`) {
		t.Error("the reader is offered the rotation form")
	}
	rtoken := reader.csrf("/console/rotations")
	forged := form(nil)
	forged.Set("csrf", rtoken)
	if r, body := reader.post("/console/rotations", forged, nil); r.StatusCode != http.StatusForbidden || !strings.Contains(body, "KPS.9006") {
		t.Fatalf("a reader's forged rotation: %d, want 403 KPS.9006\n%s", r.StatusCode, body)
	}
	if _, total, _ := s.admin.Rotations(ctx, 10, 0); total != 0 {
		t.Fatal("the reader's forged rotation started")
	}

	// The admin starts one: batch 1, no failure tolerated.
	r, _ := admin.post("/console/rotations", form(nil), nil)
	loc := r.Header.Get("Location")
	if r.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/console/rotations/") {
		t.Fatalf("start: %d to %q", r.StatusCode, loc)
	}
	id := strings.TrimPrefix(loc, "/console/rotations/")
	got, err := s.admin.Rotation(ctx, id)
	if err != nil || got.KeyPairName != "new-2026" || got.BatchSize != 1 || got.MaxFailures != 0 || got.Totals.Servers != 3 {
		t.Fatalf("the rotation started: %+v %v", got, err)
	}
	waitFor(t, "the rotation halts", 60*time.Second, func() bool {
		x, err := s.admin.Rotation(ctx, id)
		return err == nil && x.State == "HALTED" && x.Totals.Running == 0
	})
	_, body = admin.get(loc)
	if !strings.Contains(body, `data-state="HALTED"`) || !strings.Contains(body, "KPS.6021") || !strings.Contains(body, `id="rs-rot-0"`) ||
		strings.Contains(body, "hx-trigger") {
		t.Fatalf("the halted rotation's page:\n%s", body)
	}
	if b := rotationButtons(body); strings.Join(b, ",") != "resume,cancel" {
		t.Fatalf("the admin's actions on a halted rotation: %v, want resume and cancel", b)
	}
	_, list := admin.get("/console/rotations")
	if !strings.Contains(list, `id="rotation-`+id+`"`) || !strings.Contains(list, "HALTED") || !strings.Contains(list, "1 failed") ||
		!strings.Contains(list, "2 pending") || !strings.Contains(list, "1–1 of 1") {
		t.Fatalf("the rotation list:\n%s", list)
	}

	// The reader follows it, without a button; a forged action is refused by the API.
	_, body = reader.get(loc)
	if !strings.Contains(body, `data-state="HALTED"`) || len(rotationButtons(body)) > 0 || strings.Contains(body, "/action") {
		t.Fatalf("the reader's rotation page offers actions:\n%s", body)
	}
	if _, body := reader.get("/console/rotations"); strings.Contains(body, "/console/rotations/new") {
		t.Error("the reader is offered a new rotation")
	}
	for _, action := range []string{"resume", "cancel"} {
		r, body := reader.post(loc+"/action", url.Values{"csrf": {rtoken}, "action": {action}}, nil)
		if r.StatusCode != http.StatusForbidden || !strings.Contains(body, "KPS.9006") {
			t.Fatalf("a reader's forged %s: %d, want 403 KPS.9006", action, r.StatusCode)
		}
	}
	// Without the CSRF token, or from another origin, the admin's cancel is refused too.
	if r, _ := admin.post(loc+"/action", url.Values{"action": {"cancel"}}, nil); r.StatusCode != http.StatusForbidden {
		t.Fatalf("a cancel without the CSRF token: %d, want 403", r.StatusCode)
	}
	if r, _ := admin.post(loc+"/action", url.Values{"csrf": {token}, "action": {"cancel"}}, http.Header{"Sec-Fetch-Site": {"cross-site"}}); r.StatusCode != http.StatusForbidden {
		t.Fatalf("a cross-site cancel: %d, want 403", r.StatusCode)
	}
	if x, _ := s.admin.Rotation(ctx, id); x.State != "HALTED" {
		t.Fatalf("refused actions changed the rotation: %s", x.State)
	}
	// An action the state does not allow: the API's 409.
	if r, body := admin.post(loc+"/action", url.Values{"csrf": {token}, "action": {"pause"}}, nil); r.StatusCode != http.StatusConflict || !strings.Contains(body, "KPS.6307") {
		t.Fatalf("pausing a halted rotation: %d, want 409 KPS.6307", r.StatusCode)
	}
	// The admin cancels: the pending servers are skipped, and no action is left.
	if r, _ := admin.post(loc+"/action", url.Values{"csrf": {token}, "action": {"cancel"}}, nil); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != loc {
		t.Fatalf("cancel: %d to %q", r.StatusCode, r.Header.Get("Location"))
	}
	_, body = admin.get(loc)
	if !strings.Contains(body, `data-state="CANCELLED"`) || !strings.Contains(body, "2 skipped") || len(rotationButtons(body)) > 0 ||
		!strings.Contains(body, "cancelled; it is now CANCELLED") {
		t.Fatalf("the cancelled rotation's page:\n%s", body)
	}
	if st, body := admin.get("/console/rotations/no-such-rotation"); st != http.StatusNotFound || !strings.Contains(body, "KPS.6207") {
		t.Fatalf("an unknown rotation: %d", st)
	}
}

// TestConsoleDriftPages: a member starts drift checks from the console (all servers, or those
// ticked), the pages show each server's result, a reader sees no "check now" and a reader's
// forged one is refused by the API, one without the CSRF token before the API is called.
func TestConsoleDriftPages(t *testing.T) {
	h := sshdtest.Start(t, sshdtest.Options{})
	s := startService(t)
	ctx := context.Background()
	if _, err := s.admin.CreateKeyPair(ctx, client.NewKeyPair{Name: "ops"}); err != nil {
		t.Fatal(err)
	}
	port, addr := closedPort(t), "127.0.0.1"
	if _, err := s.admin.CreateServer(ctx, client.ServerSpec{ID: "gone", Address: &addr, Port: &port}); err != nil {
		t.Fatal(err)
	}
	hostKeys := []string{h.HostKey}
	if _, err := s.admin.CreateServer(ctx, client.ServerSpec{ID: "web", Address: &h.Address, Port: &h.Port, User: &h.User,
		HostKeys: &hostKeys, Credential: &kps.Credential{Type: kps.CredentialPassword, Key: h.Password}}); err != nil {
		t.Fatal(err)
	}
	// A key nobody manages, planted by hand.
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	plantedKey, _ := ssh.NewPublicKey(pub)
	h.WriteAuthorizedKeys(t, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(plantedKey)))+" planted@by-hand\n")

	member := signedIn(t, s, "mira", "member-password-2026", kps.RoleMember)
	reader := signedIn(t, s, "rolf", "reader-password-2026", kps.RoleReader)
	_, body := member.get("/console/drift")
	if !strings.Contains(body, `id="drift-form"`) || !strings.Contains(body, `id="srv-web"`) || !strings.Contains(body, "No drift checks yet") {
		t.Fatalf("the member's drift page:\n%s", body)
	}
	token := member.csrf("/console/drift")
	if r, body := member.post("/console/drift", url.Values{"csrf": {token}, "scope": {"selected"}}, nil); r.StatusCode != http.StatusBadRequest ||
		!strings.Contains(body, "Tick the servers to check") {
		t.Fatalf("a check of no server: %d", r.StatusCode)
	}
	if r, _ := member.post("/console/drift", url.Values{"scope": {"all"}}, nil); r.StatusCode != http.StatusForbidden {
		t.Fatalf("a check without the CSRF token: %d, want 403", r.StatusCode)
	}
	_, body = reader.get("/console/drift")
	if strings.Contains(body, `id="drift-form"`) || strings.Contains(body, `method="post" action="/console/drift"`) {
		t.Fatal("the reader is offered a check")
	}
	if r, body := reader.post("/console/drift", url.Values{"csrf": {reader.csrf("/console/drift")}, "scope": {"all"}}, nil); r.StatusCode != http.StatusForbidden ||
		!strings.Contains(body, "KPS.9006") {
		t.Fatalf("a reader's forged check: %d, want 403 KPS.9006", r.StatusCode)
	}
	if _, total, _ := s.admin.DriftChecks(ctx, 10, 0); total != 0 {
		t.Fatalf("refused checks started %d checks", total)
	}

	// Check all: both servers, one unreadable.
	r, _ := member.post("/console/drift", url.Values{"csrf": {token}, "scope": {"all"}}, nil)
	loc := r.Header.Get("Location")
	if r.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/console/drift/") {
		t.Fatalf("check all: %d to %q", r.StatusCode, loc)
	}
	id := strings.TrimPrefix(loc, "/console/drift/")
	waitFor(t, "the check ends", 90*time.Second, func() bool {
		x, err := s.admin.DriftCheck(ctx, id)
		return err == nil && x.Status != "RUNNING"
	})
	_, body = reader.get(loc)
	row := func(body, server string) string {
		m := regexp.MustCompile(`(?s)<tr id="dr-` + server + `"[^>]*>(.*?)</tr>`).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no row of %s:\n%s", server, body)
		}
		return html.UnescapeString(m[1]) // html/template writes a fingerprint's + as &#43;
	}
	if !strings.Contains(body, `data-state="DONE"`) {
		t.Fatalf("the check's page:\n%s", body)
	}
	web := row(body, "web")
	fp := ssh.FingerprintSHA256(plantedKey)
	if !strings.Contains(web, "DRIFT") || !strings.Contains(web, "planted@by-hand") || !strings.Contains(web, fp) || !strings.Contains(web, "ED25519") && !strings.Contains(web, "ssh-ed25519") ||
		!strings.Contains(web, ">none<") {
		t.Errorf("the row of web:\n%s", web)
	}
	if gone := row(body, "gone"); !strings.Contains(gone, "NOT READ") || !strings.Contains(gone, "KPS.6") {
		t.Errorf("the row of the unreachable server:\n%s", gone)
	}
	_, list := reader.get("/console/drift")
	if !strings.Contains(list, `id="check-`+id+`"`) || !strings.Contains(list, "DONE") || !strings.Contains(list, ">all<") {
		t.Fatalf("the check list:\n%s", list)
	}
	// The server's page shows its last check.
	if _, body := reader.get("/console/servers/web"); !strings.Contains(body, "Last drift check") || !strings.Contains(body, ">drift<") {
		t.Errorf("the server page does not show its drift")
	}

	// Check one server, ticked: the check names it.
	r, _ = member.post("/console/drift", url.Values{"csrf": {token}, "scope": {"selected"}, "server": {"web"}}, nil)
	loc2 := r.Header.Get("Location")
	if r.StatusCode != http.StatusSeeOther || loc2 == loc {
		t.Fatalf("check web: %d to %q", r.StatusCode, loc2)
	}
	x, err := s.admin.DriftCheck(ctx, strings.TrimPrefix(loc2, "/console/drift/"))
	if err != nil || len(x.Servers) != 1 || x.Servers[0] != "web" {
		t.Fatalf("the check of web: %+v %v", x, err)
	}
	if st, body := reader.get("/console/drift/no-such-check"); st != http.StatusNotFound || !strings.Contains(body, "KPS.6208") {
		t.Fatalf("an unknown check: %d", st)
	}
}

// TestConsoleBindTTL: the bind form takes an expiry, refuses one it cannot read with a
// sentence, and the binding's expiry shows on the server's pages.
func TestConsoleBindTTL(t *testing.T) {
	h := sshdtest.Start(t, sshdtest.Options{})
	s := startService(t)
	ctx := context.Background()
	if _, err := s.admin.CreateKeyPair(ctx, client.NewKeyPair{Name: "contractor"}); err != nil {
		t.Fatal(err)
	}
	hostKeys := []string{h.HostKey}
	if _, err := s.admin.CreateServer(ctx, client.ServerSpec{ID: "web", Address: &h.Address, Port: &h.Port, User: &h.User,
		HostKeys: &hostKeys, Credential: &kps.Credential{Type: kps.CredentialPassword, Key: h.Password}}); err != nil {
		t.Fatal(err)
	}
	b := signedIn(t, s, "admin", adminPassword, "")
	_, body := b.get("/console/bind")
	if !strings.Contains(body, `<label for="ttl">`) || !strings.Contains(body, `id="ttl"`) {
		t.Fatal("the bind form has no expiry field")
	}
	token := b.csrf("/console/bind")
	form := url.Values{"csrf": {token}, "keypair": {"contractor"}, "server": {"web"}, "login": {"service"}}
	for _, bad := range []string{"tomorrow", "-8h", "2020-01-01T00:00:00Z"} {
		form.Set("ttl", bad)
		r, body := b.post("/console/bind", form, nil)
		if r.StatusCode != http.StatusBadRequest || !strings.Contains(body, "expiry") || !strings.Contains(body, `value="`+bad+`"`) {
			t.Errorf("ttl %q: %d, want 400 with a sentence and the value kept", bad, r.StatusCode)
		}
	}
	if running, _ := s.admin.ListRunningTasks(ctx, 10, 0); running.Total != 0 {
		t.Fatal("a refused expiry submitted a task")
	}
	// With password login turned off only a hosted key could undo the binding, and contractor
	// has none: the API refuses the server (KPS.6026), and the progress page says why.
	form.Set("ttl", "8h")
	form.Set("disable_password", "1")
	r, _ := b.post("/console/bind", form, nil)
	if loc := r.Header.Get("Location"); r.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "KPS.6026") {
		t.Fatalf("an expiry nobody could undo: %d to %q, want the progress page with KPS.6026", r.StatusCode, loc)
	} else if _, body := b.get(loc); !strings.Contains(body, "KPS.6026") || !strings.Contains(body, "could not be undone at its expiry") {
		t.Fatalf("the progress page of the refused expiry:\n%s", body)
	}
	form.Del("disable_password")
	start := time.Now()
	r, _ = b.post("/console/bind", form, nil)
	if r.StatusCode != http.StatusSeeOther || !strings.Contains(r.Header.Get("Location"), "/console/progress") {
		t.Fatalf("bind with ttl 8h: %d to %q", r.StatusCode, r.Header.Get("Location"))
	}
	var srv *client.Server
	waitFor(t, "the bind succeeds", 90*time.Second, func() bool {
		var err error
		srv, err = s.admin.Server(ctx, "web")
		return err == nil && srv.KeyPairName == "contractor" && srv.BindingExpiresAt != ""
	})
	at, err := time.Parse(time.RFC3339, srv.BindingExpiresAt)
	if err != nil || at.Before(start.Add(8*time.Hour-time.Second)) || at.After(time.Now().Add(8*time.Hour+time.Second)) {
		t.Fatalf("the binding expires at %q, want 8 hours after the bind", srv.BindingExpiresAt)
	}
	shown := at.UTC().Format("2006-01-02 15:04:05Z")
	if _, body := b.get("/console/servers/web"); !strings.Contains(body, "Binding expires") || !strings.Contains(body, shown) {
		t.Errorf("the server page does not show the expiry %s", shown)
	}
	if _, body := b.get("/console/servers"); !strings.Contains(body, "expires "+shown) {
		t.Errorf("the server list does not show the expiry %s", shown)
	}
	if _, body := b.get("/console/keypairs/contractor"); !strings.Contains(body, "expires "+shown) {
		t.Errorf("the key pair's page does not show the expiry %s of its binding", shown)
	}
}
