package interop_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/huaweicloud/huaweicloud-sdk-go-v3/services/kps/v3/model"

	"github.com/openkps/kps/cli"
)

// TestAdminCredentialSDK: the AK/SK a newcomer gets from `kps admin credential create` works
// with the official SDK, which discovers the project by region name although the user has a
// role on a second project. (The admin commands themselves: TestAdminCommands in e2e.)
func TestAdminCredentialSDK(t *testing.T) {
	t.Parallel()
	s := setup(t)
	// The client commands of the command tree, in process; they need no `kps serve`.
	env := map[string]string{"KPS_ENDPOINT": s.base, "KPS_PASSWORD": adminPassword, "KPS_CONFIG_DIR": t.TempDir()}
	kps := func(stdin string, args ...string) (string, string, int) {
		var out, errOut bytes.Buffer
		code := cli.Run(context.Background(), args, cli.Console{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errOut,
			Getenv: func(k string) string { return env[k] }}, cli.Options{})
		return out.String(), errOut.String(), code
	}
	must := func(stdin string, args ...string) string {
		t.Helper()
		out, errOut, code := kps(stdin, args...)
		if code != 0 {
			t.Fatalf("kps %s: %d %s", strings.Join(args, " "), code, errOut)
		}
		return out
	}
	decode := func(out string) map[string]any {
		var m map[string]any
		if err := json.NewDecoder(strings.NewReader(out)).Decode(&m); err != nil {
			t.Fatalf("output %q: %v", out, err)
		}
		return m
	}
	must("", "login", "--user", "admin")
	project := decode(must("", "admin", "-o", "json", "project", "create", "local-1_ops", "--description", "ops team"))
	user := decode(must("dana-secret-pw-1\n", "admin", "-o", "json", "user", "create", "dana", "--password-stdin"))
	id := fmt.Sprint(user["id"])
	must("", "admin", "role", "grant", "--user-id", id, "--role", "member", "--project-id", s.project)
	must("", "admin", "role", "grant", "--user-id", id, "--role", "reader", "--project-id", fmt.Sprint(project["id"]))
	out := must("", "admin", "credential", "create", "--user-id", id, "--description", "ci")
	m := regexp.MustCompile(`access key \(AK\): ([A-Z0-9]{20})\nsecret key \(SK\): ([A-Za-z0-9]{40})\n`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("credential output %q", out)
	}
	// The new user's AK/SK works with the SDK, which discovers the project by region name.
	c := s.sdkClient(m[1], m[2], "")
	if _, err := c.CreateKeypair(&model.CreateKeypairRequest{Body: &model.CreateKeypairRequestBody{Keypair: &model.CreateKeypairAction{Name: "danas"}}}); err != nil {
		t.Fatalf("SDK with the new AK/SK: %v", err)
	}
	// The key pair is the user's, in the project local-1.
	dana := &service{t: t, base: s.base, client: http.DefaultClient, main: s.main}
	dana.loginAs("dana", "dana-secret-pw-1")
	dana.must(200, "GET", "/keypairs/danas", nil)
}
