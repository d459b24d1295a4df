package store

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/openkps/kps"
)

// TestGuardedTransitions walks kps.CanTransition against the guarded statements the store
// runs (guardedTransitions), in both directions: every edge the table allows is made by a
// statement whose WHERE names the phase it leaves and whose SET the phase it enters; every
// such statement makes an allowed edge; and every statement in the store's source that sets a
// task's phase is one of those listed. docs/task-state-machine.md draws the same edges.
func TestGuardedTransitions(t *testing.T) {
	phases := []kps.Phase{kps.PhaseReady, kps.PhaseRunning, kps.PhaseSuccess, kps.PhaseFailed}
	guard := regexp.MustCompile(`(?s)WHERE .*\bphase = '([A-Z]+)'`)
	made := map[[2]kps.Phase]bool{}
	sources := map[string]bool{}
	for _, g := range guardedTransitions {
		if !kps.CanTransition(g.From, g.To) {
			t.Errorf("%s moves a task %s → %s, which kps.CanTransition forbids", g.Used, g.From, g.To)
		}
		set := strings.Contains(g.Statement, "SET phase = '"+string(g.To)+"'") ||
			// FinishTask's statement takes the phase as its first argument, SUCCESS or FAILED.
			strings.Contains(g.Statement, "SET phase = ?") && g.Source == "finishRunningTask" && g.From == kps.PhaseRunning
		if !set {
			t.Errorf("%s: the statement does not set phase %s:\n%s", g.Used, g.To, g.Statement)
		}
		m := guard.FindAllStringSubmatch(g.Statement, -1)
		if len(m) == 0 || m[len(m)-1][1] != string(g.From) {
			t.Errorf("%s: the statement is not guarded by phase = '%s':\n%s", g.Used, g.From, g.Statement)
		}
		made[[2]kps.Phase{g.From, g.To}] = true
		sources[g.Source] = true
	}
	for _, from := range phases {
		for _, to := range phases {
			if kps.CanTransition(from, to) && !made[[2]kps.Phase{from, to}] {
				t.Errorf("kps.CanTransition allows %s → %s, but no guarded statement makes it", from, to)
			}
		}
	}

	// Every constant or function of the store's source that sets a task's phase is listed.
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var found []string
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		text := func(n ast.Node) string {
			return string(src[fset.Position(n.Pos()).Offset:fset.Position(n.End()).Offset])
		}
		setsPhase := regexp.MustCompile(`UPDATE tasks\s+SET phase`)
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if setsPhase.MatchString(text(d)) {
					found = append(found, d.Name.Name)
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					if v, ok := s.(*ast.ValueSpec); ok && setsPhase.MatchString(text(v)) {
						for _, n := range v.Names {
							found = append(found, n.Name)
						}
					}
				}
			}
		}
	}
	slices.Sort(found)
	for _, n := range found {
		if !sources[n] {
			t.Errorf("%s sets a task's phase but is not one of guardedTransitions", n)
		}
	}
	if len(found) != len(sources) {
		t.Errorf("statements that set a phase %v, listed %v", found, sources)
	}
}
