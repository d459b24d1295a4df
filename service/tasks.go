package service

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/openkps/kps"
)

// Bind implements kps.TaskService (§2.11).
func (s *Service) Bind(ctx context.Context, p *kps.Principal, b kps.BindRequest) (*kps.Task, error) {
	return s.submit(ctx, p, bindSubmission(b, false), b.Auth)
}

// Unbind implements kps.TaskService (§2.13).
func (s *Service) Unbind(ctx context.Context, p *kps.Principal, serverID string, auth *kps.Credential) (*kps.Task, error) {
	return s.submit(ctx, p, kps.TaskSubmission{Operation: kps.OpUnbind, ServerID: serverID}, auth)
}

// BindBatch implements kps.TaskService (§2.12): the key pair is checked once for the batch,
// then the items go in one transaction (one commit, and one turn on the database writer, whose
// queue the running tasks' claims and outcomes share), each refused or accepted on its own.
func (s *Service) BindBatch(ctx context.Context, p *kps.Principal, keyPairName string, items []kps.BindRequest) ([]*kps.Task, []error, error) {
	k, err := s.store.KeyPair(ctx, p.ProjectID, keyPairName, p.UserID)
	if err != nil {
		return nil, nil, err
	}
	if k.Type == kps.TypeX509 {
		return nil, nil, errX509NotBindable(k.Name)
	}
	subs := make([]kps.TaskSubmission, len(items))
	for i, b := range items {
		subs[i] = s.submission(p, bindSubmission(b, true), b.Auth)
	}
	tasks, refused, err := s.store.SubmitTasks(ctx, subs, AdmitTask)
	if err != nil {
		for _, sub := range subs {
			s.dispatcher.Forget(sub.ID)
		}
		return nil, nil, err
	}
	for i, err := range refused {
		if err != nil {
			s.dispatcher.Forget(subs[i].ID)
		}
	}
	s.dispatcher.Wake() // one worker; each claim wakes the next
	return tasks, refused, nil
}

func bindSubmission(b kps.BindRequest, batch bool) kps.TaskSubmission {
	op := kps.OpReset
	if b.Auth != nil {
		op = kps.OpReplace
	}
	return kps.TaskSubmission{Operation: op, KeyPairName: b.KeyPairName, ServerID: b.ServerID,
		Port: b.Port, DisablePassword: b.DisablePassword, Batch: batch}
}

// submit persists one task, holding the caller's credential in memory for the worker first so
// that a worker claiming the task at once finds it.
func (s *Service) submit(ctx context.Context, p *kps.Principal, sub kps.TaskSubmission, auth *kps.Credential) (*kps.Task, error) {
	sub = s.submission(p, sub, auth)
	t, err := s.store.SubmitTask(ctx, sub, AdmitTask)
	if err != nil {
		s.dispatcher.Forget(sub.ID)
		return nil, err
	}
	s.dispatcher.Wake()
	return t, nil
}

// submission completes sub for the caller: a new task ID, the caller's project and user, the
// limits, whether the caller may use a hosted private key, and the caller's credential held in
// memory for the worker.
func (s *Service) submission(p *kps.Principal, sub kps.TaskSubmission, auth *kps.Credential) kps.TaskSubmission {
	sub.ID = uuid.NewString()
	sub.ProjectID, sub.UserID = p.ProjectID, p.UserID
	sub.MaxQueued, sub.MaxProjectTasks = s.cfg.MaxQueued, s.cfg.MaxProjectTasks
	// A hosted private key logs in only for a caller who could export it (SECURITY.md 2.1).
	sub.MayExport = p.Has(kps.ExportRole)
	if auth != nil {
		sub.CallerAuth = true
		sub.Holder = s.dispatcher.Hold(sub.ID, *auth)
	}
	return sub
}

// Task implements kps.TaskService (§2.14).
func (s *Service) Task(ctx context.Context, p *kps.Principal, id string) (*kps.Task, error) {
	return s.store.Task(ctx, p.ProjectID, id)
}

// DeleteFailedTask implements kps.TaskService (§2.17).
func (s *Service) DeleteFailedTask(ctx context.Context, p *kps.Principal, id string) error {
	return s.store.DeleteFailedTask(ctx, p.ProjectID, id)
}

