package service

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/openkps/kps"
	"github.com/openkps/kps/sshkey"
)

// RotationStore is what rotations need from persistence: their own rows, and the key pairs
// they rotate to.
type RotationStore interface {
	kps.RotationStore
	KeyPair(ctx context.Context, projectID, name, userID string) (*kps.KeyPair, error)
	// Audit is the store on which a change records ev in its own transaction (kps.Store).
	Audit(ev *kps.AuditEvent) kps.Store
}

// audited is the store on which the caller's change records its audit event in the change's
// own transaction (docs/spec/audit.md); the store itself when there is none.
func (s *Rotations) audited(p *kps.Principal) kps.RotationStore {
	if p.Audit == nil {
		return s.store
	}
	return s.store.Audit(p.Audit)
}

// Rotations implements kps.RotationService and drives the rotations (kps-v3-api.md §8): Run
// advances every rotation with work left whenever a task ends (Wake) or a tick passes. Every
// advance is one transaction of the store, so several replicas may run it on one database, and
// a restart finds every rotation where its last step left it.
type Rotations struct {
	store      RotationStore
	sealer     kps.Sealer
	dispatcher Dispatcher
	cfg        Config
	log        *slog.Logger
	wake       chan struct{}
	// Tick is how often the rotations are advanced without a wake: the safety net for tasks
	// that ended in another replica. Default 1s.
	Tick time.Duration
}

var _ kps.RotationService = (*Rotations)(nil)

// NewRotations returns the rotations of a deployment; cfg's task limits apply to their tasks.
func NewRotations(store RotationStore, sealer kps.Sealer, dispatcher Dispatcher, cfg Config, log *slog.Logger) *Rotations {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Rotations{store: store, sealer: sealer, dispatcher: dispatcher, cfg: cfg, log: log,
		wake: make(chan struct{}, 1), Tick: time.Second}
}

// Rotation defaults and bounds (kps-v3-api.md §8.1).
const (
	DefaultRotationBatch = 10
	MaxRotationBatch     = 1000
)

