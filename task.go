package kps

import (
	"strconv"
	"time"
)

// Operation is what a task does on a host (kps-v3-api.md §3.1).
type Operation string

const (
	OpReset   Operation = "RESET"   // bind with the service's own credential
	OpReplace Operation = "REPLACE" // bind with the caller's credential
	OpUnbind  Operation = "UNBIND"  // remove the bound key pair
)

// Phase is where a task stands in its life; with the operation it forms the wire status.
type Phase string

const (
	PhaseReady   Phase = "READY"
	PhaseRunning Phase = "RUNNING"
	PhaseSuccess Phase = "SUCCESS"
	PhaseFailed  Phase = "FAILED"
)

// Status is the wire status of a task, e.g. RUNNING_REPLACE.
func Status(p Phase, op Operation) string { return string(p) + "_" + string(op) }

// transitions is the whole task state machine (docs/task-state-machine.md). The operation never
// changes; SUCCESS and FAILED are terminal. A READY task never fails without being claimed: one
// whose caller credential was lost with a restart is claimed like any other and ends FAILED
// (KPS.6609) from RUNNING, so every failure goes through the one guarded FinishTask or the
// sweeper. store's TestGuardedTransitions holds the store's guarded statements to this table.
var transitions = map[Phase][]Phase{
	PhaseReady:   {PhaseRunning},
	PhaseRunning: {PhaseSuccess, PhaseFailed},
}

// CanTransition reports whether a task may move from one phase to another.
func CanTransition(from, to Phase) bool {
	for _, p := range transitions[from] {
		if p == to {
			return true
		}
	}
	return false
}

// Task is one asynchronous operation on one server.
type Task struct {
	ID          string
	ProjectID   string
	Operation   Operation
	Phase       Phase
	ServerID    string
	ServerName  string
	KeyPairName string
	// PublicKey is the key pair's public key taken at submission (RESET/REPLACE) or the bound
	// key (UNBIND), so the worker needs no visibility-checked key pair lookup.
	PublicKey       string
	Port            int // 0: the inventory port
	DisablePassword bool
	CallerAuth      bool // REPLACE, or UNBIND with the caller's auth: the credential is held in memory
	// Login is what the worker logs in with, decided at submission; LoginKeyPair names the key
	// pair whose hosted private key it is (LoginHosted). Empty for tasks submitted before
	// migration 0009 that did not use the caller's credential: the worker refuses them.
	Login        LoginSource
	LoginKeyPair string
	// Holder is the replica whose memory holds the caller's credential (CallerAuth); only it
	// claims the task while it is alive.
	Holder       string
	Created      time.Time
	Updated      time.Time
	ErrorCode    string
	ErrorMsg     string
	LeaseOwner   string
	LeaseExpires time.Time
	Attempt      int // incremented by every claim; fences a worker that lost its lease
	// KeyWriteReached records, before the host could have changed authorized_keys, that this
	// bind was about to add its key there (MarkTaskWrite): only then may a failure of the bind
	// have left its key behind. A bind whose key the host already held never sets it.
	KeyWriteReached bool
	// ConfigWriteReached records, before the daemon's configuration session started, that
	// this bind was about to turn password login off.
	ConfigWriteReached bool
}

// Status returns the wire status, e.g. READY_RESET.
func (t *Task) Status() string { return Status(t.Phase, t.Operation) }

// TaskTime is the wire form of the creation time: decimal epoch milliseconds (§3.4).
func (t *Task) TaskTime() string { return strconv.FormatInt(t.Created.UnixMilli(), 10) }

// Active reports whether the task is queued or executing.
func (t *Task) Active() bool { return t.Phase == PhaseReady || t.Phase == PhaseRunning }

// TaskSubmission is a validated request for a new task; TaskStore.SubmitTask decides it with a
// TaskAdmission on the facts it reads and persists it, in one transaction.
type TaskSubmission struct {
	ID              string
	ProjectID       string
	UserID          string // caller, for key pair visibility
	Operation       Operation
	KeyPairName     string // RESET/REPLACE only
	ServerID        string
	Port            int
	DisablePassword bool
	CallerAuth      bool
	// MayExport says whether the caller's role allows ExportPrivateKey (§2.8): without it, and
	// unless the key pair is visible to UserID, a hosted private key is never the task's login.
	MayExport bool
	Holder    string // the replica holding the caller's credential in memory (CallerAuth)
	Batch     bool   // batch associate: the server must not be bound (KPS.6303)
	MaxQueued int    // queue capacity (KPS.6502); 0 means unlimited
	// MaxProjectTasks is how many READY and RUNNING tasks the project may have (KPS.6403), so
	// that one project cannot fill the service-wide queue; 0 means unlimited.
	MaxProjectTasks int
}

// TaskFacts are what the rules of a new task decide on (kps-v3-api.md §2.11–2.13), read by the
// store under the submission's locks, so that nothing they show can change before the task is
// persisted.
type TaskFacts struct {
	// KeyPair is the key pair a RESET or REPLACE names, when it exists and is visible to the
	// caller (TaskSubmission.UserID); nil otherwise, and for an UNBIND.
	KeyPair *KeyPair
	// Server is the server named, with its binding's key pair name; nil when it is not in the
	// inventory.
	Server *Server
	// Binding is the server's binding with the sealed hosted private key of its key pair; nil
	// when the server is not bound.
	Binding *Binding
	// BoundKeyPairVisible reports whether the key pair of Binding is visible to the caller.
	BoundKeyPairVisible bool
}

// TaskAdmission decides a submission on its facts: it returns the task to persist, with the
// members only the rules decide (KeyPairName, PublicKey, ServerName, Login, LoginKeyPair,
// Holder) filled in on t, which the store has made from s; or the refusal, a *Error. It runs
// inside the store's transaction and must not call the store. The service's rules are the one
// production admission (service.AdmitTask).
type TaskAdmission func(s *TaskSubmission, f *TaskFacts, t *Task) error

// HostWrite names a step of a host job that changes the host, which the runner records
// before the step may begin (HostJob.BeforeWrite).
type HostWrite string

const (
	// WriteKey: authorized_keys is about to be replaced by content holding a key the file did
	// not hold (the bind's own key).
	WriteKey HostWrite = "authorized_keys"
	// WriteConfig: the daemon's configuration is about to be changed to turn password login off.
	WriteConfig HostWrite = "sshd_config"
)

// TaskOutcome is how a worker ends a task.
type TaskOutcome struct {
	Success          bool
	ErrorCode        string
	ErrorMsg         string
	PublicKey        string // the key now installed (bind), for the binding record
	PasswordDisabled bool   // binding flag after the task
}

// Binding records that a server carries a key pair (§1.1).
type Binding struct {
	ProjectID        string
	ServerID         string
	KeyPairName      string
	PublicKey        string
	PasswordDisabled bool
	// PrivateKey is the sealed hosted private key of the bound key pair, nil when it has none:
	// with it the service can log in without a credential of its own (issue: hosted keys).
	PrivateKey []byte
}

// TaskPhases lists the phases a task list returns.
var (
	RunningPhases = []Phase{PhaseReady, PhaseRunning}
	FailedPhases  = []Phase{PhaseFailed}
)
