package console

import (
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/openkps/kps/client"
)

// Drift checks (kps-v3-api.md §7.2), through the API's /drift-checks routes.

// driftView is a drift check as the pages show it.
type driftView struct {
	client.DriftCheck
	Created, Finished time.Time
	Running           bool
}

func driftViewOf(d client.DriftCheck) driftView {
	v := driftView{DriftCheck: d, Created: time.UnixMilli(d.CreateTime), Running: d.Status == "RUNNING"}
	if d.FinishTime > 0 {
		v.Finished = time.UnixMilli(d.FinishTime)
	}
	return v
}

type driftList struct {
	Checks  []driftView
	Live    bool
	Self    string
	Servers []client.Server // what "check now" offers, for those who may start a check
	Error   string
	offsetPager
}

// driftChecks lists the project's drift checks, newest first, a page at a time, with the form
// that starts one for those who may.
func (c *Console) driftChecks(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.renderDriftList(w, r, s, http.StatusOK, "")
}

func (c *Console) renderDriftList(w http.ResponseWriter, r *http.Request, s *session, status int, msg string) error {
	limit := intParam(r, "limit", 50, 1, 1000)
	offset := intParam(r, "offset", 0, 0, 1<<31-1)
	list, total, err := s.api.DriftChecks(r.Context(), limit, offset)
	if err != nil {
		return err
	}
	d := driftList{Self: Prefix + "drift?" + r.URL.RawQuery, Error: msg,
		offsetPager: newOffsetPager(Prefix+"drift", "drift checks", nil, total, len(list), limit, offset)}
	for _, x := range list {
		v := driftViewOf(x)
		d.Checks = append(d.Checks, v)
		d.Live = d.Live || v.Running
	}
	if s.can().Write && r.Header.Get("HX-Request") != "true" {
		for srv, err := range s.api.Servers(r.Context(), 1000) {
			if err != nil {
				return err
			}
			if len(d.Servers) == maxListed {
				break
			}
			d.Servers = append(d.Servers, srv)
		}
	}
	p := &page{Title: "Drift checks", Section: "drift", Data: d}
	if d.Live {
		p.Refresh = 3
	}
	c.render(w, r, s, status, "drift", p)
	return nil
}

// driftCheck shows one check with what it found on each server, live while it runs.
func (c *Console) driftCheck(w http.ResponseWriter, r *http.Request, s *session) error {
	x, err := s.api.DriftCheck(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	v := driftViewOf(*x)
	p := &page{Title: "Drift check " + v.ID[:min(8, len(v.ID))], Section: "drift",
		Data: struct {
			driftView
			Self string
		}{v, r.URL.Path}}
	if v.Running {
		p.Refresh = 2
	}
	c.render(w, r, s, http.StatusOK, "drift-check", p)
	return nil
}

// startDriftCheck starts a check of every server (scope "all") or of the servers ticked.
func (c *Console) startDriftCheck(w http.ResponseWriter, r *http.Request, s *session) error {
	f := r.PostForm
	var ids []string
	if f.Get("scope") != "all" {
		ids = slices.Compact(slices.Sorted(slices.Values(f["server"])))
		if len(ids) == 0 {
			return c.renderDriftList(w, r, s, http.StatusBadRequest, "Tick the servers to check, or check all servers.")
		}
	}
	x, err := s.api.StartDriftCheck(r.Context(), ids)
	if err != nil {
		return err
	}
	what := "every server"
	if len(ids) > 0 {
		what = plural(len(ids), "server")
	}
	c.flash(w, r, "info", "Drift check started on "+what+".")
	http.Redirect(w, r, Prefix+"drift/"+url.PathEscape(x.ID), http.StatusSeeOther)
	return nil
}
