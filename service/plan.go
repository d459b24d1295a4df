package service

import (
	"context"
	"encoding/json"

	"golang.org/x/crypto/ssh"

	"github.com/openkps/kps"
)

// PlanStore is what planning a host job reads.
type PlanStore interface {
	Server(ctx context.Context, projectID, id string) (*kps.Server, error)
	Binding(ctx context.Context, projectID, serverID string) (*kps.Binding, error)
	UnconfirmedKeys(ctx context.Context, projectID, serverID string) (keys []string, passwordMaybeDisabled bool, err error)
}

// Planner implements kps.HostPlanner: what a claimed task's host must end up with.
type Planner struct {
	store  PlanStore
	sealer kps.Sealer
}

var _ kps.HostPlanner = (*Planner)(nil)

// NewPlanner returns the planner of host jobs, which opens stored credentials and hosted keys
// with sealer.
func NewPlanner(store PlanStore, sealer kps.Sealer) *Planner {
	return &Planner{store: store, sealer: sealer}
}

// PlanHostJob resolves the server, binding and login of a task into a host job: the host ends
// with exactly the unrelated lines of authorized_keys plus the task's key (none after an
// unbind), and password login as the bindings say (docs/task-state-machine.md, "Crash and
// shutdown").
func (pl *Planner) PlanHostJob(ctx context.Context, t *kps.Task, caller *kps.Credential) (kps.HostPlan, error) {
	var plan kps.HostPlan
	srv, err := pl.store.Server(ctx, t.ProjectID, t.ServerID)
	if err != nil {
		if kps.ErrorCode(err) == kps.ErrServerNotFound {
			return plan, kps.Errorf(kps.TaskRemoteFailed, "Server '%s' is no longer in the inventory.", t.ServerID)
		}
		return plan, err
	}
	job := &plan.Job
	*job = kps.HostJob{
		TaskID:     t.ID,
		Operation:  t.Operation,
		Address:    srv.Address,
		Port:       srv.Port,
		User:       srv.User,
		HostKeys:   srv.HostKeys,
		SSHDConfig: srv.SSHDConfig,
	}
	if t.Port > 0 {
		job.Port = t.Port
	}
	binding, err := pl.store.Binding(ctx, t.ProjectID, t.ServerID)
	if err != nil {
		return plan, err
	}
	if job.Login, err = pl.login(t, srv, binding, caller); err != nil {
		return plan, err
	}
	// A bind that failed after reaching its write (interrupted by a crash, say) may have left
	// its key on the host without a binding to say so; every later task removes such keys too,
	// so that the host ends with exactly the keys its last successful task implies. A bind
	// that failed before its write (a refused login, say) never wrote its key and is not
	// listed: its key, if the host holds it, was put there by someone else (docs/SECURITY.md
	// §3.1).
	unconfirmed, maybeDisabled, err := pl.store.UnconfirmedKeys(ctx, t.ProjectID, t.ServerID)
	if err != nil {
		return plan, err
	}
	switch t.Operation {
	case kps.OpReset, kps.OpReplace:
		job.RemoveKeys = append(job.RemoveKeys, unconfirmed...)
		job.InstallKey = t.PublicKey
		job.DisablePassword = t.DisablePassword
		if binding != nil {
			job.RemoveKeys = append(job.RemoveKeys, binding.PublicKey)
		}
		if t.Operation == kps.OpReplace && job.Login.Type == kps.CredentialKeyPair && !job.Login.KeepOnHost {
			// The replaced key is the one the caller logs in with (§6.3), unless the caller
			// asked to keep it (server.keep_login_key).
			if s, err := ssh.ParsePrivateKey([]byte(job.Login.Key)); err == nil {
				job.RemoveKeys = append(job.RemoveKeys, string(ssh.MarshalAuthorizedKey(s.PublicKey())))
			}
		}
	case kps.OpUnbind:
		if binding == nil {
			return plan, kps.Errorf(kps.ErrServerNotBound, "Server '%s' has no bound key pair.", t.ServerID)
		}
		job.RemoveKeys = append([]string{binding.PublicKey}, unconfirmed...)
	}
	// Likewise a bind with disable_password that failed after reaching its configuration
	// session may have turned password login off unrecorded: an unbind restores it, and, should
	// the host give no privileges, unbinds without (RetryWithoutRestore).
	recorded := binding != nil && binding.PasswordDisabled
	job.RestorePassword = t.Operation == kps.OpUnbind && (recorded || maybeDisabled)
	plan.RetryWithoutRestore = job.RestorePassword && !recorded
	// disable_password=false leaves the daemon as it was, including our own change.
	plan.KeepPasswordDisabled = t.Operation != kps.OpUnbind && recorded && !job.DisablePassword
	return plan, nil
}

// login is exactly the login decided at submission, nothing else (docs/SECURITY.md §1–2): a
// stored credential removed since, or a hosted key no longer the bound one's, fails the task
// rather than falling back to another secret.
func (pl *Planner) login(t *kps.Task, srv *kps.Server, binding *kps.Binding, caller *kps.Credential) (kps.Credential, error) {
	login := t.Login
	if login == "" && t.CallerAuth {
		login = kps.LoginCaller // queued by a replica older than migration 0009
	}
	if login != "" {
		// Checked again where the login goes now, should the server have changed since.
		if err := srv.CheckLogin(login, t.Port); err != nil {
			return kps.Credential{}, kps.Errorf(kps.TaskAuthFailed, "%s", kps.ErrorMessage(err))
		}
	}
	switch login {
	case kps.LoginCaller:
		if caller == nil {
			// Claimed here because the replica holding the credential died or stopped (or
			// this process restarted): the claim rule gives such a task to nobody else.
			return kps.Credential{}, kps.Errorf(kps.TaskInterrupted, "Task interrupted by a service restart: the caller's credential is kept only in memory; submit the task again.")
		}
		return *caller, nil
	case kps.LoginService:
		if srv.Credential == nil {
			return kps.Credential{}, kps.Errorf(kps.TaskAuthFailed, "No credential is available to log in to server '%s': the service credential was removed.", t.ServerID)
		}
		plain, err := pl.sealer.Open(srv.Credential, kps.CredentialAAD(t.ProjectID, t.ServerID))
		if err != nil {
			return kps.Credential{}, err
		}
		var c kps.Credential
		if err := json.Unmarshal(plain, &c); err != nil {
			return kps.Credential{}, err
		}
		return c, nil
	case kps.LoginHosted:
		if binding == nil || binding.KeyPairName != t.LoginKeyPair || binding.PrivateKey == nil {
			return kps.Credential{}, kps.Errorf(kps.TaskAuthFailed, "No credential is available to log in to server '%s': the hosted private key of key pair '%s' is no longer there.", t.ServerID, t.LoginKeyPair)
		}
		// The hosted private key of the bound key pair is on the host: log in with it.
		plain, err := pl.sealer.Open(binding.PrivateKey, kps.PrivateKeyAAD(t.ProjectID, binding.KeyPairName))
		if err != nil {
			return kps.Credential{}, err
		}
		return kps.Credential{Type: kps.CredentialKeyPair, Key: string(plain)}, nil
	}
	// Submitted before the login was recorded: under the old rules, which may have chosen a
	// secret the caller had no right to send there.
	return kps.Credential{}, kps.Errorf(kps.TaskInterrupted, "Task interrupted by a service upgrade: it was queued before the service recorded what a task logs in with; submit it again.")
}
