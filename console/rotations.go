package console

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/openkps/kps/client"
)

// Staged rotations (kps-v3-api.md §8), through the API's /rotations routes like every other page.

// rotationView is a rotation as the pages show it.
type rotationView struct {
	client.Rotation
	CreatedAt, UpdatedAt time.Time
	Ended                int // servers that succeeded, failed or were skipped
	Terminal             bool
	// Live: the page keeps asking while something can still change by itself.
	Live                         bool
	CanPause, CanResume, CanStop bool
}

func viewOf(r client.Rotation) rotationView {
	v := rotationView{Rotation: r}
	v.CreatedAt, _ = time.Parse(time.RFC3339, r.Created)
	v.UpdatedAt, _ = time.Parse(time.RFC3339, r.Updated)
	t := r.Totals
	v.Ended = t.Succeeded + t.Failed + t.Skipped
	v.Terminal = r.State == "COMPLETED" || r.State == "CANCELLED"
	v.Live = r.State == "RUNNING" || (!v.Terminal && t.Running > 0)
	// The actions §8.5 allows in each state; the API refuses the others with KPS.6307 anyway.
	v.CanPause = r.State == "RUNNING"
	v.CanResume = r.State == "PAUSED" || r.State == "HALTED"
	v.CanStop = r.State == "RUNNING" || v.CanResume
	return v
}

type rotationList struct {
	Rotations []rotationView
	Live      bool
	Self      string
	offsetPager
}

// rotations lists the project's rotations, newest first, a page at a time; the page follows
// the running ones live.
func (c *Console) rotations(w http.ResponseWriter, r *http.Request, s *session) error {
	limit := intParam(r, "limit", 50, 1, 1000)
	offset := intParam(r, "offset", 0, 0, 1<<31-1)
	list, total, err := s.api.Rotations(r.Context(), limit, offset)
	if err != nil {
		return err
	}
	d := rotationList{Self: r.URL.RequestURI(), offsetPager: newOffsetPager(Prefix+"rotations", "rotations", nil, total, len(list), limit, offset)}
	for _, x := range list {
		v := viewOf(x)
		d.Rotations = append(d.Rotations, v)
		d.Live = d.Live || v.Live
	}
	p := &page{Title: "Rotations", Section: "rotations", Data: d}
	if d.Live {
		p.Refresh = 3
	}
	c.render(w, r, s, http.StatusOK, "rotations", p)
	return nil
}

