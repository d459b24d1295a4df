// Package service is the KPS side's rules, as iam.Service is identity's: it implements
// kps.KeyPairService, kps.TaskService and kps.ServerService, which the HTTP handlers of
// api/kpsv3 and api/nova call, and kps.HostPlanner, which the runner (package tasks) asks what
// a claimed task must do on its host.
//
// It owns generation, import and sealing of key material; the quotas, Nova's per-user one
// included; who may see, change, export and use which key pair; who may change how a server is
// reached; the synchronous checks of a bind or unbind and the login a task will use
// (AdmitTask, run by the store inside the submission's transaction); the caller's credential
// held in memory for the worker (Dispatcher); and the plan of what a host must end up with.
// The store keeps what needs a transaction: locks, counts behind limits, guarded transitions,
// unique indexes.
//
// The OpenKPS extensions live here too: Rotations (rotations.go, kps-v3-api.md §8) drives
// staged rotations one store transaction per step; Drift (drift.go, §7.2) reads hosts through
// a kps.HostInspector and compares them with the bindings; Expirer (expiry.go, §7.1)
// submits the UNBIND of a binding whose time is up.
//
// It imports the domain package, sshkey and small libraries, never api, store, iam or tasks:
// those reach it, or it reaches them, only through the interfaces declared here and in the
// root package, which cmd/kps wires.
package service

import (
	"context"

	"github.com/openkps/kps"
)

// Store is what the service needs from persistence: key pairs, the inventory, the submission
// and reads of tasks.
type Store interface {
	kps.KeyPairStore
	CreateServer(ctx context.Context, s *kps.Server, quota int) error
	Server(ctx context.Context, projectID, id string) (*kps.Server, error)
	ListServers(ctx context.Context, projectID string, p kps.Page) ([]kps.Server, int, error)
	UpdateServer(ctx context.Context, projectID, id string, u kps.ServerUpdate) (*kps.Server, error)
	DeleteServer(ctx context.Context, projectID, id string) error
	SubmitTask(ctx context.Context, s kps.TaskSubmission, admit kps.TaskAdmission) (*kps.Task, error)
	SubmitTasks(ctx context.Context, subs []kps.TaskSubmission, admit kps.TaskAdmission) ([]*kps.Task, []error, error)
	Task(ctx context.Context, projectID, id string) (*kps.Task, error)
	DeleteFailedTask(ctx context.Context, projectID, id string) error
	DeleteFailedTasks(ctx context.Context, projectID string) error
	// The audit trail: a change records its event through Audit, in its transaction; an export,
	// which changes nothing, through RecordAudit; the project's admin reads it.
	kps.Audited
	RecordAudit(ctx context.Context, ev *kps.AuditEvent) error
	ListAuditEvents(ctx context.Context, f kps.AuditFilter, p kps.Page) ([]kps.AuditEvent, int, error)
}

// Dispatcher hands tasks to the workers (tasks.Runner).
type Dispatcher interface {
	// Hold keeps the caller's credential of a task in this process's memory and returns the
	// holder's ID, recorded with the task so that only the holder claims it while it lives.
	Hold(taskID string, c kps.Credential) (holder string)
	// Forget drops a held credential: its submission was refused.
	Forget(taskID string)
	// Wake tells an idle worker that a task waits.
	Wake()
}

// Users finds the users of the local identity (kps.IdentityStore.UserByID); nil where the
// users are another service's (external identity mode, auth.md §10), and then the checks that
// need them are skipped.
type Users interface {
	UserByID(ctx context.Context, id string) (*kps.User, error)
}

// Config holds the limits of a deployment; zero values take the defaults.
type Config struct {
	KeyPairQuota int // key pairs per project (KPS.6401), default 1000
	// KeyPairsPerUser is Nova's per-user key pair limit (nova-keypairs.md §11): nil means
	// Nova's default of 100, a negative value no limit, 0 no creation through the Nova API.
	KeyPairsPerUser *int
	MaxQueued       int // READY tasks service-wide before 503 KPS.6502; 0 means unlimited
	// MaxProjectTasks is how many READY and RUNNING tasks one project may have before 429
	// KPS.6403, so that one project cannot fill the service-wide queue; 0 means unlimited.
	MaxProjectTasks int
	// ServerQuota is how many servers one project may register (403 KPS.6402); 0 means
	// unlimited.
	ServerQuota int
	// AllowedTargets are the networks and ports servers may point at (--allowed-targets):
	// registering or moving a server elsewhere is KPS.6023; the zero value allows everything.
	AllowedTargets kps.AllowedTargets
}

// DefaultKeyPairsPerUser is Nova's default per-user key pair limit (nova-keypairs.md §11).
const DefaultKeyPairsPerUser = 100

// Service implements kps.KeyPairService, kps.TaskService and kps.ServerService.
type Service struct {
	store      Store
	sealer     kps.Sealer
	dispatcher Dispatcher
	users      Users
	cfg        Config
}

var (
	_ kps.KeyPairService = (*Service)(nil)
	_ kps.TaskService    = (*Service)(nil)
	_ kps.ServerService  = (*Service)(nil)
	_ kps.AuditReader    = (*Service)(nil)
)

// New returns the service. users may be nil (external identity mode).
func New(store Store, sealer kps.Sealer, dispatcher Dispatcher, users Users, cfg Config) *Service {
	if cfg.KeyPairQuota <= 0 {
		cfg.KeyPairQuota = 1000
	}
	if cfg.KeyPairsPerUser == nil {
		perUser := DefaultKeyPairsPerUser
		cfg.KeyPairsPerUser = &perUser
	}
	return &Service{store: store, sealer: sealer, dispatcher: dispatcher, users: users, cfg: cfg}
}

// forbidden is the KPS.9006 of a role the caller lacks (auth.md §4.3 row 8).
func forbidden() error {
	return kps.Errorf(kps.ErrForbidden, "The user has no permission to perform this operation.")
}

// viewer is the user whose view of the project a request asks: the caller's own unless
// userID names another user, which needs the admin role (nova-keypairs.md §10).
func viewer(p *kps.Principal, userID string) (string, error) {
	if userID == "" || userID == p.UserID {
		return p.UserID, nil
	}
	if !p.Has(kps.RoleAdmin) {
		return "", forbidden()
	}
	return userID, nil
}

// audited is the store on which a change records ev in its own transaction (kps.Audited); the
// store itself when there is no event to record.
func (s *Service) audited(ev *kps.AuditEvent) Store {
	if ev == nil {
		return s.store
	}
	return s.store.Audit(ev)
}

// AuditEvents implements kps.AuditReader: the audit trail of the caller's project, for its
// admin (docs/spec/audit.md).
func (s *Service) AuditEvents(ctx context.Context, p *kps.Principal, f kps.AuditFilter, pg kps.Page) ([]kps.AuditEvent, int, error) {
	if !p.Has(kps.RoleAdmin) {
		return nil, 0, forbidden()
	}
	f.ProjectID = p.ProjectID
	return s.store.ListAuditEvents(ctx, f, pg)
}
