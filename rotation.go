package kps

import (
	"context"
	"time"
)

// Rotations: an OpenKPS extension (kps-v3-api.md §8). A rotation moves a set of servers from
// the key pair they carry to a target key pair, one task per server, in batches: add the new
// key beside the old, log in afresh with the new key, and only then remove the old one. A
// server whose login with the new key fails keeps its old key (the new one is taken away
// again) and is reported; the rotation stops by itself past max_failures, and after its canary
// servers until resumed when a canary count was given.

// Codes of the rotations (kps-v3-api.md §8.6).
const (
	ErrRotationNotFound = "KPS.6207" // 404: no rotation with this ID in the project
	ErrRotationState    = "KPS.6307" // 409: the action does not apply in the rotation's state
)

// RotationState is where a rotation stands.
type RotationState string

const (
	// RotationRunning submits the next servers as earlier ones end.
	RotationRunning RotationState = "RUNNING"
	// RotationPaused submits nothing until resumed: by the pause action, or by itself after
	// the canary servers (Reason says which).
	RotationPaused RotationState = "PAUSED"
	// RotationHalted submits nothing until resumed: more servers failed than max_failures.
	RotationHalted RotationState = "HALTED"
	// RotationCompleted: every server succeeded or failed. Terminal.
	RotationCompleted RotationState = "COMPLETED"
	// RotationCancelled: the cancel action; servers not yet started are skipped. Terminal.
	RotationCancelled RotationState = "CANCELLED"
)

// Terminal reports whether a rotation in state s can change no more (its servers in flight
// still end and are recorded).
func (s RotationState) Terminal() bool { return s == RotationCompleted || s == RotationCancelled }

// RotationServerState is where one server of a rotation stands.
type RotationServerState string

const (
	RotationServerPending   RotationServerState = "PENDING"   // not started
	RotationServerRunning   RotationServerState = "RUNNING"   // its task is READY or RUNNING
	RotationServerSucceeded RotationServerState = "SUCCEEDED" // the new key is in, the old one out
	RotationServerFailed    RotationServerState = "FAILED"    // the old key stays; ErrorCode says why
	RotationServerSkipped   RotationServerState = "SKIPPED"   // cancelled before its turn
)

// Rotation actions (POST …/rotations/{id}/action).
const (
	RotationPause  = "pause"
	RotationResume = "resume"
	RotationCancel = "cancel"
)

// RotationMaxServers is how many servers one rotation may name.
const RotationMaxServers = 10_000

// Rotation is a staged rotation of one key pair over servers.
type Rotation struct {
	ID        string
	ProjectID string
	UserID    string // the creator: key pair visibility of its tasks
	// KeyPairName is the target key pair; FromKeyPair the key pair whose servers were taken,
	// "" when the servers were listed.
	KeyPairName string
	FromKeyPair string
	BatchSize   int // servers in flight at once
	MaxFailures int // failures tolerated; one more halts the rotation
	Canary      int // servers run first, after which the rotation pauses; 0: none
	CanaryDone  bool
	// MayExport is the creator's export role, which every task of the rotation is submitted
	// with (a hosted key logs in only for a caller who could export it).
	MayExport bool
	State     RotationState
	Reason    string // why it is paused, halted or cancelled
	// PrivateKey is the sealed private key of the target key pair the caller gave to verify
	// logins with (RotationKeyAAD), nil when the key pair's hosted one is used. It is erased
	// when the rotation ends.
	PrivateKey []byte
	// Login is the sealed credential the caller gave to log in to the hosts with
	// (RotationLoginAAD), which makes the servers' tasks REPLACEs; nil: RESETs, logging in
	// with what the service holds. Erased when the rotation ends.
	Login   []byte
	Created time.Time
	Updated time.Time
	Totals  RotationTotals
	// Servers in rotation order; only filled by a read of one rotation.
	Servers []RotationServer
}

// RotationTotals counts a rotation's servers per state.
type RotationTotals struct {
	Servers, Pending, Running, Succeeded, Failed, Skipped int
}

// RotationServer is one server of a rotation.
type RotationServer struct {
	ServerID string
	State    RotationServerState
	TaskID   string // the latest task, "" before the first
	// Attempts counts the tasks submitted: a task interrupted by a restart (KPS.6609) is
	// submitted again, every step being idempotent; nothing that ended otherwise is.
	Attempts  int
	ErrorCode string
	ErrorMsg  string
	Updated   time.Time
}