// rotation shows one rotation: its state, totals and each server's step, live while it runs,
// with the actions the user's role and the rotation's state allow.
func (c *Console) rotation(w http.ResponseWriter, r *http.Request, s *session) error {
	x, err := s.api.Rotation(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	v := viewOf(*x)
	p := &page{Title: "Rotation " + v.ID[:min(8, len(v.ID))], Section: "rotations",
		Data: struct {
			rotationView
			Self string
		}{v, r.URL.Path}}
	if v.Live {
		p.Refresh = 2
	}
	c.render(w, r, s, http.StatusOK, "rotation", p)
	return nil
}

// rotationActions are the actions of §8.5, with what the flash says once done.
var rotationActions = map[string]string{"pause": "paused", "resume": "resumed", "cancel": "cancelled"}

// rotationAction pauses, resumes or cancels a rotation.
func (c *Console) rotationAction(w http.ResponseWriter, r *http.Request, s *session) error {
	id, action := r.PathValue("id"), r.PostForm.Get("action")
	// Any action goes to the API, which checks the role first and the action after (400 KPS.6003).
	x, err := s.api.RotationAction(r.Context(), id, action)
	if err != nil {
		return err
	}
	c.flash(w, r, "ok", "Rotation "+id[:min(8, len(id))]+" "+rotationActions[action]+"; it is now "+x.State+".")
	http.Redirect(w, r, Prefix+"rotations/"+url.PathEscape(id), http.StatusSeeOther)
	return nil
}

// rotationForm is the form that starts a staged rotation, with what was typed (never a secret).
type rotationForm struct {
	bindData
	BatchSize, MaxFailures, Canary string
}

// newRotationForm offers a target key pair and the servers to rotate: those bound to a key pair
// (?from=NAME), or chosen one by one.
func (c *Console) newRotationForm(w http.ResponseWriter, r *http.Request, s *session) error {
	q := r.URL.Query()
	d := rotationForm{bindData: bindData{KeyPair: q.Get("keypair"), From: q.Get("from"), Selected: map[string]bool{}, Login: "service"},
		BatchSize: "10", MaxFailures: "0", Canary: "0"}
	if err := loadBindChoices(r.Context(), s.api, &d.bindData); err != nil {
		return err
	}
	for _, id := range q["server"] {
		d.Selected[id] = true
	}
	d.ServersSelected = len(d.Selected)
	c.render(w, r, s, http.StatusOK, "rotation-new", &page{Title: "New rotation", Section: "rotations", Data: d})
	return nil
}

// createRotation starts a staged rotation with the form's target, servers, batch size, failure
// limit, canaries and logins, and shows it.
func (c *Console) createRotation(w http.ResponseWriter, r *http.Request, s *session) error {
	f := r.PostForm
	d := rotationForm{bindData: bindData{KeyPair: f.Get("keypair"), From: f.Get("from"), Selected: map[string]bool{},
		Login: f.Get("login"), Keep: f.Get("keep_login_key") != ""},
		BatchSize: strings.TrimSpace(f.Get("batch_size")), MaxFailures: strings.TrimSpace(f.Get("max_failures")),
		Canary: strings.TrimSpace(f.Get("canary"))}
	ids := slices.Compact(slices.Sorted(slices.Values(f["server"])))
	for _, id := range ids {
		d.Selected[id] = true
	}
	again := func(status int, msg string) error {
		if err := loadBindChoices(r.Context(), s.api, &d.bindData); err != nil {
			return err
		}
		d.Error, d.ServersSelected = msg, len(d.Selected)
		c.render(w, r, s, status, "rotation-new", &page{Title: "New rotation", Section: "rotations", Data: d})
		return nil
	}
	number := func(v, what string, lo, hi int) (int, error) {
		if v == "" {
			return 0, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return 0, formError(what + " must be a whole number from " + strconv.Itoa(lo) + " to " + strconv.Itoa(hi) + ".")
		}
		return n, nil
	}
	cred, keep, err := loginCredential(f)
	if err != nil {
		return again(http.StatusBadRequest, err.Error())
	}
	req := client.RotationRequest{KeyPairName: d.KeyPair, KeepLoginKey: keep, PrivateKey: strings.TrimSpace(f.Get("verify_key"))}
	if req.PrivateKey != "" {
		req.PrivateKey += "\n"
	}
	if cred != nil {
		req.Auth = &client.RotationAuth{Type: cred.Type, Key: cred.Key}
	}
	if req.BatchSize, err = number(d.BatchSize, "The batch size", 1, 1000); err != nil {
		return again(http.StatusBadRequest, err.Error())
	}
	if req.MaxFailures, err = number(d.MaxFailures, "The failures tolerated", 0, 10000); err != nil {
		return again(http.StatusBadRequest, err.Error())
	}
	if req.Canary, err = number(d.Canary, "The canary count", 0, 10000); err != nil {
		return again(http.StatusBadRequest, err.Error())
	}
	switch {
	case d.KeyPair == "":
		return again(http.StatusBadRequest, "Choose the key pair to rotate to.")
	case d.From != "" && len(ids) > 0:
		return again(http.StatusBadRequest, "Rotate either every server bound to a key pair or the servers you tick, not both: clear one of them.")
	case d.From == "" && len(ids) == 0:
		return again(http.StatusBadRequest, "Choose the key pair whose servers are rotated, or tick at least one server.")
	case d.From != "":
		req.FromKeyPair = d.From
	default:
		req.Servers = ids
	}
	x, err := s.api.CreateRotation(r.Context(), req)
	if err != nil {
		if refusesCaller(err) {
			return err
		}
		return again(statusOf(client.Code(err)), errorText(err)+" ("+client.Code(err)+")")
	}
	c.flash(w, r, "ok", "Rotation to "+x.KeyPairName+" started over "+plural(x.Totals.Servers, "server")+".")
	http.Redirect(w, r, Prefix+"rotations/"+url.PathEscape(x.ID), http.StatusSeeOther)
	return nil
}

// stateClass is the status badge class of a rotation's, a rotation server's or a drift check's
// state.
func stateClass(state string) string {
	switch state {
	case "RUNNING":
		return "running"
	case "COMPLETED", "SUCCEEDED", "DONE":
		return "success"
	case "FAILED", "HALTED", "CANCELLED", "INTERRUPTED":
		return "failed"
	}
	return "ready"
}
