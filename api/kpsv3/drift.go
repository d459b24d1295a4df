package kpsv3

import (
	"net/http"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api"
	"github.com/openkps/kps/api/wire"
)

// Drift checks (kps-v3-api.md §7.2, an OpenKPS extension).

// maxDriftServers bounds the servers one check names.
const maxDriftServers = 1000

func (a *API) startDriftCheck(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	root, err := readObject(r)
	if err != nil {
		return err
	}
	ids, _, err := root.StringArray("servers")
	if err != nil {
		return err
	}
	if len(ids) > maxDriftServers {
		return kps.Errorf(kps.ErrInvalid, "Parameter servers must hold at most %d server IDs, not %d.", maxDriftServers, len(ids))
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if err := kps.ValidateServerID(id); err != nil {
			return err
		}
		if seen[id] {
			return kps.Errorf(kps.ErrDuplicate, "Server '%s' appears more than once in servers.", kps.Clip(id))
		}
		seen[id] = true
	}
	c, err := a.drift.StartDriftCheck(r.Context(), p, ids)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, wire.DriftCheckResponse{DriftCheck: viewDriftCheck(c, true)})
	return nil
}

func (a *API) showDriftCheck(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	c, err := a.drift.DriftCheck(r.Context(), p, r.PathValue("check_id"))
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, wire.DriftCheckResponse{DriftCheck: viewDriftCheck(c, true)})
	return nil
}

func (a *API) listDriftChecks(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	pg, err := pageQuery(r)
	if err != nil {
		return err
	}
	checks, total, err := a.drift.ListDriftChecks(r.Context(), p, pg)
	if err != nil {
		return err
	}
	out := wire.DriftChecksResponse{DriftChecks: make([]wire.DriftCheck, 0, len(checks)), Total: total}
	for i := range checks {
		out.DriftChecks = append(out.DriftChecks, viewDriftCheck(&checks[i], false))
	}
	api.WriteJSON(w, http.StatusOK, out)
	return nil
}

// viewDriftCheck is the wire form of a check, with its results when full.
func viewDriftCheck(c *kps.DriftCheck, full bool) wire.DriftCheck {
	v := wire.DriftCheck{ID: c.ID, Status: c.State, Scheduled: c.Scheduled, Servers: c.ServerIDs,
		CreateTime: c.Created.UnixMilli()}
	if v.Servers == nil {
		v.Servers = []string{}
	}
	if !c.Finished.IsZero() {
		v.FinishTime = c.Finished.UnixMilli()
	}
	for _, r := range c.Results {
		switch {
		case !r.Checked:
			v.Summary.Unreadable++
		case r.Drift:
			v.Summary.Checked++
			v.Summary.Drifted++
		default:
			v.Summary.Checked++
		}
	}
	if full {
		v.Results = c.Results
		if v.Results == nil {
			v.Results = []wire.DriftResult{}
		}
	}
	return v
}
