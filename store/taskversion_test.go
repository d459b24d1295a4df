package store

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openkps/kps"
	"github.com/openkps/kps/internal/pgtest"
)

// TestScanTasksPlan keeps the list routes' query off the table: the total and the page's
// seqs come from the covering index, the page's rows by rowid, for both lists.
func TestScanTasksPlan(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "kps.db"), nil)
	for _, phases := range [][]kps.Phase{kps.FailedPhases, kps.RunningPhases} {
		args := []any{"p"}
		for _, ph := range phases {
			args = append(args, string(ph))
		}
		args = append(append(args, args...), 10, 0)
		rows, err := db.read.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+fmt.Sprintf(scanTasks, placeholders(len(phases))), args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		joined := strings.Join(plan, "; ")
		if strings.Count(joined, "COVERING INDEX tasks_by_project_phase") != 2 ||
			!strings.Contains(joined, "SEARCH t USING INTEGER PRIMARY KEY (rowid=?)") ||
			strings.Contains(joined, "SCAN tasks") || strings.Contains(joined, "SCAN t ") {
			t.Errorf("%v: plan %q", phases, joined)
		}
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
		total, v, err := b.ScanTasks(t.Context(), "p", kps.RunningPhases, kps.Page{Limit: 10}, func(*kps.TaskRow) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
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
