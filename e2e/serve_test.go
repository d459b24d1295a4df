package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openkps/kps/daemon"
)

// TestFirstStartAndGracefulStop runs the binary without an admin password: the generated one
// is written once with mode 0600 and only its path is printed; SIGTERM stops it cleanly.
func TestFirstStartAndGracefulStop(t *testing.T) {
	t.Parallel()
	bin := kpsBinary(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	var stdout, stderr lockedBuffer
	cmd := exec.Command(bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(dataDir, "admin-password")
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(stderr.String(), "kps serving") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no start: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		t.Fatal("SIGTERM did not stop the service")
	}
	pw, err := os.ReadFile(pwFile)
	if err != nil {
		t.Fatal(err)
	}
	password := strings.TrimSpace(string(pw))
	for _, f := range []string{pwFile, filepath.Join(dataDir, "master.key")} {
		if st, err := os.Stat(f); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, st.Mode(), err)
		}
	}
	if len(password) < 16 || !strings.Contains(stdout.String(), pwFile) {
		t.Fatalf("password file not announced: %q", stdout.String())
	}
	if strings.Contains(stdout.String()+stderr.String(), password) {
		t.Fatal("the admin password was printed or logged")
	}
	if !strings.Contains(stderr.String(), "kps stopped") {
		t.Fatalf("no clean stop: %s", stderr.String())
	}
}

// TestBusyAndQueueFull: a server with a task in flight refuses another (409 KPS.6302), and the
// queue refuses work beyond its capacity (503 KPS.6502).
func TestBusyAndQueueFull(t *testing.T) {
	t.Parallel()
	s := setup(t, func(c *daemon.Config) { c.Workers = 1; c.MaxQueued = 1 })
	s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "ops"}})
	stalled := silentListener(t)
	for _, id := range []string{"a", "b", "c"} {
		s.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"id": id, "address": "127.0.0.1", "port": stalled}})
	}
	bind := func(id string) map[string]any {
		return map[string]any{"keypair_name": "ops", "server": map[string]any{"id": id, "auth": map[string]any{"type": "password", "key": "x"}}}
	}
	first := s.must(200, "POST", "/keypairs/associate", bind("a"))["task_id"].(string)
	deadline := time.Now().Add(10 * time.Second)
	for s.must(200, "GET", "/tasks/"+first, nil)["task_status"] != "RUNNING_REPLACE" {
		if time.Now().After(deadline) {
			t.Fatal("never running")
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.wantError(409, "KPS.6302", "POST", "/keypairs/associate", bind("a"))
	s.wantError(409, "KPS.6302", "DELETE", "/servers/a", nil)
	s.wantError(409, "KPS.6302", "PUT", "/servers/a", map[string]any{"server": map[string]any{"port": 2222}})
	s.wantError(409, "KPS.6305", "DELETE", "/keypairs/ops", nil)
	s.must(200, "PUT", "/servers/a", map[string]any{"server": map[string]any{"name": "renamed while busy"}})
	s.must(200, "POST", "/keypairs/associate", bind("b")) // queued: the only worker is busy
	s.wantError(503, "KPS.6502", "POST", "/keypairs/associate", bind("c"))
	running := s.must(200, "GET", "/running-tasks?limit=1", nil)
	if running["total"] != float64(2) || len(running["tasks"].([]any)) != 1 {
		t.Fatalf("running tasks: %v", running)
	}
	item := running["tasks"].([]any)[0].(map[string]any)
	if st := item["operate_type"]; st != "READY_REPLACE" && st != "RUNNING_REPLACE" {
		t.Fatalf("running item %v", item)
	}
}
