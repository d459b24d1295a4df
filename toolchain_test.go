package kps

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestToolchainInREADME checks that the Go release the README tells every shell to export is
// the toolchain line of go.mod, which .ci/run and the Makefile read: machines start with
// GOTOOLCHAIN=local and ignore that line, so a README left behind after a toolchain bump would
// have people build with a release CI no longer checks.
func TestToolchainInREADME(t *testing.T) {
	mod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^toolchain\s+(go[0-9.]+)\s*$`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("go.mod has no toolchain line; .ci/run and the Makefile build with it")
	}
	toolchain := string(m[1])
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	// The first code block: the commands on the README's first screen.
	_, rest, _ := strings.Cut(string(readme), "```sh\n")
	first, _, _ := strings.Cut(rest, "```")
	lines := strings.Split(first, "\n")
	if !strings.HasPrefix(lines[0], "export GOTOOLCHAIN="+toolchain+" ") {
		t.Errorf("README's first command is %q, want export GOTOOLCHAIN=%s (go.mod's toolchain line)", lines[0], toolchain)
	}
	for _, v := range regexp.MustCompile(`GOTOOLCHAIN=(go[0-9.]+)`).FindAllStringSubmatch(string(readme), -1) {
		if v[1] != toolchain {
			t.Errorf("README names GOTOOLCHAIN=%s; go.mod's toolchain is %s", v[1], toolchain)
		}
	}
}
