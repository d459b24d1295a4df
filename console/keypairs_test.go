package console_test

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/client"
	"github.com/openkps/kps/internal/sshdtest"
	"github.com/openkps/kps/sshkey"
	"golang.org/x/crypto/ssh"
)

// cellPattern is a cell of a responsive table row: its data-label and its inner HTML.
var cellPattern = regexp.MustCompile(`(?s)<td data-label="([^"]+)"[^>]*>(.*?)</td>`)

// cells are the labelled cells of one table row: label → inner HTML.
func cells(row string) map[string]string {
	out := map[string]string{}
	for _, m := range cellPattern.FindAllStringSubmatch(row, -1) {
		out[m[1]] = m[2]
	}
	return out
}

// serverRow is the row of the console's server list that links to server id, as its cells.
func serverRow(t *testing.T, b *browserless, id string) map[string]string {
	t.Helper()
	_, body := b.get("/console/servers")
	for _, m := range regexp.MustCompile(`(?s)<tr>(.*?)</tr>`).FindAllStringSubmatch(body, -1) {
		if strings.Contains(m[1], `href="/console/servers/`+id+`"`) {
			return cells(m[1])
		}
	}
	t.Fatalf("the server list has no row for %s:\n%s", id, body)
	return nil
}

var tagPattern = regexp.MustCompile(`<[^>]+>`)

// text is the text of an HTML fragment, tags dropped and spaces collapsed.
func text(fragment string) string {
	return strings.Join(strings.Fields(html.UnescapeString(tagPattern.ReplaceAllString(fragment, " "))), " ")
}

