package service

import (
	"context"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/openkps/kps"
)

// Expiring bindings (kps-v3-api.md §7.1, an OpenKPS extension).

// checkUndoable refuses an expiring bind the service could never undo by itself (KPS.6026): at
// expiry nobody gives a credential, so the UNBIND logs in with the server's stored credential
// or, without one, the hosted private key of the key pair being bound — which the caller must
// be allowed to use (ExportRole) — and either goes only where CheckLogin lets a stored secret
// go: the inventory's port, and a reach pinned or set by an admin.
func checkUndoable(s *kps.TaskSubmission, f *kps.TaskFacts) error {
	srv, hosted := f.Server, f.KeyPair.PrivateKey != nil && s.MayExport
	var login kps.LoginSource
	switch {
	case s.DisablePassword && hosted:
		// Password login will be off: a stored password could no longer log in, the hosted key
		// of the bound key pair can (expiryLogin).
		login = kps.LoginHosted
	case s.DisablePassword:
		return kps.Errorf(kps.ErrUndoableExpiry,
			"An expiring bind with disable_password needs the private key of key pair '%s' hosted (and one you may use): once password login is off, only it is sure to log in to server '%s' when the binding expires.",
			f.KeyPair.Name, srv.ID)
	case len(srv.Credential) > 0:
		login = kps.LoginService
	case hosted:
		login = kps.LoginHosted
	default:
		return kps.Errorf(kps.ErrUndoableExpiry,
			"Server '%s' has no service credential and the private key of key pair '%s' is not hosted (or not one you may use): the service could not unbind it when it expires.",
			srv.ID, f.KeyPair.Name)
	}
	if err := srv.CheckLogin(login, 0); err != nil {
		return kps.Errorf(kps.ErrUndoableExpiry, "The binding could not be undone by the service when it expires: %s", kps.ErrorMessage(err))
	}
	return nil
}

// expiryLogin is what the UNBIND of an expired binding logs in with: the hosted key of the
// bound key pair when the bind turned password login off (a stored password no longer logs
// in), else as any task without server.auth (chooseLogin).
func expiryLogin(s *kps.TaskSubmission, f *kps.TaskFacts) (kps.LoginSource, string, error) {
	if b := f.Binding; b != nil && b.PasswordDisabled && b.PrivateKey != nil {
		return kps.LoginHosted, b.KeyPairName, nil
	}
	return chooseLogin(s, f)
}

// ExpiryStore is what the expiry loop needs of the store.
type ExpiryStore interface {
	kps.ExpiryStore
	SubmitTask(ctx context.Context, s kps.TaskSubmission, admit kps.TaskAdmission) (*kps.Task, error)
}

// Expirer unbinds expired bindings: it submits one UNBIND per due binding, which the runner
// executes like any other (restoring password login where the bind disabled it); a failed one
// is in the failed-task list. Every replica may run one: a binding's expiry is cleared by the
// transaction that submits its UNBIND, so it is submitted once.
type Expirer struct {
	Store      ExpiryStore
	Dispatcher Dispatcher
	Log        *slog.Logger
	// Interval is the pause between two looks for due bindings; 1s when zero.
	Interval time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Run looks for due bindings until ctx ends. A binding due while no process ran is found at
// the first look.
func (e *Expirer) Run(ctx context.Context) {
	interval := e.Interval
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		e.Once(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Once submits the UNBIND of every binding due now and returns how many it submitted. A
// server busy with another task is left for the next look.
func (e *Expirer) Once(ctx context.Context) int {
	now := time.Now
	if e.Now != nil {
		now = e.Now
	}
	log := e.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	due, err := e.Store.DueExpiries(ctx, now(), 100)
	if err != nil {
		if ctx.Err() == nil {
			log.Error("reading the expired bindings failed", "err", err)
		}
		return 0
	}
	n := 0
	for _, b := range due {
		sub := kps.TaskSubmission{ID: uuid.NewString(), ProjectID: b.ProjectID, Operation: kps.OpUnbind,
			ServerID: b.ServerID, Expiry: true, MayExport: true}
		t, err := e.Store.SubmitTask(ctx, sub, AdmitTask)
		switch {
		case err == nil:
			n++
			log.Info("binding expired: unbinding", "project_id", b.ProjectID, "server_id", b.ServerID,
				"keypair_name", b.KeyPairName, "task_id", t.ID)
		case kps.ErrorCode(err) == kps.ErrServerBusy || kps.ErrorCode(err) == kps.ErrServerNotBound:
			// Busy: the next look. Not bound or not due: another replica was first.
		default:
			if ctx.Err() == nil {
				log.Error("submitting the unbind of an expired binding failed", "server_id", b.ServerID, "err", err)
			}
		}
	}
	if n > 0 && e.Dispatcher != nil {
		e.Dispatcher.Wake()
	}
	return n
}
