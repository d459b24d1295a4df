package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/openkps/kps/internal/sshdtest"
)

// TestFailureClasses makes one task fail for each reason a host can give and checks the
// failed-task list reports each exactly as the seed page and the spec say.
func TestFailureClasses(t *testing.T) {
	t.Parallel()
	s := setup(t)
	h := sshdtest.Start(t, sshdtest.Options{})
	s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "ops"}})

	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	wrongHostKey, _ := ssh.NewPublicKey(pub)
	symlinked := sshdtest.Start(t, sshdtest.Options{})
	os.RemoveAll(filepath.Join(symlinked.Home, ".ssh"))
	if err := os.Symlink("/tmp", filepath.Join(symlinked.Home, ".ssh")); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		id, code string
		server   map[string]any
		password string
	}{
		{"refused", "KPS.6601", map[string]any{"address": "127.0.0.1", "port": closedPort(t), "user": h.User}, h.Password},
		{"stalled", "KPS.6602", map[string]any{"address": "127.0.0.1", "port": silentListener(t), "user": h.User}, h.Password},
		{"wrong-password", "KPS.6603", map[string]any{"address": h.Address, "port": h.Port, "user": h.User}, "not-the-password"},
		{"host-key-changed", "KPS.6604", map[string]any{"address": h.Address, "port": h.Port, "user": h.User,
			"host_keys": []string{string(ssh.MarshalAuthorizedKey(wrongHostKey))}}, h.Password},
		{"symlinked-ssh-dir", "KPS.6605", map[string]any{"address": symlinked.Address, "port": symlinked.Port, "user": symlinked.User}, symlinked.Password},
	}
	taskOf := map[string]string{}
	for _, c := range cases {
		c.server["id"] = c.id
		s.must(201, "POST", "/servers", map[string]any{"server": c.server})
		out := s.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "ops",
			"server": map[string]any{"id": c.id, "auth": map[string]any{"type": "password", "key": c.password}}})
		taskOf[c.id] = out["task_id"].(string)
	}
	for _, c := range cases {
		if st := s.waitTask(taskOf[c.id]); st != "FAILED_REPLACE" {
			t.Fatalf("%s ended %s", c.id, st)
		}
		f := s.failedTask(taskOf[c.id])
		if f["task_error_code"] != c.code {
			t.Errorf("%s: code %v, want %s (%v)", c.id, f["task_error_code"], c.code, f["task_error_msg"])
		}
		msg := str(f["task_error_msg"])
		if c.id != "host-key-changed" && !strings.Contains(msg, fmt.Sprint(c.server["port"])) {
			t.Errorf("%s: message %q does not name the port", c.id, msg)
		}
		if strings.Contains(msg, c.password) {
			t.Errorf("%s: message leaks the password", c.id)
		}
		if f["server_name"] != c.id || f["server_id"] != c.id || f["keypair_name"] != "ops" || f["operate_type"] != "FAILED_REPLACE" {
			t.Errorf("%s: entry %v", c.id, f)
		}
	}
	if content, _ := h.AuthorizedKeys(t); strings.Contains(content, "ssh-rsa") {
		t.Fatal("a failed task wrote the key (host key mismatch must stop before any credential)")
	}
}

