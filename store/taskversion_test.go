package store

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openkps/kps"
	"github.com/openkps/kps/internal/pgtest"
)

// TestTaskListPlan keeps the list routes' queries off the table's pages. The failed list
// (unbounded) reads its page from the partial index tasks_failed_list alone, which holds every
// column it shows, and its total from an index; the running list (bounded by the queue) chooses its page's seqs
// from the covering index tasks_by_project_phase and reads only the page's rows by rowid.
func TestTaskListPlan(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "kps.db"), nil)
	plan := func(query string, args ...any) string {
		t.Helper()
		rows, err := db.read.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+query, args...)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return strings.Join(plan, "; ")
	}

	failed := plan(scanFailedTasks, "p", "p", 10, 0)
	// The total may come from either index (both hold the project's failures side by side);
	// the page only from tasks_failed_list.
	if strings.Count(failed, "SEARCH tasks USING COVERING INDEX") != 2 ||
		!strings.Contains(failed, "MATERIALIZE p; SEARCH tasks USING COVERING INDEX tasks_failed_list (project_id=?)") ||
		strings.Contains(failed, "PRIMARY KEY") || strings.Contains(failed, "SCAN tasks") {
		t.Errorf("failed list: plan %q", failed)
	}

	args := []any{"p"}
	for _, ph := range kps.RunningPhases {
		args = append(args, string(ph))
	}
	args = append(append(args, args...), 10, 0)
	running := plan(fmt.Sprintf(scanTasks, placeholders(len(kps.RunningPhases))), args...)
	if strings.Count(running, "COVERING INDEX tasks_by_project_phase") != 2 ||
		!strings.Contains(running, "SEARCH t USING INTEGER PRIMARY KEY (rowid=?)") ||
		strings.Contains(running, "SCAN tasks") || strings.Contains(running, "SCAN t ") {
		t.Errorf("running list: plan %q", running)
	}
}

// TestPostgresTaskVersionAcrossReplicas: a change through one store (replica) moves the
// version another store on the same database reads, and that store's next page shows it.
func TestPostgresTaskVersionAcrossReplicas(t *testing.T) {
	dsn := pgtest.Schema(t)
	a, b := openPostgresTest(t, dsn, nil), openPostgresTest(t, dsn, nil)
	fixture(t, a, "s1")
	page := func() (int, int64) {
		t.Helper()
		rows, err := b.ReadTaskList(t.Context(), "p", kps.RunningPhases, kps.Page{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		total, v := rows.Total(), rows.Version()
		rows.Close()
		if now, err := b.TaskVersion(t.Context(), "p"); err != nil || now != v {
			t.Fatalf("TaskVersion %d (%v), page version %d", now, err, v)
		}
		return total, v
	}
	total0, v0 := page()
	submitReset(t, a, "00000000-0000-4000-8000-000000000001", "s1")
	total1, v1 := page()
	if total0 != 0 || total1 != 1 || v1 <= v0 {
		t.Fatalf("before: %d tasks at version %d; after a submit on the other replica: %d at %d", total0, v0, total1, v1)
	}
}
