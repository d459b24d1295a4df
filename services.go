package kps

import "context"

// The KPS side of the service as three interfaces, as IdentityStore's rules are iam.Service's:
// the HTTP handlers (api/kpsv3, api/nova) decode a request, call one of these with the caller
// and render the answer; package service implements them and owns every rule in between —
// generation, import and sealing of key material, quotas, who may see and use what, which
// secret a task logs in with, and what a host must end up with. Errors are *Error values with
// their KPS code, whatever API renders them.

// ExportRole is the role ExportPrivateKey needs (auth.md §3.3). A task logs in with a hosted
// private key only for a caller who holds it: logging in with a key is using it (SECURITY.md
// 2.1).
const ExportRole = RoleMember

// KeyPairService creates, lists, changes and deletes key pairs and their hosted private keys
// (kps-v3-api.md §2.1–2.10, nova-keypairs.md §5). userID arguments name the user whose view of
// the project is asked: "" or the caller for their own; another user's needs the admin role
// (nova-keypairs.md §10, KPS.9006).
type KeyPairService interface {
	// CreateKeyPair generates or imports a key pair (kps-v3-api.md §2.1, nova-keypairs.md
	// §5.2). A generated key pair's private key is returned once in NewKeyPair.PrivateKey.
	CreateKeyPair(ctx context.Context, p *Principal, c KeyPairCreate) (*NewKeyPair, error)
	// KeyPair returns a key pair visible to userID, else KPS.6201.
	KeyPair(ctx context.Context, p *Principal, name, userID string) (*KeyPair, error)
	// ListKeyPairs returns the page of §4.2 of the key pairs visible to userID.
	ListKeyPairs(ctx context.Context, p *Principal, userID, marker string, limit int) (*KeyPairPage, error)
	// UpdateKeyPairDescription sets a visible key pair's description (§2.4).
	UpdateKeyPairDescription(ctx context.Context, p *Principal, name, description string) error
	// DeleteKeyPair deletes a key pair visible to userID, unless it is bound or a task uses it
	// (KPS.6305).
	DeleteKeyPair(ctx context.Context, p *Principal, name, userID string) error
	// ImportPrivateKey hosts privateKey for a visible ssh key pair whose public key it matches
	// (§2.7); userID, when given, must be the owner (KPS.6104). It returns the key pair.
	ImportPrivateKey(ctx context.Context, p *Principal, name, privateKey, userID string) (*KeyPair, error)
	// ExportPrivateKey returns the hosted private key of a visible key pair (§2.8): KPS.6018
	// when none is hosted, KPS.9006 without ExportRole.
	ExportPrivateKey(ctx context.Context, p *Principal, name string) ([]byte, error)
	// ClearPrivateKey removes a visible key pair's hosted private key, if any (§2.10).
	ClearPrivateKey(ctx context.Context, p *Principal, name string) error
}

// KeyPairCreate is a validated request to create a key pair. The two APIs differ in who may
// own it and in the per-user limit; everything else is one rule.
type KeyPairCreate struct {
	Name  string
	Type  string // TypeSSH ("" too) or TypeX509
	Scope string // ScopeUser ("" too) or ScopeDomain
	// PublicKey imports the key pair: an OpenSSH public key line, or one PEM certificate for
	// x509. "" generates one (RSA for ssh, a self-signed certificate in PKCS#12 for x509).
	PublicKey string
	// Hosted keeps the private key in the service, sealed (key_protection, §2.1): the generated
	// one, or HostedPrivateKey, which must match PublicKey. Never for x509 (KPS.6017).
	Hosted           bool
	HostedPrivateKey string
	// UserID is the KPS API's keypair.user_id: when given it must be the caller's own ID
	// (KPS.6104), checked after the key material.
	UserID string
	// Owner is the Nova API's user_id (microversion 2.10): the user who will own the key pair,
	// the caller when "". Another user needs the admin role (KPS.9006) and must be a user of the
	// caller's domain where users are known here (KPS.6003).
	Owner string
	// PerUserQuota applies Nova's per-user limit (nova-keypairs.md §11), checked before the key
	// material is looked at (N-31) and again in the store's transaction.
	PerUserQuota bool
}