// DeleteFailedTasks implements kps.TaskService (§2.17).
func (s *Service) DeleteFailedTasks(ctx context.Context, p *kps.Principal) error {
	return s.store.DeleteFailedTasks(ctx, p.ProjectID)
}

// AdmitTask is the admission of every new task (kps.TaskAdmission): the synchronous checks of
// §2.11 (RESET/REPLACE), §2.12 (the same, per batch item) and §2.13 (UNBIND) in the spec's
// order, on the facts the store read under the submission's locks, and the login the task will
// use (chooseLogin), checked against where it would go (kps.Server.CheckLogin). The store then
// refuses a busy server, a project at its limit and a full queue.
func AdmitTask(s *kps.TaskSubmission, f *kps.TaskFacts, t *kps.Task) error {
	var err error
	switch s.Operation {
	case kps.OpReset, kps.OpReplace:
		if f.KeyPair == nil {
			return kps.KeyPairNotFound(s.KeyPairName)
		}
		if f.KeyPair.Type == kps.TypeX509 {
			return errX509NotBindable(f.KeyPair.Name)
		}
		if f.Server == nil {
			return kps.ServerNotFound(s.ServerID)
		}
		if s.Batch && f.Server.KeyPairName != "" {
			return kps.Errorf(kps.ErrServerBound, "Server '%s' is already bound to key pair '%s'.",
				f.Server.ID, f.Server.KeyPairName)
		}
		if t.Login, t.LoginKeyPair, err = chooseLogin(s, f); err != nil {
			return err
		}
		t.KeyPairName, t.PublicKey = f.KeyPair.Name, f.KeyPair.PublicKey
	case kps.OpUnbind:
		if f.Server == nil {
			return kps.ServerNotFound(s.ServerID)
		}
		if f.Binding == nil {
			return kps.Errorf(kps.ErrServerNotBound, "Server '%s' is not bound to a key pair.", f.Server.ID)
		}
		if t.Login, t.LoginKeyPair, err = chooseLogin(s, f); err != nil {
			return err
		}
		t.KeyPairName, t.PublicKey = f.Binding.KeyPairName, f.Binding.PublicKey
	default:
		return fmt.Errorf("submit task: unknown operation %q", s.Operation)
	}
	// Where the login may go: no stored secret to a per-task port or, on first use, to a reach
	// no admin set; the caller's own to a per-task port only when the host is pinned.
	if err := f.Server.CheckLogin(t.Login, s.Port); err != nil {
		return err
	}
	if s.CallerAuth {
		t.Holder = s.Holder
	}
	t.ServerName = f.Server.Name
	if t.ServerName == "" {
		t.ServerName = f.Server.ID
	}
	return nil
}

// chooseLogin decides what the task will log in with (kps-v3-api.md §6.1 step 4): the caller's
// credential when they gave one; else the server's stored credential; else the hosted private
// key of the bound key pair, and that only for a caller who could export it (§2.8: the key
// pair is visible to them and their role allows the export), since logging in with a key is
// using it.
func chooseLogin(s *kps.TaskSubmission, f *kps.TaskFacts) (kps.LoginSource, string, error) {
	srv, b := f.Server, f.Binding
	switch {
	case s.CallerAuth:
		return kps.LoginCaller, "", nil
	case len(srv.Credential) > 0:
		return kps.LoginService, "", nil
	case b == nil || b.PrivateKey == nil:
		// KPS.6021: a server without a service credential can still be reached with the hosted
		// private key of its bound key pair.
		return "", "", kps.Errorf(kps.ErrNoCredential,
			"Server '%s' has no service credential: give server.auth, store a credential in the inventory, or host the private key of its bound key pair.", srv.ID)
	case !s.MayExport || !f.BoundKeyPairVisible:
		return "", "", kps.Errorf(kps.ErrHostedKeyForbidden,
			"Server '%s' has no service credential, and the hosted private key of its bound key pair '%s' is not one you may export: give server.auth.",
			srv.ID, b.KeyPairName)
	}
	return kps.LoginHosted, b.KeyPairName, nil
}
