package kps

import (
	"context"
	"time"
)

// IdentityStore persists the identity model of auth.md §3.
type IdentityStore interface {
	// Bootstrap creates the roles, the operator domain, its default project and the admin user
	// with a domain-level admin assignment, unless any domain exists; created reports whether
	// it did.
	Bootstrap(ctx context.Context, b Bootstrap) (created bool, err error)
	DomainByID(ctx context.Context, id string) (*Domain, error)
	DomainByName(ctx context.Context, name string) (*Domain, error)
	ProjectByID(ctx context.Context, id string) (*Project, error)
	ProjectByName(ctx context.Context, domainID, name string) (*Project, error)
	UserByID(ctx context.Context, id string) (*User, error)
	UserByName(ctx context.Context, domainID, name string) (*User, error)
	// EffectiveRoles returns the implied closure of the user's roles on the project (direct
	// and through the project's domain).
	EffectiveRoles(ctx context.Context, userID, projectID string) ([]Role, error)
	CreateToken(ctx context.Context, t *Token) error
	TokenByHash(ctx context.Context, hash string) (*Token, error)
}

// ServerStore persists the inventory (inventory.md).
type ServerStore interface {
	CreateServer(ctx context.Context, s *Server) error
	Server(ctx context.Context, projectID, id string) (*Server, error)
	ListServers(ctx context.Context, projectID string, p Page) ([]Server, int, error)
	// UpdateServer applies u under the rule that a busy server's connection cannot change.
	UpdateServer(ctx context.Context, projectID, id string, u ServerUpdate) (*Server, error)
	DeleteServer(ctx context.Context, projectID, id string) error
	// PinHostKey records the first host key seen for a server without pins (trust on first
	// use); it returns the pins in force afterwards.
	PinHostKey(ctx context.Context, projectID, id, key string) ([]string, error)
}

// KeyPairStore persists key pairs.
type KeyPairStore interface {
	// CreateKeyPair inserts k, enforcing unique names (KPS.6301) and the quota (KPS.6401).
	CreateKeyPair(ctx context.Context, k *KeyPair, quota int) error
	// KeyPair returns the key pair if it exists and is visible to userID, else KPS.6201.
	KeyPair(ctx context.Context, projectID, name, userID string) (*KeyPair, error)
	ListKeyPairs(ctx context.Context, projectID, userID, marker string, limit int) (*KeyPairPage, error)
	// UpdateKeyPairDescription sets the description and bumps the update time.
	UpdateKeyPairDescription(ctx context.Context, projectID, name, userID, description string) error
	// SetPrivateKey hosts a sealed private key for a visible key pair (nil clears it) and bumps
	// the update time; KPS.6201 when the key pair is missing or invisible.
	SetPrivateKey(ctx context.Context, projectID, name, userID string, sealed []byte) error
	// DeleteKeyPair refuses a bound key pair or one an active task references (KPS.6305).
	DeleteKeyPair(ctx context.Context, projectID, name, userID string) error
}

// TaskStore persists tasks and bindings; every transition is guarded by the expected phase.
type TaskStore interface {
	// SubmitTask runs the synchronous checks of §2.11–2.13 and persists a READY task in one
	// transaction.
	SubmitTask(ctx context.Context, s TaskSubmission) (*Task, error)
	Task(ctx context.Context, projectID, id string) (*Task, error)
	ListTasks(ctx context.Context, projectID string, phases []Phase, p Page) ([]Task, int, error)
	DeleteFailedTask(ctx context.Context, projectID, id string) error
	DeleteFailedTasks(ctx context.Context, projectID string) error
	Binding(ctx context.Context, projectID, serverID string) (*Binding, error)

	// ClaimTask moves the oldest READY task to RUNNING under a lease held by owner; nil when
	// there is none.
	ClaimTask(ctx context.Context, owner string, lease time.Duration) (*Task, error)
	// ExtendLease renews a running task's lease; ErrLeaseLost when owner no longer holds it.
	ExtendLease(ctx context.Context, t *Task, lease time.Duration) error
	// FinishTask ends a RUNNING task held by t.LeaseOwner and updates the binding on success;
	// ErrLeaseLost when the lease was lost.
	FinishTask(ctx context.Context, t *Task, o TaskOutcome) error
	// FailReadyTask ends a READY task without running it.
	FailReadyTask(ctx context.Context, t *Task, code, msg string) error
	// FailExpiredTasks fails every RUNNING task whose lease expired before now (or every
	// RUNNING task when all is set, at the start of a sole instance) with KPS.6609.
	FailExpiredTasks(ctx context.Context, all bool) (int, error)
	// PurgeSucceededTasks deletes SUCCESS tasks older than the retention.
	PurgeSucceededTasks(ctx context.Context, olderThan time.Duration) (int, error)
}

// SecretStore walks the sealed secrets at rest (hosted private keys, service credentials) so
// they can move to a new master key.
type SecretStore interface {
	// RewrapSecrets calls rewrap for every sealed secret and stores the result when changed
	// is true; it returns how many were rewritten. A secret changed concurrently is skipped.
	RewrapSecrets(ctx context.Context, rewrap func(sealed []byte) (out []byte, changed bool, err error)) (int, error)
}

// Store is everything the service persists.
type Store interface {
	IdentityStore
	ServerStore
	KeyPairStore
	TaskStore
	SecretStore
	Close() error
}

// Sealer encrypts secrets at rest. aad binds a ciphertext to the row it belongs to, so
// ciphertexts cannot be swapped between rows.
type Sealer interface {
	Seal(plaintext, aad []byte) ([]byte, error)
	Open(ciphertext, aad []byte) ([]byte, error)
}

// HostJob is everything a worker needs to perform one task on one host (kps-v3-api.md §6).
type HostJob struct {
	TaskID    string
	Operation Operation
	Address   string
	Port      int
	User      string
	// HostKeys are the pinned host keys; empty means trust on first use through PinHostKey.
	HostKeys   []string
	PinHostKey func(ctx context.Context, key string) error
	Login      Credential
	// InstallKey is the public key to install (RESET/REPLACE); RemoveKeys are the keys whose
	// identity must disappear from authorized_keys (the bound key, the replaced key).
	InstallKey string
	RemoveKeys []string
	// DisablePassword turns password login off after installing (bind); RestorePassword undoes
	// the service's own change (unbind).
	DisablePassword bool
	RestorePassword bool
	SSHDConfig      string
}

// HostResult is what a successful job leaves on the host.
type HostResult struct {
	PasswordDisabled bool
}

// HostExecutor performs jobs on hosts. A failure is an *Error carrying a task outcome code
// (KPS.6601–KPS.6610) and a message naming host, port, user and step.
type HostExecutor interface {
	Execute(ctx context.Context, job HostJob) (HostResult, error)
}
