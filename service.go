package kps

import (
	"context"
	"time"
)

// IdentityStore persists the identity model of auth.md §3.
//
// Lookups that find nothing return (nil, nil): which KPS code a miss means is the caller's
// choice (a bad login, a foreign project, …). A change to a missing record is KPS.6110; a name
// already taken, or a change the default project refuses, is KPS.6111. Validating the members
// (the Validate methods) is the caller's job; the store keeps the rules that span records:
// unique names, one undeletable default project per domain, users, projects and role targets
// never crossing a domain, at most two access keys per user, and the implicit revocations of
// auth.md §5.5 in the same transaction as the change that causes them. Revoking a temporary
// credential deletes it.
type IdentityStore interface {
	Audited

	// Bootstrap creates the operator domain, its default project and the admin user with a
	// domain-level admin assignment, unless any domain exists; created reports whether it did.
	Bootstrap(ctx context.Context, b Bootstrap) (created bool, err error)

	// CreateDomain inserts d under a new ID, with its default project named region (auth.md
	// §3.2), which it returns.
	CreateDomain(ctx context.Context, d *Domain, region string) (*Project, error)
	DomainByID(ctx context.Context, id string) (*Domain, error)
	DomainByName(ctx context.Context, name string) (*Domain, error)
	// ListDomains returns a page of the matching domains ordered by name, and their total; a
	// zero p.Limit means no limit.
	ListDomains(ctx context.Context, f DomainFilter, p Page) ([]Domain, int, error)
	// UpdateDomain applies u. Disabling the domain revokes every token of its users and scopes
	// and deletes their temporary credentials.
	UpdateDomain(ctx context.Context, id string, u DomainUpdate) (*Domain, error)
	// DeleteDomain removes the domain with its projects, users, role assignments, access keys
	// and finished tasks; their tokens stay, revoked, until DeleteExpiredTokens. A project that
	// still holds key pairs, servers or unfinished tasks refuses it (KPS.6111).
	DeleteDomain(ctx context.Context, id string) error

	// CreateProject inserts p under a new ID in an existing domain (KPS.6110 otherwise).
	CreateProject(ctx context.Context, p *Project) error
	ProjectByID(ctx context.Context, id string) (*Project, error)
	ProjectByName(ctx context.Context, domainID, name string) (*Project, error)
	// ListProjects returns a page of the matching projects ordered by name, and their total; a
	// zero p.Limit means no limit.
	ListProjects(ctx context.Context, f ProjectFilter, p Page) ([]Project, int, error)
	// UpdateProject applies u; the default project cannot be renamed. Disabling the project
	// revokes the tokens scoped to it and deletes the temporary credentials bound to it.
	UpdateProject(ctx context.Context, id string, u ProjectUpdate) (*Project, error)
	// DeleteProject removes a project other than the default one, with its role assignments and
	// finished tasks, revoking as disabling does; users lose it as their default project. A
	// project that still holds key pairs, servers or unfinished tasks is KPS.6111.
	DeleteProject(ctx context.Context, id string) error

	// CreateUser inserts u under a new ID in an existing domain; a default project must lie in
	// that domain (KPS.6003). A password hash counts as set now.
	CreateUser(ctx context.Context, u *User) error
	UserByID(ctx context.Context, id string) (*User, error)
	UserByName(ctx context.Context, domainID, name string) (*User, error)
	// ListUsers returns a page of the matching users ordered by name, and their total; a zero
	// p.Limit means no limit.
	ListUsers(ctx context.Context, f UserFilter, p Page) ([]User, int, error)
	// UpdateUser applies u. Disabling the user revokes their tokens and deletes their temporary
	// credentials.
	UpdateUser(ctx context.Context, id string, u UserUpdate) (*User, error)
	// DeleteUser removes the user with their role assignments, access keys and temporary
	// credentials; their tokens stay, revoked, until DeleteExpiredTokens.
	DeleteUser(ctx context.Context, id string) error
	// UpdatePasswordHash records a password change: it sets the hash and its change time,
	// revokes the user's tokens and deletes their temporary credentials.
	UpdatePasswordHash(ctx context.Context, userID, hash string) error
	// RehashPassword replaces the hash of an unchanged password with a stronger one (auth.md
	// §12.1) and revokes nothing. It does nothing unless the stored hash is still oldHash, so a
	// concurrent password change wins.
	RehashPassword(ctx context.Context, userID, oldHash, newHash string) error

	// RoleID returns the ID the role was given at install, or "" for an unknown role.
	RoleID(ctx context.Context, r Role) (string, error)
	// EffectiveRoles returns the implied closure of the user's roles on the project (direct
	// and through the project's domain), strongest first.
	EffectiveRoles(ctx context.Context, userID, projectID string) ([]Role, error)
	// DomainRoles returns the implied closure of the roles assigned to the user on the domain
	// itself, strongest first.
	DomainRoles(ctx context.Context, userID, domainID string) ([]Role, error)
	// GrantRole records the assignment; granting it again is not an error. A missing user or
	// target is KPS.6110, a target in another domain than the user's KPS.6003.
	GrantRole(ctx context.Context, a RoleAssignment) error
	// RevokeRole removes the assignment (KPS.6110 when there is none); tokens are not revoked,
	// as roles are evaluated live.
	RevokeRole(ctx context.Context, a RoleAssignment) error
	// ListRoleAssignments returns the matching assignments ordered by user, role and target.
	ListRoleAssignments(ctx context.Context, f RoleAssignmentFilter) ([]RoleAssignment, error)

	// CreateToken stores the token record (by its hash). When maxLive > 0 and the user then
	// holds more than maxLive live tokens (neither revoked nor expired), the oldest of the
	// others are revoked in the same transaction, with the temporary credentials derived from
	// them (auth.md §5.3: the per-user cap); maxLive <= 0 caps nothing.
	CreateToken(ctx context.Context, t *Token, maxLive int) error
	// TokenByHash returns the token record, expired or revoked ones included.
	TokenByHash(ctx context.Context, hash string) (*Token, error)
	// RevokeToken revokes the token, if it exists and is not revoked yet, and deletes the
	// temporary credentials derived from it.
	RevokeToken(ctx context.Context, hash string) error
	// RevokeUserTokens revokes every token of the user and deletes their temporary credentials.
	RevokeUserTokens(ctx context.Context, userID string) error
	// DeleteExpiredTokens deletes the tokens that expired more than grace ago (auth.md §5.3).
	DeleteExpiredTokens(ctx context.Context, grace time.Duration) (int, error)

	// CreateAccessKey stores k for an existing user (KPS.6110 otherwise); a user's third key is
	// KPS.6003 (auth.md §3.5) and an AK already in use KPS.6111.
	CreateAccessKey(ctx context.Context, k *AccessKey) error
	AccessKey(ctx context.Context, access string) (*AccessKey, error)
	// ListAccessKeys returns the user's access keys, oldest first.
	ListAccessKeys(ctx context.Context, userID string) ([]AccessKey, error)
	// UpdateAccessKey applies u to the key (KPS.6110 when there is none).
	UpdateAccessKey(ctx context.Context, access string, u AccessKeyUpdate) (*AccessKey, error)
	// DeleteAccessKey removes the key (KPS.6110 when there is none).
	DeleteAccessKey(ctx context.Context, access string) error
	// TouchAccessKey records a use of the key now, unless one was recorded less than
	// AccessKeyTouchInterval ago; a fresh record costs no write.
	TouchAccessKey(ctx context.Context, access string) error

	// CreateTemporaryCredential stores c for an existing user and, when bound, an existing
	// project of the user's domain (KPS.6110 otherwise); an AK already in use is KPS.6111.
	CreateTemporaryCredential(ctx context.Context, c *TemporaryCredential) error
	// TemporaryCredential returns the credential, expired ones included.
	TemporaryCredential(ctx context.Context, access string) (*TemporaryCredential, error)
	// DeleteExpiredTemporaryCredentials deletes the credentials that expired more than grace
	// ago.
	DeleteExpiredTemporaryCredentials(ctx context.Context, grace time.Duration) (int, error)
}