// CreateRotation implements kps.RotationService (§8.1). The caller needs the member role (the
// route's, as for an associate); the key the fresh logins use is the target key pair's hosted
// one only for a caller who could export it, or the one the caller gives, sealed.
func (s *Rotations) CreateRotation(ctx context.Context, p *kps.Principal, c kps.RotationCreate) (*kps.Rotation, error) {
	switch {
	case c.BatchSize == 0:
		c.BatchSize = DefaultRotationBatch
	case c.BatchSize < 0 || c.BatchSize > MaxRotationBatch:
		return nil, kps.Errorf(kps.ErrInvalid, "Invalid parameter batch_size: it must be from 1 to %d.", MaxRotationBatch)
	}
	if c.MaxFailures < 0 {
		return nil, kps.Errorf(kps.ErrInvalid, "Invalid parameter max_failures: it must not be negative.")
	}
	if c.Canary < 0 {
		return nil, kps.Errorf(kps.ErrInvalid, "Invalid parameter canary: it must not be negative.")
	}
	if (len(c.ServerIDs) == 0) == (c.FromKeyPair == "") {
		return nil, kps.Errorf(kps.ErrInvalid, "Give either servers or from_keypair, not both and not neither.")
	}
	if len(c.ServerIDs) > kps.RotationMaxServers {
		return nil, kps.Errorf(kps.ErrInvalid, "A rotation may take at most %d servers, not %d.", kps.RotationMaxServers, len(c.ServerIDs))
	}
	seen := make(map[string]bool, len(c.ServerIDs))
	for _, id := range c.ServerIDs {
		if err := kps.ValidateServerID(id); err != nil {
			return nil, err
		}
		if seen[id] {
			return nil, kps.Errorf(kps.ErrDuplicate, "Server '%s' is named twice.", id)
		}
		seen[id] = true
	}
	if c.Canary > 0 && len(c.ServerIDs) > 0 && c.Canary >= len(c.ServerIDs) {
		return nil, kps.Errorf(kps.ErrInvalid, "Invalid parameter canary: it must be below the number of servers (%d).", len(c.ServerIDs))
	}
	k, err := s.store.KeyPair(ctx, p.ProjectID, c.KeyPairName, p.UserID)
	if err != nil {
		return nil, err
	}
	if k.Type == kps.TypeX509 {
		return nil, errX509NotBindable(k.Name)
	}
	if c.FromKeyPair != "" {
		if c.FromKeyPair == c.KeyPairName {
			return nil, kps.Errorf(kps.ErrInvalid, "Invalid parameter from_keypair: it names the key pair rotated to.")
		}
		if _, err := s.store.KeyPair(ctx, p.ProjectID, c.FromKeyPair, p.UserID); err != nil {
			return nil, err
		}
	}
	r := &kps.Rotation{ID: uuid.NewString(), ProjectID: p.ProjectID, UserID: p.UserID, KeyPairName: k.Name,
		FromKeyPair: c.FromKeyPair, BatchSize: c.BatchSize, MaxFailures: c.MaxFailures, Canary: c.Canary,
		MayExport: p.Has(kps.ExportRole)}
	switch {
	case c.PrivateKey != "":
		signer, _, err := sshkey.ParsePrivateKey(c.PrivateKey)
		if err != nil {
			return nil, err
		}
		pub, err := sshkey.ParsePublicKey(k.PublicKey)
		if err != nil {
			return nil, err
		}
		if !sshkey.Matches(signer, pub) {
			return nil, kps.Errorf(kps.ErrPrivateKey, "Parameter private_key does not match the public key of key pair '%s'.", k.Name)
		}
		// Sealed like a hosted key, for as long as the rotation runs (the logins of a rotation
		// that outlives a restart need it); erased when it ends.
		if r.PrivateKey, err = s.sealer.Seal([]byte(c.PrivateKey), kps.RotationKeyAAD(r.ProjectID, r.ID)); err != nil {
			return nil, err
		}
	case k.PrivateKey == nil:
		return nil, kps.Errorf(kps.ErrNoPrivateKey,
			"Key pair '%s' has no hosted private key to verify the new logins with: give private_key, or host it first.", k.Name)
	case !r.MayExport:
		// A hosted key is used only by a caller who could export it (docs/SECURITY.md 2.1).
		return nil, kps.Errorf(kps.ErrHostedKeyForbidden, "The hosted private key of key pair '%s' is not one you may export: give private_key.", k.Name)
	}
	if c.Login != nil {
		// The caller's credential for the hosts, sealed for as long as the rotation runs: its
		// tasks (REPLACEs) log in with it after a restart too, unlike an associate's, which
		// lives in one process's memory (§2.11).
		plain, err := json.Marshal(sealedLogin{Type: c.Login.Type, Key: c.Login.Key, KeepOnHost: c.Login.KeepOnHost})
		if err != nil {
			return nil, err
		}
		if r.Login, err = s.sealer.Seal(plain, kps.RotationLoginAAD(r.ProjectID, r.ID)); err != nil {
			return nil, err
		}
	}
	if err := s.audited(p).CreateRotation(ctx, r, c.ServerIDs); err != nil {
		return nil, err
	}
	s.Wake()
	return s.store.Rotation(ctx, p.ProjectID, r.ID)
}

// Rotation implements kps.RotationService.
func (s *Rotations) Rotation(ctx context.Context, p *kps.Principal, id string) (*kps.Rotation, error) {
	return s.store.Rotation(ctx, p.ProjectID, id)
}

// ListRotations implements kps.RotationService.
func (s *Rotations) ListRotations(ctx context.Context, p *kps.Principal, pg kps.Page) ([]kps.Rotation, int, error) {
	return s.store.ListRotations(ctx, p.ProjectID, pg)
}

// RotationAction implements kps.RotationService (§8.5).
func (s *Rotations) RotationAction(ctx context.Context, p *kps.Principal, id, action string) (*kps.Rotation, error) {
	var (
		from   []kps.RotationState
		to     kps.RotationState
		reason string
	)
	who := p.UserName
	if who == "" {
		who = p.UserID
	}
	switch action {
	case kps.RotationPause:
		from, to, reason = []kps.RotationState{kps.RotationRunning}, kps.RotationPaused, "Paused by "+who+"."
	case kps.RotationResume:
		from, to = []kps.RotationState{kps.RotationPaused, kps.RotationHalted}, kps.RotationRunning
	case kps.RotationCancel:
		from = []kps.RotationState{kps.RotationRunning, kps.RotationPaused, kps.RotationHalted}
		to, reason = kps.RotationCancelled, "Cancelled by "+who+"; servers in flight finish, the others are skipped."
	default:
		return nil, kps.Errorf(kps.ErrInvalid, "Invalid parameter action: it must be pause, resume or cancel.")
	}
	r, err := s.audited(p).SetRotationState(ctx, p.ProjectID, id, from, to, reason)
	if err != nil {
		return nil, err
	}
	s.Wake()
	return r, nil
}

