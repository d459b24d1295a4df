package kps

import (
	"context"
	"time"
)

// OpenKPS extensions beyond the KPS v3 wire contract (kps-v3-api.md §7): bindings that expire,
// and drift checks of what the hosts hold against what the service believes.

// ErrUndoableExpiry is the refusal of an expiring bind the service could never undo by itself:
// at expiry it unbinds with the server's stored credential or the hosted private key of the
// bound key pair, sent only where an admin set the reach (CheckLogin); with neither, the
// binding would outlive its expiry.
const ErrUndoableExpiry = "KPS.6026" // 409

// ErrDriftCheckNotFound is the 404 of a drift check the project does not have.
const ErrDriftCheckNotFound = "KPS.6208"

// MaxBindingTTL bounds how far ahead a binding may expire.
const MaxBindingTTL = 10 * 366 * 24 * time.Hour

// ExpiryStore finds the bindings whose expiry has passed. The expiry's UNBIND is submitted
// through TaskStore.SubmitTask with TaskSubmission.Expiry, which clears the binding's expiry in
// the transaction that persists the task: an expiry is submitted once, and one due while no
// process ran is found at the next start.
type ExpiryStore interface {
	// DueExpiries returns up to limit bindings whose expires_at is at or before now, oldest
	// expiry first.
	DueExpiries(ctx context.Context, now time.Time, limit int) ([]Binding, error)
}

// Drift check states.
const (
	DriftRunning     = "RUNNING"
	DriftDone        = "DONE"
	DriftInterrupted = "INTERRUPTED" // the process ended before the check did
)

// DriftCheck is one read-only pass over servers of a project (kps-v3-api.md §7.2).
type DriftCheck struct {
	ID        string
	ProjectID string
	State     string
	Scheduled bool // started by --drift-interval, not by a request
	ServerIDs []string
	Results   []DriftResult
	Created   time.Time
	Finished  time.Time
	// Lease is how long the process that runs the check holds it without renewing
	// (RenewDriftChecks): once it passes, the check is taken for dead and INTERRUPTED. Read by
	// CreateDriftCheck only; 0 is DriftCheckLease.
	Lease time.Duration
}

// DriftCheckLease is the default lease of a running drift check (DriftCheck.Lease).
const DriftCheckLease = 30 * time.Second

// DriftResult is what a drift check found on one server. Checked is false when the host could
// not be read (ErrorCode, ErrorMsg say why); then nothing else is known.
type DriftResult struct {
	ServerID  string `json:"server_id"`
	Checked   bool   `json:"checked"`
	ErrorCode string `json:"error_code,omitempty"`
	ErrorMsg  string `json:"error_msg,omitempty"`
	// Drift says the host differs from what the service believes: BoundKey is not "present"
	// or "none", a key nobody manages is there, password login differs, or the file has a
	// problem.
	Drift bool `json:"drift"`
	// KeyPairName is the bound key pair ("" when unbound); BoundKey is "none" (not bound),
	// "present", "missing" or "duplicated" (more than one line holds it).
	KeyPairName string `json:"keypair_name"`
	BoundKey    string `json:"bound_key"`
	// Unmanaged are the keys of authorized_keys that no binding of the service put there.
	Unmanaged []DriftKey `json:"unmanaged_keys"`
	// UnmanagedCount counts them all: Unmanaged lists the first 100.
	UnmanagedCount int `json:"unmanaged_count"`
	// Password is password login as sshd -T shows it ("yes", "no", or "unknown" when sshd -T
	// could not be run); PasswordExpected is what the binding implies: "no" when the bind
	// disabled it, else "" (the service does not decide it).
	Password         string `json:"password_authentication"`
	PasswordExpected string `json:"password_expected,omitempty"`
	// AuthorizedKeysFile is sshd's AuthorizedKeysFile as sshd -T shows it ("" when unknown).
	AuthorizedKeysFile string `json:"authorized_keys_file,omitempty"`
	// FileMode and FileOwner are authorized_keys' mode (octal) and owner (uid:gid), "" when
	// the file does not exist; FileProblems name what would make sshd ignore it or others
	// change it.
	FileMode     string   `json:"file_mode,omitempty"`
	FileOwner    string   `json:"file_owner,omitempty"`
	FileProblems []string `json:"file_problems"`
	CheckTime    int64    `json:"check_time"` // epoch ms
}

