package console

import (
	"net/http"

	"github.com/openkps/kps/client"
)

// overviewData is the project at a glance.
type overviewData struct {
	KeyPairs     int
	MoreKeyPairs bool
	Servers      int
	Unbound      int
	Running      client.TaskPage
	Failed       client.TaskPage
}

// overview counts the project's key pairs, servers and tasks and shows what runs now and what
// failed last; the counters and the running tasks update live.
func (c *Console) overview(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	var d overviewData
	kp, err := s.api.ListKeyPairs(ctx, 1000, "")
	if err != nil {
		return err
	}
	d.KeyPairs, d.MoreKeyPairs = len(kp.KeyPairs), kp.NextMarker != ""
	srv, err := s.api.ListServers(ctx, 1000, 0)
	if err != nil {
		return err
	}
	d.Servers = srv.Total
	for _, x := range srv.Servers {
		if x.KeyPairName == "" {
			d.Unbound++
		}
	}
	if d.Running, err = s.api.ListRunningTasks(ctx, 10, 0); err != nil {
		return err
	}
	if d.Failed, err = s.api.ListFailedTasks(ctx, 5, 0); err != nil {
		return err
	}
	p := &page{Title: "Overview", Section: "overview", Data: d}
	if d.Running.Total > 0 {
		p.Refresh = 5
	}
	c.render(w, r, s, http.StatusOK, "overview", p)
	return nil
}