// TestConsoleImportAndServerList: a public key imported through the console's form is the key
// pair's public key, with its fingerprint and no private key anywhere; an invalid or missing
// public key is refused with a visible sentence and creates nothing. Bound to a real sshd host
// through the bind form, the imported key pair shows in the server list's row, whose last task
// is the bind that succeeded (the newest task the service keeps, inventory.md), then the failed
// bind that followed, with its status, code and a link to the task; the server page agrees.
func TestConsoleImportAndServerList(t *testing.T) {
	h := sshdtest.Start(t, sshdtest.Options{})
	s := startService(t)
	ctx := context.Background()
	hostKeys := []string{h.HostKey}
	if _, err := s.admin.CreateServer(ctx, client.ServerSpec{ID: "web", Address: &h.Address, Port: &h.Port, User: &h.User,
		HostKeys: &hostKeys, Credential: &kps.Credential{Type: kps.CredentialPassword, Key: h.Password}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.admin.CreateServer(ctx, client.ServerSpec{ID: "idle", Address: &h.Address, Port: &h.Port}); err != nil {
		t.Fatal(err)
	}
	b := signedIn(t, s, "admin", adminPassword, "")

	// The key is made here: only the public half goes to the console.
	priv, pub, err := sshkey.Generate(sshkey.AlgorithmED25519, 0, "laptop@example")
	if err != nil {
		t.Fatal(err)
	}
	signer, parsed, err := sshkey.ParsePrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	token := b.csrf("/console/keypairs/new")
	r, body := b.post("/console/keypairs", url.Values{"csrf": {token}, "name": {"imported"}, "mode": {"import"},
		"algorithm": {"ed25519"}, "public_key": {"  " + pub + "\r\n"}, "scope": {"user"}}, nil)
	if r.StatusCode != http.StatusOK || !strings.Contains(body, `Key pair <span class="mono">imported</span> created`) {
		t.Fatalf("import: %d\n%s", r.StatusCode, body)
	}
	shown := regexp.MustCompile(`<textarea class="pubkey"[^>]*>([^<]*)</textarea>`).FindStringSubmatch(body)
	if !strings.Contains(body, `<code class="fp">`+parsed.Fingerprint+`</code>`) || shown == nil || html.UnescapeString(shown[1]) != pub {
		t.Errorf("the created page does not show the imported key's fingerprint %s and public key", parsed.Fingerprint)
	}
	if strings.Contains(body, "download-private-key") || strings.Contains(body, "PRIVATE KEY") {
		t.Error("the page after an import offers a private key")
	}
	kp, err := s.admin.KeyPair(ctx, "imported")
	if err != nil {
		t.Fatal(err)
	}
	if kp.PublicKey != pub || kp.Fingerprint != parsed.Fingerprint || kp.Algorithm != "ED25519" || kp.IsKeyProtection {
		t.Fatalf("the imported key pair: public key %q fingerprint %q algorithm %q hosted %v; want %q, %q, ED25519, not hosted",
			kp.PublicKey, kp.Fingerprint, kp.Algorithm, kp.IsKeyProtection, pub, parsed.Fingerprint)
	}
	if _, err := s.admin.ExportPrivateKey(ctx, "imported"); err == nil {
		t.Error("the imported key pair exports a private key")
	}
	if _, body := b.get("/console/keypairs/imported"); !strings.Contains(body, parsed.Fingerprint) ||
		!strings.Contains(body, "Not kept by OpenKPS") || strings.Contains(body, "export-private-key") {
		t.Errorf("the imported key pair's page:\n%s", body)
	}

	// Bad imports: a sentence on the form, the typed key kept, nothing created.
	for _, bad := range []struct{ name, key, want string }{
		{"broken", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAInvalid!!! x", "KPS."},
		{"truncated", strings.Fields(pub)[0] + " " + strings.Fields(pub)[1][:40], "KPS."},
		{"empty", "", "Paste the public key to import."},
	} {
		r, body := b.post("/console/keypairs", url.Values{"csrf": {token}, "name": {bad.name}, "mode": {"import"},
			"algorithm": {"ed25519"}, "public_key": {bad.key}, "scope": {"user"}}, nil)
		alert := regexp.MustCompile(`<p class="flash flash-error" role="alert">([^<]+)</p>`).FindStringSubmatch(body)
		if r.StatusCode != http.StatusBadRequest || alert == nil || !strings.Contains(alert[1], bad.want) {
			t.Errorf("import of %q: %d, alert %q; want 400 with %q on the page", bad.key, r.StatusCode, alert, bad.want)
		}
		if !strings.Contains(body, `action="/console/keypairs"`) || !strings.Contains(body, `value="import" checked`) ||
			!strings.Contains(html.UnescapeString(body), bad.key+"</textarea>") {
			t.Errorf("import of %q: the form does not come back with what was typed", bad.key)
		}
		if _, err := s.admin.KeyPair(ctx, bad.name); client.Code(err) != kps.ErrKeyPairNotFound {
			t.Errorf("import of %q created key pair %s: %v", bad.key, bad.name, err)
		}
	}
	if pg, err := s.admin.ListKeyPairs(ctx, 10, ""); err != nil || len(pg.KeyPairs) != 1 {
		t.Fatalf("key pairs after the bad imports: %+v %v, want only imported", pg, err)
	}

	// Before any bind: no key pair and no task on either row.
	for _, id := range []string{"web", "idle"} {
		row := serverRow(t, b, id)
		if text(row["Key pair"]) != "none" || text(row["Last task"]) != "—" {
			t.Fatalf("%s before any bind: key pair %q, last task %q", id, text(row["Key pair"]), text(row["Last task"]))
		}
	}

	// Bind the imported key pair to web with the stored login: the key logs in, the row names
	// the key pair, and its last task is the bind that succeeded, linked to its page.
	token = b.csrf("/console/bind")
	r, _ = b.post("/console/bind", url.Values{"csrf": {token}, "keypair": {"imported"}, "server": {"web"}, "login": {"service"}}, nil)
	loc := r.Header.Get("Location")
	if r.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "/console/progress") {
		t.Fatalf("bind: %d to %q", r.StatusCode, loc)
	}
	lu, err := url.Parse(loc)
	if err != nil || len(lu.Query()["t"]) != 1 {
		t.Fatalf("bind: progress URL %q names no single task", loc)
	}
	bound := lu.Query().Get("t")
	waitFor(t, "the bind succeeds", 90*time.Second, func() bool {
		srv, err := s.admin.Server(ctx, "web")
		return err == nil && srv.KeyPairName == "imported"
	})
	if !h.KeyLoginWorks(t, signer) {
		t.Fatal("the imported key does not log in after the bind")
	}
	row := serverRow(t, b, "web")
	if !strings.Contains(row["Key pair"], `<a href="/console/keypairs/imported">imported</a>`) {
		t.Fatalf("web after the bind: key pair %q", row["Key pair"])
	}
	wantLastTask := func(cell, status, code, id string) {
		t.Helper()
		want := status + " "
		if code != "" {
			want += code + " "
		}
		want += "task " + id[:8] + " · "
		if !strings.Contains(cell, `<span class="status status-`+strings.ToLower(strings.SplitN(status, "_", 2)[0])+`">`+status+`</span>`) ||
			!strings.HasPrefix(text(cell), want) || !strings.Contains(cell, `<a href="/console/progress?t=`+id+`">`) ||
			(code != "") != strings.Contains(cell, `<code class="code-error">`+code+`</code>`) {
			t.Fatalf("last task reads %q (%s), want %q… linked to task %s", text(cell), cell, want, id)
		}
	}
	wantLastTask(row["Last task"], "SUCCESS_RESET", "", bound)
	if _, body := b.get("/console/servers/web"); !strings.Contains(body, `<a href="/console/progress?t=`+bound+`">`) ||
		!strings.Contains(body, `<span class="status status-success">SUCCESS_RESET</span>`) {
		t.Errorf("web's page does not show the bind as its last task:\n%s", body)
	}
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(h.HostKey))
	if err != nil {
		t.Fatal(err)
	}
	if text(row["Host keys"]) != "ED25519 "+ssh.FingerprintSHA256(hostKey) {
		t.Errorf("web's pinned host key is not on its row: %q", row["Host keys"])
	}
	if row := serverRow(t, b, "idle"); text(row["Key pair"]) != "none" || text(row["Last task"]) != "—" ||
		!strings.Contains(row["Host keys"], "not pinned") {
		t.Errorf("idle after web's bind: %v", row)
	}

	// A rotation of web that fails (a wrong password): the binding stays, and the last task is
	// the failure, as the API lists it.
	if _, err := s.admin.CreateKeyPair(ctx, client.NewKeyPair{Name: "next"}); err != nil {
		t.Fatal(err)
	}
	r, _ = b.post("/console/bind", url.Values{"csrf": {token}, "keypair": {"next"}, "server": {"web"}, "login": {"password"},
		"password": {"not-the-password"}}, nil)
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("the failing bind: %d", r.StatusCode)
	}
	var failed client.TaskEntry
	waitFor(t, "the bind fails", 90*time.Second, func() bool {
		pg, err := s.admin.ListFailedTasks(ctx, 10, 0)
		if err != nil || len(pg.Tasks) == 0 {
			return false
		}
		failed = pg.Tasks[0]
		return true
	})
	if failed.ServerID != "web" || failed.KeyPairName != "next" || failed.ErrorCode == "" {
		t.Fatalf("the failed task: %+v", failed)
	}
	row = serverRow(t, b, "web")
	if !strings.Contains(row["Key pair"], `<a href="/console/keypairs/imported">imported</a>`) {
		t.Errorf("web after the failed rotation: key pair %q, want imported still", row["Key pair"])
	}
	// The failure, newer than the success, is the last task now.
	wantLastTask(row["Last task"], failed.Status, failed.ErrorCode, failed.TaskID)
	if _, body := b.get("/console/servers/web"); !strings.Contains(body, `<a href="/console/progress?t=`+failed.TaskID+`">`) ||
		!strings.Contains(body, `<code class="code-error">`+failed.ErrorCode+`</code>`) {
		t.Errorf("web's page does not show the failure as its last task:\n%s", body)
	}
	if row := serverRow(t, b, "idle"); text(row["Last task"]) != "—" {
		t.Errorf("idle shows web's task: %q", row["Last task"])
	}
	if _, body := b.get("/console/servers/idle"); !strings.Contains(body, "none kept") {
		t.Errorf("idle's page shows a last task:\n%s", body)
	}
}