// RotationCreate is a validated request for a rotation.
type RotationCreate struct {
	KeyPairName string
	// ServerIDs lists the servers; or FromKeyPair takes every server bound to that key pair.
	ServerIDs   []string
	FromKeyPair string
	BatchSize   int
	MaxFailures int
	Canary      int
	// PrivateKey is the target key pair's private key to verify logins with, "" to use its
	// hosted one. It is stored sealed until the rotation ends, never in clear.
	PrivateKey string
	// Login is the caller's credential for the hosts (a password, or the private key being
	// replaced), nil to log in with what the service holds. Sealed until the rotation ends.
	Login *Credential
}

// RotationLoginAAD binds a rotation's sealed login credential to its rotation.
func RotationLoginAAD(projectID, id string) []byte {
	return []byte("kps/rotation-login/v1/" + projectID + "/" + id)
}

// RotationKeyAAD binds a rotation's sealed private key to its rotation.
func RotationKeyAAD(projectID, id string) []byte {
	return []byte("kps/rotation-private-key/v1/" + projectID + "/" + id)
}

// RotationService runs rotations (kps-v3-api.md §8). The rules — who may, which key logs in
// where, what each server's task does — are the service's; the store keeps the state.
type RotationService interface {
	CreateRotation(ctx context.Context, p *Principal, c RotationCreate) (*Rotation, error)
	// Rotation returns a rotation with its servers, or KPS.6207.
	Rotation(ctx context.Context, p *Principal, id string) (*Rotation, error)
	// ListRotations returns the project's rotations, newest first, with their totals.
	ListRotations(ctx context.Context, p *Principal, pg Page) ([]Rotation, int, error)
	// RotationAction pauses, resumes or cancels a rotation (KPS.6307 where it does not apply).
	RotationAction(ctx context.Context, p *Principal, id, action string) (*Rotation, error)
}

// RotationStep is what planning a rotation's task needs beyond the task: the private key the
// fresh login with the new key uses, sealed, and the data it was sealed with.
type RotationStep struct {
	RotationID string
	Sealed     []byte
	AAD        []byte
	// Login is the sealed login credential the rotation was given (RotationLoginAAD), nil
	// when its tasks log in with what the service holds.
	Login []byte
}

// RotationRef names a rotation that still has work: a state that is not terminal, or servers
// in flight.
type RotationRef struct{ ProjectID, ID string }

// RotationStore persists rotations. AdvanceRotation is the one step of the rotation machine:
// in one transaction it records the outcome of the servers whose tasks ended, decides the
// state (halt, canary pause, completion), and submits the next servers' tasks through
// submit and admit as SubmitTask would.
type RotationStore interface {
	// CreateRotation inserts r with one PENDING server per ID of servers, in that order; with
	// r.FromKeyPair and no servers, every server bound to that key pair (by server ID). No
	// server: KPS.6003.
	CreateRotation(ctx context.Context, r *Rotation, servers []string) error
	Rotation(ctx context.Context, projectID, id string) (*Rotation, error)
	ListRotations(ctx context.Context, projectID string, pg Page) ([]Rotation, int, error)
	// SetRotationState moves a rotation from one of from to to (KPS.6307 otherwise); to
	// CANCELLED also skips its pending servers and erases its private key.
	SetRotationState(ctx context.Context, projectID, id string, from []RotationState, to RotationState, reason string) (*Rotation, error)
	// ActiveRotations lists the rotations with work left, oldest first.
	ActiveRotations(ctx context.Context) ([]RotationRef, error)
	AdvanceRotation(ctx context.Context, ref RotationRef, submit func(r *Rotation, serverID string) TaskSubmission, admit TaskAdmission) (submitted int, err error)
	// FinishRotationTask records the outcome of running task t as FinishTask does and, when t
	// is the task of a rotation's server, advances that rotation in the same transaction as
	// AdvanceRotation would: the next servers' tasks are READY when the outcome commits.
	FinishRotationTask(ctx context.Context, t *Task, o TaskOutcome, submit func(r *Rotation, serverID string) TaskSubmission, admit TaskAdmission) (submitted int, err error)
	// RotationStep returns what the task of a rotation needs, nil when the task is no
	// rotation's.
	RotationStep(ctx context.Context, projectID, taskID string) (*RotationStep, error)
}
