package kps

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestArchitecture holds the packages to the arrows docs/architecture.md allows: for each
// package (or tree, "/..."), the packages of this module it may never reach, directly or
// through another (go list's import graph, test files left out).
func TestArchitecture(t *testing.T) {
	const mod = "github.com/openkps/kps"
	out, err := exec.Command("go", "list", "-json=ImportPath,Imports", "./...").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	imports := map[string][]string{} // the module's packages → the module's packages they import
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, mod), "/")
		imports[name] = nil
		for _, i := range p.Imports {
			if i == mod || strings.HasPrefix(i, mod+"/") {
				imports[name] = append(imports[name], strings.TrimPrefix(strings.TrimPrefix(i, mod), "/"))
			}
		}
	}
	// reach is every package of the module p reaches.
	reach := func(p string) map[string]bool {
		seen := map[string]bool{}
		var walk func(string)
		walk = func(q string) {
			for _, i := range imports[q] {
				if !seen[i] {
					seen[i] = true
					walk(i)
				}
			}
		}
		walk(p)
		return seen
	}
	in := func(p, pattern string) bool {
		if tree, ok := strings.CutSuffix(pattern, "/..."); ok {
			return p == tree || strings.HasPrefix(p, tree+"/")
		}
		return p == pattern
	}
	rules := []struct {
		pkg   string   // a package, or a tree with "/..."
		never []string // packages or trees it may not reach
		only  []string // when set, the only packages it may reach
	}{
		// The domain imports nothing of the module ("" is the root package).
		{pkg: "", only: []string{}},
		{pkg: "api/wire", only: []string{""}},
		// The HTTP API sees identity, the services and the store only through interfaces.
		{pkg: "api/...", never: []string{"iam", "store/...", "service", "tasks", "sshhost/...", "secrets", "cli/...", "client", "cmd/...", "daemon"}},
		{pkg: "api", only: []string{"", "internal/strictjson"}},
		{pkg: "api/kpsv3/tasklist", only: []string{""}},
		// The service layer: the rules, over interfaces of the store and the dispatcher.
		{pkg: "service", never: []string{"api/...", "store/...", "iam", "tasks", "sshhost/...", "secrets", "cli/...", "client", "cmd/...", "daemon"}},
		// The store: persistence only.
		{pkg: "store", never: []string{"api/...", "service", "iam", "tasks", "sshhost/...", "secrets", "cli/...", "client", "cmd/...", "daemon"}},
		// The runner: claims, leases and outcomes, over interfaces.
		{pkg: "tasks", never: []string{"api/...", "store/...", "service", "iam", "sshhost/...", "secrets", "cli/...", "client", "cmd/...", "daemon"}},
		{pkg: "iam", never: []string{"api/...", "store/...", "service", "tasks", "sshhost/...", "cli/...", "client", "cmd/...", "daemon"}},
		{pkg: "sshhost/...", never: []string{"api/...", "store/...", "service", "iam", "tasks", "cli/...", "client", "cmd/...", "daemon"}},
		{pkg: "sshkey", only: []string{""}},
		{pkg: "secrets", only: []string{""}},
		// The client speaks HTTP; it shares the JSON bodies, nothing of the server.
		{pkg: "client", never: []string{"api", "api/kpsv3/...", "api/keystone", "api/nova", "api/router", "store/...", "service", "tasks", "sshhost/...", "cmd/...", "daemon"}},
		// The Prometheus registry reaches the parts through the interfaces they declare
		// (tasks.Metrics, sshhost.Metrics, api.Metrics); only daemon wires it.
		{pkg: "metrics", only: []string{""}},
		{pkg: "api/...", never: []string{"metrics"}},
		{pkg: "tasks", never: []string{"metrics"}},
		{pkg: "sshhost/...", never: []string{"metrics"}},
		{pkg: "iam", never: []string{"metrics"}},
		{pkg: "service", never: []string{"metrics"}},
		{pkg: "store", never: []string{"metrics"}},
	}
	for _, r := range rules {
		matched := false
		for p := range imports {
			if !in(p, r.pkg) {
				continue
			}
			matched = true
			for q := range reach(p) {
				forbidden := r.only != nil && !slices.Contains(r.only, q)
				for _, n := range r.never {
					forbidden = forbidden || in(q, n)
				}
				if forbidden {
					t.Errorf("%q reaches %q, which docs/architecture.md does not allow", "kps/"+p, "kps/"+q)
				}
			}
		}
		if !matched {
			t.Errorf("no package matches %q: the rule is stale", r.pkg)
		}
	}
}