// NewKeyPair is a created key pair and, when it was generated, its private key: the only time
// it leaves the service unsealed (PKCS#12 in base64 for x509).
type NewKeyPair struct {
	KeyPair    *KeyPair
	PrivateKey string
}

// TaskService submits binds and unbinds and answers for the tasks that carry them
// (kps-v3-api.md §2.11–2.17). A caller credential (server.auth) is held in this process's
// memory for the worker, never stored (§2.11).
type TaskService interface {
	// Bind submits a RESET (no auth) or REPLACE task (§2.11).
	Bind(ctx context.Context, p *Principal, b BindRequest) (*Task, error)
	// BindBatch submits a batch of binds of one key pair (§2.12) in one transaction:
	// refused[i] is item i's refusal, tasks[i] its task otherwise; err refuses the whole batch.
	BindBatch(ctx context.Context, p *Principal, keyPairName string, items []BindRequest) (tasks []*Task, refused []error, err error)
	// Unbind submits an UNBIND task (§2.13).
	Unbind(ctx context.Context, p *Principal, serverID string, auth *Credential) (*Task, error)
	// Task returns a task of the caller's project in any phase, or KPS.6202.
	Task(ctx context.Context, p *Principal, id string) (*Task, error)
	// DeleteFailedTask deletes one FAILED task (KPS.6203 when there is none by that ID).
	DeleteFailedTask(ctx context.Context, p *Principal, id string) error
	// DeleteFailedTasks deletes every FAILED task of the caller's project.
	DeleteFailedTasks(ctx context.Context, p *Principal) error
}

// BindRequest is one validated bind (§2.11, one item of §2.12).
type BindRequest struct {
	KeyPairName     string
	ServerID        string
	Auth            *Credential // nil: log in with what the service has (RESET)
	DisablePassword bool
	Port            int // 0: the inventory's port
}

// ServerService keeps the inventory (inventory.md): who may register, change and remove
// servers, where they may point, and the service credential stored for them.
type ServerService interface {
	// CreateServer registers a server of the caller's project from u (id "" draws one); cred,
	// when given, is stored sealed and needs the admin role.
	CreateServer(ctx context.Context, p *Principal, id string, u ServerUpdate, cred *Credential) (*Server, error)
	Server(ctx context.Context, p *Principal, id string) (*Server, error)
	ListServers(ctx context.Context, p *Principal, pg Page) ([]Server, int, error)
	// UpdateServer applies u; with u.SetCredential, cred replaces the stored credential (nil
	// removes it), which needs the admin role, as does changing how the server is reached.
	UpdateServer(ctx context.Context, p *Principal, id string, u ServerUpdate, cred *Credential) (*Server, error)
	DeleteServer(ctx context.Context, p *Principal, id string) error
}

// HostPlanner decides what a claimed task's host must end up with (kps-v3-api.md §6): the
// host job, from the inventory, the binding, the login recorded at submission and the keys
// failed binds may have left behind. The runner (package tasks) executes the plan and records
// the outcome; package service implements it.
type HostPlanner interface {
	// PlanHostJob plans t. caller is the caller's credential the runner holds for it, nil when
	// it holds none. The plan comes back with what is known even with an error, so that a
	// failure can name the host.
	PlanHostJob(ctx context.Context, t *Task, caller *Credential) (HostPlan, error)
}

// HostPlan is a host job and what its outcome means for the binding.
type HostPlan struct {
	Job HostJob
	// RetryWithoutRestore says that, should Job fail for lack of privileges (KPS.6607, decided
	// before any change), the unbind is to run again without RestorePassword: the password
	// login it would restore is only one a failed bind may have disabled, which without
	// privileges it cannot have.
	RetryWithoutRestore bool
	// KeepPasswordDisabled says that a successful bind keeps the binding's record that the
	// service disabled password login (disable_password false leaves the daemon as it was).
	KeepPasswordDisabled bool
}

// Outcome is the outcome of a successful run of the plan's job.
func (p *HostPlan) Outcome(t *Task, res HostResult) TaskOutcome {
	return TaskOutcome{Success: true, PublicKey: t.PublicKey, PasswordDisabled: res.PasswordDisabled || p.KeepPasswordDisabled}
}