// ServerStore persists the inventory (inventory.md).
type ServerStore interface {
	// CreateServer registers s, refusing an ID already registered in the project (KPS.6306)
	// and a project that holds quota servers already (KPS.6402; quota ≤ 0: unlimited).
	CreateServer(ctx context.Context, s *Server, quota int) error
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
	// CreateKeyPair inserts k, enforcing unique names (KPS.6301) and the quota (KPS.6401): the
	// counts and the insert are one transaction, so concurrent creates never both pass a limit.
	CreateKeyPair(ctx context.Context, k *KeyPair, quota KeyPairQuota) error
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

// TaskStore persists tasks and bindings; every transition is guarded by the expected phase
// (docs/task-state-machine.md). It keeps what needs a transaction — the locks, the counts
// behind the limits, the guarded transitions, the unique indexes — and nothing else: which
// task a submission makes, and what a task does on its host, are the service's (TaskAdmission,
// HostPlanner).
type TaskStore interface {
	// SubmitTask reads the facts of s under its locks, lets admit decide the task (kps-v3-api.md
	// §2.11–2.13), then refuses a busy server (KPS.6302), a project at its limit (KPS.6403) or a
	// full queue (KPS.6502) and persists the task READY, all in one transaction.
	SubmitTask(ctx context.Context, s TaskSubmission, admit TaskAdmission) (*Task, error)
	// SubmitTasks submits the items of a batch in one transaction, each as SubmitTask does:
	// refused[i] is item i's refusal (a *Error), tasks[i] its task otherwise; err is a failure
	// of the whole batch, which then submitted nothing.
	SubmitTasks(ctx context.Context, subs []TaskSubmission, admit TaskAdmission) (tasks []*Task, refused []error, err error)
	Task(ctx context.Context, projectID, id string) (*Task, error)
	DeleteFailedTask(ctx context.Context, projectID, id string) error
	DeleteFailedTasks(ctx context.Context, projectID string) error
	Binding(ctx context.Context, projectID, serverID string) (*Binding, error)
	// UnconfirmedKeys lists the public keys of the RESET/REPLACE tasks of a server that ended
	// FAILED since its last successful task after reaching the write of their key
	// (KeyWriteReached): such a bind may have left its key on the host, unrecorded. A bind
	// that failed before (refused login, changed host key, no such user, a refusal before
	// staging) or whose key the host already held never wrote it, and is not listed.
	// passwordMaybeDisabled reports whether a failed bind reached its configuration change
	// (ConfigWriteReached) since the server's last successful unbind or bind with
	// disable_password.
	UnconfirmedKeys(ctx context.Context, projectID, serverID string) (keys []string, passwordMaybeDisabled bool, err error)
	// MarkTaskWrite records on a RUNNING task held by t.LeaseOwner and t.Attempt that its host
	// job reached the write step (KeyWriteReached or ConfigWriteReached); ErrLeaseLost when
	// the lease was lost, and then the job must not write. It is committed before it returns.
	MarkTaskWrite(ctx context.Context, t *Task, step HostWrite) error

	// ClaimTask moves a READY task that owner may claim to RUNNING under a lease held by owner;
	// nil when there is none. It takes the oldest task of the project with the fewest RUNNING
	// tasks, so that projects share the workers. A task needing the caller's credential is
	// claimed only by its holder while the holder is alive (ReplicaStore), by anyone once it
	// is not.
	ClaimTask(ctx context.Context, owner string, lease time.Duration) (*Task, error)
	// ClaimTaskPending is ClaimTask that may return before the claim is durable: committed
	// waits until it is, and fails when it was undone (the task is READY again and the caller
	// must drop it). Nothing outside the store may change for the task before committed
	// returned nil. committed is nil when the task is.
	ClaimTaskPending(ctx context.Context, owner string, lease time.Duration) (t *Task, committed func() error, err error)
	// ClaimIdleProjectTask is ClaimTask restricted to projects with no RUNNING task: the claim
	// of the reserve workers, which keep a project that runs nothing from waiting behind
	// another project's stalled tasks.
	ClaimIdleProjectTask(ctx context.Context, owner string, lease time.Duration) (*Task, error)
	// ExtendLease renews a running task's lease; ErrLeaseLost when owner no longer holds it.
	ExtendLease(ctx context.Context, t *Task, lease time.Duration) error
	// FinishTask ends a RUNNING task held by t.LeaseOwner and updates the binding on success;
	// ErrLeaseLost when the lease was lost.
	FinishTask(ctx context.Context, t *Task, o TaskOutcome) error
	// FailExpiredTasks fails every RUNNING task whose lease expired before now (or every
	// RUNNING task when all is set, at the start of a sole instance) with KPS.6609.
	FailExpiredTasks(ctx context.Context, all bool) (int, error)
	// PurgeSucceededTasks deletes SUCCESS tasks older than the retention.
	PurgeSucceededTasks(ctx context.Context, olderThan time.Duration) (int, error)
}

// ReplicaStore records which service processes (replicas) are alive on a shared store, by
// heartbeat, so that a task whose caller credential one replica holds in memory waits for that
// replica, and is failed by any other once it has died.
type ReplicaStore interface {
	// HeartbeatReplica records that replica id is alive until now+ttl.
	HeartbeatReplica(ctx context.Context, id string, ttl time.Duration) error
	// RemoveReplica records that replica id is gone (it stopped, or all is set: every replica
	// is gone, at the start of a sole instance).
	RemoveReplica(ctx context.Context, id string, all bool) error
	// HeldTasks returns the IDs of the READY tasks whose caller credential replica id holds.
	HeldTasks(ctx context.Context, id string) ([]string, error)
}

// SecretStore walks the sealed secrets at rest (hosted private keys, service credentials) so
// they can move to a new master key.
type SecretStore interface {
	// RewrapSecrets calls rewrap for every sealed secret and stores the result when changed
	// is true; it returns how many were rewritten. A secret changed concurrently is skipped.
	RewrapSecrets(ctx context.Context, rewrap func(sealed []byte) (out []byte, changed bool, err error)) (int, error)
}

// Audited is how a change records its audit event in its own transaction (audit.go): the
// services pass the event down explicitly, on the store value they call.
type Audited interface {
	// Audit returns the store with ev attached: each write method called on the result records
	// ev in the transaction of its change, inserted before the commit, and calls ev.Committed
	// after it; a method that fails, or changes nothing, records nothing. A nil ev returns the
	// store itself. The result is for one call and is never closed.
	Audit(ev *AuditEvent) Store
}

// Store is everything the service persists.
type Store interface {
	IdentityStore
	ServerStore
	KeyPairStore
	TaskStore
	ReplicaStore
	SecretStore
	AuditStore
	// The OpenKPS extensions (kps-v3-api.md §7): expiring bindings and drift checks.
	ExpiryStore
	DriftStore
	RotationStore
	// The read paths (readpath.go), which cmd/kps hands by name to the caches that use them.
	RequestReader
	IdentityVersions
	TaskListReader
	TaskQueueReader
	// Lockouts is the failure counting of auth.md §12.4 kept in the store, shared by every
	// process that uses it.
	Lockouts() Limiter
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
	// BeforeWrite, when set, is called before the job may change the host: before
	// authorized_keys is replaced with content that adds InstallKey (WriteKey; not when the
	// file already holds the key), and before the daemon's configuration session that turns
	// password login off (WriteConfig). The job changes nothing of that step unless it
	// returned nil: the runner persists the mark there, so that a crash after it is known to
	// have possibly written, and one before it known not to have.
	BeforeWrite func(ctx context.Context, step HostWrite) error
	// AfterLogin, when set, is called once the job has logged in to the host, before its first
	// session: nothing on the host changes before it returned nil (the runner waits there for
	// its claim of the task to be durable, which the login overlaps).
	AfterLogin func(ctx context.Context) error

	// ServerID and ProjectID name the task's server for the executor's log lines.
	ServerID, ProjectID string
	// Verify, when set, stages the job (a rotation's, kps-v3-api.md §8.3): InstallKey goes in
	// beside the keys RemoveKeys names, a fresh login with Verify (the new key's private key)
	// must succeed, and only then are RemoveKeys taken out, over that login. When the login is
	// refused, InstallKey is taken out again and the old keys stay.
	Verify *Credential
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
	// ExpiresAt, when set, makes the binding expire then: the service unbinds by itself
	// (an OpenKPS extension, kps-v3-api.md §7.1).
	ExpiresAt time.Time
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
