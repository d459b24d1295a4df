package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openkps/kps/client"
)

// TestFleetSubmissionIsConcurrentAndBounded: a fleet's batches go out submitConcurrency at a
// time, not one after another and not all at once, and every server gets its task, in the
// order of the plan.
func TestFleetSubmissionIsConcurrentAndBounded(t *testing.T) {
	t.Parallel()
	var inFlight, most atomic.Int32
	var mu sync.Mutex
	seen := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/keypairs/batch-associate") {
			http.Error(w, "unexpected", http.StatusNotFound)
			return
		}
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(50 * time.Millisecond) // a batch that takes a while: the others overlap it
		var body struct {
			Items []struct {
				Server struct {
					ID string `json:"id"`
				} `json:"server"`
			} `json:"batch_keypairs"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var out struct {
			Tasks []client.Submitted `json:"tasks"`
		}
		mu.Lock()
		for _, it := range body.Items {
			seen[it.Server.ID] = true
			out.Tasks = append(out.Tasks, client.Submitted{TaskID: "task-" + it.Server.ID, ServerID: it.Server.ID, Status: "SUCCESS"})
		}
		mu.Unlock()
		json.NewEncoder(w).Encode(out)
	}))
	defer srv.Close()
	cl := client.New(srv.URL, 0)
	cl.ProjectID = "p"

	var results []*outcome
	for i := range 95 { // ten batches, the last of five
		results = append(results, &outcome{Server: fmt.Sprintf("s%02d", i), KeyPair: "kp"})
	}
	a := testApp(t, nil)
	a.submitBinds(context.Background(), cl, results, nil, &fleetFlags{})
	for _, o := range results {
		if o.TaskID != "task-"+o.Server || o.Status != "SUBMITTED" {
			t.Fatalf("%s: task %q status %q", o.Server, o.TaskID, o.Status)
		}
	}
	if len(seen) != len(results) {
		t.Fatalf("the service saw %d servers, want %d", len(seen), len(results))
	}
	if m := most.Load(); m < 2 || m > submitConcurrency {
		t.Fatalf("at most %d batches in flight at once, want 2 to %d", m, submitConcurrency)
	}
}