// TestFailedTaskListing checks the seed operation: fields, types, order, pagination edges,
// validation and deletion.
func TestFailedTaskListing(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "ops"}})
	port := closedPort(t)
	const n = 7
	var ids []string
	for i := range n {
		id := fmt.Sprintf("host-%d", i)
		s.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"id": id, "address": "127.0.0.1", "port": port}})
		out := s.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "ops",
			"server": map[string]any{"id": id, "auth": map[string]any{"type": "password", "key": "pw"}}})
		ids = append(ids, out["task_id"].(string))
	}
	for _, id := range ids {
		s.waitTask(id)
	}
	// Running list is empty now; its shape is the same.
	if out := s.must(200, "GET", "/running-tasks", nil); out["total"] != float64(0) || len(out["tasks"].([]any)) != 0 {
		t.Fatalf("running-tasks: %v", out)
	}

	all := s.must(200, "GET", "/failed-tasks", nil)
	if all["total"] != float64(n) {
		t.Fatalf("total %v", all["total"])
	}
	list := all["tasks"].([]any)
	for i, it := range list {
		m := it.(map[string]any)
		for _, f := range []string{"task_id", "operate_type", "task_time", "task_error_code", "task_error_msg", "server_name", "server_id", "keypair_name"} {
			if _, ok := m[f].(string); !ok {
				t.Fatalf("item %d member %s is %T, want string: %v", i, f, m[f], m)
			}
		}
		if len(m) != 8 {
			t.Fatalf("item %d has extra members: %v", i, m)
		}
		if !regexp.MustCompile(`^[1-9][0-9]{12}$`).MatchString(m["task_time"].(string)) {
			t.Fatalf("task_time %q", m["task_time"])
		}
		// Newest first, ties broken by task_id ascending.
		if i > 0 {
			p := list[i-1].(map[string]any)
			pt, ct := fmt.Sprintf("%020s", p["task_time"]), fmt.Sprintf("%020s", m["task_time"])
			if pt < ct || pt == ct && p["task_id"].(string) > m["task_id"].(string) {
				t.Fatalf("order broken at %d: %v before %v", i, p, m)
			}
		}
	}

	// Pages of 3 at offsets 0, 3, 6 cover the list exactly; past the end is [] with the total.
	var paged []any
	for off := 0; off < n; off += 3 {
		out := s.must(200, "GET", fmt.Sprintf("/failed-tasks?limit=3&offset=%d", off), nil)
		if out["total"] != float64(n) {
			t.Fatalf("total %v at offset %d", out["total"], off)
		}
		paged = append(paged, out["tasks"].([]any)...)
	}
	if fmt.Sprint(paged) != fmt.Sprint(list) {
		t.Fatal("pages do not add up to the list")
	}
	if out := s.must(200, "GET", "/failed-tasks?offset=7", nil); out["total"] != float64(n) || len(out["tasks"].([]any)) != 0 {
		t.Fatalf("past the end: %v", out)
	}
	// A repeated parameter is refused, not read as its first value (§1.4).
	s.wantError(400, "KPS.6005", "GET", "/failed-tasks?limit=1000&offset=2147483647&limit=abc", nil)
	for _, q := range []string{"limit=0", "limit=1001", "limit=-1", "limit=%2B5", "limit=1.5", "limit=", "limit=abc", "limit=99999999999"} {
		s.wantError(400, "KPS.6005", "GET", "/failed-tasks?"+q, nil)
		s.wantError(400, "KPS.6005", "GET", "/running-tasks?"+q, nil)
	}
	for _, q := range []string{"offset=-1", "offset=2147483648", "offset=", "offset=1e3"} {
		s.wantError(400, "KPS.6006", "GET", "/failed-tasks?"+q, nil)
	}

	// Delete one, then the rest.
	victim := list[0].(map[string]any)["task_id"].(string)
	if _, body := s.call("DELETE", "/failed-tasks/"+victim, nil); body != nil {
		t.Fatalf("delete answered a body %v", body)
	}
	s.wantError(404, "KPS.6202", "GET", "/tasks/"+victim, nil)
	s.wantError(404, "KPS.6203", "DELETE", "/failed-tasks/"+victim, nil)
	s.wantError(404, "KPS.6203", "DELETE", "/failed-tasks/not-a-task", nil)
	if out := s.must(200, "GET", "/failed-tasks", nil); out["total"] != float64(n-1) {
		t.Fatalf("total after delete %v", out["total"])
	}
	s.must(200, "DELETE", "/failed-tasks", nil)
	if out := s.must(200, "GET", "/failed-tasks", nil); out["total"] != float64(0) {
		t.Fatalf("total after delete all %v", out["total"])
	}
	s.must(200, "DELETE", "/failed-tasks", nil)
}