// DriftKey is one line of authorized_keys.
type DriftKey struct {
	Fingerprint string `json:"fingerprint"` // SHA256:…
	Type        string `json:"type"`
	Comment     string `json:"comment"`
	Options     string `json:"options"`
	Line        int    `json:"line"` // 1-based
}

// HostInspection is what a read-only look at a host found.
type HostInspection struct {
	AuthorizedKeys       []byte
	AuthorizedKeysExists bool
	Mode, Owner          string // of authorized_keys: octal, uid:gid
	UID                  string // the login user's
	SSHDir               string // ~/.ssh's mode, "" when absent
	// SSHD holds the keywords of sshd -T the drift check reads (passwordauthentication,
	// kbdinteractiveauthentication, authorizedkeysfile), lower case; nil when sshd -T could
	// not be run (no privileges).
	SSHD map[string]string
}

// HostInspector reads a host without changing it. Job.Operation is "" and only the connection
// members and Login are used. A failure is an *Error with a task outcome code.
type HostInspector interface {
	Inspect(ctx context.Context, job HostJob) (HostInspection, error)
}

// DriftStore persists drift checks and their outcome on the servers' records.
type DriftStore interface {
	CreateDriftCheck(ctx context.Context, c *DriftCheck) error
	// FinishDriftCheck records the results, marks the check DONE, and writes each checked
	// server's last_drift_check and drift summary.
	FinishDriftCheck(ctx context.Context, c *DriftCheck) error
	DriftCheck(ctx context.Context, projectID, id string) (*DriftCheck, error)
	// ListDriftChecks returns the project's checks, newest first, without their results.
	ListDriftChecks(ctx context.Context, projectID string, p Page) ([]DriftCheck, int, error)
	// InterruptDriftChecks marks INTERRUPTED the RUNNING checks whose lease has passed (their
	// process died), or every RUNNING check when all is set (the start of a sole instance),
	// and returns how many.
	InterruptDriftChecks(ctx context.Context, all bool) (int, error)
	// RenewDriftChecks extends the lease of those of the checks ids that still run to now+lease.
	RenewDriftChecks(ctx context.Context, ids []string, lease time.Duration) error
	// DriftProjects lists the projects that have servers, for the scheduled checks.
	DriftProjects(ctx context.Context) ([]string, error)
}

// DriftService runs and reports drift checks (kps-v3-api.md §7.2).
type DriftService interface {
	// StartDriftCheck starts a check of the listed servers (every server of the project when
	// none) and returns it RUNNING.
	StartDriftCheck(ctx context.Context, p *Principal, serverIDs []string) (*DriftCheck, error)
	DriftCheck(ctx context.Context, p *Principal, id string) (*DriftCheck, error)
	ListDriftChecks(ctx context.Context, p *Principal, pg Page) ([]DriftCheck, int, error)
}

// BindingExpiry resolves the extension members of a bind: expires_at (RFC 3339) or ttl (from
// now), at most one of them; zero when neither is given. now is the time the request came.
func BindingExpiry(now time.Time, expiresAt string, ttl time.Duration, hasTTL bool, name func(string) string) (time.Time, error) {
	switch {
	case expiresAt != "" && hasTTL:
		return time.Time{}, Errorf(ErrInvalid, "Parameters %s and %s exclude each other.", name("expires_at"), name("ttl"))
	case hasTTL:
		if ttl < time.Second || ttl > MaxBindingTTL {
			return time.Time{}, Errorf(ErrInvalid, "Invalid parameter %s: it must be from 1 second to 10 years.", name("ttl"))
		}
		return now.Add(ttl), nil
	case expiresAt != "":
		at, err := time.Parse(time.RFC3339, expiresAt)
		if err != nil {
			return time.Time{}, Errorf(ErrInvalid, "Invalid parameter %s: an RFC 3339 time such as 2026-01-02T15:04:05Z is required.", name("expires_at"))
		}
		if !at.After(now) || at.Sub(now) > MaxBindingTTL {
			return time.Time{}, Errorf(ErrInvalid, "Invalid parameter %s: it must lie in the future, at most 10 years ahead.", name("expires_at"))
		}
		return at, nil
	}
	return time.Time{}, nil
}
