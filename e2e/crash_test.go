package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openkps/kps/internal/sshdtest"
)

// startBinary runs the built binary as `kps serve` on a free loopback port with the extra
// environment and flags, waits until it serves, and returns its base URL and the process
// (killed at cleanup).
func startBinary(t *testing.T, bin string, env []string, flags ...string) (string, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve", "--listen", "127.0.0.1:0"}, flags...)...)
	cmd.Env = append(append(os.Environ(), "KPS_LOG_LEVEL=info"), env...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := make(chan string, 1)
	// The service's errors are shown with the test's failure: an answer of 500 names its cause
	// only in the log.
	var errs lockedBuffer
	t.Cleanup(func() {
		if t.Failed() && errs.String() != "" {
			t.Logf("errors logged by %s:\n%s", bin, errs.String())
		}
	})
	go func() {
		sc := bufio.NewScanner(stderr)
		re := regexp.MustCompile(`msg="kps serving" listen=(\S+)`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
			if strings.Contains(sc.Text(), "level=ERROR") {
				fmt.Fprintln(&errs, sc.Text())
			}
		}
	}()
	select {
	case a := <-addr:
		return "http://" + a, cmd
	case <-time.After(30 * time.Second):
		t.Fatal("kps serve did not start")
	}
	return "", nil
}

// startProcess runs `kps serve` with one worker on dataDir and logs in as its admin.
func startProcess(t *testing.T, bin, dataDir string) (*service, *exec.Cmd) {
	t.Helper()
	base, cmd := startBinary(t, bin, []string{"KPS_DATA_DIR=" + dataDir, "KPS_ADMIN_PASSWORD=crash-test-password"},
		"--workers", "1", "--lease", "5s")
	s := &service{t: t, base: base}
	s.login("crash-test-password")
	return s, cmd
}

// TestCrashRecovery kills a serving process with SIGKILL mid-task and restarts it: the task
// that was RUNNING fails with KPS.6609, a queued RESET runs, a queued REPLACE whose caller
// credential died with the process fails with KPS.6609. Nothing stays READY or RUNNING.
func TestCrashRecovery(t *testing.T) {
	t.Parallel()
	bin := kpsBinary(t)
	dataDir := t.TempDir()
	s, cmd := startProcess(t, bin, dataDir)

	h1 := sshdtest.Start(t, sshdtest.Options{})
	h2 := sshdtest.Start(t, sshdtest.Options{})
	s.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"id": "stalled", "address": "127.0.0.1", "port": silentListener(t)}})
	s.addHost("reset-me", h1, map[string]any{"credential": map[string]any{"type": "password", "key": h1.Password}})
	s.addHost("replace-me", h2, nil)
	kp := s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "ops"}})["keypair"].(map[string]any)

	stalled := s.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "ops",
		"server": map[string]any{"id": "stalled", "auth": map[string]any{"type": "password", "key": "x"}}})["task_id"].(string)
	deadline := time.Now().Add(10 * time.Second)
	for s.must(200, "GET", "/tasks/"+stalled, nil)["task_status"] != "RUNNING_REPLACE" {
		if time.Now().After(deadline) {
			t.Fatal("the stalled task never ran")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The only worker is stuck in the stalled handshake, so these two stay READY.
	reset := s.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "ops", "server": map[string]any{"id": "reset-me"}})["task_id"].(string)
	replace := s.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "ops",
		"server": map[string]any{"id": "replace-me", "auth": map[string]any{"type": "password", "key": h2.Password}}})["task_id"].(string)
	running := s.must(200, "GET", "/running-tasks", nil)
	if running["total"] != float64(3) {
		t.Fatalf("running tasks before the crash: %v", running)
	}

	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	s, _ = startProcess(t, bin, dataDir)
	if st := s.waitTask(stalled); st != "FAILED_REPLACE" {
		t.Fatalf("interrupted task ended %s", st)
	}
	if f := s.failedTask(stalled); f["task_error_code"] != "KPS.6609" {
		t.Fatalf("interrupted task: %v", f)
	}
	if st := s.waitTask(reset); st != "SUCCESS_RESET" {
		t.Fatalf("queued reset ended %s: %v", st, s.failedTask(reset))
	}
	if content, _ := h1.AuthorizedKeys(t); strings.Count(content, keyBlob(t, kp["public_key"])) != 1 {
		t.Fatalf("reset host authorized_keys: %q", content)
	}
	if st := s.waitTask(replace); st != "FAILED_REPLACE" {
		t.Fatalf("queued replace ended %s", st)
	}
	if f := s.failedTask(replace); f["task_error_code"] != "KPS.6609" {
		t.Fatalf("queued replace: %v", f)
	}
	if content, exists := h2.AuthorizedKeys(t); exists && strings.Contains(content, keyBlob(t, kp["public_key"])) {
		t.Fatal("a task without its credential touched the host")
	}
	if out := s.must(200, "GET", "/running-tasks", nil); out["total"] != float64(0) {
		t.Fatalf("tasks left running: %v", out)
	}
}
