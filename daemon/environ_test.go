package daemon

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestForgetSecretEnv (docs/SECURITY.md 6.7): once forgotten, KPS_ADMIN_PASSWORD is neither in
// os.Getenv, os.Environ, a child's environment nor /proc/self/environ. (The same for the
// built `kps serve`: TestAdminPasswordLeavesEnvironment in e2e.)
func TestForgetSecretEnv(t *testing.T) {
	t.Parallel()
	secret := "child-" + rand.Text()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperForgetSecretEnv$", "-test.count=1")
	cmd.Env = append(os.Environ(), "KPS_ENV_HELPER=1", "KPS_ADMIN_PASSWORD="+secret)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "helper ran") {
		t.Fatalf("the helper did not run:\n%s", out)
	}
	if strings.Contains(string(out), secret) {
		t.Fatalf("the secret is still visible after forgetSecretEnv:\n%s", out)
	}
}

// TestHelperForgetSecretEnv is the process TestForgetSecretEnv starts with
// KPS_ADMIN_PASSWORD set: it forgets the variable and prints everything a later reader could
// see — os.Getenv, os.Environ, a child's environment, /proc/self/environ — for the parent to
// search.
func TestHelperForgetSecretEnv(t *testing.T) {
	if os.Getenv("KPS_ENV_HELPER") != "1" {
		t.Skip("run by TestForgetSecretEnv")
	}
	if err := forgetSecretEnv("KPS_ADMIN_PASSWORD"); err != nil {
		t.Fatal(err)
	}
	child, err := exec.Command("env").Output()
	if err != nil {
		t.Fatal(err)
	}
	proc, err := os.ReadFile("/proc/self/environ")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("helper ran\ngetenv=%q\nenviron=%q\nchild=%q\nproc=%q\n", os.Getenv("KPS_ADMIN_PASSWORD"),
		strings.Join(os.Environ(), "\n"), child, proc)
}