// FinishTask records the outcome of task t, a worker's, and advances t's rotation in the same
// transaction when t is a rotation's (FinishRotationTask): the freed worker finds the next
// server's task at once, without a step of Run and its commit in between. Run is woken when
// nothing was submitted: the task may be no rotation's yet have held a server that a rotation
// waits for.
func (s *Rotations) FinishTask(ctx context.Context, t *kps.Task, o kps.TaskOutcome) error {
	n, err := s.store.FinishRotationTask(ctx, t, o, s.submission, AdmitTask)
	if err != nil {
		return err
	}
	if n > 0 {
		s.dispatcher.Wake()
	} else {
		s.Wake()
	}
	return nil
}

// Wake asks Run for a step at once: a task ended, or a rotation was created or resumed.
func (s *Rotations) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run advances the rotations until ctx ends.
func (s *Rotations) Run(ctx context.Context) {
	tick := time.NewTicker(s.Tick)
	defer tick.Stop()
	for {
		s.step(ctx)
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-tick.C:
		}
	}
}

// step advances every rotation with work left once.
func (s *Rotations) step(ctx context.Context) {
	refs, err := s.store.ActiveRotations(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("listing the active rotations failed", "err", err)
		}
		return
	}
	for _, ref := range refs {
		n, err := s.store.AdvanceRotation(ctx, ref, s.submission, AdmitTask)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("advancing a rotation failed", "rotation_id", ref.ID, "err", err)
			}
			continue
		}
		if n > 0 {
			s.dispatcher.Wake()
		}
	}
}

// submission is the task of one server of r, submitted as its creator: a RESET of the target
// key pair logging in with what the service holds for the server, or a REPLACE with the
// credential the rotation was given (operate_type stays a KPS value, §8.3). The admission's
// login rules apply to every server as to an associate.
func (s *Rotations) submission(r *kps.Rotation, serverID string) kps.TaskSubmission {
	sub := kps.TaskSubmission{ID: uuid.NewString(), ProjectID: r.ProjectID, UserID: r.UserID, Operation: kps.OpReset,
		KeyPairName: r.KeyPairName, ServerID: serverID, MayExport: r.MayExport,
		MaxQueued: s.cfg.MaxQueued, MaxProjectTasks: s.cfg.MaxProjectTasks}
	if r.Login != nil {
		// The caller's credential, sealed with the rotation rather than held in one process's
		// memory: no holder, so any replica may run the task (the planner opens it).
		sub.Operation, sub.CallerAuth = kps.OpReplace, true
	}
	return sub
}

// rotationStep is what a rotation's task needs, opened: the credential the fresh login with
// the new key uses — the private key the rotation was given, else the target key pair's hosted
// one (checked at creation: only for a caller who could export it) — and the caller's login
// credential when the rotation was given one. nil for a task that is no rotation's.
type rotationStep struct {
	verify *kps.Credential
	login  *kps.Credential
}

func (pl *Planner) rotationStep(ctx context.Context, t *kps.Task) (*rotationStep, error) {
	if t.Operation == kps.OpUnbind {
		return nil, nil
	}
	step, err := pl.store.RotationStep(ctx, t.ProjectID, t.ID)
	if err != nil || step == nil {
		return nil, err
	}
	if step.Sealed == nil {
		return nil, kps.Errorf(kps.TaskAuthFailed, "No private key is available to verify a login with key pair '%s' on server '%s': its hosted private key was removed.", t.KeyPairName, t.ServerID)
	}
	plain, err := pl.sealer.Open(step.Sealed, step.AAD)
	if err != nil {
		return nil, err
	}
	out := &rotationStep{verify: &kps.Credential{Type: kps.CredentialKeyPair, Key: string(plain)}}
	if step.Login != nil {
		plain, err := pl.sealer.Open(step.Login, kps.RotationLoginAAD(t.ProjectID, step.RotationID))
		if err != nil {
			return nil, err
		}
		var c sealedLogin
		if err := json.Unmarshal(plain, &c); err != nil {
			return nil, err
		}
		out.login = &kps.Credential{Type: c.Type, Key: c.Key, KeepOnHost: c.KeepOnHost}
	}
	return out, nil
}

// sealedLogin is a rotation's login credential as sealed: with keep_login_key, which a stored
// kps.Credential never carries.
type sealedLogin struct {
	Type       string `json:"type"`
	Key        string `json:"key"`
	KeepOnHost bool   `json:"keep_on_host,omitempty"`
}
